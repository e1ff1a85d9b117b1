"""Bookings the office can run: the address, free slots per staff member, a "1" reply that
gets a link to pick the time, another time proposed, the day-before reminders, the day
picker and the friendly page of a bad link."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from alerts import service as alerts
from alerts.models import Alert
from bookings import desk, reminders
from bookings import links as short_links
from bookings import service as booking
from bookings import tasks as booking_tasks
from bookings.models import CANCELLED, CONFIRMED, PROPOSED, REQUESTED, Booking
from bookings.service import book_from_reply
from huifang.errors import Conflict, Invalid
from messaging import inbound
from messaging.models import Message
from messaging.service import schedule
from reports.models import Report
from tests.factories import make_customer
from visits import service as visits
from visits.models import Visit

MONDAY_9_CN = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)  # Monday 09:00 in Shanghai
TUESDAY_10_CN = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)  # Tuesday 10:00 in Shanghai
WEDNESDAY_14_CN = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
ADDRESS = "浦东新区张杨路500号3栋1201室"


@pytest.fixture
def customer(session, account):
    return make_customer(session, account.tenant)


def _link(session, account, person, source_id="7"):
    return short_links.link_for(
        session=session,
        tenant=account.tenant,
        customer=person,
        source_type="visit_report",
        source_id=source_id,
        service_type="ac_cleaning",
        now=MONDAY_9_CN,
    )


@pytest.fixture
def link(session, account, customer):
    return _link(session, account, customer)


@pytest.fixture
def channel(session, account):
    """An office channel, so alerts are raised (delivery is the alerts tests' business)."""
    return alerts.create_channel(
        session=session,
        tenant=account.tenant,
        kind="webhook",
        name="前台",
        url="http://127.0.0.1:9/hook",
        secret="s3cret-s3cret-s3cret",
    )


# --- the address ------------------------------------------------------------------------------


def test_the_customer_api_keeps_an_address(client, account):
    made = client.post(
        "/v1/customers",
        headers=account.headers,
        json={"name": "赵女士", "phone": "13700137000", "address": f"  {ADDRESS}  "},
    )
    assert made.status_code == 201 and made.json()["address"] == ADDRESS
    changed = client.patch(
        f"/v1/customers/{made.json()['id']}",
        headers=account.headers,
        json={"address": "徐汇区漕溪北路1号"},
    )
    assert changed.json()["address"] == "徐汇区漕溪北路1号"
    too_long = client.patch(
        f"/v1/customers/{made.json()['id']}", headers=account.headers, json={"address": "x" * 201}
    )
    assert too_long.status_code == 422


def test_a_booking_takes_the_address_given_and_keeps_it_on_the_customer(
    session, account, customer, link
):
    start = booking.free_slots(session=session, tenant=account.tenant, now=MONDAY_9_CN)[0][0]
    with pytest.raises(Invalid, match="上门地址"):
        booking.book(
            session=session,
            link=link,
            slot_start=start,
            note=None,
            need_address=True,
            now=MONDAY_9_CN,
        )
    made = booking.book(
        session=session,
        link=link,
        slot_start=start,
        note=None,
        address=f" {ADDRESS}\n",
        need_address=True,
        now=MONDAY_9_CN,
    )
    assert made.address == ADDRESS and customer.address == ADDRESS
    # The next booking of the customer needs none: the company has it now.
    other = _link(session, account, customer, source_id="8")
    booking.cancel(session=session, link=link, now=MONDAY_9_CN)
    again = booking.book(
        session=session, link=other, slot_start=start, note=None, need_address=True, now=MONDAY_9_CN
    )
    assert again.address == ADDRESS


def test_the_page_asks_for_the_address_only_when_the_company_has_none(
    client, session, account, customer, link
):
    page = client.get(f"/b/{link.token}")
    assert 'name="address"' in page.text and ' required placeholder="小区' in page.text
    slot = re.findall(r'name="slot" value="([^"]+)"', page.text)[0]
    refused = client.post(f"/b/{link.token}", data={"slot": slot})
    assert refused.status_code == 422 and "请填写上门地址" in refused.text
    assert (
        session.scalars(select(Booking).where(Booking.tenant_id == account.tenant.id)).all() == []
    )

    known = make_customer(session, account.tenant, name="钱先生", phone="13600136000")
    known.address = "静安区南京西路1号"
    session.flush()
    shown = client.get(f"/b/{_link(session, account, known, '9').token}")
    assert 'value="静安区南京西路1号"' in shown.text and "登记的地址" in shown.text
    assert ' required placeholder="小区' not in shown.text


def test_the_console_keeps_a_customers_address(client, session, account, customer):
    from tests.office.support import sign_in

    sign_in(client, session, account.tenant)
    page = client.get(f"/office/customers/{customer.id}")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    saved = client.post(
        f"/office/customers/{customer.id}/address",
        data={"address": ADDRESS, "csrf_token": token.group(1)},
        follow_redirects=True,
    )
    assert saved.status_code == 200 and "地址已保存" in saved.text and ADDRESS in saved.text
    session.refresh(customer)
    assert customer.address == ADDRESS
    refused = client.post(
        f"/office/customers/{customer.id}/address",
        data={"address": "长" * 300, "csrf_token": token.group(1)},
    )
    assert refused.status_code == 422 and "200字以内" in refused.text


# --- free slots from each staff member's visits ----------------------------------------------


def test_a_slot_is_free_while_one_staff_member_has_no_visit_then(session, account, customer):
    zhang = visits.create_staff(session=session, tenant=account.tenant, name="张阿姨")
    li = visits.create_staff(session=session, tenant=account.tenant, name="李阿姨")
    tenant = account.tenant
    # Zhang has a visit overlapping Tuesday 10:00 (an hour into it): Li is still free.
    visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=customer.id,
        service_type="ac_cleaning",
        staff_id=zhang.id,
        scheduled_at=TUESDAY_10_CN - dt.timedelta(hours=1),
    )
    second = _link(session, account, make_customer(session, tenant, phone="13900139000"), "8")
    starts = [s for s, _ in booking.free_slots(session=session, tenant=tenant, now=MONDAY_9_CN)]
    assert TUESDAY_10_CN in starts
    # Li gets a visit too: nobody is free then, the slot is gone for everyone.
    visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=customer.id,
        service_type="ac_cleaning",
        staff_id=li.id,
        scheduled_at=TUESDAY_10_CN,
    )
    starts = [s for s, _ in booking.free_slots(session=session, tenant=tenant, now=MONDAY_9_CN)]
    assert TUESDAY_10_CN not in starts
    assert TUESDAY_10_CN + dt.timedelta(hours=2) in starts  # 12:00: Zhang is back by then
    with pytest.raises(booking.SlotTaken):
        booking.book(
            session=session, link=second, slot_start=TUESDAY_10_CN, note=None, now=MONDAY_9_CN
        )
    # A staff member who joins is free then; one who leaves takes their place away again.
    wang = visits.create_staff(session=session, tenant=tenant, name="王阿姨")
    starts = [s for s, _ in booking.free_slots(session=session, tenant=tenant, now=MONDAY_9_CN)]
    assert TUESDAY_10_CN in starts
    wang.active = False
    session.flush()
    starts = [s for s, _ in booking.free_slots(session=session, tenant=tenant, now=MONDAY_9_CN)]
    assert TUESDAY_10_CN not in starts


