"""The office at work: 20 clients, mixed reads and writes (DESIGN.md, Targets: embedded p99 <
250 ms, 0 errors).

    .venv/bin/python bench/load.py [--clients 20] [--seconds 30] [--rounds 5]
        [--database postgresql://…] [--redis redis://…] [--workers 2] [--only MODE]

Starts the real service on a loopback port with one company, its API key, customers, staff,
visits and messages, then runs ``--clients`` clients, each with one request in flight at a
time (a closed loop: bounded, never an open-loop flood), for ``--seconds``. Each client loops
over office work in fixed proportions: the customer list (paged), a customer's page, the
visits list, a customer's messages, a new customer, a change to a customer, a new visit.

Modes: embedded (``huifang.asgi:app`` on SQLite with its in-process worker and scheduler, as
``huifang serve`` runs it) always; with ``--database`` (a PostgreSQL server URL) and
``--redis`` also distributed (``--workers`` API processes, one Celery worker and the
scheduler). Rounds interleave the modes; each round starts the server afresh and drives
``--warmup`` seconds of the same load before the measured window. Each round prints
p50/p99/max latency, throughput, errors (with the first few answers) and CPU per request of
every process involved: the server's processes, PostgreSQL's backends, the load generator.
At the end, per mode, the median and the spread (min–max) over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch import scratch_database
from serving import (
    Connection,
    PostgresBackends,
    cpu_seconds,
    free_port,
    http_request,
    process_tree,
    start_server,
    start_workers,
    stop,
)

from customers import service as customers
from customers.importer import ImportedRow
from customers.models import Customer
from huifang.db import Database, utcnow
from huifang.migrate import upgrade
from messaging import service as outbox
from tenancy import service as tenancy
from visits import service as visits

# What the office does, and how often (out of 100).
MIX = {
    "list customers": 20,
    "read customer": 20,
    "list visits": 10,
    "customer messages": 15,
    "new customer": 10,
    "change customer": 15,
    "new visit": 10,
}
WRITES = {"new customer", "change customer", "new visit"}
SHOWN_ERRORS = 5


@dataclass
class Company:
    key: str
    customer_ids: list[int]
    staff_ids: list[int]


def prepare(url: str, count: int) -> Company:
    """A company with ``count`` customers, 5 staff, a visit for every fourth customer and a
    scheduled message for every third (due in a month: the dispatcher leaves them)."""
    database = Database(url)
    with database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="压测家政", signature="压测家政")
        _, key = tenancy.create_api_key(session=session, tenant=tenant, name="load")
        staff = [
            visits.create_staff(session=session, tenant=tenant, name=f"阿姨{i}") for i in range(5)
        ]
        customers.upsert_rows(
            session=session,
            tenant=tenant,
            rows=[
                ImportedRow(line=i + 2, name=f"客户{i}", phone=f"139{i:08d}") for i in range(count)
            ],
        )
        people = list(
            session.scalars(
                select(Customer).where(Customer.tenant_id == tenant.id).order_by(Customer.id)
            )
        )
        finished = utcnow()
        for i, person in enumerate(people):
            if i % 4 == 0:
                visits.create_visit(
                    session=session,
                    tenant=tenant,
                    customer_id=person.id,
                    staff_id=staff[i % 5].id,
                    service_type="ac_cleaning",
                    areas=["客厅", "主卧"],
                    finished_at=finished,
                )
            if i % 3 == 0:
                outbox.schedule(
                    session=session,
                    tenant=tenant,
                    customer=person,
                    channel="sms",
                    category="service",
                    source_type="visit_report",
                    source_id=f"load-{i}",
                    body="您好，本次空调清洗的服务报告已生成。",
                    due_at=finished.replace(year=finished.year + 1),
                )
        company = Company(
            key=key, customer_ids=[p.id for p in people], staff_ids=[s.id for s in staff]
        )
    database.dispose()
    return company


def customer_count(url: str) -> int:
    database = Database(url)
    with database.session() as session:
        count = session.scalar(select(func.count()).select_from(Customer))
    database.dispose()
    return int(count or 0)


@dataclass
class Outcome:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    shown: list[str] = field(default_factory=list)
    created: int = 0
    server_errors: int = 0  # tracebacks in the server's log
    locked: int = 0  # "database is locked" in the server's log

    def all(self) -> list[float]:
        return [x for values in self.latencies.values() for x in values]


class Office:
    """One client: one connection, one request at a time, office work in MIX's proportions."""

    def __init__(self, port: int, company: Company, client: int, round_: int) -> None:
        self.port = port
        self.company = company
        self.connection = Connection(port)
        self.random = random.Random(client * 1000 + round_)
        self.kinds = self.random.choices(list(MIX), weights=list(MIX.values()), k=100_000)
        self.prefix = f"136{round_ % 10}{client:02d}"
        self.made = 0
        self.headers = {"Authorization": f"Bearer {company.key}"}
        self.json_headers = {**self.headers, "Content-Type": "application/json"}

    def _customer(self) -> int:
        return self.random.choice(self.company.customer_ids)

    def request(self, kind: str) -> tuple[bytes, int]:
        """The request for ``kind`` and the status that means success."""
        port, rnd = self.port, self.random
        if kind == "list customers":
            offset = rnd.randrange(max(1, len(self.company.customer_ids) - 20))
            return http_request(
                port, "GET", f"/v1/customers?limit=20&offset={offset}", headers=self.headers
            ), 200
        if kind == "read customer":
            return http_request(
                port, "GET", f"/v1/customers/{self._customer()}", headers=self.headers
            ), 200
        if kind == "list visits":
            offset = rnd.randrange(max(1, len(self.company.customer_ids) // 4 - 20))
            return http_request(
                port, "GET", f"/v1/visits?limit=20&offset={offset}", headers=self.headers
            ), 200
        if kind == "customer messages":
            return http_request(
                port, "GET", f"/v1/messages?customer_id={self._customer()}", headers=self.headers
            ), 200
        if kind == "new customer":
            self.made += 1
            body = {
                "name": f"新客户{self.prefix}{self.made}",
                "phone": f"{self.prefix}{self.made:05d}",
                "tags": ["新客"],
            }
            return http_request(
                port,
                "POST",
                "/v1/customers",
                headers=self.json_headers,
                body=json.dumps(body).encode(),
            ), 201
        if kind == "change customer":
            body = {"notes": f"周{rnd.randrange(1, 8)}上午方便，{rnd.randrange(1000)}"}
            return http_request(
                port,
                "PATCH",
                f"/v1/customers/{self._customer()}",
                headers=self.json_headers,
                body=json.dumps(body).encode(),
            ), 200
        visit: dict[str, object] = {
            "customer_id": self._customer(),
            "staff_id": rnd.choice(self.company.staff_ids),
            "service_type": "ac_cleaning",
            "areas": ["客厅"],
            "finished_at": utcnow().isoformat(),
        }
        return http_request(
            port, "POST", "/v1/visits", headers=self.json_headers, body=json.dumps(visit).encode()
        ), 201

    async def work(self, until: float, outcome: Outcome, step: int) -> int:
        """Requests until the clock passes ``until``; the next step of the mix."""
        while time.perf_counter() < until:
            kind = self.kinds[step % len(self.kinds)]
            step += 1
            request, expected = self.request(kind)
            started = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(self.connection.exchange(request), 60)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                status, body = 0, repr(exc).encode()
            outcome.latencies.setdefault(kind, []).append(time.perf_counter() - started)
            if status != expected:
                outcome.errors[f"{kind}: {status}"] += 1
                if len(outcome.shown) < SHOWN_ERRORS:
                    outcome.shown.append(f"{kind} → {status} {body[:300].decode(errors='replace')}")
            elif kind == "new customer":
                outcome.created += 1
        return step


def quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class Round:
    requests: int
    seconds: float
    p50: float
    p99: float
    max: float
    read_p99: float
    write_p99: float
    errors: int
    server_cpu: float  # seconds, over the measured window
    postgres_cpu: float
    client_cpu: float
    load_average: float  # of the machine, over the last minute, at the end


async def drive(
    port: int,
    company: Company,
    clients: int,
    round_: int,
    warmup: float,
    seconds: float,
    server_pids: list[int],
    backends: PostgresBackends | None,
) -> tuple[Round, Outcome]:
    offices = [Office(port, company, i, round_) for i in range(clients)]
    steps = [0] * clients
    try:
        warm = Outcome()
        until = time.perf_counter() + warmup
        steps = list(
            await asyncio.gather(
                *(o.work(until, warm, s) for o, s in zip(offices, steps, strict=True))
            )
        )
        if warm.errors:
            print(f"  warm-up errors: {dict(warm.errors)}; {warm.shown[:2]}")
        outcome = Outcome()
        server0 = cpu_seconds(server_pids)
        if backends:
            backends.start()
        client0 = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(
            *(o.work(started + seconds, outcome, s) for o, s in zip(offices, steps, strict=True))
        )
        elapsed = time.perf_counter() - started
        client = time.process_time() - client0
        server = cpu_seconds(server_pids) - server0
        postgres = backends.used() if backends else 0.0
    finally:
        for office in offices:
            office.connection.close()
    outcome.created += warm.created
    every = outcome.all()
    reads = [x for k, v in outcome.latencies.items() if k not in WRITES for x in v]
    writes = [x for k, v in outcome.latencies.items() if k in WRITES for x in v]
    return Round(
        requests=len(every),
        seconds=elapsed,
        p50=quantile(every, 50),
        p99=quantile(every, 99),
        max=max(every),
        read_p99=quantile(reads, 99),
        write_p99=quantile(writes, 99),
        errors=sum(outcome.errors.values()),
        server_cpu=server,
        postgres_cpu=postgres,
        client_cpu=client,
        load_average=os.getloadavg()[0],
    ), outcome


def describe(mode: str, number: int, result: Round, outcome: Outcome) -> str:
    per = 1000 / max(1, result.requests)
    lines = [
        f"round {number} {mode}: {result.requests} requests in {result.seconds:.1f} s, "
        f"{result.requests / result.seconds:.0f}/s; p50 {result.p50 * 1000:.1f} ms, "
        f"p99 {result.p99 * 1000:.1f} ms (reads {result.read_p99 * 1000:.1f}, writes "
        f"{result.write_p99 * 1000:.1f}), max {result.max * 1000:.1f} ms; errors "
        f"{result.errors}; CPU per request: server {result.server_cpu * per:.2f} ms"
        + (f", PostgreSQL {result.postgres_cpu * per:.2f} ms" if result.postgres_cpu else "")
        + f", load generator {result.client_cpu * per:.2f} ms; machine load average "
        f"{result.load_average:.1f}"
    ]
    if outcome.server_errors or outcome.locked:
        lines.append(
            f"  server log (warm-up included): {outcome.server_errors} tracebacks, "
            f'"database is locked" {outcome.locked} times'
        )
    lines.append(
        "  p50/p99 ms by kind: "
        + "; ".join(
            f"{kind} {quantile(values, 50) * 1000:.1f}/{quantile(values, 99) * 1000:.0f}"
            for kind, values in sorted(
                outcome.latencies.items(), key=lambda kv: list(MIX).index(kv[0])
            )
        )
    )
    lines += [f"  error {kind} ×{n}" for kind, n in outcome.errors.most_common()]
    lines += [f"  answer: {shown}" for shown in outcome.shown]
    return "\n".join(lines)


def spread(values: list[float], unit: float = 1.0, digits: int = 1) -> str:
    scaled = [v * unit for v in values]
    return (
        f"{statistics.median(scaled):.{digits}f} "
        f"({min(scaled):.{digits}f}–{max(scaled):.{digits}f})"
    )


def summary(mode: str, results: list[Round]) -> str:
    per = [1000 / max(1, r.requests) for r in results]
    throughput = [r.requests / r.seconds for r in results]
    text = (
        f"{mode}, {len(results)} rounds, median (min–max): throughput "
        f"{spread(throughput, digits=0)}/s; p50 {spread([r.p50 for r in results], 1000)} "
        f"ms; p99 {spread([r.p99 for r in results], 1000)} ms; max "
        f"{spread([r.max for r in results], 1000)} ms; errors "
        f"{sum(r.errors for r in results)} in all; server CPU "
        f"{spread([r.server_cpu * p for r, p in zip(results, per, strict=True)], 1, 2)} "
        "ms/request"
    )
    if any(r.postgres_cpu for r in results):
        text += (
            ", PostgreSQL "
            + spread([r.postgres_cpu * p for r, p in zip(results, per, strict=True)], 1, 2)
            + " ms/request"
        )
    return text + f"; machine load average {spread([r.load_average for r in results])}"


def run_round(
    mode: str,
    url: str,
    redis_url: str | None,
    workers: int,
    company: Company,
    args: argparse.Namespace,
    number: int,
) -> tuple[Round, Outcome]:
    """One round on a freshly started service: its warm-up, then the measured window."""
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    backends = PostgresBackends(url) if make_url(url).get_backend_name() == "postgresql" else None
    with tempfile.TemporaryFile() as log:
        try:
            processes.append(start_server(url, port, redis_url, workers, log=log))
            if redis_url:
                processes += start_workers(url, redis_url)
            pids = [pid for process in processes for pid in process_tree(process.pid)]
            result, outcome = asyncio.run(
                drive(
                    port, company, args.clients, number, args.warmup, args.seconds, pids, backends
                )
            )
        finally:
            stop(processes)
            if backends:
                backends.close()
        log.seek(0)
        text = log.read().decode(errors="replace")
    outcome.server_errors = text.count("Exception in ASGI application")
    outcome.locked = text.count("database is locked")
    return result, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="seconds of the same load before each measured window",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--database", help="PostgreSQL server URL: also the distributed mode")
    parser.add_argument("--redis", help="Redis URL for the distributed mode")
    parser.add_argument(
        "--workers", type=int, default=2, help="API processes in distributed mode (default 2)"
    )
    parser.add_argument("--only", choices=["embedded", "distributed"])
    args = parser.parse_args()
    modes = ["embedded", "distributed"] if args.database else ["embedded"]
    if args.only:
        modes = [args.only]
    if "distributed" in modes and not (args.database and args.redis):
        raise SystemExit("the distributed mode needs --database (PostgreSQL) and --redis")
    with (
        scratch_database(None, "") as sqlite_url,
        (
            scratch_database(args.database, "huifang_bench_load")
            if args.database
            else contextlib.nullcontext("")
        ) as postgres_url,
    ):
        urls = {"embedded": sqlite_url, "distributed": postgres_url}
        companies = {}
        for mode in modes:
            upgrade(urls[mode])
            companies[mode] = prepare(urls[mode], args.customers)
        # The load generator must not stall itself: what setting up made is kept out of its
        # cycle collector.
        gc.collect()
        gc.freeze()
        results: dict[str, list[Round]] = {mode: [] for mode in modes}
        before = {mode: customer_count(urls[mode]) for mode in modes}
        created = dict.fromkeys(modes, 0)
        for number in range(1, args.rounds + 1):
            for mode in modes:
                redis_url = args.redis if mode == "distributed" else None
                result, outcome = run_round(
                    mode,
                    urls[mode],
                    redis_url,
                    args.workers if redis_url else 1,
                    companies[mode],
                    args,
                    number,
                )
                results[mode].append(result)
                created[mode] += outcome.created
                print(describe(mode, number, result, outcome), flush=True)
        print(
            f"{args.clients} clients, one request in flight each, {args.seconds:g} s "
            f"measured per round after {args.warmup:g} s of warm-up; mix "
            + ", ".join(f"{k} {v}%" for k, v in MIX.items())
        )
        for mode in modes:
            print(summary(mode, results[mode]))
            lost = before[mode] + created[mode] - customer_count(urls[mode])
            print(
                f"{mode}: new customers answered 201 and not in the database (or the other "
                f"way round): {lost} (must be 0)"
            )
        print(
            "target (embedded): p99 < 250 ms and 0 errors, judged on the median p99 of the "
            "rounds and the errors of all of them"
        )


if __name__ == "__main__":
    main()
