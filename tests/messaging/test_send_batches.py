"""Sending in batches: one transaction gates, sends and records many messages, each decided
exactly as ``gate`` decides one, and batches sized to the provider's pace.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, delete, func, select, update
from sqlalchemy.orm import Session

from compliance import service as compliance
from compliance.models import (
    ALLOWED,
    FREQUENCY_CAP,
    NO_CONSENT,
    OPTED_OUT,
    QUIET_HOURS,
    ComplianceDecision,
    MarketingSend,
)
from customers import service as customers
from customers.models import Customer
from huifang.db import Database
from huifang.settings import get_settings
from messaging import service as outbox
from messaging import tasks as send_tasks
from messaging.models import (
    DEFERRED,
    FAILED,
    PROVIDER_REFUSED,
    QUEUED,
    SENDING,
    SENT,
    SUPPRESSED,
    Message,
    MessageEvent,
)
from messaging.providers.base import OutboundMessage, PermanentError, Provider, SendResult
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.conftest import Account

NOW = dt.datetime(2026, 4, 20, 3, 0, tzinfo=dt.UTC)  # 11:00 in Shanghai, 23:00 in New York
REFUSED_NUMBER = "+8613800138005"


class Recording(Provider):
    """Accepts everything but one number, which it refuses for good; remembers each call."""

    name = "recording"

    def __init__(self, *, seconds: float = 0.0) -> None:
        self.calls: list[str] = []
        self.seconds = seconds

    def send(self, message: OutboundMessage) -> SendResult:
        time.sleep(self.seconds)
        self.calls.append(message.to)
        if message.to == REFUSED_NUMBER:
            raise PermanentError("The number is not a valid mobile number.", code="21614")
        return SendResult(provider_message_id=f"rec-{message.message_id}")


def _customer(
    session: Session,
    account: Account,
    n: int,
    *,
    zone: str = "Asia/Shanghai",
    consent: bool = False,
) -> Customer:
    person = customers.create_customer(
        session=session,
        tenant=account.tenant,
        name=f"客户{n}",
        phone=f"1380013800{n}",
        timezone=zone,
    )
    if consent:
        compliance.record_consent(
            session=session,
            tenant_id=account.tenant.id,
            customer=person,
            source="in_person",
            evidence="签字确认",
            granted_at=NOW - dt.timedelta(days=30),
            now=NOW,
        )
    return person


def _due(session: Session, account: Account, person: Customer, category: str, cause: str) -> int:
    message, _ = outbox.schedule(
        session=session,
        tenant=account.tenant,
        customer=person,
        channel="sms",
        category=category,
        source_type="test",
        source_id=cause,
        body="您好，换季空调清洗九折，回复1预约",
        due_at=NOW,
    )
    return message.id


def test_one_batch_decides_each_message_as_the_gate_would(
    session: Session, account: Account
) -> None:
    opted_out = _customer(session, account, 1)
    compliance.opt_out(
        session=session,
        tenant=account.tenant,
        phone=opted_out.phone,
        reason="reply_opt_out",
        detail="回复T",
        now=NOW - dt.timedelta(days=1),
    )
    no_consent = _customer(session, account, 2)
    abroad = _customer(session, account, 3, zone="America/New_York")
    capped = _customer(session, account, 4, consent=True)
    # One marketing message already this quarter: the cap (2 per 90 days) has room for one.
    session.add(
        MarketingSend(
            tenant_id=account.tenant.id,
            phone=capped.phone,
            message_ref="earlier",
            allowed_at=NOW - dt.timedelta(days=10),
        )
    )
    refused = _customer(session, account, 5)
    fine = _customer(session, account, 6)
    ids = {
        "opted_out": _due(session, account, opted_out, "service", "a"),
        "no_consent": _due(session, account, no_consent, "marketing", "b"),
        "abroad": _due(session, account, abroad, "service", "c"),
        "capped_1": _due(session, account, capped, "marketing", "d1"),
        "capped_2": _due(session, account, capped, "marketing", "d2"),
        "capped_3": _due(session, account, capped, "marketing", "d3"),
        "refused": _due(session, account, refused, "service", "e"),
        "fine": _due(session, account, fine, "service", "f"),
    }
    assert set(outbox.claim_due(session=session, now=NOW)) == set(ids.values())
    claimed = outbox.claim_many_for_send(session=session, message_ids=list(ids.values()), now=NOW)
    assert claimed == sorted(ids.values())
    assert outbox.claim_many_for_send(session=session, message_ids=claimed, now=NOW) == []

    provider = Recording()
    found = outbox.deliver_many(session=session, message_ids=claimed, provider=provider, now=NOW)

    status = {name: (found[i].status, found[i].status_reason) for name, i in ids.items()}
    assert status == {
        "opted_out": (SUPPRESSED, OPTED_OUT),
        "no_consent": (SUPPRESSED, NO_CONSENT),
        "abroad": (DEFERRED, QUIET_HOURS),
        "capped_1": (SENT, None),
        "capped_2": (SUPPRESSED, FREQUENCY_CAP),  # the first one in this batch counted
        "capped_3": (SUPPRESSED, FREQUENCY_CAP),
        "refused": (FAILED, PROVIDER_REFUSED),
        "fine": (SENT, None),
    }
    # The calls go out together (``send_concurrency``), so in no particular order.
    assert sorted(provider.calls) == sorted([capped.phone, REFUSED_NUMBER, fine.phone])
    assert found[ids["abroad"]].due_at == dt.datetime(2026, 4, 20, 12, 0, tzinfo=dt.UTC)
    assert found[ids["capped_1"]].text == "【测试家政】您好，换季空调清洗九折，回复1预约 回复T退订"
    session.expire_all()
    decisions = dict(
        session.execute(
            select(ComplianceDecision.message_ref, ComplianceDecision.reason).where(
                ComplianceDecision.tenant_id == account.tenant.id
            )
        ).all()
    )
    assert len(decisions) == len(ids)
    assert list(decisions.values()).count(ALLOWED) == 3
    assert (
        session.scalar(
            select(func.count())
            .select_from(MarketingSend)
            .where(MarketingSend.phone == capped.phone)
        )
        == 2
    )
    for name, message_id in ids.items():
        history = [
            e.status
            for e in session.scalars(
                select(MessageEvent)
                .where(MessageEvent.message_id == message_id)
                .order_by(MessageEvent.id)
            )
        ]
        assert history[-2:] == [SENDING, found[message_id].status], name


class Overlapping(Recording):
    """Answers only once ``together`` calls are in flight at the same time (a barrier), and
    remembers the most that ever were."""

    name = "overlapping"

    def __init__(self, together: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(together, timeout=5)
        self.lock = threading.Lock()
        self.in_flight = self.most = 0

    def send(self, message: OutboundMessage) -> SendResult:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            self.barrier.wait()  # BrokenBarrierError (a test failure) if calls don't overlap
            return super().send(message)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.mark.parametrize("at_once", [3, 1])
def test_a_batch_makes_its_provider_calls_send_concurrency_at_a_time(
    session: Session, account: Account, monkeypatch: pytest.MonkeyPatch, at_once: int
) -> None:
    monkeypatch.setattr(get_settings(), "send_concurrency", at_once)
    people = [_customer(session, account, n) for n in range(6)]  # n == 5: the refused number
    ids = [_due(session, account, person, "service", f"c{n}") for n, person in enumerate(people)]
    outbox.claim_due(session=session, now=NOW)
    claimed = outbox.claim_many_for_send(session=session, message_ids=ids, now=NOW)
    provider = Overlapping(together=at_once)

    found = outbox.deliver_many(session=session, message_ids=claimed, provider=provider, now=NOW)

    assert provider.most == at_once  # rounds of ``at_once``, never more at the same time
    if at_once == 1:
        assert provider.calls == [person.phone for person in people]  # in the batch's order
    else:
        assert sorted(provider.calls) == sorted(person.phone for person in people)
    # Each outcome is recorded on its own message, whatever order the answers came in.
    assert {i: found[i].status for i in ids} == {**{i: SENT for i in ids[:5]}, ids[5]: FAILED}
    assert {found[i].provider_message_id for i in ids[:5]} == {f"rec-{i}" for i in ids[:5]}
    assert found[ids[5]].provider_message_id is None
    assert all(found[i].attempts == 1 for i in ids)


def test_a_marketing_message_the_provider_refused_does_not_count_against_the_cap(
    session: Session, account: Account
) -> None:
    person = _customer(session, account, 5, consent=True)  # the number Recording refuses
    refused = _due(session, account, person, "marketing", "r1")
    outbox.claim_due(session=session, now=NOW)
    outbox.claim_many_for_send(session=session, message_ids=[refused], now=NOW)
    found = outbox.deliver_many(
        session=session, message_ids=[refused], provider=Recording(), now=NOW
    )
    assert (found[refused].status, found[refused].status_reason) == (FAILED, PROVIDER_REFUSED)
    assert (
        session.scalar(
            select(func.count())
            .select_from(MarketingSend)
            .where(MarketingSend.phone == person.phone)
        )
        == 0
    )

    # The number works again (say the customer moved it to another carrier): the two
    # marketing messages of this quarter both go out; the refused one took no place.
    class Accepting(Recording):
        def send(self, message: OutboundMessage) -> SendResult:
            self.calls.append(message.to)
            return SendResult(provider_message_id=f"ok-{message.message_id}")

    later = [_due(session, account, person, "marketing", cause) for cause in ("r2", "r3")]
    outbox.claim_due(session=session, now=NOW)
    outbox.claim_many_for_send(session=session, message_ids=later, now=NOW)
    provider = Accepting()
    found = outbox.deliver_many(session=session, message_ids=later, provider=provider, now=NOW)
    assert [found[i].status for i in later] == [SENT, SENT]
    assert (
        session.scalar(
            select(func.count())
            .select_from(MarketingSend)
            .where(MarketingSend.phone == person.phone)
        )
        == 2
    )


def test_a_message_no_longer_sending_is_left_alone(session: Session, account: Account) -> None:
    person = _customer(session, account, 7)
    message_id = _due(session, account, person, "service", "g")
    outbox.claim_due(session=session, now=NOW)
    provider = Recording()
    found = outbox.deliver_many(
        session=session, message_ids=[message_id], provider=provider, now=NOW
    )  # still queued: nobody claimed it for sending
    assert provider.calls == []
    assert found[message_id].status == "queued"
    assert session.get(Message, message_id) is found[message_id]


def test_a_claim_reads_its_rows_by_primary_key_when_few_messages_look_queued(
    postgres_database: Database,
) -> None:
    """PostgreSQL: the statistics usually say few messages are queued, which made the
    planner walk ``ix_messages_due`` through every queued message (of every company) to
    claim one batch. The claim's status condition matches no index: it reads its rows by
    primary key."""
    owner = create_engine(postgres_database.url)  # to ANALYZE, which the app role may not
    try:
        with owner.connect() as connection, connection.begin() as transaction:
            session = Session(bind=connection, join_transaction_mode="create_savepoint")
            tenant = tenancy.create_tenant(session=session, name="计划家政", signature="计划家政")
            person = customers.create_customer(
                session=session, tenant=tenant, name="客户", phone="13900990001"
            )
            message, _ = outbox.schedule(
                session=session,
                tenant=tenant,
                customer=person,
                channel="sms",
                category="service",
                source_type="test",
                source_id="plan",
                body="您好",
                due_at=NOW,
            )
            session.flush()
            columns = [c.name for c in Message.__table__.c if c.name not in ("id", "status")]
            copied = ", ".join(
                "idempotency_key || '-' || n" if c == "idempotency_key" else c for c in columns
            )
            connection.exec_driver_sql(
                f"INSERT INTO messages ({', '.join(columns)}, status) "
                f"SELECT {copied}, 'sent' FROM messages, generate_series(1, 3000) AS n "
                f"WHERE id = {int(message.id)}"
            )
            connection.exec_driver_sql("ANALYZE messages")  # hardly any queued
            ids = list(
                connection.exec_driver_sql(
                    "UPDATE messages SET status = 'queued' WHERE tenant_id = %(t)s "
                    "AND id IN (SELECT id FROM messages WHERE tenant_id = %(t)s ORDER BY id "
                    "DESC LIMIT 600) RETURNING id",
                    {"t": tenant.id},
                ).scalars()
            )[:50]
            params = {"ids": ids, "from_": [QUEUED], "to": SENDING, "now": NOW}

            def plan(statement: str) -> str:
                rows = connection.exec_driver_sql("EXPLAIN " + statement, params).scalars()
                return "\n".join(rows)

            claim = outbox._MOVE_POSTGRES[False]
            # The same statement with a plain status condition: the plan this avoids.
            plain = claim.replace("(status || '') = ANY", "status = ANY")
            assert "ix_messages_due" in plan(plain)
            assert "pk_messages" in plan(claim) and "ix_messages_due" not in plan(claim)
            transaction.rollback()
    finally:
        owner.dispose()


def test_batches_are_sized_to_the_providers_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox, "_latency", {})
    monkeypatch.setattr(get_settings(), "send_concurrency", 4)
    provider = Recording()
    assert outbox.batch_size(provider) == 1  # nothing measured yet
    outbox._measured(provider, 0.002)  # a loopback provider: 2 ms a message
    assert outbox.batch_size(provider) == outbox.MAX_BATCH
    for _ in range(20):
        outbox._measured(provider, 0.3)  # Twilio slowing down, or a rate limit
    assert outbox.batch_size(provider) == 4  # one round of calls, four at once
    outbox._latency[provider.name] = 0.1
    assert outbox.batch_size(provider) == 8  # 250 ms of sends: two rounds of 100 ms
    monkeypatch.setattr(get_settings(), "send_concurrency", 1)
    assert outbox.batch_size(provider) == 2  # one call at a time: two of 100 ms


@pytest.fixture
def committed_tenant(committed_db: Database) -> Iterator[int]:
    """A company whose rows are really committed (each batch commits); gone afterwards."""
    with committed_db.session() as session:
        tenant_id = tenancy.create_tenant(session=session, name="批量家政", signature="批量家政").id
    yield tenant_id
    with committed_db.session() as session:
        session.execute(delete(Tenant).where(Tenant.id == tenant_id))


def test_send_in_batches_grows_batches_for_a_fast_provider_and_not_a_slow_one(
    committed_db: Database, committed_tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real = outbox.send_batch

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(kwargs["message_ids"]))
        return real(**kwargs)

    monkeypatch.setattr(outbox, "send_batch", spy)
    monkeypatch.setattr(send_tasks, "utcnow", lambda: NOW)
    monkeypatch.setattr(get_settings(), "send_concurrency", 2)
    # On PostgreSQL, after the first batch, two lanes take half a batch each.
    lanes = 2 if committed_db.engine.dialect.name == "postgresql" else 1
    slow = [1, 2, 2] if lanes == 1 else [1, 1, 1, 1, 1]
    for seconds, count, expected in ((0.0, 12, [1, 11]), (0.3, 5, slow)):
        monkeypatch.setattr(outbox, "_latency", {})
        sizes.clear()
        with committed_db.session() as session:
            tenant = session.get(Tenant, committed_tenant)
            assert tenant is not None
            people = [
                customers.create_customer(
                    session=session,
                    tenant=tenant,
                    name=f"客户{i}",
                    phone=f"139{int(seconds * 10)}013{i:04d}",
                    timezone="Asia/Shanghai",
                )
                for i in range(count)
            ]
            ids = [
                outbox.schedule(
                    session=session,
                    tenant=tenant,
                    customer=person,
                    channel="sms",
                    category="service",
                    source_type="test",
                    source_id="batch",
                    body="您好，服务报告已生成",
                    due_at=NOW,
                )[0].id
                for person in people
            ]
            session.execute(
                update(Message).where(Message.id.in_(ids)).values(status=QUEUED)
            )  # as the dispatcher's claim leaves them
        provider = Recording(seconds=seconds)
        with committed_db.session() as session:
            send_tasks.send_in_batches(session=session, message_ids=ids, provider=provider)
        assert sizes == expected, seconds
        with committed_db.session() as session:
            assert set(session.scalars(select(Message.status).where(Message.id.in_(ids)))) == {SENT}
        assert len(provider.calls) == count


def test_a_task_keeps_one_lane_against_a_provider_answering_within_milliseconds(
    committed_db: Database, committed_tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of ``MAX_BATCH`` whatever the calls: the database sets the pace, and a second
    lane would only add its own transaction; every batch goes through the task's thread."""
    threads: list[str] = []
    real = outbox.send_batch

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return real(**kwargs)

    monkeypatch.setattr(outbox, "send_batch", spy)
    monkeypatch.setattr(send_tasks, "utcnow", lambda: NOW)
    monkeypatch.setattr(get_settings(), "send_concurrency", 2)
    monkeypatch.setattr(outbox, "_latency", {Recording.name: 0.001})  # 1 ms a call
    count = outbox.MAX_BATCH * 2 + 5
    with committed_db.session() as session:
        tenant = session.get(Tenant, committed_tenant)
        assert tenant is not None
        ids = []
        for i in range(count):
            person = customers.create_customer(
                session=session,
                tenant=tenant,
                name=f"客户{i}",
                phone=f"1390077{i:04d}",
                timezone="Asia/Shanghai",
            )
            ids.append(
                outbox.schedule(
                    session=session,
                    tenant=tenant,
                    customer=person,
                    channel="sms",
                    category="service",
                    source_type="test",
                    source_id="one-lane",
                    body="您好，服务报告已生成",
                    due_at=NOW,
                )[0].id
            )
        session.execute(update(Message).where(Message.id.in_(ids)).values(status=QUEUED))
    provider = Recording()
    with committed_db.session() as session:
        send_tasks.send_in_batches(session=session, message_ids=ids, provider=provider)

    assert set(threads) == {threading.current_thread().name} and len(threads) == 3
    assert len(provider.calls) == count
    with committed_db.session() as session:
        assert set(session.scalars(select(Message.status).where(Message.id.in_(ids)))) == {SENT}


