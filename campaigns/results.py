"""A campaign's results (sent, delivered, clicked, booked) and the retention figures."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    func,
    select,
)
from sqlalchemy.orm import Session

from bookings.models import Booking, ShortLink
from campaigns.facts import SOURCE_TYPE
from campaigns.handoff import campaign_source
from campaigns.lifecycle import get_campaign
from campaigns.models import (
    CANCELLED,
    OCCURRENCE_STATES,
    CampaignOccurrence,
)
from campaigns.schemas import CampaignResultsRead, RetentionRead
from compliance.models import COMPLAINT_HOLD
from huifang.errors import Invalid
from messaging.models import (
    DEFERRED,
    DELIVERED,
    FAILED,
    QUEUED,
    SCHEDULED,
    SENDING,
    SENT,
    SUPPRESSED,
    UNDELIVERED,
    UNKNOWN,
    Message,
)
from tenancy.models import Tenant
from visits.models import Visit


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def result_rows(found: CampaignResultsRead) -> list[tuple[str, object]]:
    """A campaign's figures as (metric, value) lines, for CSV."""
    lines: list[tuple[str, object]] = [
        ("campaign_id", found.campaign_id),
        ("name", found.name),
        ("status", found.status),
        ("version", found.version),
    ]
    lines += [(f"occurrences_{k}", v) for k, v in found.occurrences.items()]
    lines += [(f"cancelled_{k}", v) for k, v in sorted(found.cancelled.items())]
    lines += [
        (k, getattr(found, k))
        for k in ("scheduled", "waiting", "sent", "delivered", "failed", "deferred", "unknown")
    ]
    lines += [(f"suppressed_{k}", v) for k, v in sorted(found.suppressed.items())]
    lines += [
        (k, getattr(found, k))
        for k in ("customers_sent", "clicked", "clicks", "booked", "customers_booked")
    ]
    lines.append(("conversion_percent", "" if found.conversion is None else found.conversion))
    return lines


def results(*, session: Session, tenant: Tenant, campaign_id: int) -> CampaignResultsRead:
    """What the campaign did: occurrences, messages by outcome, clicks, bookings.

    Message counts are by current status: ``sent`` left us (sent, delivered or
    undelivered), ``failed`` did not arrive (failed or undelivered), ``waiting`` is
    scheduled, queued or sending; ``clicked`` counts customers who opened their link at
    least once, ``booked`` bookings made from the campaign's link or a reply to its
    message. ``conversion`` is customers who booked per customer sent to, in percent.
    """
    campaign = get_campaign(session=session, tenant_id=tenant.id, campaign_id=campaign_id)
    occurrences = dict.fromkeys(OCCURRENCE_STATES, 0)
    cancelled: dict[str, int] = {}
    for status, reason, count in session.execute(
        select(CampaignOccurrence.status, CampaignOccurrence.reason, func.count())
        .where(CampaignOccurrence.campaign_id == campaign.id)
        .group_by(CampaignOccurrence.status, CampaignOccurrence.reason)
    ):
        occurrences[status] = occurrences.get(status, 0) + count
        if status == CANCELLED:
            cancelled[reason or "other"] = cancelled.get(reason or "other", 0) + count
    ours = and_(
        Message.tenant_id == tenant.id,
        Message.source_type == SOURCE_TYPE,
        Message.source_id.like(f"{campaign.id}:%"),
    )
    by_status: dict[str, int] = {}
    suppressed: dict[str, int] = {}
    for status, reason, count in session.execute(
        select(Message.status, Message.status_reason, func.count())
        .where(ours)
        .group_by(Message.status, Message.status_reason)
    ):
        by_status[status] = by_status.get(status, 0) + count
        if status == SUPPRESSED:
            suppressed[reason or "other"] = suppressed.get(reason or "other", 0) + count
    went = (SENT, DELIVERED, UNDELIVERED)
    customers_sent = (
        session.scalar(
            select(func.count(func.distinct(Message.customer_id))).where(
                ours, Message.status.in_(went)
            )
        )
        or 0
    )
    clicked, clicks = session.execute(
        select(
            func.coalesce(func.sum(case((ShortLink.clicks > 0, 1), else_=0)), 0),
            func.coalesce(func.sum(ShortLink.clicks), 0),
        ).where(
            ShortLink.tenant_id == tenant.id,
            ShortLink.source_type == SOURCE_TYPE,
            ShortLink.source_id == str(campaign.id),
        )
    ).one()
    booked, customers_booked = session.execute(
        select(func.count(Booking.id), func.count(func.distinct(Booking.customer_id))).where(
            Booking.tenant_id == tenant.id,
            Booking.source_type == SOURCE_TYPE,
            campaign_source(campaign.id, Booking.source_id),
        )
    ).one()
    return CampaignResultsRead(
        campaign_id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        version=campaign.version,
        occurrences=occurrences,
        cancelled=cancelled,
        scheduled=sum(by_status.values()),
        waiting=sum(by_status.get(s, 0) for s in (SCHEDULED, QUEUED, SENDING)),
        sent=sum(by_status.get(s, 0) for s in went),
        delivered=by_status.get(DELIVERED, 0),
        failed=by_status.get(FAILED, 0) + by_status.get(UNDELIVERED, 0),
        deferred=by_status.get(DEFERRED, 0),
        unknown=by_status.get(UNKNOWN, 0),
        suppressed=suppressed,
        held_for_complaints=suppressed.get(COMPLAINT_HOLD, 0),
        customers_sent=int(customers_sent),
        clicked=int(clicked),
        clicks=int(clicks),
        booked=int(booked),
        customers_booked=int(customers_booked),
        conversion=_percent(int(customers_booked), int(customers_sent)),
    )