def test_an_unanswered_request_holds_a_place_until_a_visit_does(session, account, customer, link):
    tenant = account.tenant
    zhang = visits.create_staff(session=session, tenant=tenant, name="张阿姨")
    visits.create_staff(session=session, tenant=tenant, name="李阿姨")
    first = booking.book(
        session=session, link=link, slot_start=TUESDAY_10_CN, note=None, now=MONDAY_9_CN
    )
    second_link = _link(session, account, make_customer(session, tenant, phone="13900139000"), "8")
    second = booking.book(
        session=session, link=second_link, slot_start=TUESDAY_10_CN, note=None, now=MONDAY_9_CN
    )
    third_link = _link(session, account, make_customer(session, tenant, phone="13500135000"), "9")
    with pytest.raises(booking.SlotTaken):  # two staff, two requests: full
        booking.book(
            session=session, link=third_link, slot_start=TUESDAY_10_CN, note=None, now=MONDAY_9_CN
        )
    desk.confirm(
        session=session,
        tenant=tenant,
        booking_id=first.id,
        slot_start=TUESDAY_10_CN,
        staff_id=zhang.id,
        now=MONDAY_9_CN,
    )
    # Confirmed: Zhang's visit holds it now, and the other request still holds Li's place.
    starts = [s for s, _ in booking.free_slots(session=session, tenant=tenant, now=MONDAY_9_CN)]
    assert TUESDAY_10_CN not in starts
    booking.cancel(session=session, link=second_link, now=MONDAY_9_CN)
    assert second.status == CANCELLED
    starts = [s for s, _ in booking.free_slots(session=session, tenant=tenant, now=MONDAY_9_CN)]
    assert TUESDAY_10_CN in starts


