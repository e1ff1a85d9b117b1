"""Opt-out webhook latency under load (DESIGN.md, Targets: p99 < 50 ms at 200 requests/s).

    .venv/bin/python bench/inbound.py [--rate 200] [--seconds 5] [--rounds 5] [--database URL]
    .venv/bin/python bench/inbound.py --instructions

Starts the real service (``huifang serve``: uvicorn, embedded worker) on a loopback port,
with a company of N customers, then posts signed Twilio inbound webhooks — each a new
customer texting STOP — on an open-loop schedule of ``--rate`` per second. Latency is
measured from each request's scheduled start (so a stall delays every request behind it
and shows up, rather than slowing the generator down). After each answer, a separate
database connection checks that the opt-out is already committed: "zero sends after the
answer" needs the suppression on record before the webhook says OK.

The first second runs at the same rate and is not counted (it is printed on its own line):
it starts from cold, with the server's connection pools, threads and prepared statements
still to make, and some answers wait up to ~200 ms (PostgreSQL, 200/s) while they fill.

Then ``--rounds`` measured runs of ``--seconds`` each, one after the other; prints the
median (min–max) over the rounds of p50/p99/max latency, the achieved rate and the
server's CPU per webhook (all its processes, from /proc; PostgreSQL's backends apart),
and how many answers came before their commit (must be 0).

``--instructions`` instead counts, under valgrind's callgrind, the instructions of one
webhook handled in-process (an ASGI call: no sockets, no uvicorn), ours against a floor
that only parses the form, checks the signature and inserts the suppression on the same
driver; a figure the machine's load does not move.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from sqlalchemy.engine import make_url
from twilio.request_validator import RequestValidator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rounds
from scratch import scratch_database
from serving import (
    Connection,
    PostgresBackends,
    free_port,
    http_request,
    server_cpu_seconds,
    start_server,
)

from customers import service as customers
from customers.importer import ImportedRow
from huifang.db import Database
from huifang.migrate import upgrade
from tenancy import service as tenancy

TOKEN = "bench-auth-token-0123456789abcdef"
PATH = "/hooks/twilio/inbound"
CHECK_CONNECTIONS = 16


def prepare(url: str, count: int) -> tuple[int, list[str]]:
    """The company's id and the numbers of its ``count`` customers."""
    database = Database(url)
    with database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="压测家政", signature="压测家政")
        rows = [ImportedRow(line=i + 2, name=f"客户{i}", phone=f"139{i:08d}") for i in range(count)]
        customers.upsert_rows(session=session, tenant=tenant, rows=rows)
        company = tenant.id
    database.dispose()
    return company, [f"+86139{i:08d}" for i in range(count)]


def checkpoint(url: str) -> None:
    """PostgreSQL: write out what making the customers dirtied, before the clock starts (or
    the disk's write-back of it lands in the measured run and stalls its commits)."""
    if make_url(url).get_backend_name() == "postgresql":
        database = Database(url)
        with database.engine.connect() as connection:
            connection.exec_driver_sql("CHECKPOINT")
        database.dispose()


