"""The office's booking desk: requests to answer, confirmed with a time and a staff member
(a visit is made for them) or declined with a reason; the customer is told either way.

A time is confirmable inside the company's working hours (its days, and start to end in
its own time zone; a visit lasts ``slot_minutes``) and ahead of now. A staff member is free
when they are active and none of their visits overlaps it. Answers of one company are
serialised on its row, so two people at the console cannot send one staff member to two
places at once. The customer's message is an ordinary service message through the gate;
when the gate would not let it through (they opted out) the answer still stands and the
office is told to phone them.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from access import audit
from access.actors import Actor
from bookings import links
from bookings import service as asks
from bookings import wording as words
from bookings.models import CONFIRMED, DECLINED, PROPOSED, REQUESTED, Booking, ShortLink
from bookings.schemas import BookingRead
from compliance import service as compliance
from compliance import wording
from compliance.models import DEFER, SEND
from customers.models import Customer
from huifang.db import as_utc
from huifang.errors import Conflict, Invalid
from huifang.i18n import _
from messaging import sms_templates, threads
from messaging.models import HANDLED, InboundMessage, Message
from messaging.service import schedule
from tenancy.models import Tenant
from visits import service as visits
from visits import service_types
from visits.models import Staff, Visit

from .desk_schemas import AnsweredBooking, DeskAnswer, DeskBooking, Opening, StaffSlot

MAX_REASON = 200
MAX_AHEAD = dt.timedelta(days=366)
MESSAGE_CHARS = 500  # what every provider takes (Tencent's limit, signature included)


def waiting(*, session: Session, tenant_id: int) -> int:
    """How many requests wait for an answer."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Booking)
            .where(Booking.tenant_id == tenant_id, Booking.status == REQUESTED)
        )
        or 0
    )


def queue(
    *, session: Session, tenant: Tenant, now: dt.datetime, limit: int = 100
) -> list[DeskBooking]:
    """Requests waiting for an answer, the longest-waiting first (one query)."""
    rows = session.execute(
        select(Booking, Customer.name, Customer.phone)
        .join(Customer, Customer.id == Booking.customer_id)
        .where(Booking.tenant_id == tenant.id, Booking.status == REQUESTED)
        .order_by(Booking.created_at, Booking.id)
        .limit(limit)
    ).all()
    return [
        DeskBooking(
            booking=BookingRead.model_validate(row),
            customer_name=name,
            phone=phone,
            service_label=_service(row.service_type),
            clock=threads.clock(
                since=row.created_at,
                responded_at=None,
                target_minutes=tenant.reply_target_minutes,
                now=now,
            ),
        )
        for row, name, phone in rows
    ]


def _told_key(booking: Booking) -> tuple[str, str]:
    """The (source_type, source_id) of the message that told the customer the answer."""
    if booking.status in (CONFIRMED, PROPOSED):
        start = as_utc(booking.slot_start)
        return f"booking_{booking.status}", f"{booking.id}@{int(start.timestamp()) if start else 0}"
    return "booking_declined", str(booking.id)


