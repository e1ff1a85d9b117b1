"""Database plumbing: the declarative base, engines for SQLite and PostgreSQL, sessions.

Services receive a session and only ever ``flush()``; the edges (the request
dependency, the task wrapper, the CLI) own the transaction and commit it.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import BigInteger, DateTime, Engine, Integer, MetaData, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from huifang import rls

# Constraint names are fixed so Alembic migrations read the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit keys on PostgreSQL; SQLite only autoincrements a column declared INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """An aware datetime moved to UTC; None stays None, naive values are refused."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime; give a time zone")
    return value.astimezone(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    PostgreSQL keeps the offset (timestamptz); SQLite keeps none, so values are
    normalised to UTC on the way in and marked UTC on the way out. Naive values
    are refused: they are a bug in the caller, not something to guess about.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime()}


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# How long a writer waits for SQLite's write lock: for its turn in this process, then for
# another process (the CLI) to let go.
SQLITE_BUSY_TIMEOUT = 10.0


class WriteQueue:
    """The writers of one SQLite file in this process, served in the order they came.

    SQLite lets a waiting writer poll: its busy handler sleeps (up to 100 ms at a time) and
    tries again, and whoever tries at the right moment wins. Under load some writers kept
    losing until their busy timeout ran out ("database is locked"). Writers of this process
    queue here instead, and the lock is handed to the next one as soon as it is free, so
    only another process's writer ever meets the busy handler.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiting: collections.deque[threading.Lock] = collections.deque()
        self._held = False

    def acquire(self, timeout: float) -> bool:
        """Wait for this writer's turn; False if ``timeout`` seconds passed first."""
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        if turn.acquire(timeout=timeout):
            return True
        with self._mutex:
            if turn in self._waiting:
                self._waiting.remove(turn)
                return False
        return True  # handed over between the timeout and the mutex

    def release(self) -> None:
        """Hand the turn to the next writer waiting, if any."""
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._held = False


_write_queues: dict[str, WriteQueue] = {}
_write_queues_lock = threading.Lock()


def write_queue(path: str) -> WriteQueue:
    """The one queue of this process's writers to the SQLite file at ``path``."""
    key = str(Path(path).resolve())
    with _write_queues_lock:
        return _write_queues.setdefault(key, WriteQueue())


class _SQLiteConnection(sqlite3.Connection):
    """A pysqlite connection that gives up its turn in its file's write queue when its
    transaction ends."""

    write_queue: WriteQueue | None = None
    queued = False  # holds the turn of its write queue

    def wait_for_turn(self) -> None:
        if self.write_queue is None or self.queued:
            return
        if not self.write_queue.acquire(SQLITE_BUSY_TIMEOUT):
            raise sqlite3.OperationalError("database is locked")
        self.queued = True

    def leave_queue(self) -> None:
        """Give up the turn once no transaction is open (COMMIT, ROLLBACK, a failed BEGIN)."""
        if self.queued and not self.in_transaction:
            self._release()

    def _release(self) -> None:
        self.queued = False
        assert self.write_queue is not None
        self.write_queue.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave_queue()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave_queue()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.queued:  # closed in a transaction: SQLite rolled it back
                self._release()


def _configure_sqlite(engine: Engine, path: str | None) -> None:
    # pysqlite opens transactions lazily and never for DDL or SAVEPOINT; take that over
    # so transactions, savepoints and row-level conditional updates behave as on PostgreSQL.
    queue = write_queue(path) if path else None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.write_queue = queue
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the embedded worker
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front, so two writers queue instead of one
        # failing with "database is locked" when it upgrades its lock.
        # Read-only work that must never wait (health checks) asks for DEFERRED.
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        dbapi_connection = connection.connection.dbapi_connection
        if mode != "DEFERRED":
            dbapi_connection.wait_for_turn()
        try:
            connection.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            dbapi_connection.leave_queue()
            raise


# Connections a process keeps open to PostgreSQL (and up to as many more, closed again after
# use). At SQLAlchemy's default of 5, a burst of webhooks kept opening and closing the
# overflow connections, each a new PostgreSQL backend to start and warm (BENCHMARKS.md,
# the opt-out webhook).
POOL_SIZE = 10


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a SQLite file or a PostgreSQL server (psycopg 3)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database if parsed.database and parsed.database != ":memory:" else None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "factory": _SQLiteConnection}, **kwargs
        )
        _configure_sqlite(engine, path)
        return engine
    if parsed.drivername in ("postgresql", "postgres"):
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    kwargs.setdefault("pool_size", POOL_SIZE)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