class Connections:
    """Keep-alive connections to the server, as many as there are requests in flight.

    Requests are built (and signed, by Twilio's own validator) before the clock starts.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[Connection] = []

    async def post(self, request: bytes) -> int:
        connection = self.idle.pop() if self.idle else Connection(self.port)
        status, _ = await connection.exchange(request)
        self.idle.append(connection)
        return status

    def close(self) -> None:
        for connection in self.idle:
            connection.close()


def signed_request(port: int, phone: str) -> bytes:
    url = f"http://127.0.0.1:{port}{PATH}"
    form = {
        "MessageSid": f"SM{phone[1:]}",
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": "+15005550006",
        "Body": "STOP",
        "NumMedia": "0",
    }
    body = urlencode(form).encode()
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    return http_request(
        port,
        "POST",
        PATH,
        body=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )


class Committed:
    """Is the opt-out on record? Asked right after each answer, on connections of its own.

    By the company and the number, as the suppressions' index reads them: by the number
    alone, PostgreSQL scanned the whole table for each answer (0.1–0.25 ms of its CPU per
    webhook by the end of a run, on the cores the server needs)."""

    def __init__(self, url: str, company: int) -> None:
        self.company = company
        parsed = make_url(url)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        self.target = (
            (parsed.database or "")
            if self.sqlite
            else parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self.pool: list[psycopg.AsyncConnection[Any]] = []
        # At most this many connections: an overloaded server must not also have the
        # checker exhaust PostgreSQL's connection slots (max_connections, 100 by default).
        self.slots = asyncio.Semaphore(CHECK_CONNECTIONS)

    async def __call__(self, phone: str) -> bool:
        query = "SELECT count(*) FROM suppressions WHERE tenant_id = {} AND phone = {}"
        if self.sqlite:

            def ask() -> bool:
                with sqlite3.connect(self.target, timeout=30) as connection:
                    found = connection.execute(query.format("?", "?"), (self.company, phone))
                    return bool(found.fetchone()[0])

            return await asyncio.to_thread(ask)
        async with self.slots:
            connection = (
                self.pool.pop()
                if self.pool
                else await psycopg.AsyncConnection.connect(self.target, autocommit=True)
            )
            found = await connection.execute(query.format("%s", "%s"), (self.company, phone))
            row = await found.fetchone()
            self.pool.append(connection)
        return bool(row and row[0])

    async def close(self) -> None:
        for connection in self.pool:
            await connection.close()


async def drive(
    connections: Connections, committed: Committed, port: int, phones: list[str], rate: float
) -> tuple[list[float], int, float]:
    requests = [signed_request(port, phone) for phone in phones]
    latencies: list[float] = []
    early = 0
    failed: list[int] = []

    async def one(phone: str, request: bytes, due: float) -> None:
        nonlocal early
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        status = await connections.post(request)
        latencies.append(time.perf_counter() - due)
        if status != 200:
            failed.append(status)
        elif not await committed(phone):
            early += 1
            print(f"answered before its commit: {phone}")

    started = time.perf_counter() + 0.2
    await asyncio.gather(
        *(
            one(phone, request, started + i / rate)
            for i, (phone, request) in enumerate(zip(phones, requests, strict=True))
        )
    )
    elapsed = time.perf_counter() - started
    if failed:
        raise SystemExit(f"{len(failed)} webhooks were not answered 200: {failed[:5]}")
    return latencies, early, elapsed


@dataclass
class Round:
    latencies: list[float]
    elapsed: float
    cpu: float  # the server's processes
    database_cpu: float  # PostgreSQL's backends (0 on SQLite)

    def quantile(self, q: int) -> float:
        """The q-th percentile of the latencies, in ms."""
        ms = [x * 1000 for x in self.latencies]
        return statistics.quantiles(ms, n=100, method="inclusive")[q - 1]


TARGET_P99_MS = 50.0


async def warm_then_measure(
    server: subprocess.Popen[bytes],
    port: int,
    url: str,
    company: int,
    warm: list[str],
    batches: list[list[str]],
    rate: float,
    rates: list[float] | None = None,
    enough: Callable[[Round], bool] | None = None,
) -> tuple[list[float], list[Round], int]:
    """The warm-up, then one measured run per batch, on the same client connections (so
    that the measured runs start warm on both sides), with the CPU each took. Each batch
    runs at ``rate`` or at its own of ``rates``; ``enough`` stops after the round it
    is true of."""
    connections = Connections(port)
    committed = Committed(url, company)
    backends = PostgresBackends(url) if make_url(url).get_backend_name() == "postgresql" else None
    measured: list[Round] = []
    try:
        cold, early, _ = await drive(connections, committed, port, warm, rate)
        for batch, batch_rate in zip(batches, rates or [rate] * len(batches), strict=True):
            cpu = server_cpu_seconds(server)
            if backends:
                backends.start()
            latencies, early_now, elapsed = await drive(
                connections, committed, port, batch, batch_rate
            )
            measured.append(
                Round(
                    latencies,
                    elapsed,
                    server_cpu_seconds(server) - cpu,
                    backends.used() if backends else 0.0,
                )
            )
            early += early_now
            if enough and enough(measured[-1]):
                break
    finally:
        connections.close()
        await committed.close()
        if backends:
            backends.close()
    return cold, measured, early


# --- instructions of one webhook, handled in-process (``--instructions``) ---------------

WARM = 20  # webhooks each run handles first, subtracted with the baseline
COUNTED = 20  # webhooks counted after them


async def _asgi_post(app: Any, path: str, body: bytes, headers: dict[str, str]) -> int:
    """One POST through an ASGI app, in this process: no sockets, no HTTP parsing."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def _form(phone: str) -> dict[str, str]:
    return {
        "MessageSid": f"SM{phone[1:]}",
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": "+15005550006",
        "Body": "STOP",
        "NumMedia": "0",
    }


