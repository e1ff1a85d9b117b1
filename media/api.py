from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from starlette.concurrency import run_in_threadpool

from access.roles import Permission
from campaigns import lifecycle as campaigns
from huifang import downloads
from huifang.db import utcnow
from huifang.deps import KeyActorDep, SessionDep, TenantDep, key_may
from huifang.errors import NotFound
from huifang.fields import Id
from huifang.openapi import refusals
from huifang.settings import get_settings
from huifang.templating import render
from huifang.throttle import PublicLimit
from huifang.worker import enqueue
from media import service, tasks
from media.models import EXPIRED, PROCESSING
from media.schemas import (
    MediaRead,
    PairRead,
    RenditionRead,
    WatermarkTemplateRead,
    WatermarkTemplateUpdate,
)
from media.upload import read_upload
from visits import service as visits
from visits.schemas import StaffRead

router = APIRouter(tags=["media"])
LOGO_MAX_BYTES = 2 * 1024 * 1024
public_router = APIRouter(tags=["public pages"])
# The staff card photo sits with the staff routes in the API document, as before.
staff_router = APIRouter(prefix="/staff", tags=["staff"])

_UPLOAD_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "phase"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "JPEG, PNG, WebP, HEIC/HEIF or AVIF photo (25 MB), "
                            "or MP4, MOV or WebM clip (200 MB).",
                        },
                        "phase": {
                            "type": "string",
                            "enum": ["before", "during", "after", "staff_report"],
                        },
                        "area": {
                            "type": "string",
                            "description": "Room or place, e.g. 客厅, 厨房.",
                        },
                        "note": {"type": "string"},
                    },
                }
            }
        },
    },
}


@router.post(
    "/visits/{visit_id}/media",
    response_model=MediaRead,
    status_code=202,
    openapi_extra=_UPLOAD_FORM,
    responses={
        200: {"description": "The same file was already uploaded to this visit."},
        413: {"description": "Too large."},
        415: {"description": "Not a photo or clip we take."},
        422: {"description": "Damaged, a missing field, or no capture consent."},
    },
)
async def upload_media(
    visit_id: Id, request: Request, response: Response, session: SessionDep, tenant: TenantDep
) -> MediaRead:
    """Upload a photo or clip of a visit: 202, then processed on the media queue.

    A photo is checked before the answer (a damaged one is refused here); a clip is read by
    ffmpeg on the queue, and a damaged one ends ``failed`` with the reason.
    """
    await run_in_threadpool(
        service.check_capture, session=session, tenant=tenant, visit_id=visit_id
    )  # a wrong visit, or one without the customer's permission, refused before the body
    settings = get_settings()
    staged = await read_upload(
        content_type=request.headers.get("content-type", ""),
        content_length=request.headers.get("content-length"),
        body=request.stream(),
        photo_max=settings.photo_max_bytes,
        clip_max=settings.clip_max_bytes,
    )
    media, created = await run_in_threadpool(
        service.accept_upload, session=session, tenant=tenant, visit_id=visit_id, staged=staged
    )
    if created and media.status == PROCESSING:
        enqueue(session, tasks.process_media, media_id=media.id)
    response.status_code = 202 if created else 200
    return MediaRead.of(media)


@router.get("/visits/{visit_id}/media", response_model=list[MediaRead])
def list_media(visit_id: Id, session: SessionDep, tenant: TenantDep) -> list[MediaRead]:
    return [
        MediaRead.of(m)
        for m in service.list_visit_media(session=session, tenant_id=tenant.id, visit_id=visit_id)
    ]


@router.get("/visits/{visit_id}/before-after", response_model=list[PairRead])
def list_pairs(visit_id: Id, session: SessionDep, tenant: TenantDep) -> list[PairRead]:
    """Per area, the latest before and after photos and their composite (服务前 / 服务后)."""
    visits.get_visit(session=session, tenant_id=tenant.id, visit_id=visit_id)
    result = []
    for area, before, after in service.pairs(session=session, visit_id=visit_id):
        made = next((r for r in after.renditions if r.kind == service.COMPOSITE), None)
        result.append(
            PairRead(
                area=area,
                before_media_id=before.id,
                after_media_id=after.id,
                composite=RenditionRead.of(made) if made else None,
            )
        )
    return result


@router.get("/media/{media_id}", response_model=MediaRead)
def read_media(media_id: Id, session: SessionDep, tenant: TenantDep) -> MediaRead:
    """Status, renditions with URLs and byte sizes, SHA-256 and the verification code."""
    return MediaRead.of(service.get_media(session=session, tenant_id=tenant.id, media_id=media_id))


@router.get("/media/{media_id}/original", response_class=FileResponse, responses=refusals(410))
def download_original(
    media_id: Id, request: Request, session: SessionDep, tenant: TenantDep
) -> Response:
    """The original file as uploaded, for the company only (never public)."""
    media = service.get_media(session=session, tenant_id=tenant.id, media_id=media_id)
    if media.original_deleted_at is not None:
        raise HTTPException(
            410,
            f"The original was deleted on {media.original_deleted_at:%Y-%m-%d} "
            f"(the company's retention period, or the customer's erasure).",
        )
    return downloads.stored_file(
        media.original_path,
        media_type=media.mime,
        filename=f"media-{media.id}{PurePosixPath(media.original_path).suffix}",
        headers={"Cache-Control": "private, no-store"},
        range_header=request.headers.get("range"),
        presign_seconds=300,
    )


