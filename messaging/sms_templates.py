"""Approved SMS templates: what each message is for, and the text a provider approved for it.

Aliyun sends only templates it has approved, under a signature (签名) the company owns; a
message is a ``TemplateCode`` and a ``TemplateParam`` object holding the template's
``${variables}``, never free text. So every message carries its purpose (``PURPOSES``) and
the values its templates may use (``Message.variables``); a company records the templates
Aliyun approved for it (``record``); and, with a provider that needs them
(``Capabilities.approved_templates``), the outbox sends the template of the message's
purpose filled from those values (``fill``), or refuses the message before any request
with a sentence naming the template to record (``NoTemplate``).

Aliyun's template rules that ``check`` enforces when a template is recorded, with where they
are written (help.aliyun.com): a template's text is 1–500 characters counting its variables
(document 463270, 通知短信模板规范), with no 【】 anywhere since the signature goes in front;
one variable carries 1–35 characters, appears once in a template, and two variables never
touch, nor may a template be variables only (document 44357, 申请短信模板); variable names
start with a letter, use letters, digits and "_", and are not ``email``, ``mobile``, ``id``,
``nick`` or ``site``; a link is fixed text on the company's own domain, with at most a
variable for its path (DESIGN.md); marketing templates end with a way to refuse
(拒收请回复R, which Aliyun asks for, or our 回复T退订), notification templates carry none
of the marketing footer (document 463270).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from huifang.errors import Invalid, NotFound
from messaging.models import MARKETING, NOTIFICATION, TEMPLATE_KINDS, SmsTemplate

# -- Aliyun's limits -------------------------------------------------------------------------

SIGNATURE_MIN, SIGNATURE_MAX = 2, 12  # Aliyun SMS signatures: 2–12 characters (签名规范)
TEXT_MAX = 500  # a template's text, variables counted at their longest (document 463270)
VARIABLE_MAX = 35  # one variable's value: 1–35 characters (document 44357)
SINGLE_SMS = 70  # characters of one SMS, signature included
SEGMENT = 67  # characters per segment of a long SMS (the rest carries the joining header)
RESERVED_NAMES = frozenset({"email", "mobile", "id", "nick", "site"})
MARKETING_FOOTERS = ("拒收请回复R", "回复T退订", "回复TD退订")
PLATFORM_FOOTER = "拒收请回复R"
SPECIAL_SYMBOLS = ("¥", "￥", "★", "☆", "※", "√", "✓", "☞", "→", "●", "①", "『", "』", "〖", "〗")

VARIABLE = re.compile(r"\$\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_WORD = re.compile(r"[\w\u4e00-\u9fff]")
_URL = re.compile(r"https?://[^\s，。！？、]*", re.IGNORECASE)
_TRAILING = " \t\r\n。.!！~～"

# -- purposes --------------------------------------------------------------------------------

NAME, TEXT, TIME, LINK = "name", "text", "time", "link"  # kinds of variable


@dataclass(frozen=True)
class Purpose:
    """What a message is for: its template kind, its name for people, the values it provides
    (name → kind; a ``link`` is the path after a fixed address), and a text to submit."""

    code: str
    kind: str
    label: str  # Chinese, as the console shows it
    label_en: str
    variables: Mapping[str, str]
    suggested: str  # "{base}" stands for the company's public address
    link_prefix: Mapping[str, str] = field(default_factory=dict)  # link variable → path


REPORT_READY = "report_ready"
BOOKING_RECEIVED = "booking_received"
BOOKING_PICK_TIME = "booking_pick_time"
BOOKING_CONFIRMED = "booking_confirmed"
BOOKING_DECLINED = "booking_declined"
BOOKING_REMINDER = "booking_reminder"
BOOKING_PROPOSED = "booking_proposed"
OPT_OUT_CONFIRMATION = "opt_out_confirmation"
OPT_IN_CONFIRMATION = "opt_in_confirmation"
HELP_ANSWER = "help_answer"
OFFICE_ANSWER = "office_answer"
CAMPAIGN_MARKETING = "campaign_marketing"
CAMPAIGN_SERVICE = "campaign_service"

# The merge fields of campaign texts (campaigns.templating.VARIABLES), as template variables.
CAMPAIGN_VARIABLES: dict[str, str] = {
    "customer_name": NAME,
    "last_service": TEXT,
    "last_service_date": TIME,
    "staff_name": NAME,
    "booking_link": LINK,
    "report_link": LINK,
    "company": NAME,
}
CAMPAIGN_LINKS = {"booking_link": "/b/", "report_link": "/r/"}

_PURPOSES = (
    Purpose(
        REPORT_READY,
        NOTIFICATION,
        "服务报告已生成",
        "report ready",
        {"customer_name": NAME, "service": TEXT, "report_token": LINK},
        "${customer_name}您好，您的${service}服务报告已生成，照片和说明请查看：{base}/r/${report_token}",
        {"report_token": "/r/"},
    ),
    Purpose(
        BOOKING_RECEIVED,
        NOTIFICATION,
        "预约已收到",
        "booking received",
        {},
        "已收到您的预约申请，我们会尽快与您联系确认上门时间。",
    ),
    Purpose(
        BOOKING_PICK_TIME,
        NOTIFICATION,
        "预约已收到，请选时间",
        "booking received, pick a time",
        {"booking_token": LINK},
        "已收到您的预约，请点击链接选择上门时间：{base}/b/${booking_token}",
        {"booking_token": "/b/"},
    ),
    Purpose(
        BOOKING_CONFIRMED,
        NOTIFICATION,
        "预约已确认",
        "booking confirmed",
        {"service": TEXT, "time": TIME, "staff_name": NAME},
        "您预约的${service}已确认，上门时间：${time}，届时请保持电话畅通。",
    ),
    Purpose(
        BOOKING_DECLINED,
        NOTIFICATION,
        "预约无法安排",
        "booking declined",
        {"service": TEXT, "reason": TEXT},
        "抱歉，您预约的${service}暂时无法安排，原因：${reason}。我们会尽快与您联系另约时间。",
    ),
    Purpose(
        BOOKING_REMINDER,
        NOTIFICATION,
        "上门提醒",
        "booking reminder",
        {"service": TEXT, "time": TIME},
        "温馨提醒：您预约的${service}将于${time}上门，请留意服务人员来电。",
    ),
    Purpose(
        BOOKING_PROPOSED,
        NOTIFICATION,
        "建议上门时间",
        "booking time proposed",
        {"service": TEXT, "time": TIME, "booking_token": LINK},
        "您预约的${service}可安排在${time}，确认或另选时间请点击：{base}/b/${booking_token}",
        {"booking_token": "/b/"},
    ),
    Purpose(
        OPT_OUT_CONFIRMATION,
        NOTIFICATION,
        "退订确认",
        "opt-out confirmation",
        {},
        "您已退订，将不再收到我们的短信。如需恢复，请回复“订阅”。",
    ),
    Purpose(
        OPT_IN_CONFIRMATION,
        NOTIFICATION,
        "重新订阅确认",
        "opt-in confirmation",
        {},
        "您已重新订阅，感谢您的信任。",
    ),
    Purpose(
        HELP_ANSWER,
        NOTIFICATION,
        "帮助回复",
        "help answer",
        {},
        "回复1预约上门服务，其他问题请直接回复本短信，客服会尽快答复。",
    ),
    Purpose(
        OFFICE_ANSWER,
        NOTIFICATION,
        "客服回复",
        "office answer",
        {"content": TEXT},
        "您好，关于您咨询的服务，客服答复：${content}。如有疑问请回复本短信。",
    ),
    Purpose(
        CAMPAIGN_MARKETING,
        MARKETING,
        "营销活动",
        "campaign (marketing)",
        CAMPAIGN_VARIABLES,
        "",  # the campaign's own text (``campaign_text``)
        CAMPAIGN_LINKS,
    ),
    Purpose(
        CAMPAIGN_SERVICE,
        NOTIFICATION,
        "服务提醒活动",
        "campaign (service)",
        CAMPAIGN_VARIABLES,
        "",
        CAMPAIGN_LINKS,
    ),
)
PURPOSES: dict[str, Purpose] = {p.code: p for p in _PURPOSES}
CAMPAIGN_PURPOSES = frozenset({CAMPAIGN_MARKETING, CAMPAIGN_SERVICE})
# Several templates may serve a campaign purpose (one per campaign text); one for the rest.
ONE_PER_COMPANY = frozenset(PURPOSES) - CAMPAIGN_PURPOSES


def purpose(code: str) -> Purpose:
    try:
        return PURPOSES[code]
    except KeyError:
        known = "、".join(PURPOSES)
        raise Invalid(f"用途「{code[:40]}」不存在，可选：{known}。") from None


def suggested_text(purpose_code: str, base_url: str) -> str:
    """The text to submit to Aliyun for this purpose (empty for campaigns: their own text)."""
    return PURPOSES[purpose_code].suggested.replace("{base}", base_url.rstrip("/"))


# -- reading a template's text ---------------------------------------------------------------


def variables_of(text: str) -> list[str]:
    """The template's variable names, in order, repeats kept."""
    return VARIABLE.findall(text)


