"""营销活动: the campaign list, start from a preset, the editor with its lint as one types,
preview per customer, activate / pause / resume, and the results as charts and tables.

Thin handlers: they read the form into the shapes the ``/v1`` routes take and call the same
services (``campaigns.lifecycle``, ``campaigns.preview``, ``campaigns.drafts``,
``campaigns.figures``). The lint as one types is ``drafts.lint_draft`` answered as an HTML
fragment to the editor's script; the page works without it through the 检查 button, which
posts the same form.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from campaigns import charts, drafts, figures, fixes, overview, page_words, rules, tasks
from campaigns import lifecycle as service
from campaigns import preview as campaign_preview
from campaigns import wording as campaign_words
from campaigns.models import ACTIVE, ARCHIVED, DRAFT, PAUSED, Campaign
from campaigns.presets import PRESETS
from campaigns.schemas import CampaignPreviewRead, CampaignUpdate
from huifang.db import utcnow
from huifang.deps import SessionDep, writes
from huifang.errors import HuifangError, Invalid
from huifang.fields import Id
from huifang.i18n import _
from huifang.pagination import PageParams
from huifang.worker import enqueue
from office import web
from visits.service_types import SERVICE_TYPES, label

router = APIRouter(prefix="/campaigns")
STATUS_NAMES = {DRAFT: "草稿", ACTIVE: "进行中", PAUSED: "已暂停", ARCHIVED: "已归档"}
STATUS_BADGES = {DRAFT: "", ACTIVE: "ok", PAUSED: "warn", ARCHIVED: "bad"}
WEEKS = 8
TREND_MONTHS = 6
MAX_TEMPLATE = 4000
ChartWidth = Annotated[int, Query(ge=200, le=2000)]
_LIST_SPLIT = str.maketrans({c: "," for c in "，、；; \n\t"})


def _svg(text: str) -> Response:
    # As the /v1 chart routes answer: an image that may style itself, and nothing else.
    return Response(
        text,
        media_type="image/svg+xml; charset=utf-8",
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )


# --- the draft as the editor's form holds it ------------------------------------------------


@dataclass
class Draft:
    name: str
    template: str
    mms_subject: str
    mms_body: str
    rule: dict[str, Any]
    audience: dict[str, Any]
    problems: list[str] = field(default_factory=list)  # Chinese, what the form got wrong

    @classmethod
    def of(cls, campaign: Campaign) -> Draft:
        mms = campaign.mms or {}
        return cls(
            campaign.name,
            campaign.template,
            str(mms.get("subject") or ""),
            str(mms.get("body") or ""),
            dict(campaign.rule),
            dict(campaign.audience),
        )

    @property
    def mms(self) -> dict[str, str] | None:
        if not self.mms_body.strip():
            return None
        return (
            {"subject": self.mms_subject, "body": self.mms_body}
            if self.mms_subject
            else {"body": self.mms_body}
        )

    def changes(self) -> dict[str, object]:
        return {
            "name": self.name,
            "template": self.template,
            "rule": self.rule,
            "audience": self.audience,
            "mms": self.mms,
        }

    def audience_text(self, key: str) -> str:
        values = [str(v) for v in self.audience.get(key) or ()]
        if key == "service_types":  # people read 空调清洗; it is read back as its code
            values = [label(v) for v in values]
        return "、".join(values)


def _update(changes: dict[str, object]) -> CampaignUpdate:
    """The form's changes as the service takes them; what the schema refuses, in Chinese."""
    try:
        return CampaignUpdate.model_validate(changes)
    except ValidationError as refused:
        where = "、".join(".".join(str(p) for p in e["loc"]) for e in refused.errors()[:3])
        raise Invalid(
            _("这些内容不符合要求：{where}。请检查后再保存。").format(where=where)
        ) from None


def _clean(value: str, what: str, limit: int, problems: list[str]) -> str:
    if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        problems.append(_("{what}里有无法识别的字符，请删掉后重新输入。").format(what=what))
        return value.replace("\x00", "")
    if len(value) > limit:
        problems.append(_("{what}太长了：最多 {limit} 个字。").format(what=what, limit=limit))
        return value[:limit]
    return value


def _number(
    form: FormData, key: str, what: str, low: int, high: int, problems: list[str]
) -> int | None:
    raw = str(form.get(key) or "").strip()
    if not raw:
        return None
    if not raw.lstrip("-").isdigit() or not low <= int(raw) <= high:
        problems.append(
            _("{what}要填 {low} 到 {high} 之间的整数。").format(what=what, low=low, high=high)
        )
        return None
    return int(raw)


