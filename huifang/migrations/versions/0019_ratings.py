"""ratings: satisfaction on the report, what the page saw, marketing held for open complaints

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "marketing_holds",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_marketing_holds_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketing_holds")),
        sa.UniqueConstraint(
            "tenant_id", "source", name=op.f("uq_marketing_holds_tenant_id_source")
        ),
    )
    with op.batch_alter_table("marketing_holds", schema=None) as batch_op:
        batch_op.create_index(
            "ix_marketing_holds_tenant_phone", ["tenant_id", "phone", "released_at"], unique=False
        )
    # Complaints already open when this runs hold their numbers too.
    op.execute(
        "INSERT INTO marketing_holds (tenant_id, phone, reason, source, opened_at) "
        "SELECT tenant_id, phone, 'complaint', 'reply:' || CAST(id AS VARCHAR(20)), received_at "
        "FROM inbound_messages WHERE complaint AND state = 'open' AND tenant_id IS NOT NULL"
    )

    op.create_table(
        "report_ratings",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("report_id", ID, nullable=False),
        sa.Column("visit_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("staff_id", ID, nullable=True),
        sa.Column("service_type", sa.String(length=64), nullable=False),
        sa.Column("score", sa.String(length=8), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("ticket_id", ID, nullable=True),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_report_ratings_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_report_ratings_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff.id"],
            name=op.f("fk_report_ratings_staff_id_staff"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_report_ratings_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["inbound_messages.id"],
            name=op.f("fk_report_ratings_ticket_id_inbound_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
            name=op.f("fk_report_ratings_visit_id_visits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_ratings")),
        sa.UniqueConstraint("report_id", name=op.f("uq_report_ratings_report_id")),
    )
    with op.batch_alter_table("report_ratings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_ratings_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            "ix_report_ratings_tenant_rated", ["tenant_id", "rated_at"], unique=False
        )

    op.create_table(
        "report_views",
        sa.Column("report_id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("first_opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opens", sa.Integer(), nullable=False),
        sa.Column("video_started", sa.Integer(), nullable=False),
        sa.Column("video_ended", sa.Integer(), nullable=False),
        sa.Column("long_image", sa.Integer(), nullable=False),
        sa.Column("book_pressed", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_report_views_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_report_views_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_id", name=op.f("pk_report_views")),
    )
    with op.batch_alter_table("report_views", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_report_views_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("report_views", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_report_views_tenant_id"))
    op.drop_table("report_views")
    with op.batch_alter_table("report_ratings", schema=None) as batch_op:
        batch_op.drop_index("ix_report_ratings_tenant_rated")
        batch_op.drop_index(batch_op.f("ix_report_ratings_customer_id"))
    op.drop_table("report_ratings")
    with op.batch_alter_table("marketing_holds", schema=None) as batch_op:
        batch_op.drop_index("ix_marketing_holds_tenant_phone")
    op.drop_table("marketing_holds")
