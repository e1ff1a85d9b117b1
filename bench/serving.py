"""The real service on a loopback port, for the benches that drive it over HTTP.

Starting it (uvicorn on ``huifang.asgi:app``, as ``huifang serve`` does; in distributed mode
also Celery workers and the scheduler), keep-alive HTTP/1.1 connections written by hand,
and the CPU time of every process involved (Linux ``/proc``), PostgreSQL's backends included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_env(
    url: str, redis_url: str | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a server or worker: embedded without ``redis_url``."""
    env = dict(
        os.environ,
        HUIFANG_DATABASE_URL=url,
        HUIFANG_LOG_LEVEL="WARNING",
        HUIFANG_SMS_PROVIDER="console",
        **(extra or {}),
    )
    if redis_url:
        env["HUIFANG_REDIS_URL"] = redis_url
    else:
        env.pop("HUIFANG_REDIS_URL", None)
    return env


def start_server(
    url: str,
    port: int,
    redis_url: str | None,
    workers: int,
    extra_env: Mapping[str, str] | None = None,
    log: IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """uvicorn on ``port`` (``workers`` processes), once ``/healthz`` answers; its output
    goes to ``log`` when given."""
    env = service_env(url, redis_url, extra_env)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "huifang.asgi:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--timeout-keep-alive",
            "60",
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("the server did not come up within 60 s")


def start_workers(url: str, redis_url: str) -> list[subprocess.Popen[bytes]]:
    """Distributed mode's other processes: one Celery worker (all queues but media, which
    the benches give no work) and the scheduler."""
    env = service_env(url, redis_url)
    huifang = [str(Path(sys.executable).parent / "huifang")]
    return [
        subprocess.Popen(
            [*huifang, "worker", "-Q", "default,messaging", "-l", "WARNING"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [*huifang, "beat", "-l", "WARNING"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's and Celery's worker processes)."""
    pids, i = [pid], 0
    while i < len(pids):
        children = Path(f"/proc/{pids[i]}/task/{pids[i]}/children")
        with contextlib.suppress(OSError):
            pids += [int(child) for child in children.read_text().split()]
        i += 1
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by ``pids`` (those still running)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def server_cpu_seconds(server: subprocess.Popen[bytes]) -> float:
    """CPU time used so far by the server and its worker processes."""
    return cpu_seconds(process_tree(server.pid))


class PostgresBackends:
    """CPU time of the PostgreSQL backends serving one database (the server's pools).

    Read from ``/proc``, per backend, at ``start()`` and at ``used()``: a backend that
    closed in between takes its time with it, so this is a lower bound.
    """

    def __init__(self, url: str) -> None:
        self.database = make_url(url).database
        self.engine = create_engine(url)
        self.started: dict[int, float] = {}

    def _readings(self) -> dict[int, float]:
        with self.engine.connect() as connection:
            pids = connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = :name "
                    "AND pid <> pg_backend_pid()"
                ),
                {"name": self.database},
            ).scalars()
            return {pid: cpu_seconds([pid]) for pid in pids}

    def start(self) -> None:
        self.started = self._readings()

    def total(self) -> float:
        """CPU seconds the backends now open have used since they started."""
        return sum(self._readings().values())

    def used(self) -> float:
        """CPU seconds the backends used since ``start()``."""
        return sum(cpu - self.started.get(pid, 0.0) for pid, cpu in self._readings().items())

    def close(self) -> None:
        self.engine.dispose()


class Connection:
    """One keep-alive HTTP/1.1 connection to the server.

    The load generator shares the machine's two cores with the server (and PostgreSQL and
    Redis); httpx spent about 4 ms of CPU per request here, which showed up as the server's
    latency. Requests are bytes built by the caller; sending one is a write and a read.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request``; the answer's status and body."""
        if self._stream is None:
            self._stream = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self._stream
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length, keep = 0, True
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    keep = False
            body = await reader.readexactly(length)
        except BaseException:
            self.close()
            raise
        if not keep:  # the server said so (after a 500, uvicorn does): the next one reconnects
            self.close()
        return status, body

    def close(self) -> None:
        if self._stream is not None:
            self._stream[1].close()
            self._stream = None


def http_request(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
