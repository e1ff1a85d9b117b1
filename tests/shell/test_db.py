"""The engines: the PostgreSQL pool is opened at start and kept; SQLite's writers queue in
order, and read-only sessions refuse writes."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, func, select

import huifang.db
from huifang.db import POOL_SIZE, Database, ReadOnly, WriteQueue
from tenancy import service as tenancy
from tenancy.models import ApiKey


@pytest.mark.services
def test_open_pool_opens_the_connections_a_burst_needs_and_keeps_them(postgres_database):
    database = Database(postgres_database.url)  # a pool of its own, still empty
    try:
        assert database.engine.pool.checkedin() == 0
        assert database.open_pool() == POOL_SIZE
        assert database.engine.pool.checkedin() == POOL_SIZE  # kept open, not closed again
        with database.session() as session:  # and used: no new connection is opened
            session.connection().exec_driver_sql("SELECT 1")
        assert database.engine.pool.checkedin() == POOL_SIZE
    finally:
        database.dispose()


def test_open_pool_opens_nothing_on_sqlite(sqlite_database):
    assert sqlite_database.open_pool() == 0


def test_a_read_only_session_refuses_writes(database: Database) -> None:
    with pytest.raises(ReadOnly), database.session(read_only=True) as session:
        tenancy.create_tenant(session=session, name="只读", signature="只读家政")
    with pytest.raises(ReadOnly), database.session(read_only=True) as session:
        session.execute(ApiKey.__table__.update().values(last_used_at=None))
    with database.session(read_only=True) as session:  # reading is what it is for
        session.scalar(select(func.count()).select_from(ApiKey))


def test_a_writer_that_rolled_back_leaves_the_queue(sqlite_database):
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(RuntimeError), sqlite_database.session() as session:
            session.scalar(select(func.count()).select_from(ApiKey))  # BEGIN IMMEDIATE
            raise RuntimeError("the route failed")
    with sqlite_database.session() as session:  # would wait the busy timeout (10 s)
        session.scalar(select(func.count()).select_from(ApiKey))
    assert time.monotonic() - started < 5


def test_writers_get_the_lock_in_the_order_they_asked() -> None:
    queue = WriteQueue()
    assert queue.acquire(timeout=1)
    assert not queue.acquire(timeout=0.05)  # held: a writer that cannot wait is refused
    order: list[int] = []

    def writer(number: int) -> None:
        assert queue.acquire(timeout=10)
        order.append(number)
        queue.release()

    threads = []
    for number in range(5):
        threads.append(threading.Thread(target=writer, args=(number,)))
        threads[-1].start()
        deadline = time.monotonic() + 5
        while len(queue._waiting) < number + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
    queue.release()
    for thread in threads:
        thread.join(timeout=10)
    assert order == [0, 1, 2, 3, 4]
    assert queue.acquire(timeout=0.05)  # free again


def _pings(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The pings the engine's dialect makes from now on (each still done)."""
    made: list[object] = []
    real = db.engine.dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        made.append(dbapi_connection)
        return real(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    return made


def test_a_connection_just_used_goes_out_without_a_ping(postgres_database, monkeypatch):
    db = Database(postgres_database.url)
    try:
        pings = _pings(db, monkeypatch)
        for _ in range(3):
            with db.engine.connect() as connection:
                assert connection.exec_driver_sql("SELECT 1").scalar() == 1
        assert pings == []  # opened once, then back within the idle threshold twice
        monkeypatch.setattr(huifang.db, "PING_AFTER_IDLE_SECONDS", 0.0)
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1
        assert len(pings) == 1  # idle "long enough": proven alive first
    finally:
        db.dispose()


def test_an_idle_connection_whose_server_end_died_is_replaced(postgres_database, monkeypatch):
    """The server restarted (here: its backend terminated) while the connection sat in the
    pool: the checkout's ping finds it dead, and the work gets a new connection."""
    db = Database(postgres_database.url)
    try:
        with db.engine.connect() as connection:
            first = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        owner = create_engine(postgres_database.url)  # the app role may not end it
        try:
            with owner.connect() as other:
                assert other.exec_driver_sql(f"SELECT pg_terminate_backend({int(first)})").scalar()
                gone = f"SELECT count(*) FROM pg_stat_activity WHERE pid = {int(first)}"
                deadline = time.monotonic() + 10
                while other.exec_driver_sql(gone).scalar():  # signalled; wait for its end
                    assert time.monotonic() < deadline, "the backend did not end"
                    other.rollback()  # a new snapshot of pg_stat_activity
                    time.sleep(0.05)
        finally:
            owner.dispose()
        monkeypatch.setattr(huifang.db, "PING_AFTER_IDLE_SECONDS", 0.0)
        pings = _pings(db, monkeypatch)
        with db.engine.connect() as connection:
            second = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        assert second != first
        assert len(pings) == 1  # the dead one; the new connection is not pinged
    finally:
        db.dispose()
