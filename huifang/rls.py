"""Row-level security on PostgreSQL: a backstop to the code's own tenant filters.

Every table with a ``tenant_id`` column has the policy ``tenant_isolation``: a row is
visible and writable only while the transaction's ``huifang.tenant_id`` names its company
(unset: no row at all). The tables' owner (``HUIFANG_DATABASE_URL``, which runs the
migrations) is not bound by it. The application logs in as a role of its own
(``HUIFANG_DATABASE_APP_URL``, made by ``huifang db create-app-role``) that owns nothing and
has no BYPASSRLS.

Two modes per transaction. Unscoped: work that finds its company by an unguessable token or
an id (an API key's hash, a report link, a task's row, the scheduler's scans across
companies) starts as ``<app role>_maintenance``, a BYPASSRLS role without login that the app
role starts every session in (``ALTER ROLE … SET role``). Scoped: as soon as the work knows
its company, ``scope_to_tenant`` drops to the app role itself and names the company; a query
that forgot its ``tenant_id`` filter then sees that company's rows only, and ``SET
row_security = off`` makes such queries fail instead of see more. Where the company becomes
known:

- a request: its API key (``huifang.deps.current_tenant``), its console session
  (``accounts.service.session_user``), or the public link it opened (a report, a rendition, a
  verification code, a booking link: their lookups scope as soon as they find the row);
- a task: the row it was handed (``huifang.worker.task(company=(Model, "argument"))``);
- a periodic scan across companies: each item of its loop
  (``huifang.worker.each_on_its_own(scope=…)``), or each company's share of a batch
  (``by_tenant``).

The scope is the session's, not only the transaction's: a task that commits between steps
stays scoped (``after_begin`` names the company again), until ``forget``/``unscope``.

What this is and is not. It is a backstop against a forgotten tenant filter, which is the
mistake code makes. It is not a wall against a hostile SQL session: such a session could
name another company with ``set_config`` as easily as it could ``SET ROLE`` to the
maintenance role, whichever login it had, because the setting is an ordinary custom
parameter. SQLite (the embedded mode) has no RLS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session

SETTING = "huifang.tenant_id"
POLICY = "tenant_isolation"
APP_ROLE = "huifang_app"
RLS_INFO = "huifang_rls"  # Session.info key: this session's engine is the app role's
TENANT = "huifang_tenant"  # Session.info key: the company its transactions are scoped to
COMPANIES = object()  # for each_on_its_own(scope=…): the ids are the companies' own
# Unset or empty: NULL, so no row at all. Spelled the same in migration 0021.
RULE = f"(tenant_id = NULLIF(current_setting('{SETTING}', true), '')::bigint)"


def policy_sql(table: str) -> list[str]:
    """The statements that put ``table`` under the tenant policy (for a migration that adds
    a tenant table; 0021 spells the same rule out)."""
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'DROP POLICY IF EXISTS {POLICY} ON "{table}"',
        f'CREATE POLICY {POLICY} ON "{table}" USING {RULE} WITH CHECK {RULE}',
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
    """From now on this session sees only ``tenant_id``'s rows (when it connects as the app
    role; a no-op otherwise): in the open transaction, and in every transaction it begins
    later, until ``unscope``/``forget`` (a task that commits between steps stays scoped)."""
    if session.info.get(RLS_INFO):
        connection = session.connection()  # begins the transaction first if need be
        session.info[TENANT] = int(tenant_id)
        _apply(connection, int(tenant_id))


def scope_to_row(session: Session, model: Any, row_id: int) -> int | None:
    """Scope to the company that owns ``model``'s row ``row_id`` (a task's row: found
    unscoped, by its id, then everything after it is that company's). Its company, or None
    when the row is gone (the work then finds nothing, as it would unscoped)."""
    if not session.info.get(RLS_INFO):
        return None
    tenant_id = session.scalar(select(model.tenant_id).where(model.id == row_id))
    if tenant_id is not None:
        scope_to_tenant(session, tenant_id)
    return tenant_id


def by_tenant(session: Session, model: Any, ids: Sequence[int]) -> dict[int | None, list[int]]:
    """``ids`` of ``model`` grouped by their company (in their order), so that work handed
    rows of several companies does each company's under its scope. Without RLS one group,
    ``None``: nothing to look up."""
    if not session.info.get(RLS_INFO) or not ids:
        return {None: list(ids)} if ids else {}
    rows = session.execute(select(model.id, model.tenant_id).where(model.id.in_(list(ids))))
    owner = {row_id: tenant_id for row_id, tenant_id in rows}
    groups: dict[int | None, list[int]] = {}
    for row_id in ids:
        groups.setdefault(owner.get(row_id), []).append(row_id)
    return groups


def scoped_to(session: Session) -> int | None:
    """The company this session is scoped to (None: unscoped, or no RLS)."""
    tenant = session.info.get(TENANT)
    return int(tenant) if tenant is not None else None


def unscope(session: Session) -> None:
    """Back to unscoped work, in this transaction too (tests, whose transaction outlives the
    requests they make)."""
    forget(session)
    if session.info.get(RLS_INFO):
        session.execute(text("RESET ROLE"))
        session.execute(text("SELECT set_config(:name, '', true)"), {"name": SETTING})


def forget(session: Session) -> None:
    """Transactions this session begins from now on are unscoped (the open one keeps its
    scope until it ends): a loop over companies, between one company's commit and the next."""
    session.info.pop(TENANT, None)