def retention_rows(found: RetentionRead) -> list[tuple[str, object]]:
    """The retention figures as (metric, value) lines, for CSV."""
    return [
        (name, "" if value is None else value.isoformat() if isinstance(value, dt.date) else value)
        for name, value in found.model_dump().items()
    ]


def retention(
    *, session: Session, tenant: Tenant, since: dt.date, until: dt.date, lookback_days: int = 365
) -> RetentionRead:
    """Retention, repeat purchases and second-service conversion of a company's customers
    over a period ``[since, until]`` (local dates, both included).

    - **Active at the start**: customers with a finished visit in the ``lookback_days``
      before ``since``. **Lost**: those of them with no finished visit within the period.
      **Retention rate** = (active at the start − lost) / active at the start × 100%.
    - **Repeat-purchase rate**: of the customers served within the period, the share with
      at least two finished visits by its end (a returning customer, or two visits in it).
    - **Second-service conversion**: of the customers whose first finished visit fell within
      the period, the share with a second finished visit by its end.
    Rates are None when there is nobody to divide by.
    """
    if until < since:
        raise Invalid("until must be on or after since (both are included).")
    if (until - since).days > 3660:
        raise Invalid("Keep the period to ten years at most.")
    if not 1 <= lookback_days <= 3660:
        raise Invalid("lookback_days must be between 1 and 3660.")
    zone = ZoneInfo(tenant.timezone)
    start = dt.datetime.combine(since, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(0), tzinfo=zone).astimezone(
        dt.UTC
    )
    look = start - dt.timedelta(days=lookback_days)
    at = Visit.finished_at

    def flag(condition: ColumnElement[bool]) -> Any:
        return func.max(case((condition, 1), else_=0))

    per = (
        select(
            Visit.customer_id,
            func.count(Visit.id).label("visits"),
            func.min(at).label("first_at"),
            flag(and_(at >= look, at < start)).label("active"),
            flag(at >= start).label("in_period"),
        )
        .where(Visit.tenant_id == tenant.id, at.is_not(None), at < end)
        .group_by(Visit.customer_id)
        .subquery("per")
    )

    def total(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    new = per.c.first_at >= start
    row = session.execute(
        select(
            total(per.c.active == 1),
            total(and_(per.c.active == 1, per.c.in_period == 0)),
            total(per.c.in_period == 1),
            total(and_(per.c.in_period == 1, per.c.visits >= 2)),
            total(new),
            total(and_(new, per.c.visits >= 2)),
        )
    ).one()
    active, lost, served, repeat, fresh, second = (int(v) for v in row)
    return RetentionRead(
        since=since,
        until=until,
        lookback_days=lookback_days,
        active_at_start=active,
        lost=lost,
        retained=active - lost,
        retention_rate=_percent(active - lost, active),
        served=served,
        repeat_customers=repeat,
        repeat_purchase_rate=_percent(repeat, served),
        new_customers=fresh,
        second_service=second,
        second_service_conversion=_percent(second, fresh),
    )
