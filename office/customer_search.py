"""Finding customers: by name, phone, tag or area, and by whether marketing can reach them
or they are drifting away — a page at a time, newest first, from indexes.

Reachability (as the compliance gate decides it at send time, the frequency cap aside):

- ``reachable``: an unrevoked marketing consent is on record for the number, and no active
  suppression holds it under the company's signature;
- ``opted_out``: an active suppression that was the customer's choice (a "T" reply, an
  opt-out the provider reported, the office recording a call); a number that merely cannot
  take SMS (``unreachable``) is suppressed but did not opt out;
- ``no_consent``: not suppressed, and no unrevoked consent.

Churn risk (``churn_risk``), from the visits the company recorded:

- the company's *usual interval* is the median gap between two finished visits of the same
  customer, over its latest ``INTERVAL_SAMPLE`` finished visits of the last two years; with
  fewer than ``MIN_GAPS`` such gaps it is ``DEFAULT_INTERVAL_DAYS``, and it is kept within
  ``[MIN_INTERVAL_DAYS, MAX_INTERVAL_DAYS]``;
- a customer is at risk when served at least once, their last finished visit is older than
  ``CHURN_FACTOR`` × the usual interval, and nothing brings them back already: no booking
  requested or confirmed, no visit scheduled from now on.

(``campaigns.audiences``' ``churn_risk`` filter is a different, older rule: "only 日常保洁
or nothing in six months, and no reply". The two should become one; see the report.)

The list query is ``customers.service.customer_query`` (name, phone, tag, region, city, newest
first on ``ix_customers_tenant_newest``) with ``EXISTS`` conditions that each use an index:
suppressions ``(tenant_id, phone, signature)``, consents ``(tenant_id, phone)``, visits
``(tenant_id, customer_id)``, bookings ``customer_id``. The flags of the rows shown are read
for that page only, in a few ``IN`` queries.
"""

from __future__ import annotations

import datetime as dt
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, exists, func, not_, or_, select
from sqlalchemy.orm import Session

from bookings.models import OPEN_BOOKING_STATES, Booking
from compliance.models import ConsentRecord, Suppression
from compliance.service import NOT_A_CHOICE
from customers.models import Customer
from customers.phones import normalize_phone
from customers.service import customer_query
from huifang.db import UTCDateTime
from huifang.errors import Invalid
from huifang.pagination import PageParams, paginate
from tenancy.models import Tenant
from visits.models import Visit

Reach = Literal["reachable", "opted_out", "no_consent"]
REACH_VALUES: tuple[Reach, ...] = ("reachable", "opted_out", "no_consent")

INTERVAL_SAMPLE = 20_000
INTERVAL_YEARS = 2
MIN_GAPS = 10
DEFAULT_INTERVAL_DAYS = 90
MIN_INTERVAL_DAYS = 14
MAX_INTERVAL_DAYS = 365
CHURN_FACTOR = 1.5
# The usual interval moves slowly: computed at most once per company in this time.
INTERVAL_CACHE_SECONDS = 600
MAX_QUERY = 100


@dataclass(frozen=True)
class CustomerRow:
    """A customer as the list shows them, with what the list's badges need."""

    customer: Customer
    consented: bool
    opted_out: bool  # an active suppression the customer chose
    suppressed: bool  # any active suppression (opted out, or the number cannot take SMS)
    last_visit_at: dt.datetime | None
    churn_risk: bool

    @property
    def reachable(self) -> bool:
        return self.consented and not self.suppressed


# --- conditions -------------------------------------------------------------------------------


def _suppressed(tenant: Tenant, *, chosen_only: bool) -> ColumnElement[bool]:
    conditions = [
        Suppression.tenant_id == tenant.id,
        Suppression.phone == Customer.phone,
        Suppression.signature == tenant.signature,
        Suppression.lifted_at.is_(None),
    ]
    if chosen_only:
        conditions.append(Suppression.reason.not_in(NOT_A_CHOICE))
    return exists(select(Suppression.id).where(*conditions))


def _consented(tenant: Tenant) -> ColumnElement[bool]:
    return exists(
        select(ConsentRecord.id).where(
            ConsentRecord.tenant_id == tenant.id,
            ConsentRecord.phone == Customer.phone,
            ConsentRecord.revoked_at.is_(None),
        )
    )


