"""Redis carries work, never the record of it: a FLUSHDB mid-run loses no message.

Distributed mode for real: PostgreSQL, a Celery worker and ``huifang beat`` on Redis, the
Twilio adapter against a loopback Twilio that answers a little slowly. Forty messages are
due; beat's dispatcher tick queues them all and the worker starts sending. Part-way through,
the broker's Redis database is flushed: the send tasks waiting there are gone, and their
rows stay ``queued``. Beat keeps ticking; ``sweep`` must find those rows and queue them
again, so every message goes out, each exactly once.

``sweep`` waits ``STUCK_QUEUED`` (five minutes) before it calls a queued row lost. The worker
here runs with five seconds instead, so that the test takes seconds, not minutes, and puts
one message in each send task (production: up to 50), so that the flush has tasks to take
away; nothing else differs from production. With the real value every lost message goes
out five to six minutes late (the threshold, plus up to one tick).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import delete, select

from customers import service as customers
from huifang.db import Database, utcnow
from messaging import service as outbox
from messaging.models import SENT, Message
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.messaging.pipeline_support import (
    callback_message_id,
    log_tail,
    start_huifang,
    stop,
    wait_for,
    zone_in_window,
)
from tests.messaging.twilio_fake import FakeTwilio, ReceivedRequest

MESSAGES = 40
FLUSH_AFTER = 6  # accepted by Twilio when the flush comes: most tasks are still in Redis
TWILIO_DELAY = 0.1  # seconds per request: the run lasts long enough to be interrupted
STUCK_QUEUED_SECONDS = 5
SHORTER_SWEEP = (
    "import datetime, messaging.service, messaging.tasks\n"
    f"messaging.service.STUCK_QUEUED = datetime.timedelta(seconds={STUCK_QUEUED_SECONDS})\n"
    # One message per send task (production: up to 50), so that most of the run's tasks
    # are still waiting in Redis when it is flushed.
    "messaging.tasks.TASK_MESSAGES = 1\n"
)


class SlowTwilio(FakeTwilio):
    """The loopback Twilio, taking ``delay`` seconds over each request."""

    def __init__(self, *, delay: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay = delay

    def handle(self, request: ReceivedRequest) -> tuple[int, dict[str, Any]]:
        time.sleep(self.delay)
        return super().handle(request)


def _schedule(database: Database, zone: str) -> tuple[int, dict[int, str]]:
    """One company, forty customers, a visit report due now for each: ids and phones."""
    with database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="清空家政", signature="清空家政")
        phones: dict[int, str] = {}
        now = utcnow()
        for i in range(MESSAGES):
            person = customers.create_customer(
                session=session,
                tenant=tenant,
                name=f"客户{i}",
                phone=f"1390000{i:04d}",
                timezone=zone,
            )
            message, _ = outbox.schedule(
                session=session,
                tenant=tenant,
                customer=person,
                channel="sms",
                category="service",
                source_type="visit_report",
                source_id=f"visit-{i}",
                body="您好，本次服务报告已生成",
                due_at=now,
            )
            phones[message.id] = person.phone
        return tenant.id, phones


def _flush(redis_url: str) -> int:
    """FLUSHDB the broker's database; how many send tasks were waiting in it."""
    client = redis.Redis.from_url(redis_url)
    try:
        with client.pipeline(transaction=True) as pipe:  # MULTI: counted, then flushed
            pipe.llen("messaging")
            pipe.flushdb()
            waiting, _ = pipe.execute()
        return int(waiting)
    finally:
        client.close()


@pytest.mark.services
@pytest.mark.timeout(300)
def test_a_redis_flush_mid_run_loses_no_message(
    postgres_database: Database, redis_url: str, tmp_path: Path
) -> None:
    zone = zone_in_window(hours=0.5)  # quiet hours must not defer these sends
    tenant_id, phones = _schedule(postgres_database, zone)

    def statuses() -> Counter[str]:
        with postgres_database.sessionmaker() as session:
            return Counter(
                session.scalars(select(Message.status).where(Message.tenant_id == tenant_id))
            )

    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"

    def logs() -> str:
        return f"worker:\n{log_tail(worker_log)}\nbeat:\n{log_tail(beat_log)}"

    with SlowTwilio(delay=TWILIO_DELAY) as fake:
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
            # Twilio's long-code default is 1/s; the rate limiter is not under test here.
            "HUIFANG_SMS_RATE_PER_SECOND": "200",
        }
        worker = start_huifang(
            ["worker", "-Q", "messaging", "-c", "2"], env=env, log=worker_log, prelude=SHORTER_SWEEP
        )
        beat = start_huifang(["beat"], env=env, log=beat_log)
        try:
            # Beat's first dispatcher tick comes ten seconds after it starts.
            assert wait_for(lambda: len(fake.accepted) >= FLUSH_AFTER, 90, 0.01), logs()
            lost = _flush(redis_url)
            flushed_at = time.monotonic()
            sent_before = len(fake.accepted)
            assert lost > 0, "the flush came too late to take any task away"
            assert sent_before < MESSAGES

            everything_sent = wait_for(lambda: statuses() == Counter({SENT: MESSAGES}), 120, 0.5)
            recovered_in = time.monotonic() - flushed_at
        finally:
            stop(beat)
            stop(worker)
            received = list(fake.received)
        try:
            assert everything_sent, f"{statuses()} after the flush took {lost} tasks\n{logs()}"
            # Each message reached Twilio exactly once, at its customer's number.
            calls = Counter(callback_message_id(request) for request in received)
            assert calls == Counter(dict.fromkeys(phones, 1)), calls
            assert all(
                request.field("To") == phones[callback_message_id(request) or 0]
                for request in received
            )
            # It took the sweep to get the lost ones out, not a task that survived.
            assert recovered_in > STUCK_QUEUED_SECONDS, recovered_in
        finally:
            with postgres_database.session() as session:
                session.execute(delete(Tenant).where(Tenant.id == tenant_id))
