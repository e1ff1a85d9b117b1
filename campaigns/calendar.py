"""The Chinese calendar dates seasonal campaigns hang on: solar terms, lunar festivals, 入梅.

Dates come from ``lunar_python`` (6tail's lunar), a maintained calendar library: solar
terms are astronomical moments and lunar months follow new moons, so a hand-written table
would be wrong within a few years and nobody would notice. Every date here is the date in
China (the calendar's own time zone); a customer abroad gets the message on that calendar
date in their own zone, which is what "the day before Spring Festival" means to them.

The plum-rain onset (入梅) is declared each year by regional weather services after the
fact, so it cannot be known ahead from any library. Companies keep a table of the dates
they use per region; where it has no entry, the traditional almanac rule (the first 丙 day
after 芒种) gives a date. No built-in regional table ships: the only figures at hand were
climatological averages from press reports, not a source a company could rely on.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping

from lunar_python import Lunar, Solar

from huifang.errors import Invalid

# Beyond these years the library still answers, but nobody schedules messages there and a
# typo (2206 for 2026) is more likely than intent.
MIN_YEAR = 1901
MAX_YEAR = 2099

# In the order of the Gregorian year's spring: 立春 opens the farming year, as almanacs list them.
SOLAR_TERMS: tuple[str, ...] = (
    "立春",
    "雨水",
    "惊蛰",
    "春分",
    "清明",
    "谷雨",
    "立夏",
    "小满",
    "芒种",
    "夏至",
    "小暑",
    "大暑",
    "立秋",
    "处暑",
    "白露",
    "秋分",
    "寒露",
    "霜降",
    "立冬",
    "小雪",
    "大雪",
    "冬至",
    "小寒",
    "大寒",
)

# Festivals fixed on a lunar (month, day) in the lunar year that starts in the same
# Gregorian year; 除夕 is the eve of that year's Spring Festival (the last day of the
# twelfth month has 29 or 30 days, so it is found from 春节, never as a fixed day).
_LUNAR_DAYS: dict[str, tuple[int, int]] = {
    "春节": (1, 1),
    "元宵": (1, 15),
    "端午": (5, 5),
    "七夕": (7, 7),
    "中秋": (8, 15),
    "重阳": (9, 9),
}
EVE = "除夕"
LUNAR_FESTIVALS: tuple[str, ...] = (*_LUNAR_DAYS, EVE)

PLUM_SOURCE_TABLE = "table"
PLUM_SOURCE_RULE = "first 丙 day after 芒种"

PlumTable = Mapping[str, Mapping[int, dt.date]]


def _check_year(year: int) -> None:
    if isinstance(year, bool) or not isinstance(year, int):
        raise Invalid(f"The year must be a whole number such as 2026, not {year!r}.")
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise Invalid(
            f"The year {year} is outside the calendar we schedule on "
            f"({MIN_YEAR}–{MAX_YEAR}); check for a typo."
        )


def solar_term(name: str, year: int) -> dt.date:
    """The date in China of the solar term ``name`` (立春 … 大寒) in the Gregorian ``year``."""
    term = name.strip() if isinstance(name, str) else name
    if term not in SOLAR_TERMS:
        raise Invalid(f"{name!r} is not a solar term; use one of: {'、'.join(SOLAR_TERMS)}.")
    _check_year(year)
    return _solar_term(term, year)


@functools.cache
def _solar_term(term: str, year: int) -> dt.date:
    # A lunar year's table runs from the previous 冬至 to the next spring, under the Chinese
    # names for its own terms; the year's own 冬至 sits in the next lunar year's table.
    for lunar_year in (year, year + 1):
        moment = Lunar.fromYmd(lunar_year, 1, 1).getJieQiTable().get(term)
        if moment is not None and moment.getYear() == year:
            return dt.date(moment.getYear(), moment.getMonth(), moment.getDay())
    raise AssertionError(f"the calendar library has no {term} in {year}")  # pragma: no cover


def festival_name(name: str) -> str | None:
    """The calendar's name for a festival (端午节 → 端午), or None when we cannot date it."""
    text = name.strip()
    if text in LUNAR_FESTIVALS:
        return text
    # People write 端午节, 中秋节, 元宵节; the calendar names are without 节.
    bare = text.removesuffix("节")
    return bare if bare in LUNAR_FESTIVALS else None


