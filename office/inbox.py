"""回复与预约: customers' reply threads and the booking desk.

Thin handlers over ``messaging.threads`` and ``bookings.desk``, the services behind
``/v1/threads``, ``/v1/replies`` and ``/v1/bookings``. A refusal (the gate would stop an
answer, a staff member is busy, a reason is missing) shows the service's Chinese sentence
on the same page with what the person typed still in the form.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from bookings import desk
from bookings.desk_schemas import DeskBooking, Opening, StaffSlot
from huifang.db import as_utc, utcnow
from huifang.deps import SessionDep
from huifang.errors import HuifangError, NotFound
from huifang.fields import Id
from huifang.i18n import _, format_datetime
from huifang.pagination import PageParams
from messaging import inbound, threads
from messaging.models import OPEN
from messaging.providers import get_provider
from messaging.send_now import send_now
from office import web
from visits import service as visits
from visits import service_types

router = APIRouter(prefix="/inbox")

THREADS_SHOWN = 100
QUERY_MAX = 50
TEXT_MAX = 5000  # what a form may carry; the services say the real limits in Chinese
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

# What our messages were sent for, as the office reads it.
SOURCE_LABELS = {
    "office_answer": "客服回复",
    "visit_report": "服务报告",
    "campaign": "营销活动",
    "booking_confirmed": "预约确认",
    "booking_declined": "预约婉拒",
    "booking_proposed": "预约建议新时间",
    "booking_reminder": "上门前一天提醒",
    "opt_out_reply": "退订确认（自动）",
    "opt_in_reply": "恢复订阅确认（自动）",
    "help_reply": "帮助回复（自动）",
    "book_reply": "预约回复（自动）",
}
CATEGORY_LABELS = {"service": "服务通知", "marketing": "营销短信"}


def _labels(session: SessionDep, person: web.SignedIn) -> dict[str, Any]:
    """What every page of the section shows: the words for codes, the tabs' counts."""
    return {
        "source_labels": SOURCE_LABELS,
        "category_labels": CATEGORY_LABELS,
        "services": service_types.SERVICE_TYPES,
        "open_replies": threads.open_replies(session=session, tenant_id=person.tenant.id),
        "waiting_bookings": desk.waiting(session=session, tenant_id=person.tenant.id),
    }


def _said(refused: HuifangError, missing: str) -> str:
    """The refusal's sentence; a row that is gone is said in the page's words (the
    services say NotFound in the API's)."""
    return missing if isinstance(refused, NotFound) else refused.detail


def _int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() and len(value) < 19 else None


# --- threads ------------------------------------------------------------------------------


@router.get("")
def inbox_page(
    request: Request, session: SessionDep, person: web.OfficeUser, show: str = "all", q: str = ""
) -> Response:
    show = "open" if show == "open" else "all"
    words = " ".join(q.split())[:QUERY_MAX]
    found = threads.list_threads(
        session=session,
        tenant_id=person.tenant.id,
        open_only=show == "open",
        q=words,
        open_first=True,
        limit=THREADS_SHOWN,
    )
    return web.render(
        request,
        "office/inbox.html",
        {
            "threads": found,
            "show": show,
            "q": words,
            "tab": "threads",
            "limit": THREADS_SHOWN,
            **_labels(session, person),
        },
        person=person,
    )


def _thread_page(
    request: Request,
    session: SessionDep,
    person: web.SignedIn,
    customer_id: int,
    *,
    error: str | None = None,
    typed: dict[str, Any] | None = None,
    shown: int | None = None,
    status: int = 200,
) -> Response:
    try:
        found = threads.thread(
            session=session, tenant=person.tenant, customer_id=customer_id, now=utcnow()
        )
    except NotFound:
        return web.message_page(
            request,
            _("没有这位客户"),
            _("找不到这位客户的对话，可能已被删除。"),
            status=404,
            person=person,
            link=("/office/inbox", _("返回对话列表")),
        )
    waiting = [item for item in found.items if item.direction == "in" and item.state == OPEN]
    typed = {
        "body": "",
        "reply_id": waiting[-1].id if waiting else None,
        "category": "service",
        "request_id": uuid.uuid4().hex,
        "resolution": {},
        "error_reply": None,
        **(typed or {}),
    }
    heads_up = threads.before_answering(
        session=session,
        tenant=person.tenant,
        customer_id=customer_id,
        now=utcnow(),
        max_chars=get_provider().capabilities.max_body_chars,
    )
    return web.render(
        request,
        "office/thread.html",
        {
            "thread": found,
            "waiting": waiting,
            "error": error,
            "typed": typed,
            "heads_up": heads_up,
            "shown": shown,
            "assignees": threads.assignees(session=session, tenant_id=person.tenant.id),
            "tab": "threads",
            **_labels(session, person),
        },
        person=person,
        status=status,
    )