def _names(raw: str) -> list[str]:
    return [p for p in (s.strip() for s in raw.translate(_LIST_SPLIT).split(",")) if p][:50]


def draft_from_form(campaign: Campaign, form: FormData) -> Draft:
    """The editor's fields over the saved campaign: what is left out stays as saved."""
    problems: list[str] = []

    def text(key: str, what: str, limit: int, default: str) -> str:
        value = form.get(key)
        if not isinstance(value, str):
            return default
        return fixes.normalize(_clean(value, what, limit, problems))

    saved = Draft.of(campaign)
    rule = dict(saved.rule)
    for key, what, low, high in (
        ("every_days", _("间隔天数"), 1, 3650),
        ("catch_up_days", _("补发期"), 0, 3649),
        ("offset_days", _("提前或推后的天数"), -183, 183),
    ):
        if key in rule:
            number = _number(form, key, what, low, high, problems)
            if number is not None:
                rule[key] = number
    send_time = str(form.get("send_time") or "").strip()
    if send_time:
        try:
            rule["send_time"] = dt.time.fromisoformat(send_time).strftime("%H:%M")
        except ValueError:
            problems.append(_("发送时间要写成 时:分，例如 10:00。"))
    audience: dict[str, Any] = {"consent": "any" if form.get("consent") == "any" else "required"}
    for key, what in (
        ("regions", _("地区")),
        ("service_types", _("服务项目")),
        ("tags_any", _("标签")),
    ):
        names = _names(_clean(str(form.get(key) or ""), what, 1000, problems))
        if names:
            audience[key] = names
    days = _number(form, "min_days_since_last_service", _("距上次服务的天数"), 0, 3660, problems)
    if days is not None:
        audience["min_days_since_last_service"] = days
    if form.get("churn_risk"):
        audience["churn_risk"] = True
    name = text("name", _("活动名称"), 100, saved.name).strip() or saved.name
    return Draft(
        name,
        text("template", _("短信正文"), MAX_TEMPLATE, saved.template),
        text("mms_subject", _("彩信标题"), 40, saved.mms_subject),
        text("mms_body", _("彩信正文"), MAX_TEMPLATE, saved.mms_body),
        rule,
        audience,
        problems,
    )


# --- what the pages show -------------------------------------------------------------------


def _lint(
    session: SessionDep, person: web.SignedIn, campaign: Campaign, draft: Draft
) -> drafts.DraftLint:
    return drafts.lint_draft(
        session=session,
        tenant=person.tenant,
        template=draft.template,
        mms=draft.mms,
        category=campaign.category,
        rule=draft.rule,
    )


def _apply(found: drafts.DraftLint, draft: Draft, index: int) -> bool:
    """The fix of finding ``index`` applied to the draft's text (the no-script path)."""
    if not 0 <= index < len(found.findings):
        return False
    finding = found.findings[index]
    if finding.fix is None:
        return False
    if finding.part == "mms":
        draft.mms_body = finding.fix.result
    else:
        draft.template = finding.fix.result
    return True


def _rule_text(rule: dict[str, Any]) -> str:
    try:
        return campaign_words.describe(rules.rule_from_dict(rule))
    except Invalid:
        return _("规则有误，请检查各项数字。")


def _preview(
    session: SessionDep, person: web.SignedIn, campaign: Campaign
) -> CampaignPreviewRead | None:
    try:
        return campaign_preview.preview(
            session=session, tenant=person.tenant, campaign_id=campaign.id, now=utcnow()
        )
    except HuifangError:
        return None


