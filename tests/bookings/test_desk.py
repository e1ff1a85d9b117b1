"""The booking desk: requests confirmed with a time in working hours and a free staff member
(a visit is made, the customer told), or declined with a reason the customer reads."""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select

from access.models import AuditEntry
from bookings import desk
from bookings import links as short_links
from bookings import service as booking
from bookings.models import CONFIRMED, DECLINED, Booking
from bookings.service import book_from_reply
from compliance import service as compliance
from customers import service as customers
from huifang.errors import Conflict, Invalid, NotFound
from messaging import inbound
from messaging.models import HANDLED, Message
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.factories import make_customer
from visits import service as visits
from visits.models import Visit

MONDAY_9_CN = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)  # Monday 09:00 in Shanghai
TUESDAY_10_CN = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)  # Tuesday 10:00 in Shanghai
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _audit(session, tenant_id):
    return list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.tenant_id == tenant_id).order_by(AuditEntry.id)
        )
    )


@pytest.fixture
def customer(session, account):
    return make_customer(session, account.tenant)


@pytest.fixture
def request_(session, account, customer):
    link = short_links.link_for(
        session=session,
        tenant=account.tenant,
        customer=customer,
        source_type="visit_report",
        source_id="7",
        service_type="ac_cleaning",
        now=MONDAY_9_CN,
    )
    return booking.book(
        session=session, link=link, slot_start=TUESDAY_10_CN, note=None, now=MONDAY_9_CN
    )


@pytest.fixture
def zhang(session, account):
    return visits.create_staff(session=session, tenant=account.tenant, name="张阿姨")


def test_confirming_makes_the_visit_and_tells_the_customer(session, account, request_, zhang):
    answer = desk.confirm(
        session=session,
        tenant=account.tenant,
        booking_id=request_.id,
        slot_start=TUESDAY_10_CN,
        staff_id=zhang.id,
        now=MONDAY_9_CN,
    )
    assert answer.booking.status == CONFIRMED and answer.customer_told
    visit = session.get(Visit, answer.booking.visit_id)
    assert visit is not None and visit.staff_id == zhang.id
    assert visit.scheduled_at == TUESDAY_10_CN and visit.service_type == "ac_cleaning"
    assert request_.staff_id == zhang.id and request_.answered_at == MONDAY_9_CN
    assert request_.slot_end == TUESDAY_10_CN + dt.timedelta(minutes=120)
    message = session.get(Message, answer.message_id)
    assert message is not None and message.category == "service"
    assert "张阿姨" in message.body and "11月24日" in message.body
    again = desk.confirm(
        session=session,
        tenant=account.tenant,
        booking_id=request_.id,
        slot_start=TUESDAY_10_CN,
        staff_id=zhang.id,
        now=MONDAY_9_CN,
    )
    assert again.message_id is None  # the same answer twice tells the customer once
    [entry] = _audit(session, account.tenant.id)
    assert entry.action == "booking.confirmed" and entry.detail["visit_id"] == visit.id


def test_a_busy_staff_member_cannot_be_sent_twice(session, account, customer, request_, zhang):
    other = customers.create_customer(
        session=session, tenant=account.tenant, name="李先生", phone="13900139000"
    )
    visits.create_visit(
        session=session,
        tenant=account.tenant,
        customer_id=other.id,
        service_type="deep_cleaning",
        staff_id=zhang.id,
        scheduled_at=TUESDAY_10_CN + dt.timedelta(minutes=60),
    )
    li = visits.create_staff(session=session, tenant=account.tenant, name="李阿姨")
    slots = desk.staff_for(
        session=session, tenant=account.tenant, booking_id=request_.id, now=MONDAY_9_CN
    )
    assert [(s.name, s.free) for s in slots] == [("张阿姨", False), ("李阿姨", True)]
    assert "11:00" in (slots[0].busy or "")
    with pytest.raises(Conflict, match=r"张阿姨.*已有上门"):
        desk.confirm(
            session=session,
            tenant=account.tenant,
            booking_id=request_.id,
            slot_start=TUESDAY_10_CN,
            staff_id=zhang.id,
            now=MONDAY_9_CN,
        )
    # Two hours earlier ends as the other visit starts: free.
    earlier = TUESDAY_10_CN - dt.timedelta(minutes=60)
    assert desk.staff_for(
        session=session,
        tenant=account.tenant,
        booking_id=request_.id,
        slot_start=earlier,
        now=MONDAY_9_CN,
    )[0].free
    answer = desk.confirm(
        session=session,
        tenant=account.tenant,
        booking_id=request_.id,
        slot_start=TUESDAY_10_CN,
        staff_id=li.id,
        now=MONDAY_9_CN,
    )
    assert answer.booking.staff_id == li.id