def answered(*, session: Session, tenant: Tenant, limit: int = 10) -> list[AnsweredBooking]:
    """The latest answered bookings with their visit or reason, and whether the customer
    was told (two queries)."""
    rows = session.execute(
        select(Booking, Customer.name, Staff.name)
        .join(Customer, Customer.id == Booking.customer_id)
        .outerjoin(Staff, Staff.id == Booking.staff_id)
        .where(
            Booking.tenant_id == tenant.id,
            Booking.status.in_((CONFIRMED, PROPOSED, DECLINED)),
            Booking.answered_at.is_not(None),
        )
        .order_by(Booking.answered_at.desc(), Booking.id.desc())
        .limit(limit)
    ).all()
    keys = {row[0].id: _told_key(row[0]) for row in rows}
    told: dict[tuple[str, str], Message] = {}
    if keys:
        for message in session.scalars(
            select(Message).where(
                Message.tenant_id == tenant.id,
                Message.source_type.in_(
                    ("booking_confirmed", "booking_proposed", "booking_declined")
                ),
                Message.source_id.in_([key[1] for key in keys.values()]),
            )
        ):
            told[(message.source_type, message.source_id)] = message
    found = []
    for booking, customer_name, staff_name in rows:
        sent = told.get(keys[booking.id])
        problem = threads.problem(sent, tenant.timezone) if sent is not None else None
        if sent is None:
            notice = _("没有给客户发短信通知，请电话告知客户。")
        else:
            notice = problem or _("短信通知：{status}").format(
                status=threads.status_label(sent.status)
            )
        answered_at = as_utc(booking.answered_at)
        assert answered_at is not None
        found.append(
            AnsweredBooking(
                booking_id=booking.id,
                customer_id=booking.customer_id,
                customer_name=customer_name,
                status=booking.status,
                service_label=_service(booking.service_type),
                slot_start=as_utc(booking.slot_start),
                slot_end=as_utc(booking.slot_end),
                staff_id=booking.staff_id,
                staff_name=staff_name,
                visit_id=booking.visit_id,
                decline_reason=booking.decline_reason,
                answered_at=answered_at,
                message_id=sent.id if sent else None,
                message_status=sent.status if sent else None,
                customer_told=sent is not None and problem is None,
                notice=notice,
            )
        )
    return found


def _service(code: str | None) -> str:
    return service_types.label(code) if code else "上门服务"  # the customer reads it


