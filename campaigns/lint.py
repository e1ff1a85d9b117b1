"""Lint for message templates, run before a campaign is activated.

Each rule is one that Chinese SMS providers (Aliyun, Tencent Cloud, Huawei Cloud) or the
carriers behind them enforce at template review or at send time, or one our own gate
enforces (``compliance.service.gate``). A template that passes here should pass review;
one that fails gets findings a person can act on: what is wrong, where, and what to write
instead. Errors block activation; warnings are for a person to weigh.

What is checked is the text as the customer would receive it: the 【signature】 in front,
the body rendered with the longest plausible values, and the opt-out footer the gate adds
to marketing.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from jinja2 import TemplateSyntaxError, nodes

from campaigns import templating
from huifang.errors import Invalid
from messaging import sms_templates
from visits.service_types import SERVICE_TYPES

Severity = Literal["error", "warning"]
Channel = Literal["sms", "mms"]

SIGNATURE_MIN, SIGNATURE_MAX = 2, 16
# Providers append "拒收请回复R" to marketing themselves; either it or the company's own
# footer (default 回复T退订) tells the customer how to refuse, as MIIT Order 31 requires.
PLATFORM_OPT_OUT = "拒收请回复R"
# Replies our inbound keywords understand (T, TD), written the way customers' cards say.
KEYWORD_OPT_OUTS = ("回复T退订", "回复TD退订")
_TRAILING = " \t\r\n。.!！~～"


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    message: str  # what is wrong and where
    hint: str  # what to do about it


@dataclass(frozen=True)
class _Topic:
    words: tuple[str, ...]
    topic: str
    hint: str
    severity: Severity = "error"


# Topics the providers' template review standards refuse (Tencent Cloud 正文模板审核标准,
# Aliyun 短信模板规范 and 推广短信模板规范, Huawei Cloud 模板审核规范), limited to those a
# home-service company's copy can stumble into, each with what passes instead.
REFUSED_TOPICS: tuple[_Topic, ...] = (
    _Topic(
        ("问卷", "满意度调查", "回访调查", "调查表"),
        "问卷调查 (surveys)",
        "Leave the survey out; say what the message is about and invite a reply, e.g. "
        "「如有任何问题，欢迎直接回复本短信」.",
    ),
    _Topic(
        ("好评", "五星评价", "晒单", "写评价", "评价有礼"),
        "邀请好评 / 好评返现 (asking for reviews)",
        "Thank the customer and share the visit report instead, e.g. "
        "「本次服务报告：{{ report_link }}」; ask for reviews in person, not by SMS.",
    ),
    _Topic(
        ("召回", "回归礼", "老客回流"),
        "用户召回 (win-back campaigns)",
        "Give the concrete reason for the reminder instead, e.g. "
        "「空调已使用三个月，建议清洗滤网」: a service reminder passes review, a "
        "come-back message does not.",
    ),
    _Topic(
        ("拉新", "邀请好友", "推荐好友", "老带新", "邀请注册", "注册会员"),
        "用户拉新 / 邀请注册 (referrals and sign-up invitations)",
        "Leave referrals and sign-ups out of the message; write only about this "
        "customer's own service.",
    ),
    _Topic(
        ("返现", "返利"),
        "返现返利 (cashback)",
        "State the service plainly; a price is fine, cashback is refused.",
    ),
    _Topic(
        ("抽奖", "中奖", "大奖"),
        "抽奖 / 中奖 (prize draws)",
        "Remove the prize draw; remind the customer of the service and how to book.",
    ),
    _Topic(
        ("优惠券", "领券", "代金券", "抵用券"),
        "优惠券类推广 (coupon promotions)",
        "Name the service and the booking link; apply a discount when the customer "
        "books rather than advertising coupons.",
    ),
    _Topic(
        ("积分兑换", "积分领取", "积分清零"),
        "积分兑换 (loyalty points)",
        "Leave points out of the SMS; show them on the booking page.",
    ),
    _Topic(
        ("加微信", "加我微信", "微信号", "加QQ", "QQ群", "加群", "进群"),
        "加微信 / 加QQ / 加群 (private contact channels)",
        "Point to the booking link or the company's landline / 400 number instead.",
    ),
    _Topic(
        ("装修", "建材"),
        "装修 / 建材 (renovation and building materials)",
        "For cleaning after building work write 「新房开荒保洁」 or 「入住前保洁」 "
        "without the word 装修.",
    ),
    _Topic(
        ("贷款", "分期", "信用卡"),
        "金融 (finance and payment plans)",
        "Leave payment terms out of the message; the booking page can show them.",
    ),
    _Topic(
        ("沙发翻新",),
        "沙发翻新 (sofa refurbishing, refused by Huawei Cloud)",
        "Write 「沙发清洁护理」 for cleaning and care.",
        "warning",
    ),
)

SPECIAL_SYMBOLS = ("¥", "￥", "★", "☆", "※", "√", "✓", "☞", "^_^")
SHORTENERS = frozenset(
    {
        "t.cn",
        "url.cn",
        "dwz.cn",
        "suo.im",
        "suo.nz",
        "sina.lt",
        "bit.ly",
        "tinyurl.com",
        "goo.gl",
        "ow.ly",
        "is.gd",
        "t.co",
        "rebrand.ly",
        "cutt.ly",
        "s.id",
        "tb.cn",
        "0x3.me",
        "6du.in",
        "w.url.cn",
        "mrw.so",
        "rb.gy",
        "shorturl.at",
    }
)
_TLDS = (
    "com",
    "cn",
    "net",
    "org",
    "top",
    "xyz",
    "io",
    "me",
    "cc",
    "co",
    "info",
    "biz",
    "vip",
    "club",
    "site",
    "shop",
    "ltd",
    "link",
    "ly",
    "gl",
    "im",
    "app",
    "dev",
    "ink",
    "wang",
    "so",
    "in",
    "at",
    "gy",
    "lt",
    "id",
    "tv",
    "hk",
    "tw",
    "us",
    "uk",
    "jp",
)
_RUN = re.compile(r"[A-Za-z0-9\-._~:/?#@!$&'()*+,;=%\[\]\ue000-\uf8ff]+")
_HOSTLIKE = re.compile(
    r"^(?:[a-z][a-z0-9+.\-]*://)?(?:[a-z0-9\-]+\.)+(?:" + "|".join(_TLDS) + r")(?::\d+)?"
    r"(?:[/?#].*)?$",
    re.IGNORECASE,
)
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[\-\s]?)?1[3-9]\d(?:[\-\s]?\d{4}){2}(?!\d)")
_QR = re.compile(r"二维码|扫码|扫一扫|(?<![A-Za-z])QR(?![A-Za-z])", re.IGNORECASE)
_SENTINEL = 0xE000  # private-use characters stand in for {{ … }} while links are read


def _long_values(tenant_domains: Sequence[str]) -> dict[str, str]:
    """The longest values each variable plausibly takes, to measure the worst case."""
    domain = max(tenant_domains, key=len, default="hf.example.cn")
    token = "x" * 24  # secrets.token_urlsafe(18), as our links are made
    return {
        "customer_name": "名" * 20,
        "company": "司" * 30,
        "staff_name": "师" * 10,
        "last_service": "务" * max(12, *(len(words) for words in SERVICE_TYPES.values())),
        "last_service_date": "2026年12月31日",
        "booking_link": f"https://{domain}/b/{token}",
        "report_link": f"https://{domain}/r/{token}",
    }


@dataclass(frozen=True)
class _Expression:
    source: str  # "{{ booking_link }}"
    names: frozenset[str]
    bare_link: bool  # exactly one link variable, unfiltered
    line: int


def _scan(body: str) -> tuple[str, list[_Expression], list[int]]:
    """The text with each {{ … }} as one private-use character, the expressions, and for
    each character of the text its line (tags and comments left out)."""
    env = templating._environment()
    text: list[str] = []
    lines: list[int] = []
    expressions: list[_Expression] = []
    inside: str | None = None
    buffer: list[str] = []
    for lineno, kind, value in env.lex(body):
        if kind in ("variable_begin", "block_begin", "comment_begin"):
            inside, buffer = kind, [value]
        elif kind in ("variable_end", "block_end", "comment_end"):
            if inside == "variable_begin":
                source = "".join([*buffer, value])
                tree = env.parse(source)
                found = frozenset(n.name for n in tree.find_all(nodes.Name))
                output = tree.body[0] if tree.body else None
                bare = (
                    isinstance(output, nodes.Output)
                    and len(output.nodes) == 1
                    and isinstance(output.nodes[0], nodes.Name)
                    and output.nodes[0].name in templating.LINK_VARIABLES
                )
                text.append(chr(_SENTINEL + len(expressions)))
                lines.append(lineno)
                expressions.append(_Expression(source, found, bare, lineno))
            inside = None
        elif inside is not None:
            buffer.append(value)
        elif kind == "data":
            start = lineno
            for char in value:
                # A private-use character typed into the text must not pass for a {{ … }}.
                text.append("?" if _is_marker(char) else char)
                lines.append(start)
                if char == "\n":
                    start += 1
    return "".join(text), expressions, lines


def _is_marker(char: str) -> bool:
    return "\ue000" <= char <= "\uf8ff"


def _show(run: str, expressions: list[_Expression]) -> str:
    return "".join(expressions[ord(c) - _SENTINEL].source if _is_marker(c) else c for c in run)


def _host_allowed(host: str, domains: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for domain in domains:
        domain = domain.lower().strip().rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


def _links(
    text: str, expressions: list[_Expression], lines: list[int], tenant_domains: Sequence[str]
) -> list[Finding]:
    findings: list[Finding] = []
    domains = ", ".join(tenant_domains) or "(none registered)"
    for match in _RUN.finditer(text):
        run = match.group().strip("([<'\":;,.!?)]>")
        if not run:
            continue
        line = lines[match.start()] if match.start() < len(lines) else 1
        where = f"Line {line}: "
        held = [expressions[ord(c) - _SENTINEL] for c in run if _is_marker(c)]
        links = [e for e in held if e.names & templating.LINK_VARIABLES]
        if links and not (len(run) == 1 and links[0].bare_link):
            names = sorted(set().union(*(e.names & templating.LINK_VARIABLES for e in links)))
            findings.append(
                Finding(
                    "link_modified",
                    "error",
                    f"{where}the link {_show(run, expressions)!r} changes our "
                    f"{' / '.join(names)}; providers accept only links that are exactly as "
                    f"issued.",
                    f"Write {{{{ {names[0]} }}}} on its own, with a space or Chinese punctuation "
                    f"around it, and add nothing to it.",
                )
            )
            continue
        plain = "".join("x" if _is_marker(c) else c for c in run)
        if not _HOSTLIKE.match(plain):
            continue
        shown = _show(run, expressions)
        if held:
            names = sorted(set().union(*(e.names for e in held)))
            findings.append(
                Finding(
                    "link_variable",
                    "error",
                    f"{where}the link {shown!r} is built from {', '.join(names)}; Tencent "
                    f"Cloud and Aliyun refuse links that change per message (only constant "
                    f"links pass review).",
                    "Use a constant link on the company's domain, or {{ booking_link }} / "
                    "{{ report_link }}, which we issue per customer.",
                )
            )
            continue
        host = urlsplit(run if "://" in run else f"http://{run}").hostname or ""
        if host.lower() in SHORTENERS:
            findings.append(
                Finding(
                    "link_shortener",
                    "error",
                    f"{where}{shown!r} is a link shortener; providers refuse short links and "
                    f"redirects because the destination cannot be reviewed.",
                    f"Use the full link on the company's domain ({domains}) or "
                    f"{{{{ booking_link }}}}.",
                )
            )
        elif not _host_allowed(host, tenant_domains):
            findings.append(
                Finding(
                    "link_domain",
                    "error",
                    f"{where}the link {shown!r} is not on the company's domains ({domains}); "
                    f"providers only pass links on the sender's own ICP-registered domain.",
                    "Link to a page on the company's own domain, register this domain in the "
                    "company settings, or use {{ booking_link }}.",
                )
            )
    return findings


def _measure(
    body: str,
    values: Mapping[str, object],
    *,
    signature: str,
    category: templating.Category,
    footer: str,
) -> str:
    rendered = templating.render(body, values)
    return templating.compose(rendered, signature=signature, category=category, footer=footer)


def _line_of(text: str, lines: list[int], index: int) -> int:
    """The template line of ``text[index]`` (``lines`` is empty when the template is broken)."""
    return lines[index] if index < len(lines) else text.count("\n", 0, index) + 1


def lint(
    body: str,
    *,
    signature: str,
    category: str,
    provider_limit: int = 500,
    tenant_domains: Sequence[str] = (),
    footer: str = "回复T退订",
    rendered_samples: Sequence[Mapping[str, object]] = (),
    channel: str = "sms",
) -> list[Finding]:
    """Every problem providers or our gate would find in ``body``; empty when it is clean.

    ``signature`` is the company's (without 【】), ``footer`` the opt-out text the gate adds
    to marketing, ``tenant_domains`` where constant links may point, ``rendered_samples``
    real customers' variables to render as well, ``channel`` "sms" or "mms".
    """
    if category not in ("marketing", "service"):
        raise Invalid(f"The category must be 'marketing' or 'service', not {category!r}.")
    if channel not in ("sms", "mms"):
        raise Invalid(f"The channel must be 'sms' or 'mms', not {channel!r}.")
    if (
        isinstance(provider_limit, bool)
        or not isinstance(provider_limit, int)
        or provider_limit < 10
    ):
        raise Invalid(
            f"The provider's length limit must be a number of characters "
            f"(500 for Chinese SMS), not {provider_limit!r}."
        )
    kind: templating.Category = "marketing" if category == "marketing" else "service"
    findings: list[Finding] = []
    sig = signature.strip() if isinstance(signature, str) else ""

    # --- signature -----------------------------------------------------------------------
    if not sig:
        findings.append(
            Finding(
                "signature_missing",
                "error",
                "The company has no SMS signature; carriers refuse messages without 【signature】 "
                "at the start.",
                "Set the signature (2–16 characters, usually the brand name) in the company "
                "settings.",
            )
        )
    elif "【" in sig or "】" in sig:
        findings.append(
            Finding(
                "signature_brackets",
                "error",
                f"The signature {sig!r} contains 【 or 】; the brackets are added around it.",
                "Save the signature without 【】, e.g. 洁家到家.",
            )
        )
    elif not SIGNATURE_MIN <= len(sig) <= SIGNATURE_MAX:
        findings.append(
            Finding(
                "signature_length",
                "error",
                f"The signature 【{sig}】 has {len(sig)} character{'s' if len(sig) != 1 else ''}; "
                f"providers accept "
                f"{SIGNATURE_MIN} to {SIGNATURE_MAX}.",
                "Use the registered brand or company short name, 2–16 characters.",
            )
        )

    # --- brackets other than the signature's ---------------------------------------------
    stripped = body.strip()
    if sig and stripped.startswith(f"【{sig}】"):
        findings.append(
            Finding(
                "signature_in_body",
                "error",
                f"The text starts with 「【{sig}】」; the signature is added in front when "
                f"sending, "
                f"so it would appear twice, and carriers refuse a second 【】.",
                f"Delete 「【{sig}】」 from the start of the text.",
            )
        )
    elif "【" in body or "】" in body:
        index = min(i for i in (body.find("【"), body.find("】")) if i >= 0)
        findings.append(
            Finding(
                "extra_brackets",
                "error",
                f"Line {body.count(chr(10), 0, index) + 1}: the text has 【 or 】; carriers allow "
                f"【】 only around the company signature at the very start, and read any other "
                f"pair as a second signature.",
                "Use 「」, 〔〕 or （） instead.",
            )
        )

    # --- the template itself ---------------------------------------------------------------
    try:
        used = templating.check(body)
    except Invalid as error:
        findings.append(
            Finding(
                "template",
                "error",
                error.detail,
                "Templates use text, the variables ("
                + ", ".join(templating.VARIABLES)
                + "), {% if %} … {% endif %} and the filters "
                + ", ".join(templating.FILTERS)
                + ".",
            )
        )
        used = None

    try:
        text, expressions, lines = _scan(body) if used is not None else (body, [], [])
    except TemplateSyntaxError:  # pragma: no cover - check() has already parsed it
        text, expressions, lines = body, [], []
    words = "".join(" " if _is_marker(c) else c for c in text)

    # --- length, with the longest plausible values, and the footer ---------------------------
    final: str | None = None
    if used is not None:
        long = _long_values(tenant_domains)
        try:
            final = _measure(body, long, signature=sig, category=kind, footer=footer)
        except Invalid as error:
            findings.append(
                Finding(
                    "template",
                    "error",
                    error.detail,
                    "Fix the template so it renders for every customer.",
                )
            )
        if final is not None and len(final) > provider_limit:
            shares = []
            for name in sorted(used):
                shorter = _measure(
                    body, {**long, name: ""}, signature=sig, category=kind, footer=footer
                )
                shares.append((len(final) - len(shorter), name))
            shares.sort(reverse=True)
            share, worst = shares[0] if shares else (0, "")
            blame = (
                f" '{worst}' adds the most: {share} characters at its longest plausible "
                f"value ({len(long[worst])} characters)."
                if share
                else ""
            )
            cut = len(final) - provider_limit
            fix = (
                f" or shorten it with {{{{ {worst} | truncate(8) }}}}"
                if share and worst not in templating.LINK_VARIABLES
                else ""
            )
            findings.append(
                Finding(
                    "too_long",
                    "error",
                    f"With the signature, the opt-out footer and long values the message reaches "
                    f"{len(final)} characters; the provider takes {provider_limit}.{blame}",
                    f"Cut at least {cut} characters from the text{fix}.",
                )
            )
    for number, sample in enumerate(rendered_samples, start=1):
        if used is None:
            break
        who = sample.get("customer_name")
        label = f"Sample {number}" + (f" ({who})" if who else "")
        try:
            sent = _measure(body, sample, signature=sig, category=kind, footer=footer)
        except Invalid as error:
            findings.append(
                Finding(
                    "sample",
                    "error",
                    f"{label}: {error.detail}",
                    "Give the template a fallback for missing values, e.g. "
                    "{{ staff_name | default('师傅') }}.",
                )
            )
            continue
        if len(sent) > provider_limit:
            findings.append(
                Finding(
                    "too_long",
                    "error",
                    f"{label}: the message is {len(sent)} characters; the provider takes "
                    f"{provider_limit}.",
                    f"Cut at least {len(sent) - provider_limit} characters from the text.",
                )
            )
        if sent.count("【") + sent.count("】") > 2:
            findings.append(
                Finding(
                    "extra_brackets",
                    "error",
                    f"{label}: a value put into the text contains 【 or 】, which carriers read "
                    f"as a "
                    f"second signature.",
                    "Correct the customer's record, or drop that variable from the template.",
                )
            )

    if kind == "marketing":
        accepted = [a for a in (footer.strip(), PLATFORM_OPT_OUT, *KEYWORD_OPT_OUTS) if a]
        checked = (
            final
            if final is not None
            else templating.compose(body, signature=sig, category=kind, footer=footer)
        )
        tail = checked.rstrip(_TRAILING)
        if not any(a in checked for a in accepted):
            findings.append(
                Finding(
                    "footer_missing",
                    "error",
                    "Marketing messages must say how to refuse further messages (MIIT Order 31); "
                    "this one does not, and no opt-out footer is configured.",
                    f"End the text with 「回复T退订」 or 「{PLATFORM_OPT_OUT}」, or set the "
                    f"company's opt-out footer.",
                )
            )
        elif not any(tail.endswith(a.rstrip(_TRAILING)) for a in accepted):
            findings.append(
                Finding(
                    "footer_position",
                    "warning",
                    "The opt-out instruction is in the middle of the text; providers ask for it "
                    "at the end, and our gate only adds the footer when the text lacks it.",
                    "Move 「" + next(a for a in accepted if a in checked) + "」 to the very end.",
                )
            )

    # --- links ---------------------------------------------------------------------------
    findings.extend(_links(text, expressions, lines, tenant_domains))

    # --- refused topics, contacts, symbols -----------------------------------------------
    for topic in REFUSED_TOPICS:
        hit = _find_topic(topic, words, text, lines, expressions)
        if hit is not None:
            word, line = hit
            findings.append(
                Finding(
                    "refused_topic",
                    topic.severity,
                    f"Line {line}: 「{word}」 reads as {topic.topic}, a topic Chinese SMS "
                    f"providers refuse at template review.",
                    topic.hint,
                )
            )
    for match in _MOBILE.finditer(words):
        findings.append(
            Finding(
                "personal_phone",
                "error" if channel == "mms" else "warning",
                f"「{match.group().strip()}」 is a mobile number; "
                + (
                    "Aliyun refuses personal phone numbers in MMS text."
                    if channel == "mms"
                    else "Tencent Cloud refuses templates asking customers to call a personal "
                    "mobile, "
                    "and Huawei Cloud allows only landlines and 400 numbers in marketing."
                ),
                "Give the company's landline or 400 number, or the booking link.",
            )
        )
    if channel == "mms":
        for match in _QR.finditer(words):
            findings.append(
                Finding(
                    "qr_code",
                    "error",
                    f"「{match.group()}」: Aliyun refuses QR codes in MMS, in the images and in "
                    f"the text asking to scan one.",
                    "Use {{ booking_link }} instead of a QR code.",
                )
            )
            break
    symbols = [s for s in SPECIAL_SYMBOLS if s in words]
    if symbols:
        findings.append(
            Finding(
                "special_symbol",
                "warning",
                f"{'、'.join(symbols)}: providers refuse or garble these symbols.",
                "Write 元 after the amount instead of ¥, and plain punctuation instead of stars, "
                "ticks and arrows.",
            )
        )
    return findings


def _find_topic(
    topic: _Topic, words: str, text: str, lines: list[int], expressions: list[_Expression]
) -> tuple[str, int] | None:
    """The first of the topic's words in the text, or in text inside {{ … }}, and its line."""
    for word in topic.words:
        found = re.search(re.escape(word), words, re.IGNORECASE)
        if found:
            return word, _line_of(text, lines, found.start())
        for expression in expressions:
            if re.search(re.escape(word), expression.source, re.IGNORECASE):
                return word, expression.line
    return None


