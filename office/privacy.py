"""A customer's capture consent and PIPL rights on the customer page, and 合规 → 隐私与保留.

On the customer page: the permission to photograph the home (recorded by the office on the
customer's word, or on the staff phone with a signature), its signature image; for owners,
the customer's export (ZIP) and erasure. On 隐私与保留 (owners edit, the office reads): the
company's capture-consent requirement, how long report media are kept, each kind of data's
retention period, and what the daily job deletes next. Thin handlers over the services the
``/v1`` routes call (``compliance.capture``, ``privacy.*``, ``reports.expiry``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError
from starlette.background import BackgroundTask
from starlette.datastructures import FormData

from access import audit
from access.roles import Permission
from compliance import capture
from compliance import service as compliance
from compliance.models import CAPTURE_SCOPES, RETENTION_MINIMUMS
from compliance.schemas import PolicyUpdate
from customers import service as customers
from huifang import storage
from huifang.db import utcnow
from huifang.deps import SessionDep
from huifang.errors import HuifangError, Invalid, NotFound
from huifang.fields import Id
from huifang.i18n import _
from office import web
from privacy import erasure, export, retention

router = APIRouter()
Owner = Annotated[web.SignedIn, Depends(web.require(Permission.POLICY))]
Reader = Annotated[web.SignedIn, Depends(web.require(Permission.COMPLIANCE))]

SCOPE_NAMES = {"photos": "拍照", "clips": "录像", "marketing": "用于宣传"}
CAPTURE_SOURCE_NAMES = {
    "in_person": "当面",
    "signature": "手机签名",
    "web_form": "网页表单",
    "api": "接口",
}
RETENTION_FIELDS = {
    "consent_retention_days": "撤回的短信营销同意记录",
    "capture_consent_retention_days": "撤回的拍照录像授权（含签名）",
    "original_media_days": "照片和视频原件",
    "message_text_days": "已发短信的内容",
    "reply_days": "客户回复的内容",
    "decision_log_days": "发送审核记录",
}
MAX_DAYS = 3650


def _text(form: FormData, key: str, limit: int) -> str:
    value = form.get(key)
    if not isinstance(value, str):
        return ""
    if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise Invalid(_("内容里有无法识别的字符，请删掉后重新输入。"))
    return value.strip()[:limit]


def capture_view(session: SessionDep, tenant_id: int, customer_id: int) -> dict[str, Any]:
    """The customer page's 拍照录像授权 section."""
    records = capture.capture_consents(
        session=session, tenant_id=tenant_id, customer_id=customer_id
    )
    return {
        "captures": records,
        "capture_active": next((r for r in records if r.withdrawn_at is None), None),
        "SCOPE_NAMES": SCOPE_NAMES,
        "CAPTURE_SOURCE_NAMES": CAPTURE_SOURCE_NAMES,
    }


def _back(customer_id: int, done: str) -> Response:
    return web.redirect(f"/office/customers/{customer_id}?done={done}#capture")


def _refused(request: Request, person: web.SignedIn, exc: HuifangError) -> Response:
    messages = {
        "Permission must cover": "请至少勾选“拍照”或“录像”中的一项。",
        "Permission needs evidence": "请写明凭据：谁同意的、怎么同意的（例如：纸质授权书编号）。",
        "This customer already gave permission": "客户已经同意过；如需改变范围，请先撤回。",
    }
    sentence = next(
        (zh for en, zh in messages.items() if exc.detail.startswith(en)),
        _("没有这位客户。") if exc.status_code == 404 else exc.detail,
    )
    return web.message_page(
        request,
        _("没有保存"),
        _(sentence),
        status=exc.status_code,
        person=person,
        link=(_("返回"), request.headers.get("referer") or "/office/customers"),
    )


@router.post("/customers/{customer_id}/capture-consent")
async def record_capture(
    customer_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
) -> Response:
    form = await request.form()
    try:
        customer = customers.get_customer(
            session=session, tenant_id=person.tenant.id, customer_id=customer_id
        )
        capture.record_capture_consent(
            session=session,
            tenant=person.tenant,
            customer=customer,
            source="in_person",
            evidence=_text(form, "evidence", 2000),
            scopes=[str(s) for s in form.getlist("scope") if s in CAPTURE_SCOPES],
            now=utcnow(),
            actor=person.actor,
        )
    except HuifangError as exc:
        session.rollback()
        return _refused(request, person, exc)
    return _back(customer_id, "capture")


@router.post("/customers/{customer_id}/capture-consent/withdraw")
async def withdraw_capture(
    customer_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
) -> Response:
    form = await request.form()
    try:
        customers.get_customer(session=session, tenant_id=person.tenant.id, customer_id=customer_id)
        capture.withdraw_capture_consent(
            session=session,
            tenant_id=person.tenant.id,
            customer_id=customer_id,
            evidence=_text(form, "evidence", 2000) or None,
            now=utcnow(),
            actor=person.actor,
        )
    except HuifangError as exc:
        session.rollback()
        return _refused(request, person, exc)
    return _back(customer_id, "capture-withdrawn")


