"""Short links and bookings: from a tap on ``/b/{token}`` or a "1" reply to a visit on the calendar.

A ``ShortLink`` is made for each (customer, cause) a message is sent for — a visit report,
a campaign — and its token is the only thing in the URL. Opening it counts a click; the
page offers free slots from the company's working hours; picking one makes a ``Booking``
that carries the link, the message and the cause with it, so conversion can be counted
per report and per campaign. A "1" reply makes a booking without a time: staff call back.

A link holds one open booking at a time (requested or confirmed, its time ahead): opening
the link again shows it, and the customer moves it to another free slot or cancels it; a
second booking through the link is refused, in the database too (``Booking.open_link_id``).
Clicks count each visitor (client address and user agent, hashed) once an hour.

Free slots: the company's working days and hours in its own time zone, cut into visits of
``slot_minutes``, from the next full hour after now + ``LEAD_TIME`` for ``HORIZON_DAYS``
days; a slot is free while it holds fewer requested or confirmed bookings than the company
has active staff (at least one).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts import events as alert_events
from bookings.models import (
    BOOKING_STATES,
    CANCELLED,
    CONFIRMED,
    DECLINED,
    OPEN_BOOKING_STATES,
    REQUESTED,
    Booking,
    ShortLink,
)
from customers.models import Customer
from huifang.errors import Conflict, Invalid, NotFound
from messaging import sms_templates
from messaging.models import InboundMessage, Message
from messaging.service import schedule
from tenancy.models import Tenant
from visits import service_types
from visits.models import Staff

HORIZON_DAYS = 14
LEAD_TIME = dt.timedelta(hours=12)  # nobody can be sent out sooner than that
MAX_NOTE = 500


class SlotTaken(Conflict):
    """The time picked is full (someone took its last place since the page was shown)."""

    def __init__(self) -> None:
        super().__init__("That time is no longer free; please pick another one.")


class NoOpenBooking(Conflict):
    """There is nothing to change or cancel: never booked, cancelled, declined or past."""


class AlreadyBooked(Conflict):
    """The link holds an open booking already: change or cancel that one instead."""

    def __init__(self) -> None:
        super().__init__(
            "You already have a booking through this link; change its time or "
            "cancel it instead of booking again."
        )


def _capacity(session: Session, tenant_id: int) -> int:
    staff = (
        session.scalar(
            select(func.count())
            .select_from(Staff)
            .where(Staff.tenant_id == tenant_id, Staff.active.is_(True))
        )
        or 0
    )
    return max(1, int(staff))


def _slots(tenant: Tenant, now: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    zone = ZoneInfo(tenant.timezone)
    earliest = now + LEAD_TIME
    local_today = now.astimezone(zone).date()
    length = dt.timedelta(minutes=tenant.slot_minutes)
    slots = []
    for offset in range(HORIZON_DAYS + 1):
        day = local_today + dt.timedelta(days=offset)
        if str(day.isoweekday()) not in tenant.work_days:
            continue
        minute = tenant.work_start_minute
        while minute + tenant.slot_minutes <= tenant.work_end_minute:
            start = dt.datetime(
                day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=zone
            ).astimezone(dt.UTC)
            if start >= earliest:
                slots.append((start, start + length))
            minute += tenant.slot_minutes
    return slots


def free_slots(
    *, session: Session, tenant: Tenant, now: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Bookable visits in the coming two weeks, as aware UTC (start, end) pairs."""
    slots = _slots(tenant, now)
    if not slots:
        return []
    taken: dict[dt.datetime, int] = {}
    for start in session.scalars(
        select(Booking.slot_start).where(
            Booking.tenant_id == tenant.id,
            Booking.status.in_((REQUESTED, CONFIRMED)),
            Booking.slot_start >= slots[0][0],
            Booking.slot_start <= slots[-1][0],
        )
    ):
        if start is not None:
            key = start.astimezone(dt.UTC)
            taken[key] = taken.get(key, 0) + 1
    capacity = _capacity(session, tenant.id)
    return [(start, end) for start, end in slots if taken.get(start, 0) < capacity]