@pytest.mark.parametrize(
    ("start", "words"),
    [
        (dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.UTC), "工作日"),  # a Sunday
        (dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC), "工作时间"),  # 17:00 ends at 19:00
        (dt.datetime(2026, 11, 23, 23, 0, tzinfo=dt.UTC), "工作时间"),  # 07:00
        (dt.datetime(2026, 11, 22, 2, 0, tzinfo=dt.UTC), "过去"),
    ],
)
def test_times_outside_working_hours_are_refused_with_a_sentence(
    session, account, request_, zhang, start, words
):
    with pytest.raises(Invalid, match=words):
        desk.confirm(
            session=session,
            tenant=account.tenant,
            booking_id=request_.id,
            slot_start=start,
            staff_id=zhang.id,
            now=MONDAY_9_CN,
        )
    assert request_.status == "requested"


def test_a_reply_booking_needs_a_service_and_its_reply_is_answered(
    session, account, customer, zhang
):
    received = inbound.receive(
        session=session,
        provider="console",
        provider_message_id="r1",
        on_book=book_from_reply,
        phone=customer.phone,
        text="1",
        tenant=account.tenant,
        now=MONDAY_9_CN,
    )
    reply = inbound.replies(session=session, received=received)[0]
    made = session.scalars(select(Booking).where(Booking.inbound_id == reply.id)).one()
    with pytest.raises(Invalid, match="服务类型"):
        desk.confirm(
            session=session,
            tenant=account.tenant,
            booking_id=made.id,
            slot_start=TUESDAY_10_CN,
            staff_id=zhang.id,
            now=MONDAY_9_CN,
        )
    with pytest.raises(Invalid, match="没有选时间"):
        desk.staff_for(session=session, tenant=account.tenant, booking_id=made.id, now=MONDAY_9_CN)
    desk.confirm(
        session=session,
        tenant=account.tenant,
        booking_id=made.id,
        slot_start=TUESDAY_10_CN,
        staff_id=zhang.id,
        service_type="深度保洁",
        now=MONDAY_9_CN,
    )
    assert made.service_type == "deep_cleaning"
    assert reply.state == HANDLED and reply.first_response_at == MONDAY_9_CN


def test_declining_tells_the_customer_why_and_frees_the_link(session, account, request_):
    with pytest.raises(Invalid, match="【】"):
        desk.decline(
            session=session,
            tenant=account.tenant,
            booking_id=request_.id,
            reason="【满】",
            now=MONDAY_9_CN,
        )
    with pytest.raises(Invalid, match="原因"):
        desk.decline(
            session=session,
            tenant=account.tenant,
            booking_id=request_.id,
            reason="  ",
            now=MONDAY_9_CN,
        )
    with pytest.raises(Invalid, match="无法保存"):
        desk.decline(
            session=session,
            tenant=account.tenant,
            booking_id=request_.id,
            reason="满了\ud800",
            now=MONDAY_9_CN,
        )
    answer = desk.decline(
        session=session,
        tenant=account.tenant,
        booking_id=request_.id,
        reason="师傅这周已排满",
        now=MONDAY_9_CN,
    )
    assert answer.booking.status == DECLINED and answer.booking.decline_reason == "师傅这周已排满"
    assert request_.open_link_id is None
    message = session.get(Message, answer.message_id)
    assert message is not None and "师傅这周已排满" in message.body
    with pytest.raises(Conflict, match="婉拒"):
        desk.confirm(
            session=session,
            tenant=account.tenant,
            booking_id=request_.id,
            slot_start=TUESDAY_10_CN,
            staff_id=1,
            now=MONDAY_9_CN,
        )
    assert _audit(session, account.tenant.id)[-1].action == "booking.declined"


