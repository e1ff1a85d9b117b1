"""Routes of resumable uploads (tus 1.0): thin, over ``media.resumable``.

``OPTIONS /v1/uploads`` says what the server speaks; ``POST /v1/visits/{id}/uploads`` opens
an upload (``Location`` is its address); ``HEAD /v1/uploads/{id}`` gives ``Upload-Offset``;
``PATCH`` sends a piece at that offset; ``DELETE`` gives up; ``GET`` tells, in JSON, what
became of it. Each route opens and commits its own short transactions
(``UnitOfWorkDep``), so none is open while a phone's bytes trickle in.
"""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from huifang import deps
from huifang.db import utcnow
from huifang.deps import UnitOfWork, UnitOfWorkDep
from huifang.errors import HuifangError, UnsupportedType
from huifang.fields import MAX_ID, Id
from huifang.openapi import DESCRIPTIONS
from huifang.settings import get_settings
from huifang.worker import enqueue
from media import resumable, tasks
from media.models import PROCESSING, ResumableUpload
from media.schemas import UploadRead
from tenancy.models import Tenant

router = APIRouter(tags=["uploads"])

OCTETS = "application/offset+octet-stream"
UploadId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{16,40}$",
                               description="The upload's id, from the Location of its creation.")]
Length = Annotated[int | None, Header(ge=0, le=MAX_ID, description="The file's size in bytes.")]
Offset = Annotated[int | None, Header(ge=0, le=MAX_ID,
                               description="Where this piece starts: the server's offset.")]

_bearer = HTTPBearer(auto_error=False, description="An API key from `huifang tenant create`.")


def upload_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    unit_of_work: UnitOfWorkDep,
) -> Tenant:
    """The company behind the API key, read in a transaction closed at once (a request's
    own session would stay open for as long as the piece takes to arrive)."""
    with unit_of_work(read_only=True) as session:  # type: ignore[call-arg]
        return deps.current_tenant(request, session, credentials, unit_of_work)


TusResumable = Annotated[str | None, Header(description="The protocol version: 1.0.0.")]


def check_version(tus_resumable: str | None) -> None:
    """412 unless the client speaks our tus version (checked after the request's fields)."""
    if tus_resumable != resumable.TUS_VERSION:
        raise HTTPException(412, f"Send 'Tus-Resumable: {resumable.TUS_VERSION}': this server "
                                 "speaks tus 1.0.0.",
                            headers={"Tus-Version": resumable.TUS_VERSION})


TenantDep = Annotated[Tenant, Depends(upload_tenant)]


def _refusals(*statuses: int, **own: str) -> dict[int | str, dict[str, Any]]:
    found: dict[int | str, dict[str, Any]] = {
        status: {"description": DESCRIPTIONS[status]} for status in statuses}
    found[401] = {"description": DESCRIPTIONS[401]}
    found[412] = {"description": "No 'Tus-Resumable: 1.0.0' header.",
                  "headers": {"Tus-Version": {"schema": {"type": "string"}}}}
    for status, text in own.items():
        found[int(status.removeprefix("s"))] = {"description": text}
    return found


def _expires(upload: ResumableUpload) -> str:
    return format_datetime(upload.expires_at.astimezone(dt.UTC), usegmt=True)


def _headers(upload: ResumableUpload) -> dict[str, str]:
    headers = {"Tus-Resumable": resumable.TUS_VERSION, "Upload-Offset": str(upload.received),
               "Upload-Length": str(upload.length), "Cache-Control": "no-store"}
    if upload.status == resumable.RECEIVING:
        headers["Upload-Expires"] = _expires(upload)
    if upload.media_id is not None:
        headers["Upload-Media-Id"] = str(upload.media_id)
    return headers


_OFFSET_HEADERS = {name: {"schema": {"type": "string"}, "description": text} for name, text in (
    ("Tus-Resumable", "1.0.0"), ("Upload-Offset", "The bytes the server holds."))}


