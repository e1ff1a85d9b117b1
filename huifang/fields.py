"""Field types the domains' schemas and routes share: values bounded to what we can handle.

A number the database (or SQLite's driver) cannot hold, or a date too far out for date
arithmetic, must be refused as a 422 where the request is read, not fail as a 500 deep
inside. Ids stop at 2**53 - 1, the largest integer every JSON reader (JavaScript's
included) keeps exactly, and well inside BIGINT; amounts stored in INTEGER columns stop at
2**31 - 1. Dates and instants stay within the years 1900–2199: far enough for any visit or
consent, and far from the ends of Python's calendar, where converting a time zone or adding
a few days overflows. The same types work in Pydantic models and as FastAPI path and query
parameters, and the OpenAPI document shows the numeric bounds.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field

MAX_ID = 2**53 - 1
MAX_INT32 = 2**31 - 1
EARLIEST_YEAR = 1900
LATEST_YEAR = 2199
_OUT_OF_RANGE = f"must fall between the years {EARLIEST_YEAR} and {LATEST_YEAR}"

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
"""A row id (path, query or body)."""

Cents = Annotated[int, Field(ge=0, le=MAX_INT32)]
"""An amount of money in cents (fen), stored in an INTEGER column."""

Offset = Annotated[int, Field(ge=0, le=MAX_ID)]
"""How many rows a page skips."""

TIMEZONE_MAX_LENGTH = 64
"""The longest IANA zone name is 32 characters; the columns hold 64."""


def _instant_in_range(value: dt.datetime) -> dt.datetime:
    try:
        year = value.astimezone(dt.UTC).year
    except OverflowError:
        year = value.year
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise ValueError(f"A date and time {_OUT_OF_RANGE}")
    return value


def _day_in_range(value: dt.date) -> dt.date:
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"A date {_OUT_OF_RANGE}")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_instant_in_range)]
"""A moment with its UTC offset, in 1900–2199."""

Day = Annotated[dt.date, AfterValidator(_day_in_range)]
"""A calendar date in 1900–2199."""
