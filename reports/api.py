"""Routes of the visit report: build, read, send, its cards, and the public /r/ page."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse

from huifang.db import utcnow
from huifang.deps import KeyActorDep, SessionDep, TenantDep, writes
from huifang.errors import NotFound
from huifang.fields import Id
from huifang.settings import get_settings
from huifang.templating import render
from huifang.throttle import PublicLimit
from huifang.worker import enqueue
from messaging.providers import get_provider
from messaging.schemas import MessageRead
from messaging.send_now import send_now
from reports import expiry, mms, recaps, sending, tasks
from reports import service as reports
from reports.schemas import (
    CareAdviceRead,
    CareAdviceUpdate,
    ReportMediaExpiryRead,
    ReportMediaExpiryUpdate,
    ReportOfferRead,
    ReportOfferUpdate,
    ReportRead,
)

# The same tag as when these routes were part of media's: the API document is unchanged.
router = APIRouter(tags=["media"])
public_router = APIRouter(tags=["public pages"])
# Sending a report is filed with the messages in the API document, as before.
send_router = APIRouter(tags=["messages"])
_HTML: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}

ProfileName = Literal["twilio", "aliyun", "console", "sms"]
Month = Annotated[int, PathParam(ge=1, le=12, description="1 (January) to 12 (December).")]
# The report page loads nothing from elsewhere, runs no script and posts no form: tighter
# than the pages' default CSP (huifang.headers, which adds the other security headers).
REPORT_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; media-src 'self'; "
    "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    # The page must answer 410 once it expires, so no cache may keep it past a revisit.
    "Cache-Control": "private, no-cache",
}


def _report_read(report: Any, profile: ProfileName | None) -> ReportRead:
    chosen = mms.profile_for(profile or get_settings().sms_provider)
    return ReportRead.of(report, reports.mms_payload(report=report, profile=chosen))


@router.post(
    "/visits/{visit_id}/report",
    response_model=ReportRead,
    status_code=201,
    responses={
        200: {"description": "Rebuilt in place; the link is unchanged."},
        409: {"description": "Photos or clips still processing, or no photo ready yet."},
    },
)
def build_report(
    visit_id: Id,
    response: Response,
    session: SessionDep,
    tenant: TenantDep,
    profile: ProfileName | None = None,
) -> ReportRead:
    """Build the visit's report (201), or rebuild it (200): the public page, the long image,
    the recap video when there is one, and the MMS parts for ``profile`` (default: the
    configured provider) with their byte sizes."""
    report, created = reports.build_report(session=session, tenant=tenant, visit_id=visit_id)
    response.status_code = 201 if created else 200
    if recaps.recap_job(session=session, report_id=report.id) is not None:
        # Tens of seconds of ffmpeg: made on the media queue; the page shows it once there.
        enqueue(session, tasks.render_recap, report_id=report.id)
    return _report_read(report, profile)


@router.get("/visits/{visit_id}/report", response_model=ReportRead)
def read_report(
    visit_id: Id, session: SessionDep, tenant: TenantDep, profile: ProfileName | None = None
) -> ReportRead:
    """The visit's report as built last, with the MMS parts for ``profile``."""
    return _report_read(
        reports.get_report(session=session, tenant_id=tenant.id, visit_id=visit_id), profile
    )


def _expiry_read(report: Any) -> ReportMediaExpiryRead:
    return ReportMediaExpiryRead(
        report_id=report.id,
        media_due_at=expiry.media_due_at(report),
        media_expires_at=report.media_expires_at,
        media_after_view_days=report.media_after_view_days,
        first_viewed_at=report.first_viewed_at,
        media_deleted_at=report.media_deleted_at,
    )


@router.get("/visits/{visit_id}/report/media-expiry", response_model=ReportMediaExpiryRead)
def read_media_expiry(
    visit_id: Id, session: SessionDep, tenant: TenantDep
) -> ReportMediaExpiryRead:
    """When the report's photos, clips, recap and long image will be deleted."""
    return _expiry_read(reports.get_report(session=session, tenant_id=tenant.id, visit_id=visit_id))


@router.put("/visits/{visit_id}/report/media-expiry", response_model=ReportMediaExpiryRead)
def set_media_expiry(
    visit_id: Id, body: ReportMediaExpiryUpdate, session: SessionDep, tenant: TenantDep
) -> ReportMediaExpiryRead:
    """This report's own expiry: keep the media N days, or delete them N days after the
    customer first opened the report (阅后自动删除)."""
    report = reports.get_report(session=session, tenant_id=tenant.id, visit_id=visit_id)
    return _expiry_read(
        expiry.set_report_expiry(
            session=session,
            report=report,
            keep_days=body.keep_days,
            after_view_days=body.after_view_days,
        )
    )


@router.get("/care-advice", response_model=list[CareAdviceRead], tags=["reports"])
def list_care_advice(session: SessionDep, tenant: TenantDep) -> list[CareAdviceRead]:
    """The care advice each report shows, per service type: built in, or the company's own."""
    return [
        CareAdviceRead.model_validate(a, from_attributes=True)
        for a in reports.list_care_advice(session=session, tenant_id=tenant.id)
    ]


@router.put("/care-advice/{service_type}", response_model=CareAdviceRead, tags=["reports"])
def set_care_advice(
    service_type: str,
    body: CareAdviceUpdate,
    session: SessionDep,
    tenant: TenantDep,
    actor: KeyActorDep,
) -> CareAdviceRead:
    """The company's own advice for a service type; its own service codes are welcome."""
    return CareAdviceRead.model_validate(
        reports.set_care_advice(
            session=session,
            tenant_id=tenant.id,
            service_type=service_type,
            text=body.text,
            actor=actor,
        ),
        from_attributes=True,
    )