def reach_condition(reach: Reach, tenant: Tenant) -> ColumnElement[bool]:
    """The customers in one reachability class (see the module's text)."""
    if reach == "reachable":
        return and_(_consented(tenant), not_(_suppressed(tenant, chosen_only=False)))
    if reach == "opted_out":
        return _suppressed(tenant, chosen_only=True)
    if reach == "no_consent":
        return and_(not_(_consented(tenant)), not_(_suppressed(tenant, chosen_only=False)))
    raise Invalid(f"reach must be one of {', '.join(REACH_VALUES)}.")


_interval_cache: dict[int, tuple[float, int]] = {}
_interval_lock = threading.Lock()


def usual_interval_days(
    *, session: Session, tenant_id: int, now: dt.datetime, cached: bool = True
) -> int:
    """The company's usual number of days between two visits of a customer (see above)."""
    if cached:
        with _interval_lock:
            hit = _interval_cache.get(tenant_id)
        if hit is not None and time.monotonic() - hit[0] < INTERVAL_CACHE_SECONDS:
            return hit[1]
    recent = (
        select(Visit.customer_id, Visit.finished_at)
        .where(
            Visit.tenant_id == tenant_id,
            Visit.finished_at.is_not(None),
            Visit.finished_at >= now - dt.timedelta(days=365 * INTERVAL_YEARS),
            Visit.finished_at <= now,
        )
        .order_by(Visit.finished_at.desc())
        .limit(INTERVAL_SAMPLE)
        .subquery()
    )
    previous = func.lag(recent.c.finished_at, type_=UTCDateTime()).over(
        partition_by=recent.c.customer_id, order_by=recent.c.finished_at
    )
    pairs = select(recent.c.finished_at.label("at"), previous.label("before")).subquery()
    gaps = [
        (at - before).total_seconds() / 86400
        for at, before in session.execute(
            select(pairs.c.at, pairs.c.before).where(pairs.c.before.is_not(None))
        )
    ]
    gaps = [gap for gap in gaps if gap >= 1]  # two entries of one day's work are one visit
    days = round(statistics.median(gaps)) if len(gaps) >= MIN_GAPS else DEFAULT_INTERVAL_DAYS
    days = max(MIN_INTERVAL_DAYS, min(MAX_INTERVAL_DAYS, days))
    with _interval_lock:
        _interval_cache[tenant_id] = (time.monotonic(), days)
    return days


def churn_threshold(*, session: Session, tenant_id: int, now: dt.datetime) -> dt.datetime:
    """Customers whose last visit finished before this are overdue."""
    days = usual_interval_days(session=session, tenant_id=tenant_id, now=now)
    return now - dt.timedelta(days=round(days * CHURN_FACTOR))


def _coming_back(tenant: Tenant, now: dt.datetime) -> ColumnElement[bool]:
    return or_(
        exists(
            select(Booking.id).where(
                Booking.customer_id == Customer.id,
                Booking.tenant_id == tenant.id,
                Booking.status.in_(OPEN_BOOKING_STATES),
            )
        ),
        exists(
            select(Visit.id).where(
                Visit.tenant_id == tenant.id,
                Visit.customer_id == Customer.id,
                Visit.finished_at.is_(None),
                Visit.scheduled_at >= now,
            )
        ),
    )


def churn_condition(
    tenant: Tenant, *, threshold: dt.datetime, now: dt.datetime
) -> ColumnElement[bool]:
    """Served once at least, last visit finished before ``threshold``, nothing booked."""
    finished = (
        Visit.tenant_id == tenant.id,
        Visit.customer_id == Customer.id,
        Visit.finished_at.is_not(None),
    )
    return and_(
        exists(select(Visit.id).where(*finished)),
        not_(exists(select(Visit.id).where(*finished, Visit.finished_at >= threshold))),
        not_(_coming_back(tenant, now)),
    )


def _area(area: str) -> ColumnElement[bool]:
    """The region or the city starts with ``area`` (上海 finds 上海市, 浦东 finds 浦东新区)."""
    text = area.strip()
    return or_(
        Customer.region.startswith(text, autoescape=True),
        Customer.city.startswith(text, autoescape=True),
    )


