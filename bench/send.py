"""The send pipeline against a bare HTTP loop, in the same run (DESIGN.md, Targets).

    .venv/bin/python bench/send.py [--messages 300] [--database URL] [--concurrency 2]

A loopback HTTP server that speaks Twilio's Messages API (tests/messaging/twilio_fake.py)
takes the requests. Ours: each message goes through what the send task does — claim
(queued → sending, committed), the compliance gate, rendering, the Twilio adapter's HTTP
call, and recording the outcome (committed). The floor: a bare httpx loop posting the
same form-encoded requests with the same auth to the same server. Both run on the same
number of processes (default 2, the worker's default), with as many requests in flight in
each: the send task's ``HUIFANG_SEND_CONCURRENCY`` calls at once, the bare loop's as many
threads. Prints messages per second for both and the ratio (target ≥ 0.8×).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch import scratch_database

from compliance import service as compliance
from compliance.schemas import PolicyUpdate
from customers import service as customers
from customers.importer import ImportedRow
from huifang.db import Database, utcnow
from huifang.migrate import upgrade
from huifang.settings import get_settings
from messaging import service as outbox
from messaging.models import Message
from messaging.providers.twilio import TwilioProvider
from messaging.tasks import TASK_MESSAGES, send_in_batches
from tenancy import service as tenancy
from tests.messaging.twilio_fake import FakeTwilio


def prepare(database: Database, count: int) -> list[int]:
    """A company, ``count`` customers and one due service message each."""
    with database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="压测家政", signature="压测家政")
        # Send at any hour: the bench measures the pipeline, not the customers' quiet hours.
        compliance.update_policy(
            session=session,
            tenant_id=tenant.id,
            changes=PolicyUpdate(window_start="00:00", window_end="24:00"),
        )
        rows = [ImportedRow(line=i + 2, name=f"客户{i}", phone=f"139{i:08d}") for i in range(count)]
        customers.upsert_rows(session=session, tenant=tenant, rows=rows)
        ids = []
        now = utcnow()
        for person in customers.list_customers(
            session=session, tenant_id=tenant.id, page=customers.PageParams(limit=count, offset=0)
        )[0]:
            message, _ = outbox.schedule(
                session=session,
                tenant=tenant,
                customer=person,
                channel="sms",
                category="service",
                source_type="visit_report",
                source_id="bench",
                body="您好，本次空调清洗的服务报告已生成，请查看：https://hf.example/r/abc123",
                due_at=now,
            )
            ids.append(message.id)
    return ids


# Each worker process's own database, provider and plain HTTP client (ProcessPoolExecutor
# initializer), as each Celery worker process has its own.
_worker: dict[str, Any] = {}


def _start_worker(url: str, fake: dict[str, str]) -> None:
    _worker["database"] = database = Database(url)
    with database.engine.connect() as connection:
        connection.exec_driver_sql("SELECT 1")  # connected before the clock starts
    _worker["provider"] = TwilioProvider(
        account_sid=fake["account_sid"],
        auth_token=fake["auth_token"],
        api_base=fake["base_url"],
        from_number=fake["from_number"],
    )
    _worker["client"] = httpx.Client(auth=(fake["account_sid"], fake["auth_token"]), timeout=15)
    _worker["fake"] = fake


def _ready(_: int) -> int:
    return os.getpid()


def _send_task(chunk: list[int]) -> None:
    """One send task's body (``messaging.tasks.send_messages``) with the bench provider."""
    with _worker["database"].session() as session:
        send_in_batches(session=session, message_ids=chunk, provider=_worker["provider"])


def _post_range(numbers: range) -> None:
    """The floor: the same requests, posted by plain httpx loops, as many at once in this
    process as the send task makes (``send_concurrency``)."""
    at_once = get_settings().send_concurrency
    with ThreadPoolExecutor(at_once) as loops:
        list(loops.map(_post_loop, [numbers[i::at_once] for i in range(at_once)]))


def _post_loop(numbers: range) -> None:
    fake, client = _worker["fake"], _worker["client"]
    for i in numbers:
        response = client.post(
            fake["messages_url"],
            data={
                "To": f"+86139{i:08d}",
                "From": fake["from_number"],
                "Body": "【压测家政】您好，本次空调清洗的服务报告已生成，请查看："
                "https://hf.example/r/abc123",
                "StatusCallback": "http://localhost:8000/hooks/twilio/status",
            },
        )
        response.raise_for_status()


def pipeline(database: Database, pool: ProcessPoolExecutor) -> int:
    """Dispatch and send every due message as the tasks do; returns how many were sent.

    The dispatcher's claim, then its send tasks (``TASK_MESSAGES`` each) on the pool's
    worker processes, as that many Celery worker processes would take them.
    """
    with database.session() as session:
        ids = outbox.claim_due(session=session, now=utcnow(), limit=100_000)
    chunks = [ids[i : i + TASK_MESSAGES] for i in range(0, len(ids), TASK_MESSAGES)]
    for done in pool.map(_send_task, chunks):
        assert done is None
    with database.sessionmaker() as session:
        return session.query(Message).filter(Message.status == "sent").count()


def bare_loop(pool: ProcessPoolExecutor, count: int, concurrency: int) -> None:
    list(pool.map(_post_range, [range(i, count, concurrency) for i in range(concurrency)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--database", help="PostgreSQL URL; default a temporary SQLite file")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="how long the fake provider takes to answer (default 0: loopback "
        "only; Twilio's API answers in roughly 100-300 ms)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=2,
        help="worker processes for both the pipeline and the bare loop "
        "(default 2, the worker's default)",
    )
    args = parser.parse_args()
    with scratch_database(args.database, "huifang_bench_send") as url:
        upgrade(url)
        database = Database(url)
        ids = prepare(database, args.messages)
        database.dispose()  # the workers connect on their own
        with FakeTwilio(latency=args.latency_ms / 1000) as fake:
            params = {
                "account_sid": fake.account_sid,
                "auth_token": fake.auth_token,
                "base_url": fake.base_url,
                "from_number": fake.from_number,
                "messages_url": fake.messages_url,
            }
            with ProcessPoolExecutor(
                args.concurrency,
                mp_context=get_context("spawn"),
                initializer=_start_worker,
                initargs=(url, params),
            ) as pool:
                list(pool.map(_ready, range(args.concurrency * 4)))  # every worker up
                bare_loop(pool, 20 * args.concurrency, args.concurrency)  # warm up
                started = time.perf_counter()
                bare_loop(pool, len(ids), args.concurrency)
                floor = time.perf_counter() - started
                started = time.perf_counter()
                sent = pipeline(database, pool)
                ours = time.perf_counter() - started
        database.dispose()
    assert sent == len(ids), f"only {sent} of {len(ids)} sent"
    backend = make_url(url).get_backend_name()
    print(
        f"backend: {backend}; {len(ids)} service messages to a loopback Twilio fake "
        f"answering in {args.latency_ms:g} ms; {args.concurrency} processes, "
        f"{get_settings().send_concurrency} calls at once in each"
    )
    print(
        f"pipeline: {len(ids) / ours:.0f} msg/s; bare httpx loop: {len(ids) / floor:.0f} "
        f"msg/s; ratio {floor / ours:.2f}x of the bare loop's throughput"
    )


if __name__ == "__main__":
    main()
