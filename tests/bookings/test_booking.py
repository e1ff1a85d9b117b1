"""Booking: links counted once per visitor an hour, free slots from working hours, a slot
taken once, one open booking per link (changed or cancelled on its page), staff answers."""

from __future__ import annotations

import datetime as dt
import re
import threading
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from bookings import links
from bookings import service as booking
from bookings.models import Booking, ShortLink
from customers import service as customers
from huifang.errors import Conflict, Invalid
from messaging.models import Message
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.factories import make_customer
from visits import service as visits

MONDAY_9_CN = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)  # Monday 09:00 in Shanghai
SHANGHAI = ZoneInfo("Asia/Shanghai")
ADDRESS = "浦东新区张杨路500号3栋1201室"


@pytest.fixture
def customer(session, account):
    return make_customer(session, account.tenant)


@pytest.fixture
def link(session, account, customer):
    return links.link_for(
        session=session,
        tenant=account.tenant,
        customer=customer,
        source_type="visit_report",
        source_id="7",
        service_type="ac_cleaning",
        now=MONDAY_9_CN,
    )


def test_a_link_is_made_once_per_cause_and_is_unguessable(session, account, customer, link):
    again = links.link_for(
        session=session,
        tenant=account.tenant,
        customer=customer,
        source_type="visit_report",
        source_id="7",
        now=MONDAY_9_CN,
    )
    assert again.id == link.id
    other = links.link_for(
        session=session,
        tenant=account.tenant,
        customer=customer,
        source_type="campaign",
        source_id="3",
        now=MONDAY_9_CN,
    )
    assert other.token != link.token and len(link.token) >= 16
    assert links.url(link).endswith(f"/b/{link.token}")
    assert links.resolve(session=session, token="../../etc") is None


def test_free_slots_follow_working_hours_in_the_company_zone(session, account):
    account.tenant.work_days = "12345"  # Monday to Friday
    slots = booking.free_slots(session=session, tenant=account.tenant, now=MONDAY_9_CN)
    local = [start.astimezone(SHANGHAI) for start, _ in slots]
    assert local, "two weeks of working days must offer something"
    assert all(moment.isoweekday() <= 5 for moment in local)
    assert {moment.hour for moment in local} <= {8, 10, 12, 14, 16}
    assert min(local) >= (MONDAY_9_CN + booking.LEAD_TIME).astimezone(SHANGHAI)
    assert all(end - start == dt.timedelta(minutes=120) for start, end in slots)


def _other_link(session, account, phone: str):
    other = customers.create_customer(
        session=session, tenant=account.tenant, name="李先生", phone=phone
    )
    return links.link_for(
        session=session,
        tenant=account.tenant,
        customer=other,
        source_type="visit_report",
        source_id="8",
        now=MONDAY_9_CN,
    )


def test_a_slot_holds_as_many_visits_as_there_is_staff(session, account, customer, link):
    start = booking.free_slots(session=session, tenant=account.tenant, now=MONDAY_9_CN)[0][0]
    booking.book(session=session, link=link, slot_start=start, note=None, now=MONDAY_9_CN)
    second_link = _other_link(session, account, "13900139000")
    with pytest.raises(Conflict, match="no longer free"):
        booking.book(
            session=session, link=second_link, slot_start=start, note=None, now=MONDAY_9_CN
        )
    visits.create_staff(session=session, tenant=account.tenant, name="张阿姨")
    visits.create_staff(session=session, tenant=account.tenant, name="李阿姨")
    second = booking.book(
        session=session, link=second_link, slot_start=start, note="有猫", now=MONDAY_9_CN
    )
    assert second.note == "有猫" and second.source_type == "visit_report"


def _slots(page_text: str) -> list[str]:
    return re.findall(r'name="slot" value="([^"]+)"', page_text)


def test_a_note_no_column_can_hold_is_refused_with_a_sentence(session, account, link):
    start = booking.free_slots(session=session, tenant=account.tenant, now=MONDAY_9_CN)[0][0]
    with pytest.raises(Invalid, match="备注"):
        booking.book(
            session=session, link=link, slot_start=start, note="下午\x00在家", now=MONDAY_9_CN
        )
    assert session.scalars(select(Booking)).all() == []


