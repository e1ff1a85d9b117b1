"""The booking page a message links to (``/b/{token}``): plain forms, no JavaScript.

The day picker and the chosen slot are radio buttons styled with sibling selectors
(``#day:checked ~ …``), never ``:has()``, which older Android WebViews and the WeChat
browser lack; without any CSS the page is a plain list of days and times."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from bookings import desk, links
from bookings import service as booking
from bookings.models import CONFIRMED, PROPOSED, ShortLink
from customers.models import Customer
from huifang.db import as_utc, utcnow
from huifang.deps import SessionDep, writes
from huifang.errors import Conflict, Invalid
from huifang.templating import render
from huifang.throttle import PublicLimit, per_link
from messaging.send_now import send_now
from reports import service as reports
from tenancy.models import Tenant
from visits import service_types
from visits.models import Staff

public_router = APIRouter(tags=["console"])


BOOKING_PROBLEMS = {
    booking.SlotTaken: "这个时间刚被约走了，请另选一个。",
    booking.AlreadyBooked: "您已经预约过了；如需换时间，请点“改期”另选一个。",
    booking.NoOpenBooking: "这个预约已取消或已过期，请重新选择时间。",
}
BOOKING_NOTICES = {
    "book": "预约已提交",
    "change": "已改到新的时间",
    "cancel": "预约已取消",
    "accept": "已接受这个时间",
}
WEEKDAYS = "一二三四五六日"


@dataclass(frozen=True)
class Slot:
    key: str  # the radio's id
    value: str  # ISO start, what the form posts
    label: str  # 10:00–12:00
    chosen: str  # 12月08日 周二 10:00–12:00, shown once picked


@dataclass(frozen=True)
class Day:
    key: str
    month_day: str  # 12/08
    weekday: str  # 周二
    slots: list[Slot]


def _days(
    tenant: Tenant, free: list[tuple[dt.datetime, dt.datetime]], skip: dt.datetime | None
) -> list[Day]:
    """Free slots grouped by the company's local day, for the day picker."""
    zone = ZoneInfo(tenant.timezone)
    grouped: dict[dt.date, list[Slot]] = {}
    for start, end in free:
        if skip is not None and start == skip:
            continue
        local, until = start.astimezone(zone), end.astimezone(zone)
        label = f"{local:%H:%M}–{until:%H:%M}"
        grouped.setdefault(local.date(), []).append(
            Slot(
                key=f"s{int(start.timestamp())}",
                value=start.isoformat(),
                label=label,
                chosen=f"{local.month}月{local.day}日 周{WEEKDAYS[local.weekday()]} {label}",
            )
        )
    return [
        Day(
            key=f"d{day:%Y%m%d}",
            month_day=f"{day.month}/{day.day}",
            weekday=f"周{WEEKDAYS[day.weekday()]}",
            slots=slots,
        )
        for day, slots in grouped.items()
    ]