def render(text: str, values: Mapping[str, str]) -> str:
    """The template's text with its variables filled."""
    return VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def fixed_parts(text: str) -> list[str]:
    """The fixed text between the variables."""
    return VARIABLE.split(text)[::2]


def longest(text: str) -> int:
    """Characters of the text with every variable at its longest."""
    return len(VARIABLE.sub("", text)) + VARIABLE_MAX * len(variables_of(text))


def segments(chars: int) -> int:
    """How many SMS a text of ``chars`` characters (signature included) is billed as."""
    return 1 if chars <= SINGLE_SMS else math.ceil(chars / SEGMENT)


def _ends_with_footer(text: str) -> bool:
    end = text.rstrip(_TRAILING)
    return any(end.endswith(footer) for footer in MARKETING_FOOTERS)


def check(
    *,
    text: str,
    kind: str,
    purpose_code: str,
    signature: str,
    company_signature: str,
    base_url: str,
) -> list[str]:
    """What Aliyun's review (or our sending) would refuse in this template; empty when none."""
    found: list[str] = []
    what = PURPOSES[purpose_code]
    sig = signature.strip()
    if "【" in sig or "】" in sig:
        found.append(f"签名「{sig}」请不带【】填写，发送时会加在短信开头。")
    elif not SIGNATURE_MIN <= len(sig) <= SIGNATURE_MAX:
        found.append(
            f"签名「{sig}」有{len(sig)}个字，阿里云的签名须为{SIGNATURE_MIN}–{SIGNATURE_MAX}个字。"
        )
    elif sig != company_signature.strip():
        found.append(
            f"签名「{sig}」不是本公司的签名「{company_signature}」；请用公司在阿里云审核通过的签名，"
            "或先在公司设置里改签名。"
        )
    if kind not in TEMPLATE_KINDS:
        found.append("模板类型须为通知短信（notification）或推广短信（marketing）。")
    elif kind != what.kind:
        want = "推广短信" if what.kind == MARKETING else "通知短信"
        found.append(f"「{what.label}」须用{want}模板，阿里云对两类模板分开审核。")
    body = text.strip()
    if not body:
        return [*found, "请填写阿里云审核通过的模板原文。"]
    if "【" in body or "】" in body:
        found.append("模板原文里不能有【】：签名会自动加在开头，阿里云不允许第二个【】。")
    if "$" in VARIABLE.sub("", body) or "{" in VARIABLE.sub("", body):
        found.append("变量请写成 ${name} 的样子（$ 在大括号外，名字用英文字母开头）。")
    names = variables_of(body)
    for name in dict.fromkeys(names):
        if not _NAME.match(name):
            found.append(f"变量名 ${{{name}}} 须以英文字母开头，只用字母、数字和下划线。")
        elif name.lower() in RESERVED_NAMES:
            found.append(
                f"阿里云不接受变量名 ${{{name}}}（email、mobile、id、nick、site 都不行）。"
            )
        elif name not in what.variables:
            offered = "、".join(f"${{{n}}}" for n in what.variables) or "没有变量"
            found.append(f"「{what.label}」的短信提供不了 ${{{name}}}；这类短信可用：{offered}。")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        found.append(
            "同一个变量在模板里只能出现一次：" + "、".join(f"${{{n}}}" for n in repeated) + "。"
        )
    if re.search(r"\}[\s,，、:：;；.。-]*\$\{", body):
        found.append("两个变量不能紧挨着（中间要有说明文字），阿里云不批组合变量。")
    if names and not any(_WORD.search(part) for part in fixed_parts(body)):
        found.append("模板不能只有变量：固定文字要说明短信的用途，阿里云不批全变量模板。")
    symbols = [s for s in SPECIAL_SYMBOLS if s in body]
    if symbols:
        found.append(f"阿里云不支持这些特殊符号：{'、'.join(symbols)}。")
    found.extend(_link_problems(body, what, base_url))
    chars = longest(body)
    if chars > TEXT_MAX:
        found.append(
            f"模板原文按每个变量{VARIABLE_MAX}字计有{chars}字，阿里云最多{TEXT_MAX}字；请删减。"
        )
    if kind == MARKETING and not _ends_with_footer(body):
        found.append(f"推广短信须以退订方式结尾，例如“{PLATFORM_FOOTER}”或“回复T退订”。")
    if kind == NOTIFICATION and PLATFORM_FOOTER in body:
        found.append(f"通知短信不能带“{PLATFORM_FOOTER}”：那是推广短信的退订语。")
    return found


