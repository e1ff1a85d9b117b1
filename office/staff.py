"""The staff phone page (``/staff/``): a staff member's visits, capture per area and phase,
the upload queue, start and finish, the report as the customer sees it.

Only staff users reach it (``Permission.OWN_VISITS``): owners and the office have the
console, where every visit is; they are refused here (403) rather than shown a page about
no one's visits. A staff member opens only visits that are theirs (403 for another's).
Handlers are thin: ``staff.day`` (the same as the ``/v1`` routes), ``media.service``
for the one-file form upload, and the words in Chinese from ``staff.words``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from access.roles import Permission
from compliance import capture
from customers.models import Customer
from huifang.db import utcnow
from huifang.deps import SessionDep, UnitOfWorkDep
from huifang.errors import Conflict, HuifangError, Invalid
from huifang.fields import Id
from huifang.i18n import _, format_date
from huifang.settings import get_settings
from huifang.worker import enqueue
from media import service as media_service
from media import tasks as media_tasks
from media.models import PROCESSING, Media
from media.schemas import rendition_url
from media.upload import read_upload
from messaging import service as outbox
from messaging import tasks as messaging_tasks
from messaging.providers import get_provider
from office import staff_uploads, web
from reports import service as reports
from reports.models import Report
from staff import day as staff_day
from staff.words import PHASES, chinese, in_chinese, missing_words, what_is_missing
from visits.models import Visit
from visits.schemas import VisitProgressRead

STATIC = Path(__file__).resolve().parents[1] / "staff" / "static"

router = APIRouter()
Staff = Annotated[web.SignedIn, Depends(web.require(Permission.OWN_VISITS))]


# --- helpers ------------------------------------------------------------------------------


def _staff_id(person: web.SignedIn) -> int:
    if person.user.staff_id is None:
        raise web.NotAllowed
    return person.user.staff_id


def _render(
    request: Request,
    template: str,
    context: dict[str, Any],
    person: web.SignedIn,
    status: int = 200,
) -> HTMLResponse:
    return web.render(request, f"staff/{template}", context, person=person, status=status)


def _refused(request: Request, person: web.SignedIn, exc: HuifangError) -> HTMLResponse:
    return _render(
        request,
        "message.html",
        {
            "title": _("没有权限") if exc.status_code == 403 else _("打不开这个服务记录"),
            "message": chinese(exc.detail, exc.status_code),
        },
        person,
        status=exc.status_code,
    )


def _own(session: Session, person: web.SignedIn, visit_id: int) -> Visit:
    return staff_day.own_visit(
        session=session, tenant_id=person.tenant.id, staff_id=_staff_id(person), visit_id=visit_id
    )


def _path(url: str) -> str:
    """A rendition's address on this server (the page may be served under another name
    than the public address the links of messages use)."""
    public = get_settings().public_url
    return url.removeprefix(public) if url.startswith(public) else url


def media_view(media: Media) -> dict[str, Any]:
    """What the phone shows of a media: state, the watermarked result, a refusal in Chinese."""
    by_kind = {
        r.kind: _path(rendition_url(r))
        for r in media.renditions
        if media.renditions_deleted_at is None  # deleted with the report's media
    }
    return {
        "id": media.id,
        "kind": media.kind,
        "phase": media.phase,
        "phase_label": _(PHASES.get(media.phase, media.phase)),
        "area": media.area,
        "note": media.note,
        "status": media.status,
        "failure_reason": (chinese(media.failure_reason, 422) if media.failure_reason else None),
        "thumb": by_kind.get("thumb"),
        "display": by_kind.get("display"),
        "video": by_kind.get("video"),
        "poster": by_kind.get("poster"),
        "code": media_service.format_code(media.verification_code),
    }


def _local(when: dt.datetime | None, zone: ZoneInfo) -> str:
    if when is None:
        return ""
    local = when.astimezone(zone)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def _day_label(day: dt.date, today: dt.date) -> str:
    delta = (day - today).days
    names = {0: _("今天"), 1: _("明天"), 2: _("后天")}
    return names.get(delta, "") + (" · " if delta in names else "") + format_date(day)


def _progress_view(progress: VisitProgressRead) -> dict[str, Any]:
    return {
        "areas": [
            {
                "area": a.area,
                "missing": missing_words(a),
                "before": a.before,
                "after": a.after,
                "clips": a.clips,
                "processing": a.processing,
                "failed": a.failed,
                "required": a.required,
            }
            for a in progress.areas
        ],
        "can_finish": progress.can_finish,
        "why": what_is_missing(progress),
        "staff_report": progress.staff_report,
        "status": progress.status,
    }


# --- 今日任务 ------------------------------------------------------------------------------


@router.get("/")
def today(request: Request, session: SessionDep, person: Staff) -> Response:
    day = staff_day.schedule(
        session=session, tenant=person.tenant, staff_id=_staff_id(person), now=utcnow()
    )
    groups: list[tuple[str, list[Any]]] = []
    for planned in day.visits:
        label = _day_label(planned.local_date, day.today)
        if not groups or groups[-1][0] != label:
            groups.append((label, []))
        groups[-1][1].append((planned, _progress_view(planned.progress)))
    return _render(request, "today.html", {"day": day, "groups": groups}, person)


# --- one visit ----------------------------------------------------------------------------


def _visit_page(
    request: Request,
    session: Session,
    person: web.SignedIn,
    visit: Visit,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    customer = session.get(Customer, visit.customer_id)
    progress = staff_day.visit_progress(
        session=session, tenant_id=person.tenant.id, visit_id=visit.id
    )
    shown = [
        media_view(m)
        for m in media_service.list_visit_media(
            session=session, tenant_id=person.tenant.id, visit_id=visit.id
        )
    ]
    areas = []
    for area in _progress_view(progress)["areas"]:
        phases = [
            (
                key,
                _(PHASES[key]),
                [m for m in shown if m["area"] == area["area"] and m["phase"] == key],
            )
            for key in ("before", "during", "after")
        ]
        areas.append({**area, "phases": phases})
    zone = ZoneInfo(person.tenant.timezone)
    report: Report | None = None
    if visit.finished_at is not None:
        try:
            report = reports.get_report(
                session=session, tenant_id=person.tenant.id, visit_id=visit.id
            )
        except HuifangError:
            report = None
    return _render(
        request,
        "visit.html",
        {
            "visit": visit,
            "customer": customer,
            "areas": areas,
            "progress": _progress_view(progress),
            "staff_report": [m for m in shown if m["phase"] == "staff_report"],
            "when": _local(visit.scheduled_at, zone),
            "started": _local(visit.started_at, zone),
            "report": report,
            "needs_consent": person.tenant.capture_consent_required
            and capture.active_capture_consent(
                session=session, tenant_id=person.tenant.id, customer_id=visit.customer_id
            )
            is None,
            "error": error,
            "notice": notice,
        },
        person,
        status=status,
    )


@router.get("/visits/{visit_id}")
def visit_page(
    visit_id: Id,
    request: Request,
    session: SessionDep,
    person: Staff,
    uploaded: int = 0,
    consented: int = 0,
) -> Response:
    try:
        visit = _own(session, person, visit_id)
    except HuifangError as exc:
        return _refused(request, person, exc)
    return _visit_page(
        request,
        session,
        person,
        visit,
        notice=_("已上传，正在处理（加水印）。")
        if uploaded
        else (_("已记录客户的拍照录像授权，可以拍照了。") if consented else None),
    )


@router.get("/visits/{visit_id}/progress")
def visit_progress(visit_id: Id, session: SessionDep, person: Staff) -> JSONResponse:
    """What each area still needs, in Chinese, for the page's script to refresh."""
    try:
        _own(session, person, visit_id)
    except HuifangError as exc:
        raise in_chinese(exc) from None
    progress = staff_day.visit_progress(
        session=session, tenant_id=person.tenant.id, visit_id=visit_id
    )
    return JSONResponse(_progress_view(progress), headers={"Cache-Control": "no-store"})


