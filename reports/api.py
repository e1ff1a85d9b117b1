"""Routes of the visit report: build, read, send, its cards, and the public /r/ page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from huifang import downloads
from huifang.db import utcnow
from huifang.deps import KeyActorDep, SessionDep, TenantDep, writes
from huifang.errors import Invalid, NotFound
from huifang.fields import Id, Instant
from huifang.settings import get_settings
from huifang.templating import render
from huifang.throttle import PublicLimit
from huifang.worker import enqueue
from messaging.providers import get_provider
from messaging.schemas import MessageRead
from messaging.send_now import send_now
from reports import expiry, mms, ratings, recaps, sending, tasks
from reports import service as reports
from reports.models import PROBLEMS, SCORES, Report
from reports.schemas import (
    CareAdviceRead,
    CareAdviceUpdate,
    RatingFiguresRead,
    RatingGroupRead,
    RatingRead,
    ReportMediaExpiryRead,
    ReportMediaExpiryUpdate,
    ReportOfferRead,
    ReportOfferUpdate,
    ReportRead,
    ReportViewsRead,
)

# The same tag as when these routes were part of media's: the API document is unchanged.
router = APIRouter(tags=["media"])
public_router = APIRouter(tags=["public pages"])
# Sending a report is filed with the messages in the API document, as before.
send_router = APIRouter(tags=["messages"])
_HTML: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}

ProfileName = Literal["twilio", "aliyun", "console", "sms"]
Month = Annotated[int, PathParam(ge=1, le=12, description="1 (January) to 12 (December).")]
# The report pages load nothing from elsewhere: tighter than the pages' default CSP
# (huifang.headers, which adds the other security headers). The missing and expired pages
# run no script and post nothing; the report itself runs only its own script file (the
# recap's and the Book button's counts) and posts only its satisfaction form, to itself.
REPORT_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; media-src 'self'; "
    "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    # The page must answer 410 once it expires, so no cache may keep it past a revisit.
    "Cache-Control": "private, no-cache",
}
LIVE_REPORT_HEADERS = {
    **REPORT_PAGE_HEADERS,
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; media-src 'self'; "
    "style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
}


def _report_read(report: Any, profile: ProfileName | None, session: Session) -> ReportRead:
    chosen = mms.profile_for(profile or get_settings().sms_provider)
    read = ReportRead.of(report, reports.mms_payload(report=report, profile=chosen))
    rating = ratings.rating_of(session=session, report_id=report.id)
    read.rating = RatingRead.model_validate(rating) if rating is not None else None
    read.views = ReportViewsRead(**ratings.views_of(session=session, report_id=report.id))
    return read


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
    return _report_read(report, profile, session)


@router.get("/visits/{visit_id}/report", response_model=ReportRead)
def read_report(
    visit_id: Id, session: SessionDep, tenant: TenantDep, profile: ProfileName | None = None
) -> ReportRead:
    """The visit's report as built last, with the MMS parts for ``profile``."""
    return _report_read(
        reports.get_report(session=session, tenant_id=tenant.id, visit_id=visit_id),
        profile,
        session,
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


def _page(
    session: Session,
    report: Report | None,
    *,
    rated: bool = False,
    problem: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
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
    rating = ratings.rating_of(session=session, report_id=report.id)
    return HTMLResponse(
        render(
            "reports",
            "report.html",
            **reports.page_context(session=session, report=report),
            rating=rating,
            rated=rated and rating is not None,
            rating_problem=problem,
            scores=SCORES,
            problems=PROBLEMS,
            page=reports.page_path(report),
        ),
        status_code=status_code,
        headers=LIVE_REPORT_HEADERS,
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
def report_page(token: str, session: SessionDep, rated: bool = False) -> HTMLResponse:
    """The visit report a customer opens from the message: 410 once it has expired or its
    media have been deleted. Each opening is counted (the first and how many), by this
    server, for the company; the first view starts 阅后自动删除 where the company uses it."""
    report = reports.by_token(session=session, token=token)
    # Back from the satisfaction form (``rated``) is the same visit, not another opening.
    if report is not None and not reports.is_expired(report) and not expiry.media_gone(report):
        now = utcnow()
        if not rated:
            ratings.count_view(session=session, report=report, event="opened", now=now)
        expiry.record_view(session=session, report=report, now=now)  # starts 阅后自动删除
    return _page(session, report, rated=rated)


def _rate(session: Session, token: str, form: dict[str, Any]) -> Response:
    report = reports.by_token(session=session, token=token)
    if report is None or reports.is_expired(report) or expiry.media_gone(report):
        return _page(session, report)
    try:
        ratings.rate(
            session=session,
            report=report,
            score=str(form.get("score") or ""),
            problems=[str(p) for p in form.get("problem", [])],
            comment=str(form.get("comment") or ""),
            now=utcnow(),
        )
    except Invalid as refused:  # refused before anything was written
        return _page(session, report, problem=refused.detail, status_code=422)
    return RedirectResponse(f"/r/{token}?rated=1#rating", status_code=303)


@public_router.post(
    "/r/{token}/rating",
    response_class=HTMLResponse,
    include_in_schema=False,
    dependencies=[PublicLimit],
)
async def rate_report(token: str, request: Request, session: SessionDep) -> Response:
    """满意 / 一般 / 不满意 from the report page: a plain form post (no script needed), then
    back to the page with the thanks. Answering again changes the answer."""
    form = await request.form()
    fields = {
        "score": form.get("score"),
        "problem": form.getlist("problem"),
        "comment": form.get("comment"),
    }
    return await run_in_threadpool(_rate, session, token, fields)


def _count(session: Session, token: str, event: str) -> Report:
    report = reports.by_token(session=session, token=token)
    if report is None:
        raise NotFound("This report link is not valid.")
    if reports.is_expired(report) or expiry.media_gone(report):
        raise HTTPException(410, "This report has expired; ask the company for a new one.")
    ratings.count_view(session=session, report=report, event=event, now=utcnow())
    return report


@public_router.post(
    "/r/{token}/events", status_code=204, include_in_schema=False, dependencies=[PublicLimit]
)
async def report_event(token: str, request: Request, session: SessionDep) -> Response:
    """What the page's script saw: the recap started or watched to the end, Book pressed
    (``event`` in a form body, as ``navigator.sendBeacon`` sends it)."""
    form = await request.form()
    event = str(form.get("event") or "")
    if event not in ("video_started", "video_ended", "book_pressed"):
        raise Invalid("event must be video_started, video_ended or book_pressed.")
    await run_in_threadpool(_count, session, token, event)
    return Response(status_code=204)


@public_router.get("/r/{token}/-/long-image", include_in_schema=False, dependencies=[PublicLimit])
@writes
def open_long_image(token: str, session: SessionDep) -> RedirectResponse:
    """The page's 查看长图 link: counted, then on to the image itself."""
    report = _count(session, token, "long_image")
    return RedirectResponse(reports.asset_path(report, reports.long_name(report)), 303)


REPORT_SCRIPT = Path(__file__).with_name("static") / "report.js"


@public_router.get("/r/-/report.js", include_in_schema=False)
def report_script() -> FileResponse:
    """The report page's only script: counts for the recap and the Book button."""
    return FileResponse(
        REPORT_SCRIPT,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@public_router.get("/r/{token}/{name}", response_class=FileResponse, include_in_schema=False)
def report_file(token: str, name: str, request: Request, session: SessionDep) -> Response:
    """The report's own files (long image, MMS pictures, recap video), while it is valid."""
    report = reports.by_token(session=session, token=token)
    if report is not None and expiry.media_gone(report):
        return HTMLResponse(
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
    relative, content_type = found
    left = int((report.expires_at - utcnow()).total_seconds())
    # Names change with every build, so a file never changes under its name; but it must
    # not outlive the report in a cache.
    return downloads.stored_file(
        relative,
        media_type=content_type,
        headers={"Cache-Control": f"public, max-age={max(0, min(left, 31_536_000))}, immutable"},
        range_header=request.headers.get("range"),
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


@router.get("/ratings", response_model=list[RatingRead], tags=["reports"])
def list_ratings(
    session: SessionDep,
    tenant: TenantDep,
    since: Instant | None = None,
    until: Instant | None = None,
    score: Literal["good", "ok", "bad"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[RatingRead]:
    """Customers' satisfaction answers on their reports, the latest first."""
    return [
        RatingRead.model_validate(r)
        for r in ratings.list_ratings(
            session=session,
            tenant_id=tenant.id,
            since=since,
            until=until,
            score=score,
            limit=limit,
        )
    ]


@router.get(
    "/ratings/figures",
    response_model=RatingFiguresRead,
    tags=["reports"],
    responses={422: {"description": "The period ends before it starts."}},
)
def rating_figures(
    session: SessionDep,
    tenant: TenantDep,
    by: Literal["staff", "service", "month"] = "staff",
    since: Instant | None = None,
    until: Instant | None = None,
) -> RatingFiguresRead:
    """Ratings per staff member, service type or month (default: the last 90 days), with
    how fast the tickets of 不满意 ratings were first answered and resolved (medians)."""
    end = until or utcnow()
    start = since or end - dt.timedelta(days=90)
    groups = ratings.rating_figures(session=session, tenant=tenant, by=by, since=start, until=end)
    return RatingFiguresRead(
        by=by,
        since=start,
        until=end,
        groups=[
            RatingGroupRead.model_validate({**g.__dict__, "satisfied_percent": g.satisfied_percent})
            for g in groups
        ],
    )
