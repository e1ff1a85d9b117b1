"""A receipt that arrives before the send is recorded is applied, not lost.

A fast provider can report "delivered" while our send is still in its transaction: the
provider answered, but ``sent`` and the provider's id are not committed yet. The receipt
(found by our id in the callback URL) must wait for that commit and then apply, so the
message ends ``delivered``; before, it found ``sending``, was ignored, and the message
stayed ``sent`` for good.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, select

from customers import service as customers
from huifang.db import Database, utcnow
from messaging import service as outbox
from messaging.models import DELIVERED, SENT, Message, MessageEvent
from messaging.providers.base import OutboundMessage, Provider, SendResult
from messaging.receipts import apply_receipt
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.messaging.pipeline_support import zone_in_window

SID = "SM" + "race".ljust(32, "0")


class ReportsAtOnce(Provider):
    """Twilio as seen from here: it accepts the message, and its "delivered" receipt is
    posted before our send has committed."""

    name = "twilio"

    def __init__(self) -> None:
        self.called = threading.Event()
        self.receipt_posted = threading.Event()

    def send(self, message: OutboundMessage) -> SendResult:
        self.called.set()
        assert self.receipt_posted.wait(10)
        time.sleep(0.3)  # the receipt is now waiting on the message, not done
        return SendResult(provider_message_id=SID)


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_db(request: pytest.FixtureRequest) -> Iterator[Database]:
    database: Database = request.getfixturevalue(
        "postgres_database" if request.param == "postgresql" else "sqlite_database"
    )
    with database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="竞速家政", signature="竞速家政")
        tenant_id = tenant.id
    try:
        yield database
    finally:
        with database.session() as session:
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))


def test_a_delivered_receipt_posted_during_the_send_is_applied_after_it(shared_db: Database):
    database = shared_db
    now = utcnow()
    with database.session() as session:
        tenant = session.scalars(select(Tenant).where(Tenant.name == "竞速家政")).one()
        customer = customers.create_customer(
            session=session,
            tenant=tenant,
            name="陈女士",
            phone="13800139999",
            timezone=zone_in_window(),
        )
        message, _ = outbox.schedule(
            session=session,
            tenant=tenant,
            customer=customer,
            channel="sms",
            category="service",
            source_type="visit_report",
            source_id="race",
            body="您好，本次服务报告已生成",
            due_at=now,
        )
        message_id = message.id
    with database.session() as session:
        assert message_id in outbox.claim_due(session=session, now=now)
    with database.session() as session:
        assert outbox.claim_for_send(session=session, message_id=message_id, now=now)

    provider = ReportsAtOnce()
    finished: dict[str, float] = {}

    def receipt() -> None:
        assert provider.called.wait(10)
        provider.receipt_posted.set()
        with database.session() as session:
            apply_receipt(
                session=session,
                provider="twilio",
                provider_message_id=SID,
                status="delivered",
                error_code=None,
                now=utcnow(),
                message_id=message_id,
            )
        finished["receipt"] = time.monotonic()

    poster = threading.Thread(target=receipt)
    poster.start()
    with database.session() as session:
        outbox.deliver(session=session, message_id=message_id, provider=provider, now=now)
    finished["send"] = time.monotonic()
    poster.join(20)
    assert not poster.is_alive()

    assert finished["receipt"] >= finished["send"] - 0.05  # it waited for the send's commit
    with database.session() as session:
        final = session.get(Message, message_id)
        assert final is not None
        assert (final.status, final.provider_message_id) == (DELIVERED, SID)
        history = [
            (e.status, e.applied)
            for e in session.scalars(
                select(MessageEvent)
                .where(MessageEvent.message_id == message_id)
                .order_by(MessageEvent.id)
            )
        ]
    assert history[-2:] == [(SENT, True), (DELIVERED, True)]