@router.get("/media/{media_id}")
def read_media(media_id: Id, session: SessionDep, person: Staff) -> JSONResponse:
    """A media of one's own visit, as the upload queue watches it until processed."""
    try:
        media = media_service.get_media(
            session=session, tenant_id=person.tenant.id, media_id=media_id
        )
        _own(session, person, media.visit_id)
    except HuifangError as exc:
        raise in_chinese(exc) from None
    return JSONResponse(media_view(media), headers={"Cache-Control": "no-store"})


@router.post("/visits/{visit_id}/start", dependencies=[web.FormChecked])
def start(visit_id: Id, request: Request, session: SessionDep, person: Staff) -> Response:
    try:
        _own(session, person, visit_id)
        staff_day.start_visit(
            session=session, tenant=person.tenant, visit_id=visit_id, now=utcnow()
        )
    except HuifangError as exc:
        return _refused(request, person, exc)
    return web.redirect(f"/staff/visits/{visit_id}")


@router.post("/visits/{visit_id}/capture-consent", dependencies=[web.FormChecked])
async def capture_consent(
    visit_id: Id, request: Request, session: SessionDep, person: Staff
) -> Response:
    """The customer ticks the box and signs on the phone: their permission to photograph
    and film the home, the drawn signature kept as a PNG (``compliance.capture``)."""
    form = await request.form()
    try:
        visit = await run_in_threadpool(_own, session, person, visit_id)
    except HuifangError as exc:
        return _refused(request, person, exc)
    scopes = [str(v) for v in form.getlist("scope")]
    signature = str(form.get("signature") or "")

    def record() -> Response:
        try:
            if form.get("agree") != "yes":
                raise Invalid("Permission needs the customer to tick the box that they agree.")
            data = _signature_png(signature)
            customer = session.get(Customer, visit.customer_id)
            assert customer is not None
            capture.record_capture_consent(
                session=session,
                tenant=person.tenant,
                customer=customer,
                source="signature",
                evidence=(
                    f"客户在服务人员 {person.user.name} 的手机上勾选同意并签名"
                    f"（服务记录 #{visit.id}）"
                ),
                scopes=scopes,
                signature_png=data,
                now=utcnow(),
                actor=person.actor,
            )
        except HuifangError as exc:
            session.rollback()
            return _visit_page(
                request,
                session,
                person,
                visit,
                error=chinese(exc.detail, exc.status_code),
                status=exc.status_code,
            )
        return web.redirect(f"/staff/visits/{visit_id}?consented=1")

    return await run_in_threadpool(record)


