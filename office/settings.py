"""设置: the index and the company's sections (profile and signature, working hours and
slots, care advice and offers, keyword rules with the tester, the provider's addresses, the
watermark with a live preview). Owners only (``Permission.SETTINGS``); 账号与密钥 and 告警
are their own modules.

Thin handlers over the services the ``/v1`` routes call; every change goes through a
service that records it in the audit log with the signed-in person.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from access.roles import Permission
from huifang.db import utcnow
from huifang.deps import SessionDep
from huifang.errors import HuifangError, Invalid
from huifang.fields import Id
from huifang.i18n import _
from huifang.settings import get_settings
from media import service as media
from media import watermark_preview
from media.upload import stage_bytes
from messaging import inbound, keyword_tester, keywords, provider_setup, providers, sms_templates
from messaging.models import MARKETING, NOTIFICATION
from office import web
from reports import service as reports
from tenancy import service as tenancy
from tenancy import working_hours
from tenancy.schemas import TenantUpdate

router = APIRouter(prefix="/settings")
Owner = Annotated[web.SignedIn, Depends(web.require(Permission.SETTINGS))]
LOGO_MAX_BYTES = 2 * 1024 * 1024
POSITION_NAMES = {
    "bottom-left": "左下角",
    "bottom-right": "右下角",
    "top-left": "左上角",
    "top-right": "右上角",
}
ROUTE_CHOICES = [
    (r, keyword_tester.ROUTE_LABELS[r])
    for r in (keywords.OPT_OUT, keywords.OPT_IN, keywords.HELP, keywords.BOOK)
]
KIND_NAMES = {keywords.EXACT: "整条回复等于", keywords.PATTERN: "包含（正则表达式）"}
SECTIONS = (
    ("/office/settings/company", "公司与签名", "公司名称和短信签名"),
    ("/office/settings/hours", "营业时间", "接受预约的日子、时间和每次上门的时长"),
    ("/office/settings/reports", "养护建议与优惠", "服务报告里的养护建议和每月优惠"),
    ("/office/settings/keywords", "回复关键词", "客户回复的关键词规则，并可试一试"),
    ("/office/settings/provider", "短信服务商", "服务商和要填到服务商后台的回调地址"),
    ("/office/settings/sms-templates", "短信模板", "阿里云审核通过的模板：每类短信用哪个模板"),
    ("/office/settings/watermark", "照片水印", "水印的位置、大小和公司标志"),
    ("/office/settings/users", "账号与密钥", "同事的账号和接口密钥"),
    ("/office/settings/alerts", "告警", "出问题时通知谁"),
)


def _text(form: FormData, key: str, limit: int) -> str:
    value = form.get(key)
    if not isinstance(value, str):
        return ""
    if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise Invalid(_("内容里有无法识别的字符，请删掉后重新输入。"))
    return value.strip()[:limit]


def _refused(session: SessionDep, problem: HuifangError) -> tuple[str, int]:
    session.rollback()
    return problem.detail, problem.status_code


def _page(
    request: Request,
    person: web.SignedIn,
    template: str,
    context: dict[str, Any],
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    return web.render(
        request,
        f"office/{template}",
        {
            **context,
            "error": error,
            "notice": notice
            or (_("已保存。") if request.query_params.get("saved") == "1" else None),
        },
        person=person,
        status=status,
    )


# --- index ---------------------------------------------------------------------------------


@router.get("")
def settings_index(request: Request, person: Owner) -> Response:
    return _page(request, person, "settings.html", {"sections": SECTIONS})


# --- company profile and signature ---------------------------------------------------------


def _tenant_changes(**values: Any) -> TenantUpdate:
    """Settings as the service takes them; what the schema refuses, in Chinese."""
    try:
        return TenantUpdate.model_validate(values)
    except ValidationError as refused:
        first = refused.errors()[0]
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        raise Invalid(
            _("{field}：{message}").format(
                field=".".join(str(p) for p in first["loc"]), message=message
            )
        ) from None


@router.get("/company")
def company_page(request: Request, person: Owner) -> Response:
    return _page(request, person, "settings_company.html", {"tenant": person.tenant})


@router.post("/company")
async def save_company(request: Request, session: SessionDep, person: Owner) -> Response:
    form = await request.form()
    try:
        name, signature = _text(form, "name", 100), _text(form, "signature", 20)
        if not name or not signature:
            raise Invalid(_("公司名称和短信签名都要填写。"))
        tenancy.update_tenant(
            session=session,
            tenant=person.tenant,
            actor=person.actor,
            changes=_tenant_changes(
                name=name, signature=signature, report_review=form.get("report_review") == "1"
            ),
        )
    except HuifangError as problem:
        error, status = _refused(session, problem)
        return _page(
            request,
            person,
            "settings_company.html",
            {"tenant": person.tenant},
            error=_("没有保存：{detail}").format(detail=error),
            status=status,
        )
    return web.redirect("/office/settings/company?saved=1")


# --- working hours and slots ---------------------------------------------------------------


def _hours_context(tenant: Any, proposed: dict[str, Any] | None = None) -> dict[str, Any]:
    values = proposed or {
        "work_days": tenant.work_days,
        "work_start_minute": tenant.work_start_minute,
        "work_end_minute": tenant.work_end_minute,
        "slot_minutes": tenant.slot_minutes,
    }
    try:
        shown = working_hours.describe(**values)
    except HuifangError:
        shown = None
    return {"values": values, "shown": shown, "DAY_NAMES": working_hours.DAY_NAMES}


def _minute(raw: str) -> int:
    hours, _sep, minutes = raw.partition(":")
    if not (hours.isdigit() and minutes.isdigit()) or int(hours) > 24 or int(minutes) > 59:
        raise Invalid(_("时间要写成 时:分，例如 08:00。"))
    return min(int(hours) * 60 + int(minutes), 24 * 60)


@router.get("/hours")
def hours_page(request: Request, person: Owner) -> Response:
    return _page(request, person, "settings_hours.html", _hours_context(person.tenant))


@router.post("/hours")
async def save_hours(request: Request, session: SessionDep, person: Owner) -> Response:
    form = await request.form()
    try:
        slot = _text(form, "slot_minutes", 4)
        if not slot.isdigit() or not 30 <= int(slot) <= 720:
            raise Invalid(_("每次上门的时长要在 30 到 720 分钟之间。"))
        days = "".join(
            sorted({str(d) for d in form.getlist("work_days")} & set(working_hours.DAY_NAMES))
        )
        start, end = _minute(_text(form, "start", 5)), _minute(_text(form, "end", 5))
        values: dict[str, Any] = {
            "work_days": days,
            "work_start_minute": start,
            "work_end_minute": end,
            "slot_minutes": int(slot),
        }
        if not days:
            raise Invalid(_("至少选一天接受预约。"))
        if start + int(slot) > end:
            raise Invalid(_("开始时间要早于结束时间，并且一天里至少放得下一次上门。"))
        if form.get("action") == "preview":
            return _page(
                request, person, "settings_hours.html", _hours_context(person.tenant, values)
            )
        tenancy.update_tenant(
            session=session,
            tenant=person.tenant,
            actor=person.actor,
            changes=_tenant_changes(**values),
        )
    except HuifangError as problem:
        error, status = _refused(session, problem)
        return _page(
            request,
            person,
            "settings_hours.html",
            _hours_context(person.tenant),
            error=_("没有保存：{detail}").format(detail=error),
            status=status,
        )
    return web.redirect("/office/settings/hours?saved=1")


# --- care advice and offers ----------------------------------------------------------------


def _reports_context(session: SessionDep, person: web.SignedIn) -> dict[str, Any]:
    return {
        "advice": reports.list_care_advice(session=session, tenant_id=person.tenant.id),
        "offers": reports.list_offers(session=session, tenant_id=person.tenant.id),
    }


@router.get("/reports")
def reports_page(request: Request, session: SessionDep, person: Owner) -> Response:
    return _page(request, person, "settings_reports.html", _reports_context(session, person))


@router.post("/reports/advice/{service_type}")
async def save_advice(
    service_type: Annotated[str, Path(max_length=64)],
    request: Request,
    session: SessionDep,
    person: Owner,
) -> Response:
    form = await request.form()
    try:
        if form.get("action") == "reset":
            reports.reset_care_advice(
                session=session,
                tenant_id=person.tenant.id,
                service_type=service_type,
                actor=person.actor,
            )
        else:
            reports.set_care_advice(
                session=session,
                tenant_id=person.tenant.id,
                service_type=service_type,
                text=_text(form, "text", 2000),
                actor=person.actor,
            )
    except HuifangError as problem:
        _detail, status = _refused(session, problem)
        return _page(
            request,
            person,
            "settings_reports.html",
            _reports_context(session, person),
            error=_("养护建议没有保存，请检查内容（不能为空，不能太长）。"),
            status=status,
        )
    return web.redirect("/office/settings/reports?saved=1")


@router.post("/reports/offers/{month}")
async def save_offer(
    month: Annotated[int, Path(ge=1, le=12)], request: Request, session: SessionDep, person: Owner
) -> Response:
    form = await request.form()
    try:
        if form.get("action") == "reset":
            reports.reset_offer(
                session=session, tenant_id=person.tenant.id, month=month, actor=person.actor
            )
        else:
            reports.set_offer(
                session=session,
                tenant_id=person.tenant.id,
                month=month,
                title=_text(form, "title", 100),
                text=_text(form, "text", 2000),
                actor=person.actor,
            )
    except HuifangError as problem:
        _detail, status = _refused(session, problem)
        return _page(
            request,
            person,
            "settings_reports.html",
            _reports_context(session, person),
            error=_("优惠没有保存，请检查标题和内容（都要填写，不能太长）。"),
            status=status,
        )
    return web.redirect("/office/settings/reports?saved=1")


# --- keyword rules and the tester ----------------------------------------------------------


def _keywords_context(
    session: SessionDep,
    person: web.SignedIn,
    tested: keyword_tester.Tested | None = None,
    text: str = "",
) -> dict[str, Any]:
    return {
        "rules": inbound.list_keywords(session=session, tenant_id=person.tenant.id),
        "ROUTE_LABELS": keyword_tester.ROUTE_LABELS,
        "ROUTE_CHOICES": ROUTE_CHOICES,
        "KIND_NAMES": KIND_NAMES,
        "tested": tested,
        "tested_text": text,
    }


@router.get("/keywords")
def keywords_page(request: Request, session: SessionDep, person: Owner) -> Response:
    return _page(request, person, "settings_keywords.html", _keywords_context(session, person))


@router.post("/keywords")
async def add_keyword(request: Request, session: SessionDep, person: Owner) -> Response:
    form = await request.form()
    try:
        inbound.add_keyword(
            session=session,
            tenant_id=person.tenant.id,
            route=_text(form, "route", 20),
            kind=_text(form, "kind", 20),
            value=_text(form, "value", 200),
            now=utcnow(),
            actor=person.actor,
        )
    except HuifangError as problem:
        _detail, status = _refused(session, problem)
        message = (
            _("这个关键词已经有了。")
            if status == 409
            else _("规则没有保存：关键词不能为空；正则表达式要写对（例如 ^T$）。")
        )
        return _page(
            request,
            person,
            "settings_keywords.html",
            _keywords_context(session, person),
            error=message,
            status=status,
        )
    return web.redirect("/office/settings/keywords?saved=1")


@router.post("/keywords/{rule_id}/delete")
def delete_keyword(rule_id: Id, session: SessionDep, person: Owner) -> Response:
    try:
        inbound.delete_keyword(
            session=session, tenant_id=person.tenant.id, rule_id=rule_id, actor=person.actor
        )
    except HuifangError:
        session.rollback()
    return web.redirect("/office/settings/keywords")


def _tested(
    session: SessionDep, person: web.SignedIn, form: FormData
) -> tuple[keyword_tester.Tested | None, str]:
    text = _text(form, "text", keywords.MAX_TEXT)
    if not text:
        return None, ""
    return keyword_tester.test_reply(session=session, tenant=person.tenant, text=text), text


@router.post("/keywords/test")
async def test_keyword(request: Request, session: SessionDep, person: Owner) -> Response:
    """The tester: the whole page without script; the result alone for the page's script
    (``fragment=1``)."""
    form = await request.form()
    try:
        tested, text = _tested(session, person, form)
    except HuifangError as problem:
        return _page(
            request,
            person,
            "settings_keywords.html",
            _keywords_context(session, person),
            error=problem.detail,
            status=422,
        )
    context = _keywords_context(session, person, tested, text)
    if form.get("fragment") == "1":
        return web.render(request, "office/settings_keyword_result.html", context, person=person)
    return _page(request, person, "settings_keywords.html", context)


# --- provider ------------------------------------------------------------------------------


# --- SMS templates ---------------------------------------------------------------------------

KIND_LABELS = {NOTIFICATION: "通知短信", MARKETING: "推广短信"}


def _templates_context(session: SessionDep, person: web.SignedIn) -> dict[str, Any]:
    settings = get_settings()
    return {
        "overview": sms_templates.overview(
            session=session,
            tenant_id=person.tenant.id,
            base_url=settings.public_url,
            required=providers.capabilities(settings.sms_provider).approved_templates,
        ),
        "KIND_LABELS": KIND_LABELS,
        "signature": person.tenant.signature,
        "form": None,  # what was typed, shown again when it was refused
    }


@router.get("/sms-templates")
def sms_templates_page(request: Request, session: SessionDep, person: Owner) -> Response:
    return _page(
        request, person, "settings_sms_templates.html", _templates_context(session, person)
    )


@router.post("/sms-templates")
async def add_sms_template(request: Request, session: SessionDep, person: Owner) -> Response:
    form = await request.form()
    try:
        sms_templates.record(
            session=session,
            tenant_id=person.tenant.id,
            company_signature=person.tenant.signature,
            base_url=get_settings().public_url,
            code=_text(form, "code", 40),
            kind=_text(form, "kind", 20),
            purpose_code=_text(form, "purpose", 40),
            text=_text(form, "text", 600),
            signature=_text(form, "signature", 20) or person.tenant.signature,
            now=utcnow(),
        )
    except HuifangError as problem:
        detail, status = _refused(session, problem)
        return _page(
            request,
            person,
            "settings_sms_templates.html",
            {**_templates_context(session, person), "form": dict(form)},
            error=_("模板没有登记：") + detail,
            status=status,
        )
    return web.redirect("/office/settings/sms-templates?saved=1")


@router.post("/sms-templates/{template_id}/delete")
def delete_sms_template(template_id: Id, session: SessionDep, person: Owner) -> Response:
    try:
        sms_templates.delete(session=session, tenant_id=person.tenant.id, template_id=template_id)
    except HuifangError:
        session.rollback()
    return web.redirect("/office/settings/sms-templates")


@router.get("/provider")
def provider_page(request: Request, person: Owner) -> Response:
    return _page(
        request,
        person,
        "settings_provider.html",
        {"setup": provider_setup.provider_setup(tenant=person.tenant)},
    )


# --- watermark -----------------------------------------------------------------------------


def _layout(session: SessionDep, person: web.SignedIn, query: Any) -> dict[str, Any]:
    saved = media.template_for(session=session, tenant_id=person.tenant.id)
    position = query.get("position") if query.get("position") in POSITION_NAMES else saved.position
    try:
        scale = min(max(float(query.get("scale") or saved.scale), 0.5), 2.5)
    except ValueError:
        scale = saved.scale
    capture = (
        (query.get("show_capture_time") == "1") if "position" in query else saved.show_capture_time
    )
    return {
        "position": position,
        "scale": scale,
        "show_capture_time": capture,
        "has_logo": bool(saved.logo_path),
    }


def _watermark_page(
    request: Request,
    session: SessionDep,
    person: web.SignedIn,
    *,
    layout: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    layout = layout or _layout(session, person, request.query_params)
    preview = (
        f"/office/settings/watermark/preview.jpg?position={layout['position']}"
        f"&scale={layout['scale']:g}"
        f"&show_capture_time={'1' if layout['show_capture_time'] else '0'}"
    )
    return _page(
        request,
        person,
        "settings_watermark.html",
        {"layout": layout, "preview": preview, "POSITION_NAMES": POSITION_NAMES},
        error=error,
        status=status,
    )


@router.get("/watermark")
def watermark_page(request: Request, session: SessionDep, person: Owner) -> Response:
    return _watermark_page(request, session, person)


@router.get("/watermark/preview.jpg")
def watermark_preview_image(request: Request, session: SessionDep, person: Owner) -> Response:
    layout = _layout(session, person, request.query_params)
    data = watermark_preview.render(
        session=session,
        tenant=person.tenant,
        now=utcnow(),
        position=layout["position"],
        scale=layout["scale"],
        show_capture_time=layout["show_capture_time"],
    )
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.post("/watermark")
async def save_watermark(request: Request, session: SessionDep, person: Owner) -> Response:
    form = await request.form()
    layout = _layout(
        session,
        person,
        {
            **{k: str(v) for k, v in form.items() if isinstance(v, str)},
            "position": form.get("position") or "",
        },
    )
    if form.get("action") == "preview":
        return _watermark_page(request, session, person, layout=layout)
    try:
        media.update_template(
            session=session,
            tenant_id=person.tenant.id,
            actor=person.actor,
            changes={
                "position": layout["position"],
                "scale": layout["scale"],
                "show_capture_time": layout["show_capture_time"],
            },
        )
    except HuifangError as problem:
        _refused(session, problem)
        return _watermark_page(
            request,
            session,
            person,
            status=problem.status_code,
            error=_("水印设置没有保存，请重新选择位置和大小。"),
        )
    return web.redirect("/office/settings/watermark?saved=1")


@router.post("/watermark/logo")
async def upload_logo(request: Request, session: SessionDep, person: Owner) -> Response:
    form = await request.form()
    upload = form.get("logo")
    try:
        if not isinstance(upload, UploadFile):
            raise Invalid(_("请先选择标志图片。"))
        data = await upload.read(LOGO_MAX_BYTES + 1)
        if len(data) > LOGO_MAX_BYTES:
            raise Invalid(_("标志图片不能超过 2 MB。"))
        staged = stage_bytes(data, fields={}, filename=upload.filename)
        try:
            await run_in_threadpool(
                media.set_logo,
                session=session,
                tenant_id=person.tenant.id,
                staged=staged,
                actor=person.actor,
            )
        finally:
            staged.discard()
    except HuifangError as problem:
        _refused(session, problem)
        return _watermark_page(
            request,
            session,
            person,
            status=problem.status_code,
            error=_("标志没有上传：请选择 2 MB 以内的 PNG、JPEG 或 WebP 图片。"),
        )
    return web.redirect("/office/settings/watermark?saved=1")
