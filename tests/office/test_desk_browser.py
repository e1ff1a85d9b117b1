"""今日 and 回复与预约 in a real Chromium, at a phone's width and a desk's: the day's counts
(refreshed without a reload), a complaint opened, answered and resolved, one booking
confirmed with a time and a free staff member, another declined with a reason."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from tests.browser import (
    SMALL_PHONE,
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
from tests.office.desk_data import make_day, reply
from visits import service as visits

pytestmark = pytest.mark.browser
__all__ = ["chromium", "live_app"]  # fixtures


def _fits(page, width: str) -> None:
    """Nothing runs off the side of the screen."""
    assert page_width(page) <= WIDTHS[width]["width"]


def _settled(page) -> None:
    """The page and what it loads after (its icon) are in: a click that leaves the page
    then aborts nothing in flight."""
    page.wait_for_load_state("networkidle")


def _company(live_app, name: str, width: str, phone: str):
    tenant = make_company(live_app, name)
    with live_app.database.session() as session:
        day = make_day(session, tenant)
        ids = {
            "wang": day.wang.id,
            "li": day.li.id,
            "complaint": day.complaint.id,
            "first": day.first.id,
            "second": day.second.id,
            "zhang": day.zhang.id,
            "chen": day.chen.id,
            "first_start": day.first.slot_start,
        }
    link = make_user(live_app, tenant, role="office", name="客服小李", phone=phone)
    return tenant, ids, link


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_today_then_a_complaint_answered_and_resolved(chromium, live_app, width):
    tenant, ids, link = _company(
        live_app, f"洁家家政今日{width}", width, f"1390013{width.zfill(4)}"
    )
    with open_page(chromium, live_app, WIDTHS[width]) as (page, _watched):
        page.clock.install()
        sign_in_through_link(page, link)
        _settled(page)
        assert page.url.endswith("/office/today")
        assert page.locator("#count-bookings").inner_text() == "2"
        assert page.locator("#count-tickets").inner_text() == "1"
        tickets = page.locator("#tickets")
        assert tickets.get_by_text("已超时").first.is_visible()
        assert tickets.get_by_text("阿姨没擦干净，很失望").is_visible()
        _fits(page, width)
        shot(page, f"today-{width}")

        # A new reply arrives: the count goes up without a reload.
        with live_app.database.session() as session:
            from customers.models import Customer

            wang = session.get(Customer, ids["wang"])
            assert wang is not None
            reply(
                session,
                tenant,
                wang,
                "发票开好了吗？谢谢",
                f"late-{width}",
                dt.datetime.now(dt.UTC),
            )
        before = page.locator("#count-replies").inner_text()
        page.clock.run_for(21_000)
        expect(page.locator("#count-replies")).to_have_text(str(int(before) + 1))

        tickets.get_by_role("link", name=re.compile("王女士")).click()
        _settled(page)
        assert f"/office/inbox/threads/{ids['wang']}" in page.url
        complaint = page.locator(f"#reply-{ids['complaint']}")
        assert complaint.get_by_text("投诉词“没擦干净”").is_visible()
        assert complaint.get_by_text("需要人工处理").is_visible()
        _fits(page, width)
        shot(page, f"thread-{width}")

        page.get_by_label("回复哪一条").select_option(str(ids["complaint"]))
        page.get_by_label("内容").fill("王女士您好，非常抱歉，明天上午安排阿姨返工。")
        page.get_by_role("button", name="发送").click()
        _settled(page)
        assert "answered=" in page.url
        ours = page.locator(".timeline > li.out").last
        assert "明天上午安排阿姨返工" in ours.inner_text()
        assert complaint.get_by_text("已回应").first.is_visible()

        complaint.get_by_label("指派给").select_option(label="客服小李")
        complaint.get_by_role("button", name="指派").click()
        _settled(page)
        assert complaint.get_by_text("跟进人：客服小李").is_visible()
        complaint.get_by_label("处理结果").fill("已上门返工，客户满意")
        complaint.get_by_role("button", name="标记已解决").click()
        _settled(page)
        assert complaint.get_by_text("已上门返工，客户满意").is_visible()
        assert complaint.get_by_role("button", name="重新打开").is_visible()
        _fits(page, width)
        shot(page, f"thread-resolved-{width}")

        page.get_by_role("navigation", name="主菜单").get_by_role("link", name="回复与预约").click()
        _settled(page)
        assert page.locator(".threads").get_by_text("王女士").is_visible()
        page.get_by_label("找客户（姓名或手机号）").fill("138 0013 8001")
        page.get_by_role("button", name="搜索").click()
        _settled(page)
        assert page.locator(".threads > li").count() == 1
        assert page.locator(".threads").get_by_text("李先生").is_visible()
        page.get_by_role("link", name="全部", exact=True).click()
        _settled(page)
        page.get_by_label("找客户（姓名或手机号）").fill("")
        page.get_by_role("button", name="搜索").click()
        _settled(page)
        assert page.locator(".threads > li").count() == 2
        _fits(page, width)
        shot(page, f"inbox-{width}")


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_a_booking_confirmed_with_time_and_staff_another_declined(chromium, live_app, width):
    tenant, ids, link = _company(
        live_app, f"洁家家政预约{width}", width, f"1390014{width.zfill(4)}"
    )
    with live_app.database.session() as session:
        from customers.models import Customer

        other = session.get(Customer, ids["li"])
        assert other is not None
        # 张阿姨 is out at 赵阿姨's time already.
        visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=other.id,
            service_type="deep_cleaning",
            staff_id=ids["zhang"],
            scheduled_at=ids["first_start"],
        )
    with open_page(chromium, live_app, WIDTHS[width]) as (page, _watched):
        sign_in_through_link(page, link)
        _settled(page)
        page.goto(f"{live_app.url}/office/inbox/bookings")
        _settled(page)
        card = page.locator(f"#booking-{ids['first']}")
        assert card.get_by_text("请带梯子").is_visible()
        staff = card.get_by_label("服务人员")
        zhang = staff.locator(f"option[value='{ids['zhang']}']")
        assert zhang.is_disabled()  # busy at the time the customer asked for
        _fits(page, width)
        shot(page, f"bookings-{width}")

        # Another time: 张阿姨 is free then (the script says so at once), and busy again back.
        time = card.get_by_label("上门时间")
        options = time.locator("option").all()
        other_time = next(
            o.get_attribute("value")
            for o in options
            if o.get_attribute("value") and o.get_attribute("selected") is None
        )
        asked = time.input_value()
        time.select_option(other_time)
        assert zhang.is_enabled() and "有空" in zhang.inner_text()
        time.select_option(asked)
        assert zhang.is_disabled()
        staff.select_option(str(ids["chen"]))
        card.get_by_role("button", name="确认并通知客户").click()
        _settled(page)
        done = page.locator(f"#answered-{ids['first']}")
        assert done.get_by_text("已确认").is_visible()
        assert done.get_by_text(re.compile(r"已生成上门记录 #\d+")).is_visible()
        assert done.get_by_text(re.compile("陈师傅")).is_visible()
        assert page.locator(f"#booking-{ids['first']}").count() == 0

        second = page.locator(f"#booking-{ids['second']}")
        second.get_by_label("原因（客户会收到）").fill("师傅这周已排满，下周一联系您")
        page.once("dialog", lambda dialog: dialog.accept())
        second.get_by_role("button", name="婉拒并通知客户").click()
        _settled(page)
        declined = page.locator(f"#answered-{ids['second']}")
        assert declined.get_by_text("已婉拒").is_visible()
        assert declined.get_by_text("原因：师傅这周已排满，下周一联系您").is_visible()
        assert page.get_by_text("没有待确认的预约。").is_visible()
        _fits(page, width)
        shot(page, f"bookings-answered-{width}")


def test_the_desk_works_without_javascript_at_360(chromium, live_app):
    """Plain forms: who is free at another time is asked of the server, and a narrow phone
    scrolls nothing sideways."""
    tenant, ids, link = _company(live_app, "洁家家政无脚本", "360", "13900150360")
    with live_app.database.session() as session:
        from customers.models import Customer

        other = session.get(Customer, ids["li"])
        assert other is not None
        visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=other.id,
            service_type="deep_cleaning",
            staff_id=ids["zhang"],
            scheduled_at=ids["first_start"],
        )
    context = chromium.new_context(
        viewport=SMALL_PHONE, locale="zh-CN", timezone_id="Asia/Shanghai", java_script_enabled=False
    )
    try:
        page = context.new_page()
        statuses: list[int] = []
        page.on("response", lambda r: statuses.append(r.status))
        sign_in_through_link(page, link)
        _settled(page)
        for url in (
            "/office/today",
            "/office/inbox",
            f"/office/inbox/threads/{ids['wang']}",
            "/office/inbox/bookings",
        ):
            page.goto(live_app.url + url)
            _settled(page)
            assert page_width(page) <= 360, url
        card = page.locator(f"#booking-{ids['first']}")
        zhang = card.locator(f"select[name=staff_id] option[value='{ids['zhang']}']")
        assert zhang.is_disabled()
        time = card.get_by_label("上门时间")
        other_time = next(
            o.get_attribute("value")
            for o in time.locator("option").all()
            if o.get_attribute("value") and o.get_attribute("selected") is None
        )
        time.select_option(other_time)
        assert zhang.is_disabled()  # nothing changes in the page by itself
        card.get_by_role("button", name="查看这个时间谁有空").click()
        _settled(page)
        card = page.locator(f"#booking-{ids['first']}")
        assert card.get_by_label("上门时间").input_value() == other_time
        zhang = card.locator(f"select[name=staff_id] option[value='{ids['zhang']}']")
        assert zhang.is_enabled() and "有空" in zhang.inner_text()
        card.get_by_label("服务人员").select_option(str(ids["zhang"]))
        card.get_by_role("button", name="确认并通知客户").click()
        _settled(page)
        assert page.locator(f"#answered-{ids['first']}").get_by_text("张阿姨").is_visible()
        assert page_width(page) <= 360
        shot(page, "bookings-nojs-360")
        assert all(status < 400 for status in statuses), statuses
    finally:
        context.close()
