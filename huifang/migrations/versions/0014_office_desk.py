"""office desk: response targets, complaints assigned to a user, bookings confirmed with
staff and a visit or declined with a reason, indexes for the console's today counts

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "staff_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "visit_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.add_column(sa.Column("decline_reason", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_bookings_staff_id"), ["staff_id"], unique=False)
        batch_op.create_index("ix_bookings_tenant_status", ["tenant_id", "status"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_bookings_visit_id_visits"),
            "visits",
            ["visit_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_bookings_staff_id_staff"),
            "staff",
            ["staff_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("campaign_occurrences", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaign_occurrences_tenant_due", ["tenant_id", "due_at"], unique=False
        )

    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "assignee_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.add_column(sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_inbound_tenant_state", ["tenant_id", "state"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_inbound_messages_assignee_id_users"),
            "users",
            ["assignee_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.create_index("ix_media_tenant_status", ["tenant_id", "status"], unique=False)

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "complaint_target_minutes", sa.Integer(), server_default="120", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("reply_target_minutes", sa.Integer(), server_default="240", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("reply_target_minutes")
        batch_op.drop_column("complaint_target_minutes")

    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_index("ix_media_tenant_status")

    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_inbound_messages_assignee_id_users"), type_="foreignkey"
        )
        batch_op.drop_index("ix_inbound_tenant_state")
        batch_op.drop_column("assigned_at")
        batch_op.drop_column("assignee_id")

    with op.batch_alter_table("campaign_occurrences", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_occurrences_tenant_due")

    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_bookings_staff_id_staff"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_bookings_visit_id_visits"), type_="foreignkey")
        batch_op.drop_index("ix_bookings_tenant_status")
        batch_op.drop_index(batch_op.f("ix_bookings_staff_id"))
        batch_op.drop_column("decline_reason")
        batch_op.drop_column("visit_id")
        batch_op.drop_column("staff_id")