def test_moving_or_cancelling_a_confirmed_booking_frees_its_staff_member(
    session, account, customer, link
):
    tenant = account.tenant
    zhang = visits.create_staff(session=session, tenant=tenant, name="张阿姨")
    made = booking.book(
        session=session, link=link, slot_start=TUESDAY_10_CN, note=None, now=MONDAY_9_CN
    )
    answer = desk.confirm(
        session=session,
        tenant=tenant,
        booking_id=made.id,
        slot_start=TUESDAY_10_CN,
        staff_id=zhang.id,
        now=MONDAY_9_CN,
    )
    visit_id = answer.booking.visit_id
    booking.reschedule(session=session, link=link, slot_start=WEDNESDAY_14_CN, now=MONDAY_9_CN)
    assert (made.status, made.visit_id, made.staff_id) == (REQUESTED, None, None)
    assert session.get(Visit, visit_id) is None  # off Zhang's day
    starts = [s for s, _ in booking.free_slots(session=session, tenant=tenant, now=MONDAY_9_CN)]
    assert TUESDAY_10_CN in starts and WEDNESDAY_14_CN not in starts


# --- a "1" reply ------------------------------------------------------------------------------


def test_a_one_reply_books_the_service_it_answered_and_gets_a_link(
    client, session, account, customer
):
    tenant = account.tenant
    prompt, _ = schedule(
        session=session,
        tenant=tenant,
        customer=customer,
        channel="sms",
        category="marketing",
        source_type="campaign",
        source_id="3:41",
        body="空调清洗季，回复1预约",
        due_at=MONDAY_9_CN,
    )
    prompt.sent_at = MONDAY_9_CN - dt.timedelta(hours=1)
    campaign_link = short_links.link_for(
        session=session,
        tenant=tenant,
        customer=customer,
        source_type="campaign",
        source_id="3",
        service_type="ac_cleaning",
        message_id=prompt.id,
        now=MONDAY_9_CN,
    )
    session.flush()
    received = inbound.receive(
        session=session,
        provider="console",
        provider_message_id="r-1",
        on_book=book_from_reply,
        phone=customer.phone,
        text="1",
        tenant=tenant,
        now=MONDAY_9_CN,
    )
    reply = inbound.replies(session=session, received=received)[0]
    made = session.scalars(select(Booking).where(Booking.inbound_id == reply.id)).one()
    assert (made.service_type, made.message_id, made.slot_start) == ("ac_cleaning", prompt.id, None)
    assert made.link_id is not None and made.link_id != campaign_link.id
    pick = session.get(short_links.ShortLink, made.link_id)
    answer = session.scalars(
        select(Message).where(
            Message.source_type == "book_reply", Message.customer_id == customer.id
        )
    ).one()
    assert "请点击链接选择上门时间" in answer.body and f"/b/{pick.token}" in answer.body

    # The link offers times for that booking; picking one gives it its time.
    page = client.get(f"/b/{pick.token}")
    assert page.status_code == 200 and "已收到您的预约（空调清洗）" in page.text
    assert "提交预约" in page.text
    slot = re.findall(r'name="slot" value="([^"]+)"', page.text)[0]
    done = client.post(f"/b/{pick.token}", data={"slot": slot, "address": ADDRESS})
    assert done.status_code == 200 and "您已预约空调清洗" in done.text
    session.refresh(made)
    assert made.slot_start == dt.datetime.fromisoformat(slot) and made.address == ADDRESS
    assert session.scalars(select(Booking).where(Booking.tenant_id == tenant.id)).all() == [
        made
    ]  # the same booking, not a second


