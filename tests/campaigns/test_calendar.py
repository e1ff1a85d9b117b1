"""The calendar dates campaigns hang on, checked against published dates and independent rules."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lunar_python import Lunar

from campaigns import calendar
from huifang.errors import Invalid

STEMS = "甲乙丙丁戊己庚辛壬癸"
# 1949-10-01 was a 甲子 day; counting days from it gives the stem without the library.
JIAZI = dt.date(1949, 10, 1)


def stem(day: dt.date) -> str:
    return STEMS[(day - JIAZI).days % 10]


@pytest.mark.parametrize(
    ("year", "expected"),
    [
        (2027, dt.date(2027, 2, 6)),
        (2028, dt.date(2028, 1, 26)),
        (2029, dt.date(2029, 2, 13)),
        (2025, dt.date(2025, 1, 29)),
        (2026, dt.date(2026, 2, 17)),
    ],
)
def test_spring_festival(year: int, expected: dt.date) -> None:
    assert calendar.lunar_festival("春节", year) == expected


@pytest.mark.parametrize(
    ("name", "year", "expected"),
    [
        ("除夕", 2026, dt.date(2026, 2, 16)),  # the eve of 2026-02-17
        ("除夕", 2027, dt.date(2027, 2, 5)),
        ("元宵", 2025, dt.date(2025, 2, 12)),
        ("端午", 2025, dt.date(2025, 5, 31)),
        ("端午节", 2025, dt.date(2025, 5, 31)),
        ("七夕", 2025, dt.date(2025, 8, 29)),
        ("中秋节", 2025, dt.date(2025, 10, 6)),
        ("重阳", 2025, dt.date(2025, 10, 29)),
    ],
)
def test_lunar_festivals(name: str, year: int, expected: dt.date) -> None:
    assert calendar.lunar_festival(name, year) == expected


@pytest.mark.parametrize(
    ("name", "year", "expected"),
    [
        ("立春", 2025, dt.date(2025, 2, 3)),
        ("清明", 2025, dt.date(2025, 4, 4)),
        ("芒种", 2025, dt.date(2025, 6, 5)),
        ("夏至", 2025, dt.date(2025, 6, 21)),
        ("冬至", 2025, dt.date(2025, 12, 21)),  # in the next lunar year's table
        ("小寒", 2026, dt.date(2026, 1, 5)),  # before the lunar new year
        ("冬至", 2024, dt.date(2024, 12, 21)),
    ],
)
def test_solar_terms_published_dates(name: str, year: int, expected: dt.date) -> None:
    assert calendar.solar_term(name, year) == expected


def test_our_term_names_are_the_library_s() -> None:
    assert set(calendar.SOLAR_TERMS) == set(Lunar.JIE_QI)
    assert len(calendar.SOLAR_TERMS) == 24


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=calendar.MIN_YEAR, max_value=calendar.MAX_YEAR))
def test_solar_terms_fall_in_order_about_15_days_apart(year: int) -> None:
    # 小寒 and 大寒 close the list but open the Gregorian year.
    order = ("小寒", "大寒", *calendar.SOLAR_TERMS[:-2])
    dates = [calendar.solar_term(name, year) for name in order]
    assert all(d.year == year for d in dates)
    gaps = [(b - a).days for a, b in itertools.pairwise(dates)]
    assert all(14 <= gap <= 16 for gap in gaps), gaps
    assert dt.date(year, 2, 3) <= calendar.solar_term("立春", year) <= dt.date(year, 2, 5)
    assert dt.date(year, 12, 21) <= calendar.solar_term("冬至", year) <= dt.date(year, 12, 23)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=calendar.MIN_YEAR, max_value=calendar.MAX_YEAR))
def test_spring_festival_is_a_new_moon_between_jan_21_and_feb_20(year: int) -> None:
    day = calendar.lunar_festival("春节", year)
    assert dt.date(year, 1, 21) <= day <= dt.date(year, 2, 20)
    assert calendar.lunar_festival("除夕", year) == day - dt.timedelta(days=1)
    assert calendar.lunar_festival("元宵", year) == day + dt.timedelta(days=14)


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=calendar.MIN_YEAR, max_value=calendar.MAX_YEAR))
def test_traditional_plum_rain_is_the_first_bing_day_after_mangzhong(year: int) -> None:
    onset, source = calendar.plum_rain_onset(year)
    mangzhong = calendar.solar_term("芒种", year)
    assert source == "first 丙 day after 芒种"
    assert mangzhong < onset <= mangzhong + dt.timedelta(days=10)
    assert stem(onset) == "丙"
    between = [mangzhong + dt.timedelta(days=n) for n in range(1, (onset - mangzhong).days)]
    assert all(stem(day) != "丙" for day in between)


def test_day_stem_agrees_with_the_independent_count() -> None:
    day = dt.date(1990, 1, 1)
    while day.year < 2060:
        assert calendar.day_stem(day) == stem(day), day
        day += dt.timedelta(days=113)


def test_plum_rain_2025_by_rule() -> None:
    # 芒种 2025 fell on 5 June, an 乙 day; the next day is 丙.
    assert calendar.solar_term("芒种", 2025) == dt.date(2025, 6, 5)
    assert calendar.plum_rain_onset(2025) == (dt.date(2025, 6, 6), "first 丙 day after 芒种")


def test_plum_rain_regional_table() -> None:
    table = {"上海": {2026: dt.date(2026, 6, 14)}, "浙江省": {2026: dt.date(2026, 6, 9)}}
    assert calendar.plum_rain_onset(2026, "上海", table) == (dt.date(2026, 6, 14), "table")
    # 上海市 and 上海 are one region; 浙江 matches the row written 浙江省.
    assert calendar.plum_rain_onset(2026, "上海市", table) == (dt.date(2026, 6, 14), "table")
    assert calendar.plum_rain_onset(2026, "浙江", table) == (dt.date(2026, 6, 9), "table")
    # No row for the region, or none for the year: the almanac rule.
    rule = calendar.traditional_plum_rain_onset(2026)
    assert calendar.plum_rain_onset(2026, "江苏", table) == (rule, "first 丙 day after 芒种")
    assert calendar.plum_rain_onset(2027, "上海", table)[1] == "first 丙 day after 芒种"
    assert calendar.plum_rain_onset(2026, None, table)[1] == "first 丙 day after 芒种"


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"上海": {2026: dt.date(2025, 6, 14)}}, "another year"),
        ({"上海": {2026: dt.date(2026, 9, 1)}}, "check the month"),
        ({"上海": {2026: "2026-06-14"}}, "must be a date"),
        ({"上海": {2026: dt.date(2026, 6, 1)}, "上海市": {2026: dt.date(2026, 6, 2)}}, "twice"),
        ({" ": {2026: dt.date(2026, 6, 1)}}, "region name"),
    ],
)
def test_plum_table_mistakes_are_refused(table: dict, words: str) -> None:
    with pytest.raises(Invalid, match=words):
        calendar.check_plum_table(table)


def test_a_bad_table_entry_is_refused_when_used() -> None:
    with pytest.raises(Invalid, match="another year"):
        calendar.plum_rain_onset(2026, "上海", {"上海": {2026: dt.date(2025, 6, 14)}})


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(Invalid) as error:
        calendar.solar_term("芒钟", 2026)
    assert "立春" in error.value.detail and "大寒" in error.value.detail
    with pytest.raises(Invalid) as error:
        calendar.lunar_festival("圣诞", 2026)
    assert "春节" in error.value.detail and "除夕" in error.value.detail


@pytest.mark.parametrize("year", [1800, 2206, True, "2026"])
def test_years_out_of_range_are_refused(year: object) -> None:
    with pytest.raises(Invalid, match="year"):
        calendar.solar_term("芒种", year)  # type: ignore[arg-type]
