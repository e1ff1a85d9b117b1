"""Row-level security on PostgreSQL: the app role sees only the company its transaction names.

These tests make an app role of their own (``huifang.rls.create_app_role``) on the run's
PostgreSQL database, whatever HUIFANG_TEST_RLS says, and commit their rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, delete, select, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

import huifang.db
from bookings import links
from customers import service as customers
from customers.models import Customer
from huifang import rls
from huifang.app import create_app
from huifang.db import Database, set_database, utcnow
from huifang.deps import SessionDep, TenantDep
from huifang.worker import each_on_its_own, task
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.conftest import TEST_RLS, app_role

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def app_database(postgres_database) -> Iterator[Database]:
    """The run's database, reached as an app role bound by RLS."""
    if TEST_RLS:  # the whole run already connects as one
        yield postgres_database
        return
    app_url, drop = app_role(postgres_database.url)
    database = Database(postgres_database.url, app_url=app_url)
    yield database
    database.dispose()
    with postgres_database.session() as session:  # the owner takes the grants back
        role = app_url.split("://", 1)[1].split(":", 1)[0]
        session.execute(text(f'DROP OWNED BY "{role}", "{rls.maintenance_role(role)}"'))
    drop()


@pytest.fixture
def companies(postgres_database) -> Iterator[SimpleNamespace]:
    """Two committed companies, each with a customer and an API key (made as the owner)."""
    made = []
    with postgres_database.session() as session:
        for name, phone in (("甲家政", "13800138001"), ("乙家政", "13800138002")):
            tenant = tenancy.create_tenant(session=session, name=name, signature=name)
            _, key = tenancy.create_api_key(session=session, tenant=tenant)
            customer = customers.create_customer(
                session=session, tenant=tenant, name=f"{name}客户", phone=phone
            )
            made.append(SimpleNamespace(id=tenant.id, key=key, customer_id=customer.id))
    yield SimpleNamespace(a=made[0], b=made[1])
    with postgres_database.session() as session:
        session.execute(delete(Tenant).where(Tenant.id.in_([m.id for m in made])))


def _customer_ids(session) -> set[int]:
    return set(session.scalars(select(Customer.id)))  # no tenant filter, on purpose


def test_every_tenant_table_is_under_the_policy(postgres_database):
    with postgres_database.engine.connect() as connection:
        tables = rls.tenant_tables(connection)
        assert {"customers", "messages", "media", "reports", "api_keys"} <= set(tables)
        assert rls.tables_without_policy(connection) == []


def test_a_query_under_the_wrong_company_sees_nothing(app_database, companies):
    a, b = companies.a, companies.b
    with app_database.session() as session:
        rls.scope_to_tenant(session, b.id)
        assert session.get(Customer, a.customer_id) is None
        assert session.scalars(select(Customer).where(Customer.id == a.customer_id)).all() == []
        assert a.customer_id not in _customer_ids(session)
        assert b.customer_id in _customer_ids(session)
    with app_database.session() as session:
        rls.scope_to_tenant(session, a.id)
        assert a.customer_id in _customer_ids(session)
        assert b.customer_id not in _customer_ids(session)
    with app_database.session() as session:  # as the app role, no company named: no row
        session.execute(text("SET LOCAL ROLE NONE"))
        assert not _customer_ids(session) & {a.customer_id, b.customer_id}
        session.execute(text("SELECT set_config('huifang.tenant_id', '', true)"))
        assert not _customer_ids(session) & {a.customer_id, b.customer_id}
    with app_database.session() as session:  # unscoped work (tokens, tasks) sees both
        assert {a.customer_id, b.customer_id} <= _customer_ids(session)


def test_the_scope_ends_with_the_transaction(app_database, companies):
    with app_database.session() as session:
        rls.scope_to_tenant(session, companies.b.id)
        assert companies.a.customer_id not in _customer_ids(session)
    with app_database.session() as session:  # the same pooled connection, a new transaction
        assert companies.a.customer_id in _customer_ids(session)


def test_a_row_for_another_company_cannot_be_written(app_database, companies):
    with (
        pytest.raises(ProgrammingError, match="row-level security"),
        app_database.session() as session,
    ):
        rls.scope_to_tenant(session, companies.b.id)
        session.add(Customer(tenant_id=companies.a.id, name="混入", phone="+8613800138009"))
        session.flush()
    with app_database.session() as session:
        rls.scope_to_tenant(session, companies.b.id)
        changed = session.execute(
            text("UPDATE customers SET name = 'x' WHERE id = :id"), {"id": companies.a.customer_id}
        )
        assert changed.rowcount == 0


def test_the_app_role_cannot_turn_row_security_off(app_database, companies):
    with app_database.engine.connect() as connection:
        role, current = connection.execute(text("SELECT session_user, current_user")).one()
        assert current == rls.maintenance_role(role)  # a session begins unscoped
        owner = connection.execute(
            text("SELECT tableowner FROM pg_tables WHERE tablename = 'customers'")
        ).scalar_one()
        assert role != owner
        bypass = connection.execute(
            text("SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = session_user")
        ).scalar_one()
        assert bypass is False
        connection.execute(text("SET LOCAL ROLE NONE"))
        connection.execute(
            text("SELECT set_config('huifang.tenant_id', :t, true)"), {"t": str(companies.b.id)}
        )
        connection.execute(text("SET LOCAL row_security = off"))
        # With row_security off, a query that RLS would filter is refused outright.
        with pytest.raises(DBAPIError, match="row-level security"):
            connection.execute(text("SELECT id FROM customers")).all()
        connection.rollback()
        with pytest.raises(DBAPIError, match="owner"):
            connection.execute(text("ALTER TABLE customers DISABLE ROW LEVEL SECURITY"))
        connection.rollback()