def test_the_booking_page_counts_clicks_and_takes_a_time(
    client, session, account, link, monkeypatch
):
    monkeypatch.setattr(booking, "HORIZON_DAYS", 3)
    page = client.get(f"/b/{link.token}")
    assert page.status_code == 200 and "空调清洗" in page.text
    session.refresh(link)
    assert link.clicks == 1 and link.first_clicked_at is not None
    first_slot = _slots(page.text)[0]
    done = client.post(
        f"/b/{link.token}", data={"slot": first_slot, "note": "下午在家", "address": ADDRESS}
    )
    assert done.status_code == 200 and "预约已提交" in done.text
    bad = client.post(f"/b/{link.token}", data={"slot": "tomorrow"})
    assert bad.status_code == 422
    assert client.get("/b/doesnotexist1234").status_code == 404
    [made] = client.get("/v1/bookings", headers={"Authorization": f"Bearer {account.key}"}).json()
    assert made["note"] == "下午在家" and made["link_id"] == link.id


def test_a_link_books_once_and_the_page_shows_that_booking(
    client, session, account, link, monkeypatch
):
    monkeypatch.setattr(booking, "HORIZON_DAYS", 3)
    slots = _slots(client.get(f"/b/{link.token}").text)
    done = client.post(f"/b/{link.token}", data={"slot": slots[0], "address": ADDRESS})
    assert done.status_code == 200 and "预约已提交" in done.text
    twice = client.post(f"/b/{link.token}", data={"slot": slots[0]})  # the form sent twice
    assert twice.status_code == 200 and "您已预约" in twice.text
    other = client.post(f"/b/{link.token}", data={"slot": slots[1]})
    assert other.status_code == 409 and "改期" in other.text
    for slot in slots[2:8]:  # what a script holding the link tried: every free slot
        assert client.post(f"/b/{link.token}", data={"slot": slot}).status_code == 409
    [made] = session.scalars(select(Booking)).all()
    assert made.slot_start == dt.datetime.fromisoformat(slots[0])

    shown = client.get(f"/b/{link.token}")
    assert "您已预约空调清洗" in shown.text and "改期" in shown.text and "取消预约" in shown.text
    assert slots[0] not in _slots(shown.text)  # the change form offers the other times


def test_the_customer_changes_the_time_then_cancels(client, session, account, link, monkeypatch):
    monkeypatch.setattr(booking, "HORIZON_DAYS", 3)
    slots = _slots(client.get(f"/b/{link.token}").text)
    client.post(f"/b/{link.token}", data={"slot": slots[0], "address": ADDRESS})
    moved = client.post(f"/b/{link.token}", data={"action": "change", "slot": slots[3]})
    assert moved.status_code == 200 and "已改到新的时间" in moved.text
    [made] = session.scalars(select(Booking)).all()
    assert (made.slot_start, made.status) == (dt.datetime.fromisoformat(slots[3]), "requested")
    assert slots[0] in _slots(moved.text)  # the old time is free again

    gone = client.post(f"/b/{link.token}", data={"action": "cancel"})
    assert gone.status_code == 200 and "预约已取消" in gone.text and "提交预约" in gone.text
    session.refresh(made)
    assert (made.status, made.open_link_id) == ("cancelled", None)
    assert client.post(f"/b/{link.token}", data={"action": "cancel"}).status_code == 409
    late = client.post(f"/b/{link.token}", data={"action": "change", "slot": slots[1]})
    assert late.status_code == 409 and "已取消或已过期" in late.text
    assert slots[3] in _slots(client.get(f"/b/{link.token}").text)

    again = client.post(f"/b/{link.token}", data={"slot": slots[1]})  # a new booking, then
    assert again.status_code == 200 and "预约已提交" in again.text
    assert sorted(b.status for b in session.scalars(select(Booking))) == ["cancelled", "requested"]
    listed = client.get("/v1/bookings?status=cancelled", headers=account.headers).json()
    assert [b["id"] for b in listed] == [made.id]


def test_a_moved_booking_goes_back_to_staff_and_its_new_time_is_told(
    session, account, customer, link
):
    slots = booking.free_slots(session=session, tenant=account.tenant, now=MONDAY_9_CN)
    made = booking.book(
        session=session, link=link, slot_start=slots[0][0], note=None, now=MONDAY_9_CN
    )
    booking.answer(
        session=session,
        tenant=account.tenant,
        booking_id=made.id,
        status="confirmed",
        now=MONDAY_9_CN,
    )
    moved = booking.reschedule(session=session, link=link, slot_start=slots[2][0], now=MONDAY_9_CN)
    assert moved.id == made.id and (moved.status, moved.answered_at) == ("requested", None)
    _, told = booking.answer(
        session=session,
        tenant=account.tenant,
        booking_id=made.id,
        status="confirmed",
        now=MONDAY_9_CN,
    )
    assert told is not None
    bodies = session.scalars(
        select(Message.body).where(Message.source_type == "booking_confirmed").order_by(Message.id)
    ).all()
    assert len(bodies) == 2
    assert booking.when_text(account.tenant, slots[2][0]) in bodies[1]


