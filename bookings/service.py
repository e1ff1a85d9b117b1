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

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerts import events as alert_events
from bookings import links
from bookings import wording as words
from bookings.models import (
    BOOKING_STATES,
    CANCELLED,
    CONFIRMED,
    DECLINED,
    OPEN_BOOKING_STATES,
    PROPOSED,
    REQUESTED,
    Booking,
    ShortLink,
)
from customers.models import Customer
from customers.service import clean_address
from huifang.db import as_utc
from huifang.errors import Conflict, Invalid, NotFound
from messaging import sms_templates
from messaging.models import InboundMessage, Message
from messaging.service import schedule
from tenancy.models import Tenant
from visits import service_types
from visits.models import Staff, Visit

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


def _active_staff(session: Session, tenant_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Staff.id).where(Staff.tenant_id == tenant_id, Staff.active.is_(True))
        )
    )


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


def _any_overlap(
    times: list[dt.datetime], length: dt.timedelta, start: dt.datetime, end: dt.datetime
) -> bool:
    """Whether a visit starting at one of ``times`` (lasting ``length``) overlaps the slot."""
    return any(at < end and at + length > start for at in times)


def free_slots(
    *, session: Session, tenant: Tenant, now: dt.datetime, except_booking: int | None = None
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Bookable visits in the coming two weeks, as aware UTC (start, end) pairs.

    A slot is free while more active staff members have no visit overlapping it than
    there are unanswered requests (requested or proposed) for it: each request holds one
    place until the office confirms it with a staff member (its visit then counts) or it
    ends. A company with no staff on record takes one visit at a time. Three queries.
    """
    slots = _slots(tenant, now)
    if not slots:
        return []
    length = dt.timedelta(minutes=tenant.slot_minutes)
    first, last = slots[0][0] - length, slots[-1][1]
    staff = _active_staff(session, tenant.id)
    visits: dict[int, list[dt.datetime]] = {staff_id: [] for staff_id in staff}
    if staff:
        for staff_id, at in session.execute(
            select(Visit.staff_id, Visit.scheduled_at).where(
                Visit.tenant_id == tenant.id,
                Visit.staff_id.in_(staff),
                Visit.scheduled_at > first,
                Visit.scheduled_at < last,
            )
        ):
            when = as_utc(at)
            if staff_id is not None and when is not None:
                visits[staff_id].append(when)
    waiting_query = select(Booking.slot_start, Booking.slot_end).where(
        Booking.tenant_id == tenant.id,
        or_(
            Booking.status.in_((REQUESTED, PROPOSED)),
            # Confirmed without a staff member (the older answer route): no visit holds it.
            and_(Booking.status == CONFIRMED, Booking.visit_id.is_(None)),
        ),
        Booking.slot_start > first,
        Booking.slot_start < last,
    )
    if except_booking is not None:
        waiting_query = waiting_query.where(Booking.id != except_booking)
    waiting: list[tuple[dt.datetime, dt.datetime]] = []
    for begin, finish in session.execute(waiting_query):
        at = as_utc(begin)
        if at is not None:
            waiting.append((at, as_utc(finish) or at + length))
    free = []
    for start, end in slots:
        places = (
            sum(1 for times in visits.values() if not _any_overlap(times, length, start, end))
            if staff
            else 1
        )
        held = sum(1 for s, e in waiting if s < end and e > start)
        if places > held:
            free.append((start, end))
    return free


def _is_open(booking: Booking, now: dt.datetime) -> bool:
    """Requested, proposed or confirmed, and its time ahead (a "1" reply's booking has no
    time yet: open until the customer picks one or the office answers it)."""
    start = as_utc(booking.slot_start)
    return booking.status in OPEN_BOOKING_STATES and (start is None or start > now)


def open_booking(*, session: Session, link: ShortLink, now: dt.datetime) -> Booking | None:
    """The link's booking still to come (requested, proposed or confirmed), if any."""
    held = session.scalars(select(Booking).where(Booking.open_link_id == link.id)).first()
    return held if held is not None and _is_open(held, now) else None


def _locked_tenant(session: Session, link: ShortLink) -> Tenant:
    # Serialise bookings of one company (SQLite holds its write lock already), so two
    # customers cannot both take the last place in a slot, nor one link book twice.
    tenant = session.get(Tenant, link.tenant_id, with_for_update=True)
    assert tenant is not None
    return tenant


def _free_slot(
    session: Session,
    tenant: Tenant,
    slot_start: dt.datetime,
    now: dt.datetime,
    except_booking: int | None = None,
) -> tuple[dt.datetime, dt.datetime]:
    wanted = slot_start.astimezone(dt.UTC)
    for slot in free_slots(session=session, tenant=tenant, now=now, except_booking=except_booking):
        if slot[0] == wanted:
            return slot
    raise SlotTaken()


def _address(customer: Customer, given: str | None, *, needed: bool = True) -> str | None:
    """The address the visit goes to: the one given (kept on the customer too), else the
    one the company has; refused when there is neither and it is ``needed``."""
    address = clean_address(given)
    if address is not None:
        customer.address = address
        return address
    if customer.address:
        return customer.address
    if needed:
        raise Invalid("请填写上门地址（小区、楼号、门牌号）。")
    return None


def _drop_visit(session: Session, booking: Booking) -> None:
    """A confirmed booking moved or cancelled: its visit, not started yet, goes (the staff
    member is free again); a started one stays for the office to sort out."""
    if booking.visit_id is None:
        return
    visit = session.get(Visit, booking.visit_id)
    if visit is not None and visit.started_at is None:
        session.delete(visit)
    booking.visit_id = None
    booking.staff_id = None
    booking.reminded_at = None


def book(
    *,
    session: Session,
    link: ShortLink,
    slot_start: dt.datetime,
    note: str | None,
    now: dt.datetime,
    address: str | None = None,
    need_address: bool = False,
) -> Booking:
    """The customer picked a time on the booking page; 409 when it is no longer free, and
    ``AlreadyBooked`` when the link holds an open booking (the same time again answers it:
    a form sent twice books once). A booking made by a "1" reply, still without a time,
    takes the time picked. The address given is kept on the customer too; with
    ``need_address`` (the page) a booking without one, when the company has none, is
    refused with a sentence."""
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE:
        raise Invalid(f"Please keep the note under {MAX_NOTE} characters.")
    if note is not None and "\x00" in note:  # no column can hold it; shown on the page
        raise Invalid("备注里有无法保存的字符，请删掉后再提交。")
    tenant = _locked_tenant(session, link)
    customer = session.get(Customer, link.customer_id)
    assert customer is not None
    held = session.scalars(select(Booking).where(Booking.open_link_id == link.id)).first()
    if held is not None and _is_open(held, now):
        if held.slot_start is None:  # a "1" reply's booking: the customer picks its time
            held.slot_start, held.slot_end = _free_slot(session, tenant, slot_start, now)
            held.address = _address(customer, address, needed=need_address)
            if note is not None:
                held.note = f"{held.note}\n{note}" if held.note else note
            session.flush()
            return held
        if as_utc(held.slot_start) == slot_start.astimezone(dt.UTC):
            return held
        raise AlreadyBooked()
    if held is not None:  # its time has passed: the link is free for the next visit
        held.open_link_id = None
        session.flush()
    where = _address(customer, address, needed=need_address)
    start, end = _free_slot(session, tenant, slot_start, now)
    message = session.get(Message, link.message_id) if link.message_id else None
    booking = Booking(
        tenant_id=tenant.id,
        customer_id=link.customer_id,
        service_type=link.service_type,
        slot_start=start,
        slot_end=end,
        note=note,
        address=where,
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
    *,
    session: Session,
    link: ShortLink,
    slot_start: dt.datetime,
    now: dt.datetime,
    address: str | None = None,
) -> Booking:
    """Move the link's open booking to another free time; staff confirm the new time (a
    confirmed booking's visit is taken off the staff member's day)."""
    tenant = _locked_tenant(session, link)
    held = open_booking(session=session, link=link, now=now)
    if held is None:
        raise NoOpenBooking(
            "There is no booking to change through this link any more; pick a time to book."
        )
    customer = session.get(Customer, held.customer_id)
    assert customer is not None
    if address is not None and address.strip():
        held.address = _address(customer, address, needed=False)
    if as_utc(held.slot_start) == slot_start.astimezone(dt.UTC) and held.status != PROPOSED:
        session.flush()
        return held
    held.slot_start, held.slot_end = _free_slot(session, tenant, slot_start, now, held.id)
    if held.address is None:
        held.address = _address(customer, None, needed=False)
    if held.status in (CONFIRMED, PROPOSED):
        _drop_visit(session, held)
        held.status, held.answered_at, held.staff_id = REQUESTED, None, None
    session.flush()
    return held


def cancel(*, session: Session, link: ShortLink, now: dt.datetime) -> Booking:
    """Call off the link's open booking: its place is free again, and the link can book."""
    _locked_tenant(session, link)
    held = open_booking(session=session, link=link, now=now)
    if held is None:
        raise NoOpenBooking("There is no booking to cancel through this link.")
    _drop_visit(session, held)
    held.status, held.open_link_id = CANCELLED, None
    session.flush()
    return held


def book_from_reply(*, session: Session, reply: InboundMessage, now: dt.datetime) -> str | None:
    """A "1" / 预约 reply: a booking without a time, for the service of the message it
    answered, held on a link of its own where the customer picks the time. Returns the
    link's address for the answer (None: nobody to book for)."""
    if reply.tenant_id is None or reply.customer_id is None:
        return None
    tenant = session.get(Tenant, reply.tenant_id)
    customer = session.get(Customer, reply.customer_id)
    if tenant is None or customer is None:
        return None
    replied_to = session.get(Message, reply.in_reply_to_id) if reply.in_reply_to_id else None
    service = _service_of(session, replied_to)
    link = links.link_for(
        session=session,
        tenant=tenant,
        customer=customer,
        source_type="reply",
        source_id=str(reply.id),
        service_type=service,
        message_id=replied_to.id if replied_to else None,
        now=now,
    )
    booking = Booking(
        tenant_id=reply.tenant_id,
        customer_id=reply.customer_id,
        service_type=service,
        status=REQUESTED,
        channel="reply",
        inbound_id=reply.id,
        note=reply.body[:MAX_NOTE],
        address=customer.address,
        link_id=link.id,
        open_link_id=link.id,
        message_id=replied_to.id if replied_to else None,
        source_type=replied_to.source_type if replied_to else None,
        source_id=replied_to.source_id if replied_to else None,
    )
    session.add(booking)
    session.flush()
    alert_events.booking_requested(session=session, booking=booking)
    return links.url(link)


def _service_of(session: Session, message: Message | None) -> str | None:
    """The service a message was about: the one its booking link offers (a campaign's
    service, a report's visit), else the visit a report was for."""
    if message is None:
        return None
    service = session.scalars(
        select(ShortLink.service_type)
        .where(
            ShortLink.tenant_id == message.tenant_id,
            ShortLink.service_type.is_not(None),
            or_(
                ShortLink.message_id == message.id,
                and_(
                    ShortLink.customer_id == message.customer_id,
                    ShortLink.source_type == message.source_type,
                    ShortLink.source_id == message.source_id,
                ),
            ),
        )
        .order_by(ShortLink.id)
        .limit(1)
    ).first()
    if service is None and message.source_type == "visit_report" and message.source_id.isdigit():
        visit = session.get(Visit, int(message.source_id))
        if visit is not None and visit.tenant_id == message.tenant_id:
            service = visit.service_type
    return service


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
    """Staff confirm or decline a request; the customer is told once, in their language
    (``bookings.wording``). Returns the message id."""
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
        body = words.confirmed(
            tenant, customer, service=booking.service_type, start=booking.slot_start, staff=None
        )
    elif status == CONFIRMED:
        body = words.received(tenant, customer, service=booking.service_type)
    else:
        reason = "fully booked" if words.english(tenant, customer) else "时间已满"
        body = words.declined(tenant, customer, service=booking.service_type, reason=reason)
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
