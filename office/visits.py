"""服务记录: visits by day, staff and service; a visit's photos by area and phase with their
processing state; its report built, previewed (the MMS parts and sizes per provider, the SMS
fallback) and sent. Thin: every action is the service the ``/v1`` routes call."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from customers.models import Customer
from huifang.db import utcnow
from huifang.deps import SessionDep
from huifang.errors import HuifangError, NotFound
from huifang.fields import Id
from huifang.i18n import _
from huifang.pagination import PageParams
from huifang.worker import enqueue
from media import service as media_service
from messaging.providers import get_provider
from messaging.send_now import send_now
from office import web
from office.staff import media_view
from reports import mms, recaps, tasks
from reports import sending as report_sending
from reports import service as reports
from reports.models import Report
from staff import day as staff_day
from staff.words import PHASES
from visits import service as visits
from visits.models import Staff, Visit
from visits.service_types import SERVICE_TYPES, label

router = APIRouter(prefix="/visits")
PROFILES = (("twilio", "Twilio 彩信"), ("aliyun", "阿里云彩信"), ("sms", "只发短信"))
PAGE = 50
NOTICES = {
    "built": "报告已生成。",
    "sent": "报告已交给发送队列，会经过合规检查后发给客户。",
    "again": "这份报告之前已经发过，没有重复发送。",
}


def _day_range(day: dt.date, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    zone = ZoneInfo(timezone)
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)


@router.get("")
def visits_page(
    request: Request,
    session: SessionDep,
    person: web.OfficeUser,
    day: Annotated[dt.date | None, Query()] = None,
    staff_id: Annotated[int | None, Query(ge=1, le=2**53 - 1)] = None,
    service_type: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    tenant = person.tenant
    after = before = None
    if day is not None:
        after, before = _day_range(day, tenant.timezone)
    try:
        rows, total = visits.list_visits(
            session=session,
            tenant_id=tenant.id,
            page=PageParams(limit=PAGE),
            staff_id=staff_id,
            service_type=service_type or None,
            finished_after=after,
            finished_before=before,
        )
    except HuifangError as refused:
        rows, total, error = [], 0, _in_chinese(refused)
    else:
        error = ""
    customers = (
        {
            c.id: c
            for c in session.query(Customer).filter(Customer.id.in_({v.customer_id for v in rows}))
        }
        if rows
        else {}
    )
    staff = {s.id: s for s in session.query(Staff).filter(Staff.tenant_id == tenant.id)}
    built = (
        {
            r.visit_id
            for r in session.query(Report).filter(Report.visit_id.in_([v.id for v in rows]))
        }
        if rows
        else set()
    )
    return web.render(
        request,
        "office/visits.html",
        {
            "rows": rows,
            "total": total,
            "customers": customers,
            "staff": staff,
            "built": built,
            "day": day.isoformat() if day else "",
            "staff_id": staff_id or "",
            "service_type": service_type,
            "service_types": SERVICE_TYPES,
            "label": label,
            "error": error,
            "today": dt.datetime.now(ZoneInfo(tenant.timezone)).date(),
        },
        person=person,
    )


def _visit_context(session: SessionDep, person: web.SignedIn, visit: Visit) -> dict[str, Any]:
    tenant_id = person.tenant.id
    media = media_service.list_visit_media(session=session, tenant_id=tenant_id, visit_id=visit.id)
    by_area: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for item in media:
        by_area[item.area or _("未分区域")][item.phase].append(media_view(item))
    try:
        report: Report | None = reports.get_report(
            session=session, tenant_id=tenant_id, visit_id=visit.id
        )
    except NotFound:
        report = None
    payloads = []
    if report is not None:
        for name, title in PROFILES:
            payloads.append(
                (title, reports.mms_payload(report=report, profile=mms.profile_for(name)))
            )
    return {
        "visit": visit,
        "customer": session.get(Customer, visit.customer_id),
        "staff_member": session.get(Staff, visit.staff_id) if visit.staff_id else None,
        "label": label,
        "areas": {k: dict(v) for k, v in by_area.items()},
        "phases": PHASES,
        "progress": staff_day.visit_progress(
            session=session, tenant_id=tenant_id, visit_id=visit.id
        ),
        "report": report,
        "report_path": reports.page_path(report) if report else None,
        "expired": reports.is_expired(report) if report else False,
        "payloads": payloads,
        "error": None,
        "notice": None,
    }


@router.get("/{visit_id}")
def visit_page(
    visit_id: Id, request: Request, session: SessionDep, person: web.OfficeUser, done: str = ""
) -> Response:
    try:
        visit = visits.get_visit(session=session, tenant_id=person.tenant.id, visit_id=visit_id)
    except NotFound:
        return web.message_page(
            request,
            _("找不到这条服务记录"),
            _("这条服务记录不存在，或不属于本公司。"),
            status=404,
            person=person,
            link=("/office/visits", _("返回服务记录")),
        )
    context = _visit_context(session, person, visit)
    context["notice"] = NOTICES.get(done)
    return web.render(request, "office/visit.html", context, person=person)


REFUSALS = {
    409: "还有照片或视频在处理，或者还没有可用的照片，或者这次服务没有客户；处理完再试。",
    404: "找不到这条服务记录。",
    422: "内容无法接收，请检查后再试。",
}


def _in_chinese(refused: HuifangError) -> str:
    """A service's refusal for the page: its own words when they are Chinese, else the
    Chinese sentence for its kind (the service's words follow, for whoever asks support)."""
    if any("\u4e00" <= ch <= "\u9fff" for ch in refused.detail):
        return refused.detail
    return _(REFUSALS.get(refused.status_code, "操作没有成功，请稍后再试。"))


def _refused(
    request: Request,
    session: SessionDep,
    person: web.SignedIn,
    visit_id: int,
    refused: HuifangError,
) -> Response:
    session.rollback()
    visit = visits.get_visit(session=session, tenant_id=person.tenant.id, visit_id=visit_id)
    context = _visit_context(session, person, visit)
    context["error"] = _in_chinese(refused)
    return web.render(
        request, "office/visit.html", context, person=person, status=refused.status_code
    )


@router.post("/{visit_id}/report")
def build(visit_id: Id, request: Request, session: SessionDep, person: web.OfficeUser) -> Response:
    try:
        report, _created = reports.build_report(
            session=session, tenant=person.tenant, visit_id=visit_id
        )
    except HuifangError as refused:
        return _refused(request, session, person, visit_id, refused)
    if recaps.recap_job(session=session, report_id=report.id) is not None:
        enqueue(session, tasks.render_recap, report_id=report.id)
    return web.redirect(f"/office/visits/{visit_id}?done=built")


@router.post("/{visit_id}/report/send")
def send(visit_id: Id, request: Request, session: SessionDep, person: web.OfficeUser) -> Response:
    now = utcnow()
    try:
        message, new = report_sending.send_report(
            session=session,
            tenant=person.tenant,
            visit_id=visit_id,
            provider=get_provider(),
            now=now,
        )
    except HuifangError as refused:
        return _refused(request, session, person, visit_id, refused)
    if new:
        send_now(session=session, message_ids=[message.id], now=now)
    return web.redirect(f"/office/visits/{visit_id}?done={'sent' if new else 'again'}")
