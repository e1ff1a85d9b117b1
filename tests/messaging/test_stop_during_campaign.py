"""Invariant 2 with a real worker: a STOP during a running campaign stops it for that number.

Distributed mode for real: PostgreSQL, a Celery worker, ``huifang beat`` and ``huifang
serve`` (uvicorn) on Redis, the Twilio adapter against a loopback Twilio that answers a
little slowly. A company runs a campaign: a reminder 90 days after each customer's last
空调清洗, one day late for all sixty customers and so, within the catch-up window, due now.
It is activated through the API (which queues its materialization); beat's hand-off tick
turns the occurrences into outbox messages and the dispatcher tick queues them.

While the worker is sending, five customers whose message is still waiting in the queue
text STOP (or T, 退订) to the running server's Twilio webhook, signed by the official
``twilio`` RequestValidator. The opt-out is committed before the webhook answers, and the
gate takes the per-number lock ``opt_out`` takes, so after the answer Twilio may receive
exactly one more request for that number: the opt-out confirmation. Their campaign
messages end ``suppressed`` (``opted_out``); every other customer gets theirs once.

Beat's hand-off tick runs every minute and the dispatcher's every ten seconds; here both
run every second, so that the test takes seconds. Nothing else differs from production.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select
from twilio.request_validator import RequestValidator

from campaigns import lifecycle as campaigns
from campaigns.models import HANDED_OFF, CampaignOccurrence
from compliance import service as compliance
from compliance.models import OPTED_OUT
from customers import service as customers
from huifang.db import Database, utcnow
from messaging.models import (
    DEFERRED,
    OPT_OUT,
    QUEUED,
    SCHEDULED,
    SENDING,
    SENT,
    SUPPRESSED,
    InboundMessage,
    Message,
)
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
from visits import service as visits

CUSTOMERS = 60
TWILIO_DELAY = 0.15  # seconds per request: sixty sends take long enough to be interrupted
# A STOP is sent once Twilio has this many requests, for the customer LEAD places further
# down the queue: far enough that no worker has taken that message yet.
STOP_AFTER = (4, 12, 20, 28, 36)
LEAD = 12
# What the customers write, and a phrase of the one confirmation each must get.
STOP_WORDS = ("STOP", "T", "stop", "退订", "Stop")
# In the company's language (Chinese) whatever the keyword: "STOP" and "退订" alike.
CONFIRMATION = "您已退订"
HOOK_PATH = "/hooks/twilio/inbound"
CAMPAIGN_SOURCE = "campaign"
WAITING = (SCHEDULED, QUEUED, SENDING, DEFERRED)
FAST_TICKS = (
    "import datetime\n"
    "from huifang.worker import celery_app\n"
    "for name in ('hand-off-due-occurrences', 'dispatch-due-messages'):\n"
    "    celery_app.conf.beat_schedule[name]['schedule'] = datetime.timedelta(seconds=1)\n"
)


class TimedTwilio(FakeTwilio):
    """The loopback Twilio, taking ``delay`` seconds over each request and noting when each
    was read in full (``time.monotonic()``, the clock the test reads too)."""

    def __init__(self, *, delay: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay = delay
        self.arrivals: list[tuple[float, ReceivedRequest]] = []
        self._arrival_lock = threading.Lock()

    def handle(self, request: ReceivedRequest) -> tuple[int, dict[str, Any]]:
        with self._arrival_lock:
            self.arrivals.append((time.monotonic(), request))
        time.sleep(self.delay)
        return super().handle(request)


@dataclass(frozen=True)
class Company:
    tenant_id: int
    key: str
    campaign_id: int
    phones: dict[int, str]  # customer id -> E.164 number


@dataclass(frozen=True)
class Stop:
    customer_id: int
    phone: str
    word: str
    answered_at: float  # time.monotonic() when the webhook's answer had arrived
    sent_before: int  # requests Twilio had read when the STOP was posted


def _company(database: Database, zone: str) -> Company:
    """Sixty consenting customers, each 空调清洗 91 days ago; a draft 90-day reminder."""
    now = utcnow()
    with database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="退订家政", signature="退订家政")
        _, key = tenancy.create_api_key(session=session, tenant=tenant)
        phones: dict[int, str] = {}
        for i in range(CUSTOMERS):
            person = customers.create_customer(
                session=session,
                tenant=tenant,
                name=f"客户{i}",
                phone=f"1371234{i:04d}",
                timezone=zone,
            )
            visits.create_visit(
                session=session,
                tenant=tenant,
                customer_id=person.id,
                service_type="ac_cleaning",
                finished_at=now - dt.timedelta(days=91),
            )
            compliance.record_consent(
                session=session,
                tenant_id=tenant.id,
                customer=person,
                source="in_person",
                evidence="签字单",
                granted_at=now - dt.timedelta(days=91),
                now=now,
            )
            phones[person.id] = person.phone
        campaign = campaigns.create_campaign(
            session=session,
            tenant=tenant,
            name="空调滤网提醒",
            rule={
                "kind": "cadence",
                "service_type": "ac_cleaning",
                "every_days": 90,
                "catch_up_days": 7,
            },
            template="{{ customer_name }}您好，空调滤网该清洗了，预约上门：{{ booking_link }}",
        )
        return Company(tenant.id, key, campaign.id, phones)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _campaign_messages(database: Database, tenant_id: int) -> list[Message]:
    with database.sessionmaker() as session:
        return list(
            session.scalars(
                select(Message)
                .where(Message.tenant_id == tenant_id, Message.source_type == CAMPAIGN_SOURCE)
                .order_by(Message.id)
            )
        )


def _still_waiting(database: Database, tenant_id: int, skip: set[int]) -> list[int]:
    """Customers whose campaign message no worker has taken yet, in the order of the queue
    (the dispatcher queues claimed messages by id, and Redis hands them out in order)."""
    with database.sessionmaker() as session:
        return [
            customer_id
            for customer_id in session.scalars(
                select(Message.customer_id)
                .where(
                    Message.tenant_id == tenant_id,
                    Message.source_type == CAMPAIGN_SOURCE,
                    Message.status == QUEUED,
                )
                .order_by(Message.id)
            )
            if customer_id not in skip
        ]


def _settled(database: Database, tenant_id: int) -> Counter[str]:
    """Messages of the company by status; an empty count while there are none, or while
    any is still waiting."""
    with database.sessionmaker() as session:
        statuses = Counter(
            session.scalars(select(Message.status).where(Message.tenant_id == tenant_id))
        )
    return Counter() if any(statuses[s] for s in WAITING) else statuses


def _has_read(fake: FakeTwilio, count: int) -> bool:
    return len(fake.received) >= count


def _reply_form(fake: FakeTwilio, phone: str, text: str, sid: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": fake.account_sid,
        "From": phone,
        "To": fake.from_number,
        "Body": text,
        "NumMedia": "0",
        "ApiVersion": "2010-04-01",
    }


@pytest.mark.services
@pytest.mark.timeout(180)
def test_nothing_goes_to_a_number_after_its_stop_was_answered(
    postgres_database: Database, redis_url: str, tmp_path: Path
) -> None:
    zone = zone_in_window(hours=0.5)  # quiet hours must not defer these sends
    company = _company(postgres_database, zone)
    port = _free_port()
    public_url = f"http://127.0.0.1:{port}"
    logs = {name: tmp_path / f"{name}.log" for name in ("worker", "beat", "server")}

    def tails() -> str:
        return "\n".join(f"{name}:\n{log_tail(log)}" for name, log in logs.items())

    stops: list[Stop] = []
    fake = TimedTwilio(delay=TWILIO_DELAY)
    with fake:
        env = {
            **os.environ,
            "HUIFANG_ENVIRONMENT": "test",
            "HUIFANG_REDIS_URL": redis_url,
            "HUIFANG_DATABASE_URL": postgres_database.url,
            "HUIFANG_PUBLIC_URL": public_url,
            "HUIFANG_SMS_PROVIDER": "twilio",
            "HUIFANG_TWILIO_ACCOUNT_SID": fake.account_sid,
            "HUIFANG_TWILIO_AUTH_TOKEN": fake.auth_token,
            "HUIFANG_TWILIO_API_BASE": fake.base_url,
            "HUIFANG_TWILIO_FROM_NUMBER": fake.from_number,
            # Twilio's long-code default is 1/s; the rate limiter is not under test here.
            "HUIFANG_SMS_RATE_PER_SECOND": "200",
        }
        processes = [
            start_huifang(
                ["worker", "-Q", "default,messaging", "-c", "2"], env=env, log=logs["worker"]
            ),
            start_huifang(["beat"], env=env, log=logs["beat"], prelude=FAST_TICKS),
            start_huifang(["serve", "--port", str(port)], env=env, log=logs["server"]),
        ]
        validator = RequestValidator(fake.auth_token)
        try:
            with httpx.Client(base_url=public_url, timeout=10) as http:

                def up() -> bool:
                    try:
                        return http.get("/healthz").status_code == 200
                    except httpx.TransportError:
                        return False

                assert wait_for(up, 60, 0.2), tails()
                activated = http.post(
                    f"/v1/campaigns/{company.campaign_id}/activate",
                    headers={"Authorization": f"Bearer {company.key}"},
                )
                assert activated.status_code == 200, activated.text

                for number, (after, word) in enumerate(zip(STOP_AFTER, STOP_WORDS, strict=True)):
                    assert wait_for(partial(_has_read, fake, after), 90, 0.005), tails()
                    waiting = _still_waiting(
                        postgres_database, company.tenant_id, {s.customer_id for s in stops}
                    )
                    assert len(waiting) > LEAD, f"the campaign ran ahead: {len(waiting)} left"
                    customer_id = waiting[LEAD]
                    phone = company.phones[customer_id]
                    form = _reply_form(fake, phone, word, f"SMstop{number}")
                    signature = validator.compute_signature(public_url + HOOK_PATH, form)
                    sent_before = len(fake.received)
                    answer = http.post(
                        HOOK_PATH, data=form, headers={"X-Twilio-Signature": signature}
                    )
                    answered_at = time.monotonic()
                    assert answer.status_code == 200, answer.text
                    assert "<Response>" in answer.text
                    stops.append(Stop(customer_id, phone, word, answered_at, sent_before))

            # Every campaign message and every confirmation has gone out or been stopped.
            def settled() -> bool:
                return bool(_settled(postgres_database, company.tenant_id))

            assert wait_for(settled, 90, 0.2), tails()
        finally:
            for process in reversed(processes):
                stop(process)
            arrivals = list(fake.arrivals)

    try:
        with postgres_database.sessionmaker() as session:
            messages = {
                m.id: m
                for m in session.scalars(
                    select(Message).where(Message.tenant_id == company.tenant_id)
                )
            }
            occurrences = Counter(
                session.scalars(
                    select(CampaignOccurrence.status).where(
                        CampaignOccurrence.campaign_id == company.campaign_id
                    )
                )
            )
            replies = list(
                session.scalars(
                    select(InboundMessage)
                    .where(InboundMessage.tenant_id == company.tenant_id)
                    .order_by(InboundMessage.id)
                )
            )
        campaign = {m.customer_id: m for m in messages.values() if m.source_type == CAMPAIGN_SOURCE}
        # One campaign message per customer, made by the hand-off tick from the occurrences.
        assert occurrences == Counter({HANDED_OFF: CUSTOMERS}), occurrences
        assert sorted(campaign) == sorted(company.phones)
        assert [(r.customer_id, r.route) for r in replies] == [
            (s.customer_id, OPT_OUT) for s in stops
        ]

        # Every request Twilio read is one of ours, to the number of its message.
        by_message = Counter(callback_message_id(request) for _, request in arrivals)
        assert set(by_message) <= set(messages), by_message
        for _, request in arrivals:
            message = messages[callback_message_id(request) or 0]
            assert request.field("To") == company.phones[message.customer_id]

        stopped = {s.customer_id for s in stops}
        for stop_ in stops:
            message = campaign[stop_.customer_id]
            confirmations = [
                m
                for m in messages.values()
                if m.customer_id == stop_.customer_id and m.category == "reply"
            ]
            assert [m.source_type for m in confirmations] == ["opt_out_reply"], confirmations
            [confirmation] = confirmations
            # After the answer, Twilio heard of that number once more: the confirmation.
            later = [
                request
                for at, request in arrivals
                if request.field("To") == stop_.phone and at >= stop_.answered_at
            ]
            assert [callback_message_id(request) for request in later] == [confirmation.id], (
                f"{stop_}: sent after the answer: {[r.field('Body') for r in later]}"
            )
            assert CONFIRMATION in (later[0].field("Body") or "")
            assert by_message[confirmation.id] == 1
            assert confirmation.status == SENT
            # Its campaign message never left: the gate saw the opt-out.
            assert by_message[message.id] == 0
            assert (message.status, message.status_reason) == (SUPPRESSED, OPTED_OUT), (
                f"{stop_}: its campaign message ended {message.status} "
                f"({message.status_reason}: {message.status_detail})"
            )

        # Everyone else got their campaign message, exactly once.
        for customer_id, message in campaign.items():
            if customer_id not in stopped:
                assert message.status == SENT, (customer_id, message.status_reason)
                assert by_message[message.id] == 1, (customer_id, by_message[message.id])

        # The others' campaign messages and one confirmation per STOP went out; nothing else.
        assert Counter(m.status for m in messages.values()) == Counter(
            {SENT: (CUSTOMERS - len(stops)) + len(stops), SUPPRESSED: len(stops)}
        )

        # The STOPs came while the campaign was going out, not after it: campaign messages
        # reached Twilio after each answer.
        campaign_ids = {m.id for m in campaign.values()}
        last_campaign_send = max(
            at for at, request in arrivals if callback_message_id(request) in campaign_ids
        )
        assert last_campaign_send > stops[-1].answered_at
    finally:
        with postgres_database.session() as session:
            session.execute(delete(Tenant).where(Tenant.id == company.tenant_id))
