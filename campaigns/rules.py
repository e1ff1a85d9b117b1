"""Campaign rules and the per-customer occurrences they produce, in the customer's local time.

A rule says when a customer should hear from the company: a cadence after their last
service of a type, an offset from a solar term, from 入梅 or from a lunar festival, a fixed
date, or the anniversary of their first service. ``next_occurrence`` turns a rule and a
customer's facts into the next local date and the UTC instant to send, and explains any
catch-up decision it made.

Two promises hold for every rule and time zone, and the tests check them with hypothesis:

- an occurrence is due strictly after ``after`` (a late cadence catch-up is due at
  ``after`` itself, meaning now), so feeding each occurrence back as ``after`` and
  ``last_fired`` always moves forward: no loop, no skipped date;
- the local send time is resolved on the customer's wall clock: on a day that loses an
  hour, a time in the gap moves forward to the first instant after it; on a day that
  repeats an hour, the first of the two instants is used.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeAlias
from zoneinfo import ZoneInfo

from campaigns import calendar
from huifang.errors import Invalid
from visits.service_types import label, normalize_service_type

DEFAULT_SEND_TIME = dt.time(10, 0)
MAX_OFFSET_DAYS = 180  # half a year either way: beyond it, another anchor is the better rule
MAX_EVERY_DAYS = 3660  # ten years


# --- validation helpers -------------------------------------------------------------------


def _int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{what} must be a whole number of days, not {value!r}.")
    if not low <= value <= high:
        raise Invalid(f"{what} must be between {low} and {high}; {value} is out of range.")
    return value


def _send_time(value: object) -> dt.time:
    if not isinstance(value, dt.time):
        raise Invalid(f"The send time must be a local time of day such as 10:00, not {value!r}.")
    if value.tzinfo is not None:
        raise Invalid(
            "The send time is a wall-clock time in each customer's own time zone; "
            "give it without a time zone (e.g. 10:00)."
        )
    return value


def _offset(value: object, anchor: str) -> int:
    return _int(
        value,
        f"The offset from {anchor} (negative = days before)",
        -MAX_OFFSET_DAYS,
        MAX_OFFSET_DAYS,
    )


def parse_send_time(value: object) -> dt.time:
    """A send time from JSON ("10:00" or "10:00:00")."""
    if isinstance(value, dt.time):
        return _send_time(value)
    if isinstance(value, str):
        try:
            parsed = dt.time.fromisoformat(value.strip())
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            return parsed
    raise Invalid(f"The send time must look like 10:00 (24-hour local time), not {value!r}.")


# --- the rules ------------------------------------------------------------------------------


class _Spec:
    """What every rule has: a ``kind`` for JSON, and ``to_dict()``."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)  # type: ignore[arg-type]  # only Rule classes inherit this


@dataclass(frozen=True)
class Cadence(_Spec):
    """Every ``every_days`` after the customer's last service of ``service_type``.

    A reminder found late (the system was down, the rule was created after the date) is
    still sent when at most ``catch_up_days`` late; later than that it moves on to the next
    date in the cadence, and the occurrence says how many were skipped and why.
    """

    kind: ClassVar[str] = "cadence"
    service_type: str
    every_days: int
    catch_up_days: int = 7
    send_time: dt.time = DEFAULT_SEND_TIME

    def __post_init__(self) -> None:
        if not isinstance(self.service_type, str) or not self.service_type.strip():
            raise Invalid("A cadence needs the service it follows, e.g. ac_cleaning (空调清洗).")
        object.__setattr__(self, "service_type", normalize_service_type(self.service_type))
        _int(self.every_days, "The cadence (every_days)", 1, MAX_EVERY_DAYS)
        _int(self.catch_up_days, "The catch-up window (catch_up_days)", 0, MAX_EVERY_DAYS)
        if self.catch_up_days >= self.every_days:
            raise Invalid(
                f"The catch-up window ({self.catch_up_days} days) must be shorter "
                f"than the cadence ({self.every_days} days), or a late reminder "
                f"would run into the next one."
            )
        _send_time(self.send_time)