def test_an_english_customer_gets_the_link_in_english(session, account):
    person = make_customer(session, account.tenant, phone="13900139001", language="en")
    inbound.receive(
        session=session,
        provider="console",
        provider_message_id="r-2",
        on_book=book_from_reply,
        phone=person.phone,
        text="1",
        tenant=account.tenant,
        now=MONDAY_9_CN,
    )
    answer = session.scalars(select(Message).where(Message.customer_id == person.id)).one()
    assert answer.body.startswith("Thanks, we got your booking request. Pick a time here:")


# --- the office proposes another time ---------------------------------------------------------


def test_the_office_proposes_another_time_and_the_customer_accepts_it(
    client, session, account, customer
):
    tenant = account.tenant
    zhang = visits.create_staff(session=session, tenant=tenant, name="张阿姨")
    now = dt.datetime.now(dt.UTC)
    link = _link(session, account, customer)
    free = booking.free_slots(session=session, tenant=tenant, now=now)
    made = booking.book(
        session=session, link=link, slot_start=free[0][0], note=None, address=ADDRESS, now=now
    )
    other = free[3][0]
    answer = client.post(
        f"/v1/bookings/{made.id}/propose",
        headers=account.headers,
        json={"slot_start": other.isoformat(), "staff_id": zhang.id},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["booking"]["status"] == PROPOSED and answer.json()["customer_told"]
    told = session.get(Message, answer.json()["message_id"])
    assert told.category == "service" and told.source_type == "booking_proposed"
    assert "建议改为" in told.body and "张阿姨" in told.body and f"/b/{link.token}" in told.body
    assert (
        session.scalars(select(Visit).where(Visit.tenant_id == tenant.id)).all() == []
    )  # nothing on Zhang's day yet

    page = client.get(f"/b/{link.token}")
    assert "建议改为" in page.text and "接受这个时间" in page.text and "另选时间" in page.text
    accepted = client.post(f"/b/{link.token}", data={"action": "accept"})
    assert accepted.status_code == 200 and "已确认，届时上门" in accepted.text
    session.refresh(made)
    assert (made.status, made.slot_start, made.staff_id) == (CONFIRMED, other, zhang.id)
    visit = session.get(Visit, made.visit_id)
    assert visit.staff_id == zhang.id and visit.scheduled_at == other and ADDRESS in visit.notes
    confirmed = session.scalars(
        select(Message).where(
            Message.tenant_id == tenant.id, Message.source_type == "booking_confirmed"
        )
    ).one()
    assert "已确认" in confirmed.body and "张阿姨" in confirmed.body
    again = client.post(f"/b/{link.token}", data={"action": "accept"})
    assert again.status_code == 409  # nothing proposed any more


def test_a_proposal_is_refused_for_a_busy_staff_member_and_a_closed_booking(
    session, account, customer, link
):
    tenant = account.tenant
    zhang = visits.create_staff(session=session, tenant=tenant, name="张阿姨")
    made = booking.book(
        session=session, link=link, slot_start=TUESDAY_10_CN, note=None, now=MONDAY_9_CN
    )
    visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=customer.id,
        service_type="ac_cleaning",
        staff_id=zhang.id,
        scheduled_at=WEDNESDAY_14_CN,
    )
    with pytest.raises(Conflict, match="张阿姨"):
        desk.propose(
            session=session,
            tenant=tenant,
            booking_id=made.id,
            slot_start=WEDNESDAY_14_CN,
            staff_id=zhang.id,
            now=MONDAY_9_CN,
        )
    booking.cancel(session=session, link=link, now=MONDAY_9_CN)
    with pytest.raises(Conflict, match="取消"):
        desk.propose(
            session=session,
            tenant=tenant,
            booking_id=made.id,
            slot_start=TUESDAY_10_CN,
            staff_id=zhang.id,
            now=MONDAY_9_CN,
        )


def test_the_customer_picks_another_time_instead_of_the_proposal(session, account, customer, link):
    tenant = account.tenant
    zhang = visits.create_staff(session=session, tenant=tenant, name="张阿姨")
    made = booking.book(
        session=session, link=link, slot_start=TUESDAY_10_CN, note=None, now=MONDAY_9_CN
    )
    desk.propose(
        session=session,
        tenant=tenant,
        booking_id=made.id,
        slot_start=WEDNESDAY_14_CN,
        staff_id=zhang.id,
        now=MONDAY_9_CN,
    )
    later = WEDNESDAY_14_CN + dt.timedelta(days=1)
    booking.reschedule(session=session, link=link, slot_start=later, now=MONDAY_9_CN)
    assert (made.status, made.slot_start, made.staff_id) == (REQUESTED, later, None)
    assert [b.booking.id for b in desk.queue(session=session, tenant=tenant, now=MONDAY_9_CN)] == [
        made.id
    ]


