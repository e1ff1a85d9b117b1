"""今日: the day's counts and lists for a company, in five queries whatever its size.

Booking requests to answer, open complaints (and low ratings, once ratings exist) with
their response clocks, other replies waiting for a person, visits whose photos and clips
are still processing (their reports cannot be built yet), and the campaign messages due
today and tomorrow in the company's time zone. Each list is at most ``LIST`` rows, the
longest-waiting first; its count (and how many are past the response target) comes from
a window function in the same query, so the console can poll this every 20 s.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from bookings.models import REQUESTED, Booking
from campaigns.models import HANDED_OFF, PENDING, Campaign, CampaignOccurrence
from customers.models import Customer
from media.models import PROCESSING, Media
from messaging import threads
from messaging.models import BOOK, OPEN, InboundMessage
from messaging.thread_schemas import ResponseClock
from tenancy.models import Tenant
from today.schemas import (
    TodayBooking,
    TodayCounts,
    TodayRead,
    TodayReply,
    TodayReport,
    TodaySends,
    TodayTicket,
)
from visits import service_types
from visits.models import Visit

LIST = 20


def _day_starts(tenant: Tenant, now: dt.datetime) -> tuple[dt.date, list[dt.datetime]]:
    """Today's local date and the UTC starts of today, tomorrow and the day after."""
    zone = ZoneInfo(tenant.timezone)
    today = now.astimezone(zone).date()
    starts = []
    for offset in range(3):
        day = today + dt.timedelta(days=offset)
        starts.append(dt.datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(dt.UTC))
    return today, starts


def _windowed(query: Any, overdue: Any) -> Any:
    """The query with its total count and overdue count over every matching row."""
    return query.add_columns(
        func.count().over().label("total"), func.sum(overdue).over().label("overdue")
    )


def _bookings(
    session: Session, tenant: Tenant, now: dt.datetime
) -> tuple[list[TodayBooking], int, int]:
    late = now - dt.timedelta(minutes=tenant.reply_target_minutes)
    rows = session.execute(
        _windowed(
            select(
                Booking.id,
                Booking.customer_id,
                Customer.name,
                Booking.service_type,
                Booking.slot_start,
                Booking.channel,
                Booking.created_at,
            )
            .join(Customer, Customer.id == Booking.customer_id)
            .where(Booking.tenant_id == tenant.id, Booking.status == REQUESTED),
            case((Booking.created_at < late, 1), else_=0),
        )
        .order_by(Booking.created_at, Booking.id)
        .limit(LIST)
    ).all()
    items = [
        TodayBooking(
            booking_id=row.id,
            customer_id=row.customer_id,
            customer_name=row.name,
            service_label=service_types.label(row.service_type) if row.service_type else "上门服务",
            slot_start=row.slot_start,
            channel=row.channel,
            clock=threads.clock(
                since=row.created_at,
                responded_at=None,
                target_minutes=tenant.reply_target_minutes,
                now=now,
            ),
        )
        for row in rows
    ]
    return items, rows[0].total if rows else 0, int(rows[0].overdue or 0) if rows else 0


Waiting = tuple[list[tuple[InboundMessage, str | None, ResponseClock]], int, int]


def _waiting(session: Session, tenant: Tenant, now: dt.datetime, *, complaints: bool) -> Waiting:
    """Open replies: complaints, or the rest bar "1" replies (they are bookings)."""
    target = threads.target_for(tenant, complaint=complaints)
    late = now - dt.timedelta(minutes=target)
    query = (
        select(InboundMessage, Customer.name)
        .outerjoin(Customer, Customer.id == InboundMessage.customer_id)
        .where(InboundMessage.tenant_id == tenant.id, InboundMessage.state == OPEN)
    )
    if complaints:
        query = query.where(InboundMessage.complaint.is_(True))
    else:
        query = query.where(InboundMessage.complaint.is_(False), InboundMessage.route != BOOK)
    overdue = case(
        (InboundMessage.first_response_at.is_(None) & (InboundMessage.received_at < late), 1),
        else_=0,
    )
    rows = session.execute(
        _windowed(query, overdue)
        .order_by(InboundMessage.received_at, InboundMessage.id)
        .limit(LIST)
    ).all()
    total = rows[0].total if rows else 0
    late_count = int(rows[0].overdue or 0) if rows else 0
    return (
        [
            (
                row[0],
                row.name,
                threads.clock(
                    since=row[0].received_at,
                    responded_at=row[0].first_response_at,
                    target_minutes=target,
                    now=now,
                ),
            )
            for row in rows
        ],
        total,
        late_count,
    )


