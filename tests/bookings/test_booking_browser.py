"""The booking page in a real Chromium at 390 px, from the customer's tap to a confirmed
visit: a day and a time picked, the address given; the same booking shown again with
change and cancel; the office confirms it with a staff member in the console; the
customer's confirmation is in the outbox and the day-before reminder goes when it is due.

The chosen time must show without CSS ``:has()`` (older Android WebViews and the WeChat
browser lack it): the test checks that no rule of the page uses it, and that the chosen
time is marked by the page's own rules (its label's background and the 已选 line).
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from bookings import links as short_links
from bookings import reminders
from bookings.models import CONFIRMED, Booking
from customers import service as customers
from messaging.models import Message
from tests.browser import (
    WIDTHS,
    chromium,
    live_app,
    make_company,
    make_user,
    open_page,
    page_width,
    shot,
    sign_in_through_link,
)
from visits import service as visits
from visits.models import Visit

pytestmark = pytest.mark.browser
__all__ = ["chromium", "live_app"]  # fixtures

PHONE = WIDTHS["390"]
BRAND = "rgb(11, 122, 75)"  # --brand on the booking page
ADDRESS = "浦东新区张杨路500号3栋1201室"

# Every selector of the page's own style sheets.
SELECTORS = """() => Array.from(document.styleSheets).flatMap(sheet =>
    Array.from(sheet.cssRules).map(rule => rule.selectorText || ''))"""


def _settled(page) -> None:
    page.wait_for_load_state("networkidle")


def test_a_customer_books_and_the_office_confirms_with_a_staff_member(chromium, live_app):
    tenant = make_company(live_app, "安心家政")
    with live_app.database.session() as session:
        customer = customers.create_customer(
            session=session, tenant=tenant, name="王女士", phone="13800138000"
        )
        zhang = visits.create_staff(
            session=session, tenant=tenant, name="张阿姨", phone="13311112222"
        )
        visits.create_staff(session=session, tenant=tenant, name="李阿姨")
        link = short_links.link_for(
            session=session,
            tenant=tenant,
            customer=customer,
            source_type="visit_report",
            source_id="1",
            service_type="ac_cleaning",
            now=dt.datetime.now(dt.UTC),
        )
        token, zhang_id, customer_id = link.token, zhang.id, customer.id
    url = f"{live_app.url}/b/{token}"

    with open_page(chromium, live_app, PHONE, touch=True) as (page, _watched):
        page.goto(url)
        _settled(page)
        selectors = page.evaluate(SELECTORS)
        assert selectors and not any(":has(" in s for s in selectors)
        days = page.locator(".days label")
        assert days.count() >= 5
        # One day's times at a time: the first day is open, the second's panel hidden.
        panels = page.locator(".panel")
        assert panels.nth(0).is_visible() and not panels.nth(1).is_visible()
        shot(page, "booking-390-days")

        days.nth(1).click()
        assert panels.nth(1).is_visible() and not panels.nth(0).is_visible()
        label = panels.nth(1).locator(".slots label").nth(1)
        chosen_value = label.get_attribute("data-slot")
        label.click()
        background = label.evaluate("el => getComputedStyle(el).backgroundColor")
        assert background == BRAND  # marked by "#slot:checked ~ .panel label[for=…]"
        chosen = page.locator(".chosen")
        assert chosen.is_visible() and "已选：" in chosen.inner_text()
        day_text = days.nth(1).inner_text().split("\n")[0]
        assert day_text.split("/")[1] in chosen.inner_text()
        # A time picked on one day stays said when another day is looked at.
        days.nth(2).click()
        assert chosen.is_visible()
        days.nth(1).click()
        assert page_width(page) <= PHONE["width"]

        page.get_by_label("上门地址").fill(ADDRESS)
        page.get_by_label("备注（选填）").fill("家里有猫")
        shot(page, "booking-390-chosen")
        page.get_by_role("button", name="提交预约").click()
        _settled(page)
        assert page.get_by_text("预约已提交").is_visible()
        assert page.get_by_text(ADDRESS).is_visible()
        shot(page, "booking-390-booked")

        # Opened again: the same booking, to change or cancel.
        page.goto(url)
        _settled(page)
        assert page.get_by_text("您已预约空调清洗").is_visible()
        assert page.get_by_text("改期").is_visible()
        assert page.get_by_role("button", name="取消预约").is_visible()
        page.get_by_text("改期").click()
        assert page.get_by_label("上门地址（可修改）").input_value() == ADDRESS
        shot(page, "booking-390-again")

    with live_app.database.session() as session:
        made = session.scalars(select(Booking).where(Booking.customer_id == customer_id)).one()
        assert made.slot_start == dt.datetime.fromisoformat(chosen_value)
        assert (made.address, made.note) == (ADDRESS, "家里有猫")
        booking_id, start = made.id, made.slot_start

    # The office confirms it in the console with Zhang.
    sign_in = make_user(live_app, tenant, role="office", name="客服小李", phone="13900139011")
    with open_page(chromium, live_app, PHONE, touch=True) as (page, _watched):
        sign_in_through_link(page, sign_in)
        page.goto(f"{live_app.url}/office/inbox/bookings")
        _settled(page)
        card = page.locator(f"#booking-{booking_id}")
        assert card.get_by_text(f"上门地址：{ADDRESS}").is_visible()
        card.locator(f"#staff-{booking_id}").select_option(str(zhang_id))
        shot(page, "booking-390-desk")
        card.get_by_role("button", name="确认并通知客户").click()
        _settled(page)
        assert page.locator(f"#answered-{booking_id}").get_by_text("已确认").is_visible()

    with live_app.database.session() as session:
        made = session.get(Booking, booking_id)
        assert made is not None and made.status == CONFIRMED and made.staff_id == zhang_id
        visit = session.get(Visit, made.visit_id)
        assert visit is not None and visit.staff_id == zhang_id and visit.scheduled_at == start
        told = session.scalars(
            select(Message).where(
                Message.customer_id == customer_id, Message.source_type == "booking_confirmed"
            )
        ).one()
        assert "已确认" in told.body and "张阿姨" in told.body and told.category == "service"
        tenant_row = session.get(type(tenant), tenant.id)
        due = reminders.due_from(tenant_row, start)

    with open_page(chromium, live_app, PHONE, touch=True) as (page, _watched):
        page.goto(url)
        _settled(page)
        assert page.get_by_text("已确认，届时上门。").is_visible()
        assert page.get_by_text("张阿姨").is_visible()
        shot(page, "booking-390-confirmed")

    # The day before, with the clock moved: the reminder goes, once.
    with live_app.database.session() as session:
        # (other tests' bookings in the shared live database may be due too: only ours counts)
        assert booking_id not in reminders.due(session=session, now=due - dt.timedelta(minutes=1))
        assert booking_id in reminders.due(session=session, now=due)
        assert reminders.remind(session=session, booking_id=booking_id, now=due) is not None
    with live_app.database.session() as session:
        assert reminders.remind(session=session, booking_id=booking_id, now=due) is None
        [reminder] = session.scalars(
            select(Message).where(
                Message.customer_id == customer_id, Message.source_type == "booking_reminder"
            )
        ).all()
        assert reminder.customer_id == customer_id and "明天" in reminder.body
        assert ADDRESS in reminder.body and "张阿姨" in reminder.body


def test_a_bad_link_shows_the_friendly_page(chromium, live_app):
    with open_page(chromium, live_app, PHONE, touch=True) as (page, watched):
        watched.allowed_statuses.add(404)
        answer = page.goto(f"{live_app.url}/b/notarealtoken123")
        assert answer is not None and answer.status == 404
        # Chromium logs the page's own 404 as a console error: the answer asked for here.
        watched.errors[:] = [e for e in watched.errors if "status of 404" not in e]
        assert page.get_by_role("heading", name="未找到这个预约链接").is_visible()
        assert page_width(page) <= PHONE["width"]
        shot(page, "booking-390-missing")


def test_the_customer_accepts_the_time_the_office_proposed(chromium, live_app):
    from bookings import desk
    from bookings import service as booking
    from tenancy.models import Tenant

    tenant = make_company(live_app, "好帮手家政")
    now = dt.datetime.now(dt.UTC)
    with live_app.database.session() as session:
        company = session.get(Tenant, tenant.id)
        customer = customers.create_customer(
            session=session, tenant=company, name="孙女士", phone="13800138001", address=ADDRESS
        )
        chen = visits.create_staff(session=session, tenant=company, name="陈师傅")
        link = short_links.link_for(
            session=session,
            tenant=company,
            customer=customer,
            source_type="campaign",
            source_id="1",
            service_type="deep_cleaning",
            now=now,
        )
        free = booking.free_slots(session=session, tenant=company, now=now)
        made = booking.book(session=session, link=link, slot_start=free[0][0], note=None, now=now)
        desk.propose(
            session=session,
            tenant=company,
            booking_id=made.id,
            slot_start=free[4][0],
            staff_id=chen.id,
            now=now,
        )
        token, booking_id, offered = link.token, made.id, free[4][0]

    with open_page(chromium, live_app, PHONE, touch=True) as (page, _watched):
        page.goto(f"{live_app.url}/b/{token}")
        _settled(page)
        assert page.get_by_text("好帮手家政建议改为：").is_visible()
        assert page.get_by_text("陈师傅").is_visible()
        assert page.get_by_text("另选时间").is_visible()
        shot(page, "booking-390-proposed")
        page.get_by_role("button", name="接受这个时间").click()
        _settled(page)
        assert page.get_by_text("已确认，届时上门").first.is_visible()
        shot(page, "booking-390-accepted")

    with live_app.database.session() as session:
        made = session.get(Booking, booking_id)
        assert made is not None and made.status == CONFIRMED and made.slot_start == offered
        visit = session.get(Visit, made.visit_id)
        assert visit is not None and visit.scheduled_at == offered
        kinds = session.scalars(
            select(Message.source_type).where(Message.tenant_id == tenant.id).order_by(Message.id)
        ).all()
        assert kinds == ["booking_proposed", "booking_confirmed"]
