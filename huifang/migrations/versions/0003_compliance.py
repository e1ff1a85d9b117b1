"""compliance: policies, consent ledger, suppressions, marketing sends, decisions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "compliance_policies",
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("marketing_cap", sa.Integer(), nullable=False),
        sa.Column("cap_window_days", sa.Integer(), nullable=False),
        sa.Column("window_start_minute", sa.Integer(), nullable=False),
        sa.Column("window_end_minute", sa.Integer(), nullable=False),
        sa.Column("opt_out_footer", sa.String(length=20), nullable=False),
        sa.Column("consent_retention_days", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_compliance_policies_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_compliance_policies")),
    )
    op.create_table(
        "marketing_sends",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("message_ref", sa.String(length=200), nullable=False),
        sa.Column("allowed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_marketing_sends_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketing_sends")),
        sa.UniqueConstraint("message_ref", name=op.f("uq_marketing_sends_message_ref")),
    )
    with op.batch_alter_table("marketing_sends", schema=None) as batch_op:
        batch_op.create_index(
            "ix_marketing_sends_tenant_phone_at", ["tenant_id", "phone", "allowed_at"], unique=False
        )

    op.create_table(
        "suppressions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("signature", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_suppressions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
    )
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_suppressions_tenant_phone", ["tenant_id", "phone", "signature"], unique=False
        )

    op.create_table(
        "compliance_decisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("message_ref", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_compliance_decisions_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_compliance_decisions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_decisions")),
    )
    with op.batch_alter_table("compliance_decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_compliance_decisions_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_compliance_decisions_message_ref"), ["message_ref"], unique=False
        )
        batch_op.create_index(
            "ix_compliance_decisions_tenant_at", ["tenant_id", "decided_at"], unique=False
        )

    op.create_table(
        "consent_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_source", sa.String(length=16), nullable=True),
        sa.Column("revoke_evidence", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_consent_records_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_consent_records_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_records")),
    )
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consent_records_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            "ix_consent_records_tenant_phone", ["tenant_id", "phone"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_records_tenant_phone")
        batch_op.drop_index(batch_op.f("ix_consent_records_customer_id"))

    op.drop_table("consent_records")
    with op.batch_alter_table("compliance_decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_compliance_decisions_tenant_at")
        batch_op.drop_index(batch_op.f("ix_compliance_decisions_message_ref"))
        batch_op.drop_index(batch_op.f("ix_compliance_decisions_customer_id"))

    op.drop_table("compliance_decisions")
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.drop_index("ix_suppressions_tenant_phone")

    op.drop_table("suppressions")
    with op.batch_alter_table("marketing_sends", schema=None) as batch_op:
        batch_op.drop_index("ix_marketing_sends_tenant_phone_at")

    op.drop_table("marketing_sends")
    op.drop_table("compliance_policies")
