"""Booking: links counted, free slots from working hours, a slot taken once, staff answers."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from customers import service as customers
from huifang.errors import Conflict, Invalid
from messaging import booking
from messaging.models import Booking, Message
from visits import service as visits

MONDAY_9_CN = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)  # Monday 09:00 in Shanghai
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def customer(session, account):
    return customers.create_customer(session=session, tenant=account.tenant, name="王女士",
                                     phone="13800138000")


@pytest.fixture
def link(session, account, customer):
    return booking.link_for(session=session, tenant=account.tenant, customer=customer,
                            source_type="visit_report", source_id="7",
                            service_type="ac_cleaning", now=MONDAY_9_CN)


def test_a_link_is_made_once_per_cause_and_is_unguessable(session, account, customer, link):
    again = booking.link_for(session=session, tenant=account.tenant, customer=customer,
                             source_type="visit_report", source_id="7", now=MONDAY_9_CN)
    assert again.id == link.id
    other = booking.link_for(session=session, tenant=account.tenant, customer=customer,
                             source_type="campaign", source_id="3", now=MONDAY_9_CN)
    assert other.token != link.token and len(link.token) >= 16
    assert booking.url(link).endswith(f"/b/{link.token}")
    assert booking.resolve(session=session, token="../../etc", now=MONDAY_9_CN) is None


def test_free_slots_follow_working_hours_in_the_company_zone(session, account):
    account.tenant.work_days = "12345"  # Monday to Friday
    slots = booking.free_slots(session=session, tenant=account.tenant, now=MONDAY_9_CN)
    local = [start.astimezone(SHANGHAI) for start, _ in slots]
    assert local, "two weeks of working days must offer something"
    assert all(moment.isoweekday() <= 5 for moment in local)
    assert {moment.hour for moment in local} <= {8, 10, 12, 14, 16}
    assert min(local) >= (MONDAY_9_CN + booking.LEAD_TIME).astimezone(SHANGHAI)
    assert all(end - start == dt.timedelta(minutes=120) for start, end in slots)


def test_a_slot_holds_as_many_visits_as_there_is_staff(session, account, customer, link):
    start = booking.free_slots(session=session, tenant=account.tenant, now=MONDAY_9_CN)[0][0]
    booking.book(session=session, link=link, slot_start=start, note=None, now=MONDAY_9_CN)
    with pytest.raises(Conflict, match="no longer free"):
        booking.book(session=session, link=link, slot_start=start, note=None, now=MONDAY_9_CN)
    visits.create_staff(session=session, tenant=account.tenant, name="张阿姨")
    visits.create_staff(session=session, tenant=account.tenant, name="李阿姨")
    second = booking.book(session=session, link=link, slot_start=start, note="有猫",
                          now=MONDAY_9_CN)
    assert second.note == "有猫" and second.source_type == "visit_report"


def test_a_note_no_column_can_hold_is_refused_with_a_sentence(session, account, link):
    start = booking.free_slots(session=session, tenant=account.tenant, now=MONDAY_9_CN)[0][0]
    with pytest.raises(Invalid, match="备注"):
        booking.book(session=session, link=link, slot_start=start, note="下午\x00在家",
                     now=MONDAY_9_CN)
    assert session.scalars(select(Booking)).all() == []


def test_the_booking_page_counts_clicks_and_takes_a_time(client, session, account, link,
                                                         monkeypatch):
    monkeypatch.setattr(booking, "HORIZON_DAYS", 3)
    page = client.get(f"/b/{link.token}")
    assert page.status_code == 200 and "空调清洗" in page.text
    session.refresh(link)
    assert link.clicks == 1 and link.first_clicked_at is not None
    first_slot = re.search(r'name="slot" value="([^"]+)"', page.text).group(1)
    done = client.post(f"/b/{link.token}", data={"slot": first_slot, "note": "下午在家"})
    assert done.status_code == 200 and "预约已提交" in done.text
    again = client.post(f"/b/{link.token}", data={"slot": first_slot})
    assert again.status_code == 409 and "另选" in again.text
    bad = client.post(f"/b/{link.token}", data={"slot": "tomorrow"})
    assert bad.status_code == 422
    assert client.get("/b/doesnotexist1234").status_code == 404
    [made] = client.get("/v1/bookings", headers={"Authorization": f"Bearer {account.key}"}
                        ).json()
    assert made["note"] == "下午在家" and made["link_id"] == link.id


def test_staff_confirm_and_the_customer_is_told_once(client, session, account, customer, link):
    start = booking.free_slots(session=session, tenant=account.tenant, now=MONDAY_9_CN)[0][0]
    made = booking.book(session=session, link=link, slot_start=start, note=None,
                        now=MONDAY_9_CN)
    headers = account.headers
    answer = client.patch(f"/v1/bookings/{made.id}", headers=headers,
                          json={"status": "confirmed"})
    assert answer.status_code == 200 and answer.json()["status"] == "confirmed"
    assert client.patch(f"/v1/bookings/{made.id}", headers=headers,
                        json={"status": "confirmed"}).status_code == 200
    assert client.patch(f"/v1/bookings/{made.id}", headers=headers,
                        json={"status": "declined"}).status_code == 409
    told = session.scalars(select(Message).where(Message.customer_id == customer.id,
                                                 Message.source_type == "booking_confirmed")
                           ).all()
    assert len(told) == 1 and "已确认" in told[0].body and told[0].status == "queued"


def test_a_one_reply_becomes_a_booking_tied_to_the_message(client, session, account, customer):
    answer = client.post("/v1/replies/simulate", headers=account.headers,
                         json={"phone": "13800138000", "text": "1"})
    assert answer.status_code == 201
    [made] = session.scalars(select(Booking)).all()
    assert (made.channel, made.status, made.slot_start) == ("reply", "requested", None)
    assert made.inbound_id == answer.json()[0]["id"]
