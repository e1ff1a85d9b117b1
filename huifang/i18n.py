"""Words on the pages people use, gettext-style: the message ids are the Chinese text,
and a second language is a catalog (``huifang/locale/<lang>/LC_MESSAGES/huifang.mo``)
that translates them. Chinese needs no catalog.

Templates use ``{{ _("客户") }}`` (Jinja2's i18n extension, installed by ``install``);
Python code uses ``_`` from here. Dates and times are shown in the company's time zone in
Chinese form.
"""

from __future__ import annotations

import datetime as dt
import functools
import gettext
import zoneinfo
from pathlib import Path

from jinja2 import Environment

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT_LANGUAGE = "zh"
WEEKDAYS = "一二三四五六日"


@functools.cache
def translations(language: str = DEFAULT_LANGUAGE) -> gettext.NullTranslations:
    return gettext.translation("huifang", LOCALE_DIR, languages=[language], fallback=True)


def _(message: str) -> str:
    return translations().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations().ngettext(singular, plural, n)


def install(environment: Environment, language: str = DEFAULT_LANGUAGE) -> None:
    """Give a Jinja2 environment ``_``, ``gettext`` and ``ngettext`` for ``language``."""
    environment.add_extension("jinja2.ext.i18n")
    environment.install_gettext_translations(  # type: ignore[attr-defined]
        translations(language), newstyle=True
    )


def _local(value: dt.datetime, timezone: str) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(zoneinfo.ZoneInfo(timezone))


def format_datetime(
    value: dt.datetime | None, timezone: str, *, now: dt.datetime | None = None
) -> str:
    """``今天 15:30``, ``昨天 09:05``, ``12月6日 周日 15:30``, ``2025年12月6日 15:30``."""
    if value is None:
        return ""
    local = _local(value, timezone)
    today = _local(now or dt.datetime.now(dt.UTC), timezone).date()
    clock = local.strftime("%H:%M")
    days = (local.date() - today).days
    if days == 0:
        return f"今天 {clock}"
    if days == -1:
        return f"昨天 {clock}"
    if days == 1:
        return f"明天 {clock}"
    if local.year == today.year:
        return f"{local.month}月{local.day}日 周{WEEKDAYS[local.weekday()]} {clock}"
    return f"{local.year}年{local.month}月{local.day}日 {clock}"


def format_date(value: dt.date | dt.datetime | None, timezone: str | None = None) -> str:
    """``2026年12月6日``, a datetime taken in ``timezone``."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = _local(value, timezone or "Asia/Shanghai").date()
    return f"{value.year}年{value.month}月{value.day}日"


def format_duration(seconds: float) -> str:
    """``3 分钟``, ``2 小时 5 分``, ``1 天 4 小时``: how long something has waited."""
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} 分钟"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} 小时 {minutes} 分" if minutes else f"{hours} 小时"
    days, hours = divmod(hours, 24)
    return f"{days} 天 {hours} 小时" if hours else f"{days} 天"
