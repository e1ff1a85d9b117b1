"""Lint findings for people: a Chinese sentence, and a fix a machine can apply.

``lint.lint`` says what is wrong in English for the API; the campaign editor shows each
finding as one Chinese sentence and, where the text itself can be corrected, a fix: the
edits (offsets into the text as the editor holds it) and the whole text after them, so a
page can apply it with one click or one form post. Findings about the company's settings
(the signature) or about a template that does not parse have no fix, only the sentence.

Pure: no database. Offsets count code points (Python ``str`` indices) of the text with
Windows line ends made ``\\n`` (browsers post a textarea with ``\\r\\n``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from campaigns import lint

BOOKING_LINK = "{{ booking_link }}"
OPT_OUT = "回复T退订"
_SENTENCE_END = "。！!？?；;\n"
_CLAUSE_END = _SENTENCE_END + "，,"
_LINE = re.compile(r"^(?:Line|Sample) (\d+)")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_TOO_LONG = re.compile(r"reaches (\d+) characters; the provider takes (\d+)")
_SAMPLE_LONG = re.compile(r"is (\d+) characters; the provider takes (\d+)")
_WORST = re.compile(r"\{\{ (\w+) \| truncate\(8\) \}\}")
_WORD = re.compile(r"「([^」]+)」")
_MONEY = re.compile(r"[¥￥]\s*(\d+(?:[.,]\d+)?)")


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    old: str
    new: str


@dataclass(frozen=True)
class Fix:
    label: str  # the button's words, Chinese
    edits: tuple[Edit, ...]
    result: str  # the whole text with the edits applied


@dataclass(frozen=True)
class Explained:
    part: str
    code: str
    severity: str
    message: str
    hint: str
    sentence: str  # Chinese: what is wrong and what to do
    fix: Fix | None


def normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _fix(label: str, text: str, edits: Sequence[Edit]) -> Fix | None:
    if not edits:
        return None
    ordered = sorted(edits, key=lambda e: e.start)
    out, at = [], 0
    for edit in ordered:
        if edit.start < at:  # overlapping edits: keep it simple, offer no fix
            return None
        out += [text[at : edit.start], edit.new]
        at = edit.end
    out.append(text[at:])
    return Fix(label, tuple(ordered), "".join(out))


def _replace_all(text: str, old: str, new: str) -> list[Edit]:
    edits, at = [], text.find(old)
    while at >= 0 and old:
        edits.append(Edit(at, at + len(old), old, new))
        at = text.find(old, at + len(old))
    return edits


def _clause_of(text: str, index: int) -> tuple[int, int]:
    """The clause around ``text[index]`` (up to a comma or a sentence's end), with its
    closing punctuation."""
    start = max(text.rfind(c, 0, index) for c in _CLAUSE_END) + 1
    ends = [i for i in (text.find(c, index) for c in _CLAUSE_END) if i >= 0]
    end = min(ends) + 1 if ends else len(text)
    if end <= len(text) and text[end - 1 : end] == "\n":
        end -= 1  # keep the line break
    return start, end


def _drop_clause(text: str, word: str, label: str) -> Fix | None:
    at = text.lower().find(word.lower())
    if at < 0:
        return None
    start, end = _clause_of(text, at)
    rest = (text[:start] + text[end:]).strip()
    if len(rest) < 4:  # the sentence is the whole message: a person must rewrite it
        return None
    return _fix(label, text, [Edit(start, end, text[start:end], "")])


def _quoted(message: str) -> str | None:
    found = _QUOTED.search(message)
    if not found:
        return None
    try:
        value = ast.literal_eval(found.group())
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None


def _line(message: str) -> str:
    found = _LINE.match(message)
    return f"第{found.group(1)}行" if found else ""


def _append_opt_out(text: str, phrase: str) -> list[Edit]:
    end = len(text.rstrip())
    return [Edit(end, len(text), text[end:], phrase)]


# --- one explainer per code ------------------------------------------------------------------

Explainer = Callable[[lint.Finding, str, str], tuple[str, Fix | None]]


def _signature_missing(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    return (
        "公司还没有短信签名，运营商会拒收没有【签名】的短信。请在「设置」里填写2–16个字的签名。"
    ), None


def _signature_brackets(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    return "签名里带有【或】；发送时会自动加上【】，请在「设置」里去掉括号再保存。", None


def _signature_length(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    return (
        f"签名【{sig}】有{len(sig)}个字，短信平台只接受2–16个字；请在「设置」里改用品牌或公司简称。"
    ), None


def _signature_in_body(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    head = f"【{sig}】"
    at = text.find(head)
    fix = _fix("删除开头的签名", text, [Edit(at, at + len(head), head, "")]) if at >= 0 else None
    return (
        f"正文开头写了「{head}」；发送时会自动加上签名，写在正文里会出现两次，运营商会拒收。"
    ), fix


def _extra_brackets(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    if f.message.startswith("Sample"):
        return (
            "某位客户的资料里含有【或】，放进短信后会被当成第二个签名；请修改该客户的资料，"
            "或不在模板中使用该变量。"
        ), None
    edits = _replace_all(text, "【", "「") + _replace_all(text, "】", "」")
    return (
        f"{_line(f.message)}正文里有【】；运营商只允许签名使用【】，其他的会被当成第二个签名。"
        "请改用「」或（）。",
        _fix("把【】换成「」", text, edits),
    )


def _template(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    names = "、".join(lint.templating.VARIABLES)
    return (f"模板写法有误，无法为每位客户生成短信：{f.message}可用的变量有 {names}。"), None


def _too_long(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    found = _TOO_LONG.search(f.message) or _SAMPLE_LONG.search(f.message)
    size = (
        f"达到{found.group(1)}个字，平台上限为{found.group(2)}个字"
        if found
        else "超过平台的字数上限"
    )
    worst = _WORST.search(f.hint)
    fix = None
    if worst:
        name = worst.group(1)
        edits = [
            Edit(m.start(), m.end(), m.group(), f"{{{{ {name} | truncate(8) }}}}")
            for m in re.finditer(r"\{\{\s*" + re.escape(name) + r"\s*\}\}", text)
        ]
        fix = _fix(f"把 {name} 截到8个字", text, edits)
    who = (
        "某位客户的" if f.message.startswith("Sample") else "加上签名、退订提示和较长的客户资料后，"
    )
    return f"{who}短信{size}；请删减正文。", fix


def _sample(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    return (
        "有客户缺少模板用到的资料，短信无法生成；请为变量加上默认值，"
        "例如 {{ staff_name | default('师傅') }}。"
    ), None


def _footer_missing(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    return (
        "营销短信必须告诉客户如何退订（工信部第31号令），这条短信没有，公司也没有设置退订提示。",
        _fix(f"在结尾加上「{OPT_OUT}」", text, _append_opt_out(text, OPT_OUT)),
    )


def _footer_position(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    phrase = next((p for p in (*lint.KEYWORD_OPT_OUTS, lint.PLATFORM_OPT_OUT) if p in text), None)
    fix = None
    if phrase is not None:
        at = text.find(phrase)
        end = at + len(phrase)
        while end < len(text) and text[end] in "，,。.！! ":
            end += 1
        tail = len(text.rstrip())
        if end < tail:
            sep = "" if text[:tail].rstrip()[-1:] in "。！!？?" else "。"
            fix = _fix(
                f"把「{phrase}」移到结尾",
                text,
                [Edit(at, end, text[at:end], ""), Edit(tail, len(text), text[tail:], sep + phrase)],
            )
    return "退订提示写在了短信中间；平台要求放在结尾。", fix


def _link(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    shown = _quoted(f.message) or ""
    edits = _replace_all(text, shown, BOOKING_LINK) if shown else []
    reason = {
        "link_modified": "改动了系统生成的链接；平台只接受原样的链接",
        "link_variable": "由变量拼成，每条短信都不同；腾讯云和阿里云只接受固定链接",
        "link_shortener": "是短链接；平台无法审核跳转后的网址，会拒收",
        "link_domain": "不在公司备案的域名下；平台只接受发送方自己已备案域名的链接",
    }[f.code]
    return (
        f"{_line(f.message)}链接「{shown}」{reason}。"
        f"可改用 {BOOKING_LINK}（每位客户专属的预约链接）。",
        _fix("换成预约链接", text, edits),
    )


def _refused_topic(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    word = (_WORD.findall(f.message) or [""])[0]
    topic = f.message.split(" reads as ", 1)[-1].split(" (", 1)[0].split(", a topic")[0]
    if word == "沙发翻新":
        fix = _fix("改成「沙发清洁护理」", text, _replace_all(text, word, "沙发清洁护理"))
    else:
        fix = _drop_clause(text, word, f"删除含「{word}」的这一句") if word else None
    level = "会被拒绝" if f.severity == "error" else "可能被拒绝"
    return (
        f"{_line(f.message)}「{word}」属于「{topic}」，短信平台审核模板时{level}；"
        "请删掉这一句，只写本次服务提醒和预约方式。",
        fix,
    )


def _personal_phone(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    number = (_WORD.findall(f.message) or [""])[0]
    edits = _replace_all(text, number, BOOKING_LINK) if number else []
    return (
        f"「{number}」是手机号；平台不允许在短信里留个人手机，请改用公司座机、400电话或预约链接。",
        _fix("换成预约链接", text, edits),
    )


def _qr_code(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    word = (_WORD.findall(f.message) or [""])[0]
    return (
        "阿里云彩信不允许出现二维码或“扫码”字样；请改用预约链接。",
        _drop_clause(text, word, f"删除含「{word}」的这一句") if word else None,
    )


def _special_symbol(f: lint.Finding, text: str, sig: str) -> tuple[str, Fix | None]:
    edits = [Edit(m.start(), m.end(), m.group(), m.group(1) + "元") for m in _MONEY.finditer(text)]
    taken = {i for e in edits for i in range(e.start, e.end)}
    for symbol in lint.SPECIAL_SYMBOLS:
        edits += [e for e in _replace_all(text, symbol, "") if e.start not in taken]
    return (
        "短信里有平台会拒收或显示成乱码的符号；金额请写成“100元”，不要用星号、勾号和箭头。",
        _fix("去掉特殊符号", text, edits),
    )


_EXPLAIN: dict[str, Explainer] = {
    "signature_missing": _signature_missing,
    "signature_brackets": _signature_brackets,
    "signature_length": _signature_length,
    "signature_in_body": _signature_in_body,
    "extra_brackets": _extra_brackets,
    "template": _template,
    "too_long": _too_long,
    "sample": _sample,
    "footer_missing": _footer_missing,
    "footer_position": _footer_position,
    "link_modified": _link,
    "link_variable": _link,
    "link_shortener": _link,
    "link_domain": _link,
    "refused_topic": _refused_topic,
    "personal_phone": _personal_phone,
    "qr_code": _qr_code,
    "special_symbol": _special_symbol,
}


def explain(finding: lint.Finding, *, text: str, signature: str, part: str = "sms") -> Explained:
    """The finding with its Chinese sentence and, where one exists, a fix to ``text``."""
    text = normalize(text)
    explainer = _EXPLAIN.get(finding.code)
    if explainer is None:  # a code added to lint without a sentence here: still shown
        sentence, fix = f"{finding.message} {finding.hint}", None
    else:
        sentence, fix = explainer(finding, text, signature.strip())
    if fix is not None and fix.result == text:
        fix = None
    return Explained(
        part, finding.code, finding.severity, finding.message, finding.hint, sentence, fix
    )