@router.get("/threads/{customer_id}")
def thread_page(
    customer_id: Id,
    request: Request,
    session: SessionDep,
    person: web.OfficeUser,
    answered: str = "",
) -> Response:
    return _thread_page(request, session, person, customer_id, shown=_int(answered))


@router.post("/threads/{customer_id}/answer")
def answer(
    customer_id: Id,
    request: Request,
    session: SessionDep,
    person: web.OfficeUser,
    body: Annotated[str, Form(max_length=TEXT_MAX)] = "",
    reply_id: Annotated[str, Form(max_length=20)] = "",
    category: Annotated[str, Form(max_length=20)] = "service",
    request_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    now = utcnow()
    replying = _int(reply_id)
    category = category if category in CATEGORY_LABELS else "service"
    cause = request_id if _REQUEST_ID.match(request_id) else None
    try:
        message, read = threads.answer(
            session=session,
            tenant=person.tenant,
            customer_id=customer_id,
            body=body,
            now=now,
            max_chars=get_provider().capabilities.max_body_chars,
            reply_id=replying,
            category=category,
            request_id=cause,
            actor=person.actor,
        )
    except HuifangError as refused:
        return _thread_page(
            request,
            session,
            person,
            customer_id,
            status=refused.status_code,
            error=_said(refused, _("找不到要回复的这条消息，可能已被删除。")),
            typed={
                "body": body,
                "reply_id": replying,
                "category": category,
                "request_id": cause or uuid.uuid4().hex,
            },
        )
    if read.created:
        send_now(session=session, message_ids=[message.id], now=now)
    return web.redirect(
        f"/office/inbox/threads/{customer_id}?answered={message.id}#message-{message.id}"
    )


def _reply_done(
    request: Request,
    session: SessionDep,
    person: web.SignedIn,
    reply_id: int,
    act: Callable[[], object],
    typed: dict[str, Any] | None = None,
) -> Response:
    """Run ``act`` on the reply; back to its thread, or the thread with the refusal."""
    try:
        reply = inbound.get_reply(session=session, tenant_id=person.tenant.id, reply_id=reply_id)
    except NotFound:
        return web.message_page(
            request,
            _("没有这条回复"),
            _("找不到这条回复，可能已被删除。"),
            status=404,
            person=person,
            link=("/office/inbox", _("返回对话列表")),
        )
    if reply.customer_id is None:
        return web.message_page(
            request,
            _("无法处理"),
            _("这条回复来自未知号码，没有对应的客户。"),
            status=409,
            person=person,
            link=("/office/inbox", _("返回对话列表")),
        )
    try:
        act()
    except HuifangError as refused:
        return _thread_page(
            request,
            session,
            person,
            reply.customer_id,
            error=_said(refused, _("找不到这位同事的账号，请刷新页面。")),
            status=refused.status_code,
            typed={"error_reply": reply_id, **(typed or {})},
        )
    return web.redirect(f"/office/inbox/threads/{reply.customer_id}#reply-{reply_id}")


@router.post("/replies/{reply_id}/assign")
def assign(
    reply_id: Id,
    request: Request,
    session: SessionDep,
    person: web.OfficeUser,
    assignee_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    def act() -> None:
        chosen = _int(assignee_id)
        if chosen is None:
            raise NotAssignee
        threads.assign(
            session=session,
            tenant_id=person.tenant.id,
            reply_id=reply_id,
            assignee_id=chosen,
            now=utcnow(),
            actor=person.actor,
        )

    return _reply_done(request, session, person, reply_id, act)


class NotAssignee(HuifangError):
    status_code = 422

    def __init__(self) -> None:
        super().__init__(_("请选择一位同事来跟进。"))


@router.post("/replies/{reply_id}/responded")
def responded(
    reply_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
) -> Response:
    return _reply_done(
        request,
        session,
        person,
        reply_id,
        lambda: threads.mark_responded(
            session=session,
            tenant_id=person.tenant.id,
            reply_id=reply_id,
            now=utcnow(),
            actor=person.actor,
        ),
    )


@router.post("/replies/{reply_id}/resolve")
def resolve(
    reply_id: Id,
    request: Request,
    session: SessionDep,
    person: web.OfficeUser,
    resolution: Annotated[str, Form(max_length=TEXT_MAX)] = "",
) -> Response:
    return _reply_done(
        request,
        session,
        person,
        reply_id,
        lambda: threads.resolve(
            session=session,
            tenant_id=person.tenant.id,
            reply_id=reply_id,
            resolution=resolution,
            now=utcnow(),
            actor=person.actor,
        ),
        typed={"resolution": {reply_id: resolution}},
    )


@router.post("/replies/{reply_id}/reopen")
def reopen(reply_id: Id, request: Request, session: SessionDep, person: web.OfficeUser) -> Response:
    return _reply_done(
        request,
        session,
        person,
        reply_id,
        lambda: threads.reopen(
            session=session,
            tenant_id=person.tenant.id,
            reply_id=reply_id,
            now=utcnow(),
            actor=person.actor,
        ),
    )


# --- the booking desk -----------------------------------------------------------------------


@dataclass
class TimeChoice:
    value: str
    day: str
    label: str
    free: list[int]
    asked: bool = False


@dataclass
class StaffChoice:
    id: int
    name: str
    free: bool | None  # None: no time chosen yet
    busy: str | None = None


@dataclass
class BookingForm:
    """One waiting booking with what its confirm form offers and what was typed."""

    item: DeskBooking
    times: list[TimeChoice]
    chosen: str | None
    staff: list[StaffChoice]
    staff_id: int | None = None
    error: str | None = None
    typed: dict[str, str] = field(default_factory=dict)

    @property
    def days(self) -> list[tuple[str, list[TimeChoice]]]:
        """The times by day, in order (one option group each)."""
        grouped: dict[str, list[TimeChoice]] = {}
        for time in self.times:
            grouped.setdefault(time.day, []).append(time)
        return list(grouped.items())


def _instant(value: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else None


def _time(start: dt.datetime, free: list[int], *, asked: bool, tenant: Any) -> TimeChoice:
    """``明天 10:00 客户选的，2人有空``, grouped under ``明天``: short enough for a phone."""
    when = format_datetime(start, tenant.timezone)
    label = when + (" " + _("客户选的") if asked else "") + _("，{n}人有空").format(n=len(free))
    return TimeChoice(
        value=start.isoformat(), day=when.rpartition(" ")[0], label=label, free=free, asked=asked
    )


def _booking_form(
    session: SessionDep,
    person: web.SignedIn,
    item: DeskBooking,
    openings: list[Opening],
    staff: list[Any],
    now: dt.datetime,
    at: dt.datetime | None,
) -> BookingForm:
    """The times (the coming working slots, and the customer's own if it lies elsewhere)
    and the staff, marked free or busy at the chosen time."""
    tenant = person.tenant
    asked = as_utc(item.booking.slot_start)
    times = [
        _time(o.start, [s.staff_id for s in o.free], asked=o.start == asked, tenant=tenant)
        for o in openings
    ]
    starts = {o.start for o in openings}
    elsewhere: list[StaffSlot] = []
    if asked is not None and asked > now and asked not in starts:
        # The customer's own time lies off the grid (or beyond it): who is free then.
        try:
            elsewhere = desk.staff_for(
                session=session,
                tenant=tenant,
                booking_id=item.booking.id,
                slot_start=asked,
                now=now,
            )
        except HuifangError:
            elsewhere = []  # outside working hours now: confirming it says why
        times.insert(
            0, _time(asked, [s.staff_id for s in elsewhere if s.free], asked=True, tenant=tenant)
        )
    chosen = at if at is not None else asked
    if chosen is not None and (chosen <= now or (chosen not in starts and chosen != asked)):
        chosen = None
    choices: list[StaffChoice]
    if chosen is None:
        choices = [StaffChoice(id=s.id, name=s.name, free=None) for s in staff]
    elif chosen in starts:
        free = {s.staff_id for o in openings if o.start == chosen for s in o.free}
        choices = [StaffChoice(id=s.id, name=s.name, free=s.id in free) for s in staff]
    else:
        choices = [
            StaffChoice(id=s.staff_id, name=s.name, free=s.free, busy=s.busy) for s in elsewhere
        ]
    return BookingForm(
        item=item, times=times, chosen=chosen.isoformat() if chosen else None, staff=choices
    )


def _bookings_page(
    request: Request,
    session: SessionDep,
    person: web.SignedIn,
    *,
    focus: int | None = None,
    at: dt.datetime | None = None,
    answered: int | None = None,
    error: str | None = None,
    typed: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    now = utcnow()
    queue = desk.queue(session=session, tenant=person.tenant, now=now)
    openings = desk.openings(session=session, tenant=person.tenant, now=now, days=7)
    staff = visits.list_staff(
        session=session, tenant_id=person.tenant.id, active=True, page=PageParams(limit=500)
    )[0]
    forms = []
    placed = False
    for item in queue:
        mine = item.booking.id == focus
        form = _booking_form(session, person, item, openings, staff, now, at if mine else None)
        if mine:
            placed = True
            form.error = error
            form.typed = typed or {}
            form.staff_id = _int((typed or {}).get("staff_id", ""))
        forms.append(form)
    return web.render(
        request,
        "office/bookings.html",
        {
            "forms": forms,
            "error": None if placed else error,
            "answered": desk.answered(session=session, tenant=person.tenant),
            "shown": answered,
            "focus": focus,
            "staff_count": len(staff),
            "tab": "bookings",
            **_labels(session, person),
        },
        person=person,
        status=status,
    )


@router.get("/bookings")
def bookings_page(
    request: Request,
    session: SessionDep,
    person: web.OfficeUser,
    booking: str = "",
    at: str = "",
    answered: str = "",
) -> Response:
    """The waiting bookings; ``booking`` and ``at`` (the form's 查看谁有空 without
    JavaScript): that booking's staff as free or busy at that time."""
    return _bookings_page(
        request,
        session,
        person,
        focus=_int(booking),
        at=_instant(at) if at else None,
        answered=_int(answered),
    )


@router.post("/bookings/{booking_id}/staff")
def staff_at(
    booking_id: Id,
    request: Request,
    session: SessionDep,
    person: web.OfficeUser,
    slot_start: Annotated[str, Form(max_length=40)] = "",
    staff_id: Annotated[str, Form(max_length=20)] = "",
    service_type: Annotated[str, Form(max_length=TEXT_MAX)] = "",
) -> Response:
    """The confirm form's 查看这个时间谁有空 without JavaScript: the page again, the staff
    marked free or busy at the chosen time. Changes nothing."""
    return _bookings_page(
        request,
        session,
        person,
        focus=booking_id,
        at=_instant(slot_start),
        typed={"staff_id": staff_id, "service_type": service_type},
    )


@router.post("/bookings/{booking_id}/confirm")
def confirm(
    booking_id: Id,
    request: Request,
    session: SessionDep,
    person: web.OfficeUser,
    slot_start: Annotated[str, Form(max_length=40)] = "",
    staff_id: Annotated[str, Form(max_length=20)] = "",
    service_type: Annotated[str, Form(max_length=TEXT_MAX)] = "",
    intent: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Confirm with the time and staff member chosen, or (``intent=propose``) offer that
    time to the customer, who accepts it on their booking page."""
    now = utcnow()
    start, chosen = _instant(slot_start), _int(staff_id)
    typed = {"staff_id": staff_id, "service_type": service_type}
    if start is None or chosen is None:
        return _bookings_page(
            request,
            session,
            person,
            focus=booking_id,
            at=start,
            typed=typed,
            status=422,
            error=_("请选择上门时间和服务人员。")
            if start is None and chosen is None
            else _("请选择上门时间。")
            if start is None
            else _("请选择一位服务人员。"),
        )
    try:
        if intent == "propose":
            done = desk.propose(
                session=session,
                tenant=person.tenant,
                booking_id=booking_id,
                slot_start=start,
                staff_id=chosen,
                now=now,
                actor=person.actor,
            )
        else:
            done = desk.confirm(
                session=session,
                tenant=person.tenant,
                booking_id=booking_id,
                slot_start=start,
                staff_id=chosen,
                now=now,
                service_type=service_type or None,
                actor=person.actor,
            )
    except HuifangError as refused:
        return _bookings_page(
            request,
            session,
            person,
            focus=booking_id,
            at=start,
            typed=typed,
            status=refused.status_code,
            error=_said(refused, _("找不到这个预约或这位服务人员，可能已被删除，请刷新页面。")),
        )
    if done.message_id is not None:
        send_now(session=session, message_ids=[done.message_id], now=now)
    return web.redirect(f"/office/inbox/bookings?answered={booking_id}#answered-{booking_id}")


@router.post("/bookings/{booking_id}/decline")
def decline(
    booking_id: Id,
    request: Request,
    session: SessionDep,
    person: web.OfficeUser,
    reason: Annotated[str, Form(max_length=TEXT_MAX)] = "",
) -> Response:
    now = utcnow()
    try:
        done = desk.decline(
            session=session,
            tenant=person.tenant,
            booking_id=booking_id,
            reason=reason,
            now=now,
            actor=person.actor,
        )
    except HuifangError as refused:
        return _bookings_page(
            request,
            session,
            person,
            focus=booking_id,
            typed={"reason": reason},
            status=refused.status_code,
            error=_said(refused, _("找不到这个预约，可能已被删除，请刷新页面。")),
        )
    if done.message_id is not None:
        send_now(session=session, message_ids=[done.message_id], now=now)
    return web.redirect(f"/office/inbox/bookings?answered={booking_id}#answered-{booking_id}")