def _window(
    tenant: Tenant, start: dt.datetime, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """The visit's (start, end) in UTC, refused unless it lies in working hours ahead."""
    if start.tzinfo is None:
        raise Invalid(_("上门时间需要带时区，例如 2026-12-08T10:00:00+08:00。"))
    begin = start.astimezone(dt.UTC)
    end = begin + dt.timedelta(minutes=tenant.slot_minutes)
    if begin <= now:
        raise Invalid(_("这个时间已经过去了，请选一个之后的时间。"))
    if begin > now + MAX_AHEAD:
        raise Invalid(_("只能安排一年以内的上门时间。"))
    zone = ZoneInfo(tenant.timezone)
    local, local_end = begin.astimezone(zone), end.astimezone(zone)
    first = local.hour * 60 + local.minute
    last = first + tenant.slot_minutes
    hours = (
        f"{tenant.work_start_minute // 60:02d}:{tenant.work_start_minute % 60:02d}–"
        f"{tenant.work_end_minute // 60:02d}:{tenant.work_end_minute % 60:02d}"
    )
    if str(local.isoweekday()) not in tenant.work_days:
        raise Invalid(
            _("{month}月{day}日是周{weekday}，不在公司的工作日内，请换一天。").format(
                month=local.month, day=local.day, weekday="一二三四五六日"[local.weekday()]
            )
        )
    if (
        local_end.date() != local.date()
        or first < tenant.work_start_minute
        or last > tenant.work_end_minute
    ):
        raise Invalid(
            _("上门时间要在工作时间 {hours} 之内（每次上门 {minutes} 分钟），请换个时间。").format(
                hours=hours, minutes=tenant.slot_minutes
            )
        )
    return begin, end


def _busy(
    session: Session,
    tenant: Tenant,
    staff_ids: list[int],
    start: dt.datetime,
    end: dt.datetime,
    except_visit: int | None,
) -> dict[int, dt.datetime]:
    """Staff among ``staff_ids`` with a visit overlapping [start, end): their visit's start."""
    length = dt.timedelta(minutes=tenant.slot_minutes)
    query = select(Visit.staff_id, func.min(Visit.scheduled_at)).where(
        Visit.tenant_id == tenant.id,
        Visit.staff_id.in_(staff_ids),
        Visit.scheduled_at > start - length,
        Visit.scheduled_at < end,
    )
    if except_visit is not None:
        query = query.where(Visit.id != except_visit)
    busy: dict[int, dt.datetime] = {}
    for staff_id, at in session.execute(query.group_by(Visit.staff_id)):
        when = as_utc(at)
        if staff_id is not None and when is not None:
            busy[staff_id] = when
    return busy


def _busy_text(tenant: Tenant, at: dt.datetime) -> str:
    local = at.astimezone(ZoneInfo(tenant.timezone))
    until = local + dt.timedelta(minutes=tenant.slot_minutes)
    return _("{month}月{day}日 {start}–{end} 已有上门").format(
        month=local.month, day=local.day, start=f"{local:%H:%M}", end=f"{until:%H:%M}"
    )


def staff_for(
    *,
    session: Session,
    tenant: Tenant,
    booking_id: int,
    now: dt.datetime,
    slot_start: dt.datetime | None = None,
) -> list[StaffSlot]:
    """Every active staff member, free or not for the booking at ``slot_start`` (by default
    the time the customer asked for), in three queries."""
    booking = asks.get_booking(session=session, tenant_id=tenant.id, booking_id=booking_id)
    wanted = slot_start or booking.slot_start
    if wanted is None:
        raise Invalid(_("客户没有选时间，请先定一个上门时间再看谁有空。"))
    start, end = _window(tenant, as_utc(wanted) or wanted, now)
    staff = list(
        session.scalars(
            select(Staff)
            .where(Staff.tenant_id == tenant.id, Staff.active.is_(True))
            .order_by(Staff.name, Staff.id)
        )
    )
    busy = _busy(session, tenant, [s.id for s in staff], start, end, booking.visit_id)
    return [
        StaffSlot(
            staff_id=s.id,
            name=s.name,
            free=s.id not in busy,
            busy=_busy_text(tenant, busy[s.id]) if s.id in busy else None,
        )
        for s in staff
    ]


def _working_slots(
    tenant: Tenant, now: dt.datetime, days: int
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The company's visit slots from now for ``days`` local days, as UTC (start, end)."""
    zone = ZoneInfo(tenant.timezone)
    first_day = now.astimezone(zone).date()
    length = dt.timedelta(minutes=tenant.slot_minutes)
    slots = []
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        if str(day.isoweekday()) not in tenant.work_days:
            continue
        minute = tenant.work_start_minute
        while minute + tenant.slot_minutes <= tenant.work_end_minute:
            start = dt.datetime(
                day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=zone
            ).astimezone(dt.UTC)
            if start > now:
                slots.append((start, start + length))
            minute += tenant.slot_minutes
    return slots


def openings(*, session: Session, tenant: Tenant, now: dt.datetime, days: int = 7) -> list[Opening]:
    """The working-hour slots of today and the next ``days - 1`` days with the staff free in
    each (two queries), for picking a time when confirming."""
    if not 1 <= days <= 31:
        raise Invalid(_("一次最多查看31天的空档。"))
    slots = _working_slots(tenant, now, days)
    staff = list(
        session.scalars(
            select(Staff)
            .where(Staff.tenant_id == tenant.id, Staff.active.is_(True))
            .order_by(Staff.name, Staff.id)
        )
    )
    if not slots or not staff:
        return [Opening(start=start, end=end, free=[]) for start, end in slots]
    length = dt.timedelta(minutes=tenant.slot_minutes)
    taken: dict[int, list[dt.datetime]] = {}
    for staff_id, at in session.execute(
        select(Visit.staff_id, Visit.scheduled_at).where(
            Visit.tenant_id == tenant.id,
            Visit.staff_id.in_([s.id for s in staff]),
            Visit.scheduled_at > slots[0][0] - length,
            Visit.scheduled_at < slots[-1][1],
        )
    ):
        when = as_utc(at)
        if staff_id is not None and when is not None:
            taken.setdefault(staff_id, []).append(when)
    return [
        Opening(
            start=start,
            end=end,
            free=[
                StaffSlot(staff_id=s.id, name=s.name, free=True)
                for s in staff
                if not any(start - length < at < end for at in taken.get(s.id, ()))
            ],
        )
        for start, end in slots
    ]


def _lock(session: Session, tenant: Tenant) -> None:
    # One answer at a time per company (SQLite's write lock does this already).
    session.execute(select(Tenant.id).where(Tenant.id == tenant.id).with_for_update())


def _tell(
    session: Session,
    tenant: Tenant,
    customer: Customer,
    body: str,
    source_type: str,
    source_id: str,
    now: dt.datetime,
    purpose: str,
    variables: dict[str, str],
) -> tuple[int | None, bool, str]:
    """Schedule the customer's message; (its id when new, whether it can go, the notice)."""
    verdict = compliance.preview(
        session=session,
        tenant=tenant,
        customer=customer,
        category="service",
        body=body,
        max_chars=MESSAGE_CHARS,
        now=now,
    )
    if verdict.decision not in (SEND, DEFER):
        return (
            None,
            False,
            (wording.reason_text(verdict.reason) + _("客户不会收到短信通知，请电话告知客户。")),
        )
    message, new = schedule(
        session=session,
        tenant=tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type=source_type,
        source_id=source_id,
        body=body,
        due_at=now,
        purpose=purpose,
        variables=variables,
    )
    notice = (
        _("已通知客户。")
        if verdict.decision == SEND
        else wording.reason_text(
            verdict.reason, not_before=verdict.not_before, timezone=customer.timezone
        )
    )
    return (message.id if new else None), True, notice


def _reply_answered(session: Session, booking: Booking, now: dt.datetime) -> None:
    """The "1" reply that asked for this booking has its answer."""
    if booking.inbound_id is None:
        return
    reply = session.get(InboundMessage, booking.inbound_id)
    if reply is not None:
        reply.first_response_at = reply.first_response_at or now
        if not reply.complaint:
            reply.state = HANDLED


def _free_staff(
    session: Session, tenant: Tenant, staff_id: int, start: dt.datetime, end: dt.datetime
) -> Staff:
    """The staff member, refused when they left or have a visit overlapping the time."""
    staff = visits.get_staff(session=session, tenant_id=tenant.id, staff_id=staff_id)
    if not staff.active:
        raise Invalid(_("{name}已不在岗，请选择其他服务人员。").format(name=staff.name))
    busy = _busy(session, tenant, [staff.id], start, end, None)
    if staff.id in busy:
        raise Conflict(
            _("{name}{busy}，请换一位服务人员或换个时间。").format(
                name=staff.name, busy=_busy_text(tenant, busy[staff.id])
            )
        )
    return staff


def _make_visit(
    session: Session,
    tenant: Tenant,
    booking: Booking,
    staff: Staff,
    start: dt.datetime,
    end: dt.datetime,
    service_type: str | None,
    now: dt.datetime,
    actor: Actor | None,
) -> DeskAnswer:
    """The booking confirmed for ``staff`` at ``start``: their visit, and the customer told."""
    service = threads.typed_text(service_type or booking.service_type or "", what=_("服务类型"))
    if not service:
        raise Invalid(_("这个预约没有写明服务项目，请选择服务类型。"))
    visit = visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=booking.customer_id,
        service_type=service,
        staff_id=staff.id,
        scheduled_at=start,
        notes=_("上门地址：{address}").format(address=booking.address) if booking.address else None,
    )
    booking.status, booking.answered_at = CONFIRMED, now
    booking.slot_start, booking.slot_end = start, end
    booking.staff_id, booking.visit_id = staff.id, visit.id
    booking.service_type = booking.service_type or visit.service_type
    booking.reminded_at = None  # the day-before reminder is for this time
    _reply_answered(session, booking, now)
    customer = session.get(Customer, booking.customer_id)
    assert customer is not None
    body = words.confirmed(
        tenant, customer, service=booking.service_type, start=start, staff=staff.name
    )
    # Keyed like bookings.service.answer's: one message per booking and time.
    message_id, told, notice = _tell(
        session,
        tenant,
        customer,
        body,
        "booking_confirmed",
        f"{booking.id}@{int(start.timestamp())}",
        now,
        sms_templates.BOOKING_CONFIRMED,
        {
            "service": _service(booking.service_type),
            "time": asks.when_text(tenant, start),
            "staff_name": staff.name,
        },
    )
    audit.record(
        session,
        actor,
        "booking.confirmed",
        f"booking:{booking.id}",
        {"slot_start": start.isoformat(), "staff_id": staff.id, "visit_id": visit.id},
        tenant_id=tenant.id,
    )
    session.flush()
    return DeskAnswer(
        booking=BookingRead.model_validate(booking),
        message_id=message_id,
        customer_told=told,
        notice=notice,
    )


def confirm(
    *,
    session: Session,
    tenant: Tenant,
    booking_id: int,
    slot_start: dt.datetime,
    staff_id: int,
    now: dt.datetime,
    service_type: str | None = None,
    actor: Actor | None = None,
) -> DeskAnswer:
    """Confirm a request with a time and a staff member: a visit is made for them, and the
    customer is told. The same confirmation again changes nothing."""
    _lock(session, tenant)
    booking = asks.get_booking(session=session, tenant_id=tenant.id, booking_id=booking_id)
    start, end = _window(tenant, slot_start, now)
    if (
        booking.status == CONFIRMED
        and booking.staff_id == staff_id
        and (as_utc(booking.slot_start) == start)
    ):
        return DeskAnswer(
            booking=BookingRead.model_validate(booking),
            message_id=None,
            customer_told=True,
            notice=_("这个预约已经按这个时间确认过了。"),
        )
    # A proposal the customer has not answered may still be settled by phone.
    if booking.status not in (REQUESTED, PROPOSED):
        raise Conflict(
            {CONFIRMED: _("这个预约已经确认过了。"), DECLINED: _("这个预约已经婉拒了。")}.get(
                booking.status, _("客户已取消这个预约。")
            )
        )
    staff = _free_staff(session, tenant, staff_id, start, end)
    return _make_visit(session, tenant, booking, staff, start, end, service_type, now, actor)


def propose(
    *,
    session: Session,
    tenant: Tenant,
    booking_id: int,
    slot_start: dt.datetime,
    staff_id: int,
    now: dt.datetime,
    actor: Actor | None = None,
) -> DeskAnswer:
    """Offer the customer another time, with who would go: they are told with their booking
    link, where they accept it (it is confirmed, the visit made), pick another or cancel."""
    _lock(session, tenant)
    booking = asks.get_booking(session=session, tenant_id=tenant.id, booking_id=booking_id)
    start, end = _window(tenant, slot_start, now)
    if (
        booking.status == PROPOSED
        and booking.staff_id == staff_id
        and as_utc(booking.slot_start) == start
    ):
        return DeskAnswer(
            booking=BookingRead.model_validate(booking),
            message_id=None,
            customer_told=True,
            notice=_("已经向客户建议过这个时间了。"),
        )
    if booking.status not in (REQUESTED, PROPOSED):
        raise Conflict(
            {CONFIRMED: _("这个预约已经确认过了。"), DECLINED: _("这个预约已经婉拒了。")}.get(
                booking.status, _("客户已取消这个预约。")
            )
        )
    staff = _free_staff(session, tenant, staff_id, start, end)
    customer = session.get(Customer, booking.customer_id)
    assert customer is not None
    link = _link_of(session, tenant, customer, booking, now)
    booking.status, booking.answered_at = PROPOSED, now
    booking.slot_start, booking.slot_end = start, end
    booking.staff_id = staff.id
    _reply_answered(session, booking, now)
    body = words.proposed(
        tenant,
        customer,
        service=booking.service_type,
        start=start,
        staff=staff.name,
        url=links.url(link),
    )
    message_id, told, notice = _tell(
        session,
        tenant,
        customer,
        body,
        "booking_proposed",
        f"{booking.id}@{int(start.timestamp())}",
        now,
        sms_templates.BOOKING_PROPOSED,
        {
            "service": _service(booking.service_type),
            "time": asks.when_text(tenant, start),
            "booking_token": link.token,
        },
    )
    audit.record(
        session,
        actor,
        "booking.proposed",
        f"booking:{booking.id}",
        {"slot_start": start.isoformat(), "staff_id": staff.id},
        tenant_id=tenant.id,
    )
    session.flush()
    return DeskAnswer(
        booking=BookingRead.model_validate(booking),
        message_id=message_id,
        customer_told=told,
        notice=notice,
    )


def _link_of(
    session: Session, tenant: Tenant, customer: Customer, booking: Booking, now: dt.datetime
) -> ShortLink:
    """The link the booking is held on; one of its own for a booking that has none."""
    if booking.open_link_id is not None:
        held = session.get(ShortLink, booking.open_link_id)
        if held is not None:
            return held
    link = links.link_for(
        session=session,
        tenant=tenant,
        customer=customer,
        source_type="booking",
        source_id=str(booking.id),
        service_type=booking.service_type,
        now=now,
    )
    taken = session.scalars(select(Booking).where(Booking.open_link_id == link.id)).first()
    if taken is None or taken.id == booking.id:
        booking.open_link_id = link.id
    return link


def accept(*, session: Session, link: ShortLink, now: dt.datetime) -> DeskAnswer:
    """The customer accepts the time the office proposed: the booking is confirmed for the
    staff member named, their visit made, and the customer told (the booking page)."""
    tenant = session.get(Tenant, link.tenant_id)
    assert tenant is not None
    _lock(session, tenant)
    booking = asks.open_booking(session=session, link=link, now=now)
    if booking is None or booking.status != PROPOSED:
        raise asks.NoOpenBooking("There is no proposed time to accept through this link.")
    assert booking.slot_start is not None and booking.staff_id is not None
    start = as_utc(booking.slot_start)
    assert start is not None
    end = start + dt.timedelta(minutes=tenant.slot_minutes)
    try:
        staff = _free_staff(session, tenant, booking.staff_id, start, end)
    except (Conflict, Invalid):
        raise asks.SlotTaken() from None
    return _make_visit(session, tenant, booking, staff, start, end, None, now, None)


def decline(
    *,
    session: Session,
    tenant: Tenant,
    booking_id: int,
    reason: str,
    now: dt.datetime,
    actor: Actor | None = None,
) -> DeskAnswer:
    """Decline a request with a reason the customer reads; their link can book again."""
    text = " ".join(threads.typed_text(reason, what=_("婉拒原因")).split())
    if not text:
        raise Invalid(_("请写明婉拒的原因，客户会收到这句话。"))
    if len(text) > MAX_REASON:
        raise Invalid(_("原因请控制在{limit}字以内。").format(limit=MAX_REASON))
    if "【" in text or "】" in text:
        raise Invalid(_("原因里不能用【】（短信里只有公司签名可以用），请换成「」或去掉。"))
    _lock(session, tenant)
    booking = asks.get_booking(session=session, tenant_id=tenant.id, booking_id=booking_id)
    if booking.status == DECLINED and booking.decline_reason == text:
        return DeskAnswer(
            booking=BookingRead.model_validate(booking),
            message_id=None,
            customer_told=True,
            notice=_("这个预约已经婉拒过了。"),
        )
    if booking.status not in (REQUESTED, PROPOSED):
        raise Conflict(
            {
                CONFIRMED: _("这个预约已经确认了；如需取消，请先联系客户。"),
                DECLINED: _("这个预约已经婉拒了。"),
            }.get(booking.status, _("客户已取消这个预约。"))
        )
    booking.status, booking.answered_at = DECLINED, now
    booking.decline_reason = text
    booking.staff_id = None  # a proposal declined after all names nobody
    booking.open_link_id = None  # the customer may pick another time through the link
    _reply_answered(session, booking, now)
    customer = session.get(Customer, booking.customer_id)
    assert customer is not None
    body = words.declined(tenant, customer, service=booking.service_type, reason=text)
    message_id, told, notice = _tell(
        session,
        tenant,
        customer,
        body,
        "booking_declined",
        str(booking.id),
        now,
        sms_templates.BOOKING_DECLINED,
        {"service": _service(booking.service_type), "reason": text},
    )
    audit.record(
        session,
        actor,
        "booking.declined",
        f"booking:{booking.id}",
        {"reason": text},
        tenant_id=tenant.id,
    )
    session.flush()
    return DeskAnswer(
        booking=BookingRead.model_validate(booking),
        message_id=message_id,
        customer_told=told,
        notice=notice,
    )
