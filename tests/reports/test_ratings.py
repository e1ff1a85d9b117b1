"""Satisfaction on the report page: one answer per report, a low rating's ticket with its
clock, the alert, the hold on marketing, the figures; and what the page saw.

The answers are posted to /r/{token}/rating as the page's form posts them; the gate is
asked as a send asks it (``compliance.service.gate``/``gate_many``).
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import event, select

from alerts import service as alerts
from alerts import tasks as alert_tasks
from alerts.models import PENDING, AlertDelivery
from bookings.service import book_from_reply
from campaigns import handoff
from campaigns import lifecycle as campaigns
from campaigns import materialize as materializer
from campaigns import results as campaign_results
from compliance import service as compliance
from compliance import wording
from compliance.models import COMPLAINT_HOLD, SEND, SUPPRESS, MarketingHold
from huifang.db import utcnow
from media import service as media_service
from media.upload import stage_bytes
from messaging import inbound, threads
from messaging import service as outbox
from messaging.models import OPEN, InboundMessage
from messaging.providers.console import ConsoleProvider
from reports import ratings
from reports import service as reports
from reports.models import ReportRating, ReportViews
from tests.alerts.fakes import Robots
from tests.factories import make_consent, make_customer, make_staff, make_visit
from tests.media.conftest import phone_jpeg
from tests.office.support import sign_in

DAYTIME = dt.datetime(2026, 11, 16, 2, 0, tzinfo=dt.UTC)  # Monday 10:00 in Shanghai
_phones = iter(range(13700137001, 13700138000))


def _report(session, tenant, *, staff=None, service_type="ac_cleaning"):
    customer = make_customer(session, tenant, phone=str(next(_phones)))
    make_consent(session, tenant, customer, now=DAYTIME - dt.timedelta(days=30))
    visit = make_visit(
        session,
        tenant,
        customer=customer,
        staff=staff or make_staff(session, tenant),
        service_type=service_type,
        finished_at=DAYTIME - dt.timedelta(days=1),
    )
    staged = stage_bytes(phone_jpeg(size=(600, 800)), fields={"phase": "staff_report"})
    media, _ = media_service.accept_upload(
        session=session, tenant=tenant, visit_id=visit.id, staged=staged
    )
    media_service.process_media(session=session, media_id=media.id)
    report, _ = reports.build_report(session=session, tenant=tenant, visit_id=visit.id)
    session.flush()
    return report, customer, visit


def _rate(client, token, score, problems=(), comment=""):
    return client.post(
        f"/r/{token}/rating",
        data={"score": score, "problem": list(problems), "comment": comment},
        follow_redirects=False,
    )


def _ask(tenant, customer, category="marketing", ref="campaign-1"):
    return compliance.Ask(tenant, customer, category, "春节前深度保洁，回复1预约", ref, 500)


def test_a_low_rating_opens_one_ticket_with_its_clock_and_holds_marketing(client, session, account):
    tenant = account.tenant
    report, customer, visit = _report(session, tenant)
    # Before: marketing may go (consent on record, daytime, nothing sent yet).
    assert compliance.preview(
        session=session,
        tenant=tenant,
        customer=customer,
        category="marketing",
        body="春节前深度保洁",
        max_chars=500,
        now=DAYTIME,
    ).allowed

    answer = _rate(client, report.token, "bad", ["not_clean"], "厨房台面还有油渍")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/r/{report.token}?rated=1#rating"
    page = client.get(answer.headers["location"])
    assert page.status_code == 200
    assert "感谢您的评价" in page.text and "会尽快与您联系" in page.text
    assert "您已评价：<strong>不满意</strong>（没打扫干净）" in page.text

    rating = session.scalars(select(ReportRating).where(ReportRating.report_id == report.id)).one()
    assert (rating.score, rating.problems, rating.comment) == (
        "bad",
        ["not_clean"],
        "厨房台面还有油渍",
    )
    assert (rating.staff_id, rating.service_type, rating.customer_id) == (
        visit.staff_id,
        "ac_cleaning",
        customer.id,
    )
    ticket = session.get(InboundMessage, rating.ticket_id)
    assert ticket is not None and ticket.complaint and ticket.state == OPEN
    assert ticket.customer_id == customer.id and "没打扫干净" in ticket.body
    assert "厨房台面还有油渍" in ticket.body

    # The ticket is in the inbox as a complaint is, with the complaint clock.
    summary = threads.list_threads(session=session, tenant_id=tenant.id, open_only=True)
    assert [(s.customer_id, s.open_complaints) for s in summary] == [(customer.id, 1)]
    later = utcnow() + dt.timedelta(minutes=45)
    item = next(
        i
        for i in threads.thread(
            session=session, tenant=tenant, customer_id=customer.id, now=later
        ).items
        if i.direction == "in"
    )
    assert item.routing is not None and item.routing.complaint
    assert "满意度评价" in item.routing.rule_label
    assert item.clock is not None
    assert item.clock.target_minutes == tenant.complaint_target_minutes
    assert item.clock.minutes >= 45 and item.clock.responded_at is None

    # Marketing is held with its reason; a service message still goes.
    marketing, service = compliance.gate_many(
        session=session,
        asks=[_ask(tenant, customer), _ask(tenant, customer, "service", "report-1")],
        now=DAYTIME,
    )
    assert (marketing.decision, marketing.reason) == (SUPPRESS, COMPLAINT_HOLD)
    assert "low rating" in marketing.detail and "service messages still go" in marketing.detail
    assert "差评" in wording.reason_text(marketing.reason)
    assert service.decision == SEND
    why = compliance.explain(session=session, tenant=tenant, customer=customer, now=DAYTIME)
    assert not why["marketing"]["can_receive"] and why["service"]["can_receive"]
    assert any("low rating" in r for r in why["marketing"]["reasons"])

    # Rating again changes the answer; no second ticket, the ticket shows the latest.
    again = _rate(client, report.token, "bad", ["not_clean", "late"])
    assert again.status_code == 303
    session.expire_all()
    assert session.scalars(select(ReportRating)).all() == [rating]
    assert rating.problems == ["not_clean", "late"] and rating.comment is None
    assert rating.changes == 1
    tickets = session.scalars(
        select(InboundMessage).where(
            InboundMessage.tenant_id == tenant.id, InboundMessage.customer_id == customer.id
        )
    ).all()
    assert [t.id for t in tickets] == [ticket.id] and "迟到" in tickets[0].body
    assert _rate(client, report.token, "ok").status_code == 303
    session.expire_all()
    assert rating.score == "ok" and rating.problems == [] and rating.changes == 2
    assert session.scalars(select(InboundMessage.id)).all().count(ticket.id) == 1
    assert _rate(client, report.token, "bad", ["attitude"]).status_code == 303
    assert (
        len(
            session.scalars(
                select(InboundMessage).where(InboundMessage.customer_id == customer.id)
            ).all()
        )
        == 1
    )

    # Resolved, the hold ends and marketing may go again.
    threads.resolve(
        session=session,
        tenant_id=tenant.id,
        reply_id=ticket.id,
        resolution="已上门返工，客户满意",
        now=utcnow(),
    )
    assert compliance.gate(
        session=session,
        tenant=tenant,
        customer=customer,
        category="marketing",
        body="春节前深度保洁",
        message_ref="campaign-2",
        max_chars=500,
        now=DAYTIME,
    ).allowed


def test_a_good_rating_opens_nothing(client, session, account):
    report, _, _ = _report(session, account.tenant)
    assert _rate(client, report.token, "good", ["late"], "师傅很细心").status_code == 303
    rating = ratings.rating_of(session=session, report_id=report.id)
    assert rating is not None and rating.score == "good"
    assert rating.problems == []  # what went wrong is asked only for 不满意
    assert rating.ticket_id is None
    assert compliance.active_holds(session=session, tenant_id=account.tenant.id) == []
    page = client.get(f"/r/{report.token}?rated=1")
    assert "您的评价是「满意」" in page.text and "师傅很细心" in page.text
    # Coming back from the form is the same visit, not another opening.
    assert ratings.views_of(session=session, report_id=report.id)["opens"] == 0


def test_refused_answers_say_why_in_chinese(client, session, account):
    report, _, _ = _report(session, account.tenant)
    for form, words in (
        ({"score": "great"}, "请选择 满意、一般 或 不满意"),
        ({"score": "bad", "problem": ["broken"]}, "请从列出的问题中选择"),
        ({"score": "ok", "comment": "好" * 501}, "留言请控制在 500 字以内"),
    ):
        answer = client.post(f"/r/{report.token}/rating", data=form, follow_redirects=False)
        assert answer.status_code == 422 and words in answer.text, form
    assert ratings.rating_of(session=session, report_id=report.id) is None
    assert client.post(f"/r/{'x' * 24}/rating", data={"score": "bad"}).status_code == 404
    report.expires_at = utcnow() - dt.timedelta(days=1)
    session.flush()
    assert client.post(f"/r/{report.token}/rating", data={"score": "bad"}).status_code == 410


@pytest.fixture
def robots():
    made = Robots()
    yield made
    made.close()


def test_a_low_rating_reaches_the_wecom_group_once(client, session, account, robots):
    tenant = account.tenant
    alerts.create_channel(
        session=session, tenant=tenant, kind="wecom", name="店长群", url=robots.fakes["wecom"].url
    )
    report, customer, _ = _report(session, tenant)
    _rate(client, report.token, "bad", ["not_clean"], "沙发底下没吸")
    _rate(client, report.token, "bad", ["not_clean", "damage"])  # changed: no second alert
    ids = session.scalars(
        select(AlertDelivery.id).where(
            AlertDelivery.tenant_id == tenant.id, AlertDelivery.status == PENDING
        )
    ).all()
    assert len(ids) == 1
    alert_tasks.deliver(session=session, delivery_ids=list(ids))
    received = robots.fakes["wecom"].received
    assert len(received) == 1, robots.fakes["wecom"].refusals
    content = received[0].json["markdown"]["content"]
    assert "客户差评" in content and "不满意" in content and "没打扫干净" in content
    assert "沙发底下没吸" in content and customer.phone not in content  # the number masked


def test_a_complaint_reply_holds_until_resolved_and_again_when_reopened(session, account):
    tenant = account.tenant
    customer = make_customer(session, tenant, phone=str(next(_phones)))
    make_consent(session, tenant, customer, now=DAYTIME - dt.timedelta(days=3))
    got = inbound.receive(
        session=session,
        provider="console",
        provider_message_id="c-1",
        phone=customer.phone,
        text="师傅迟到了两个小时，太不专业了",
        now=DAYTIME,
        on_book=book_from_reply,
        tenant=tenant,
    )
    reply = session.get(InboundMessage, got.reply_ids[0])
    assert reply is not None and reply.complaint

    def marketing(ref: str):
        return compliance.gate(
            session=session,
            tenant=tenant,
            customer=customer,
            category="marketing",
            body="春节前深度保洁",
            message_ref=ref,
            max_chars=500,
            now=DAYTIME,
        )

    held = marketing("m-1")
    assert held.reason == COMPLAINT_HOLD and "a complaint open since" in held.detail
    threads.resolve(
        session=session, tenant_id=tenant.id, reply_id=reply.id, resolution="已道歉", now=DAYTIME
    )
    assert marketing("m-2").allowed
    threads.reopen(session=session, tenant_id=tenant.id, reply_id=reply.id, now=DAYTIME)
    assert marketing("m-3").reason == COMPLAINT_HOLD
    holds = session.scalars(select(MarketingHold).where(MarketingHold.tenant_id == tenant.id)).all()
    assert [(h.reason, h.source, h.released_at) for h in holds] == [
        ("complaint", f"reply:{reply.id}", None)
    ]


def test_the_gate_reads_holds_for_a_whole_batch_in_one_query(session, account, database):
    tenant = account.tenant
    people = [make_customer(session, tenant, phone=str(next(_phones))) for _ in range(12)]
    for person in people:
        make_consent(session, tenant, person, now=DAYTIME - dt.timedelta(days=3))
    for person in people[:5]:
        compliance.hold_marketing(
            session=session,
            tenant_id=tenant.id,
            phone=person.phone,
            reason="low_rating",
            source=f"reply:test-{person.id}",
            now=DAYTIME,
        )
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        if "marketing_holds" in statement:
            statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", seen)
    try:
        verdicts = compliance.gate_many(
            session=session,
            asks=[_ask(tenant, p, ref=f"batch-{p.id}") for p in people],
            now=DAYTIME,
        )
    finally:
        event.remove(database.engine, "before_cursor_execute", seen)
    assert len(statements) == 1
    assert [v.reason for v in verdicts] == [COMPLAINT_HOLD] * 5 + ["allowed"] * 7


def test_figures_per_staff_service_and_month_with_response_and_resolution(client, session, account):
    tenant = account.tenant
    li, zhang = (
        make_staff(session, tenant, name="李秀兰"),
        make_staff(session, tenant, name="张师傅"),
    )
    first, _, _ = _report(session, tenant, staff=li)
    second, _, _ = _report(session, tenant, staff=li, service_type="deep_cleaning")
    third, _, _ = _report(session, tenant, staff=zhang)
    _rate(client, first.token, "good")
    _rate(client, second.token, "bad", ["late"])
    _rate(client, third.token, "ok")
    rating = ratings.rating_of(session=session, report_id=second.id)
    assert rating is not None and rating.ticket_id is not None
    ticket = session.get(InboundMessage, rating.ticket_id)
    assert ticket is not None
    ticket.received_at = utcnow() - dt.timedelta(minutes=90)  # the tap was 90 minutes ago
    threads.mark_responded(
        session=session,
        tenant_id=tenant.id,
        reply_id=ticket.id,
        now=ticket.received_at + dt.timedelta(minutes=20),
    )
    threads.resolve(
        session=session,
        tenant_id=tenant.id,
        reply_id=ticket.id,
        resolution="已电话致歉并约好返工",
        now=ticket.received_at + dt.timedelta(minutes=80),
    )
    session.flush()

    by_staff = client.get("/v1/ratings/figures?by=staff", headers=account.headers)
    assert by_staff.status_code == 200, by_staff.text
    groups = {g["label"]: g for g in by_staff.json()["groups"]}
    assert set(groups) == {"李秀兰", "张师傅"}
    assert (groups["李秀兰"]["ratings"], groups["李秀兰"]["good"], groups["李秀兰"]["bad"]) == (
        2,
        1,
        1,
    )
    assert groups["李秀兰"]["satisfied_percent"] == 50.0
    assert groups["李秀兰"]["tickets"] == 1 and groups["李秀兰"]["resolved"] == 1
    assert groups["李秀兰"]["median_minutes_to_first_response"] == 20.0
    assert groups["李秀兰"]["median_minutes_to_resolution"] == 80.0
    assert groups["张师傅"]["ok"] == 1 and groups["张师傅"]["tickets"] == 0
    assert groups["张师傅"]["median_minutes_to_first_response"] is None

    by_service = client.get("/v1/ratings/figures?by=service", headers=account.headers).json()
    assert {g["key"]: g["ratings"] for g in by_service["groups"]} == {
        "ac_cleaning": 2,
        "deep_cleaning": 1,
    }
    by_month = client.get("/v1/ratings/figures?by=month", headers=account.headers).json()
    assert [g["ratings"] for g in by_month["groups"]] == [3]
    assert re.fullmatch(r"\d{4}年\d{1,2}月", by_month["groups"][0]["label"])
    refused = client.get(
        "/v1/ratings/figures?since=2026-12-01T00:00:00Z&until=2026-11-01T00:00:00Z",
        headers=account.headers,
    )
    assert refused.status_code == 422

    listed = client.get("/v1/ratings?score=bad", headers=account.headers).json()
    assert [(r["report_id"], r["problems"]) for r in listed] == [(second.id, ["late"])]
    read = client.get(f"/v1/visits/{second.visit_id}/report", headers=account.headers).json()
    assert read["rating"]["score"] == "bad" and read["rating"]["ticket_id"] == ticket.id


def test_the_page_counts_opens_plays_the_long_image_and_book(client, session, account):
    report, _, _ = _report(session, account.tenant)
    assert ratings.views_of(session=session, report_id=report.id)["opens"] == 0
    page = client.get(f"/r/{report.token}")
    assert page.status_code == 200
    assert '<script src="/r/-/report.js" defer></script>' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/r/-/report.js")
    assert script.status_code == 200 and "sendBeacon" in script.text
    client.get(f"/r/{report.token}")
    for name in ("video_started", "video_ended", "book_pressed", "book_pressed"):
        sent = client.post(f"/r/{report.token}/events", data={"event": name})
        assert sent.status_code == 204
    assert client.post(f"/r/{report.token}/events", data={"event": "x"}).status_code == 422
    long = client.get(f"/r/{report.token}/-/long-image", follow_redirects=False)
    assert long.status_code == 303
    assert client.get(long.headers["location"]).headers["content-type"] == "image/jpeg"
    session.expire_all()
    row = session.get(ReportViews, report.id)
    assert row is not None
    assert (row.opens, row.video_started, row.video_ended, row.long_image, row.book_pressed) == (
        2,
        1,
        1,
        1,
        2,
    )
    assert row.first_opened_at is not None and row.first_opened_at <= row.last_opened_at
    read = client.get(f"/v1/visits/{report.visit_id}/report", headers=account.headers).json()
    assert read["views"]["opens"] == 2 and read["views"]["book_pressed"] == 2
    assert client.post(f"/r/{'x' * 24}/events", data={"event": "video_started"}).status_code == 404


def test_a_campaign_that_runs_next_holds_the_unhappy_customer_and_says_how_many(
    client, session, account
):
    tenant = account.tenant
    unhappy, _, _ = _report(session, tenant)
    happy, _, _ = _report(session, tenant)
    _rate(client, unhappy.token, "bad", ["not_clean"])
    _rate(client, happy.token, "good")

    counts = client.post(
        "/v1/campaigns/audience", headers=account.headers, json={"preset": "ac_filter_quarterly"}
    )
    assert counts.status_code == 200, counts.text
    assert (counts.json()["reachable"], counts.json()["held"]) == (2, 1)

    campaign = campaigns.create_campaign(
        session=session, tenant=tenant, preset="ac_filter_quarterly"
    )
    start = DAYTIME + dt.timedelta(days=60)
    campaigns.activate(session=session, tenant=tenant, campaign_id=campaign.id, now=start)
    materializer.materialize(session=session, now=start, horizon=dt.timedelta(days=60))
    due = DAYTIME + dt.timedelta(days=95)  # a quarter after the visits, 10:00 in Shanghai
    handed = handoff.hand_off_due(session=session, now=due)
    assert len(handed.message_ids) == 2
    outcomes = {}
    for message_id in handed.message_ids:
        assert outbox.queue_now(session=session, message_ids=[message_id], now=due)
        assert outbox.claim_for_send(session=session, message_id=message_id, now=due)
        done = outbox.deliver(
            session=session, message_id=message_id, provider=ConsoleProvider(), now=due
        )
        assert done is not None
        outcomes[done.customer_id] = (done.status, done.status_reason)
    rated = {
        r.customer_id: r.score for r in ratings.list_ratings(session=session, tenant_id=tenant.id)
    }
    held_customer = next(c for c, score in rated.items() if score == "bad")
    assert outcomes.pop(held_customer) == ("suppressed", COMPLAINT_HOLD)
    assert [status for status, _ in outcomes.values()] == ["sent"]
    found = campaign_results.results(session=session, tenant=tenant, campaign_id=campaign.id)
    assert found.held_for_complaints == 1 and found.suppressed == {COMPLAINT_HOLD: 1}
    # The thread tells the office why, in Chinese.
    thread = threads.thread(session=session, tenant=tenant, customer_id=held_customer, now=due)
    stopped = [i for i in thread.items if i.direction == "out" and i.status == "suppressed"]
    assert len(stopped) == 1 and "差评" in (stopped[0].reason_text or "")


def test_the_console_shows_ratings_and_the_ticket_on_today(client, session, account):
    tenant = account.tenant
    li = make_staff(session, tenant, name="李秀兰")
    first, unhappy, _ = _report(session, tenant, staff=li)
    second, _, _ = _report(session, tenant, staff=li, service_type="deep_cleaning")
    _rate(client, first.token, "bad", ["not_clean", "damage"], "花瓶碰坏了")
    _rate(client, second.token, "good")
    sign_in(client, session, tenant, role="office", name="客服小李")

    page = client.get("/office/ratings")
    assert page.status_code == 200
    text = page.text
    assert "满意度" in text and "共 2 条评价，其中不满意 1 条" in text
    figures = text[text.index('id="rating-figures"') : text.index("</table>")]
    assert "李秀兰" in figures and "50.0%" in figures and "1 未处理" in figures
    rating = ratings.rating_of(session=session, report_id=first.id)
    assert rating is not None
    link = f'href="/office/inbox/threads/{unhappy.id}#reply-{rating.ticket_id}"'
    assert link in text and "损坏物品" in text and "花瓶碰坏了" in text
    by_service = client.get("/office/ratings?by=service&days=30").text
    assert "空调清洗" in by_service and "服务项目" in by_service
    assert client.get("/office/ratings?by=nonsense&days=7").status_code == 200  # the defaults

    # The ticket is on 今日 with its clock, and in the thread with the rating's words.
    today = client.get("/office/today").text
    assert re.search(r'id="count-tickets">1<', today)
    assert f"#reply-{rating.ticket_id}" in today and "已等" in today
    thread = client.get(f"/office/inbox/threads/{unhappy.id}").text
    assert "服务报告页的满意度评价（不满意）" in thread and "没打扫干净、损坏物品" in thread
