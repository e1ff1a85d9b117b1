"""Rules and occurrences: cadences roll forward, catch up or skip with a reason; yearly rules
land on their calendar dates; local send times survive daylight-saving switches."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns import calendar
from campaigns.rules import (
    Anniversary,
    Cadence,
    CustomerFacts,
    FixedDate,
    LunarOffset,
    Occurrence,
    PlumRainOffset,
    Rule,
    SolarTermOffset,
    describe,
    local_instant,
    next_occurrence,
    occurrences,
    rule_from_dict,
)
from huifang.errors import Invalid

UTC = dt.UTC
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def at(day: dt.date, hour: int, minute: int, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=tz).astimezone(UTC)


AC = CustomerFacts(
    last_services={"ac_cleaning": dt.date(2026, 1, 10)},
    first_service=dt.date(2023, 5, 20),
    region="上海",
)


# --- cadence --------------------------------------------------------------------------------


def test_cadence_due_every_days_after_the_last_service_at_local_send_time() -> None:
    rule = Cadence("ac_cleaning", every_days=90, catch_up_days=7)
    found = next_occurrence(rule, customer=AC, after=utc(2026, 2, 1), tz=SHANGHAI)
    assert found is not None
    assert found.local_date == dt.date(2026, 4, 10)
    assert found.due_at == utc(2026, 4, 10, 2, 0)  # 10:00 in Shanghai
    assert (found.late_by_days, found.caught_up, found.skipped, found.reason) == (0, False, 0, None)


def test_cadence_accepts_the_service_s_chinese_label() -> None:
    assert Cadence("空调清洗", every_days=90).service_type == "ac_cleaning"
    by_label = CustomerFacts(last_services={"空调清洗": dt.date(2026, 1, 10)})
    found = next_occurrence(
        Cadence("ac_cleaning", 90), customer=by_label, after=utc(2026, 2, 1), tz=SHANGHAI
    )
    assert found is not None and found.local_date == dt.date(2026, 4, 10)


def test_cadence_without_that_service_does_not_apply() -> None:
    assert (
        next_occurrence(
            Cadence("curtain_washing", 730), customer=AC, after=utc(2026, 2, 1), tz=SHANGHAI
        )
        is None
    )


def test_cadence_rolls_forward_after_each_fire() -> None:
    rule = Cadence("ac_cleaning", every_days=90, catch_up_days=7)
    first = next_occurrence(rule, customer=AC, after=utc(2026, 2, 1), tz=SHANGHAI)
    assert first is not None
    # Sent when due, 10 minutes late: the next is 90 days after the day it went out.
    fired = first.due_at + dt.timedelta(minutes=10)
    second = next_occurrence(rule, customer=AC, after=fired, tz=SHANGHAI, last_fired=fired)
    assert second is not None
    assert second.local_date == dt.date(2026, 7, 9)
    assert "last reminder (2026-04-10)" in second.basis
    listed = occurrences(rule, customer=AC, after=utc(2026, 2, 1), tz=SHANGHAI, count=4)
    assert [o.local_date for o in listed] == [
        dt.date(2026, 4, 10),
        dt.date(2026, 7, 9),
        dt.date(2026, 10, 7),
        dt.date(2027, 1, 5),
    ]


def test_a_newer_service_restarts_the_cadence() -> None:
    rule = Cadence("ac_cleaning", every_days=90, catch_up_days=7)
    fired = utc(2026, 4, 10, 2, 0)
    served_again = CustomerFacts(last_services={"ac_cleaning": dt.date(2026, 5, 1)})
    found = next_occurrence(rule, customer=served_again, after=fired, tz=SHANGHAI, last_fired=fired)
    assert found is not None
    assert found.local_date == dt.date(2026, 7, 30)
    assert "last 空调清洗 (2026-05-01)" in found.basis


def test_cadence_late_within_catch_up_is_sent_now() -> None:
    rule = Cadence("ac_cleaning", every_days=90, catch_up_days=7)
    now = utc(2026, 4, 15, 3, 0)  # five days after 10 April
    found = next_occurrence(rule, customer=AC, after=now, tz=SHANGHAI)
    assert found is not None
    assert found.local_date == dt.date(2026, 4, 10)
    assert found.due_at == now
    assert found.caught_up and found.late_by_days == 5 and found.skipped == 0
    assert found.reason is not None and "5 days late" in found.reason
    assert "catch-up window of 7 days" in found.reason


def test_cadence_late_the_same_day_is_caught_up_with_zero_days() -> None:
    rule = Cadence("ac_cleaning", every_days=90, catch_up_days=0)
    now = utc(2026, 4, 10, 5, 0)  # 13:00 in Shanghai, the send time was 10:00
    found = next_occurrence(rule, customer=AC, after=now, tz=SHANGHAI)
    assert found is not None
    assert found.caught_up and found.late_by_days == 0 and found.due_at == now


def test_cadence_too_late_moves_to_the_next_date_and_says_why() -> None:
    rule = Cadence("ac_cleaning", every_days=90, catch_up_days=7)
    now = utc(2026, 4, 20)  # ten days after 10 April
    found = next_occurrence(rule, customer=AC, after=now, tz=SHANGHAI)
    assert found is not None
    assert found.local_date == dt.date(2026, 7, 9)
    assert not found.caught_up and found.skipped == 1
    assert found.reason == (
        "1 reminder from 2026-04-10 to 2026-04-10 skipped: more than 7 days late when found."
    )


def test_cadence_years_behind_skips_many_then_catches_up_if_close() -> None:
    rule = Cadence("ac_cleaning", every_days=90, catch_up_days=7)
    old = CustomerFacts(last_services={"ac_cleaning": dt.date(2020, 1, 1)})
    # 2020-01-01 + 26 × 90 days = 2026-05-28; found 3 days after it.
    due = dt.date(2020, 1, 1) + dt.timedelta(days=26 * 90)
    now = at(due + dt.timedelta(days=3), 12, 0, SHANGHAI)
    found = next_occurrence(rule, customer=old, after=now, tz=SHANGHAI)
    assert found is not None
    assert found.local_date == due
    assert found.caught_up and found.late_by_days == 3 and found.skipped == 25
    assert found.reason is not None and found.reason.startswith("25 reminders from 2020-03-31")


def test_iterating_from_a_caught_up_reminder_moves_on() -> None:
    rule = Cadence("ac_cleaning", every_days=90, catch_up_days=7)
    now = utc(2026, 4, 15, 3, 0)
    listed = occurrences(rule, customer=AC, after=now, tz=SHANGHAI, count=3)
    assert [o.caught_up for o in listed] == [True, False, False]
    assert listed[0].due_at == now
    # Rolled forward from the day it was actually sent (15 April), not the day it was due.
    assert [o.local_date for o in listed] == [
        dt.date(2026, 4, 10),
        dt.date(2026, 7, 14),
        dt.date(2026, 10, 12),
    ]
    assert listed[0].due_at < listed[1].due_at < listed[2].due_at


def test_catch_up_must_be_shorter_than_the_cadence() -> None:
    with pytest.raises(Invalid, match="shorter than the cadence"):
        Cadence("ac_cleaning", every_days=7, catch_up_days=7)


# --- yearly rules ---------------------------------------------------------------------------


def test_solar_term_offset_7_days_before_mangzhong() -> None:
    rule = SolarTermOffset("芒种", offset_days=-7)
    found = next_occurrence(rule, customer=AC, after=utc(2026, 1, 1), tz=SHANGHAI)
    assert found is not None
    assert found.local_date == calendar.solar_term("芒种", 2026) - dt.timedelta(days=7)
    assert "7 days before 芒种 2026" in found.basis
    later = next_occurrence(rule, customer=AC, after=found.due_at, tz=SHANGHAI)
    assert later is not None and later.local_date.year == 2027


def test_lunar_offset_20_days_before_spring_festival_each_year() -> None:
    rule = LunarOffset("春节", offset_days=-20)
    listed = occurrences(rule, customer=AC, after=utc(2026, 3, 1), tz=SHANGHAI, count=3)
    assert [o.local_date for o in listed] == [
        dt.date(2027, 2, 6) - dt.timedelta(days=20),
        dt.date(2028, 1, 26) - dt.timedelta(days=20),
        dt.date(2029, 2, 13) - dt.timedelta(days=20),
    ]


def test_plum_rain_offset_uses_the_customer_region_in_the_table_else_the_rule() -> None:
    rule = PlumRainOffset(offset_days=-7)
    table = {"上海": {2026: dt.date(2026, 6, 14)}}
    found = next_occurrence(rule, customer=AC, after=utc(2026, 1, 1), tz=SHANGHAI, plum_table=table)
    assert found is not None and found.local_date == dt.date(2026, 6, 7)
    assert "上海, company table" in found.basis
    elsewhere = CustomerFacts(region="江苏")
    found = next_occurrence(
        rule, customer=elsewhere, after=utc(2026, 1, 1), tz=SHANGHAI, plum_table=table
    )
    assert found is not None
    assert found.local_date == calendar.traditional_plum_rain_onset(2026) - dt.timedelta(days=7)
    assert "first 丙 day after 芒种" in found.basis
    # A rule fixed to a region uses that row for everyone.
    fixed = PlumRainOffset(offset_days=0, region="上海")
    found = next_occurrence(
        fixed, customer=elsewhere, after=utc(2026, 1, 1), tz=SHANGHAI, plum_table=table
    )
    assert found is not None and found.local_date == dt.date(2026, 6, 14)


def test_fixed_date_and_29_february() -> None:
    listed = occurrences(FixedDate(2, 29), customer=AC, after=utc(2026, 1, 1), tz=SHANGHAI, count=3)
    assert [o.local_date for o in listed] == [
        dt.date(2026, 2, 28),
        dt.date(2027, 2, 28),
        dt.date(2028, 2, 29),
    ]
    with pytest.raises(Invalid, match="Month 4 has days 1 to 30"):
        FixedDate(4, 31)


def test_anniversary_of_the_first_service() -> None:
    listed = occurrences(Anniversary(), customer=AC, after=utc(2026, 1, 1), tz=SHANGHAI, count=2)
    assert [o.local_date for o in listed] == [dt.date(2026, 5, 20), dt.date(2027, 5, 20)]
    assert "3 years since the first service" in listed[0].basis
    # Not on the day of the first service itself.
    new = CustomerFacts(first_service=dt.date(2026, 3, 1))
    found = next_occurrence(Anniversary(), customer=new, after=utc(2026, 1, 1), tz=SHANGHAI)
    assert found is not None and found.local_date == dt.date(2027, 3, 1)
    assert (
        next_occurrence(Anniversary(), customer=CustomerFacts(), after=utc(2026, 1, 1), tz=SHANGHAI)
        is None
    )


def test_a_yearly_rule_does_not_fire_twice_on_one_local_date() -> None:
    rule = FixedDate(6, 1)
    fired = utc(2026, 6, 1, 2, 0)
    # Asked again with an earlier "after" (a clock behind), last_fired still rules it out.
    found = next_occurrence(rule, customer=AC, after=utc(2026, 5, 1), tz=SHANGHAI, last_fired=fired)
    assert found is not None and found.local_date == dt.date(2027, 6, 1)


# --- time zones -------------------------------------------------------------------------------


def test_send_time_in_the_spring_gap_moves_to_the_first_instant_after_it() -> None:
    # New York, 8 March 2026: 02:00 EST jumps to 03:00 EDT.
    assert local_instant(dt.date(2026, 3, 8), dt.time(2, 30), NEW_YORK) == utc(2026, 3, 8, 7, 0)
    # London, 29 March 2026: 01:00 GMT jumps to 02:00 BST.
    assert local_instant(dt.date(2026, 3, 29), dt.time(1, 30), LONDON) == utc(2026, 3, 29, 1, 0)
    # Lord Howe Island moves by half an hour: 02:00 → 02:30 on 4 October 2026.
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    found = local_instant(dt.date(2026, 10, 4), dt.time(2, 10), lord_howe)
    assert found.astimezone(lord_howe).time() == dt.time(2, 30)


def test_send_time_in_the_repeated_autumn_hour_is_the_first_one() -> None:
    # New York, 1 November 2026: 01:30 happens at 05:30 UTC (EDT) and again at 06:30 (EST).
    assert local_instant(dt.date(2026, 11, 1), dt.time(1, 30), NEW_YORK) == utc(2026, 11, 1, 5, 30)
    # London, 25 October 2026: 01:30 BST (00:30 UTC) before 01:30 GMT.
    assert local_instant(dt.date(2026, 10, 25), dt.time(1, 30), LONDON) == utc(2026, 10, 25, 0, 30)


def test_daily_reminders_across_the_new_york_switches_neither_loop_nor_skip() -> None:
    customer = CustomerFacts(last_services={"basic_cleaning": dt.date(2026, 3, 1)})
    for send_time in (dt.time(2, 30), dt.time(1, 30), dt.time(10, 0)):
        rule = Cadence("basic_cleaning", every_days=1, catch_up_days=0, send_time=send_time)
        listed = occurrences(
            rule, customer=customer, after=utc(2026, 3, 1, 12), tz=NEW_YORK, count=20
        )
        assert [o.local_date for o in listed] == [
            dt.date(2026, 3, 2) + dt.timedelta(days=n) for n in range(20)
        ]
        dues = [o.due_at for o in listed]
        assert dues == sorted(set(dues))


def test_a_customer_abroad_gets_the_chinese_date_on_their_own_clock() -> None:
    rule = LunarOffset("除夕", offset_days=0)
    found = next_occurrence(rule, customer=AC, after=utc(2026, 3, 1), tz=LONDON)
    assert found is not None
    assert found.local_date == dt.date(2027, 2, 5)
    assert found.due_at == utc(2027, 2, 5, 10, 0)  # 10:00 GMT


ZONES = [
    "America/New_York",
    "Europe/London",
    "Asia/Shanghai",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
    "Europe/Dublin",
]
RULES: list[Rule] = [
    FixedDate(3, 8),
    FixedDate(11, 1),
    FixedDate(10, 25),
    FixedDate(2, 29),
    Anniversary(),
    SolarTermOffset("春分", -13),
    SolarTermOffset("立冬", -7),
    LunarOffset("春节", -20),
    LunarOffset("中秋", 30),
    PlumRainOffset(-7),
]


@settings(max_examples=150, deadline=None)
@given(
    rule=st.sampled_from(RULES),
    zone=st.sampled_from(ZONES),
    send=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    start=st.datetimes(
        min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
)
def test_yearly_occurrences_strictly_advance_one_per_year(
    rule: Rule, zone: str, send: dt.time, start: dt.datetime
) -> None:
    tz = ZoneInfo(zone)
    timed = type(rule)(**{**rule.__dict__, "send_time": send})
    customer = CustomerFacts(first_service=dt.date(2020, 3, 8), region="上海")
    listed = occurrences(timed, customer=customer, after=start, tz=tz, count=4)
    assert len(listed) == 4
    assert listed[0].due_at > start
    for earlier, later in itertools.pairwise(listed):
        assert later.due_at > earlier.due_at
        assert later.local_date > earlier.local_date
    # No year skipped: one occurrence per consecutive year (no offset here crosses New Year).
    years = [o.local_date.year for o in listed]
    assert all(b - a == 1 for a, b in itertools.pairwise(years))
    # The same series, walked from two years earlier, reaches the same occurrences.
    walked = occurrences(
        timed, customer=customer, after=start - dt.timedelta(days=730), tz=tz, count=7
    )
    assert [o for o in walked if o.due_at > start][:4] == listed
    for occurrence in listed:
        _check_local_time(occurrence, send, tz)


def _check_local_time(occurrence: Occurrence, send: dt.time, tz: ZoneInfo) -> None:
    local = occurrence.due_at.astimezone(tz)
    assert local.date() == occurrence.local_date
    if local.time() != send:  # only when the wall time fell in a gap: moved just past it
        before = occurrence.due_at - dt.timedelta(seconds=1)
        assert local.time() > send
        assert before.astimezone(tz).utcoffset() != local.utcoffset()


@settings(max_examples=100, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    every=st.integers(min_value=1, max_value=40),
    send=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    served=st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2029, 1, 1)),
    delay=st.integers(min_value=0, max_value=7200),
)
def test_cadence_occurrences_strictly_advance_by_the_cadence(
    zone: str, every: int, send: dt.time, served: dt.date, delay: int
) -> None:
    tz = ZoneInfo(zone)
    rule = Cadence("ac_cleaning", every_days=every, catch_up_days=0, send_time=send)
    customer = CustomerFacts(last_services={"ac_cleaning": served})
    start = at(served, 23, 59, tz)
    found = next_occurrence(rule, customer=customer, after=start, tz=tz)
    listed: list[Occurrence] = []
    while found is not None and len(listed) < 12:
        listed.append(found)
        fired = found.due_at + dt.timedelta(seconds=delay)  # sent a little after due
        found = next_occurrence(rule, customer=customer, after=fired, tz=tz, last_fired=fired)
    assert len(listed) == 12
    assert listed[0].local_date == served + dt.timedelta(days=every)
    for earlier, later in itertools.pairwise(listed):
        assert later.due_at > earlier.due_at
        fired_on = (earlier.due_at + dt.timedelta(seconds=delay)).astimezone(tz).date()
        assert later.local_date == fired_on + dt.timedelta(days=every)
    for occurrence in listed:
        _check_local_time(occurrence, send, tz)


# --- specs, validation, JSON ------------------------------------------------------------------

EXAMPLES: list[Rule] = [
    Cadence("ac_cleaning", every_days=90, catch_up_days=14),
    Cadence("curtain_washing", every_days=730, catch_up_days=30, send_time=dt.time(9, 30)),
    SolarTermOffset("芒种", offset_days=-7),
    PlumRainOffset(offset_days=-7, region="上海"),
    PlumRainOffset(),
    LunarOffset("春节", offset_days=-20, send_time=dt.time(19, 0)),
    FixedDate(12, 1),
    Anniversary(),
]


@pytest.mark.parametrize("rule", EXAMPLES, ids=lambda r: r.kind)
def test_json_round_trip(rule: Rule) -> None:
    data = rule.to_dict()
    assert data["kind"] == rule.kind
    assert isinstance(data["send_time"], str)
    assert rule_from_dict(data) == rule
    assert describe(rule)


def test_from_dict_fills_defaults_and_reads_send_time() -> None:
    rule = rule_from_dict({"kind": "lunar", "festival": "端午节", "send_time": "08:15"})
    assert rule == LunarOffset("端午", 0, dt.time(8, 15))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"kind": "weekly"}, "Unknown rule kind 'weekly'; use one of: cadence"),
        ({"service_type": "ac_cleaning"}, "Unknown rule kind None"),
        ({"kind": "cadence", "service_type": "ac_cleaning"}, "needs 'every_days'"),
        (
            {"kind": "cadence", "service_type": "ac_cleaning", "every_days": 90, "every": 3},
            "has no field 'every'",
        ),
        (
            {"kind": "cadence", "service_type": "ac_cleaning", "every_days": "90"},
            "whole number of days",
        ),
        (
            {"kind": "cadence", "service_type": "ac_cleaning", "every_days": True},
            "whole number of days",
        ),
        ({"kind": "cadence", "service_type": " ", "every_days": 90}, "needs the service"),
        ({"kind": "cadence", "service_type": "ac_cleaning", "every_days": 0}, "between 1 and"),
        ({"kind": "solar_term", "term": "芒钟"}, "not a solar term; use one of: 立春"),
        ({"kind": "solar_term", "term": "芒种", "offset_days": 400}, "between -180 and 180"),
        ({"kind": "lunar", "festival": "圣诞节"}, "not a festival"),
        ({"kind": "fixed_date", "month": 13, "day": 1}, "between 1 and 12"),
        ({"kind": "fixed_date", "month": 2, "day": 30}, "Month 2 has days 1 to 29"),
        ({"kind": "anniversary", "send_time": "25:00"}, "must look like 10:00"),
        ({"kind": "anniversary", "send_time": "10:00+08:00"}, "must look like 10:00"),
        ("cadence", "must be an object"),
    ],
)
def test_bad_rules_are_refused_with_a_sentence(data: object, words: str) -> None:
    with pytest.raises(Invalid) as error:
        rule_from_dict(data)  # type: ignore[arg-type]
    assert words in error.value.detail


def test_naive_after_is_refused() -> None:
    with pytest.raises(Invalid, match="timezone-aware"):
        next_occurrence(Anniversary(), customer=AC, after=dt.datetime(2026, 1, 1), tz=SHANGHAI)