def _floor_app(url: str) -> Any:
    """The least a server must do per opt-out: read the form, check Twilio's signature,
    write the suppression and commit, answer empty TwiML. A bare ASGI callable on the same
    database driver, with none of our framework, middleware, logging or services."""
    from urllib.parse import parse_qsl

    from sqlalchemy import create_engine
    from sqlalchemy import text as sql

    engine = create_engine(url)
    validator = RequestValidator(TOKEN)
    public = "http://127.0.0.1:8000" + PATH
    insert = sql(
        "INSERT INTO suppressions (tenant_id, phone, signature, reason, created_at) "
        "SELECT 1, :phone, '压测家政', 'reply_opt_out', CURRENT_TIMESTAMP WHERE NOT EXISTS "
        "(SELECT 1 FROM suppressions WHERE tenant_id = 1 AND phone = :phone)"
    )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        form = dict(parse_qsl(body.decode()))
        headers = dict(scope["headers"])
        if not validator.validate(public, form, headers[b"x-twilio-signature"].decode()):
            status, answer = 403, b""
        else:
            with engine.begin() as connection:
                connection.execute(insert, {"phone": form["From"][3:]})
            status, answer = 200, EMPTY_TWIML
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/xml")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    return app


EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def one(kind: str, url: str) -> None:
    """What one run under callgrind does: WARM webhooks, then COUNTED more, through our app
    (``ours``) or the floor's (``floor``); ``ours-none`` and ``floor-none`` stop after the
    warm ones (the baselines subtracted)."""
    os.environ.update(
        HUIFANG_DATABASE_URL=url,
        HUIFANG_TWILIO_AUTH_TOKEN=TOKEN,
        HUIFANG_PUBLIC_URL="http://127.0.0.1:8000",
        HUIFANG_LOG_LEVEL="WARNING",
        HUIFANG_SMS_PROVIDER="console",
    )
    os.environ.pop("HUIFANG_REDIS_URL", None)
    if kind.startswith("floor"):
        app = _floor_app(url)
    else:
        from huifang import asgi  # the production app and its logging, without its worker
        from huifang.worker import load_tasks

        load_tasks()
        app = asgi.app
    phones = [f"+86139{i:08d}" for i in range(WARM + COUNTED)]
    validator = RequestValidator(TOKEN)
    public = "http://127.0.0.1:8000" + PATH

    async def post_all() -> None:
        # All in one task, as uvicorn's: anyio's worker threads live as long as it does.
        for number, phone in enumerate(phones):
            if kind.endswith("-none") and number >= WARM:
                break
            form = _form(phone)
            status = await _asgi_post(
                app,
                PATH,
                urlencode(form).encode(),
                {
                    "content-type": "application/x-www-form-urlencoded",
                    "x-twilio-signature": validator.compute_signature(public, form),
                },
            )
            if status != 200:
                raise SystemExit(f"{kind}: webhook answered {status}")

    asyncio.run(post_all())


