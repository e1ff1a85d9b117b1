"""inbound: customers' replies, companies' reply keywords, short links, bookings, working hours

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=True),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("provider_message_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("in_reply_to_id", ID, nullable=True),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=True),
        sa.Column("normalized", sa.Text(), nullable=False),
        sa.Column("complaint", sa.Boolean(), nullable=False),
        sa.Column("complaint_rule", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=True),
        sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_inbound_messages_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["in_reply_to_id"],
            ["messages.id"],
            name=op.f("fk_inbound_messages_in_reply_to_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_inbound_messages_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
        sa.UniqueConstraint(
            "tenant_id",
            "provider",
            "provider_message_id",
            name=op.f("uq_inbound_messages_tenant_id_provider_provider_message_id"),
        ),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbound_messages_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            "ix_inbound_tenant_received", ["tenant_id", "received_at"], unique=False
        )

    op.create_table(
        "keyword_rules",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_keyword_rules_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyword_rules")),
        sa.UniqueConstraint(
            "tenant_id", "kind", "value", name=op.f("uq_keyword_rules_tenant_id_kind_value")
        ),
    )

    op.create_table(
        "short_links",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("source_type", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("service_type", sa.String(length=64), nullable=True),
        sa.Column("message_id", ID, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("first_clicked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_clicked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_short_links_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_short_links_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_short_links_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_short_links")),
        sa.UniqueConstraint("token", name=op.f("uq_short_links_token")),
    )
    with op.batch_alter_table("short_links", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_short_links_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "bookings",
        sa.Column("id", ID, nullable=False),
        sa.Column("tenant_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("service_type", sa.String(length=64), nullable=True),
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("slot_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("link_id", ID, nullable=True),
        sa.Column("message_id", ID, nullable=True),
        sa.Column("inbound_id", ID, nullable=True),
        sa.Column("source_type", sa.String(length=32), nullable=True),
        sa.Column("source_id", sa.String(length=64), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_bookings_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["inbound_id"],
            ["inbound_messages.id"],
            name=op.f("fk_bookings_inbound_id_inbound_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["short_links.id"],
            name=op.f("fk_bookings_link_id_short_links"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_bookings_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_bookings_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bookings")),
    )
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bookings_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index("ix_bookings_tenant_slot", ["tenant_id", "slot_start"], unique=False)

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("work_days", sa.String(length=7), server_default="123456", nullable=False)
        )
        batch_op.add_column(
            sa.Column("work_start_minute", sa.Integer(), server_default="480", nullable=False)
        )
        batch_op.add_column(
            sa.Column("work_end_minute", sa.Integer(), server_default="1080", nullable=False)
        )
        batch_op.add_column(
            sa.Column("slot_minutes", sa.Integer(), server_default="120", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("slot_minutes")
        batch_op.drop_column("work_end_minute")
        batch_op.drop_column("work_start_minute")
        batch_op.drop_column("work_days")
    with op.batch_alter_table("bookings", schema=None) as batch_op:
        batch_op.drop_index("ix_bookings_tenant_slot")
        batch_op.drop_index(batch_op.f("ix_bookings_customer_id"))
    op.drop_table("bookings")
    with op.batch_alter_table("short_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_short_links_customer_id"))
    op.drop_table("short_links")
    op.drop_table("keyword_rules")
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_tenant_received")
        batch_op.drop_index(batch_op.f("ix_inbound_messages_customer_id"))
    op.drop_table("inbound_messages")
