"""Invariant 3 through the whole send pipeline: two campaigns, one customer, workers racing.

``tests/compliance/test_gate.py`` races the gate alone. Here the race is the real one: two
marketing campaigns schedule messages to the same consenting customer for the same moment,
the dispatcher's tick queues them, and every send task runs at once, each on a worker thread
with its own database connection, through ``messaging.tasks.send_message`` (claim, commit,
gate under the per-number lock, rate limit, the Twilio adapter against a loopback Twilio,
record). With a cap of 2 per rolling 90 days, exactly two marketing messages reach Twilio;
the others are ``suppressed`` for the cap, and the audit log holds one decision per message.
The race is run several times, each time for a new customer, so that a missing or misplaced
lock would let a third message through.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, func, select

import huifang.db
from compliance import service as compliance
from compliance.models import FREQUENCY_CAP, ComplianceDecision, MarketingSend
from customers import service as customers
from huifang.db import Database, set_database, utcnow
from huifang.worker import celery_app
from messaging import service as outbox
from messaging import tasks
from messaging.models import SENT, SUPPRESSED, Message
from messaging.providers.twilio import TwilioProvider
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.messaging.pipeline_support import callback_message_id, zone_in_window
from tests.messaging.twilio_fake import FakeTwilio

CAP = 2  # the default policy: 2 marketing messages per number per rolling 90 days
CAMPAIGNS = ("spring-aircon", "plum-rain-dehumidify")
OCCURRENCES = 2  # per campaign: 4 marketing messages race for 2 places
ROUNDS = 5


@pytest.fixture
def fake_twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    """A loopback Twilio, and the send task's provider pointed at it."""
    with FakeTwilio() as fake:
        provider = TwilioProvider(
            account_sid=fake.account_sid,
            auth_token=fake.auth_token,
            api_base=fake.base_url,
            from_number=fake.from_number,
        )
        monkeypatch.setattr(tasks, "get_provider", lambda: provider)
        try:
            yield fake
        finally:
            provider.close()


@pytest.fixture
def pipeline_db(postgres_database: Database) -> Iterator[Database]:
    """PostgreSQL as the process-wide database, as a worker has it; forgotten afterwards."""
    # A worker binds every task before it takes any; binding lazily from several threads at
    # once is not safe in Celery (a task may be seen half bound).
    celery_app.finalize()
    set_database(postgres_database)
    try:
        yield postgres_database
    finally:
        huifang.db._database = None  # the engine is shared by the rest of the run


def _schedule_round(
    database: Database, tenant_id: int, round_: int, zone: str
) -> tuple[str, dict[int, str]]:
    """A new consenting customer and, due now, every campaign's messages and a visit report.

    Returns the customer's phone and each message's category by id.
    """
    now = utcnow()
    with database.session() as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        customer = customers.create_customer(
            session=session,
            tenant=tenant,
            name=f"王女士{round_}",
            phone=f"1380013{round_:04d}",
            timezone=zone,
        )
        compliance.record_consent(
            session=session,
            tenant_id=tenant.id,
            customer=customer,
            source="in_person",
            evidence="首次上门时签字确认",
            granted_at=now - dt.timedelta(days=1),
            now=now,
        )
        categories: dict[int, str] = {}
        for campaign in CAMPAIGNS:
            for occurrence in range(OCCURRENCES):
                message, _ = outbox.schedule(
                    session=session,
                    tenant=tenant,
                    customer=customer,
                    channel="sms",
                    category="marketing",
                    source_type="campaign_occurrence",
                    source_id=f"{campaign}:{round_}:{occurrence}",
                    body="换季空调清洗，老客户九折，回复1预约",
                    due_at=now,
                )
                categories[message.id] = "marketing"
        # A service message at the same moment: exempt from the cap, sent whatever happens.
        report, _ = outbox.schedule(
            session=session,
            tenant=tenant,
            customer=customer,
            channel="sms",
            category="service",
            source_type="visit_report",
            source_id=f"visit-{round_}",
            body="您好，本次服务报告已生成",
            due_at=now,
        )
        categories[report.id] = "service"
        return customer.phone, categories


def _race(message_ids: list[int]) -> list[BaseException]:
    """Every send task at once, one worker thread (and connection) each; their errors."""
    barrier = threading.Barrier(len(message_ids))
    errors: list[BaseException] = []

    def worker(message_id: int) -> None:
        try:
            barrier.wait(timeout=30)
            tasks.send_message(message_id=message_id)  # the task body, with its own session
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), name=f"worker-{i}") for i in message_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads), "a send task never finished"
    return errors


@pytest.mark.services
@pytest.mark.timeout(300)
def test_two_campaigns_racing_for_one_customer_never_pass_the_cap(
    pipeline_db: Database, fake_twilio: FakeTwilio
) -> None:
    zone = zone_in_window(hours=0.5)  # quiet hours must not defer these sends
    with pipeline_db.session() as session:
        tenant = tenancy.create_tenant(
            session=session, name="并发发送家政", signature="并发发送家政"
        )
        tenant_id = tenant.id
    try:
        for round_ in range(ROUNDS):
            phone, categories = _schedule_round(pipeline_db, tenant_id, round_, zone)
            with pipeline_db.session() as session:  # the dispatcher's tick
                queued = outbox.claim_due(session=session, now=utcnow())
            assert set(categories) <= set(queued)
            assert _race(sorted(categories)) == []

            with pipeline_db.sessionmaker() as session:
                rows = {
                    m.id: m
                    for m in session.scalars(select(Message).where(Message.id.in_(categories)))
                }
                decisions = session.scalars(
                    select(ComplianceDecision).where(
                        ComplianceDecision.message_ref.in_(
                            [m.idempotency_key for m in rows.values()]
                        )
                    )
                ).all()
                counted = session.scalar(
                    select(func.count())
                    .select_from(MarketingSend)
                    .where(MarketingSend.tenant_id == tenant_id, MarketingSend.phone == phone)
                )
            marketing = {i for i, category in categories.items() if category == "marketing"}
            sent = {i for i in marketing if rows[i].status == SENT}
            capped = {
                i
                for i in marketing
                if (rows[i].status, rows[i].status_reason) == (SUPPRESSED, FREQUENCY_CAP)
            }
            statuses = {i: (rows[i].status, rows[i].status_reason) for i in sorted(rows)}
            assert len(sent) == CAP, f"round {round_}: {statuses}"
            assert capped == marketing - sent, f"round {round_}: {statuses}"
            assert all(rows[i].status == SENT for i in set(categories) - marketing), statuses
            assert all(
                "marketing messages in 90 days" in (rows[i].status_detail or "") for i in capped
            )

            # What reached Twilio: exactly the allowed marketing messages and the report.
            calls = Counter(
                callback_message_id(request)
                for request in fake_twilio.received
                if request.field("To") == phone
            )
            assert calls == Counter({i: 1 for i in sent | (set(categories) - marketing)}), (
                f"round {round_}: calls {dict(calls)}, statuses {statuses}"
            )
            assert counted == CAP

            # The audit log: one decision per message, with the reason for it.
            by_ref = {d.message_ref: (d.decision, d.reason) for d in decisions}
            assert len(decisions) == len(categories) == len(by_ref)
            for message_id, row in rows.items():
                expected = (
                    ("send", "allowed") if message_id not in capped else ("suppress", FREQUENCY_CAP)
                )
                assert by_ref[row.idempotency_key] == expected, (message_id, by_ref)
    finally:
        with pipeline_db.session() as session:
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))