def _link_problems(body: str, what: Purpose, base_url: str) -> list[str]:
    found = []
    host = (urlsplit(base_url).hostname or "").lower()
    links_used = set()
    for match in _URL.finditer(body):
        url = match.group()
        head = url.split("${", 1)[0]
        parts = urlsplit(head)
        if "${" in (parts.netloc + "/") or not parts.netloc or parts.path == "":
            found.append(f"链接「{url}」的域名必须是固定文字，变量只能放在路径里。")
            continue
        if host and (parts.hostname or "").lower() != host:
            found.append(f"链接「{url}」不在本公司的网址 {host} 上；阿里云只批已备案的固定域名。")
        for name in variables_of(url):
            kind = what.variables.get(name)
            links_used.add(name)
            if kind is not None and kind != LINK:
                found.append(f"${{{name}}} 不是链接变量，不能放在网址里。")
                continue
            prefix = what.link_prefix.get(name)
            if prefix and not head.endswith(prefix):
                found.append(f"${{{name}}} 前面应是 {base_url.rstrip('/')}{prefix}。")
    for name in variables_of(body):
        if what.variables.get(name) == LINK and name not in links_used:
            found.append(
                f"${{{name}}} 是链接变量，须紧跟在固定网址后，例如 "
                f"{base_url.rstrip('/')}{what.link_prefix.get(name, '/')}${{{name}}}。"
            )
    return found