# A pooled PostgreSQL connection is proven alive with a round trip (SQLAlchemy's ping, a
# ``SELECT 1``) before use only when it has sat in the pool this long. One that served a
# request a moment ago is as alive as a ping would show: pinging it anyway was a fifth
# round trip on the opt-out webhook's four, ~0.1 ms of our CPU and as much of PostgreSQL's
# per webhook (BENCHMARKS.md). A restarted server, a dropped link or an idle timeout
# (PgBouncer, a firewall) shows on a connection that sat idle, which is still pinged.
PING_AFTER_IDLE_SECONDS = 2.0
_IDLE_SINCE = "huifang_idle_since"


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def idle(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return  # just opened, or just used
        dialect = engine.dialect
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                # The pool drops this connection and checks out another (a new one when
                # the server restarted), as its own pre-ping does.
                raise sa_exc.DisconnectionError(str(error)) from error
            raise


class Database:
    """An engine and the session factories bound to it.

    ``app_url`` (PostgreSQL): sessions connect as the application's role, which row-level
    security binds (``huifang.rls``); ``url`` stays the owner's, for migrations.
    """

    def __init__(self, url: str, *, app_url: str | None = None) -> None:
        self.url = url
        self.rls = bool(app_url) and not url.startswith("sqlite")
        self.engine = make_engine(app_url if self.rls and app_url else url)
        info: dict[str, Any] = {rls.RLS_INFO: True} if self.rls else {}
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False, info=info)
        # On SQLite a reader takes no write lock, so it neither waits for writers nor makes
        # them wait (WAL: it reads the snapshot of its first statement).
        self.read_sessionmaker = sessionmaker(
            self.engine.execution_options(sqlite_begin="DEFERRED"),
            expire_on_commit=False,
            info={**info, READ_ONLY: True},
        )

    @contextlib.contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """A unit of work: commit on success, roll back on error, always close.

        ``read_only``: the work only reads, and any write in it is refused (``ReadOnly``);
        on SQLite its transaction then takes no write lock.
        """
        session = (self.read_sessionmaker if read_only else self.sessionmaker)()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def open_pool(self) -> int:
        """Open the pool's connections now (PostgreSQL): a burst of webhooks right after a
        start then finds them open, instead of each waiting for a new server backend. The
        number opened (SQLite: none; it has no server to wait for)."""
        if self.engine.dialect.name == "sqlite":
            return 0
        connections = []
        try:
            for _ in range(POOL_SIZE):
                connections.append(self.engine.connect())
        finally:
            for connection in connections:
                connection.close()  # back into the pool, which keeps POOL_SIZE of them
        return len(connections)

    def dispose(self) -> None:
        self.engine.dispose()


_lock = threading.Lock()
_database: Database | None = None


def get_database() -> Database:
    """The process-wide database, built from settings on first use."""
    global _database
    with _lock:
        if _database is None:
            from huifang.settings import get_settings

            settings = get_settings()
            _database = Database(settings.database_url, app_url=settings.database_app_url)
        return _database


def set_database(database: Database | None) -> None:
    """Replace the process-wide database (tests, CLI ``--database``)."""
    global _database
    with _lock:
        if _database is not None and _database is not database:
            _database.dispose()
        _database = database


def insert_or_skip(dialect: str, table: Any) -> Any:
    """An INSERT into ``table`` in ``dialect`` (a session's ``get_bind().dialect.name``),
    so it can say ``ON CONFLICT DO NOTHING`` (PostgreSQL and SQLite spell it the same)."""
    return postgresql_insert(table) if dialect == "postgresql" else sqlite_insert(table)


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


def read_only_connection(engine: Engine) -> Any:
    """A connection for reads that must not queue behind writers (no write lock on SQLite)."""
    return engine.connect().execution_options(sqlite_begin="DEFERRED")


# ``Session.info`` key: the session was opened to read only.
READ_ONLY = "read_only"


class ReadOnly(RuntimeError):
    """A write in a session opened to read only: a bug in the caller, never the user's.

    On SQLite such a transaction holds no write lock, and taking it mid-transaction fails
    ("database is locked") whenever another writer got there first: refused always, so that
    tests find it, rather than under load.
    """


def _refuse_write(session: Session, what: str) -> None:
    raise ReadOnly(
        f"{what} in a session opened to read only; a request that writes on GET "
        "must say so (huifang.deps.writes)"
    )


@event.listens_for(Session, "before_flush")
def _no_flush_when_read_only(session: Session, _context: Any, _instances: Any) -> None:
    if session.info.get(READ_ONLY) and (
        session.new or session.deleted or any(session.is_modified(obj) for obj in session.dirty)
    ):
        _refuse_write(session, "changed objects flushed")


@event.listens_for(Session, "do_orm_execute")
def _no_dml_when_read_only(state: Any) -> None:
    if state.session.info.get(READ_ONLY) and (
        state.is_insert or state.is_update or state.is_delete
    ):
        _refuse_write(state.session, "an INSERT, UPDATE or DELETE")


def on_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction has committed, never if it rolls back.

    This is how work is enqueued: a task must never see a row that is not there yet.
    """
    if not session.in_transaction():
        session.begin()  # the callback belongs to a transaction, so a rollback can drop it
    callbacks: list[Callable[[], None]] = session.info.setdefault("on_commit", [])
    callbacks.append(callback)


@event.listens_for(Session, "after_commit")
def _run_on_commit(session: Session) -> None:
    callbacks = session.info.pop("on_commit", [])
    for callback in callbacks:
        callback()


@event.listens_for(Session, "after_soft_rollback")
def _drop_on_commit(session: Session, previous_transaction: Any) -> None:
    # Fires on every rollback() call, even with no transaction begun; a savepoint's
    # rollback leaves the outer transaction, and its callbacks, in place.
    if not previous_transaction.nested:
        session.info.pop("on_commit", None)


__all__ = [
    "Base",
    "BigId",
    "Database",
    "ReadOnly",
    "TimestampMixin",
    "UTCDateTime",
    "get_database",
    "on_commit",
    "set_database",
    "utcnow",
]