def test_a_request_sees_only_its_company_even_without_a_filter(app_database, companies):
    app = create_app(database=app_database)

    @app.get("/v1/rls-probe")
    def probe(session: SessionDep, tenant: TenantDep) -> list[int]:
        return sorted(_customer_ids(session))  # a query that forgot its tenant filter

    with TestClient(app) as client:
        for mine, theirs in ((companies.a, companies.b), (companies.b, companies.a)):
            seen = client.get("/v1/rls-probe", headers={"Authorization": f"Bearer {mine.key}"})
            assert seen.status_code == 200, seen.text
            assert mine.customer_id in seen.json()
            assert theirs.customer_id not in seen.json()
        listed = client.get("/v1/customers", headers={"Authorization": f"Bearer {companies.a.key}"})
        assert listed.status_code == 200, listed.text  # the ordinary routes work as the app role
        assert "13800138001" in listed.text and "13800138002" not in listed.text


def test_the_cli_creates_an_app_role_bound_by_row_security(postgres_database, monkeypatch):
    from typer.testing import CliRunner

    from huifang.cli import app as cli
    from huifang.settings import get_settings

    role = f"huifang_cli_test_{os.getpid()}"
    monkeypatch.setenv("HUIFANG_DATABASE_URL", postgres_database.url)
    monkeypatch.setenv("HUIFANG_DATABASE_APP_PASSWORD", "cli-test-password-1")
    get_settings.cache_clear()
    owner = create_engine(postgres_database.url)  # the run's engine may be the app role's
    try:
        result = CliRunner().invoke(cli, ["db", "create-app-role", "--role", role])
        assert result.exit_code == 0, result.output
        assert f"HUIFANG_DATABASE_APP_URL=postgresql+psycopg://{role}:***@" in result.output
        assert "cli-test-password-1" not in result.output
        with owner.connect() as connection:
            roles = dict(
                connection.execute(
                    text("SELECT rolname, rolbypassrls FROM pg_roles WHERE rolname IN (:a, :b)"),
                    {"a": role, "b": rls.maintenance_role(role)},
                ).all()
            )
        assert roles == {role: False, rls.maintenance_role(role): True}
        short = CliRunner().invoke(
            cli, ["db", "create-app-role", "--role", role, "--password", "short"]
        )
        assert short.exit_code == 1 and "12 characters" in short.output
    finally:
        get_settings.cache_clear()
        with owner.connect() as connection:
            connection.execute(text(f'DROP OWNED BY "{role}", "{rls.maintenance_role(role)}"'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{rls.maintenance_role(role)}"'))
            connection.commit()
        owner.dispose()


@task(queue="default", company=(Customer, "customer_id"))
def _customers_a_task_sees(*, session, customer_id: int) -> list[list[int]]:
    """A task that forgot its tenant filter, before and after a commit of its own."""
    first = sorted(_customer_ids(session))
    session.commit()
    return [first, sorted(_customer_ids(session))]


def test_a_task_sees_only_the_company_of_its_row_in_every_transaction(app_database, companies):
    set_database(app_database)
    try:
        for mine, theirs in ((companies.a, companies.b), (companies.b, companies.a)):
            seen = _customers_a_task_sees.apply(kwargs={"customer_id": mine.customer_id}).get()
            for transaction in seen:
                assert mine.customer_id in transaction
                assert theirs.customer_id not in transaction
    finally:
        huifang.db._database = None


def test_a_periodic_loop_does_each_company_under_its_scope(app_database, companies):
    seen: dict[int, set[int]] = {}
    with app_database.session() as session:
        failed = each_on_its_own(
            session,
            "rls-probe",
            [companies.a.id, companies.b.id],
            lambda tenant_id: seen.setdefault(tenant_id, _customer_ids(session)),
            what="tenant_id",
            scope=rls.COMPANIES,
        )
        assert failed == []
        # The loop itself, before and after, is the scheduler's unscoped scan.
        assert {companies.a.customer_id, companies.b.customer_id} <= _customer_ids(session)
    a, b = companies.a, companies.b
    assert a.customer_id in seen[a.id] and b.customer_id not in seen[a.id]
    assert b.customer_id in seen[b.id] and a.customer_id not in seen[b.id]
    with app_database.session() as session:  # by a row's id: its company's scope
        failed = each_on_its_own(
            session,
            "rls-probe",
            [b.customer_id],
            lambda customer_id: seen.__setitem__(0, _customer_ids(session)),
            what="customer_id",
            scope=Customer,
        )
        assert failed == [] and b.customer_id in seen[0] and a.customer_id not in seen[0]


def test_rows_of_several_companies_are_grouped_by_company(app_database, companies):
    a, b = companies.a, companies.b
    with app_database.session() as session:
        groups = rls.by_tenant(session, Customer, [b.customer_id, a.customer_id])
    assert groups == {b.id: [b.customer_id], a.id: [a.customer_id]}


def test_a_public_link_names_its_company_for_the_rest_of_the_request(
    app_database, postgres_database, companies
):
    a, b = companies.a, companies.b
    with postgres_database.session() as session:  # as the owner
        link = links.link_for(
            session=session,
            tenant=session.get(Tenant, a.id),
            customer=session.get(Customer, a.customer_id),
            source_type="rls_probe",
            source_id="1",
            now=utcnow(),
        )
        token = link.token
    with app_database.session() as session:
        assert {a.customer_id, b.customer_id} <= _customer_ids(session)  # not yet known
        assert links.resolve(session=session, token=token) is not None
        assert rls.scoped_to(session) == a.id
        seen = _customer_ids(session)  # a query that forgot its tenant filter
        assert a.customer_id in seen and b.customer_id not in seen