@dataclass(frozen=True)
class SolarTermOffset(_Spec):
    """``offset_days`` from a solar term each year (negative = before), e.g. 7 days before 芒种."""

    kind: ClassVar[str] = "solar_term"
    term: str
    offset_days: int = 0
    send_time: dt.time = DEFAULT_SEND_TIME

    def __post_init__(self) -> None:
        term = self.term.strip() if isinstance(self.term, str) else self.term
        if term not in calendar.SOLAR_TERMS:
            raise Invalid(
                f"{self.term!r} is not a solar term; use one of: {'、'.join(calendar.SOLAR_TERMS)}."
            )
        object.__setattr__(self, "term", term)
        _offset(self.offset_days, term)
        _send_time(self.send_time)


@dataclass(frozen=True)
class PlumRainOffset(_Spec):
    """``offset_days`` from 入梅 each year, from the company's regional table or the almanac rule.

    ``region`` fixes the table row for everyone; without it each customer's own region is used.
    """

    kind: ClassVar[str] = "plum_rain"
    offset_days: int = 0
    region: str | None = None
    send_time: dt.time = DEFAULT_SEND_TIME

    def __post_init__(self) -> None:
        _offset(self.offset_days, "入梅")
        if self.region is not None:
            if not isinstance(self.region, str):
                raise Invalid(f"The region must be a name such as 上海, not {self.region!r}.")
            object.__setattr__(self, "region", self.region.strip() or None)
        _send_time(self.send_time)


@dataclass(frozen=True)
class LunarOffset(_Spec):
    """``offset_days`` from a lunar festival each year, e.g. 20 days before 春节."""

    kind: ClassVar[str] = "lunar"
    festival: str
    offset_days: int = 0
    send_time: dt.time = DEFAULT_SEND_TIME

    def __post_init__(self) -> None:
        name = calendar.festival_name(self.festival) if isinstance(self.festival, str) else None
        if name is None:
            raise Invalid(
                f"{self.festival!r} is not a festival we can date; use one of: "
                f"{'、'.join(calendar.LUNAR_FESTIVALS)}."
            )
        object.__setattr__(self, "festival", name)
        _offset(self.offset_days, name)
        _send_time(self.send_time)


@dataclass(frozen=True)
class FixedDate(_Spec):
    """The same date every year. 29 February falls on 28 February in common years."""

    kind: ClassVar[str] = "fixed_date"
    month: int
    day: int
    send_time: dt.time = DEFAULT_SEND_TIME

    def __post_init__(self) -> None:
        _int(self.month, "The month", 1, 12)
        # 2024 is a leap year, so 29 February is accepted (and falls on the 28th in others).
        longest = (
            31
            if self.month == 12
            else (dt.date(2024, self.month + 1, 1) - dt.timedelta(days=1)).day
        )
        if (
            isinstance(self.day, bool)
            or not isinstance(self.day, int)
            or not 1 <= self.day <= longest
        ):
            raise Invalid(f"Month {self.month} has days 1 to {longest}; {self.day!r} is not one.")
        _send_time(self.send_time)


@dataclass(frozen=True)
class Anniversary(_Spec):
    """Each year on the date of the customer's first service (a yearly check-in)."""

    kind: ClassVar[str] = "anniversary"
    send_time: dt.time = DEFAULT_SEND_TIME

    def __post_init__(self) -> None:
        _send_time(self.send_time)


Rule: TypeAlias = Cadence | SolarTermOffset | PlumRainOffset | LunarOffset | FixedDate | Anniversary
RULE_KINDS: dict[str, type[Rule]] = {
    cls.kind: cls
    for cls in (Cadence, SolarTermOffset, PlumRainOffset, LunarOffset, FixedDate, Anniversary)
}