def test_a_task_sends_through_two_lanes_and_each_message_ends_once(
    committed_db: Database, committed_tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task's batches after the first, on PostgreSQL, go through two lanes at once: an
    opted-out customer's message is suppressed, the number the provider refuses fails, the
    rest are sent, each message called and recorded exactly once."""
    lanes: list[str] = []
    real = outbox.send_batch

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        lanes.append(threading.current_thread().name)
        return real(**kwargs)

    monkeypatch.setattr(outbox, "send_batch", spy)
    monkeypatch.setattr(send_tasks, "utcnow", lambda: NOW)
    monkeypatch.setattr(get_settings(), "send_concurrency", 2)
    # 100 ms a call measured: batches of four, two per lane.
    monkeypatch.setattr(outbox, "_latency", {Recording.name: 0.1})
    with committed_db.session() as session:
        tenant = session.get(Tenant, committed_tenant)
        assert tenant is not None
        phones = [f"1390055{i:04d}" for i in range(11)] + [REFUSED_NUMBER]
        people = [
            customers.create_customer(
                session=session,
                tenant=tenant,
                name=f"客户{i}",
                phone=phone,
                timezone="Asia/Shanghai",
            )
            for i, phone in enumerate(phones)
        ]
        compliance.opt_out(
            session=session,
            tenant=tenant,
            phone=people[3].phone,
            reason="reply_opt_out",
            detail="回复T",
            now=NOW - dt.timedelta(days=1),
        )
        ids = [
            outbox.schedule(
                session=session,
                tenant=tenant,
                customer=person,
                channel="sms",
                category="service",
                source_type="test",
                source_id="lanes",
                body="您好，服务报告已生成",
                due_at=NOW,
            )[0].id
            for person in people
        ]
        session.execute(update(Message).where(Message.id.in_(ids)).values(status=QUEUED))
    provider = Recording(seconds=0.02)
    with committed_db.session() as session:
        send_tasks.send_in_batches(session=session, message_ids=ids, provider=provider)

    if committed_db.engine.dialect.name == "postgresql":
        assert "send-lane-1" in lanes and lanes.count(threading.current_thread().name) > 1
    else:
        assert set(lanes) == {threading.current_thread().name}  # SQLite: one lane
    # Every allowed message called once; the opted-out one not at all.
    assert sorted(provider.calls) == sorted(p.phone for i, p in enumerate(people) if i != 3)
    with committed_db.session() as session:
        status = dict(
            session.execute(select(Message.id, Message.status).where(Message.id.in_(ids))).all()
        )
        assert status == {
            **{i: SENT for i in ids[:-1]},
            ids[3]: SUPPRESSED,
            ids[-1]: FAILED,
        }
        sent = session.scalars(select(Message).where(Message.id == ids[0])).one()
        assert sent.provider_message_id == f"rec-{ids[0]}" and sent.attempts == 1
        assert sent.text == "【批量家政】您好，服务报告已生成"
        for message_id in ids:
            history = list(
                session.scalars(
                    select(MessageEvent.status)
                    .where(MessageEvent.message_id == message_id)
                    .order_by(MessageEvent.id)
                )
            )
            assert history == ["scheduled", SENDING, status[message_id]], message_id