@router.options("/uploads", status_code=204, response_class=Response, responses={
    204: {"description": "What this server speaks (tus 1.0.0) and the largest file it takes.",
          "headers": {name: {"schema": {"type": "string"}} for name in (
              "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size")}},
    401: {"description": DESCRIPTIONS[401]}})
def upload_options(tenant: TenantDep) -> Response:
    """tus discovery: version, extensions (creation, expiration, termination), largest size."""
    settings = get_settings()
    return Response(status_code=204, headers={
        "Tus-Resumable": resumable.TUS_VERSION, "Tus-Version": resumable.TUS_VERSION,
        "Tus-Extension": resumable.TUS_EXTENSIONS,
        "Tus-Max-Size": str(max(settings.photo_max_bytes, settings.clip_max_bytes))})


@router.post("/visits/{visit_id}/uploads", response_model=UploadRead, status_code=201,
             responses=_refusals(
                 413, s201="Created: its address is in Location.",
                 s422="No phase, an area too long, an empty file, or unreadable metadata."))
def create_upload(visit_id: Id, response: Response, tenant: TenantDep,
                  unit_of_work: UnitOfWorkDep, upload_length: Length = None,
                  upload_metadata: Annotated[str | None, Header(
                      max_length=resumable.METADATA_MAX,
                      description="tus metadata, 'key base64value' pairs: phase (before, "
                                  "during, after, staff_report), area, note, filename.")] = None,
                  tus_resumable: TusResumable = None) -> UploadRead:
    """Open a resumable upload of a photo or clip for a visit (tus creation). Send its
    bytes with PATCH to the address in ``Location``."""
    check_version(tus_resumable)
    settings = get_settings()
    with unit_of_work() as session:
        upload = resumable.create_upload(
            session=session, tenant=tenant, visit_id=visit_id, length=upload_length,
            metadata=resumable.parse_metadata(upload_metadata),
            photo_max=settings.photo_max_bytes, clip_max=settings.clip_max_bytes, now=utcnow())
    response.headers.update({"Location": f"/v1/uploads/{upload.token}",
                             "Tus-Resumable": resumable.TUS_VERSION,
                             "Upload-Expires": _expires(upload)})
    return UploadRead.of(upload)


def _open_upload(unit_of_work: UnitOfWork, tenant_id: int, token: str) -> ResumableUpload:
    with unit_of_work(read_only=True) as session:  # type: ignore[call-arg]
        upload = resumable.get_upload(session=session, tenant_id=tenant_id, token=token)
        resumable.check_open(upload, now=utcnow())
        return upload


@router.head("/uploads/{upload_id}", status_code=200, response_class=Response,
             responses=_refusals(404, 410) | {200: {
                 "description": "How many bytes the server holds (Upload-Offset).",
                 "headers": _OFFSET_HEADERS}})
def upload_offset(upload_id: UploadId, tenant: TenantDep,
                  unit_of_work: UnitOfWorkDep, tus_resumable: TusResumable = None) -> Response:
    """Where to go on from (tus): ``Upload-Offset`` is the byte count the server holds."""
    check_version(tus_resumable)
    upload = _open_upload(unit_of_work, tenant.id, upload_id)
    return Response(status_code=200, headers=_headers(upload))


@router.get("/uploads/{upload_id}", response_model=UploadRead, responses=_refusals(404))
def read_upload(upload_id: UploadId, tenant: TenantDep,
                unit_of_work: UnitOfWorkDep) -> UploadRead:
    """An upload in JSON: bytes held, and once done its media, or why it was refused."""
    with unit_of_work(read_only=True) as session:  # type: ignore[call-arg]
        return UploadRead.of(resumable.get_upload(session=session, tenant_id=tenant.id,
                                                  token=upload_id))


def _in_unit(unit_of_work: UnitOfWork, work: Any, **kwargs: Any) -> Any:
    with unit_of_work() as session:
        return work(session=session, **kwargs)


