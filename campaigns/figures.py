"""Figures over time for the campaign screen's charts.

- ``weekly_results``: per week (Monday to Sunday in the company's time zone), what one
  campaign did: messages **sent** that week and, of those, **delivered**; links **clicked**
  for the first time that week; **bookings** made that week from the campaign's link or a
  reply to its message; customers who **opted out** that week by replying to one of its
  messages. Each figure is one grouped query with the weeks as a ``CASE`` over their UTC
  bounds, so daylight saving and both databases are handled alike.
- ``company_trend``: at the end of each month, the company's retention rate, repeat-purchase
  rate and second-service conversion over the window ending then (``results.retention``,
  the same definitions as ``GET /v1/reports/retention``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bookings.models import Booking, ShortLink
from campaigns import facts, handoff, lifecycle, results
from huifang.errors import Invalid
from messaging.models import (
    DELIVERED,
    OPT_OUT,
    SENT,
    UNDELIVERED,
    InboundMessage,
    Message,
)
from tenancy.models import Tenant

MAX_WEEKS = 104
MAX_MONTHS = 36
SERIES = ("sent", "delivered", "clicked", "booked", "opted_out")


@dataclass(frozen=True)
class Week:
    start: dt.date  # the Monday, company's local date
    sent: int
    delivered: int
    clicked: int
    booked: int
    opted_out: int


@dataclass(frozen=True)
class WeeklyResults:
    campaign_id: int
    name: str
    timezone: str
    weeks: list[Week]


def _week_bounds(now: dt.datetime, zone: ZoneInfo, weeks: int) -> list[tuple[dt.date, dt.datetime]]:
    """The Mondays of the last ``weeks`` weeks (this one included) and the week after,
    each with its local midnight in UTC."""
    today = now.astimezone(zone).date()
    monday = today - dt.timedelta(days=today.weekday())
    days = [monday - dt.timedelta(weeks=weeks - 1 - i) for i in range(weeks + 1)]
    return [(d, dt.datetime.combine(d, dt.time(0), tzinfo=zone).astimezone(dt.UTC)) for d in days]


def _bucket(column: Any, bounds: list[dt.datetime]) -> ColumnElement[int]:
    whens = [(column < bound, i) for i, bound in enumerate(bounds[1:-1])]
    if not whens:  # one week: every row is in bucket 0 (a CASE needs a WHEN)
        return literal(0)
    return case(*whens, else_=len(bounds) - 2)


def _counts(
    session: Session, column: Any, bounds: list[dt.datetime], *where: Any, extra: Any = None
) -> dict[int, tuple[int, int]]:
    bucket = _bucket(column, bounds).label("bucket")
    second = extra if extra is not None else func.count()
    rows = session.execute(
        select(bucket, func.count(), second)
        .where(column >= bounds[0], column < bounds[-1], *where)
        .group_by(bucket)
    )
    return {int(b): (int(n), int(m or 0)) for b, n, m in rows}


def weekly_results(
    *, session: Session, tenant: Tenant, campaign_id: int, now: dt.datetime, weeks: int = 12
) -> WeeklyResults:
    """The campaign's last ``weeks`` weeks; see the module's docstring for each figure."""
    if not 1 <= weeks <= MAX_WEEKS:
        raise Invalid(f"weeks must be between 1 and {MAX_WEEKS}.")
    campaign = lifecycle.get_campaign(session=session, tenant_id=tenant.id, campaign_id=campaign_id)
    zone = ZoneInfo(tenant.timezone)
    marks = _week_bounds(now, zone, weeks)
    bounds = [at for _, at in marks]
    ours = and_(
        Message.tenant_id == tenant.id,
        Message.source_type == facts.SOURCE_TYPE,
        Message.source_id.like(f"{campaign.id}:%"),
    )
    sent = _counts(
        session,
        Message.sent_at,
        bounds,
        ours,
        Message.status.in_((SENT, DELIVERED, UNDELIVERED)),
        extra=func.sum(case((Message.status == DELIVERED, 1), else_=0)),
    )
    clicked = _counts(
        session,
        ShortLink.first_clicked_at,
        bounds,
        ShortLink.tenant_id == tenant.id,
        ShortLink.source_type == facts.SOURCE_TYPE,
        ShortLink.source_id == str(campaign.id),
    )
    booked = _counts(
        session,
        Booking.created_at,
        bounds,
        Booking.tenant_id == tenant.id,
        Booking.source_type == facts.SOURCE_TYPE,
        handoff.campaign_source(campaign.id, Booking.source_id),
    )
    opted = _counts(
        session,
        InboundMessage.received_at,
        bounds,
        InboundMessage.tenant_id == tenant.id,
        InboundMessage.route == OPT_OUT,
        InboundMessage.in_reply_to_id.in_(select(Message.id).where(ours)),
    )
    return WeeklyResults(
        campaign.id,
        campaign.name,
        tenant.timezone,
        [
            Week(
                start=marks[i][0],
                sent=sent.get(i, (0, 0))[0],
                delivered=sent.get(i, (0, 0))[1],
                clicked=clicked.get(i, (0, 0))[0],
                booked=booked.get(i, (0, 0))[0],
                opted_out=opted.get(i, (0, 0))[0],
            )
            for i in range(weeks)
        ],
    )


@dataclass(frozen=True)
class TrendPoint:
    month: dt.date  # the first day of the month; the window ends on its last day (or today)
    since: dt.date
    until: dt.date
    retention_rate: float | None
    repeat_purchase_rate: float | None
    second_service_conversion: float | None
    active_at_start: int
    new_customers: int


@dataclass(frozen=True)
class CompanyTrend:
    window_days: int
    lookback_days: int
    points: list[TrendPoint]


def _month_starts(today: dt.date, months: int) -> list[dt.date]:
    firsts, year, month = [], today.year, today.month
    for _ in range(months):
        firsts.append(dt.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return firsts[::-1]


def company_trend(
    *,
    session: Session,
    tenant: Tenant,
    now: dt.datetime,
    months: int = 12,
    window_days: int = 90,
    lookback_days: int = 365,
) -> CompanyTrend:
    """Month by month, the company's figures over the ``window_days`` ending with the month
    (the current month ends today)."""
    if not 1 <= months <= MAX_MONTHS:
        raise Invalid(f"months must be between 1 and {MAX_MONTHS}.")
    if not 7 <= window_days <= 366:
        raise Invalid("window_days must be between 7 and 366.")
    today = now.astimezone(ZoneInfo(tenant.timezone)).date()
    points = []
    for first in _month_starts(today, months):
        following = (first + dt.timedelta(days=32)).replace(day=1)
        until = min(following - dt.timedelta(days=1), today)
        since = until - dt.timedelta(days=window_days - 1)
        found = results.retention(
            session=session, tenant=tenant, since=since, until=until, lookback_days=lookback_days
        )
        points.append(
            TrendPoint(
                month=first,
                since=since,
                until=until,
                retention_rate=found.retention_rate,
                repeat_purchase_rate=found.repeat_purchase_rate,
                second_service_conversion=found.second_service_conversion,
                active_at_start=found.active_at_start,
                new_customers=found.new_customers,
            )
        )
    return CompanyTrend(window_days=window_days, lookback_days=lookback_days, points=points)