def _reports(session: Session, tenant: Tenant) -> tuple[list[TodayReport], int]:
    rows = session.execute(
        select(
            Media.visit_id,
            Customer.name,
            func.count().label("processing"),
            func.min(Media.received_at).label("since"),
            func.count().over().label("total"),
        )
        .join(Visit, Visit.id == Media.visit_id)
        .join(Customer, Customer.id == Visit.customer_id)
        .where(Media.tenant_id == tenant.id, Media.status == PROCESSING)
        .group_by(Media.visit_id, Customer.name)
        .order_by(func.min(Media.received_at), Media.visit_id)
        .limit(LIST)
    ).all()
    return (
        [
            TodayReport(
                visit_id=row.visit_id,
                customer_name=row.name,
                processing=row.processing,
                since=row.since,
            )
            for row in rows
        ],
        rows[0].total if rows else 0,
    )


def _sends(session: Session, tenant: Tenant, starts: list[dt.datetime]) -> list[TodaySends]:
    today, tomorrow, after = starts
    due = CampaignOccurrence.due_at
    # Counted per campaign first, then named: the join is per campaign, not per message.
    counted = (
        select(
            CampaignOccurrence.campaign_id.label("campaign_id"),
            func.sum(case((due < tomorrow, 1), else_=0)).label("today"),
            func.sum(case((due >= tomorrow, 1), else_=0)).label("tomorrow"),
        )
        .where(
            CampaignOccurrence.tenant_id == tenant.id,
            due >= today,
            due < after,
            CampaignOccurrence.status.in_((PENDING, HANDED_OFF)),
        )
        .group_by(CampaignOccurrence.campaign_id)
        .subquery()
    )
    rows = session.execute(
        select(Campaign.id, Campaign.name, counted.c.today, counted.c.tomorrow)
        .join(counted, counted.c.campaign_id == Campaign.id)
        .order_by(Campaign.id)
    ).all()
    return [
        TodaySends(
            campaign_id=row.id,
            campaign_name=row.name,
            today=int(row.today or 0),
            tomorrow=int(row.tomorrow or 0),
        )
        for row in rows
    ]


def today(*, session: Session, tenant: Tenant, now: dt.datetime) -> TodayRead:
    """The company's day: what waits for the office, with counts, in five queries."""
    day, starts = _day_starts(tenant, now)
    bookings, booking_count, late_bookings = _bookings(session, tenant, now)
    complaints, ticket_count, late_tickets = _waiting(session, tenant, now, complaints=True)
    others, reply_count, late_replies = _waiting(session, tenant, now, complaints=False)
    reports, building = _reports(session, tenant)
    sends = _sends(session, tenant, starts)
    return TodayRead(
        at=now,
        timezone=tenant.timezone,
        today=day,
        tomorrow=day + dt.timedelta(days=1),
        complaint_target_minutes=tenant.complaint_target_minutes,
        reply_target_minutes=tenant.reply_target_minutes,
        counts=TodayCounts(
            bookings=booking_count,
            overdue_bookings=late_bookings,
            tickets=ticket_count,
            overdue_tickets=late_tickets,
            replies=reply_count,
            overdue_replies=late_replies,
            reports_building=building,
            sends_today=sum(s.today for s in sends),
            sends_tomorrow=sum(s.tomorrow for s in sends),
        ),
        bookings=bookings,
        tickets=[
            TodayTicket(
                kind="complaint",
                reply_id=r.id,
                customer_id=r.customer_id,
                customer_name=name,
                body=r.body,
                complaint_rule=r.complaint_rule,
                owner=r.owner,
                assignee_id=r.assignee_id,
                clock=clock,
            )
            for r, name, clock in complaints
        ],
        replies=[
            TodayReply(
                reply_id=r.id,
                customer_id=r.customer_id,
                customer_name=name,
                body=r.body,
                route=r.route,
                clock=clock,
            )
            for r, name, clock in others
        ],
        reports=reports,
        sends=sends,
    )