def test_a_declined_or_past_booking_leaves_the_link_free(session, account, customer, link):
    slots = booking.free_slots(session=session, tenant=account.tenant, now=MONDAY_9_CN)
    first = booking.book(
        session=session, link=link, slot_start=slots[0][0], note=None, now=MONDAY_9_CN
    )
    with pytest.raises(booking.AlreadyBooked):
        booking.book(session=session, link=link, slot_start=slots[1][0], note=None, now=MONDAY_9_CN)
    booking.answer(
        session=session,
        tenant=account.tenant,
        booking_id=first.id,
        status="declined",
        now=MONDAY_9_CN,
    )
    second = booking.book(
        session=session, link=link, slot_start=slots[1][0], note=None, now=MONDAY_9_CN
    )
    booking.answer(
        session=session,
        tenant=account.tenant,
        booking_id=second.id,
        status="confirmed",
        now=MONDAY_9_CN,
    )
    after_the_visit = slots[1][1] + dt.timedelta(days=30)
    assert booking.open_booking(session=session, link=link, now=after_the_visit) is None
    later = booking.free_slots(session=session, tenant=account.tenant, now=after_the_visit)
    third = booking.book(
        session=session, link=link, slot_start=later[0][0], note=None, now=after_the_visit
    )
    assert third.open_link_id == link.id and second.open_link_id is None
    assert second.status == "confirmed"  # the visit that happened stays as staff left it


def test_the_database_holds_one_open_booking_per_link(session, account, customer, link):
    slots = booking.free_slots(session=session, tenant=account.tenant, now=MONDAY_9_CN)
    booking.book(session=session, link=link, slot_start=slots[0][0], note=None, now=MONDAY_9_CN)
    with pytest.raises(IntegrityError), session.begin_nested():
        session.add(
            Booking(
                tenant_id=account.tenant.id,
                customer_id=customer.id,
                slot_start=slots[1][0],
                slot_end=slots[1][1],
                status="requested",
                channel="page",
                link_id=link.id,
                open_link_id=link.id,
            )
        )