def test_an_opted_out_customer_is_not_messaged_and_the_office_is_told(
    session, account, customer, request_
):
    compliance.opt_out(
        session=session,
        tenant=account.tenant,
        phone=customer.phone,
        reason="reply_opt_out",
        detail="T",
        now=MONDAY_9_CN,
    )
    answer = desk.decline(
        session=session,
        tenant=account.tenant,
        booking_id=request_.id,
        reason="时间已满",
        now=MONDAY_9_CN,
    )
    assert answer.message_id is None and not answer.customer_told
    assert "电话" in answer.notice and answer.booking.status == DECLINED
    [shown] = desk.answered(session=session, tenant=account.tenant)
    assert shown.status == DECLINED and shown.decline_reason == "时间已满"
    assert not shown.customer_told and "电话告知客户" in shown.notice


def test_answered_bookings_show_the_visit_made_and_the_message(
    session, account, customer, request_, zhang
):
    confirmed = desk.confirm(
        session=session,
        tenant=account.tenant,
        booking_id=request_.id,
        slot_start=TUESDAY_10_CN,
        staff_id=zhang.id,
        now=MONDAY_9_CN,
    )
    other = booking.book(
        session=session,
        note=None,
        now=MONDAY_9_CN,
        slot_start=TUESDAY_10_CN + dt.timedelta(hours=4),
        link=short_links.link_for(
            session=session,
            tenant=account.tenant,
            customer=customer,
            source_type="campaign",
            source_id="3",
            now=MONDAY_9_CN,
        ),
    )
    desk.decline(
        session=session,
        tenant=account.tenant,
        booking_id=other.id,
        reason="满了",
        now=MONDAY_9_CN + dt.timedelta(minutes=1),
    )
    declined, made = desk.answered(session=session, tenant=account.tenant)
    assert (declined.booking_id, declined.decline_reason) == (other.id, "满了")
    assert made.booking_id == request_.id and made.visit_id == confirmed.booking.visit_id
    assert made.staff_name == "张阿姨" and made.slot_start == TUESDAY_10_CN
    assert made.slot_end == TUESDAY_10_CN + dt.timedelta(minutes=120)
    assert made.message_id == confirmed.message_id and made.customer_told
    assert made.notice == "短信通知：待发送" and made.service_label == "空调清洗"
    assert desk.answered(session=session, tenant=account.tenant, limit=1)[0].booking_id == (
        other.id
    )


def test_the_queue_shows_requests_oldest_first_with_clocks(session, account, request_):
    [waiting] = desk.queue(
        session=session, tenant=account.tenant, now=request_.created_at + dt.timedelta(hours=5)
    )
    assert waiting.customer_name == "王女士" and waiting.service_label == "空调清洗"
    assert waiting.clock.overdue and waiting.clock.target_minutes == 240


