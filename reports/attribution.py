"""Conversion per visit report: report sent → booking link opened → booking made.

The chain is recorded in three places, all keyed by the report's cause, ``visit_report``
and the visit id (``reports.sending.SOURCE_TYPE``):

- the ``Message`` that carried the report (one per channel at most, so a report counts
  once, from its first send);
- the ``ShortLink`` behind the report page's Book button (``/b/{report token}`` resolves to
  the customer's link for that report, made on first use), whose clicks are counted;
- each ``Booking`` made from that link or from a "1" reply to the report's message.

"Clicked" means the Book button's link (or any link for the report) was opened. What the
report page itself saw, counted by our server (``reports.ratings.count_view``, no
tracker), is given beside it: opened (when first, how often), the recap started and
watched to its end, the long image opened, the Book button pressed. The definitions
follow the campaign figures (``campaigns.results.results``) so the two agree: a message
counts as sent once it left us (sent, delivered or undelivered); every booking attributed
to the report counts, whatever staff answered, and whenever it was made; conversion is
reports with at least one booking per report sent, in percent. The period selects reports
by when they were first sent, in the company's local dates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from bookings.models import Booking, ShortLink
from huifang.errors import Invalid
from messaging.models import DELIVERED, SENT, UNDELIVERED, Message
from reports.models import Report, ReportViews
from reports.sending import SOURCE_TYPE
from tenancy.models import Tenant
from visits.models import Staff, Visit

DEFAULT_DAYS = 90
MAX_DAYS = 366  # a row per report: a year at a time keeps the answer a reasonable size
WENT = (SENT, DELIVERED, UNDELIVERED)  # left us, as in campaigns.results.results
TABLE_COLUMNS = (
    "report_id",
    "visit_id",
    "customer_id",
    "service_type",
    "staff_id",
    "staff_name",
    "sent_at",
    "clicks",
    "first_clicked_at",
    "bookings",
    "booking_id",
    "booking_status",
    "booked_at",
    "opens",
    "first_opened_at",
    "video_started",
    "video_ended",
    "long_image",
    "book_pressed",
)


@dataclass(frozen=True)
class ReportConversionRow:
    """One report sent in the period, with what came of it. The booking is the first one
    made for the report; ``bookings`` counts them all."""

    report_id: int | None
    visit_id: int
    customer_id: int
    service_type: str
    staff_id: int | None
    staff_name: str | None
    sent_at: dt.datetime
    clicks: int
    first_clicked_at: dt.datetime | None
    bookings: int
    booking_id: int | None
    booking_status: str | None
    booked_at: dt.datetime | None
    opens: int = 0
    first_opened_at: dt.datetime | None = None
    video_started: int = 0
    video_ended: int = 0
    long_image: int = 0
    book_pressed: int = 0


@dataclass(frozen=True)
class ReportConversion:
    """A company's reports over ``[since, until]`` (local dates, both included)."""

    since: dt.date
    until: dt.date
    sent: int
    clicked: int  # reports whose booking link was opened at least once
    clicks: int
    bookings: int  # bookings attributed to these reports
    booked: int  # reports with at least one booking
    conversion: float | None  # booked per sent, %; None when nothing was sent
    reports: list[ReportConversionRow]
    # What the pages saw: reports opened (at least once) and opens in all; reports whose
    # recap was started / watched to the end, whose long image was opened, whose Book
    # button was pressed.
    opened: int = 0
    opens: int = 0
    video_started: int = 0
    video_ended: int = 0
    long_image: int = 0
    book_pressed: int = 0

    def totals(self) -> list[tuple[str, object]]:
        """The period's figures as (metric, value) lines, for CSV."""
        return [
            ("since", self.since.isoformat()),
            ("until", self.until.isoformat()),
            ("sent", self.sent),
            ("clicked", self.clicked),
            ("clicks", self.clicks),
            ("bookings", self.bookings),
            ("booked", self.booked),
            ("conversion_percent", "" if self.conversion is None else self.conversion),
            ("opened", self.opened),
            ("opens", self.opens),
            ("video_started", self.video_started),
            ("video_ended", self.video_ended),
            ("long_image", self.long_image),
            ("book_pressed", self.book_pressed),
        ]

    def table(self, timezone: str) -> list[list[object]]:
        """A header and a line per report, for CSV; times in the company's zone, with offset."""
        zone = ZoneInfo(timezone)

        def local(value: dt.datetime | None) -> str:
            return "" if value is None else value.astimezone(zone).isoformat()

        lines: list[list[object]] = [list(TABLE_COLUMNS)]
        for row in self.reports:
            lines.append(
                [
                    "" if row.report_id is None else row.report_id,
                    row.visit_id,
                    row.customer_id,
                    row.service_type,
                    "" if row.staff_id is None else row.staff_id,
                    row.staff_name or "",
                    local(row.sent_at),
                    row.clicks,
                    local(row.first_clicked_at),
                    row.bookings,
                    "" if row.booking_id is None else row.booking_id,
                    row.booking_status or "",
                    local(row.booked_at),
                    row.opens,
                    local(row.first_opened_at),
                    row.video_started,
                    row.video_ended,
                    row.long_image,
                    row.book_pressed,
                ]
            )
        return lines