def test_two_posts_at_once_make_one_booking(committed_db):
    """Two requests of one link, each in its own transaction and thread: one booking."""
    with committed_db.session() as setup:
        tenant = tenancy.create_tenant(session=setup, name="并发家政", signature="并发家政")
        for name in ("张阿姨", "李阿姨", "王阿姨"):  # room in every slot for both
            visits.create_staff(session=setup, tenant=tenant, name=name)
        person = customers.create_customer(
            session=setup, tenant=tenant, name="王女士", phone="13700137001"
        )
        link_id = links.link_for(
            session=setup,
            tenant=tenant,
            customer=person,
            source_type="campaign",
            source_id="1",
            now=MONDAY_9_CN,
        ).id
        slots = booking.free_slots(session=setup, tenant=tenant, now=MONDAY_9_CN)
        tenant_id = tenant.id
    start = threading.Barrier(2)
    outcomes: list[str] = []
    # SQLite lets one transaction write at a time from BEGIN: there both start together;
    # on PostgreSQL both transactions are open and have read the link before either books.
    sqlite = committed_db.engine.dialect.name == "sqlite"

    def post(slot: dt.datetime) -> None:
        try:
            if sqlite:
                start.wait(timeout=10)
            with committed_db.session() as own:
                link = own.get(ShortLink, link_id)
                if not sqlite:
                    start.wait(timeout=10)
                booking.book(session=own, link=link, slot_start=slot, note=None, now=MONDAY_9_CN)
            outcomes.append("booked")
        except booking.AlreadyBooked:
            outcomes.append("refused")

    try:
        threads = [threading.Thread(target=post, args=(slot,)) for slot, _ in slots[:2]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(outcomes) == ["booked", "refused"]
        with committed_db.session() as check:
            assert (
                check.scalar(
                    select(func.count()).select_from(Booking).where(Booking.link_id == link_id)
                )
                == 1
            )
    finally:  # committed rows: gone, so that no other test counts them
        with committed_db.session() as cleanup:
            cleanup.execute(delete(Tenant).where(Tenant.id == tenant_id))


def test_clicks_count_each_visitor_once_an_hour(session, link):
    one = links.visitor_of(address="203.0.113.7", user_agent="Mozilla/5.0 (iPhone)")
    other = links.visitor_of(address="203.0.113.7", user_agent="Mozilla/5.0 (Android)")
    assert one != other and "203.0.113.7" not in one
    for minutes in (0, 5, 20, 40, 59):
        links.click(
            session=session, link=link, visitor=one, now=MONDAY_9_CN + dt.timedelta(minutes=minutes)
        )
    assert link.clicks == 1
    assert links.click(session=session, link=link, visitor=other, now=MONDAY_9_CN)
    assert link.clicks == 2
    assert links.click(
        session=session, link=link, visitor=one, now=MONDAY_9_CN + dt.timedelta(minutes=61)
    )
    assert (link.clicks, link.first_clicked_at, link.last_clicked_at) == (
        3,
        MONDAY_9_CN,
        MONDAY_9_CN + dt.timedelta(minutes=61),
    )


def test_the_page_counts_a_visitor_once_however_often_it_is_opened(app, client, session, link):
    for _ in range(5):
        assert client.get(f"/b/{link.token}").status_code == 200
    session.refresh(link)
    assert link.clicks == 1
    client.get(f"/b/{link.token}", headers={"User-Agent": "Mozilla/5.0 (iPhone)"})
    with TestClient(app, client=("198.51.100.4", 5000)) as elsewhere:
        elsewhere.get(f"/b/{link.token}")
    session.refresh(link)
    assert link.clicks == 3


def test_staff_confirm_and_the_customer_is_told_once(client, session, account, customer, link):
    start = booking.free_slots(session=session, tenant=account.tenant, now=MONDAY_9_CN)[0][0]
    made = booking.book(session=session, link=link, slot_start=start, note=None, now=MONDAY_9_CN)
    headers = account.headers
    answer = client.patch(f"/v1/bookings/{made.id}", headers=headers, json={"status": "confirmed"})
    assert answer.status_code == 200 and answer.json()["status"] == "confirmed"
    assert (
        client.patch(
            f"/v1/bookings/{made.id}", headers=headers, json={"status": "confirmed"}
        ).status_code
        == 200
    )
    assert (
        client.patch(
            f"/v1/bookings/{made.id}", headers=headers, json={"status": "declined"}
        ).status_code
        == 409
    )
    told = session.scalars(
        select(Message).where(
            Message.customer_id == customer.id, Message.source_type == "booking_confirmed"
        )
    ).all()
    assert len(told) == 1 and "已确认" in told[0].body and told[0].status == "queued"


def test_the_api_answers_in_the_customers_language(client, session, account):
    tenant = account.tenant
    slots = iter(booking.free_slots(session=session, tenant=tenant, now=MONDAY_9_CN))

    def answered(phone, language, status):
        start = next(slots)[0]
        person = make_customer(session, tenant, phone=phone, language=language)
        made = booking.book(
            session=session,
            link=links.link_for(
                session=session,
                tenant=tenant,
                customer=person,
                source_type="visit_report",
                source_id=phone,
                service_type="ac_cleaning",
                now=MONDAY_9_CN,
            ),
            slot_start=start,
            note=None,
            now=MONDAY_9_CN,
        )
        answer = client.patch(
            f"/v1/bookings/{made.id}", headers=account.headers, json={"status": status}
        )
        assert answer.status_code == 200
        told = session.scalars(
            select(Message).where(
                Message.customer_id == person.id, Message.source_type == f"booking_{status}"
            )
        ).one()
        return told, start.astimezone(SHANGHAI)

    english, en_when = answered("13900139011", "en", "confirmed")
    assert english.body.startswith(
        f"Your 空调清洗 is confirmed: {en_when:%a} {en_when.day} {en_when:%b}"
    )
    assert not re.search(r"[\u4e00-\u9fff]", english.body.replace("空调清洗", ""))
    chinese, when = answered(
        "13900139012", None, "confirmed"
    )  # no language: the company's, Chinese
    assert chinese.body.startswith(f"您预约的空调清洗已确认：{when:%m月%d日}")
    assert chinese.body.endswith("届时上门。")
    # The provider template's purpose and variables do not depend on the language.
    assert english.purpose == chinese.purpose == "booking_confirmed"
    assert english.variables.keys() == chinese.variables.keys()
    assert english.variables["service"] == chinese.variables["service"] == "空调清洗"
    assert english.variables["time"].startswith(f"{en_when:%m月%d日}（周")

    declined, _ = answered("13900139013", "en", "declined")
    assert declined.body.startswith("Sorry, we cannot take your 空调清洗 booking: fully booked.")
    assert declined.variables["reason"] == "时间已满"
    declined_zh, _ = answered("13900139014", "zh", "declined")
    assert declined_zh.body.startswith("抱歉，您预约的空调清洗暂时无法安排：时间已满。")


def test_a_one_reply_becomes_a_booking_tied_to_the_message(client, session, account, customer):
    answer = client.post(
        "/v1/replies/simulate", headers=account.headers, json={"phone": "13800138000", "text": "1"}
    )
    assert answer.status_code == 201
    [made] = session.scalars(select(Booking)).all()
    assert (made.channel, made.status, made.slot_start) == ("reply", "requested", None)
    assert made.inbound_id == answer.json()[0]["id"]
