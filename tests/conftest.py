"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

Each test runs inside a transaction that is rolled back (services flush, the request
dependency "commits" a savepoint). Tests that need really committed rows (a worker in
another process, the CLI) use ``committed_db`` and clean up after themselves.

PostgreSQL and Redis tests skip with a reason when the servers are not running, and
fail instead when HUIFANG_REQUIRE_SERVICES=1 (as in CI).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("HUIFANG_ENVIRONMENT", "test")
# Uploads and renditions of the run go to a directory of their own, never ./var.
os.environ["HUIFANG_MEDIA_ROOT"] = tempfile.mkdtemp(prefix="huifang-test-media-")
os.environ.pop("HUIFANG_REDIS_URL", None)  # tests choose their mode explicitly

import pytest
import redis
from fastapi import Request
from fastapi.testclient import TestClient
from hypothesis.configuration import set_hypothesis_home_dir
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

import huifang.db
from huifang import deps, rls
from huifang.app import create_app
from huifang.db import Database, set_database
from huifang.migrate import upgrade
from tests.factories import Account, make_account

# Hypothesis's files (example database, caches) too: a run leaves nothing in the work tree.
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="huifang-test-hypothesis-"))

REQUIRE_SERVICES = os.environ.get("HUIFANG_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get(
    "HUIFANG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("HUIFANG_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
# HUIFANG_TEST_RLS=1: the PostgreSQL half of the suite connects as an app role of its own,
# bound by row-level security, as a deployment with HUIFANG_DATABASE_APP_URL does.
TEST_RLS = os.environ.get("HUIFANG_TEST_RLS") == "1"


def _worker_redis_url(url: str, worker: str | None) -> str:
    """Under pytest-xdist each worker gets the next Redis database (gw0 the given one)."""
    if not worker or not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(base + int(worker[2:])) % 16}"))


REDIS_URL = _worker_redis_url(REDIS_URL, os.environ.get("PYTEST_XDIST_WORKER"))


def service_unavailable(what: str, why: object) -> None:
    """Skip, or fail when the run promised the services are there."""
    message = f"{what} is not available ({why}); start it or unset HUIFANG_REQUIRE_SERVICES"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(f"{what} is not running here ({why}); this test needs a real server")


def _postgres_database(tmp_name: str) -> tuple[str, object]:
    """Create an empty database for this run and return its URL and a cleanup."""
    admin_url = make_url(POSTGRES_URL)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{tmp_name}"'))
            connection.execute(text(f'CREATE DATABASE "{tmp_name}"'))
    except Exception as exc:
        admin.dispose()
        service_unavailable("PostgreSQL", exc.__class__.__name__)

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": tmp_name},
            )
            connection.execute(text(f'DROP DATABASE IF EXISTS "{tmp_name}"'))
        admin.dispose()

    return admin_url.set(database=tmp_name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[Database]:
    """A migrated PostgreSQL database of this run's own (for distributed-mode tests)."""
    url, cleanup = _postgres_database(f"huifang_test_{os.getpid()}")
    upgrade(url)  # the schema comes from the migrations, as in production
    app_url, drop_role = app_role(url) if TEST_RLS else (None, None)
    db = Database(url, app_url=app_url)
    yield db
    db.dispose()
    cleanup()  # type: ignore[operator]
    if drop_role:
        drop_role()


def app_role(owner_url: str) -> tuple[str, Callable[[], None]]:
    """An app role for this run (roles are shared by the whole server), and its removal."""
    role = f"huifang_app_test_{os.getpid()}"
    app_url = rls.create_app_role(owner_url, role=role, password=f"pw-{os.getpid()}-rls")

    def drop() -> None:
        admin = create_engine(make_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
                connection.execute(text(f'DROP ROLE IF EXISTS "{rls.maintenance_role(role)}"'))
        finally:
            admin.dispose()

    return app_url, drop


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A migrated SQLite file, as in the embedded mode."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'huifang.db'}"
    upgrade(url)
    db = Database(url)
    yield db
    db.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Database:
    """Each kind of database in turn: tests using it run once on each."""
    name = {"sqlite": "sqlite_database", "postgresql": "postgres_database"}[request.param]
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def backend(database: Database) -> str:
    return database.engine.dialect.name


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    """A session whose every change is rolled back after the test."""
    connection = database.engine.connect()
    outer = connection.begin()
    session = Session(
        bind=connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        info={rls.RLS_INFO: database.rls},
    )
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def committed_db(database: Database) -> Iterator[Database]:
    """The test database, for tests whose rows must really be committed; also made global."""
    set_database(database)
    try:
        yield database
    finally:
        # Forget it without disposing: the engine is shared by the rest of the run.
        huifang.db._database = None


@pytest.fixture
def app(database: Database, session: Session):  # type: ignore[no-untyped-def]
    application = create_app(database=database)

    @contextlib.contextmanager
    def test_unit(read_only: bool = False) -> Iterator[Session]:
        # What the test set up so far leaves this savepoint, so a request that fails and
        # rolls back loses only its own work, as it would with a session of its own.
        session.commit()
        # A request that reads gets a read-only session, as from Database.session.
        outer = session.info.get(huifang.db.READ_ONLY, False)
        session.info[huifang.db.READ_ONLY] = read_only
        try:
            yield session
            session.commit()  # releases the test's savepoint; the outer transaction stays
        except BaseException:
            session.rollback()
            raise
        finally:
            session.info[huifang.db.READ_ONLY] = outer
            # A request's tenant scope ends with its transaction; here the test's own
            # transaction goes on, so end it by hand.
            if session.is_active:
                rls.unscope(session)

    def test_session(request: Request) -> Iterator[Session]:
        with test_unit(read_only=not deps.request_writes(request)) as unit:
            yield unit

    application.dependency_overrides[deps.get_session] = test_session
    application.dependency_overrides[deps.get_unit_of_work] = lambda: test_unit
    return application


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def account(session: Session) -> Account:
    return make_account(session)


@pytest.fixture
def other_account(session: Session) -> Account:
    return make_account(session, signature="另一家政")


@pytest.fixture
def redis_url() -> str:
    """A Redis database of its own, emptied before the test."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        service_unavailable("Redis", exc.__class__.__name__)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(autouse=True)
def _empty_memory_broker() -> Iterator[None]:
    """Tasks a test published to the in-process broker (embedded mode) and nobody ran are
    dropped before the next test: a later test's embedded worker would otherwise work through
    every other module's leftovers first (under xdist, a worker's share of the whole suite)."""
    from kombu.transport import memory

    for queue in list(memory.Channel.queues.values()):
        queue.queue.clear()
    yield
