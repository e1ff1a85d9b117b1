"""Opt-out webhook latency under load (DESIGN.md, Targets: p99 < 50 ms at 200 requests/s).

    .venv/bin/python bench/inbound.py [--rate 200] [--seconds 10] [--database URL]

Starts the real service (``huifang serve``: uvicorn, embedded worker) on a loopback port,
with a company of N customers, then posts signed Twilio inbound webhooks — each a new
customer texting STOP — on an open-loop schedule of ``--rate`` per second. Latency is
measured from each request's scheduled start (so a stall delays every request behind it
and shows up, rather than slowing the generator down). After each answer, a separate
database connection checks that the opt-out is already committed: "zero sends after the
answer" needs the suppression on record before the webhook says OK.

Prints p50/p90/p99/max latency, the achieved rate, and how many answers came before
their commit (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from twilio.request_validator import RequestValidator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratch import scratch_database

from compliance.models import Suppression
from customers import service as customers
from customers.importer import ImportedRow
from huifang.db import Database, read_only_connection
from huifang.migrate import upgrade
from tenancy import service as tenancy

TOKEN = "bench-auth-token-0123456789abcdef"
PATH = "/hooks/twilio/inbound"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(url: str, count: int) -> list[str]:
    database = Database(url)
    with database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="压测家政", signature="压测家政")
        rows = [ImportedRow(line=i + 2, name=f"客户{i}", phone=f"139{i:08d}")
                for i in range(count)]
        customers.upsert_rows(session=session, tenant=tenant, rows=rows)
    database.dispose()
    return [f"+86139{i:08d}" for i in range(count)]


def start_server(url: str, port: int, redis_url: str | None, workers: int
                 ) -> subprocess.Popen[bytes]:
    env = dict(os.environ, HUIFANG_DATABASE_URL=url, HUIFANG_TWILIO_AUTH_TOKEN=TOKEN,
               HUIFANG_PUBLIC_URL=f"http://127.0.0.1:{port}", HUIFANG_LOG_LEVEL="WARNING",
               HUIFANG_SMS_PROVIDER="console")
    if redis_url:
        env["HUIFANG_REDIS_URL"] = redis_url
    else:
        env.pop("HUIFANG_REDIS_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "huifang.asgi:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log",
         "--timeout-keep-alive", "60", "--workers", str(workers)], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not come up within 60 s")


async def drive(port: int, phones: list[str], rate: float, database: Database
                ) -> tuple[list[float], int, float]:
    url = f"http://127.0.0.1:{port}{PATH}"
    validator = RequestValidator(TOKEN)
    latencies: list[float] = []
    early = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)

    def committed(phone: str) -> bool:
        with read_only_connection(database.engine) as connection:
            return connection.execute(select(func.count()).select_from(Suppression).where(
                Suppression.phone == phone)).scalar_one() > 0

    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30, pool=None)) as client:
        async def one(phone: str, due: float) -> None:
            nonlocal early
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            form = {"MessageSid": f"SM{phone[1:]}", "AccountSid": "AC" + "0" * 32,
                    "From": phone, "To": "+15005550006", "Body": "STOP", "NumMedia": "0"}
            headers = {"X-Twilio-Signature": validator.compute_signature(url, form)}
            response = await client.post(url, data=form, headers=headers)
            latencies.append(time.perf_counter() - due)
            response.raise_for_status()
            if not await asyncio.to_thread(committed, phone):
                early += 1
                print(f"answered before its commit: {phone}")

        started = time.perf_counter() + 0.2
        await asyncio.gather(*(one(phone, started + i / rate)
                               for i, phone in enumerate(phones)))
        elapsed = time.perf_counter() - started
    return latencies, early, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database", help="PostgreSQL URL; default a temporary SQLite file")
    parser.add_argument("--redis", help="Redis URL (distributed mode); default embedded")
    parser.add_argument("--workers", type=int, default=1,
                        help="uvicorn worker processes (distributed mode only; default 1)")
    args = parser.parse_args()
    count = int(args.rate * args.seconds)
    with scratch_database(args.database, "huifang_bench_inbound") as url:
        upgrade(url)
        phones = prepare(url, count + 20)
        port = free_port()
        server = start_server(url, port, args.redis, args.workers if args.redis else 1)
        try:
            database = Database(url)
            # Warm up: connections, the first request's imports.
            asyncio.run(drive(port, phones[count:], 20, database))
            latencies, early, elapsed = asyncio.run(drive(port, phones[:count], args.rate,
                                                          database))
            database.dispose()
        finally:
            server.terminate()
            server.wait(timeout=30)
    ms = sorted(x * 1000 for x in latencies)
    quantiles = statistics.quantiles(ms, n=100, method="inclusive")
    backend = make_url(url).get_backend_name()
    print(f"backend: {backend}, {args.workers if args.redis else 1} server process(es); "
          f"{count} signed STOP webhooks at {args.rate:.0f}/s offered, "
          f"{count / elapsed:.0f}/s achieved")
    print(f"latency p50 {quantiles[49]:.1f} ms, p90 {quantiles[89]:.1f} ms, "
          f"p99 {quantiles[98]:.1f} ms, max {ms[-1]:.1f} ms (target p99 < 50 ms)")
    print(f"answers before their opt-out was committed: {early} (must be 0)")


if __name__ == "__main__":
    main()