def _signature_png(data_url: str) -> bytes | None:
    """The canvas's ``data:image/png;base64,…`` as bytes; None when nothing was drawn."""
    prefix = "data:image/png;base64,"
    if not data_url:
        return None
    if not data_url.startswith(prefix):
        raise Invalid("The signature must be a PNG image drawn on the phone.")
    try:
        return base64.b64decode(data_url[len(prefix) :], validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("The signature must be a PNG image drawn on the phone.") from None


@router.post("/visits/{visit_id}/finish", dependencies=[web.FormChecked])
def finish(visit_id: Id, request: Request, session: SessionDep, person: Staff) -> Response:
    """完成并生成报告: the same service as ``POST /v1/visits/{id}/finish``."""
    try:
        visit = _own(session, person, visit_id)
    except HuifangError as exc:
        return _refused(request, person, exc)
    now = utcnow()
    try:
        with session.begin_nested():
            done = staff_day.finish_visit(
                session=session,
                tenant=person.tenant,
                visit_id=visit_id,
                now=now,
                provider=get_provider(),
            )
    except Conflict:
        progress = staff_day.visit_progress(
            session=session, tenant_id=person.tenant.id, visit_id=visit_id
        )
        return _visit_page(
            request,
            session,
            person,
            visit,
            status=409,
            error=what_is_missing(progress) or _("现在还不能完成，请刷新后再试。"),
        )
    except HuifangError as exc:
        return _visit_page(
            request,
            session,
            person,
            visit,
            status=exc.status_code,
            error=chinese(exc.detail, exc.status_code),
        )
    if done.message is not None and done.new_message:
        for queued in outbox.queue_now(session=session, message_ids=[done.message.id], now=now):
            enqueue(session, messaging_tasks.send_message, message_id=queued)
    return web.redirect(f"/staff/visits/{visit_id}/report")


@router.get("/visits/{visit_id}/report")
def report_page(visit_id: Id, request: Request, session: SessionDep, person: Staff) -> Response:
    try:
        visit = _own(session, person, visit_id)
        report = reports.get_report(session=session, tenant_id=person.tenant.id, visit_id=visit_id)
    except HuifangError as exc:
        return _refused(request, person, exc)
    customer = session.get(Customer, visit.customer_id)
    return _render(
        request,
        "report.html",
        {
            "visit": visit,
            "customer": customer,
            "report": report,
            "report_path": reports.page_path(report),
            "review": person.tenant.report_review,
        },
        person,
    )


# --- one file without JavaScript ------------------------------------------------------------


@router.post("/visits/{visit_id}/upload")
async def upload_one(visit_id: Id, request: Request, unit_of_work: UnitOfWorkDep) -> Response:
    """The page's form without JavaScript: one file, a plain multipart POST; the same
    acceptance as every upload (``media.service.accept_upload``). Streamed to the staging
    area with no transaction open, the form's token checked once it has arrived."""
    try:
        uploader = await run_in_threadpool(staff_uploads.who, request, unit_of_work, header=False)
    except staff_uploads.Refused as refused:
        raise (web.SignInRequired if refused.status_code == 401 else web.NotAllowed) from None
    back = f"/staff/visits/{visit_id}"
    try:
        await run_in_threadpool(staff_uploads.check_visit, unit_of_work, uploader, visit_id)
    except HuifangError as exc:
        return await run_in_threadpool(_refusal_page, request, unit_of_work, exc)
    try:
        await run_in_threadpool(_check_capture, unit_of_work, uploader, visit_id)
    except HuifangError as exc:
        return await run_in_threadpool(
            _form_refusal,
            request,
            unit_of_work,
            visit_id,
            chinese(exc.detail, exc.status_code),
            exc.status_code,
        )
    settings = get_settings()
    try:
        staged = await read_upload(
            content_type=request.headers.get("content-type", ""),
            content_length=request.headers.get("content-length"),
            body=request.stream(),
            photo_max=settings.photo_max_bytes,
            clip_max=settings.clip_max_bytes,
        )
    except HuifangError as exc:
        return await run_in_threadpool(
            _form_refusal,
            request,
            unit_of_work,
            visit_id,
            chinese(exc.detail, exc.status_code),
            exc.status_code,
        )
    if not web.tokens_match(staged.fields.get(web.CSRF_FIELD, ""), uploader.csrf_token):
        staged.discard()
        raise web.FormRefused

    def accept() -> Response:
        with unit_of_work() as session:
            try:
                media, created = media_service.accept_upload(
                    session=session, tenant=uploader.tenant, visit_id=visit_id, staged=staged
                )
            except HuifangError as exc:
                session.rollback()
                return _form_refusal(
                    request,
                    unit_of_work,
                    visit_id,
                    chinese(exc.detail, exc.status_code),
                    exc.status_code,
                )
            if created and media.status == PROCESSING:
                enqueue(session, media_tasks.process_media, media_id=media.id)
        return web.redirect(f"{back}?uploaded=1")

    return await run_in_threadpool(accept)


def _check_capture(unit_of_work: Any, uploader: staff_uploads.Uploader, visit_id: int) -> None:
    with unit_of_work(read_only=True) as session:
        media_service.check_capture(session=session, tenant=uploader.tenant, visit_id=visit_id)


def _refusal_page(request: Request, unit_of_work: Any, exc: HuifangError) -> HTMLResponse:
    with unit_of_work(read_only=True) as session:
        return _refused(request, web.signed_in(request, session), exc)


def _form_refusal(
    request: Request, unit_of_work: Any, visit_id: int, sentence: str, status: int
) -> HTMLResponse:
    with unit_of_work(read_only=True) as session:
        person = web.signed_in(request, session)
        visit = _own(session, person, visit_id)
        return _visit_page(request, session, person, visit, error=sentence, status=status)


# --- wiring -------------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """The staff pages, their upload routes and their files (``/staff/static``)."""
    staff = APIRouter(prefix="/staff", include_in_schema=False)
    staff.include_router(router)
    staff.include_router(staff_uploads.router)
    app.include_router(staff)
    app.mount("/staff/static", StaticFiles(directory=STATIC), name="staff-static")