@router.get("/customers/{customer_id}/capture-consent/{consent_id}/signature")
def signature(
    customer_id: Id, consent_id: Id, session: SessionDep, person: web.OfficeUser
) -> Response:
    record = next(
        (
            r
            for r in capture.capture_consents(
                session=session, tenant_id=person.tenant.id, customer_id=customer_id
            )
            if r.id == consent_id and r.signature_path
        ),
        None,
    )
    if record is None or record.signature_path is None:
        raise NotFound("This capture consent has no signature image.")
    return FileResponse(
        storage.resolve(record.signature_path),
        media_type="image/png",
        headers={"Cache-Control": "private, no-store"},
    )


@router.get("/customers/{customer_id}/export")
def export_zip(customer_id: Id, request: Request, session: SessionDep, person: Owner) -> Response:
    try:
        path, filename = export.write_zip(
            session=session, tenant=person.tenant, customer_id=customer_id, now=utcnow()
        )
    except HuifangError as exc:
        return _refused(request, person, exc)
    return FileResponse(
        path,
        media_type="application/zip",
        filename=filename,
        headers={"Cache-Control": "private, no-store"},
        background=BackgroundTask(Path(path).unlink, missing_ok=True),
    )


@router.post("/customers/{customer_id}/erase")
async def erase(customer_id: Id, request: Request, session: SessionDep, person: Owner) -> Response:
    form = await request.form()
    try:
        customer = customers.get_customer(
            session=session, tenant_id=person.tenant.id, customer_id=customer_id
        )
        if _text(form, "confirm", 100) != customer.name:
            return web.message_page(
                request,
                _("没有删除"),
                _("请输入客户的姓名以确认删除（删除后无法恢复）。"),
                status=422,
                person=person,
                link=(_("返回"), f"/office/customers/{customer_id}"),
            )
        erasure.erase_customer(
            session=session,
            tenant=person.tenant,
            customer_id=customer_id,
            now=utcnow(),
            actor=person.actor,
        )
    except HuifangError as exc:
        session.rollback()
        return _refused(request, person, exc)
    return web.redirect(f"/office/customers/{customer_id}?done=erased")


# --- 合规 → 隐私与保留 --------------------------------------------------------------------------


def _retention_page(
    request: Request,
    session: SessionDep,
    person: web.SignedIn,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    now = utcnow()
    policy = compliance.policy_for(session=session, tenant_id=person.tenant.id)
    return web.render(
        request,
        "office/retention.html",
        {
            "tenant": person.tenant,
            "policy": policy,
            "fields": [
                (key, label, getattr(policy, key), RETENTION_MINIMUMS[key])
                for key, label in RETENTION_FIELDS.items()
            ],
            "upcoming": retention.upcoming(
                session=session, tenant_id=person.tenant.id, now=now, within_days=7
            ),
            "may_edit": person.may(Permission.POLICY),
            "error": error,
            "notice": notice,
        },
        person=person,
        status=status,
    )


@router.get("/compliance/retention")
def retention_page(request: Request, session: SessionDep, person: Reader) -> Response:
    saved = request.query_params.get("saved") == "1"
    return _retention_page(request, session, person, notice=_("已保存。") if saved else None)


def _days(form: FormData, key: str, *, blank: bool = False) -> int | None:
    raw = _text(form, key, 10)
    if not raw and blank:
        return None
    if not raw.isdigit() or not 0 < int(raw) <= MAX_DAYS:
        raise Invalid(_("天数请填 1 到 3650 之间的整数。"))
    return int(raw)


@router.post("/compliance/retention")
async def save_retention(request: Request, session: SessionDep, person: Owner) -> Response:
    form = await request.form()
    tenant = person.tenant
    try:
        changes = {key: _days(form, key) for key in RETENTION_FIELDS}
        for key, least in RETENTION_MINIMUMS.items():
            if (changes[key] or 0) < least:
                raise Invalid(
                    _("“{label}”至少保留 {least} 天。").format(
                        label=_(RETENTION_FIELDS[key]), least=least
                    )
                )
        compliance.update_policy(
            session=session,
            tenant_id=tenant.id,
            changes=PolicyUpdate(**changes),
            actor=person.actor,
        )
        required = form.get("capture_consent_required") == "on"
        keep = _days(form, "report_media_days", blank=True)
        after_view = _days(form, "report_media_after_view_days", blank=True)
        before = (
            tenant.capture_consent_required,
            tenant.report_media_days,
            tenant.report_media_after_view_days,
        )
        tenant.capture_consent_required = required
        tenant.report_media_days = keep
        tenant.report_media_after_view_days = after_view
        if before != (required, keep, after_view):
            audit.record(
                session,
                person.actor,
                "privacy.settings",
                "company",
                {
                    "capture_consent_required": required,
                    "report_media_days": keep,
                    "report_media_after_view_days": after_view,
                },
            )
        session.flush()
    except (HuifangError, ValidationError) as exc:
        session.rollback()
        detail = exc.detail if isinstance(exc, HuifangError) else _("天数不对，请检查。")
        return _retention_page(request, session, person, error=detail, status=422)
    return web.redirect("/office/compliance/retention?saved=1")
