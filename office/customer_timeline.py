"""One customer's history in one list: visits, reports, messages, replies and bookings,
newest first, a bounded page at a time.

Each source is read newest first with the page's limit (each from the customer's index:
visits and messages ``(tenant_id, customer_id)``, replies, bookings and reports through
their customer or visit), the rows are merged in Python and cut to the limit: a page costs
five small queries however long the history. The page after is asked for with ``before``,
the ``cursor`` of the last entry (its time, kind and id, so entries of the same instant are
neither lost nor repeated).

When each entry happened: a visit when it finished (else when it is scheduled, else when it
was entered); a report when it was built; a message when it was sent (else when it was
made); a reply when it arrived; a booking when it was asked for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from bookings.models import Booking
from customers.service import get_customer
from huifang.errors import Invalid
from messaging.models import InboundMessage, Message
from reports.models import Report
from visits.models import Staff, Visit

Kind = Literal["visit", "report", "booking", "message", "reply"]
# Ties at one instant are ordered by kind, then id, both descending.
RANK: dict[str, int] = {"visit": 0, "report": 1, "booking": 2, "message": 3, "reply": 4}
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass(frozen=True)
class Entry:
    kind: str
    id: int
    at: dt.datetime
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def cursor(self) -> str:
        return f"{self.at.astimezone(dt.UTC).isoformat()}~{self.kind}~{self.id}"

    def key(self) -> tuple[dt.datetime, int, int]:
        return (self.at, RANK[self.kind], self.id)


@dataclass(frozen=True)
class Cursor:
    at: dt.datetime
    rank: int
    id: int


def parse_cursor(text: str) -> Cursor:
    """``before`` as sent back by a page: ``<ISO time>~<kind>~<id>``."""
    try:
        at_text, kind, id_text = text.split("~")
        at = dt.datetime.fromisoformat(at_text)
        ident = int(id_text)
        if at.tzinfo is None or kind not in RANK or not 0 < ident < 2**53:
            raise ValueError(text)
    except ValueError:
        raise Invalid(
            "before must be the cursor of an entry of the previous page, as given (time~kind~id)."
        ) from None
    return Cursor(at.astimezone(dt.UTC), RANK[kind], ident)


def _older(at: Any, ident: Any, kind: str, before: Cursor | None) -> list[ColumnElement[bool]]:
    """Rows of one source that come after ``before`` in the newest-first order."""
    if before is None:
        return []
    rank = RANK[kind]
    if rank < before.rank:
        return [at <= before.at]
    if rank > before.rank:
        return [at < before.at]
    return [or_(at < before.at, and_(at == before.at, ident < before.id))]


def timeline(
    *,
    session: Session,
    tenant_id: int,
    customer_id: int,
    limit: int = DEFAULT_LIMIT,
    before: str | None = None,
) -> tuple[list[Entry], str | None]:
    """A page of the customer's history, newest first, and the cursor of the next page
    (None when this one reaches the beginning)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}.")
    get_customer(session=session, tenant_id=tenant_id, customer_id=customer_id)
    cursor = parse_cursor(before) if before else None
    take = limit + 1
    entries: list[Entry] = []

    visit_at = func.coalesce(Visit.finished_at, Visit.scheduled_at, Visit.created_at)
    for visit, staff_name, at in session.execute(
        select(Visit, Staff.name, visit_at)
        .outerjoin(Staff, Staff.id == Visit.staff_id)
        .where(
            Visit.tenant_id == tenant_id,
            Visit.customer_id == customer_id,
            *_older(visit_at, Visit.id, "visit", cursor),
        )
        .order_by(visit_at.desc(), Visit.id.desc())
        .limit(take)
    ):
        entries.append(
            Entry(
                "visit",
                visit.id,
                at,
                {
                    "service_type": visit.service_type,
                    "service_label": visit.service_label,
                    "staff_id": visit.staff_id,
                    "staff_name": staff_name,
                    "areas": list(visit.areas),
                    "scheduled_at": visit.scheduled_at,
                    "finished_at": visit.finished_at,
                    "amount_cents": visit.amount_cents,
                },
            )
        )

    for report, visit_id in session.execute(
        select(Report, Visit.id)
        .join(Visit, Visit.id == Report.visit_id)
        .where(
            Visit.tenant_id == tenant_id,
            Visit.customer_id == customer_id,
            Report.tenant_id == tenant_id,
            *_older(Report.built_at, Report.id, "report", cursor),
        )
        .order_by(Report.built_at.desc(), Report.id.desc())
        .limit(take)
    ):
        entries.append(
            Entry(
                "report",
                report.id,
                report.built_at,
                {
                    "visit_id": visit_id,
                    "page": f"/r/{report.token}",
                    "expires_at": report.expires_at,
                    "has_recap": report.recap_path is not None,
                },
            )
        )

    for booking in session.scalars(
        select(Booking)
        .where(
            Booking.tenant_id == tenant_id,
            Booking.customer_id == customer_id,
            *_older(Booking.created_at, Booking.id, "booking", cursor),
        )
        .order_by(Booking.created_at.desc(), Booking.id.desc())
        .limit(take)
    ):
        entries.append(
            Entry(
                "booking",
                booking.id,
                booking.created_at,
                {
                    "status": booking.status,
                    "service_type": booking.service_type,
                    "slot_start": booking.slot_start,
                    "slot_end": booking.slot_end,
                    "channel": booking.channel,
                    "note": booking.note,
                    "answered_at": booking.answered_at,
                },
            )
        )

    message_at = func.coalesce(Message.sent_at, Message.created_at)
    for message, at in session.execute(
        select(Message, message_at)
        .where(
            Message.tenant_id == tenant_id,
            Message.customer_id == customer_id,
            *_older(message_at, Message.id, "message", cursor),
        )
        .order_by(message_at.desc(), Message.id.desc())
        .limit(take)
    ):
        entries.append(
            Entry(
                "message",
                message.id,
                at,
                {
                    "channel": message.channel,
                    "category": message.category,
                    "source_type": message.source_type,
                    "source_id": message.source_id,
                    "text": message.text or message.body,
                    "status": message.status,
                    "status_reason": message.status_reason,
                    "due_at": message.due_at,
                    "sent_at": message.sent_at,
                },
            )
        )

    for reply in session.scalars(
        select(InboundMessage)
        .where(
            InboundMessage.tenant_id == tenant_id,
            InboundMessage.customer_id == customer_id,
            *_older(InboundMessage.received_at, InboundMessage.id, "reply", cursor),
        )
        .order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
        .limit(take)
    ):
        entries.append(
            Entry(
                "reply",
                reply.id,
                reply.received_at,
                {
                    "text": reply.body,
                    "route": reply.route,
                    "complaint": reply.complaint,
                    "state": reply.state,
                    "in_reply_to_id": reply.in_reply_to_id,
                },
            )
        )

    entries.sort(key=Entry.key, reverse=True)
    page = entries[:limit]
    more = len(entries) > limit
    return page, (page[-1].cursor if more and page else None)