def _exact_phone(q: str, tenant: Tenant) -> str | None:
    """The number ``q`` spells, when it is a whole phone number; else None."""
    digits = sum(ch.isdigit() for ch in q)
    if digits < 7:
        return None
    try:
        return normalize_phone(q, region=tenant.phone_region)
    except Invalid:
        return None


def search_query(
    *,
    tenant: Tenant,
    now: dt.datetime,
    q: str | None = None,
    tag: str | None = None,
    area: str | None = None,
    region: str | None = None,
    city: str | None = None,
    reach: Reach | None = None,
    churn_before: dt.datetime | None = None,
) -> Select[Any]:
    """Customers matching every filter given, newest first (``churn_before``: at risk)."""
    q = (q or "").strip() or None
    if q and len(q) > MAX_QUERY:
        raise Invalid(f"Search for at most {MAX_QUERY} characters of a name or number.")
    phone = _exact_phone(q, tenant) if q else None
    stmt = customer_query(
        tenant_id=tenant.id, q=None if phone else q, tag=tag, region=region, city=city
    )
    if phone:
        stmt = stmt.where(Customer.phone == phone)  # the (tenant_id, phone) unique index
    if area and area.strip():
        stmt = stmt.where(_area(area))
    if reach is not None:
        stmt = stmt.where(reach_condition(reach, tenant))
    if churn_before is not None:
        stmt = stmt.where(churn_condition(tenant, threshold=churn_before, now=now))
    return stmt


def search_customers(
    *,
    session: Session,
    tenant: Tenant,
    page: PageParams,
    now: dt.datetime,
    q: str | None = None,
    tag: str | None = None,
    area: str | None = None,
    region: str | None = None,
    city: str | None = None,
    reach: Reach | None = None,
    churn_risk: bool = False,
) -> tuple[list[CustomerRow], int]:
    """One page of the customer list with its badges, and how many customers match."""
    threshold = churn_threshold(session=session, tenant_id=tenant.id, now=now)
    stmt = search_query(
        tenant=tenant,
        now=now,
        q=q,
        tag=tag,
        area=area,
        region=region,
        city=city,
        reach=reach,
        churn_before=threshold if churn_risk else None,
    )
    found, total = paginate(session, stmt, page)
    return rows_for(
        session=session, tenant=tenant, customers=found, now=now, threshold=threshold
    ), total


def rows_for(
    *,
    session: Session,
    tenant: Tenant,
    customers: list[Customer],
    now: dt.datetime,
    threshold: dt.datetime,
) -> list[CustomerRow]:
    """The badges of a page of customers, in a few queries whatever the page's size."""
    if not customers:
        return []
    ids = [c.id for c in customers]
    phones = [c.phone for c in customers]
    consented = set(
        session.scalars(
            select(ConsentRecord.phone).where(
                ConsentRecord.tenant_id == tenant.id,
                ConsentRecord.phone.in_(phones),
                ConsentRecord.revoked_at.is_(None),
            )
        )
    )
    suppressed: dict[str, bool] = {}
    for phone, reason in session.execute(
        select(Suppression.phone, Suppression.reason).where(
            Suppression.tenant_id == tenant.id,
            Suppression.phone.in_(phones),
            Suppression.signature == tenant.signature,
            Suppression.lifted_at.is_(None),
        )
    ):
        suppressed[phone] = suppressed.get(phone, False) or reason not in NOT_A_CHOICE
    last_visit = {
        cid: at
        for cid, at in session.execute(
            select(Visit.customer_id, func.max(Visit.finished_at))
            .where(
                Visit.tenant_id == tenant.id,
                Visit.customer_id.in_(ids),
                Visit.finished_at.is_not(None),
            )
            .group_by(Visit.customer_id)
        )
    }
    overdue = [cid for cid, at in last_visit.items() if at is not None and at < threshold]
    coming = (
        set(
            session.scalars(
                select(Customer.id).where(Customer.id.in_(overdue), _coming_back(tenant, now))
            )
        )
        if overdue
        else set()
    )
    return [
        CustomerRow(
            customer=c,
            consented=c.phone in consented,
            opted_out=suppressed.get(c.phone, False),
            suppressed=c.phone in suppressed,
            last_visit_at=last_visit.get(c.id),
            churn_risk=c.id in overdue and c.id not in coming,
        )
        for c in customers
    ]
