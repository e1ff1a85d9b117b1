"""Service recovery figures: complaints, how fast they were answered and resolved, rebookings."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from bookings.models import Booking
from huifang.db import as_utc
from messaging.models import OPEN, InboundMessage


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return round(ordered[middle], 1)
    return round((ordered[middle - 1] + ordered[middle]) / 2, 1)


def recovery_figures(
    *, session: Session, tenant_id: int, since: dt.datetime, until: dt.datetime
) -> dict[str, object]:
    """Complaints received in [since, until): response and resolution times, rebookings."""
    complaints = list(
        session.scalars(
            select(InboundMessage).where(
                InboundMessage.tenant_id == tenant_id,
                InboundMessage.complaint.is_(True),
                InboundMessage.received_at >= since,
                InboundMessage.received_at < until,
            )
        )
    )

    def minutes(later: dt.datetime | None, earlier: dt.datetime) -> float | None:
        end, start = as_utc(later), as_utc(earlier)
        return None if end is None or start is None else (end - start).total_seconds() / 60

    to_response = [
        m for c in complaints if (m := minutes(c.first_response_at, c.received_at)) is not None
    ]
    to_resolution = [
        m for c in complaints if (m := minutes(c.resolved_at, c.received_at)) is not None
    ]
    rebooked = 0
    for complaint in complaints:
        if (
            complaint.customer_id is not None
            and session.scalar(
                select(Booking.id)
                .where(
                    Booking.tenant_id == tenant_id,
                    Booking.customer_id == complaint.customer_id,
                    Booking.created_at > complaint.received_at,
                )
                .limit(1)
            )
            is not None
        ):
            rebooked += 1
    return {
        "since": since,
        "until": until,
        "complaints": len(complaints),
        "responded": len(to_response),
        "resolved": len(to_resolution),
        "open": sum(1 for c in complaints if c.state == OPEN),
        "median_minutes_to_first_response": _median(to_response),
        "median_minutes_to_resolution": _median(to_resolution),
        "rebooked": rebooked,
    }