def test_answers_are_in_the_customers_language(session, account):
    tenant = account.tenant
    person = make_customer(session, tenant, phone="13900139002", language="en")
    zhang = visits.create_staff(session=session, tenant=tenant, name="Zhang")
    made = booking.book(
        session=session,
        link=_link(session, account, person),
        slot_start=TUESDAY_10_CN,
        note=None,
        now=MONDAY_9_CN,
    )
    answer = desk.propose(
        session=session,
        tenant=tenant,
        booking_id=made.id,
        slot_start=WEDNESDAY_14_CN,
        staff_id=zhang.id,
        now=MONDAY_9_CN,
    )
    body = session.get(Message, answer.message_id).body
    assert (
        body.startswith("The time you asked for is taken. Could Zhang come")
        and "Wed 25 Nov" in body
    )
    declined = desk.decline(
        session=session, tenant=tenant, booking_id=made.id, reason="fully booked", now=MONDAY_9_CN
    )
    assert session.get(Message, declined.message_id).body.startswith("Sorry, we cannot take")


# --- the day-before reminders -----------------------------------------------------------------


def _confirmed(session, account, customer, link, staff_phone="13311112222"):
    tenant = account.tenant
    zhang = visits.create_staff(session=session, tenant=tenant, name="张阿姨", phone=staff_phone)
    made = booking.book(
        session=session,
        link=link,
        slot_start=WEDNESDAY_14_CN,
        note=None,
        address=ADDRESS,
        now=MONDAY_9_CN,
    )
    desk.confirm(
        session=session,
        tenant=tenant,
        booking_id=made.id,
        slot_start=WEDNESDAY_14_CN,
        staff_id=zhang.id,
        now=MONDAY_9_CN,
    )
    return made, zhang


def test_the_day_before_the_customer_and_the_staff_member_are_reminded_once(
    session, account, customer, link, channel, monkeypatch
):
    made, zhang = _confirmed(session, account, customer, link)
    # Due from 10:00 Shanghai time on Tuesday, the day before Wednesday's 14:00 visit.
    assert reminders.due_from(account.tenant, WEDNESDAY_14_CN) == TUESDAY_10_CN
    assert reminders.due(session=session, now=TUESDAY_10_CN - dt.timedelta(minutes=1)) == []
    assert reminders.due(session=session, now=TUESDAY_10_CN) == [made.id]

    # The periodic task, with the clock moved to Tuesday 10:05 (twice: a second tick).
    monkeypatch.setattr(booking_tasks, "utcnow", lambda: TUESDAY_10_CN + dt.timedelta(minutes=5))
    booking_tasks.send_booking_reminders.run.__wrapped__(session=session)
    booking_tasks.send_booking_reminders.run.__wrapped__(session=session)
    session.refresh(made)
    assert made.reminded_at == TUESDAY_10_CN + dt.timedelta(minutes=5)
    [message] = session.scalars(
        select(Message).where(
            Message.tenant_id == account.tenant.id, Message.source_type == "booking_reminder"
        )
    ).all()
    assert message.category == "service" and message.customer_id == customer.id
    assert message.status == "scheduled"  # the dispatcher takes it; the gate decides then
    assert "明天" in message.body and "11月25日" in message.body and "14:00" in message.body
    assert "张阿姨" in message.body and ADDRESS in message.body
    [alert] = session.scalars(
        select(Alert).where(Alert.tenant_id == account.tenant.id, Alert.event == "visit.reminder")
    ).all()
    assert "@张阿姨（133 1111 2222）" in alert.text and ADDRESS in alert.text
    assert alert.facts["staff_id"] == zhang.id and alert.facts["visit_id"] == made.visit_id
    assert reminders.due(session=session, now=TUESDAY_10_CN + dt.timedelta(hours=2)) == []