def to_dict(rule: Rule) -> dict[str, Any]:
    """The rule as JSON: its ``kind``, its fields, and ``send_time`` as "HH:MM"."""
    data: dict[str, Any] = {"kind": rule.kind}
    for f in fields(rule):
        value = getattr(rule, f.name)
        data[f.name] = (
            value.strftime("%H:%M" if not value.second else "%H:%M:%S")
            if isinstance(value, dt.time)
            else value
        )
    return data


def rule_from_dict(data: Mapping[str, object]) -> Rule:
    """A rule from its JSON form; anything missing, unknown or mistyped is refused with why."""
    if not isinstance(data, Mapping):
        raise Invalid(
            'A rule must be an object with a "kind", e.g. '
            '{"kind": "cadence", "service_type": "ac_cleaning", '
            '"every_days": 90}.'
        )
    kind = data.get("kind")
    cls = RULE_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise Invalid(f"Unknown rule kind {kind!r}; use one of: {', '.join(RULE_KINDS)}.")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names) - {"kind"})
    if unknown:
        raise Invalid(
            f"A {kind} rule has no field {', '.join(map(repr, unknown))}; "
            f"its fields are: {', '.join(names)}."
        )
    values: dict[str, Any] = {}
    for name, f in names.items():
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise Invalid(f"A {kind} rule needs {name!r}; its fields are: {', '.join(names)}.")
            continue
        values[name] = parse_send_time(data[name]) if name == "send_time" else data[name]
    return cls(**values)


# --- customers and occurrences ----------------------------------------------------------------


@dataclass(frozen=True)
class CustomerFacts:
    """What rules need to know about one customer; dates are the customer's local dates."""

    last_services: Mapping[str, dt.date] = field(default_factory=dict)
    first_service: dt.date | None = None
    region: str | None = None

    def last_service(self, service_type: str) -> dt.date | None:
        code = normalize_service_type(service_type)
        found = self.last_services.get(code)
        if found is None:  # facts keyed by label (空调清洗) or unnormalised codes
            for key, day in self.last_services.items():
                if normalize_service_type(key) == code:
                    return day
        return found


@dataclass(frozen=True)
class Occurrence:
    """One due send for one customer.

    ``local_date`` is the date the rule names (and identifies the occurrence); ``due_at``
    is when to send. They differ only for a late cadence reminder caught up
    (``caught_up``), which is due at once: ``due_at`` is the ``after`` asked about and
    ``late_by_days`` says by how much it was late. ``skipped`` counts dates passed over
    because they were found too late, and ``reason`` explains both decisions.
    """

    local_date: dt.date
    due_at: dt.datetime
    basis: str
    late_by_days: int = 0
    caught_up: bool = False
    skipped: int = 0
    reason: str | None = None


def local_instant(day: dt.date, at: dt.time, tz: ZoneInfo) -> dt.datetime:
    """The UTC instant of wall-clock ``at`` on ``day`` in ``tz``.

    A wall time that does not exist (the clocks jump over it) becomes the first instant
    after the jump; one that happens twice (the clocks go back) is taken the first time.
    """
    wall = dt.datetime.combine(day, at).replace(tzinfo=tz, fold=0)
    later = wall.astimezone(dt.UTC)
    if later.astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return later  # exists; fold=0 is the first of two when ambiguous
    # In a gap, fold=0 reads the wall time with the offset before the jump (an instant
    # after it) and fold=1 with the offset after (an instant before it): the jump lies
    # between, and is found to the second by bisection.
    earlier = wall.replace(fold=1).astimezone(dt.UTC)
    low, high = int(earlier.timestamp()), int(later.timestamp())
    target = later.astimezone(tz).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, dt.UTC).astimezone(tz).utcoffset() == target:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, dt.UTC)


def _check_aware(value: dt.datetime, what: str) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise Invalid(f"{what} must be a timezone-aware datetime (UTC), not {value!r}.")


