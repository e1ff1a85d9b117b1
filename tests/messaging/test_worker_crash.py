"""Invariant 1 with a real worker: killed during a provider call, nothing is sent twice."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from sqlalchemy import delete

from customers import service as customers
from huifang.db import utcnow
from messaging import service as outbox
from messaging.models import Message
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.messaging.twilio_fake import FakeTwilio


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _zone_in_window() -> str:
    """A time zone where it is daytime now, so quiet hours never defer this test's send."""
    now = dt.datetime.now(dt.UTC)
    for offset in range(-12, 13):
        zone = f"Etc/GMT{-offset:+d}" if offset else "UTC"  # Etc/GMT-8 is UTC+8
        if 10 <= now.astimezone(ZoneInfo(zone)).hour < 19:
            return zone
    raise AssertionError("some zone is always in daytime")


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        # A session of its own, so the kill reaches Celery's pool child as well.
        return subprocess.Popen(
            [sys.executable, "-m", "huifang.cli", "worker", "-Q", "messaging", "-c", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.services
def test_a_worker_killed_mid_send_never_sends_twice(postgres_database, redis_url, tmp_path: Path):
    with postgres_database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="崩溃家政", signature="崩溃家政")
        person = customers.create_customer(
            session=session,
            tenant=tenant,
            name="王女士",
            phone="13800138000",
            timezone=_zone_in_window(),
        )
        message, _ = outbox.schedule(
            session=session,
            tenant=tenant,
            customer=person,
            channel="sms",
            category="service",
            source_type="visit_report",
            source_id="crash",
            body="Your report is ready",
            due_at=utcnow(),
        )
        tenant_id, message_id = tenant.id, message.id
        outbox.claim_due(session=session, now=utcnow())  # queued, as the dispatcher would

    log = tmp_path / "worker.log"
    with FakeTwilio() as fake:
        fake.hang_next(seconds=60)  # Twilio takes the request, then the worker dies waiting
        env = {
            **os.environ,
            "HUIFANG_ENVIRONMENT": "test",
            "HUIFANG_REDIS_URL": redis_url,
            "HUIFANG_DATABASE_URL": postgres_database.url,
            "HUIFANG_SMS_PROVIDER": "twilio",
            "HUIFANG_TWILIO_ACCOUNT_SID": fake.account_sid,
            "HUIFANG_TWILIO_AUTH_TOKEN": fake.auth_token,
            "HUIFANG_TWILIO_API_BASE": fake.base_url,
            "HUIFANG_TWILIO_FROM_NUMBER": fake.from_number,
        }
        client = Celery(broker=redis_url)
        worker = _start_worker(env, log)
        try:
            client.send_task(
                "messaging.tasks.send_message", kwargs={"message_id": message_id}, queue="messaging"
            )
            assert _wait_for(lambda: len(fake.received) == 1, 60), log.read_text()
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=20)

            def status() -> str:
                with postgres_database.sessionmaker() as session:
                    return session.get(Message, message_id).status

            assert status() == "sending"  # on record before anything left

            # A new worker, and the task delivered again (as Redis would after the kill).
            worker = _start_worker(env, log)
            client.send_task(
                "messaging.tasks.send_message", kwargs={"message_id": message_id}, queue="messaging"
            )
            time.sleep(8)
            assert len(fake.received) == 1  # no second provider call

            # Not silently stuck: the sweep settles it as unknown, for a person to decide.
            with postgres_database.session() as session:
                outbox.sweep(session=session, now=utcnow() + dt.timedelta(minutes=11))
            assert status() == "unknown"
        finally:
            client.close()
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
            with postgres_database.session() as session:
                session.execute(delete(Tenant).where(Tenant.id == tenant_id))