def _apply(connection: Connection, tenant_id: int) -> None:
    connection.execute(text("SET LOCAL ROLE NONE"))  # the login role: bound by the policy
    connection.execute(
        text("SELECT set_config(:name, :value, true)"), {"name": SETTING, "value": str(tenant_id)}
    )


@event.listens_for(Session, "after_begin")
def _scope_new_transaction(session: Session, transaction: Any, connection: Connection) -> None:
    """A scoped session stays scoped: each transaction it begins names its company first."""
    tenant = session.info.get(TENANT)
    if tenant is not None and session.info.get(RLS_INFO):
        _apply(connection, int(tenant))


def maintenance_role(role: str) -> str:
    return f"{role}_maintenance"


def create_app_role(owner_url: str, *, role: str = APP_ROLE, password: str) -> str:
    """Create (or update) the application's role and its maintenance role.

    The app role may log in, read and write every table and sequence of the schema, owns
    none of them and cannot bypass RLS; it starts each session as the maintenance role
    (BYPASSRLS, no login) and drops to itself for a company's work (``scope_to_tenant``).
    Run as the tables' owner, who must be allowed to create BYPASSRLS roles (a superuser,
    as the PostgreSQL image's POSTGRES_USER is). Returns the app's URL.
    """
    from sqlalchemy import create_engine

    if not role.replace("_", "").isalnum():
        raise ValueError(f"{role!r} is not a plain role name")
    maintenance = maintenance_role(role)
    engine = create_engine(owner_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            owner = connection.execute(text("SELECT current_user")).scalar_one()
            schema = _schema(connection)
            database = connection.execute(text("SELECT current_database()")).scalar_one()

            def ensure(name: str, attributes: str) -> None:
                exists = connection.execute(
                    text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": name}
                ).first()
                verb = "ALTER" if exists else "CREATE"
                connection.execute(text(f'{verb} ROLE "{name}" {attributes}'))

            quoted = password.replace("'", "''")
            ensure(
                role,
                f"LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB PASSWORD '{quoted}'",
            )
            ensure(maintenance, "NOLOGIN NOSUPERUSER BYPASSRLS NOCREATEROLE NOCREATEDB")
            statements = [f'GRANT "{maintenance}" TO "{role}"']
            for grantee in (role, maintenance):
                statements += [
                    f'GRANT CONNECT ON DATABASE "{database}" TO "{grantee}"',
                    f'GRANT USAGE ON SCHEMA "{schema}" TO "{grantee}"',
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "
                    f'"{schema}" TO "{grantee}"',
                    f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{grantee}"',
                    # Tables later migrations create (as the owner) are the app's to use too.
                    f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA "{schema}" '
                    f'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{grantee}"',
                    f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA "{schema}" '
                    f'GRANT USAGE, SELECT ON SEQUENCES TO "{grantee}"',
                ]
            # Every session of the app role begins unscoped, as the maintenance role.
            statements.append(
                f'ALTER ROLE "{role}" IN DATABASE "{database}" SET role = "{maintenance}"'
            )
            for statement in statements:
                connection.execute(text(statement))
            if connection.execute(text("SELECT to_regclass('alembic_version')")).scalar():
                # The migrations' own bookkeeping stays the owner's alone.
                for grantee in (role, maintenance):
                    connection.execute(
                        text(f'REVOKE ALL ON TABLE alembic_version FROM "{grantee}"')
                    )
    finally:
        engine.dispose()
    url = make_url(owner_url).set(username=role, password=password)
    return url.render_as_string(hide_password=False)


def _schema(connection: Connection) -> str:
    return str(connection.execute(text("SELECT current_schema()")).scalar_one())
