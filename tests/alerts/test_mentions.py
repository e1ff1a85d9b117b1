"""The day-before reminder mentions the staff member in the group; other alerts nobody."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from alerts import events
from alerts import service as alerts
from alerts import tasks as alert_tasks
from alerts.models import PENDING, AlertDelivery
from bookings import desk, reminders
from bookings import links as short_links
from bookings import service as booking
from customers import service as customers
from tests.alerts.fakes import Robots
from tests.conftest import make_account
from visits import service as visits


@pytest.fixture
def robots():
    made = Robots()
    yield made
    made.close()


def _deliver_all(session, tenant_id):
    ids = list(
        session.scalars(
            select(AlertDelivery.id).where(
                AlertDelivery.tenant_id == tenant_id, AlertDelivery.status == PENDING
            )
        )
    )
    alert_tasks.deliver(session=session, delivery_ids=ids)


def _booked_and_reminded(session, robots, staff_phone):
    """A booking (alert booking.new), confirmed with a staff member and reminded the day
    before (alert visit.reminder), both delivered to the three fakes."""
    tenant = make_account(session).tenant
    for kind, fake in robots.fakes.items():
        alerts.create_channel(
            session=session, tenant=tenant, kind=kind, name=kind, url=fake.url, secret=fake.secret
        )
    customer = customers.create_customer(
        session=session, tenant=tenant, name="王女士", phone="13800138000"
    )
    zhang = visits.create_staff(session=session, tenant=tenant, name="张阿姨", phone=staff_phone)
    now = dt.datetime.now(dt.UTC)
    link = short_links.link_for(
        session=session,
        tenant=tenant,
        customer=customer,
        service_type="ac_cleaning",
        source_type="test",
        source_id="1",
        now=now,
    )
    start = booking.free_slots(session=session, tenant=tenant, now=now)[0][0]
    made = booking.book(session=session, link=link, slot_start=start, note=None, now=now)
    desk.confirm(
        session=session,
        tenant=tenant,
        booking_id=made.id,
        slot_start=start,
        staff_id=zhang.id,
        now=now,
    )
    reminders.remind(session=session, booking_id=made.id, now=now)
    _deliver_all(session, tenant.id)
    for kind, fake in robots.fakes.items():
        assert fake.refusals == [] and len(fake.received) == 2, kind


def _by_title(fake, title):
    """The body the fake took whose text has ``title``, with whom it mentioned."""
    [(body, mentioned)] = [
        (got.json, mentioned)
        for got, mentioned in zip(fake.received, fake.mentioned, strict=True)
        if title in got.body.decode()
    ]
    return body, mentioned


def test_the_day_before_reminder_mentions_the_staff_member(session, robots):
    _booked_and_reminded(session, robots, staff_phone="133 1111 2222")

    ding, ding_mentioned = _by_title(robots.fakes["dingtalk"], "明日上门提醒")
    assert ding_mentioned == ["13311112222"]
    assert ding["at"] == {"atMobiles": ["13311112222"], "isAtAll": False}
    assert "@13311112222" in ding["markdown"]["text"]
    assert "张阿姨" in ding["markdown"]["text"]

    wecom, wecom_mentioned = _by_title(robots.fakes["wecom"], "明日上门提醒")
    assert wecom_mentioned == ["13311112222"]
    assert wecom["msgtype"] == "text"
    assert wecom["text"]["mentioned_mobile_list"] == ["13311112222"]
    assert "张阿姨" in wecom["text"]["content"] and "/office/today" in wecom["text"]["content"]

    hook, _ = _by_title(robots.fakes["webhook"], "明日上门提醒")
    assert hook["event"] == "visit.reminder"
    assert hook["facts"]["staff_phone"] == "+8613311112222"
    assert hook["facts"]["mention_mobiles"] == ["13311112222"]
    # The time reads as the day and the hour once (``明天 10:00``), not ``明天 明天 10:00``.
    assert hook["text"].count("明天") <= 1 and "上门：空调清洗" in hook["text"]


def test_other_alerts_mention_nobody(session, robots):
    _booked_and_reminded(session, robots, staff_phone="13311112222")
    ding, ding_mentioned = _by_title(robots.fakes["dingtalk"], "新预约待确认")
    assert ding_mentioned == [] and "at" not in ding and "@1" not in ding["markdown"]["text"]
    wecom, wecom_mentioned = _by_title(robots.fakes["wecom"], "新预约待确认")
    assert wecom_mentioned == [] and wecom["msgtype"] == "markdown"
    hook, _ = _by_title(robots.fakes["webhook"], "新预约待确认")
    assert "mention_mobiles" not in hook["facts"]


def test_a_staff_member_without_a_mainland_mobile_is_named_not_mentioned(session, robots):
    _booked_and_reminded(session, robots, staff_phone="+852 5123 4567")
    ding, ding_mentioned = _by_title(robots.fakes["dingtalk"], "明日上门提醒")
    assert ding_mentioned == [] and "at" not in ding
    assert "张阿姨" in ding["markdown"]["text"]
    wecom, wecom_mentioned = _by_title(robots.fakes["wecom"], "明日上门提醒")
    assert wecom_mentioned == [] and wecom["msgtype"] == "markdown"


def test_mainland_mobile_is_the_eleven_digits_without_the_country_code():
    assert events.mainland_mobile("+8613311112222") == "13311112222"
    assert events.mainland_mobile("+861065529988") is None  # a Beijing landline
    assert events.mainland_mobile("+85251234567") is None  # Hong Kong
    assert events.mainland_mobile("+14155552671") is None
    assert events.mainland_mobile(None) is None
    assert events.mainland_mobile("erased") is None


def test_the_fakes_mention_only_as_the_robots_do():
    # DingTalk needs @number in the text as well as atMobiles; WeCom markdown cannot mention.
    robots = Robots()
    try:
        ding, wecom = robots.fakes["dingtalk"], robots.fakes["wecom"]
        at = {"atMobiles": ["13311112222"], "isAtAll": False}
        assert ding.mentions({"markdown": {"title": "t", "text": "无"}, "at": at}) == []
        assert ding.mentions({"markdown": {"title": "t", "text": "@13311112222"}, "at": at}) == [
            "13311112222"
        ]
        listed = {"content": "x", "mentioned_mobile_list": ["13311112222"]}
        assert wecom.mentions({"msgtype": "markdown", "markdown": listed}) == []
        assert wecom.mentions({"msgtype": "text", "text": listed}) == ["13311112222"]
        plus = {"content": "x", "mentioned_mobile_list": ["+8613311112222"]}
        assert wecom.mentions({"msgtype": "text", "text": plus}) == []
    finally:
        robots.close()
