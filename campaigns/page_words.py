"""The English reasons the campaign services give, in Chinese for the console's pages.

The services speak English to the API (``rules.Occurrence.basis``/``reason``, the audience
sample's ``why_not``, the presets' descriptions, template problems); the console shows the
same facts in Chinese. Each phrase is a pattern of the service's sentence and a Chinese
message id (through ``huifang.i18n._``, so a second language is a catalog); a sentence no
pattern knows is shown as a general Chinese line rather than in English.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from huifang.i18n import _

WHY_NOT = {"opted out": "已退订", "no marketing consent": "没有营销同意记录"}

PRESET_DESCRIPTIONS = {
    "ac_filter_quarterly": "客户上次空调清洗后每 90 天提醒一次；错过时最多晚 14 天补发，"
    "再晚就等下一个季度。",
    "plum_rain_mould": "每年入梅前 7 天（按公司的地区入梅表，表里没有时按历法推算）："
    "提醒除湿防霉。",
    "spring_festival_deep_clean": "每年春节前 20 天，趁年前高峰之前还有空档时提醒深度保洁。",
    "curtain_biennial": "客户上次窗帘清洗后每两年提醒一次；最多晚 30 天补发。",
    "yearly_checkin": "每年在客户首次服务的纪念日发一条简短的感谢，附预约链接。",
}
PRESET_AUDIENCES = {
    "ac_filter_quarterly": "做过空调清洗的客户，各自在上次清洗三个月后收到提醒。",
    "plum_rain_mould": "长江流域梅雨地区的客户；做过除湿防霉的最可能预约。",
    "spring_festival_deep_clean": "所有客户；去年春节前约过深度保洁的优先。",
    "curtain_biennial": "做过窗帘清洗的客户，各自在上次清洗两年后收到提醒。",
    "yearly_checkin": "至少服务过一次的客户，在首次服务的周年日收到。",
}


def why_not(reason: str | None) -> str:
    return _(WHY_NOT[reason]) if reason in WHY_NOT else (_("不可发送") if reason else "")


def preset_description(name: str) -> str:
    return _(PRESET_DESCRIPTIONS.get(name, "按预设的规则定期提醒客户。"))


def preset_audience(name: str) -> str:
    return _(PRESET_AUDIENCES.get(name, ""))


def _date(text: str) -> str:
    year, month, day = text.split("-")
    return f"{int(year)}年{int(month)}月{int(day)}日"


_Phrase = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]
_D = r"(\d{4}-\d{2}-\d{2})"

_ANCHOR: list[_Phrase] = [
    (
        re.compile(rf"^入梅 (\d{{4}}) \({_D}; (.+), company table\)$"),
        lambda m: _("{year}年入梅（{date}，{region}，公司入梅表）").format(
            year=m[1], date=_date(m[2]), region=m[3]
        ),
    ),
    (
        re.compile(rf"^入梅 (\d{{4}}) \({_D}; (.+)\)$"),
        lambda m: _("{year}年入梅（{date}，历法推算）").format(year=m[1], date=_date(m[2])),
    ),
    (
        re.compile(rf"^(\S+) (\d{{4}}) \({_D}\)$"),
        lambda m: _("{year}年{name}（{date}）").format(year=m[2], name=m[1], date=_date(m[3])),
    ),
]


def _anchor(text: str) -> str:
    for pattern, say in _ANCHOR:
        found = pattern.match(text)
        if found:
            return say(found)
    return text


_BASIS: list[_Phrase] = [
    (
        re.compile(rf"^(\d+) days after the last reminder \({_D}\)"),
        lambda m: _("上次提醒（{date}）后 {days} 天").format(date=_date(m[2]), days=m[1]),
    ),
    (
        re.compile(rf"^(\d+) days after the last (.+?) \({_D}\)"),
        lambda m: _("上次{service}（{date}）后 {days} 天").format(
            service=m[2], date=_date(m[3]), days=m[1]
        ),
    ),
    (re.compile(r"^on (.+)$"), lambda m: _("{anchor}当天").format(anchor=_anchor(m[1]))),
    (
        re.compile(r"^(\d+) days? (before|after) (.+)$"),
        lambda m: (
            _("{anchor}前 {days} 天") if m[2] == "before" else _("{anchor}后 {days} 天")
        ).format(anchor=_anchor(m[3]), days=m[1]),
    ),
    (
        re.compile(r"^every year on (\d+)-(\d+)$"),
        lambda m: _("每年{month}月{day}日").format(month=m[1], day=m[2]),
    ),
    (
        re.compile(rf"^(\d+) years? since the first service \({_D}\)$"),
        lambda m: _("首次服务（{date}）满 {years} 年").format(date=_date(m[2]), years=m[1]),
    ),
]
_ROLLED = re.compile(r", rolled forward by (\d+) × (\d+) days$")


def basis(text: str) -> str:
    """Why an occurrence falls on its date, in Chinese."""
    rolled = _ROLLED.search(text)
    head = text[: rolled.start()] if rolled else text
    said = None
    for pattern, say in _BASIS:
        found = pattern.match(head)
        if found:
            said = say(found)
            break
    if said is None:
        return _("按活动规则计算")
    if rolled:
        said += _("，顺延 {steps} 个周期（每个 {days} 天）").format(steps=rolled[1], days=rolled[2])
    return said


_SKIPPED = re.compile(rf"(\d+) reminders? from {_D} to {_D} skipped: more than (\d+) days late")
_CAUGHT = re.compile(
    rf"[Dd]ue {_D} at (\d\d:\d\d), (\d+) days? late, within the catch-up "
    r"window of (\d+) days"
)


def reason(text: str | None) -> str:
    """Why an occurrence was moved or sent late, in Chinese ("" when there is nothing)."""
    if not text:
        return ""
    parts = []
    skipped = _SKIPPED.search(text)
    if skipped:
        parts.append(
            _("{first}至{last}的 {count} 次提醒发现时已晚了超过 {window} 天，已跳过。").format(
                first=_date(skipped[2]), last=_date(skipped[3]), count=skipped[1], window=skipped[4]
            )
        )
    caught = _CAUGHT.search(text)
    if caught:
        parts.append(
            _("原定{date} {time}，晚了 {late} 天，仍在 {window} 天补发期内：立即发送。").format(
                date=_date(caught[1]), time=caught[2], late=caught[3], window=caught[4]
            )
        )
    return "".join(parts) or _("发送日期已按规则调整。")


def template_problem(detail: str | None) -> str:
    """A template that cannot be filled for one customer."""
    if not detail:
        return ""
    return _("这条短信无法为这位客户生成（模板里用到的信息缺失或写法有误），请检查模板。")
