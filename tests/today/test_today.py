"""今日: the day's counts and lists for a company, right and in a fixed number of queries."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from sqlalchemy import event

from bookings.models import CONFIRMED, REQUESTED, Booking
from bookings.service import book_from_reply
from campaigns import lifecycle as campaigns
from campaigns.models import CANCELLED, HANDED_OFF, PENDING, CampaignOccurrence
from customers import service as customers
from media.models import Media
from messaging import inbound, threads
from today import service
from visits import service as visits

NOON_CN = dt.datetime(2026, 11, 23, 4, 0, tzinfo=dt.UTC)  # Monday 12:00 in Shanghai
CN = dt.timezone(dt.timedelta(hours=8))
_numbers = itertools.count(13800000001)
_codes = itertools.count(1)


def _customer(session, tenant, name="王女士"):
    return customers.create_customer(
        session=session, tenant=tenant, name=name, phone=str(next(_numbers))
    )


def _booking(session, tenant, customer, *, age, status=REQUESTED):
    row = Booking(
        tenant_id=tenant.id,
        customer_id=customer.id,
        status=status,
        channel="page",
        service_type="ac_cleaning",
        slot_start=NOON_CN + dt.timedelta(days=1),
    )
    session.add(row)
    session.flush()
    row.created_at = NOON_CN - age
    session.flush()
    return row


def _reply(session, tenant, customer, text, *, age):
    received = inbound.receive(
        session=session,
        on_book=book_from_reply,
        provider="console",
        provider_message_id=f"t-{next(_codes)}",
        phone=customer.phone,
        text=text,
        tenant=tenant,
        now=NOON_CN - age,
    )
    return inbound.replies(session=session, received=received)[0]


def _media(session, tenant, visit, status):
    code = next(_codes)  # later ones arrived later
    arrived = NOON_CN - dt.timedelta(days=1) + dt.timedelta(seconds=code)
    session.add(
        Media(
            tenant_id=tenant.id,
            visit_id=visit.id,
            kind="photo",
            phase="after",
            status=status,
            original_path=f"originals/{code}.jpg",
            sha256=f"{code:064d}",
            bytes=1,
            mime="image/jpeg",
            received_at=arrived,
            verification_code=f"T{code:09d}",
        )
    )


def _occurrence(session, tenant, campaign, customer, local, status=PENDING):
    due = local.astimezone(dt.UTC)
    session.add(
        CampaignOccurrence(
            tenant_id=tenant.id,
            campaign_id=campaign.id,
            customer_id=customer.id,
            local_date=local.date(),
            due_at=due,
            campaign_version=1,
            status=status,
        )
    )


@pytest.fixture
def day(session, account, other_account):
    """A company's morning: something of everything, and another company's rows beside it."""
    tenant = account.tenant
    wang, li, zhao = (_customer(session, tenant, n) for n in ("王女士", "李先生", "赵女士"))
    _booking(session, tenant, wang, age=dt.timedelta(hours=5))  # past the 4 h target
    _booking(session, tenant, li, age=dt.timedelta(minutes=10))
    _booking(session, tenant, zhao, age=dt.timedelta(hours=1), status=CONFIRMED)
    late = _reply(session, tenant, wang, "阿姨没擦干净", age=dt.timedelta(hours=3))
    answered = _reply(session, tenant, li, "师傅迟到了", age=dt.timedelta(hours=3))
    threads.mark_responded(
        session=session,
        tenant_id=tenant.id,
        reply_id=answered.id,
        now=NOON_CN - dt.timedelta(hours=2),
    )
    done = _reply(session, tenant, zhao, "地板没拖干净", age=dt.timedelta(hours=1))
    threads.resolve(
        session=session, tenant_id=tenant.id, reply_id=done.id, resolution="已返工", now=NOON_CN
    )
    waiting = _reply(session, tenant, zhao, "好的，知道了", age=dt.timedelta(minutes=30))
    _reply(session, tenant, li, "T", age=dt.timedelta(minutes=20))  # handled on arrival
    staff = visits.create_staff(session=session, tenant=tenant, name="张阿姨")
    first = visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=wang.id,
        service_type="ac_cleaning",
        staff_id=staff.id,
    )
    second = visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=li.id,
        service_type="deep_cleaning",
        staff_id=staff.id,
    )
    for visit, status in (
        (first, "processing"),
        (first, "processing"),
        (first, "ready"),
        (second, "processing"),
        (second, "failed"),
    ):
        _media(session, tenant, visit, status)
    campaign = campaigns.create_campaign(
        session=session, tenant=tenant, name="冬季保洁", preset="ac_filter_quarterly"
    )
    for local, status in (
        (dt.datetime(2026, 11, 23, 0, 0, tzinfo=CN), PENDING),
        (dt.datetime(2026, 11, 23, 10, 0, tzinfo=CN), HANDED_OFF),
        (dt.datetime(2026, 11, 23, 23, 59, tzinfo=CN), PENDING),
        (dt.datetime(2026, 11, 23, 15, 0, tzinfo=CN), CANCELLED),
        (dt.datetime(2026, 11, 24, 9, 0, tzinfo=CN), PENDING),
        (dt.datetime(2026, 11, 22, 23, 59, tzinfo=CN), PENDING),
        (dt.datetime(2026, 11, 25, 0, 0, tzinfo=CN), PENDING),
    ):
        _occurrence(session, tenant, campaign, _customer(session, tenant), local, status)
    # Another company's rows must not count.
    theirs = _customer(session, other_account.tenant, "B的客户")
    _booking(session, other_account.tenant, theirs, age=dt.timedelta(hours=9))
    _reply(session, other_account.tenant, theirs, "没擦干净", age=dt.timedelta(hours=9))
    session.flush()
    return {
        "late": late,
        "answered": answered,
        "waiting": waiting,
        "first": first,
        "second": second,
        "campaign": campaign,
    }


class _Statements:
    def __init__(self, engine):
        self.engine, self.seen = engine, []

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, conn, cursor, statement, *args):
        if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE")):
            self.seen.append(statement)


def test_the_day_is_counted_in_the_company_time_zone(session, account, day, database):
    with _Statements(database.engine) as statements:
        found = service.today(session=session, tenant=account.tenant, now=NOON_CN)
    assert len(statements.seen) == 5, statements.seen
    counts = found.counts
    assert (counts.bookings, counts.overdue_bookings) == (2, 1)
    assert (counts.tickets, counts.overdue_tickets) == (2, 1)
    assert (counts.replies, counts.overdue_replies) == (1, 0)
    assert counts.reports_building == 2
    assert (counts.sends_today, counts.sends_tomorrow) == (3, 1)
    assert found.today == dt.date(2026, 11, 23) and found.tomorrow == dt.date(2026, 11, 24)
    assert [b.customer_name for b in found.bookings] == ["王女士", "李先生"]
    assert found.bookings[0].clock.overdue and found.bookings[0].service_label == "空调清洗"
    late, answered = found.tickets
    assert late.reply_id == day["late"].id and late.clock.overdue and late.clock.minutes == 180
    assert late.kind == "complaint" and late.complaint_rule
    assert answered.clock.responded_at is not None and not answered.clock.overdue
    assert [r.reply_id for r in found.replies] == [day["waiting"].id]
    assert [(r.visit_id, r.processing) for r in found.reports] == [
        (day["first"].id, 2),
        (day["second"].id, 1),
    ]
    [sends] = found.sends
    assert (sends.campaign_name, sends.today, sends.tomorrow) == ("冬季保洁", 3, 1)


def test_the_query_count_does_not_grow_with_the_rows(session, account, day, database):
    tenant = account.tenant
    for _ in range(25):
        customer = _customer(session, tenant, "新客户")
        _booking(session, tenant, customer, age=dt.timedelta(minutes=1))
        _reply(session, tenant, customer, "没擦干净", age=dt.timedelta(minutes=1))
    with _Statements(database.engine) as statements:
        found = service.today(session=session, tenant=tenant, now=NOON_CN)
    assert len(statements.seen) == 5
    assert found.counts.bookings == 27 and len(found.bookings) == service.LIST
    assert found.counts.tickets == 27 and len(found.tickets) == service.LIST
    assert found.bookings[0].customer_name == "王女士"  # the longest waiting first


def test_an_empty_day_and_the_api(client, account, other_account, day):
    empty = client.get("/v1/today", headers=other_account.headers)
    assert empty.status_code == 200
    assert empty.json()["counts"]["bookings"] == 1  # only its own
    answer = client.get("/v1/today", headers=account.headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["counts"]["tickets"] == 2 and body["complaint_target_minutes"] == 120
    assert body["timezone"] == "Asia/Shanghai"
    assert client.get("/v1/today").status_code == 401
