"""campaigns: rules, templates, occurrences

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("preset", sa.String(length=64), nullable=True),
        sa.Column("rule", JSON, nullable=False),
        sa.Column("audience", JSON, nullable=False),
        sa.Column("service_type", sa.String(length=64), nullable=True),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("mms", JSON, nullable=True),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("materialized_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_campaigns_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_campaigns_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "campaign_occurrences",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("basis_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("campaign_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("message_id", ID, nullable=True),
        sa.Column("caught_up", sa.Boolean(), nullable=False),
        sa.Column("late_by_days", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_occurrences_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_campaign_occurrences_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_campaign_occurrences_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_campaign_occurrences_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_occurrences")),
        sa.UniqueConstraint(
            "campaign_id",
            "customer_id",
            "local_date",
            name=op.f("uq_campaign_occurrences_campaign_id_customer_id_local_date"),
        ),
        sqlite_autoincrement=True,  # ids are part of message idempotency keys: never reused
    )
    with op.batch_alter_table("campaign_occurrences", schema=None) as batch_op:
        batch_op.create_index("ix_campaign_occurrences_due", ["status", "due_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_campaign_occurrences_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "plum_rain_onsets",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("region", sa.String(length=50), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("onset", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_plum_rain_onsets_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plum_rain_onsets")),
        sa.UniqueConstraint(
            "tenant_id", "region", "year", name=op.f("uq_plum_rain_onsets_tenant_id_region_year")
        ),
    )


def downgrade() -> None:
    op.drop_table("plum_rain_onsets")
    with op.batch_alter_table("campaign_occurrences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_occurrences_customer_id"))
        batch_op.drop_index("ix_campaign_occurrences_due")
    op.drop_table("campaign_occurrences")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaigns_tenant_id"))
    op.drop_table("campaigns")