def lunar_festival(name: str, year: int) -> dt.date:
    """The Gregorian date of a lunar festival (春节, 元宵, 端午, 七夕, 中秋, 重阳, 除夕)."""
    festival = festival_name(name) if isinstance(name, str) else None
    if festival is None:
        raise Invalid(
            f"{name!r} is not a festival we can date; use one of: {'、'.join(LUNAR_FESTIVALS)}."
        )
    _check_year(year)
    return _lunar_festival(festival, year)


@functools.cache
def _lunar_festival(festival: str, year: int) -> dt.date:
    if festival == EVE:
        return _lunar_festival("春节", year) - dt.timedelta(days=1)
    month, day = _LUNAR_DAYS[festival]
    solar = Lunar.fromYmd(year, month, day).getSolar()
    return dt.date(solar.getYear(), solar.getMonth(), solar.getDay())


def day_stem(day: dt.date) -> str:
    """The heavenly stem (天干, 甲 … 癸) of a day in the sexagenary day count."""
    return str(Solar.fromYmd(day.year, day.month, day.day).getLunar().getDayGan())


@functools.cache
def traditional_plum_rain_onset(year: int) -> dt.date:
    """入梅 by the almanac rule: the first 丙 day after 芒种 (芒种 itself does not count)."""
    _check_year(year)
    day = _solar_term("芒种", year) + dt.timedelta(days=1)
    while day_stem(day) != "丙":  # the stems cycle every 10 days
        day += dt.timedelta(days=1)
    return day


def region_key(region: str) -> str:
    """A region as tables match it: 上海市 and 上海 are the same place, 浙江省 and 浙江 too."""
    text = region.strip()
    for suffix in ("维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "特别行政区", "省", "市"):
        if text.endswith(suffix) and len(text) > len(suffix) + 1:
            return text.removesuffix(suffix)
    return text


def check_plum_table(table: PlumTable) -> dict[str, dict[int, dt.date]]:
    """A company's 入梅 table, checked and keyed by region as lookups match it.

    Refused: a date filed under another year, and dates outside May–July (入梅 in the
    regions that have plum rains falls in late May to early July; anything else is a typo).
    """
    checked: dict[str, dict[int, dt.date]] = {}
    for region, dates in table.items():
        if not isinstance(region, str) or not region.strip():
            raise Invalid("Each plum-rain row needs a region name, such as 上海 or 浙江.")
        key = region_key(region)
        if key in checked:
            raise Invalid(f"The plum-rain table lists {region!r} twice (as {key!r}); keep one.")
        rows: dict[int, dt.date] = {}
        for year, onset in dates.items():
            _check_year(year)
            if not isinstance(onset, dt.date) or isinstance(onset, dt.datetime):
                raise Invalid(
                    f"The plum-rain onset for {region} {year} must be a date such as {year}-06-15."
                )
            if onset.year != year:
                raise Invalid(
                    f"The plum-rain onset filed under {region} {year} is "
                    f"{onset.isoformat()}, in another year; file it under "
                    f"{onset.year} or correct the date."
                )
            if not 5 <= onset.month <= 7:
                raise Invalid(
                    f"The plum-rain onset for {region} {year} is "
                    f"{onset.isoformat()}; 入梅 falls between late May and early "
                    f"July, so check the month."
                )
            rows[year] = onset
        checked[key] = rows
    return checked


def plum_rain_onset(
    year: int, region: str | None = None, table: PlumTable | None = None
) -> tuple[dt.date, str]:
    """入梅 for ``region`` in ``year`` and where the date came from.

    The company's table wins when it has the region and year ("table"); otherwise the
    traditional rule answers ("first 丙 day after 芒种").
    """
    _check_year(year)
    if region and table:
        key = region_key(region)
        for name, rows in table.items():
            if region_key(name) == key and year in rows:
                # Only the entry used is checked here; check_plum_table() checks a whole
                # table when a company edits it.
                return check_plum_table({name: {year: rows[year]}})[key][year], PLUM_SOURCE_TABLE
    return traditional_plum_rain_onset(year), PLUM_SOURCE_RULE
