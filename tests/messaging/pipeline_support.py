"""What the send-pipeline tests share: waiting, a daytime zone, huifang processes, callbacks.

Worker tests start real ``huifang worker`` / ``huifang beat`` processes, each in a session
of its own so that stopping one reaches Celery's pool children too.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from tests.messaging.twilio_fake import ReceivedRequest


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """True as soon as ``predicate()`` holds; False when ``timeout`` seconds passed first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def zone_in_window(*, hours: float = 1.0) -> str:
    """A time zone where it is daytime now and for ``hours`` more: quiet hours never defer.

    The default sending window is 08:00–21:00; zones from 10:00 to 19:00 leave a margin.
    """
    now = dt.datetime.now(dt.UTC)
    for offset in range(-12, 13):
        zone = f"Etc/GMT{-offset:+d}" if offset else "UTC"  # Etc/GMT-8 is UTC+8
        start = now.astimezone(ZoneInfo(zone))
        end = (now + dt.timedelta(hours=hours)).astimezone(ZoneInfo(zone))
        if start.hour >= 10 and end.hour < 19 and start.date() == end.date():
            return zone
    raise AssertionError("some zone is always in daytime")


def start_huifang(
    args: Sequence[str], *, env: Mapping[str, str], log: Path, prelude: str = ""
) -> subprocess.Popen[bytes]:
    """Run ``huifang ARGS`` (worker, beat) as its own process group, output to ``log``.

    ``prelude`` is Python run in that process before the command starts: tests use it to
    shorten a waiting period that would otherwise make them last minutes.
    """
    code = f"{prelude}\nfrom huifang.cli import main\nmain()\n"
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], *, timeout: float = 20) -> None:
    """SIGTERM the process group (a warm shutdown), SIGKILL it if that takes too long."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def callback_message_id(request: ReceivedRequest) -> int | None:
    """Our message id, from the ``?message_id=`` of the StatusCallback the send carried."""
    callback = request.field("StatusCallback")
    if not callback:
        return None
    values = parse_qs(urlsplit(callback).query).get("message_id", [])
    return int(values[0]) if values and values[0].isdigit() else None


def log_tail(log: Path, chars: int = 4000) -> str:
    """The end of a process log, for an assertion message."""
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"