@router.delete("/care-advice/{service_type}", response_model=CareAdviceRead, tags=["reports"])
def reset_care_advice(
    service_type: str, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> CareAdviceRead:
    """Back to the built-in advice; answers the advice now in force."""
    return CareAdviceRead.model_validate(
        reports.reset_care_advice(
            session=session, tenant_id=tenant.id, service_type=service_type, actor=actor
        ),
        from_attributes=True,
    )


@router.get("/report-offers", response_model=list[ReportOfferRead], tags=["reports"])
def list_report_offers(session: SessionDep, tenant: TenantDep) -> list[ReportOfferRead]:
    """The upcoming offer a report shows, by the month of the visit."""
    return [
        ReportOfferRead.model_validate(o, from_attributes=True)
        for o in reports.list_offers(session=session, tenant_id=tenant.id)
    ]


@router.put("/report-offers/{month}", response_model=ReportOfferRead, tags=["reports"])
def set_report_offer(
    month: Month,
    body: ReportOfferUpdate,
    session: SessionDep,
    tenant: TenantDep,
    actor: KeyActorDep,
) -> ReportOfferRead:
    return ReportOfferRead.model_validate(
        reports.set_offer(
            session=session,
            tenant_id=tenant.id,
            month=month,
            title=body.title,
            text=body.text,
            actor=actor,
        ),
        from_attributes=True,
    )


@router.delete("/report-offers/{month}", response_model=ReportOfferRead, tags=["reports"])
def reset_report_offer(
    month: Month, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> ReportOfferRead:
    """Back to the built-in offer of the month; answers the offer now in force."""
    return ReportOfferRead.model_validate(
        reports.reset_offer(session=session, tenant_id=tenant.id, month=month, actor=actor),
        from_attributes=True,
    )


@public_router.get(
    "/r/{token}",
    response_class=HTMLResponse,
    tags=["public pages"],
    dependencies=[PublicLimit],
    responses={
        404: {"description": "No report has this link (a page saying so).", "content": _HTML},
        410: {"description": "The report has expired (a page saying so).", "content": _HTML},
    },
)
@writes
def report_page(token: str, session: SessionDep) -> HTMLResponse:
    """The visit report a customer opens from the message: 410 once it has expired or its
    media have been deleted. The first view is recorded (it starts 阅后自动删除)."""
    report = reports.by_token(session=session, token=token)
    if report is None:
        return HTMLResponse(
            render("reports", "report_missing.html"), status_code=404, headers=REPORT_PAGE_HEADERS
        )
    if expiry.media_gone(report):
        return HTMLResponse(
            render(
                "reports",
                "report_media_deleted.html",
                **reports.expired_context(session=session, report=report),
            ),
            status_code=410,
            headers=REPORT_PAGE_HEADERS,
        )
    if reports.is_expired(report):
        return HTMLResponse(
            render(
                "reports",
                "report_expired.html",
                **reports.expired_context(session=session, report=report),
            ),
            status_code=410,
            headers=REPORT_PAGE_HEADERS,
        )
    page = HTMLResponse(
        render("reports", "report.html", **reports.page_context(session=session, report=report)),
        headers=REPORT_PAGE_HEADERS,
    )
    expiry.record_view(session=session, report=report, now=utcnow())
    return page


@public_router.get("/r/{token}/{name}", response_class=FileResponse, include_in_schema=False)
def report_file(token: str, name: str, session: SessionDep) -> FileResponse:
    """The report's own files (long image, MMS pictures, recap video), while it is valid."""
    report = reports.by_token(session=session, token=token)
    if report is not None and expiry.media_gone(report):
        return HTMLResponse(  # type: ignore[return-value]
            render(
                "reports",
                "report_media_deleted.html",
                **reports.expired_context(session=session, report=report),
            ),
            status_code=410,
            headers=REPORT_PAGE_HEADERS,
        )
    found = reports.asset_file(session=session, report=report, name=name) if report else None
    if report is None or found is None:
        raise NotFound("This report file link is not valid.")
    if reports.is_expired(report):
        raise HTTPException(410, "This report has expired; ask the company for a new one.")
    path, content_type = found
    left = int((report.expires_at - utcnow()).total_seconds())
    # Names change with every build, so a file never changes under its name; but it must
    # not outlive the report in a cache.
    return FileResponse(
        path,
        media_type=content_type,
        headers={"Cache-Control": f"public, max-age={max(0, min(left, 31_536_000))}, immutable"},
    )


@send_router.post(
    "/visits/{visit_id}/report/send",
    response_model=MessageRead,
    status_code=202,
    tags=["messages"],
    responses={
        200: {"description": "Already sent: the same message."},
        409: {
            "description": "Photos still processing, none ready yet, or the visit has no customer."
        },
    },
)
def send_visit_report(
    visit_id: Id, response: Response, session: SessionDep, tenant: TenantDep
) -> MessageRead:
    """Send the visit's report to its customer: MMS parts when the provider carries MMS,
    otherwise an SMS with the report link. Building the report first if needed."""
    now = utcnow()
    message, new = sending.send_report(
        session=session, tenant=tenant, visit_id=visit_id, provider=get_provider(), now=now
    )
    if new:
        send_now(session=session, message_ids=[message.id], now=now)
    else:
        response.status_code = 200
    return MessageRead.model_validate(message)
