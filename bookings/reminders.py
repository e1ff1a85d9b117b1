"""The day before a confirmed visit: a reminder to the customer and to the staff member.

From ``REMIND_AT`` (company time) on the day before the visit, a periodic tick
(``bookings.tasks.send_booking_reminders``) finds confirmed bookings not yet reminded and,
one booking per transaction, schedules the customer's service message in the outbox (the
gate decides when it may go: quiet hours, opt-out) and raises the staff member's alert
(``visit.reminder``, to the company's office channels, naming them and their phone and
@mentioning them there by a mainland mobile number: staff receive no SMS of ours, the outbox
and its gate are for customers). ``reminded_at`` marks
it done, and both are keyed by booking and time, so a second tick or a repeated task
sends nothing twice. A booking confirmed after that hour is reminded at the next tick.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts import events as alert_events
from bookings import wording as words
from bookings.models import CONFIRMED, Booking
from bookings.service import when_text
from customers.models import Customer
from huifang.db import as_utc
from messaging import sms_templates
from messaging.service import schedule
from tenancy.models import Tenant
from visits import service_types
from visits.models import Staff

REMIND_AT = dt.time(10, 0)  # on the day before the visit, company time
# The latest a reminder can be due ahead of its visit: 10:00 the day before a 23:59 visit.
FURTHEST = dt.timedelta(hours=38)


def due_from(tenant: Tenant, start: dt.datetime) -> dt.datetime:
    """When the reminder of a visit starting at ``start`` is due (UTC)."""
    zone = ZoneInfo(tenant.timezone)
    day_before = start.astimezone(zone).date() - dt.timedelta(days=1)
    return dt.datetime.combine(day_before, REMIND_AT, tzinfo=zone).astimezone(dt.UTC)


def due(*, session: Session, now: dt.datetime, limit: int = 500) -> list[int]:
    """Confirmed bookings whose reminder is due and not yet raised (one query)."""
    rows = session.execute(
        select(Booking.id, Booking.slot_start, Tenant)
        .join(Tenant, Tenant.id == Booking.tenant_id)
        .where(
            Booking.status == CONFIRMED,
            Booking.reminded_at.is_(None),
            Booking.slot_start > now,
            Booking.slot_start <= now + FURTHEST,
        )
        .order_by(Booking.slot_start, Booking.id)
        .limit(limit)
    ).all()
    found = []
    for booking_id, start, tenant in rows:
        at = as_utc(start)
        if at is not None and due_from(tenant, at) <= now:
            found.append(booking_id)
    return found


def remind(*, session: Session, booking_id: int, now: dt.datetime) -> int | None:
    """Remind the customer and the staff member of one booking, once. Returns the id of
    the customer's message when one was made now."""
    booking = session.get(Booking, booking_id, with_for_update=True)
    if booking is None or booking.status != CONFIRMED or booking.reminded_at is not None:
        return None
    start = as_utc(booking.slot_start)
    tenant = session.get(Tenant, booking.tenant_id)
    customer = session.get(Customer, booking.customer_id)
    if start is None or start <= now or tenant is None or customer is None:
        return None
    staff = session.get(Staff, booking.staff_id) if booking.staff_id else None
    body = words.reminder(
        tenant,
        customer,
        service=booking.service_type,
        start=start,
        staff=staff.name if staff else None,
        address=booking.address or customer.address,
    )
    message, new = schedule(
        session=session,
        tenant=tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type="booking_reminder",
        source_id=f"{booking.id}@{int(start.timestamp())}",
        body=body,
        due_at=now,
        purpose=sms_templates.BOOKING_REMINDER,
        variables={
            "service": service_types.label(booking.service_type)
            if booking.service_type
            else "上门服务",
            "time": when_text(tenant, start),
        },
    )
    if staff is not None:
        alert_events.visit_reminder(
            session=session, booking=booking, staff=staff, customer=customer, tenant=tenant
        )
    booking.reminded_at = now
    session.flush()
    return message.id if new else None
