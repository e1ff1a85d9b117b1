"""Resumable uploads from the staff phone (tus 1.0 under ``/staff``), signed in by the
session cookie instead of an API key.

Why routes of their own rather than letting the cookie into ``/v1/uploads``: ``/v1`` is
the API of programs, with a company-wide key and a body refused unread without one; a
cookie there would make every ``/v1`` route a target of cross-site requests. Here the
same service runs (``media.resumable`` through the tus edge of ``media.tus``),
with three checks of its own: the session is a staff member's, the visit (or the upload's
visit) is theirs (403 otherwise), and every write carries the session's CSRF token in
``X-CSRF-Token``. Refusals are JSON ``{detail}`` in Chinese, for the page to show.

Like ``/v1``, no transaction is open while a piece's bytes arrive: who is asking is read in
a short transaction of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from access.roles import Permission, may
from accounts import service as accounts
from huifang.deps import UnitOfWork, UnitOfWorkDep
from huifang.errors import HuifangError
from huifang.fields import Id
from huifang.i18n import _
from media import resumable, tus
from media.models import ResumableUpload
from media.schemas import UploadRead
from office import web
from staff import day as staff_day
from staff.words import chinese, in_chinese
from tenancy.models import Tenant

router = APIRouter()

BASE = "/staff/uploads/"


class Refused(HuifangError):
    """A refusal of the staff routes (Chinese already)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status


@dataclass(frozen=True)
class Uploader:
    tenant: Tenant
    staff_id: int
    user_id: int
    csrf_token: str


def who(request: Request, unit_of_work: UnitOfWork, *, header: bool = True) -> Uploader:
    """The signed-in staff member, read in a transaction closed at once; writes must carry
    the session's CSRF token in ``X-CSRF-Token`` (``header=False``: the caller checks the
    token where it comes, a form's field)."""
    token = web.session_token(request)
    with unit_of_work(read_only=True) as session:  # type: ignore[call-arg]
        found = accounts.session_user(session=session, token=token) if token else None
        if found is None:
            raise Refused(401, _("登录已过期，请重新打开店里发给你的登录链接。"))
        user, row = found
        if not may(user.role, Permission.OWN_VISITS) or user.staff_id is None:
            raise Refused(403, _("只有服务人员的账号可以从手机上传服务照片。"))
        tenant = session.get(Tenant, user.tenant_id)
        if tenant is None:
            raise Refused(401, _("登录已过期，请重新打开店里发给你的登录链接。"))
        uploader = Uploader(tenant, user.staff_id, user.id, row.csrf_token)
    if (
        header
        and request.method not in ("GET", "HEAD", "OPTIONS")
        and not web.header_token_ok(request, uploader.csrf_token)
    ):
        raise Refused(403, _("页面已过期，请刷新页面后重试。"))
    return uploader


def uploader_dep(request: Request, unit_of_work: UnitOfWorkDep) -> Uploader:
    return who(request, unit_of_work)


StaffDep = Annotated[Uploader, Depends(uploader_dep)]


def check_visit(unit_of_work: UnitOfWork, uploader: Uploader, visit_id: int) -> None:
    with unit_of_work(read_only=True) as session:  # type: ignore[call-arg]
        staff_day.own_visit(
            session=session,
            tenant_id=uploader.tenant.id,
            staff_id=uploader.staff_id,
            visit_id=visit_id,
        )


def check_upload(unit_of_work: UnitOfWork, uploader: Uploader, token: str) -> ResumableUpload:
    """The upload, if its visit is this staff member's."""
    with unit_of_work(read_only=True) as session:  # type: ignore[call-arg]
        upload = resumable.get_upload(session=session, tenant_id=uploader.tenant.id, token=token)
        staff_day.own_visit(
            session=session,
            tenant_id=uploader.tenant.id,
            staff_id=uploader.staff_id,
            visit_id=upload.visit_id,
        )
        return upload


def _chinese_upload(upload: ResumableUpload) -> UploadRead:
    read = UploadRead.of(upload)
    if read.failure_reason:
        read.failure_reason = chinese(read.failure_reason, 422)
    return read


@router.options("/uploads", status_code=204, response_class=Response)
def options(uploader: StaffDep) -> Response:
    return tus.options_response()


@router.post("/visits/{visit_id}/uploads", status_code=201)
def create(
    visit_id: Id,
    response: Response,
    uploader: StaffDep,
    unit_of_work: UnitOfWorkDep,
    upload_length: tus.Length = None,
    upload_metadata: Annotated[str | None, Header(max_length=resumable.METADATA_MAX)] = None,
    tus_resumable: tus.TusResumable = None,
) -> UploadRead:
    tus.check_version(tus_resumable)
    try:
        check_visit(unit_of_work, uploader, visit_id)
        upload = tus.open_upload(
            unit_of_work,
            uploader.tenant,
            visit_id=visit_id,
            length=upload_length,
            metadata=upload_metadata,
        )
    except HuifangError as exc:
        raise in_chinese(exc) from None
    response.headers.update(tus.created_headers(upload, BASE))
    return UploadRead.of(upload)


@router.head("/uploads/{upload_id}", status_code=200, response_class=Response)
def offset(
    upload_id: tus.UploadId,
    uploader: StaffDep,
    unit_of_work: UnitOfWorkDep,
    tus_resumable: tus.TusResumable = None,
) -> Response:
    tus.check_version(tus_resumable)
    try:
        check_upload(unit_of_work, uploader, upload_id)
        return tus.offset_response(unit_of_work, uploader.tenant.id, upload_id)
    except HuifangError as exc:
        raise in_chinese(exc) from None


@router.get("/uploads/{upload_id}")
def read(upload_id: tus.UploadId, uploader: StaffDep, unit_of_work: UnitOfWorkDep) -> UploadRead:
    try:
        return _chinese_upload(check_upload(unit_of_work, uploader, upload_id))
    except HuifangError as exc:
        raise in_chinese(exc) from None


@router.patch("/uploads/{upload_id}", status_code=204, response_class=Response)
async def send_piece(
    upload_id: tus.UploadId,
    request: Request,
    uploader: StaffDep,
    unit_of_work: UnitOfWorkDep,
    upload_offset: tus.Offset = None,
    content_type: Annotated[str | None, Header()] = None,
    tus_resumable: tus.TusResumable = None,
) -> Response:
    tus.check_version(tus_resumable)
    try:
        await run_in_threadpool(check_upload, unit_of_work, uploader, upload_id)
        return await tus.receive_piece(
            request,
            unit_of_work,
            uploader.tenant,
            token=upload_id,
            offset=upload_offset,
            content_type=content_type,
        )
    except HuifangError as exc:
        raise in_chinese(exc) from None


@router.delete("/uploads/{upload_id}", status_code=204, response_class=Response)
def cancel(
    upload_id: tus.UploadId,
    uploader: StaffDep,
    unit_of_work: UnitOfWorkDep,
    tus_resumable: tus.TusResumable = None,
) -> Response:
    tus.check_version(tus_resumable)
    try:
        check_upload(unit_of_work, uploader, upload_id)
        return tus.cancel(unit_of_work, uploader.tenant.id, upload_id)
    except HuifangError as exc:
        raise in_chinese(exc) from None