def _booking_page(
    session: Session,
    link: ShortLink,
    *,
    problem: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The link's page: its open booking (to accept, change or cancel), or the free times
    to book (a "1" reply's booking without a time is booked by picking one)."""
    now = utcnow()
    tenant = session.get(Tenant, link.tenant_id)
    customer = session.get(Customer, link.customer_id)
    assert tenant is not None and customer is not None
    held = booking.open_booking(session=session, link=link, now=now)
    timed = held is not None and held.slot_start is not None
    free = booking.free_slots(
        session=session, tenant=tenant, now=now, except_booking=held.id if held else None
    )
    service_name = service_types.label(link.service_type) if link.service_type else "上门服务"
    when = booking.when_text(tenant, held.slot_start) if held and held.slot_start else ""
    staff = session.get(Staff, held.staff_id) if held is not None and held.staff_id else None
    state = "form"
    if held is not None and timed:
        state = {PROPOSED: "proposed", CONFIRMED: "confirmed"}.get(held.status, "booked")
    html = render(
        "bookings",
        "booking.html",
        company=tenant.name,
        service=service_name,
        state=state,
        problem=problem,
        notice=notice,
        days=_days(tenant, free, as_utc(held.slot_start) if held and timed else None),
        when=when,
        staff=staff.name if staff else None,
        address=(held.address if held and held.address else None) or customer.address or "",
        has_address=bool(customer.address),
        asked_by_reply=held is not None and not timed,
    )
    return HTMLResponse(html, status_code=status_code)


def _link_problem(session: Session, token: str) -> HTMLResponse:
    """The friendly page of a link that is none of ours (404) or a report's that expired
    (410), like the report's own (``/r/``, ``/v/``)."""
    report = reports.by_token(session=session, token=token)
    if report is not None and reports.is_expired(report):
        context = reports.expired_context(session=session, report=report)
        html = render(
            "bookings",
            "link_problem.html",
            title="这个预约链接已过期",
            expired=True,
            company=context["company"],
            signature=context["signature"],
        )
        return HTMLResponse(html, status_code=410)
    html = render(
        "bookings",
        "link_problem.html",
        title="未找到这个预约链接",
        expired=False,
        company="",
        signature="",
    )
    return HTMLResponse(html, status_code=404)


def _link(session: Session, token: str) -> ShortLink | None:
    # A short link, or a report page's Book button carrying the report's own token.
    return links.resolve(session=session, token=token) or reports.booking_link(
        session=session, token=token, now=utcnow()
    )


@public_router.get(
    "/b/{token}", response_class=HTMLResponse, include_in_schema=False, dependencies=[PublicLimit]
)
@writes  # counts the click
def booking_page(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    """The booking page a message links to: free slots from the company's working hours,
    or the booking made through it, to change or cancel."""
    link = _link(session, token)
    if link is None:
        return _link_problem(session, token)
    visitor = links.visitor_of(
        address=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
    )
    links.click(session=session, link=link, visitor=visitor, now=utcnow())
    return _booking_page(session, link)


def _slot(raw: object) -> dt.datetime | None:
    try:
        slot = dt.datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    return slot if slot is not None and slot.tzinfo is not None else None


def _submit(
    session: Session,
    link: ShortLink,
    action: str,
    raw_slot: object,
    note: object,
    address: object,
) -> HTMLResponse:
    if action not in BOOKING_NOTICES:
        return _booking_page(session, link, problem="请重新选择。", status_code=422)
    slot = _slot(raw_slot) if action in ("book", "change") else None
    if action in ("book", "change") and slot is None:
        return _booking_page(session, link, problem="请选择一个上门时间。", status_code=422)
    where = address if isinstance(address, str) else None
    now = utcnow()
    try:
        if action == "cancel":
            booking.cancel(session=session, link=link, now=now)
        elif action == "accept":
            answer = desk.accept(session=session, link=link, now=now)
            if answer.message_id is not None:
                send_now(session=session, message_ids=[answer.message_id], now=now)
        elif action == "change":
            assert slot is not None
            booking.reschedule(session=session, link=link, slot_start=slot, now=now, address=where)
        else:
            assert slot is not None
            booking.book(
                session=session,
                link=link,
                slot_start=slot,
                note=note if isinstance(note, str) else None,
                address=where,
                need_address=True,
                now=now,
            )
    except Conflict as exc:
        session.rollback()
        problem = BOOKING_PROBLEMS.get(type(exc), "请重新选择。")
        return _booking_page(session, link, problem=problem, status_code=409)
    except Invalid as exc:
        session.rollback()
        return _booking_page(session, link, problem=exc.detail, status_code=422)
    return _booking_page(session, link, notice=BOOKING_NOTICES[action])


@public_router.post(
    "/b/{token}", response_class=HTMLResponse, include_in_schema=False, dependencies=[PublicLimit]
)
async def booking_submit(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    """The customer books a time, moves it (``action=change``) or cancels it
    (``action=cancel``): plain form posts, no JavaScript needed."""
    link = await run_in_threadpool(_link, session, token)
    if link is None:
        return await run_in_threadpool(_link_problem, session, token)
    await run_in_threadpool(per_link, request, str(link.id))
    form = await request.form()
    action = form.get("action") or "book"
    return await run_in_threadpool(
        _submit,
        session,
        link,
        str(action),
        form.get("slot"),
        form.get("note"),
        form.get("address"),
    )
