"""Booking ticks: the day-before reminders of confirmed visits."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bookings import reminders
from bookings.models import Booking
from huifang.db import utcnow
from huifang.worker import each_on_its_own, task


@task(queue="default")
def send_booking_reminders(*, session: Session) -> None:
    """Periodic: reminders due for confirmed visits, one booking per transaction (the
    customer's message goes out with the dispatcher's next tick)."""
    each_on_its_own(
        session,
        "send_booking_reminders",
        reminders.due(session=session, now=utcnow()),
        lambda booking_id: reminders.remind(session=session, booking_id=booking_id, now=utcnow()),
        what="booking_id",
        scope=Booking,
    )
