"""Row-level security on PostgreSQL: a backstop to the code's own tenant filters.

Every table with a ``tenant_id`` column has the policy ``tenant_isolation``: a row is
visible and writable only while the transaction's ``huifang.tenant_id`` names its company,
or is ``*`` (explicitly unscoped work). The owner of the tables (the role migrations run
as, ``HUIFANG_DATABASE_URL``) is not subject to the policies. The application connects as
a role of its own (``HUIFANG_DATABASE_APP_URL``, made by ``huifang db create-app-role``)
that owns nothing and cannot bypass them.

Scope: an app-role connection starts unscoped (``*``) for work that finds its company by an
unguessable token or id (an API key's hash, a report link, a task's row, the scheduler's
scans). As soon as a request knows its company (``huifang.deps.current_tenant``, the
console's ``signed_in``) it calls ``scope_to_tenant``, and for the rest of that
transaction a query that forgot its ``tenant_id`` filter sees only that company's rows.
SQLite (the embedded mode, one company per machine in practice) has no RLS.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session

SETTING = "huifang.tenant_id"
UNSCOPED = "*"
POLICY = "tenant_isolation"
APP_ROLE = "huifang_app"
RLS_INFO = "huifang_rls"  # Session.info key: this session's engine is the app role's

# The setting read leniently (missing → NULL); "*" and "" never reach the bigint cast.
_CURRENT = f"NULLIF(NULLIF(current_setting('{SETTING}', true), ''), '{UNSCOPED}')::bigint"
_RULE = f"(current_setting('{SETTING}', true) = '{UNSCOPED}' OR tenant_id = {_CURRENT})"


def policy_sql(table: str) -> list[str]:
    """The statements that put ``table`` under the tenant policy (for a migration that adds
    a tenant table; 0021 spells the same rule out)."""
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'DROP POLICY IF EXISTS {POLICY} ON "{table}"',
        f'CREATE POLICY {POLICY} ON "{table}" USING {_RULE} WITH CHECK {_RULE}',
    ]


def tenant_tables(connection: Connection) -> list[str]:
    """The tables of the current schema with a ``tenant_id`` column."""
    return list(
        connection.execute(
            text(
                "SELECT table_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND column_name = 'tenant_id' "
                "AND table_name IN (SELECT tablename FROM pg_tables "
                "WHERE schemaname = current_schema()) ORDER BY table_name"
            )
        ).scalars()
    )


def tables_without_policy(connection: Connection) -> list[str]:
    """Tenant tables that RLS does not guard (a new table whose migration forgot it)."""
    guarded = set(
        connection.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_policy p ON p.polrelid = c.oid "
                "WHERE n.nspname = current_schema() AND c.relrowsecurity AND p.polname = :name"
            ),
            {"name": POLICY},
        ).scalars()
    )
    return [t for t in tenant_tables(connection) if t not in guarded]


def scope_to_tenant(session: Session, tenant_id: int) -> None:
    """From now until the transaction ends, this session sees only ``tenant_id``'s rows
    (when it runs as the app role; a no-op otherwise)."""
    if session.info.get(RLS_INFO):
        session.execute(
            text("SELECT set_config(:name, :value, true)"),
            {"name": SETTING, "value": str(int(tenant_id))},
        )


def unscope(session: Session) -> None:
    """Back to unscoped work for the rest of the transaction (tests between requests)."""
    if session.info.get(RLS_INFO):
        session.execute(
            text("SELECT set_config(:name, :value, true)"), {"name": SETTING, "value": UNSCOPED}
        )


def start_unscoped(engine: Engine) -> None:
    """App-role connections begin each transaction unscoped; ``scope_to_tenant`` narrows one
    transaction (``set_config(…, true)`` ends with it)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, %s, false)", (SETTING, UNSCOPED))
        dbapi_connection.commit()


def create_app_role(owner_url: str, *, role: str = APP_ROLE, password: str) -> str:
    """Create (or update) the application's role: it may log in, read and write every table
    and sequence of the schema, owns none of them and cannot bypass RLS. Returns the URL
    the application should use (``HUIFANG_DATABASE_APP_URL``)."""
    from sqlalchemy import create_engine

    if not role.replace("_", "").isalnum():
        raise ValueError(f"{role!r} is not a plain role name")
    engine = create_engine(owner_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            owner = connection.execute(text("SELECT current_user")).scalar_one()
            exists = connection.execute(
                text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
            ).first()
            verb = "ALTER" if exists else "CREATE"
            quoted = password.replace("'", "''")
            connection.execute(
                text(
                    f'{verb} ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE '
                    f"NOCREATEDB PASSWORD '{quoted}'"
                )
            )
            database = connection.execute(text("SELECT current_database()")).scalar_one()
            for statement in (
                f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"',
                f'GRANT USAGE ON SCHEMA "{_schema(connection)}" TO "{role}"',
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "
                f'"{_schema(connection)}" TO "{role}"',
                f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{_schema(connection)}" '
                f'TO "{role}"',
                # Tables later migrations create (as the owner) are the app's to use too.
                f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA "{_schema(connection)}" '
                f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{role}"',
                f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA "{_schema(connection)}" '
                f'GRANT USAGE, SELECT ON SEQUENCES TO "{role}"',
            ):
                connection.execute(text(statement))
            if connection.execute(text("SELECT to_regclass('alembic_version')")).scalar():
                # The migrations' own bookkeeping stays the owner's alone.
                connection.execute(text(f'REVOKE ALL ON TABLE alembic_version FROM "{role}"'))
    finally:
        engine.dispose()
    url = make_url(owner_url).set(username=role, password=password)
    return url.render_as_string(hide_password=False)


def _schema(connection: Connection) -> str:
    return str(connection.execute(text("SELECT current_schema()")).scalar_one())