def test_the_desk_api(client, session, account, other_account, request_, zhang):
    headers = account.headers
    [queued] = client.get("/v1/bookings/queue", headers=headers).json()
    assert queued["booking"]["id"] == request_.id
    # The request's time is in the past for the real clock: ask about a time ahead.
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(days=14)
    while ahead.astimezone(dt.timezone(dt.timedelta(hours=8))).isoweekday() == 7:
        ahead += dt.timedelta(days=1)
    local = ahead.astimezone(dt.timezone(dt.timedelta(hours=8))).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    staff = client.get(
        f"/v1/bookings/{request_.id}/staff",
        headers=headers,
        params={"slot_start": local.isoformat()},
    )
    assert staff.status_code == 200 and staff.json()[0]["free"] is True
    past = client.get(f"/v1/bookings/{request_.id}/staff", headers=headers)
    assert past.status_code == 422 and "过去" in past.json()["detail"]
    confirmed = client.post(
        f"/v1/bookings/{request_.id}/confirm",
        headers=headers,
        json={"slot_start": local.isoformat(), "staff_id": zhang.id},
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["booking"]["visit_id"] and confirmed.json()["message_id"]
    declined = client.post(
        f"/v1/bookings/{request_.id}/decline", headers=headers, json={"reason": "满了"}
    )
    assert declined.status_code == 409 and "确认" in declined.json()["detail"]
    foreign = client.post(
        f"/v1/bookings/{request_.id}/confirm",
        headers=other_account.headers,
        json={"slot_start": local.isoformat(), "staff_id": zhang.id},
    )
    assert foreign.status_code == 404
    [answered] = client.get("/v1/bookings/answered", headers=headers).json()
    assert answered["visit_id"] == confirmed.json()["booking"]["visit_id"]
    assert client.get("/v1/bookings/answered", headers=other_account.headers).json() == []
    assert (
        client.get("/v1/bookings/answered", headers=headers, params={"limit": 1000}).status_code
        == 422
    )


def test_another_companys_staff_cannot_be_sent(session, account, other_account, request_):
    theirs = visits.create_staff(session=session, tenant=other_account.tenant, name="B的员工")
    with pytest.raises(NotFound):
        desk.confirm(
            session=session,
            tenant=account.tenant,
            booking_id=request_.id,
            slot_start=TUESDAY_10_CN,
            staff_id=theirs.id,
            now=MONDAY_9_CN,
        )


def test_two_people_cannot_send_one_staff_member_to_two_places(committed_db):
    """Two confirmations at once, each in its own transaction: one visit for the staff member."""
    with committed_db.session() as setup:
        tenant = tenancy.create_tenant(session=setup, name="并发家政", signature="并发家政")
        staff_id = visits.create_staff(session=setup, tenant=tenant, name="张阿姨").id
        ids = []
        for phone in ("13700137001", "13700137002"):
            person = customers.create_customer(
                session=setup, tenant=tenant, name="客户", phone=phone
            )
            row = Booking(
                tenant_id=tenant.id,
                customer_id=person.id,
                status="requested",
                channel="page",
                service_type="ac_cleaning",
            )
            setup.add(row)
            setup.flush()
            ids.append(row.id)
        tenant_id = tenant.id
    start = threading.Barrier(2)
    outcomes: list[str] = []
    sqlite = committed_db.engine.dialect.name == "sqlite"

    def confirm(booking_id: int) -> None:
        try:
            if sqlite:  # one writer at a time from BEGIN: start together
                start.wait(timeout=10)
            with committed_db.session() as own:
                company = own.get(Tenant, tenant_id)
                if not sqlite:  # both transactions open and reading before either writes
                    start.wait(timeout=10)
                desk.confirm(
                    session=own,
                    tenant=company,
                    booking_id=booking_id,
                    slot_start=TUESDAY_10_CN,
                    staff_id=staff_id,
                    now=MONDAY_9_CN,
                )
            outcomes.append("confirmed")
        except Conflict:
            outcomes.append("refused")

    try:
        workers = [threading.Thread(target=confirm, args=(i,)) for i in ids]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
        assert sorted(outcomes) == ["confirmed", "refused"]
        with committed_db.session() as check:
            assert (
                check.scalar(
                    select(func.count()).select_from(Visit).where(Visit.staff_id == staff_id)
                )
                == 1
            )
    finally:  # committed rows: gone, so that no other test counts them
        with committed_db.session() as cleanup:
            cleanup.execute(delete(Tenant).where(Tenant.id == tenant_id))


def test_openings_list_working_slots_with_the_staff_free_in_each(session, account, customer, zhang):
    li = visits.create_staff(session=session, tenant=account.tenant, name="李阿姨")
    visits.create_visit(
        session=session,
        tenant=account.tenant,
        customer_id=customer.id,
        service_type="deep_cleaning",
        staff_id=zhang.id,
        scheduled_at=TUESDAY_10_CN + dt.timedelta(minutes=60),
    )
    found = desk.openings(session=session, tenant=account.tenant, now=MONDAY_9_CN, days=2)
    local = [
        (o.start.astimezone(SHANGHAI).strftime("%a %H:%M"), [s.name for s in o.free]) for o in found
    ]
    assert local[0] == ("Mon 10:00", ["张阿姨", "李阿姨"])  # 08:00 has begun
    assert ("Tue 10:00", ["李阿姨"]) in local and ("Tue 12:00", ["李阿姨"]) in local
    assert ("Tue 08:00", ["张阿姨", "李阿姨"]) in local
    assert ("Tue 14:00", ["张阿姨", "李阿姨"]) in local and len(local) == 9
    assert all(o.end - o.start == dt.timedelta(minutes=120) for o in found)
    assert li.id in {s.staff_id for s in found[-1].free}
    with pytest.raises(Invalid, match="31天"):
        desk.openings(session=session, tenant=account.tenant, now=MONDAY_9_CN, days=40)


def test_openings_api(client, account, zhang):
    found = client.get("/v1/bookings/openings", headers=account.headers, params={"days": 3})
    assert found.status_code == 200 and found.json()
    assert all(o["free"][0]["name"] == "张阿姨" for o in found.json())
    assert (
        client.get(
            "/v1/bookings/openings", headers=account.headers, params={"days": 99}
        ).status_code
        == 422
    )
