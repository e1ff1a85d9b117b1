"""privacy: capture consent, expiring report media, retention periods

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Companies from before capture consent keep uploading as they did (off) until their
    # owner turns it on; new companies get it on (the column's default afterwards).
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "capture_consent_required", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch_op.add_column(sa.Column("report_media_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("report_media_after_view_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.alter_column(
            "capture_consent_required", existing_type=sa.Boolean(), server_default=sa.true()
        )

    with op.batch_alter_table("compliance_policies", schema=None) as batch_op:
        for name, days in (
            ("capture_consent_retention_days", 183),
            ("original_media_days", 365),
            ("message_text_days", 730),
            ("reply_days", 730),
            ("decision_log_days", 365),
        ):
            batch_op.add_column(
                sa.Column(name, sa.Integer(), server_default=str(days), nullable=False)
            )

    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(sa.Column("renditions_deleted_at", WHEN, nullable=True))
        batch_op.add_column(sa.Column("original_deleted_at", WHEN, nullable=True))

    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("media_expires_at", WHEN, nullable=True))
        batch_op.add_column(sa.Column("media_after_view_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("first_viewed_at", WHEN, nullable=True))
        batch_op.add_column(sa.Column("media_deleted_at", WHEN, nullable=True))
        batch_op.create_index("ix_reports_media_deleted_at", ["media_deleted_at"], unique=False)

    op.create_table(
        "capture_consents",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("scopes", sa.String(length=64), nullable=False),
        sa.Column("signature_path", sa.String(length=255), nullable=True),
        sa.Column("recorded_by", sa.String(length=100), nullable=True),
        sa.Column("granted_at", WHEN, nullable=False),
        sa.Column("recorded_at", WHEN, nullable=False),
        sa.Column("withdrawn_at", WHEN, nullable=True),
        sa.Column("withdraw_evidence", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_capture_consents_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_capture_consents_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_consents")),
    )
    with op.batch_alter_table("capture_consents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_capture_consents_tenant_customer", ["tenant_id", "customer_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("capture_consents", schema=None) as batch_op:
        batch_op.drop_index("ix_capture_consents_tenant_customer")
    op.drop_table("capture_consents")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index("ix_reports_media_deleted_at")
        for name in ("media_deleted_at", "first_viewed_at", "media_after_view_days"):
            batch_op.drop_column(name)
        batch_op.drop_column("media_expires_at")
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_column("original_deleted_at")
        batch_op.drop_column("renditions_deleted_at")
    with op.batch_alter_table("compliance_policies", schema=None) as batch_op:
        for name in (
            "decision_log_days",
            "reply_days",
            "message_text_days",
            "original_media_days",
            "capture_consent_retention_days",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("report_media_after_view_days")
        batch_op.drop_column("report_media_days")
        batch_op.drop_column("capture_consent_required")
