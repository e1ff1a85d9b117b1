"""Routes of resumable uploads (tus 1.0): thin, over ``media.resumable``.

``OPTIONS /v1/uploads`` says what the server speaks; ``POST /v1/visits/{id}/uploads`` opens
an upload (``Location`` is its address); ``HEAD /v1/uploads/{id}`` gives ``Upload-Offset``;
``PATCH`` sends a piece at that offset; ``DELETE`` gives up; ``GET`` tells, in JSON, what
became of it. Each route opens and commits its own short transactions
(``UnitOfWorkDep``), so none is open while a phone's bytes trickle in.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from huifang import deps
from huifang.deps import UnitOfWorkDep
from huifang.fields import Id
from huifang.openapi import DESCRIPTIONS
from media import resumable, tus
from media.schemas import UploadRead
from media.tus import (
    Length,
    Offset,
    TusResumable,
    UploadId,
    cancel,
    check_version,
    created_headers,
    offset_response,
    open_upload,
    options_response,
    receive_piece,
)
from tenancy.models import Tenant

router = APIRouter(tags=["uploads"])


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


TenantDep = Annotated[Tenant, Depends(upload_tenant)]


def _refusals(*statuses: int, **own: str) -> dict[int | str, dict[str, Any]]:
    found: dict[int | str, dict[str, Any]] = {
        status: {"description": DESCRIPTIONS[status]} for status in statuses
    }
    found[401] = {"description": DESCRIPTIONS[401]}
    found[412] = {
        "description": "No 'Tus-Resumable: 1.0.0' header.",
        "headers": {"Tus-Version": {"schema": {"type": "string"}}},
    }
    for status, text in own.items():
        found[int(status.removeprefix("s"))] = {"description": text}
    return found


_OFFSET_HEADERS = {
    name: {"schema": {"type": "string"}, "description": text}
    for name, text in (("Tus-Resumable", "1.0.0"), ("Upload-Offset", "The bytes the server holds."))
}


@router.options(
    "/uploads",
    status_code=204,
    response_class=Response,
    responses={
        204: {
            "description": "What this server speaks (tus 1.0.0) and the largest file it takes.",
            "headers": {
                name: {"schema": {"type": "string"}}
                for name in ("Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size")
            },
        },
        401: {"description": DESCRIPTIONS[401]},
    },
)
def upload_options(tenant: TenantDep) -> Response:
    """tus discovery: version, extensions (creation, expiration, termination), largest size."""
    return options_response()


@router.post(
    "/visits/{visit_id}/uploads",
    response_model=UploadRead,
    status_code=201,
    responses=_refusals(
        413,
        s201="Created: its address is in Location.",
        s422="No phase, an area too long, an empty file, or unreadable metadata.",
    ),
)
def create_upload(
    visit_id: Id,
    response: Response,
    tenant: TenantDep,
    unit_of_work: UnitOfWorkDep,
    upload_length: Length = None,
    upload_metadata: Annotated[
        str | None,
        Header(
            max_length=resumable.METADATA_MAX,
            description="tus metadata, 'key base64value' pairs: phase (before, "
            "during, after, staff_report), area, note, filename.",
        ),
    ] = None,
    tus_resumable: TusResumable = None,
) -> UploadRead:
    """Open a resumable upload of a photo or clip for a visit (tus creation). Send its
    bytes with PATCH to the address in ``Location``."""
    check_version(tus_resumable)
    upload = open_upload(
        unit_of_work, tenant, visit_id=visit_id, length=upload_length, metadata=upload_metadata
    )
    response.headers.update(created_headers(upload, "/v1/uploads/"))
    return UploadRead.of(upload)


@router.head(
    "/uploads/{upload_id}",
    status_code=200,
    response_class=Response,
    responses=_refusals(404, 410)
    | {
        200: {
            "description": "How many bytes the server holds (Upload-Offset).",
            "headers": _OFFSET_HEADERS,
        }
    },
)
def upload_offset(
    upload_id: UploadId,
    tenant: TenantDep,
    unit_of_work: UnitOfWorkDep,
    tus_resumable: TusResumable = None,
) -> Response:
    """Where to go on from (tus): ``Upload-Offset`` is the byte count the server holds."""
    check_version(tus_resumable)
    return offset_response(unit_of_work, tenant.id, upload_id)


@router.get("/uploads/{upload_id}", response_model=UploadRead, responses=_refusals(404))
def read_upload(upload_id: UploadId, tenant: TenantDep, unit_of_work: UnitOfWorkDep) -> UploadRead:
    """An upload in JSON: bytes held, and once done its media, or why it was refused."""
    with unit_of_work(read_only=True) as session:  # type: ignore[call-arg]
        return UploadRead.of(
            resumable.get_upload(session=session, tenant_id=tenant.id, token=upload_id)
        )


@router.patch(
    "/uploads/{upload_id}",
    status_code=204,
    response_class=Response,
    responses=_refusals(
        404, 409, 410, 413, 415, s422="The file arrived whole but is damaged (refused for good)."
    )
    | {
        204: {
            "description": "The piece is kept; Upload-Offset is the new offset. "
            "Upload-Media-Id once the file is complete.",
            "headers": _OFFSET_HEADERS,
        }
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {tus.OCTETS: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def send_piece(
    upload_id: UploadId,
    request: Request,
    tenant: TenantDep,
    unit_of_work: UnitOfWorkDep,
    upload_offset: Offset = None,
    content_type: Annotated[str | None, Header()] = None,
    tus_resumable: TusResumable = None,
) -> Response:
    """Send the next piece of the file at ``Upload-Offset`` (tus core).

    409 when the offset is not the server's (ask with HEAD); 413 for a file over the cap of
    its type (refused for good) or a piece past the announced length (only the piece is
    dropped); 415 for a file that is no photo or clip we take. Bytes that arrived before a
    dropped connection are kept. The piece that completes the file hands it to processing:
    the same file sent before to the visit gives that media (``Upload-Media-Id``).
    """
    check_version(tus_resumable)
    return await receive_piece(
        request,
        unit_of_work,
        tenant,
        token=upload_id,
        offset=upload_offset,
        content_type=content_type,
    )


@router.delete(
    "/uploads/{upload_id}", status_code=204, response_class=Response, responses=_refusals(404)
)
def cancel_upload(
    upload_id: UploadId,
    tenant: TenantDep,
    unit_of_work: UnitOfWorkDep,
    tus_resumable: TusResumable = None,
) -> Response:
    """Give up an upload (tus termination); its bytes are removed. A media it already
    became stays."""
    check_version(tus_resumable)
    return cancel(unit_of_work, tenant.id, upload_id)