def _editor(
    request: Request,
    session: SessionDep,
    person: web.SignedIn,
    campaign: Campaign,
    *,
    draft: Draft | None = None,
    found: drafts.DraftLint | None = None,
    refused: list[fixes.Explained] | None = None,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    draft = draft or Draft.of(campaign)
    if found is None:
        found = _lint(session, person, campaign, draft)
    weekly = figures.weekly_results(
        session=session, tenant=person.tenant, campaign_id=campaign.id, now=utcnow(), weeks=WEEKS
    )
    return web.render(
        request,
        "office/campaign.html",
        {
            "campaign": campaign,
            "draft": draft,
            "found": found,
            **_audience(session, person, draft),
            "preview": _preview(session, person, campaign),
            "weekly": weekly,
            "rule_text": _rule_text(draft.rule),
            "refused": refused,
            "error": error,
            "notice": notice,
            "STATUS_NAMES": STATUS_NAMES,
            "STATUS_BADGES": STATUS_BADGES,
            "SERVICE_TYPES": SERVICE_TYPES,
            "words": page_words,
            "editable": campaign.status != ARCHIVED,
        },
        person=person,
        status=status,
    )


def _audience(session: SessionDep, person: web.SignedIn, draft: Draft) -> dict[str, Any]:
    """Who the draft's audience and rule reach, or why they cannot be counted."""
    try:
        return {
            "counts": drafts.audience_counts(
                session=session,
                tenant=person.tenant,
                now=utcnow(),
                audience=draft.audience,
                rule=draft.rule,
            ),
            "audience_problem": None,
        }
    except HuifangError:
        return {
            "counts": None,
            "audience_problem": _("受众条件有误，无法计算人数：请检查地区、服务项目和天数。"),
        }


def _campaign(session: SessionDep, person: web.SignedIn, campaign_id: int) -> Campaign:
    return service.get_campaign(
        session=session, tenant_id=person.tenant.id, campaign_id=campaign_id
    )


# --- routes --------------------------------------------------------------------------------


@router.get("")
def campaigns_page(request: Request, session: SessionDep, person: web.OfficeUser) -> Response:
    items, _total = service.list_campaigns(
        session=session, tenant_id=person.tenant.id, page=PageParams(limit=200)
    )
    sends = overview.next_sends(
        session=session,
        tenant_id=person.tenant.id,
        campaign_ids=[c.id for c in items],
        now=utcnow(),
    )
    trend = figures.company_trend(
        session=session, tenant=person.tenant, now=utcnow(), months=TREND_MONTHS
    )
    return web.render(
        request,
        "office/campaigns.html",
        {
            "campaigns": [(c, _rule_text(c.rule), sends[c.id]) for c in items],
            "presets": [
                (p, page_words.preset_description(p.name), page_words.preset_audience(p.name))
                for p in PRESETS.values()
            ],
            "trend": trend,
            "STATUS_NAMES": STATUS_NAMES,
            "STATUS_BADGES": STATUS_BADGES,
        },
        person=person,
    )


@router.post("")
async def start_campaign(request: Request, session: SessionDep, person: web.OfficeUser) -> Response:
    form = await request.form()
    preset = str(form.get("preset") or "")
    if preset not in PRESETS:
        return web.message_page(
            request,
            _("没有这个预设"),
            _("请从列表里选择一个预设再开始。"),
            status=422,
            person=person,
            link=("/office/campaigns", _("返回")),
        )
    campaign = service.create_campaign(session=session, tenant=person.tenant, preset=preset)
    return web.redirect(f"/office/campaigns/{campaign.id}")


@router.get("/trend.svg")
def trend_chart(session: SessionDep, person: web.OfficeUser, width: ChartWidth = 800) -> Response:
    return _svg(
        charts.trend(
            figures.company_trend(
                session=session, tenant=person.tenant, now=utcnow(), months=TREND_MONTHS
            ),
            width=400 if width < 600 else 800,
        )
    )


@router.get("/{campaign_id}")
@writes  # the preview makes each sample customer's booking link, as sending would
def campaign_page(
    campaign_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
) -> Response:
    saved = request.query_params.get("saved") == "1"
    return _editor(
        request,
        session,
        person,
        _campaign(session, person, campaign_id),
        notice=_("已保存。") if saved else None,
    )


@router.get("/{campaign_id}/weekly.svg")
def weekly_chart(
    campaign_id: Id, session: SessionDep, person: web.OfficeUser, width: ChartWidth = 800
) -> Response:
    found = figures.weekly_results(
        session=session, tenant=person.tenant, campaign_id=campaign_id, now=utcnow(), weeks=WEEKS
    )
    return _svg(charts.weekly(found, width=400 if width < 600 else 800))


@router.post("/{campaign_id}")
async def save_campaign(
    campaign_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
) -> Response:
    """保存 saves; 检查 lints the form without saving; 应用修改 applies one finding's fix."""
    campaign = _campaign(session, person, campaign_id)
    form = await request.form()
    draft = draft_from_form(campaign, form)
    action = str(form.get("action") or "save")
    if action.startswith("apply:") or action == "check" or draft.problems:
        found = _lint(session, person, campaign, draft)
        if (
            action.startswith("apply:")
            and action[6:].isdigit()
            and _apply(found, draft, int(action[6:]))
        ):
            found = _lint(session, person, campaign, draft)
        return _editor(
            request,
            session,
            person,
            campaign,
            draft=draft,
            found=found,
            status=422 if draft.problems else 200,
        )
    try:
        service.update_campaign(
            session=session,
            tenant=person.tenant,
            campaign_id=campaign.id,
            changes=_update(draft.changes()),
            now=utcnow(),
        )
    except service.LintFailed as failed:
        session.rollback()
        campaign = _campaign(session, person, campaign_id)
        return _editor(
            request,
            session,
            person,
            campaign,
            draft=draft,
            refused=_explained(failed, person, draft),
            status=422,
            error=_("进行中的活动必须先改正下面的错误才能保存。"),
        )
    except HuifangError as problem:
        session.rollback()
        campaign = _campaign(session, person, campaign_id)
        return _editor(
            request,
            session,
            person,
            campaign,
            draft=draft,
            status=problem.status_code,
            error=_("没有保存：{detail}").format(detail=problem.detail),
        )
    if campaign.status == ACTIVE:
        enqueue(session, tasks.materialize_campaign, campaign_id=campaign.id)
    return web.redirect(f"/office/campaigns/{campaign.id}?saved=1")


@router.post("/{campaign_id}/lint")
async def lint_fragment(
    campaign_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
) -> Response:
    """The editor's script posts the form here as one types: the findings, as HTML."""
    campaign = _campaign(session, person, campaign_id)
    draft = draft_from_form(campaign, await request.form())
    return web.render(
        request,
        "office/campaign_lint.html",
        {
            "found": _lint(session, person, campaign, draft),
            "draft": draft,
            "rule_text": _rule_text(draft.rule),
            "editable": True,
        },
        person=person,
    )


@router.post("/{campaign_id}/audience")
async def audience_fragment(
    campaign_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
) -> Response:
    """The editor's script posts the form here as one types: who it reaches, as HTML."""
    campaign = _campaign(session, person, campaign_id)
    draft = draft_from_form(campaign, await request.form())
    return web.render(
        request,
        "office/campaign_audience.html",
        {**_audience(session, person, draft), "words": page_words},
        person=person,
    )


def _explained(
    failed: service.LintFailed, person: web.SignedIn, draft: Draft
) -> list[fixes.Explained]:
    from campaigns import lint

    texts = {"sms": draft.template, "mms": draft.mms_body}
    return [
        fixes.explain(
            lint.Finding(f.code, f.severity, f.message, f.hint),  # type: ignore[arg-type]
            text=texts.get(f.part, ""),
            signature=person.tenant.signature,
            part=f.part,
        )
        for f in failed.findings
        if f.severity == "error"
    ]


def _state_change(verb: str):  # type: ignore[no-untyped-def]
    async def change(
        campaign_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
    ) -> Response:
        act = {
            "activate": service.activate,
            "pause": service.pause,
            "resume": service.resume,
            "archive": service.archive,
        }[verb]
        try:
            campaign = act(
                session=session,
                tenant=person.tenant,
                campaign_id=campaign_id,
                now=utcnow(),
                actor=person.actor,
            )
        except service.LintFailed as failed:
            session.rollback()
            campaign = _campaign(session, person, campaign_id)
            draft = Draft.of(campaign)
            return _editor(
                request,
                session,
                person,
                campaign,
                draft=draft,
                status=422,
                refused=_explained(failed, person, draft),
                error=_(
                    "活动没有启动：短信内容有服务商或合规检查会拒绝的问题，"
                    "请按下面的说明修改后再启动。"
                ),
            )
        except HuifangError as problem:
            session.rollback()
            campaign = _campaign(session, person, campaign_id)
            return _editor(
                request,
                session,
                person,
                campaign,
                status=problem.status_code,
                error=_REFUSALS.get(verb, _("操作没有完成。")),
            )
        if verb in ("activate", "resume"):
            enqueue(session, tasks.materialize_campaign, campaign_id=campaign.id)
        return web.redirect(f"/office/campaigns/{campaign.id}")

    change.__name__ = f"{verb}_campaign"
    return change


_REFUSALS = {
    "activate": _("已归档的活动不能再启动；可以用同一个预设新建一个。"),
    "resume": _("只有已暂停的活动可以继续；草稿请点“启动”。"),
    "pause": _("只有进行中的活动可以暂停。"),
    "archive": _("操作没有完成。"),
}
for _verb in ("activate", "pause", "resume", "archive"):
    router.add_api_route(f"/{{campaign_id}}/{_verb}", _state_change(_verb), methods=["POST"])
