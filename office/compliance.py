"""合规: the sending policy (owners edit it, the office reads it), the suppression list (add,
lift), the consent ledger with filters and its CSV export, and the audit log (owners).

Thin handlers over the services the ``/v1`` routes call (``compliance.service``,
``compliance.registry``, ``compliance.audit_log``); changes carry the signed-in person.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from access.roles import Permission
from compliance import audit_log, registry
from compliance import service as compliance
from compliance.schemas import PolicyUpdate
from huifang.db import utcnow
from huifang.deps import SessionDep
from huifang.errors import Conflict, HuifangError, Invalid, NotFound
from huifang.fields import Id
from huifang.i18n import _
from huifang.pagination import PageParams
from office import web

router = APIRouter(prefix="/compliance")
Compliance = Annotated[web.SignedIn, Depends(web.require(Permission.COMPLIANCE))]
Owner = Annotated[web.SignedIn, Depends(web.require(Permission.POLICY))]
PAGE = 50
SOURCE_NAMES = {
    "in_person": "当面",
    "web_form": "网页表单",
    "reply": "短信回复",
    "import": "导入",
    "api": "接口",
}
REASON_NAMES = {
    "reply_opt_out": "回复退订",
    "provider_opt_out": "服务商报告退订",
    "manual": "办公室记录",
    "unreachable": "无法接收短信",
    "erased": "客户的个人信息已删除",
}
POLICY_FIELDS = {
    "marketing_cap": "营销短信上限",
    "cap_window_days": "上限的计算天数",
    "window_start": "每天最早发送时间",
    "window_end": "每天最晚发送时间",
    "opt_out_footer": "退订提示",
    "consent_retention_days": "撤回后保留同意记录的天数",
}


def _text(form: FormData, key: str, limit: int) -> str:
    value = form.get(key)
    if not isinstance(value, str):
        return ""
    if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise Invalid(_("内容里有无法识别的字符，请删掉后重新输入。"))
    return value.strip()[:limit]


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _index(
    request: Request,
    session: SessionDep,
    person: web.SignedIn,
    *,
    error: str | None = None,
    status: int = 200,
    phone: str = "",
    source: str = "",
    state: str = "all",
    evidence: str = "",
) -> Response:
    policy = compliance.policy_for(session=session, tenant_id=person.tenant.id)
    suppressions, suppressed_total = registry.list_suppressions(
        session=session, tenant=person.tenant, page=PageParams(limit=PAGE)
    )
    where = registry.LedgerFilter(
        phone=phone or None,
        source=source or None,
        state=state,  # type: ignore[arg-type]
        evidence=evidence or None,
    )
    try:
        ledger, ledger_total = registry.list_ledger(
            session=session, tenant=person.tenant, page=PageParams(limit=PAGE), where=where
        )
    except HuifangError as problem:
        ledger, ledger_total = [], 0
        error, status = _("没有找到：{detail}").format(detail=problem.detail), problem.status_code
    saved = {
        "1": _("已保存。"),
        "added": _("已加入不发送名单。"),
        "lifted": _("已移出不发送名单。"),
    }
    return web.render(
        request,
        "office/compliance.html",
        {
            "policy": policy,
            "window_start": _hhmm(policy.window_start_minute),
            "window_end": _hhmm(policy.window_end_minute),
            "may_edit": person.may(Permission.POLICY),
            "suppressions": suppressions,
            "suppressed_total": suppressed_total,
            "ledger": ledger,
            "ledger_total": ledger_total,
            "filters": {"phone": phone, "source": source, "state": state, "evidence": evidence},
            "SOURCE_NAMES": SOURCE_NAMES,
            "REASON_NAMES": REASON_NAMES,
            "error": error,
            "notice": saved.get(request.query_params.get("saved", "")),
        },
        person=person,
        status=status,
    )


@router.get("")
def compliance_page(
    request: Request,
    session: SessionDep,
    person: Compliance,
    phone: Annotated[str, Query(max_length=40)] = "",
    source: Literal["", "in_person", "web_form", "reply", "import", "api"] = "",
    state: Literal["all", "active", "revoked"] = "all",
    evidence: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    return _index(
        request, session, person, phone=phone, source=source, state=state, evidence=evidence
    )


@router.post("/policy")
async def save_policy(request: Request, session: SessionDep, person: Owner) -> Response:
    form = await request.form()
    try:
        values: dict[str, Any] = {}
        for key in POLICY_FIELDS:
            raw = _text(form, key, 20)
            if raw:
                values[key] = raw
        try:
            changes = PolicyUpdate.model_validate(values)
        except ValidationError as refused:
            field = str(refused.errors()[0]["loc"][0])
            raise Invalid(
                _("“{field}”填写得不对，请检查后再保存。").format(
                    field=_(POLICY_FIELDS.get(field, field))
                )
            ) from None
        compliance.update_policy(
            session=session, tenant_id=person.tenant.id, changes=changes, actor=person.actor
        )
    except HuifangError as problem:
        session.rollback()
        return _index(
            request,
            session,
            person,
            status=problem.status_code,
            error=_("没有保存：{detail}").format(
                detail=problem.detail
                if isinstance(problem, Invalid) and problem.detail.startswith("“")
                else _(
                    "发送时间要先开始后结束（例如 08:00 到 21:00），撤回的同意记录至少保留 153 天。"
                )
            ),
        )
    return web.redirect("/office/compliance?saved=1")


@router.post("/suppressions")
async def add_suppression(request: Request, session: SessionDep, person: Compliance) -> Response:
    form = await request.form()
    try:
        number = _text(form, "phone", 40)
        if not number:
            raise Invalid(_("请填写手机号。"))
        registry.add_suppression(
            session=session,
            tenant=person.tenant,
            phone=number,
            detail=_text(form, "detail", 500) or None,
            now=utcnow(),
            actor=person.actor,
        )
    except HuifangError as problem:
        session.rollback()
        return _index(
            request,
            session,
            person,
            status=problem.status_code,
            error=_("没有加入：{detail}").format(
                detail=_("这个号码已经在名单上了。")
                if isinstance(problem, Conflict)
                else problem.detail
                if problem.detail.startswith("请")
                else _("手机号不对，请写 11 位手机号，例如 139 0000 0001。")
            ),
        )
    return web.redirect("/office/compliance?saved=added#suppressions")


@router.post("/suppressions/{suppression_id}/lift")
async def lift_suppression(
    suppression_id: Id, request: Request, session: SessionDep, person: Compliance
) -> Response:
    try:
        registry.lift_suppression(
            session=session,
            tenant=person.tenant,
            suppression_id=suppression_id,
            now=utcnow(),
            actor=person.actor,
        )
    except HuifangError as problem:
        session.rollback()
        return _index(
            request,
            session,
            person,
            status=problem.status_code,
            error=_("没有移出：{detail}").format(
                detail=_("这个号码已经移出过了。")
                if isinstance(problem, Conflict)
                else _("名单上没有这一条。")
                if isinstance(problem, NotFound)
                else problem.detail
            ),
        )
    return web.redirect("/office/compliance?saved=lifted#suppressions")


@router.get("/consents.csv")
def export_consents(
    session: SessionDep,
    person: Owner,
    phone: Annotated[str, Query(max_length=40)] = "",
    source: Literal["", "in_person", "web_form", "reply", "import", "api"] = "",
    state: Literal["all", "active", "revoked"] = "all",
    evidence: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    where = registry.LedgerFilter(
        phone=phone or None, source=source or None, state=state, evidence=evidence or None
    )
    return Response(
        registry.export_ledger(session=session, tenant=person.tenant, where=where),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="consents.csv"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/audit")
def audit_page(
    request: Request,
    session: SessionDep,
    person: Owner,
    actor: Annotated[str, Query(max_length=100)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    target: Annotated[str, Query(max_length=200)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    entries, total = audit_log.list_audit(
        session=session,
        tenant_id=person.tenant.id,
        page=PageParams(limit=PAGE, offset=(page - 1) * PAGE),
        where=audit_log.AuditFilter(
            actor=actor or None, action=action or None, target=target or None
        ),
    )
    return web.render(
        request,
        "office/compliance_audit.html",
        {
            "entries": entries,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PAGE)),
            "filters": {"actor": actor, "action": action, "target": target},
        },
        person=person,
    )