def test_a_booking_moved_after_its_reminder_is_reminded_of_the_new_time(
    session, account, customer, link
):
    made, zhang = _confirmed(session, account, customer, link)
    reminders.remind(session=session, booking_id=made.id, now=TUESDAY_10_CN)
    later = WEDNESDAY_14_CN + dt.timedelta(days=1)  # Thursday 14:00
    booking.reschedule(session=session, link=link, slot_start=later, now=TUESDAY_10_CN)
    assert made.reminded_at is None
    desk.confirm(
        session=session,
        tenant=account.tenant,
        booking_id=made.id,
        slot_start=later,
        staff_id=zhang.id,
        now=TUESDAY_10_CN,
    )
    assert reminders.due(session=session, now=TUESDAY_10_CN + dt.timedelta(hours=1)) == []
    wednesday_10 = TUESDAY_10_CN + dt.timedelta(days=1)
    assert reminders.due(session=session, now=wednesday_10) == [made.id]
    reminders.remind(session=session, booking_id=made.id, now=wednesday_10)
    bodies = session.scalars(
        select(Message.body)
        .where(Message.tenant_id == account.tenant.id, Message.source_type == "booking_reminder")
        .order_by(Message.id)
    ).all()
    assert len(bodies) == 2 and "11月26日" in bodies[1]


def test_no_reminder_for_a_cancelled_or_past_booking(session, account, customer, link):
    made, _ = _confirmed(session, account, customer, link)
    assert reminders.remind(session=session, booking_id=made.id, now=WEDNESDAY_14_CN) is None
    booking.cancel(session=session, link=link, now=TUESDAY_10_CN)
    assert reminders.due(session=session, now=TUESDAY_10_CN) == []
    assert reminders.remind(session=session, booking_id=made.id, now=TUESDAY_10_CN) is None
    assert (
        session.scalars(
            select(Message).where(
                Message.tenant_id == account.tenant.id, Message.source_type == "booking_reminder"
            )
        ).all()
        == []
    )


# --- the page ---------------------------------------------------------------------------------


def test_the_page_is_a_day_picker_without_has(client, session, account, link):
    page = client.get(f"/b/{link.token}").text
    days = re.findall(r'name="day" value="(d\d{8})"', page)
    assert len(days) >= 10 and len(set(days)) == len(days)
    assert ":has(" not in page and "<script" not in page
    # Each day's slots are in its own panel, shown by "#day:checked ~ #p-day".
    for day in days:
        assert f"#{day}:checked ~ #p-{day} {{ display: block; }}" in page
    slots = re.findall(r'name="slot" value="[^"]+" id="(s\d+)"', page)
    assert slots and all(f'#{s}:checked ~ .panel label[for="{s}"]' in page for s in slots)
    assert page.count("checked>") == 1  # the first day is open, no time is picked for them


def test_a_bad_or_expired_link_gets_the_friendly_page(client, session, account):
    missing = client.get("/b/doesnotexist1234")
    assert missing.status_code == 404 and "未找到这个预约链接" in missing.text
    assert "回复短信“1”" in missing.text and "{" not in missing.text.split("<body>")[1]
    posted = client.post("/b/doesnotexist1234", data={"slot": "x"})
    assert posted.status_code == 404 and "未找到这个预约链接" in posted.text

    # A report's Book button carries the report's token: once the report has expired,
    # /b/ with it says so, as /r/ does.
    person = make_customer(session, account.tenant)
    visit = visits.create_visit(
        session=session,
        tenant=account.tenant,
        customer_id=person.id,
        service_type="ac_cleaning",
        finished_at=MONDAY_9_CN,
    )
    report = Report(
        tenant_id=account.tenant.id,
        visit_id=visit.id,
        token="expiredreport1234",
        expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        built_at=MONDAY_9_CN,
        snapshot={"company": "安心家政", "signature": "安心家政"},
        long_path="x.jpg",
        long_bytes=1,
        long_width=750,
        long_height=1000,
        long_token="longtoken12345678",
    )
    session.add(report)
    session.flush()
    expired = client.get(f"/b/{report.token}")
    assert expired.status_code == 410 and "这个预约链接已过期" in expired.text
    assert "安心家政" in expired.text and "【安心家政】" in expired.text
    report.expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    session.flush()
    assert client.get(f"/b/{report.token}").status_code == 200  # books while it is valid
