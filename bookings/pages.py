"""The booking page a message links to (``/b/{token}``): plain forms, no JavaScript."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from bookings import links
from bookings import service as booking
from bookings.models import CONFIRMED, ShortLink
from huifang.db import utcnow
from huifang.deps import SessionDep, writes
from huifang.errors import Conflict, Invalid, NotFound
from huifang.templating import render
from huifang.throttle import PublicLimit, per_link
from reports import service as reports
from tenancy.models import Tenant
from visits import service_types

public_router = APIRouter(tags=["console"])


BOOKING_PROBLEMS = {
    booking.SlotTaken: "这个时间刚被约走了，请另选一个。",
    booking.AlreadyBooked: "您已经预约过了；如需换时间，请点“改期”另选一个。",
    booking.NoOpenBooking: "这个预约已取消或已过期，请重新选择时间。",
}
BOOKING_NOTICES = {"book": "预约已提交", "change": "已改到新的时间", "cancel": "预约已取消"}


def _booking_page(
    session: Session,
    link: ShortLink,
    *,
    problem: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The link's page: its open booking (to change or cancel), or the free times to book."""
    now = utcnow()
    tenant = session.get(Tenant, link.tenant_id)
    assert tenant is not None
    zone = ZoneInfo(tenant.timezone)
    held = booking.open_booking(session=session, link=link, now=now)
    days: dict[str, list[tuple[str, str]]] = {}
    for start, end in booking.free_slots(session=session, tenant=tenant, now=now):
        if held is not None and start == held.slot_start:
            continue
        local, until = start.astimezone(zone), end.astimezone(zone)
        day = f"{local:%m月%d日} 周{'一二三四五六日'[local.weekday()]}"
        days.setdefault(day, []).append((start.isoformat(), f"{local:%H:%M}–{until:%H:%M}"))
    service_name = service_types.label(link.service_type) if link.service_type else "上门服务"
    when = booking.when_text(tenant, held.slot_start) if held and held.slot_start else ""
    html = render(
        "bookings",
        "booking.html",
        company=tenant.name,
        service=service_name,
        state="booked" if held else "form",
        problem=problem,
        notice=notice,
        days=list(days.items()),
        when=when,
        confirmed=held is not None and held.status == CONFIRMED,
    )
    return HTMLResponse(html, status_code=status_code)


def _link_or_404(session: Session, token: str) -> ShortLink:
    now = utcnow()
    # A short link, or a report page's Book button carrying the report's own token.
    link = links.resolve(session=session, token=token) or reports.booking_link(
        session=session, token=token, now=now
    )
    if link is None:
        raise NotFound("This booking link does not exist; check the link in your message.")
    return link


@public_router.get(
    "/b/{token}", response_class=HTMLResponse, include_in_schema=False, dependencies=[PublicLimit]
)
@writes  # counts the click
def booking_page(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    """The booking page a message links to: free slots from the company's working hours,
    or the booking made through it, to change or cancel."""
    link = _link_or_404(session, token)
    visitor = links.visitor_of(
        address=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
    )
    links.click(session=session, link=link, visitor=visitor, now=utcnow())
    return _booking_page(session, link)


def _submit(
    session: Session, link: ShortLink, action: str, raw_slot: object, note: object
) -> HTMLResponse:
    if action not in BOOKING_NOTICES:
        return _booking_page(session, link, problem="请重新选择。", status_code=422)
    slot = None
    if action != "cancel":
        try:
            slot = dt.datetime.fromisoformat(raw_slot) if isinstance(raw_slot, str) else None
        except ValueError:
            slot = None
        if slot is None or slot.tzinfo is None:
            return _booking_page(session, link, problem="请选择一个上门时间。", status_code=422)
    now = utcnow()
    try:
        if action == "cancel":
            booking.cancel(session=session, link=link, now=now)
        elif action == "change":
            assert slot is not None
            booking.reschedule(session=session, link=link, slot_start=slot, now=now)
        else:
            assert slot is not None
            booking.book(
                session=session,
                link=link,
                slot_start=slot,
                note=note if isinstance(note, str) else None,
                now=now,
            )
    except Conflict as exc:
        problem = BOOKING_PROBLEMS.get(type(exc), "请重新选择。")
        return _booking_page(session, link, problem=problem, status_code=409)
    except Invalid as exc:
        return _booking_page(session, link, problem=exc.detail, status_code=422)
    return _booking_page(session, link, notice=BOOKING_NOTICES[action])


@public_router.post(
    "/b/{token}", response_class=HTMLResponse, include_in_schema=False, dependencies=[PublicLimit]
)
async def booking_submit(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    """The customer books a time, moves it (``action=change``) or cancels it
    (``action=cancel``): plain form posts, no JavaScript needed."""
    link = await run_in_threadpool(_link_or_404, session, token)
    await run_in_threadpool(per_link, request, str(link.id))
    form = await request.form()
    action = form.get("action") or "book"
    return await run_in_threadpool(
        _submit, session, link, str(action), form.get("slot"), form.get("note")
    )