def next_occurrence(
    rule: Rule,
    *,
    customer: CustomerFacts,
    after: dt.datetime,
    tz: ZoneInfo,
    last_fired: dt.datetime | None = None,
    plum_table: calendar.PlumTable | None = None,
) -> Occurrence | None:
    """The customer's next occurrence of ``rule`` due after ``after`` (aware UTC), or None.

    None means the rule does not apply to the customer (no service of the type, no first
    service). ``last_fired`` is when this rule last sent to the customer: a cadence rolls
    forward from it (unless a newer service happened), and no yearly rule fires twice on
    one local date. ``plum_table`` is the company's 入梅 table by region and year.
    """
    _check_aware(after, "after")
    if last_fired is not None:
        _check_aware(last_fired, "last_fired")
    after = after.astimezone(dt.UTC)
    fired_on = last_fired.astimezone(tz).date() if last_fired is not None else None
    if isinstance(rule, Cadence):
        return _next_cadence(rule, customer=customer, after=after, tz=tz, fired_on=fired_on)
    return _next_yearly(
        rule, customer=customer, after=after, tz=tz, fired_on=fired_on, plum_table=plum_table
    )


def _next_cadence(
    rule: Cadence,
    *,
    customer: CustomerFacts,
    after: dt.datetime,
    tz: ZoneInfo,
    fired_on: dt.date | None,
) -> Occurrence | None:
    served = customer.last_service(rule.service_type)
    if served is None:
        return None
    service = label(rule.service_type)
    if fired_on is not None and fired_on >= served:
        anchor, basis = fired_on, f"{rule.every_days} days after the last reminder ({fired_on})"
    else:
        anchor, basis = served, f"{rule.every_days} days after the last {service} ({served})"
    every = dt.timedelta(days=rule.every_days)
    first = anchor + every
    today = after.astimezone(tz).date()
    # Jump straight to the first date at most catch_up_days late instead of stepping
    # through years of missed dates one by one.
    behind = (today - first).days - rule.catch_up_days
    steps = max(0, -(-behind // rule.every_days))
    candidate = first + steps * every
    due = local_instant(candidate, rule.send_time, tz)
    reason = None
    if steps:
        reason = (
            f"{steps} reminder{'s' if steps > 1 else ''} from {first} to "
            f"{candidate - every} skipped: more than {rule.catch_up_days} days late "
            f"when found."
        )
    if due > after:
        if steps:
            basis = f"{basis}, rolled forward by {steps} × {rule.every_days} days"
        return Occurrence(candidate, due, basis, skipped=steps, reason=reason)
    late = (today - candidate).days
    caught = (
        f"due {candidate} at {rule.send_time:%H:%M}, {late} day{'s' if late != 1 else ''} "
        f"late, within the catch-up window of {rule.catch_up_days} days: sent now."
    )
    return Occurrence(
        candidate,
        after,
        basis,
        late_by_days=late,
        caught_up=True,
        skipped=steps,
        reason=f"{reason} {caught}" if reason else caught.capitalize(),
    )


def _yearly_date(
    rule: Rule, year: int, *, customer: CustomerFacts, plum_table: calendar.PlumTable | None
) -> tuple[dt.date, str] | None:
    """The rule's date in ``year`` and why, or None when the rule has none that year."""
    if isinstance(rule, SolarTermOffset):
        base = calendar.solar_term(rule.term, year)
        return base + dt.timedelta(days=rule.offset_days), _offset_text(
            rule.offset_days, f"{rule.term} {year} ({base})"
        )
    if isinstance(rule, LunarOffset):
        base = calendar.lunar_festival(rule.festival, year)
        return base + dt.timedelta(days=rule.offset_days), _offset_text(
            rule.offset_days, f"{rule.festival} {year} ({base})"
        )
    if isinstance(rule, PlumRainOffset):
        region = rule.region or customer.region
        base, source = calendar.plum_rain_onset(year, region, plum_table)
        origin = f"{region}, company table" if source == calendar.PLUM_SOURCE_TABLE else source
        text = f"入梅 {year} ({base}; {origin})"
        return base + dt.timedelta(days=rule.offset_days), _offset_text(rule.offset_days, text)
    if isinstance(rule, FixedDate):
        return _on(year, rule.month, rule.day), f"every year on {rule.month}-{rule.day}"
    if isinstance(rule, Anniversary):
        first = customer.first_service
        if first is None or year <= first.year:
            return None
        return _on(year, first.month, first.day), (
            f"{year - first.year} year{'s' if year - first.year > 1 else ''} since the first "
            f"service ({first})"
        )
    raise AssertionError(f"not a yearly rule: {rule!r}")  # pragma: no cover


def _on(year: int, month: int, day: int) -> dt.date:
    if month == 2 and day == 29 and not (year % 4 == 0 and (year % 100 or year % 400 == 0)):
        return dt.date(year, 2, 28)
    return dt.date(year, month, day)


def _offset_text(days: int, anchor: str) -> str:
    if days == 0:
        return f"on {anchor}"
    side = "before" if days < 0 else "after"
    return f"{abs(days)} day{'s' if abs(days) > 1 else ''} {side} {anchor}"


def _next_yearly(
    rule: Rule,
    *,
    customer: CustomerFacts,
    after: dt.datetime,
    tz: ZoneInfo,
    fired_on: dt.date | None,
    plum_table: calendar.PlumTable | None,
) -> Occurrence | None:
    if isinstance(rule, Anniversary) and customer.first_service is None:
        return None
    year = after.astimezone(tz).year
    # With offsets of at most half a year, the next occurrence after any instant belongs
    # to the calendar year before, of, or one or two after it.
    for base_year in range(max(year - 1, calendar.MIN_YEAR), min(year + 2, calendar.MAX_YEAR) + 1):
        found = _yearly_date(rule, base_year, customer=customer, plum_table=plum_table)
        if found is None:
            continue
        day, basis = found
        if fired_on is not None and day <= fired_on:
            continue
        due = local_instant(day, rule.send_time, tz)
        if due > after:
            return Occurrence(day, due, basis)
    return None


def occurrences(
    rule: Rule,
    *,
    customer: CustomerFacts,
    after: dt.datetime,
    tz: ZoneInfo,
    count: int,
    plum_table: calendar.PlumTable | None = None,
    last_fired: dt.datetime | None = None,
) -> list[Occurrence]:
    """The next ``count`` occurrences, as if each were sent when due (for previews)."""
    _int(count, "The number of occurrences", 1, 100)
    found: list[Occurrence] = []
    while len(found) < count:
        occurrence = next_occurrence(
            rule,
            customer=customer,
            after=after,
            tz=tz,
            last_fired=last_fired,
            plum_table=plum_table,
        )
        if occurrence is None:
            break
        found.append(occurrence)
        after = last_fired = occurrence.due_at
    return found


def describe(rule: Rule) -> str:
    """One line a person reads in a campaign list."""
    at = f" at {rule.send_time:%H:%M} local time"
    if isinstance(rule, Cadence):
        return (
            f"Every {rule.every_days} days after the last {label(rule.service_type)}, "
            f"sent up to {rule.catch_up_days} days late{at}"
        )
    if isinstance(rule, SolarTermOffset):
        return f"{_offset_text(rule.offset_days, rule.term).capitalize()} each year{at}"
    if isinstance(rule, LunarOffset):
        return f"{_offset_text(rule.offset_days, rule.festival).capitalize()} each year{at}"
    if isinstance(rule, PlumRainOffset):
        where = rule.region or "each customer's region"
        return f"{_offset_text(rule.offset_days, '入梅').capitalize()} ({where}) each year{at}"
    if isinstance(rule, FixedDate):
        return f"Every year on {rule.month}-{rule.day}{at}"
    return f"Every year on the anniversary of the first service{at}"