def _hand_over(unit_of_work: UnitOfWork, tenant: Tenant,
               upload: ResumableUpload) -> resumable.Handover:
    now = utcnow()
    try:
        assembly = resumable.assemble(upload)  # files only: no transaction open meanwhile
    except HuifangError as exc:
        _in_unit(unit_of_work, resumable.refuse, upload_id=upload.id, reason=exc.detail, now=now)
        raise
    with unit_of_work() as session:
        done = resumable.hand_over(session=session, tenant=tenant, assembly=assembly, now=now)
        if done.created and done.media is not None and done.media.status == PROCESSING:
            enqueue(session, tasks.process_media, media_id=done.media.id)
    return done


@router.patch("/uploads/{upload_id}", status_code=204, response_class=Response,
              responses=_refusals(
                  404, 409, 410, 413, 415,
                  s422="The file arrived whole but is damaged (refused for good).")
              | {204: {"description": "The piece is kept; Upload-Offset is the new offset. "
                                      "Upload-Media-Id once the file is complete.",
                       "headers": _OFFSET_HEADERS}},
              openapi_extra={"requestBody": {"required": True, "content": {OCTETS: {
                  "schema": {"type": "string", "format": "binary"}}}}})
async def send_piece(upload_id: UploadId, request: Request, tenant: TenantDep,
                     unit_of_work: UnitOfWorkDep, upload_offset: Offset = None,
                     content_type: Annotated[str | None, Header()] = None,
                     tus_resumable: TusResumable = None) -> Response:
    """Send the next piece of the file at ``Upload-Offset`` (tus core).

    409 when the offset is not the server's (ask with HEAD); 413 for a file over the cap of
    its type (refused for good) or a piece past the announced length (only the piece is
    dropped); 415 for a file that is no photo or clip we take. Bytes that arrived before a
    dropped connection are kept. The piece that completes the file hands it to processing:
    the same file sent before to the visit gives that media (``Upload-Media-Id``).
    """
    check_version(tus_resumable)
    settings = get_settings()
    opening = await run_in_threadpool(
        _in_unit, unit_of_work, resumable.open_piece, tenant_id=tenant.id, token=upload_id,
        offset=upload_offset, now=utcnow())
    if (content_type or "").split(";")[0].strip().lower() != OCTETS:
        raise UnsupportedType(f"Send each piece as {OCTETS} (tus 1.0).")
    receiver = resumable.Receiver(opening=opening, photo_max=settings.photo_max_bytes,
                                  clip_max=settings.clip_max_bytes)
    try:
        receiver.begin()
        try:
            async for chunk in request.stream():
                receiver.feed(chunk)
        except ClientDisconnect:
            pass  # keep what arrived: the client asks for the offset and goes on from it
        receiver.end()
        upload = await run_in_threadpool(_in_unit, unit_of_work, resumable.record_piece,
                                         receiver=receiver, now=utcnow())
    except HuifangError as exc:
        receiver.discard()
        if receiver.refuses_file:
            await run_in_threadpool(_in_unit, unit_of_work, resumable.refuse,
                                    upload_id=opening.upload_id, reason=exc.detail, now=utcnow())
        raise
    except BaseException:
        receiver.discard()
        raise
    if resumable.is_complete(upload):
        done = await run_in_threadpool(_hand_over, unit_of_work, tenant, upload)
        if done.refusal is not None:
            raise done.refusal
        upload = done.upload
    return Response(status_code=204, headers=_headers(upload))


@router.delete("/uploads/{upload_id}", status_code=204, response_class=Response,
               responses=_refusals(404))
def cancel_upload(upload_id: UploadId, tenant: TenantDep,
                  unit_of_work: UnitOfWorkDep, tus_resumable: TusResumable = None) -> Response:
    """Give up an upload (tus termination); its bytes are removed. A media it already
    became stays."""
    check_version(tus_resumable)
    _in_unit(unit_of_work, resumable.terminate, tenant_id=tenant.id, token=upload_id)
    return Response(status_code=204, headers={"Tus-Resumable": resumable.TUS_VERSION})