def count_instructions() -> None:
    """Instructions per webhook, floor and ours, each on a copy of the same SQLite database
    (a STOP from each of WARM + COUNTED new customers), the baseline subtracted."""
    with tempfile.TemporaryDirectory(prefix="huifang-bench-") as directory:
        prepared = Path(directory) / "prepared.db"
        url = f"sqlite:///{prepared}"
        upgrade(url)
        prepare(url, WARM + COUNTED)

        def run(kind: str) -> list[str]:
            copy = Path(directory) / f"{kind}.db"
            shutil.copyfile(prepared, copy)
            return [sys.executable, __file__, "--one", kind, f"sqlite:///{copy}"]

        floor_ir, ours_ir, ratio = rounds.instruction_ratio(
            floor=run("floor"),
            ours=run("ours"),
            baseline=run("ours-none"),
            floor_baseline=run("floor-none"),
            count=COUNTED,
        )
    print(
        f"instructions per webhook (callgrind, in-process ASGI, SQLite, {COUNTED} after "
        f"{WARM} warm; start-up subtracted): ours {ours_ir / 1e6:.2f} M, floor "
        f"{floor_ir / 1e6:.2f} M; ratio {ratio:.1f}x"
    )


@contextlib.contextmanager
def serving(
    args: argparse.Namespace, webhooks: int
) -> Iterator[tuple[str, int, subprocess.Popen[bytes], int, list[str]]]:
    """A scratch database with ``webhooks`` customers to text STOP, and the server on it
    (stopped afterwards): the database URL, the port, the server process, the company,
    the numbers."""
    with scratch_database(args.database, "huifang_bench_inbound") as url:
        upgrade(url)
        company, phones = prepare(url, webhooks)
        checkpoint(url)
        port = free_port()
        server = start_server(
            url,
            port,
            args.redis,
            args.workers if args.redis else 1,
            {"HUIFANG_TWILIO_AUTH_TOKEN": TOKEN, "HUIFANG_PUBLIC_URL": f"http://127.0.0.1:{port}"},
        )
        try:
            # The load generator must not stall itself: what setting up made is kept out
            # of its cycle collector (a full collection of it took ~90 ms).
            gc.collect()
            gc.freeze()
            yield url, port, server, company, phones
        finally:
            server.terminate()
            server.wait(timeout=30)


