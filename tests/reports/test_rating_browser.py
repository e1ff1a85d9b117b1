"""A customer rates their report in a real Chromium at 390 px, and the office hears of it.

The app is served for real (``tests.browser.live_app``) with the embedded worker running,
as ``huifang serve`` runs it, and a WeCom group robot stand-in on loopback
(``tests.alerts.fakes``): the customer taps 不满意 and 没打扫干净, sees the thanks; the
robot receives the rating.low alert within seconds; the ticket is in the office's inbox
with its clock; a campaign that runs next holds the customer, and the gate says why;
rating again changes the answer and opens no second ticket, nor a second alert.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import delete, select

import huifang.db
from alerts import service as alerts
from campaigns import handoff
from campaigns import lifecycle as campaigns
from campaigns import materialize as materializer
from compliance import wording
from compliance.models import COMPLAINT_HOLD
from huifang import worker
from media import service as media_service
from media.upload import stage_bytes
from messaging import service as outbox
from messaging import threads
from messaging.models import InboundMessage
from messaging.providers.console import ConsoleProvider
from reports import service as reports
from reports.models import ReportRating
from tenancy.models import Tenant
from tests.alerts.fakes import Robots
from tests.browser import (
    DESKTOP,
    PHONE,
    artifacts,
    chromium,
    live_app,
    make_company,
    make_user,
    open_page,
    page_width,
    shot,
    sign_in_through_link,
)
from tests.factories import make_consent, make_customer, make_staff, make_visit
from tests.media.conftest import phone_jpeg

__all__ = ["chromium", "live_app"]  # fixtures

pytestmark = pytest.mark.browser

VISIT_DAY = dt.datetime(2026, 11, 15, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def robots():
    made = Robots()
    yield made
    made.close()


@pytest.fixture
def rated_company(live_app, robots):
    """A company with a WeCom group robot, a customer with consent, and their report."""
    tenant = make_company(live_app, "洁家家政")
    with live_app.database.session() as session:
        tenant = session.get(Tenant, tenant.id)
        assert tenant is not None
        alerts.create_channel(
            session=session,
            tenant=tenant,
            kind="wecom",
            name="店长群",
            url=robots.fakes["wecom"].url,
        )
        customer = make_customer(session, tenant, name="王女士", phone="13800138123")
        make_consent(session, tenant, customer, now=VISIT_DAY - dt.timedelta(days=30))
        visit = make_visit(
            session,
            tenant,
            customer=customer,
            staff=make_staff(session, tenant, name="李秀兰"),
            service_type="ac_cleaning",
            areas=["客厅"],
            finished_at=VISIT_DAY,
        )
        staged = stage_bytes(phone_jpeg(size=(900, 1200)), fields={"phase": "staff_report"})
        media, _ = media_service.accept_upload(
            session=session, tenant=tenant, visit_id=visit.id, staged=staged
        )
        media_service.process_media(session=session, media_id=media.id)
        report, _ = reports.build_report(session=session, tenant=tenant, visit_id=visit.id)
        found = (tenant.id, customer.id, report.id, report.token)
    yield found
    with live_app.database.session() as session:
        session.execute(delete(Tenant).where(Tenant.id == found[0]))


def _wait_for(what, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.05)
    return what()


@pytest.mark.serial
def test_a_low_rating_in_the_page_opens_a_ticket_holds_marketing_and_reaches_wecom(
    chromium, live_app, robots, rated_company
):
    tenant_id, customer_id, report_id, token = rated_company
    wecom = robots.fakes["wecom"]
    huifang.db.set_database(live_app.database)
    worker.load_tasks()  # as huifang.asgi does before it starts the embedded worker
    try:
        with (
            worker.EmbeddedWorker(beat=False),
            open_page(chromium, live_app, PHONE, touch=True) as (
                page,
                _,
            ),
        ):
            answer = page.goto(f"{live_app.url}/r/{token}")
            assert answer is not None and answer.status == 200
            section = page.locator("#rating")
            section.scroll_into_view_if_needed()
            problems = page.get_by_role("group", name="哪里没做好？（可多选）")
            assert not problems.is_visible()  # asked only once 不满意 is chosen
            page.locator("label[for=score-bad]").tap()
            assert problems.is_visible()
            page.get_by_label("没打扫干净").check()
            page.get_by_label("想对我们说的话（选填）").fill("厨房台面还有油渍")
            shot(page, "rating-390-choosing")
            tapped = time.monotonic()
            page.get_by_role("button", name="提交评价").tap()
            page.wait_for_url(f"**/r/{token}?rated=1#rating")
            thanks = section.get_by_role("status")
            assert thanks.is_visible() and "感谢您的评价" in thanks.inner_text()
            box = section.bounding_box()
            assert box is not None and -1 <= box["y"] < 200  # the anchor brings the thanks up
            page.screenshot(path=str(artifacts("screens", "rating-390-thanks-screen.png")))
            assert "会尽快与您联系" in thanks.inner_text()
            assert "您已评价：不满意（没打扫干净）" in section.inner_text()
            assert page_width(page) <= page.viewport_size["width"]
            shot(page, "rating-390-thanks")

            # The office's WeCom group hears of it within seconds of the tap.
            assert _wait_for(lambda: wecom.received), wecom.refusals
            took = time.monotonic() - tapped
            assert took < 10, took
            print(f"\nrating.low reached the WeCom fake {took:.2f} s after the tap")
            content = wecom.received[0].json["markdown"]["content"]
            print(content)
            assert (
                "客户差评" in content and "没打扫干净" in content and "厨房台面还有油渍" in content
            )

            # Rating again changes the answer: no second ticket, no second alert.
            page.goto(f"{live_app.url}/r/{token}")
            page.get_by_label("迟到").check()
            page.get_by_role("button", name="修改评价").tap()
            page.wait_for_url(f"**/r/{token}?rated=1#rating")
            assert "您已评价：不满意（没打扫干净、迟到）" in page.locator("#rating").inner_text()
            time.sleep(1.0)  # what the worker would have sent by now
            assert len(wecom.received) == 1
    finally:
        huifang.db._database = None

    with live_app.database.session() as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        rating = session.scalars(
            select(ReportRating).where(ReportRating.report_id == report_id)
        ).one()
        assert (rating.score, rating.problems, rating.changes) == ("bad", ["not_clean", "late"], 1)
        tickets = session.scalars(
            select(InboundMessage).where(InboundMessage.customer_id == customer_id)
        ).all()
        assert [t.id for t in tickets] == [rating.ticket_id]
        item = next(
            i
            for i in threads.thread(
                session=session,
                tenant=tenant,
                customer_id=customer_id,
                now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
            ).items
            if i.direction == "in"
        )
        assert item.state == "open" and item.clock is not None
        assert item.clock.target_minutes == tenant.complaint_target_minutes
        assert item.clock.minutes >= 5 and item.clock.responded_at is None

        # A campaign that runs next: the unhappy customer is held, and the gate says why.
        campaign = campaigns.create_campaign(
            session=session, tenant=tenant, preset="ac_filter_quarterly"
        )
        start = VISIT_DAY + dt.timedelta(days=60)
        campaigns.activate(session=session, tenant=tenant, campaign_id=campaign.id, now=start)
        materializer.materialize(session=session, now=start, horizon=dt.timedelta(days=60))
        due = VISIT_DAY + dt.timedelta(days=92)
        handed = handoff.hand_off_due(session=session, now=due)
        assert len(handed.message_ids) == 1
        [message_id] = handed.message_ids
        assert outbox.queue_now(session=session, message_ids=[message_id], now=due)
        assert outbox.claim_for_send(session=session, message_id=message_id, now=due)
        held = outbox.deliver(
            session=session, message_id=message_id, provider=ConsoleProvider(), now=due
        )
        assert held is not None
        assert (held.status, held.status_reason) == ("suppressed", COMPLAINT_HOLD)
        assert "low rating" in (held.status_detail or "")
        print("gate:", held.status_detail, "/", wording.reason_text(held.status_reason))

    # The office sees the ticket with its clock, and the 满意度 page.
    link = make_user(live_app, tenant)
    with open_page(chromium, live_app, PHONE) as (page, _):
        sign_in_through_link(page, link)
        page.goto(f"{live_app.url}/office/inbox/threads/{customer_id}")
        ticket = page.locator(f"#reply-{rating.ticket_id}")
        assert "服务报告页的满意度评价（不满意）" in ticket.inner_text()
        assert "已等" in ticket.inner_text() and "差评" in ticket.inner_text()
        shot(page, "rating-390-office-ticket")
        page.goto(f"{live_app.url}/office/ratings")
        figures = page.locator("#rating-figures")
        assert "李秀兰" in figures.inner_text() and "0.0%" in figures.inner_text()
        assert page_width(page) <= page.viewport_size["width"]
        shot(page, "rating-390-office-ratings")
    desk = make_user(live_app, tenant, role="office", name="客服小李", phone="13900139001")
    with open_page(chromium, live_app, DESKTOP) as (page, _):
        sign_in_through_link(page, desk)
        page.goto(f"{live_app.url}/office/ratings?by=service")
        assert "空调清洗" in page.locator("#rating-figures").inner_text()
        shot(page, "rating-1280-office-ratings")
        page.goto(f"{live_app.url}/r/{token}")
        assert "您已评价：不满意（没打扫干净、迟到）" in page.locator("#rating").inner_text()
        shot(page, "rating-1280-report")
