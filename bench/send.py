"""The send pipeline against a bare HTTP loop, in the same run (DESIGN.md, Targets).

    .venv/bin/python bench/send.py [--messages 300] [--database URL] [--concurrency 2]
        [--latency-ms 0] [--rounds 5]

A loopback HTTP server that speaks Twilio's Messages API (tests/messaging/twilio_fake.py)
takes the requests. Ours: each message goes through what the send task does — claim
(queued → sending, committed), the compliance gate, rendering, the Twilio adapter's HTTP
call, and recording the outcome (committed). The floor: a bare httpx loop posting the
same form-encoded requests with the same auth to the same server. Both run on the same
number of processes (default 2, the worker's default), with as many requests in flight in
each: the send task's ``HUIFANG_SEND_CONCURRENCY`` calls at once, the bare loop's as many
threads. Runs ``--rounds`` interleaved rounds (bare loop, pipeline, …; bench/rounds.py),
each on fresh due messages, and prints messages per second and CPU per message for both
(the bench process with the fake provider, the worker processes and, on PostgreSQL, its
backends; PostgreSQL's share printed apart), median (min–max) of the ratios. Every
message a round leaves in a state other than ``sent`` is printed with its status, reason
and detail.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rounds
from scratch import scratch_database
from serving import PostgresBackends

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


def prepare(database: Database, count: int, round_: int = 0) -> tuple[int, list[int]]:
    """A company, ``count`` customers and one due service message each: its id and theirs."""
    with database.session() as session:
        tenant = tenancy.create_tenant(
            session=session, name=f"压测家政{round_}", signature="压测家政"
        )
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
        tenant_id = tenant.id
    return tenant_id, ids


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


def pipeline(database: Database, pool: ProcessPoolExecutor) -> None:
    """Dispatch and send every due message as the tasks do.

    The dispatcher's claim, then its send tasks (``TASK_MESSAGES`` each) on the pool's
    worker processes, as that many Celery worker processes would take them.
    """
    with database.session() as session:
        ids = outbox.claim_due(session=session, now=utcnow(), limit=100_000)
    chunks = [ids[i : i + TASK_MESSAGES] for i in range(0, len(ids), TASK_MESSAGES)]
    for done in pool.map(_send_task, chunks):
        assert done is None


def not_sent(database: Database, tenant_id: int) -> list[str]:
    """Every message of the round's company that did not end ``sent``, and why."""
    with database.sessionmaker() as session:
        rows = (
            session.query(Message)
            .filter(Message.tenant_id == tenant_id, Message.status != "sent")
            .order_by(Message.id)
            .all()
        )
        return [
            f"message {m.id}: {m.status} ({m.status_reason or 'no reason'}; "
            f"{m.attempts} attempt(s); due {m.due_at:%H:%M:%S.%f}) {m.status_detail or ''}"
            for m in rows
        ]


def bare_loop(pool: ProcessPoolExecutor, count: int, concurrency: int) -> None:
    list(pool.map(_post_range, [range(i, count, concurrency) for i in range(concurrency)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=rounds.MIN_ROUNDS)
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
    result = rounds.Rounds(per=args.messages)
    postgres_cpu: list[float] = []
    failures: list[str] = []
    with scratch_database(args.database, "huifang_bench_send") as url:
        upgrade(url)
        database = Database(url)
        backends = PostgresBackends(url) if args.database else None
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
                workers = set(pool.map(_ready, range(args.concurrency * 4)))  # every worker up
                bare_loop(pool, 20 * args.concurrency, args.concurrency)  # warm up

                def cpu() -> float:
                    # This process (the fake provider's threads, the claim) and the workers;
                    # PostgreSQL's backends are added per round below.
                    return rounds.self_cpu() + rounds.proc_cpu(workers)

                for round_ in range(max(args.rounds, rounds.MIN_ROUNDS)):
                    tenant_id, ids = prepare(database, args.messages, round_)
                    floor = rounds.measure(
                        lambda ids=ids: bare_loop(pool, len(ids), args.concurrency), cpu
                    )
                    if backends:
                        backends.start()
                    ours = rounds.measure(lambda: pipeline(database, pool), cpu)
                    database_cpu = backends.used() if backends else 0.0
                    postgres_cpu.append(database_cpu)
                    ours = rounds.Sample(wall=ours.wall, cpu=ours.cpu + database_cpu)
                    result.add(floor, ours)
                    failures += [
                        f"round {round_ + 1}: {line}" for line in not_sent(database, tenant_id)
                    ]
        if backends:
            backends.close()
        database.dispose()
    backend = make_url(url).get_backend_name()
    print(
        f"backend: {backend}; {args.messages} service messages a round to a loopback Twilio "
        f"fake answering in {args.latency_ms:g} ms; {args.concurrency} processes, "
        f"{get_settings().send_concurrency} calls at once in each"
    )
    throughput = rounds.spread(args.messages / s.wall for s in result.ours)
    bare = rounds.spread(args.messages / s.wall for s in result.floor)
    speed = rounds.spread(1 / r for r in result.ratios("wall"))
    print(
        f"throughput: pipeline {throughput.text('{:.0f}')} msg/s; bare httpx loop "
        f"{bare.text('{:.0f}')} msg/s; ratio {speed.text(unit='×')} of the bare loop's "
        f"[{len(result.ours)} rounds, median (min–max)]"
    )
    for line in result.lines(headline="cpu"):
        print(line.replace("ms,", "ms/msg,", 1))
    if backends:
        share = rounds.spread(c / args.messages * 1000 for c in postgres_cpu)
        print(f"of ours, PostgreSQL's backends: {share.text(unit=' ms/msg')}")
    extra = rounds.spread(
        (o.cpu - f.cpu) / args.messages * 1000
        for f, o in zip(result.floor, result.ours, strict=True)
    )
    print(f"our part (CPU ours - floor): {extra.text(unit=' ms/msg')}")
    for line in failures:
        print(line)
    if failures:
        raise SystemExit(f"{len(failures)} messages did not end sent")


if __name__ == "__main__":
    main()
