"""row-level security: every tenant-owned table under the tenant_isolation policy

PostgreSQL only (SQLite has no RLS). A row is visible and writable only while the
transaction's ``huifang.tenant_id`` names its company; see huifang/rls.py. The policy binds
the application's role (``huifang db create-app-role``); the owner that runs migrations and
the maintenance role (BYPASSRLS) are not subject to it.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Unset or empty: NULL, so no row at all.
RULE = "(tenant_id = NULLIF(current_setting('huifang.tenant_id', true), '')::bigint)"


def _tenant_tables() -> list[str]:
    # Every table with tenant_id that exists now; a later migration adding one puts it
    # under the policy itself (tests/test_row_security.py finds any table left out).
    return list(
        op.get_bind()
        .execute(
            sa.text(
                "SELECT c.table_name FROM information_schema.columns c "
                "JOIN pg_tables t ON t.tablename = c.table_name "
                "AND t.schemaname = c.table_schema "
                "WHERE c.table_schema = current_schema() AND c.column_name = 'tenant_id' "
                "ORDER BY c.table_name"
            )
        )
        .scalars()
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _tenant_tables():
        op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
        op.execute(f'CREATE POLICY tenant_isolation ON "{table}" USING {RULE} WITH CHECK {RULE}')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _tenant_tables():
        op.execute(f'DROP POLICY IF EXISTS tenant_isolation ON "{table}"')
        op.execute(f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY')
