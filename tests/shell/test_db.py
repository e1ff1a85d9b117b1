"""The engines: the PostgreSQL pool is opened at start and kept."""

from __future__ import annotations

import pytest

from huifang.db import POOL_SIZE, Database


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
