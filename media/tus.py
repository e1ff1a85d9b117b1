"""The edge of resumable uploads (tus 1.0), shared by the routes that speak it: ``/v1``
for programs with an API key (``media.resumable_api``) and ``/staff`` for the phone signed in
by its session (``office.staff_uploads``). Each step opens and commits its own short
transaction, so none is open while a phone's bytes trickle in; the logic is
``media.resumable``'s.
"""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import Header, HTTPException, Path, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from huifang.db import utcnow
from huifang.deps import UnitOfWork
from huifang.errors import HuifangError, UnsupportedType
from huifang.fields import MAX_ID
from huifang.settings import get_settings
from huifang.worker import enqueue
from media import resumable, tasks
from media.models import PROCESSING, ResumableUpload
from tenancy.models import Tenant

OCTETS = "application/offset+octet-stream"


UploadId = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9_-]{16,40}$",
        description="The upload's id, from the Location of its creation.",
    ),
]


Length = Annotated[int | None, Header(ge=0, le=MAX_ID, description="The file's size in bytes.")]


Offset = Annotated[
    int | None, Header(ge=0, le=MAX_ID, description="Where this piece starts: the server's offset.")
]


TusResumable = Annotated[str | None, Header(description="The protocol version: 1.0.0.")]


def check_version(tus_resumable: str | None) -> None:
    """412 unless the client speaks our tus version (checked after the request's fields)."""
    if tus_resumable != resumable.TUS_VERSION:
        raise HTTPException(
            412,
            f"Send 'Tus-Resumable: {resumable.TUS_VERSION}': this server speaks tus 1.0.0.",
            headers={"Tus-Version": resumable.TUS_VERSION},
        )


def expires(upload: ResumableUpload) -> str:
    return format_datetime(upload.expires_at.astimezone(dt.UTC), usegmt=True)


def offset_headers(upload: ResumableUpload) -> dict[str, str]:
    headers = {
        "Tus-Resumable": resumable.TUS_VERSION,
        "Upload-Offset": str(upload.received),
        "Upload-Length": str(upload.length),
        "Cache-Control": "no-store",
    }
    if upload.status == resumable.RECEIVING:
        headers["Upload-Expires"] = expires(upload)
    if upload.media_id is not None:
        headers["Upload-Media-Id"] = str(upload.media_id)
    return headers


def open_upload(
    unit_of_work: UnitOfWork,
    tenant: Tenant,
    *,
    visit_id: int,
    length: int | None,
    metadata: str | None,
) -> ResumableUpload:
    """tus creation, in a transaction of its own (the /v1 route's and the staff phone's)."""
    settings = get_settings()
    with unit_of_work() as session:
        return resumable.create_upload(
            session=session,
            tenant=tenant,
            visit_id=visit_id,
            length=length,
            metadata=resumable.parse_metadata(metadata),
            photo_max=settings.photo_max_bytes,
            clip_max=settings.clip_max_bytes,
            now=utcnow(),
        )


def created_headers(upload: ResumableUpload, base: str) -> dict[str, str]:
    return {
        "Location": f"{base}{upload.token}",
        "Tus-Resumable": resumable.TUS_VERSION,
        "Upload-Expires": expires(upload),
    }


def open_existing(unit_of_work: UnitOfWork, tenant_id: int, token: str) -> ResumableUpload:
    with unit_of_work(read_only=True) as session:  # type: ignore[call-arg]
        upload = resumable.get_upload(session=session, tenant_id=tenant_id, token=token)
        resumable.check_open(upload, now=utcnow())
        return upload


def offset_response(unit_of_work: UnitOfWork, tenant_id: int, token: str) -> Response:
    upload = open_existing(unit_of_work, tenant_id, token)
    return Response(status_code=200, headers=offset_headers(upload))


def in_unit(unit_of_work: UnitOfWork, work: Any, **kwargs: Any) -> Any:
    with unit_of_work() as session:
        return work(session=session, **kwargs)


def hand_over(
    unit_of_work: UnitOfWork, tenant: Tenant, upload: ResumableUpload
) -> resumable.Handover:
    now = utcnow()
    try:
        assembly = resumable.assemble(upload)  # files only: no transaction open meanwhile
    except HuifangError as exc:
        in_unit(unit_of_work, resumable.refuse, upload_id=upload.id, reason=exc.detail, now=now)
        raise
    with unit_of_work() as session:
        done = resumable.hand_over(session=session, tenant=tenant, assembly=assembly, now=now)
        if done.created and done.media is not None and done.media.status == PROCESSING:
            enqueue(session, tasks.process_media, media_id=done.media.id)
    return done


async def receive_piece(
    request: Request,
    unit_of_work: UnitOfWork,
    tenant: Tenant,
    *,
    token: str,
    offset: int | None,
    content_type: str | None,
) -> Response:
    """A tus PATCH: the piece streamed to a piece of its own (a file here, or an object in
    the bucket), recorded, the file handed over when complete (the /v1 route's and the staff
    phone's). What may wait on the network runs off the event loop."""
    settings = get_settings()
    upload_id = token
    upload_offset = offset
    opening = await run_in_threadpool(
        in_unit,
        unit_of_work,
        resumable.open_piece,
        tenant_id=tenant.id,
        token=upload_id,
        offset=upload_offset,
        now=utcnow(),
    )
    if (content_type or "").split(";")[0].strip().lower() != OCTETS:
        raise UnsupportedType(f"Send each piece as {OCTETS} (tus 1.0).")
    receiver = resumable.Receiver(
        opening=opening, photo_max=settings.photo_max_bytes, clip_max=settings.clip_max_bytes
    )
    try:
        await run_in_threadpool(receiver.begin)
        try:
            async for chunk in request.stream():
                if receiver.feed(chunk):
                    await run_in_threadpool(receiver.flush)
        except ClientDisconnect:
            pass  # keep what arrived: the client asks for the offset and goes on from it
        await run_in_threadpool(receiver.end)
        upload = await run_in_threadpool(
            in_unit, unit_of_work, resumable.record_piece, receiver=receiver, now=utcnow()
        )
    except HuifangError as exc:
        await run_in_threadpool(receiver.discard)
        if receiver.refuses_file:
            await run_in_threadpool(
                in_unit,
                unit_of_work,
                resumable.refuse,
                upload_id=opening.upload_id,
                reason=exc.detail,
                now=utcnow(),
            )
        raise
    except BaseException:
        receiver.discard()
        raise
    if resumable.is_complete(upload):
        done = await run_in_threadpool(hand_over, unit_of_work, tenant, upload)
        if done.refusal is not None:
            raise done.refusal
        upload = done.upload
    return Response(status_code=204, headers=offset_headers(upload))


def options_response() -> Response:
    """tus discovery: version, extensions (creation, expiration, termination), largest size."""
    settings = get_settings()
    return Response(
        status_code=204,
        headers={
            "Tus-Resumable": resumable.TUS_VERSION,
            "Tus-Version": resumable.TUS_VERSION,
            "Tus-Extension": resumable.TUS_EXTENSIONS,
            "Tus-Max-Size": str(max(settings.photo_max_bytes, settings.clip_max_bytes)),
        },
    )


def cancel(unit_of_work: UnitOfWork, tenant_id: int, token: str) -> Response:
    """tus termination: the upload and its bytes go (a media it became stays)."""
    in_unit(unit_of_work, resumable.terminate, tenant_id=tenant_id, token=token)
    return Response(status_code=204, headers={"Tus-Resumable": resumable.TUS_VERSION})