# -- a company's templates -------------------------------------------------------------------


def list_templates(*, session: Session, tenant_id: int) -> list[SmsTemplate]:
    """The company's approved templates, by purpose then age."""
    return list(
        session.scalars(
            select(SmsTemplate)
            .where(SmsTemplate.tenant_id == tenant_id)
            .order_by(SmsTemplate.purpose, SmsTemplate.id)
        )
    )


def record(
    *,
    session: Session,
    tenant_id: int,
    company_signature: str,
    base_url: str,
    code: str,
    kind: str,
    purpose_code: str,
    text: str,
    signature: str,
    now: dt.datetime,
) -> SmsTemplate:
    """Record an approved template, refusing what Aliyun would not approve or we cannot fill.

    One template per purpose, except for campaigns: recording another for the same purpose
    replaces the previous one (an approved Aliyun template cannot be edited, only replaced).
    """
    code = code.strip()
    if not re.fullmatch(r"SMS_\d{4,20}", code):
        raise Invalid(f"模板CODE「{code[:40]}」不对：阿里云的模板CODE形如 SMS_123456789。")
    what = purpose(purpose_code)
    problems = check(
        text=text,
        kind=kind,
        purpose_code=what.code,
        signature=signature,
        company_signature=company_signature,
        base_url=base_url,
    )
    if problems:
        raise Invalid(" ".join(problems))
    existing = session.scalars(
        select(SmsTemplate).where(SmsTemplate.tenant_id == tenant_id, SmsTemplate.code == code)
    ).first()
    if existing is not None and (existing.purpose, existing.text.strip()) != (
        what.code,
        text.strip(),
    ):
        raise Invalid(
            f"模板 {code} 已登记为「{PURPOSES[existing.purpose].label}」；阿里云审核通过的模板"
            "不能修改，若原文不同，请先删除再登记。"
        )
    if existing is not None:
        return existing
    if what.code in ONE_PER_COMPANY:
        for old in session.scalars(
            select(SmsTemplate).where(
                SmsTemplate.tenant_id == tenant_id, SmsTemplate.purpose == what.code
            )
        ):
            session.delete(old)
    template = SmsTemplate(
        tenant_id=tenant_id,
        code=code,
        kind=kind,
        purpose=what.code,
        text=text.strip(),
        signature=signature.strip(),
        created_at=now,
    )
    session.add(template)
    session.flush()
    return template


def delete(*, session: Session, tenant_id: int, template_id: int) -> None:
    template = session.get(SmsTemplate, template_id)
    if template is None or template.tenant_id != tenant_id:
        raise NotFound("没有这个短信模板。")
    session.delete(template)
    session.flush()


