"""The range of dates a person may enter: from 2000 to ten years ahead.

A date outside it is a typo (9999-12-31, 0001-01-01) that would otherwise overflow date
arithmetic in the database and stall periodic work for everybody; it gets a 422 instead.
"""

from __future__ import annotations

import datetime as dt

from huifang.errors import Invalid

EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
YEARS_AHEAD = 10


def latest(now: dt.datetime) -> dt.datetime:
    """The last instant a person may enter, ten years after ``now``."""
    return now + dt.timedelta(days=365 * YEARS_AHEAD + 3)


def check_plausible(
    value: dt.datetime | None, *, what: str, now: dt.datetime
) -> dt.datetime | None:
    """``value`` unchanged when it lies between 2000 and ten years after ``now``; else 422."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise Invalid(f"{what} needs a time zone, e.g. 2026-05-01T14:00:00+08:00.")
    if not EARLIEST <= value <= latest(now):
        raise Invalid(
            f"{what} {value.date().isoformat()} is out of range: enter a date "
            f"between 2000-01-01 and {latest(now).date().isoformat()}."
        )
    return value