def _period(
    tenant: Tenant, since: dt.date | None, until: dt.date | None, now: dt.datetime
) -> tuple[dt.date, dt.date]:
    """The asked period, or the last ``DEFAULT_DAYS`` days up to today in the company's zone."""
    if until is None:
        until = now.astimezone(ZoneInfo(tenant.timezone)).date()
    if since is None:
        since = until - dt.timedelta(days=DEFAULT_DAYS - 1)
    if until < since:
        raise Invalid("until must be on or after since (both are included).")
    if (until - since).days >= MAX_DAYS:
        raise Invalid(f"Keep the period to {MAX_DAYS} days at most; ask for one year at a time.")
    return since, until


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def report_conversion(
    *,
    session: Session,
    tenant: Tenant,
    now: dt.datetime,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> ReportConversion:
    """Reports first sent in the period, each with its clicks and first booking, and totals.

    One statement: the sends grouped per report (a CTE the other parts filter on), joined
    to the visit, its staff and report, the report's links (clicks summed) and its bookings
    (the first by time, and a count).
    """
    since, until = _period(tenant, since, until, now)
    zone = ZoneInfo(tenant.timezone)
    start = dt.datetime.combine(since, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(0), tzinfo=zone).astimezone(
        dt.UTC
    )
    first_sent = func.min(Message.sent_at)
    sends = (
        select(Message.source_id, first_sent.label("sent_at"))
        .where(
            Message.tenant_id == tenant.id,
            Message.source_type == SOURCE_TYPE,
            Message.status.in_(WENT),
            Message.sent_at.is_not(None),
        )
        .group_by(Message.source_id)
        .having(first_sent >= start, first_sent < end)
        .cte("sends")
    )
    in_period = select(sends.c.source_id)
    links = (
        select(
            ShortLink.source_id,
            func.sum(ShortLink.clicks).label("clicks"),
            func.min(ShortLink.first_clicked_at).label("first_clicked_at"),
        )
        .where(
            ShortLink.tenant_id == tenant.id,
            ShortLink.source_type == SOURCE_TYPE,
            ShortLink.source_id.in_(in_period),
        )
        .group_by(ShortLink.source_id)
        .subquery("links")
    )
    ranked = (
        select(
            Booking.source_id,
            Booking.id,
            Booking.status,
            Booking.created_at,
            func.row_number()
            .over(partition_by=Booking.source_id, order_by=(Booking.created_at, Booking.id))
            .label("rank"),
            func.count().over(partition_by=Booking.source_id).label("bookings"),
        )
        .where(
            Booking.tenant_id == tenant.id,
            Booking.source_type == SOURCE_TYPE,
            Booking.source_id.in_(in_period),
        )
        .subquery("ranked")
    )
    first = select(ranked).where(ranked.c.rank == 1).subquery("first_booking")
    query = (
        select(
            Report.id,
            Visit.id,
            Visit.customer_id,
            Visit.service_type,
            Visit.staff_id,
            Staff.name,
            sends.c.sent_at,
            func.coalesce(links.c.clicks, 0),
            links.c.first_clicked_at,
            func.coalesce(first.c.bookings, 0),
            first.c.id,
            first.c.status,
            first.c.created_at,
            func.coalesce(ReportViews.opens, 0),
            ReportViews.first_opened_at,
            func.coalesce(ReportViews.video_started, 0),
            func.coalesce(ReportViews.video_ended, 0),
            func.coalesce(ReportViews.long_image, 0),
            func.coalesce(ReportViews.book_pressed, 0),
        )
        .select_from(sends)
        # Message.source_id is text; comparing as text never fails on a stray value.
        .join(Visit, (cast(Visit.id, String) == sends.c.source_id) & (Visit.tenant_id == tenant.id))
        .outerjoin(Staff, Staff.id == Visit.staff_id)
        .outerjoin(Report, Report.visit_id == Visit.id)
        .outerjoin(ReportViews, ReportViews.report_id == Report.id)
        .outerjoin(links, links.c.source_id == sends.c.source_id)
        .outerjoin(first, first.c.source_id == sends.c.source_id)
        .order_by(sends.c.sent_at, Visit.id)
    )
    rows = [
        ReportConversionRow(
            report_id=report_id,
            visit_id=visit_id,
            customer_id=customer_id,
            service_type=service_type,
            staff_id=staff_id,
            staff_name=staff_name,
            sent_at=sent_at,
            clicks=int(clicks),
            first_clicked_at=first_clicked_at,
            bookings=int(bookings),
            booking_id=booking_id,
            booking_status=booking_status,
            booked_at=booked_at,
            opens=int(opens),
            first_opened_at=first_opened_at,
            video_started=int(video_started),
            video_ended=int(video_ended),
            long_image=int(long_image),
            book_pressed=int(book_pressed),
        )
        for (
            report_id,
            visit_id,
            customer_id,
            service_type,
            staff_id,
            staff_name,
            sent_at,
            clicks,
            first_clicked_at,
            bookings,
            booking_id,
            booking_status,
            booked_at,
            opens,
            first_opened_at,
            video_started,
            video_ended,
            long_image,
            book_pressed,
        ) in session.execute(query)
    ]
    booked = sum(1 for row in rows if row.bookings)
    return ReportConversion(
        since=since,
        until=until,
        sent=len(rows),
        clicked=sum(1 for row in rows if row.clicks),
        clicks=sum(row.clicks for row in rows),
        bookings=sum(row.bookings for row in rows),
        booked=booked,
        conversion=_percent(booked, len(rows)),
        reports=rows,
        opened=sum(1 for row in rows if row.opens),
        opens=sum(row.opens for row in rows),
        video_started=sum(1 for row in rows if row.video_started),
        video_ended=sum(1 for row in rows if row.video_ended),
        long_image=sum(1 for row in rows if row.long_image),
        book_pressed=sum(1 for row in rows if row.book_pressed),
    )