@router.get("/watermark", response_model=WatermarkTemplateRead)
def read_watermark(session: SessionDep, tenant: TenantDep) -> WatermarkTemplateRead:
    return WatermarkTemplateRead.of(service.template_for(session=session, tenant_id=tenant.id))


@router.put(
    "/watermark", response_model=WatermarkTemplateRead, dependencies=[key_may(Permission.SETTINGS)]
)
def update_watermark(
    body: WatermarkTemplateUpdate, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> WatermarkTemplateRead:
    """Where the watermark sits and how large; what it says always comes from our records."""
    return WatermarkTemplateRead.of(
        service.update_template(
            session=session,
            tenant_id=tenant.id,
            changes=body.model_dump(exclude_unset=True),
            actor=actor,
        )
    )


@router.put(
    "/watermark/logo",
    response_model=WatermarkTemplateRead,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "description": "PNG (transparency kept), JPEG or WebP, 2 MB.",
                            },
                        },
                    }
                }
            },
        }
    },
    dependencies=[key_may(Permission.SETTINGS)],
)
async def upload_logo(
    request: Request, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> WatermarkTemplateRead:
    """The company logo printed beside the watermark text."""
    staged = await read_upload(
        content_type=request.headers.get("content-type", ""),
        content_length=request.headers.get("content-length"),
        body=request.stream(),
        photo_max=LOGO_MAX_BYTES,
        clip_max=LOGO_MAX_BYTES,
    )
    template = await run_in_threadpool(
        service.set_logo, session=session, tenant_id=tenant.id, staged=staged, actor=actor
    )
    return WatermarkTemplateRead.of(template)


@staff_router.put(
    "/{staff_id}/photo",
    response_model=StaffRead,
    responses={
        413: {"description": "Over 10 MB."},
        415: {"description": "Not a photo."},
        422: {"description": "Damaged, or no file."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "description": "JPEG, PNG, WebP or HEIC photo of the staff member, "
                                "10 MB; "
                                "kept as a 512 px square.",
                            },
                        },
                    }
                }
            },
        }
    },
)
async def upload_staff_photo(
    staff_id: Id, request: Request, session: SessionDep, tenant: TenantDep
) -> StaffRead:
    """The photo on the staff card of visit reports."""
    await run_in_threadpool(
        visits.get_staff, session=session, tenant_id=tenant.id, staff_id=staff_id
    )  # a wrong id is refused before the body is read
    staged = await read_upload(
        content_type=request.headers.get("content-type", ""),
        content_length=request.headers.get("content-length"),
        body=request.stream(),
        photo_max=service.STAFF_PHOTO_MAX_BYTES,
        clip_max=service.STAFF_PHOTO_MAX_BYTES,
    )
    staff = await run_in_threadpool(
        service.set_staff_photo,
        session=session,
        tenant_id=tenant.id,
        staff_id=staff_id,
        staged=staged,
    )
    return StaffRead.model_validate(staff)


# How long a cache may keep a rendition that no valid report holds: the company's own view
# of a visit before its report, or a campaign's MMS picture, which must not outlive the campaign.
UNBOUND_MAX_AGE = 3600
YEAR = 31_536_000


@public_router.get("/m/{name}", response_class=FileResponse, include_in_schema=False)
def public_rendition(name: str, request: Request, session: SessionDep) -> Response:
    """A rendition by its unguessable token (report pages, MMS): ``/m/{token}.jpg`` for an
    image, ``/m/{token}.mp4`` for a clip's video. Originals are never here.

    A rendition of a visit with a report lives as long as the report (410 after), unless a
    campaign that can still send has it as its MMS picture.
    """
    rendition = service.rendition_for_link(session=session, name=name)
    if rendition is None:
        raise NotFound("This image or video link is not valid.")
    if rendition.media.status == EXPIRED:
        return HTMLResponse(
            render("media", "media_deleted.html"),
            status_code=410,
            headers={"Cache-Control": "private, no-cache"},
        )
    now = utcnow()
    until = service.link_expires_at(session=session, rendition=rendition)
    if until is not None and until > now:
        cache = f"public, max-age={min(int((until - now).total_seconds()), YEAR)}, immutable"
    elif until is None or campaigns.picture_in_use(session=session, rendition=rendition):
        cache = f"public, max-age={UNBOUND_MAX_AGE}"
    else:
        raise HTTPException(
            410, "The report this photo belongs to has expired; ask the company for a new one."
        )
    return downloads.stored_file(
        rendition.path,
        media_type=rendition.content_type,
        headers={"Cache-Control": cache},
        range_header=request.headers.get("range"),
    )


_HTML: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}


@public_router.get(
    "/v/{code}",
    response_class=HTMLResponse,
    dependencies=[PublicLimit],
    responses={
        404: {"description": "No photo has this code (a page saying so).", "content": _HTML}
    },
)
def verify_page(code: str, session: SessionDep) -> HTMLResponse:
    """The facts behind a watermark, so a customer can check a photo was not edited."""
    media = service.by_code(session=session, code=code)
    if media is None:
        html = render("media", "verify_missing.html", code=code[:40])
        return HTMLResponse(html, status_code=404)
    return HTMLResponse(
        render("media", "verify.html", **service.verification_facts(session=session, media=media))
    )