def find_saturation(args: argparse.Namespace) -> None:
    """One run of ``--seconds`` per rate, from ``--rate`` up by ``--step``, after a warm-up
    at the first; stops at the first run whose p99 is over the target."""
    steps = int((args.max_rate - args.rate) // args.step) + 1
    rates = [args.rate + i * args.step for i in range(steps)]
    counts = [int(rate * args.seconds) for rate in rates]
    warm = int(args.rate)
    with serving(args, sum(counts) + warm) as (url, port, server, company, phones):
        batches, start = [], 0
        for count in counts:
            batches.append(phones[start : start + count])
            start += count
        _, measured, early = asyncio.run(
            warm_then_measure(
                server,
                port,
                url,
                company,
                phones[start:],
                batches,
                args.rate,
                rates,
                enough=lambda r: r.quantile(99) > TARGET_P99_MS,
            )
        )
    backend = make_url(url).get_backend_name()
    print(
        f"backend: {backend}, {args.workers if args.redis else 1} server process(es); "
        f"runs of {args.seconds:g} s from {args.rate:.0f}/s up by {args.step:.0f}/s"
    )
    for rate, count, r in zip(rates, counts, measured, strict=False):
        print(
            f"  {rate:.0f}/s offered, {count / r.elapsed:.0f}/s achieved: p50 "
            f"{r.quantile(50):.1f} ms, p99 {r.quantile(99):.1f} ms, max "
            f"{max(r.latencies) * 1000:.0f} ms; server CPU {r.cpu / count * 1000:.2f} ms "
            "per webhook"
        )
    crossed = measured[-1].quantile(99) > TARGET_P99_MS
    held = [
        rate for rate, r in zip(rates, measured, strict=False) if r.quantile(99) <= TARGET_P99_MS
    ]
    print(
        f"saturation: p99 crossed {TARGET_P99_MS:.0f} ms at {rates[len(measured) - 1]:.0f}/s"
        if crossed
        else f"saturation: p99 stayed under {TARGET_P99_MS:.0f} ms up to {args.max_rate:.0f}/s"
    )
    print(
        f"highest rate with p99 under {TARGET_P99_MS:.0f} ms: {max(held):.0f}/s (target ≥ 400/s)"
        if held
        else f"no rate had p99 under {TARGET_P99_MS:.0f} ms"
    )
    print(f"answers before their opt-out was committed: {early} (must be 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="of each round")
    parser.add_argument("--rounds", type=int, default=rounds.MIN_ROUNDS)
    parser.add_argument("--database", help="PostgreSQL URL; default a temporary SQLite file")
    parser.add_argument("--redis", help="Redis URL (distributed mode); default embedded")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (distributed mode only; default 1)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="only count the instructions of one webhook in-process, ours and the floor's",
    )
    parser.add_argument(
        "--find-saturation",
        action="store_true",
        help="raise the rate from --rate by --step each run of --seconds until p99 crosses "
        "50 ms (or --max-rate), and print the rate where it did",
    )
    parser.add_argument("--step", type=float, default=50.0, help="with --find-saturation")
    parser.add_argument("--max-rate", type=float, default=800.0, help="with --find-saturation")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(*args.one)
        return
    if args.instructions:
        count_instructions()
        return
    if args.find_saturation:
        find_saturation(args)
        return
    count = int(args.rate * args.seconds)
    runs = max(args.rounds, rounds.MIN_ROUNDS)
    warm = int(args.rate)  # one second at the measured rate
    with serving(args, count * runs + warm) as (url, port, server, company, phones):
        # Warm up at the same rate: the pools, threads and prepared statements.
        batches = [phones[i * count : (i + 1) * count] for i in range(runs)]
        cold, measured, early = asyncio.run(
            warm_then_measure(
                server, port, url, company, phones[count * runs :], batches, args.rate
            )
        )
    backend = make_url(url).get_backend_name()
    print(
        f"backend: {backend}, {args.workers if args.redis else 1} server process(es); "
        f"{runs} rounds of {count} signed STOP webhooks at {args.rate:.0f}/s offered, "
        f"{rounds.spread(count / r.elapsed for r in measured).text('{:.0f}')}/s achieved"
    )

    p50 = rounds.spread(r.quantile(50) for r in measured)
    p99 = rounds.spread(r.quantile(99) for r in measured)
    worst = rounds.spread(max(r.latencies) * 1000 for r in measured)
    print(
        f"latency p50 {p50.text('{:.1f}', ' ms')}, p99 {p99.text('{:.1f}', ' ms')}, max "
        f"{worst.text('{:.0f}', ' ms')} (target p99 < 50 ms) [median (min–max) of rounds]"
    )
    cold_ms = sorted(x * 1000 for x in cold)
    print(
        f"warm-up (the first {warm} requests, from cold, not counted above): p50 "
        f"{statistics.median(cold_ms):.1f} ms, max {cold_ms[-1]:.1f} ms"
    )
    cpu = rounds.spread(r.cpu / count * 1000 for r in measured)
    print(
        f"server CPU {cpu.text(unit=' ms')} per webhook (all its processes; target ≤ 1.5 ms)"
        + (
            f"; PostgreSQL's backends "
            f"{rounds.spread(r.database_cpu / count * 1000 for r in measured).text(unit=' ms')}"
            if backend == "postgresql"
            else ""
        )
    )
    print(f"answers before their opt-out was committed: {early} (must be 0)")


if __name__ == "__main__":
    main()
