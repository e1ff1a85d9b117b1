"""public links: one open booking per link, clicks counted once per visitor an hour

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "link_visitors",
        sa.Column("link_id", ID, nullable=False),
        sa.Column("visitor", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["short_links.id"],
            name=op.f("fk_link_visitors_link_id_short_links"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_link_visitors_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("link_id", "visitor", name=op.f("pk_link_visitors")),
    )
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_link_id", ID, nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_bookings_open_link_id"), ["open_link_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_bookings_open_link_id_short_links"),
            "short_links",
            ["open_link_id"],
            ["id"],
            ondelete="SET NULL",
        )
    # Links that already took several bookings keep the latest one open; staff answer the rest.
    op.execute(
        "UPDATE bookings SET open_link_id = link_id WHERE id IN ("
        " SELECT max(id) FROM bookings WHERE link_id IS NOT NULL"
        " AND status IN ('requested', 'confirmed') GROUP BY link_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_bookings_open_link_id_short_links"), type_="foreignkey"
        )
        batch_op.drop_constraint(batch_op.f("uq_bookings_open_link_id"), type_="unique")
        batch_op.drop_column("open_link_id")
    op.drop_table("link_visitors")
