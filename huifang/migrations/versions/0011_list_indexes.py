"""list indexes: customers and visits of a company, newest first, read from an index

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index("ix_customers_tenant_newest", ["tenant_id", "id"], unique=False)
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.create_index("ix_visits_tenant_newest", ["tenant_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_index("ix_visits_tenant_newest")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_tenant_newest")
