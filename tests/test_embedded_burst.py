"""Embedded mode under a burst: SQLite's one writer must not starve the thread pool.

A writer's transaction on SQLite takes the write lock at BEGIN, and a sync route opens, uses
and commits its session in three worker-thread calls. With more simultaneous requests than
threads (40), every thread could end up waiting for the lock while the request holding it
waited for a thread to commit in: all of them failed with "database is locked" after the
10 s busy timeout. ``huifang.deps`` queues SQLite sessions for fewer slots than threads.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from customers.models import Customer
from huifang.app import create_app
from huifang.db import Database
from huifang.deps import SQLITE_SESSION_SLOTS
from huifang.migrate import upgrade
from tenancy import service as tenancy

BURST = 120  # three times the worker threads


def test_a_burst_of_writes_on_sqlite_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'burst.db'}"
    upgrade(url)
    database = Database(url)
    with database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="洁家", signature="洁家家政")
        _, key = tenancy.create_api_key(session=session, tenant=tenant, name="burst")
    app = create_app(database=database)
    assert SQLITE_SESSION_SLOTS < 40  # fewer than anyio's default worker threads

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://huifang.test", timeout=60
        ) as client:

            async def create(i: int) -> int:
                answer = await client.post(
                    "/v1/customers",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"name": f"客户{i}", "phone": f"1390000{i:04d}"},
                )
                return answer.status_code

            return await asyncio.gather(*(create(i) for i in range(BURST)))

    started = time.monotonic()
    codes = asyncio.run(burst())
    elapsed = time.monotonic() - started
    try:
        assert codes == [201] * BURST, {code: codes.count(code) for code in set(codes)}
        # Without the slots, the first failures came at the 10 s busy timeout.
        assert elapsed < 10, f"the burst took {elapsed:.1f} s"
        with database.session() as session:
            assert session.scalar(select(func.count()).select_from(Customer)) == BURST
    finally:
        database.dispose()