def _is_open(booking: Booking, now: dt.datetime) -> bool:
    return (
        booking.status in OPEN_BOOKING_STATES
        and booking.slot_start is not None
        and booking.slot_start > now
    )


def open_booking(*, session: Session, link: ShortLink, now: dt.datetime) -> Booking | None:
    """The link's booking still to come (requested or confirmed, its time ahead), if any."""
    held = session.scalars(select(Booking).where(Booking.open_link_id == link.id)).first()
    return held if held is not None and _is_open(held, now) else None


def _locked_tenant(session: Session, link: ShortLink) -> Tenant:
    # Serialise bookings of one company (SQLite holds its write lock already), so two
    # customers cannot both take the last place in a slot, nor one link book twice.
    tenant = session.get(Tenant, link.tenant_id, with_for_update=True)
    assert tenant is not None
    return tenant


def _free_slot(
    session: Session, tenant: Tenant, slot_start: dt.datetime, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    wanted = slot_start.astimezone(dt.UTC)
    for slot in free_slots(session=session, tenant=tenant, now=now):
        if slot[0] == wanted:
            return slot
    raise SlotTaken()


def book(
    *,
    session: Session,
    link: ShortLink,
    slot_start: dt.datetime,
    note: str | None,
    now: dt.datetime,
) -> Booking:
    """The customer picked a time on the booking page; 409 when it is no longer free, and
    ``AlreadyBooked`` when the link holds an open booking (the same time again answers it:
    a form sent twice books once)."""
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE:
        raise Invalid(f"Please keep the note under {MAX_NOTE} characters.")
    if note is not None and "\x00" in note:  # no column can hold it; shown on the page
        raise Invalid("备注里有无法保存的字符，请删掉后再提交。")
    tenant = _locked_tenant(session, link)
    held = session.scalars(select(Booking).where(Booking.open_link_id == link.id)).first()
    if held is not None and _is_open(held, now):
        if held.slot_start == slot_start.astimezone(dt.UTC):
            return held
        raise AlreadyBooked()
    if held is not None:  # its time has passed: the link is free for the next visit
        held.open_link_id = None
        session.flush()
    start, end = _free_slot(session, tenant, slot_start, now)
    message = session.get(Message, link.message_id) if link.message_id else None
    booking = Booking(
        tenant_id=tenant.id,
        customer_id=link.customer_id,
        service_type=link.service_type,
        slot_start=start,
        slot_end=end,
        note=note,
        status=REQUESTED,
        channel="page",
        link_id=link.id,
        open_link_id=link.id,
        message_id=message.id if message else None,
        source_type=link.source_type,
        source_id=link.source_id,
    )
    try:
        with session.begin_nested():
            session.add(booking)
    except IntegrityError:  # another transaction booked through the link meanwhile
        if open_booking(session=session, link=link, now=now) is None:
            raise
        raise AlreadyBooked() from None
    alert_events.booking_requested(session=session, booking=booking)
    return booking


def reschedule(
    *, session: Session, link: ShortLink, slot_start: dt.datetime, now: dt.datetime
) -> Booking:
    """Move the link's open booking to another free time; staff confirm the new time."""
    tenant = _locked_tenant(session, link)
    held = open_booking(session=session, link=link, now=now)
    if held is None:
        raise NoOpenBooking(
            "There is no booking to change through this link any more; pick a time to book."
        )
    if held.slot_start == slot_start.astimezone(dt.UTC):
        return held
    held.slot_start, held.slot_end = _free_slot(session, tenant, slot_start, now)
    if held.status == CONFIRMED:
        held.status, held.answered_at = REQUESTED, None
    session.flush()
    return held


def cancel(*, session: Session, link: ShortLink, now: dt.datetime) -> Booking:
    """Call off the link's open booking: its place is free again, and the link can book."""
    _locked_tenant(session, link)
    held = open_booking(session=session, link=link, now=now)
    if held is None:
        raise NoOpenBooking("There is no booking to cancel through this link.")
    held.status, held.open_link_id = CANCELLED, None
    session.flush()
    return held


def book_from_reply(*, session: Session, reply: InboundMessage, now: dt.datetime) -> Booking | None:
    """A "1" / 预约 reply: a booking without a time, tied to the message it answered."""
    if reply.tenant_id is None or reply.customer_id is None:
        return None
    replied_to = session.get(Message, reply.in_reply_to_id) if reply.in_reply_to_id else None
    booking = Booking(
        tenant_id=reply.tenant_id,
        customer_id=reply.customer_id,
        status=REQUESTED,
        channel="reply",
        inbound_id=reply.id,
        note=reply.body[:MAX_NOTE],
        message_id=replied_to.id if replied_to else None,
        source_type=replied_to.source_type if replied_to else None,
        source_id=replied_to.source_id if replied_to else None,
    )
    session.add(booking)
    session.flush()
    alert_events.booking_requested(session=session, booking=booking)
    return booking


def get_booking(*, session: Session, tenant_id: int, booking_id: int) -> Booking:
    booking = session.get(Booking, booking_id)
    if booking is None or booking.tenant_id != tenant_id:
        raise NotFound("There is no such booking.")
    return booking


def list_bookings(
    *, session: Session, tenant_id: int, status: str | None = None, limit: int = 200
) -> list[Booking]:
    query = select(Booking).where(Booking.tenant_id == tenant_id)
    if status is not None:
        if status not in BOOKING_STATES:
            raise Invalid(f"status must be one of {', '.join(BOOKING_STATES)}.")
        query = query.where(Booking.status == status)
    return list(
        session.scalars(query.order_by(Booking.created_at.desc(), Booking.id.desc()).limit(limit))
    )


def when_text(tenant: Tenant, start: dt.datetime) -> str:
    local = start.astimezone(ZoneInfo(tenant.timezone))
    weekday = "一二三四五六日"[local.weekday()]
    return f"{local:%m月%d日}（周{weekday}）{local:%H:%M}"


def answer(
    *, session: Session, tenant: Tenant, booking_id: int, status: str, now: dt.datetime
) -> tuple[Booking, int | None]:
    """Staff confirm or decline a request; the customer is told once. Returns the message id."""
    if status not in (CONFIRMED, DECLINED):
        raise Invalid("Answer a booking with confirmed or declined.")
    booking = get_booking(session=session, tenant_id=tenant.id, booking_id=booking_id)
    if booking.status != REQUESTED:
        if booking.status == status:
            return booking, None
        raise Conflict(f"This booking is already {booking.status}.")
    booking.status, booking.answered_at = status, now
    if status == DECLINED:
        booking.open_link_id = None  # the customer may pick another time through the link
    customer = session.get(Customer, booking.customer_id)
    assert customer is not None
    service = service_types.label(booking.service_type) if booking.service_type else "上门服务"
    if status == CONFIRMED and booking.slot_start is not None:
        body = f"您预约的{service}已确认：{when_text(tenant, booking.slot_start)}，届时上门。"
    elif status == CONFIRMED:
        body = f"您预约的{service}已收到，我们会尽快致电与您确认上门时间。"
    else:
        body = f"抱歉，您预约的{service}时间已满，我们会尽快致电为您另约时间。"
    # One message per booking and time: a booking moved and confirmed again is told again.
    when = f"@{int(booking.slot_start.timestamp())}" if booking.slot_start else ""
    if status == CONFIRMED and booking.slot_start is not None:
        purpose = sms_templates.BOOKING_CONFIRMED
    elif status == CONFIRMED:
        purpose = sms_templates.BOOKING_RECEIVED
    else:
        purpose = sms_templates.BOOKING_DECLINED
    message, new = schedule(
        session=session,
        tenant=tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type=f"booking_{status}",
        source_id=f"{booking.id}{when}",
        body=body,
        due_at=now,
        purpose=purpose,
        variables={
            "service": service,
            "time": when_text(tenant, booking.slot_start) if booking.slot_start else "",
            "reason": "时间已满",
        },
    )
    session.flush()
    return booking, message.id if new else None