def errors(findings: Sequence[Finding]) -> list[Finding]:
    """The findings that block activation."""
    return [f for f in findings if f.severity == "error"]


# --- approved templates (Aliyun) ------------------------------------------------------------


def approved_template(
    body: str,
    *,
    signature: str,
    category: str,
    footer: str,
    base_url: str,
    templates: Sequence[tuple[str, str]],
) -> list[Finding]:
    """With a provider that sends only approved templates: ``body`` as sent must be one of
    the company's approved templates (``templates``: code and text) of its kind.

    Says which variables are missing or which fixed text differs from the nearest one, and
    the text to submit for approval when none matches; and what Aliyun's review would refuse
    in that text (``messaging.sms_templates.check``), with its length and segment count.
    """
    purpose = (
        sms_templates.CAMPAIGN_MARKETING
        if category == "marketing"
        else sms_templates.CAMPAIGN_SERVICE
    )
    kind = "marketing" if category == "marketing" else "notification"
    links = {
        name: base_url.rstrip("/") + prefix for name, prefix in sms_templates.CAMPAIGN_LINKS.items()
    }
    try:
        converted = templating.as_approved_template(body, links=links)
    except TemplateSyntaxError:
        return []  # the syntax finding says it already
    if converted is None:
        return [
            Finding(
                "approved_template_logic",
                "error",
                "The SMS provider sends only approved templates, and an approved template "
                "has plain variables: this text has conditions ({% if %}) or filters.",
                "Write the text with plain merge fields such as {{ customer_name }}, so it "
                "can be submitted as one template.",
            )
        ]
    wanted = templating.compose(
        converted,
        signature=signature,
        category="marketing" if category == "marketing" else "service",
        footer=footer,
    )
    wanted = wanted.removeprefix(f"【{signature}】").strip()
    found: list[Finding] = []
    chars = sms_templates.longest(f"【{signature}】{wanted}")
    for problem in sms_templates.check(
        text=wanted,
        kind=kind,
        purpose_code=purpose,
        signature=signature,
        company_signature=signature,
        base_url=base_url,
    ):
        found.append(
            Finding(
                "approved_template_rule",
                "error",
                f"Aliyun would not approve this text as a template: {problem}",
                "Change the campaign text; the text to submit follows from it.",
            )
        )
    if any(_squash(text) == _squash(wanted) for _, text in templates):
        return found
    submit = (
        f"Submit this text to Aliyun as a {'marketing' if kind == 'marketing' else 'notification'}"
        f" template under the signature 【{signature}】 ({chars} characters with every variable "
        f"at its longest, {sms_templates.segments(chars)} SMS), then record its template code "
        f"in Settings › SMS templates: 「{wanted}」"
    )
    if not templates:
        found.append(
            Finding(
                "approved_template_missing",
                "error",
                f"The company has no approved {kind} template for campaigns, and the SMS "
                "provider (Aliyun) sends only approved templates.",
                submit,
            )
        )
        return found
    code, nearest = max(
        templates,
        key=lambda t: difflib.SequenceMatcher(None, _squash(t[1]), _squash(wanted)).ratio(),
    )
    mine, theirs = sms_templates.variables_of(wanted), sms_templates.variables_of(nearest)
    missing = [n for n in mine if n not in theirs]
    extra = [n for n in theirs if n not in mine]
    said = []
    if missing:
        said.append(
            "it has no variable for " + ", ".join(f"${{{n}}}" for n in missing) + " of this text"
        )
    if extra:
        said.append(
            "it needs " + ", ".join(f"${{{n}}}" for n in extra) + " which this text does not use"
        )
    differs = _first_difference(wanted, nearest)
    if differs:
        said.append(
            f"its fixed text differs: this text has 「{differs[0]}」 where it has 「{differs[1]}」"
        )
    found.append(
        Finding(
            "approved_template_mismatch",
            "error",
            f"The text does not match an approved template; the nearest, {code}, "
            f"differs: {'; '.join(said) or 'in spacing or punctuation'}.",
            f"Make the text match {code} 「{nearest}」, or: {submit}",
        )
    )
    return found


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).rstrip(_TRAILING)


def _first_difference(mine: str, theirs: str) -> tuple[str, str] | None:
    """Where the fixed text (variables left out) first differs, with a little context."""
    a = _squash(sms_templates.VARIABLE.sub("", mine))
    b = _squash(sms_templates.VARIABLE.sub("", theirs))
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            return a[max(0, i1 - 3) : i2 + 3] or "—", b[max(0, j1 - 3) : j2 + 3] or "—"
    return None
