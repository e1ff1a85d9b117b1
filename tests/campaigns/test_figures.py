"""The campaign screen's figures over time (per week, per month) and their SVG charts."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from bookings.models import Booking
from bookings.service import book_from_reply
from campaigns import charts, figures
from campaigns import results as campaigns
from customers.models import Customer
from messaging import inbound
from messaging.models import Message
from tests.campaigns.test_results import utc


def _as_sent(session, tenant) -> Message:
    """The fixture walks statuses by hand; the pipeline also stamps when a message left."""
    went = session.scalars(
        select(Message).where(
            Message.tenant_id == tenant.id, Message.status.in_(("sent", "delivered"))
        )
    ).all()
    for message in went:
        message.sent_at = utc(2026, 4, 10, 3)  # Friday 11:00 in Shanghai
    session.flush()
    return next(m for m in went if m.status == "delivered")


def _weekly(session, account, campaign, **kw):
    return figures.weekly_results(
        session=session,
        tenant=account.tenant,
        campaign_id=campaign.id,
        now=utc(2026, 4, 20, 2),
        weeks=4,
        **kw,
    )


def test_weeks_count_sends_deliveries_clicks_bookings_and_opt_outs(
    session, account, sent_campaign
) -> None:
    tenant = account.tenant
    for row in session.scalars(select(Booking).where(Booking.tenant_id == tenant.id)):
        row.created_at = utc(2026, 4, 13, 2)  # Monday 10:00 in Shanghai
    delivered = _as_sent(session, tenant)
    phone = session.get(Customer, delivered.customer_id).phone
    inbound.receive(
        session=session,
        on_book=book_from_reply,
        provider="console",
        provider_message_id="stop-1",
        phone=phone,
        text="T",
        tenant=tenant,
        now=utc(2026, 4, 14, 1),
    )
    session.flush()

    found = _weekly(session, account, sent_campaign)
    assert [w.start for w in found.weeks] == [
        dt.date(2026, 3, 30),
        dt.date(2026, 4, 6),
        dt.date(2026, 4, 13),
        dt.date(2026, 4, 20),
    ]
    table = [(w.sent, w.delivered, w.clicked, w.booked, w.opted_out) for w in found.weeks]
    # Sent on Friday 10 April: two left us, one of them delivered; both links first opened
    # that week (the second on Sunday 08:00 local); the two campaign bookings on Monday 13;
    # the opt-out reply on Tuesday 14. The visit report's booking is not the campaign's.
    assert table == [(0, 0, 0, 0, 0), (2, 1, 2, 0, 0), (0, 0, 0, 2, 1), (0, 0, 0, 0, 0)]
    # Totals agree with the campaign's results.
    total = campaigns.results(session=session, tenant=tenant, campaign_id=sent_campaign.id)
    assert sum(w.sent for w in found.weeks) == total.sent
    assert sum(w.booked for w in found.weeks) == total.booked


def test_a_week_ends_at_local_midnight_on_sunday(session, account, sent_campaign) -> None:
    message = _as_sent(session, account.tenant)
    message.sent_at = utc(2026, 4, 12, 15, 59)  # Sunday 23:59 in Shanghai
    session.flush()
    found = _weekly(session, account, sent_campaign)
    assert [w.sent for w in found.weeks] == [0, 2, 0, 0]
    message.sent_at = utc(2026, 4, 12, 16, 0)  # Monday 00:00
    session.flush()
    assert [w.sent for w in _weekly(session, account, sent_campaign).weeks] == [0, 1, 1, 0]


def test_weekly_by_api_as_json_and_svg(session, client, account, sent_campaign) -> None:
    _as_sent(session, account.tenant)
    path = f"/v1/campaigns/{sent_campaign.id}/weekly"
    answer = client.get(f"{path}?weeks=52", headers=account.headers)
    assert answer.status_code == 200
    weeks = answer.json()["weeks"]
    assert len(weeks) == 52 and sum(w["sent"] for w in weeks) == 2
    svg = client.get(f"{path}?weeks=8&format=svg", headers=account.headers)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert "已发送" in svg.text and "退订" in svg.text and "<script" not in svg.text
    assert client.get(f"{path}?weeks=0", headers=account.headers).status_code == 422
    assert client.get(f"{path}?format=png", headers=account.headers).status_code == 422
    assert client.get("/v1/campaigns/999999/weekly", headers=account.headers).status_code == 404


def test_trend_points_use_the_retention_definitions(session, account, history) -> None:
    found = figures.company_trend(
        session=session, tenant=account.tenant, now=utc(2026, 3, 31, 8), months=3, window_days=90
    )
    assert [p.month for p in found.points] == [
        dt.date(2026, 1, 1),
        dt.date(2026, 2, 1),
        dt.date(2026, 3, 1),
    ]
    last = found.points[-1]
    assert (last.since, last.until) == (dt.date(2026, 1, 1), dt.date(2026, 3, 31))
    # The hand-checked figures of test_results for the same period.
    assert (last.retention_rate, last.repeat_purchase_rate, last.second_service_conversion) == (
        50.0,
        75.0,
        50.0,
    )
    # The current month stops today.
    mid = figures.company_trend(
        session=session, tenant=account.tenant, now=utc(2026, 3, 15, 8), months=1
    )
    assert mid.points[0].until == dt.date(2026, 3, 15)


def test_trend_by_api_as_json_and_svg(client, account, history) -> None:
    answer = client.get("/v1/reports/trend?months=24", headers=account.headers)
    assert answer.status_code == 200 and len(answer.json()["points"]) == 24
    svg = client.get("/v1/reports/trend?months=6&format=svg", headers=account.headers)
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert "留存率" in svg.text and "二次服务转化率" in svg.text
    refused = client.get("/v1/reports/trend?months=37", headers=account.headers)
    assert refused.status_code == 422


def test_charts_are_plain_svg_with_the_figures_in_words() -> None:
    weekly = figures.WeeklyResults(
        1,
        "春节<深度>保洁",
        "Asia/Shanghai",
        [
            figures.Week(dt.date(2026, 1, 5) + dt.timedelta(weeks=i), 10 * i, 9 * i, i, i // 2, 1)
            for i in range(3)
        ],
    )
    svg = charts.weekly(weekly)
    assert svg.startswith("<svg") and "<script" not in svg and "<!--" not in svg
    # No address but the SVG namespace: nothing is fetched when it is shown.
    assert set(re.findall(r"https?://[^\"' )]+", svg)) == {"http://www.w3.org/2000/svg"}
    assert "1月5日" in svg and "春节&lt;深度&gt;保洁" in svg
    assert "<desc>每周一起算。已发送：0，10，20；" in svg
    assert "Noto Sans CJK SC" in svg and "sans-serif" in svg
    trend = charts.trend(
        figures.CompanyTrend(
            90,
            365,
            [
                figures.TrendPoint(
                    dt.date(2026, m, 1),
                    dt.date(2026, m, 1),
                    dt.date(2026, m, 28),
                    None if m == 1 else 40.0 + m,
                    30.0,
                    12.5,
                    3,
                    4,
                )
                for m in (1, 2, 3)
            ],
        )
    )
    assert "<script" not in trend and "留存率：无，42%，43%" in trend
    assert ">2026年1月<" in trend and ">3月<" in trend  # the year where it starts or turns
    empty = charts.weekly(figures.WeeklyResults(1, "空", "Asia/Shanghai", []))
    assert "暂无数据" in empty


def test_a_chart_can_carry_its_own_font_declaration() -> None:
    weekly = figures.WeeklyResults(
        1, "活动", "Asia/Shanghai", [figures.Week(dt.date(2026, 1, 5), 1, 1, 0, 0, 0)]
    )
    svg = charts.weekly(weekly, font_url="/office/static/fonts/cjk.ttc")
    assert "@font-face{font-family:'Huifang CJK';src:url('/office/static/fonts/cjk.ttc');" in svg
    for bad in ("https://cdn.example.com/x.ttf", "/x.ttf');}*{", "/a b"):
        with pytest.raises(ValueError):
            charts.weekly(weekly, font_url=bad)