def overview(
    *, session: Session, tenant_id: int, base_url: str, required: bool
) -> dict[str, object]:
    """The company's templates with their measures, and every purpose with whether it has
    one and the text to submit: what the settings page and ``GET /v1/sms-templates`` show."""
    templates = list_templates(session=session, tenant_id=tenant_id)
    have = {t.purpose for t in templates}
    return {
        "templates": [
            {
                "id": t.id,
                "code": t.code,
                "kind": t.kind,
                "purpose": t.purpose,
                "label": PURPOSES[t.purpose].label if t.purpose in PURPOSES else t.purpose,
                "text": t.text,
                "signature": t.signature,
                "variables": list(dict.fromkeys(variables_of(t.text))),
                "chars": (chars := longest(f"【{t.signature}】{t.text}")),
                "segments": segments(chars),
                "created_at": t.created_at,
            }
            for t in templates
        ],
        "purposes": [
            {
                "purpose": p.code,
                "kind": p.kind,
                "label": p.label,
                "variables": list(p.variables),
                "recorded": p.code in have,
                "suggested": suggested_text(p.code, base_url),
            }
            for p in _PURPOSES
        ],
        "required": required,
    }


def missing_purposes(templates: Sequence[SmsTemplate]) -> list[Purpose]:
    """The purposes (campaigns aside) with no template recorded yet."""
    have = {t.purpose for t in templates}
    return [p for p in _PURPOSES if p.code in ONE_PER_COMPANY and p.code not in have]


def link_value(url: str, base_url: str, prefix: str) -> str:
    """What a link variable carries: the path after the fixed address (``/b/`` + token)."""
    return url.removeprefix(base_url.rstrip("/") + prefix)


# -- sending ---------------------------------------------------------------------------------


class NoTemplate(Exception):
    """The message cannot go: no approved template of the company fits it. ``detail`` says
    which template to record."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Filled:
    code: str
    signature: str
    params: dict[str, str]  # exactly the template's variables
    text: str  # the template's text filled, without the signature


def fill(
    *,
    templates: Sequence[SmsTemplate],
    purpose_code: str | None,
    values: Mapping[str, str],
    body: str,
    base_url: str,
) -> Filled:
    """The approved template this message goes out as, filled from its values; or
    ``NoTemplate`` with the sentence that says what to record."""
    if purpose_code is None or purpose_code not in PURPOSES:
        raise NoTemplate(
            "This message has no purpose recorded, and the SMS provider sends only approved "
            "templates of a purpose; it cannot be sent through this provider. Nothing was sent."
        )
    what = PURPOSES[purpose_code]
    candidates = [t for t in templates if t.purpose == what.code]
    problems: list[str] = []
    for template in candidates:
        names = list(dict.fromkeys(variables_of(template.text)))
        absent = [n for n in names if not str(values.get(n) or "").strip()]
        if absent:
            problems.append(
                f"template {template.code} needs "
                + ", ".join(f"${{{n}}}" for n in absent)
                + " which this message does not have"
            )
            continue
        params = {n: str(values[n]).strip() for n in names}
        too_long = [n for n, v in params.items() if len(v) > VARIABLE_MAX]
        if too_long:
            problems.append(
                f"template {template.code}: "
                + ", ".join(f"${{{n}}} ({len(params[n])} characters)" for n in too_long)
                + f" is longer than the {VARIABLE_MAX} characters Aliyun allows in a variable"
            )
            continue
        text = render(template.text, params)
        if what.code in CAMPAIGN_PURPOSES and not _same_words(text, body):
            continue  # another campaign's template
        return Filled(template.code, template.signature, params, text)
    label = f"{what.label_en} ({what.label})"
    if problems:
        raise NoTemplate(
            f"The approved SMS template for {label} cannot be filled from this message: "
            + "; ".join(problems)
            + ". Record a template whose variables this message provides "
            "(Settings › SMS templates). Nothing was sent."
        )
    suggestion = suggested_text(what.code, base_url) if what.suggested else ""
    if what.code in CAMPAIGN_PURPOSES:
        suggestion = body.strip()
    raise NoTemplate(
        f"No approved SMS template of the company matches this {label} message, and the "
        "SMS provider sends only approved templates: record the template Aliyun approved for "
        f"it (Settings › SMS templates), e.g. submit 「{suggestion}」 for approval. "
        "Nothing was sent."
    )


def _same_words(a: str, b: str) -> bool:
    squash = re.compile(r"\s+")
    return squash.sub("", a).rstrip(_TRAILING) == squash.sub("", b).rstrip(_TRAILING)
