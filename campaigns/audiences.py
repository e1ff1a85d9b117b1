"""Who a campaign is for: a spec a company fills in, turned into one SQL condition set.

Every filter is a condition on the ``customers`` row (``EXISTS`` / ``IN`` subqueries over
visits, tags, replies, consents and suppressions), so an audience of a million customers
is selected, counted and fanned out by the database in one statement: no customer is
loaded into Python to decide whether it belongs.

What "last service", "visits" and "spend" mean: finished visits only (``finished_at``
set). The last-service filters look at the audience's ``service_types`` when it names
some (the last 空调清洗, say), otherwise at any service; visit counts and spend count
every service. Dates are the company's local dates.

Reachability, which the preview breaks down: a matched customer is *opted out* when an
active suppression holds their number under the company's signature (nothing may be sent);
*without consent* when not opted out but no unrevoked marketing consent is on record; and
*reachable* otherwise. With ``consent: "required"`` (the default) only reachable customers
get occurrences; with ``"any"`` customers without consent are scheduled too, and the gate
suppresses the marketing ones at send time (``no_consent``), which the results count.
Of the reachable, those *held* have an open complaint or low-rating ticket: they are
scheduled, and the gate holds their marketing (``complaint_hold``) until it is resolved.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, Subquery, and_, case, exists, func, not_, or_, select
from sqlalchemy.orm import Session

from campaigns.calendar import region_key
from compliance.models import ConsentRecord, MarketingHold, Suppression
from customers.models import Customer, CustomerTag
from huifang.errors import Invalid
from messaging.models import InboundMessage
from tenancy.models import Tenant
from visits.models import Visit
from visits.service_types import normalize_service_type

BASIC_CLEANING = "basic_cleaning"
CHURN_WINDOW_DAYS = 183  # "the last six months"
SAMPLE_SIZE = 10
MAX_LIST = 50  # regions, tags or service types in one filter
MAX_DAYS = 3660
ConsentState = Literal["required", "any"]
# The spellings a region is kept under: 上海 and 上海市 are one place (calendar.region_key).
_REGION_SUFFIXES = ("省", "市", "自治区", "特别行政区", "壮族自治区", "回族自治区", "维吾尔自治区")


@dataclass(frozen=True)
class Audience:
    """The filters of an audience; an empty spec is every customer (with consent)."""

    regions: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()  # at least one of these tags
    tags_all: tuple[str, ...] = ()  # every one of these tags
    service_types: tuple[str, ...] = ()  # had at least one of these services
    last_service_after: dt.date | None = None  # last service on or after this local date
    last_service_before: dt.date | None = None  # last service before this local date
    min_days_since_last_service: int | None = None  # last service at least N days ago
    max_days_since_last_service: int | None = None  # last service at most N days ago
    min_visits: int | None = None
    max_visits: int | None = None
    min_spend_cents: int | None = None
    # Only 日常保洁 (or nothing) in the last six months and no reply in that time, from a
    # customer served at least once: the ones drifting away.
    churn_risk: bool = False
    consent: ConsentState = "required"

    @classmethod
    def from_dict(cls, data: Mapping[str, object] | None) -> Audience:
        """An audience from JSON; unknown or mistyped filters are refused with why."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise Invalid(
                "The audience must be an object of filters, e.g. "
                '{"service_types": ["ac_cleaning"], "regions": ["上海"]}.'
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise Invalid(
                f"The audience has no filter {', '.join(map(repr, unknown))}; the "
                f"filters are: {', '.join(sorted(known))}."
            )
        values: dict[str, Any] = {}
        for name in ("regions", "tags_any", "tags_all", "service_types"):
            if name in data:
                values[name] = _texts(data[name], name)
        if "service_types" in values:
            values["service_types"] = tuple(
                dict.fromkeys(normalize_service_type(s) for s in values["service_types"])
            )
        for name in ("last_service_after", "last_service_before"):
            if data.get(name) is not None:
                values[name] = _date(data[name], name)
        for name in (
            "min_days_since_last_service",
            "max_days_since_last_service",
            "min_visits",
            "max_visits",
            "min_spend_cents",
        ):
            if data.get(name) is not None:
                values[name] = _count(data[name], name)
        if "churn_risk" in data:
            if not isinstance(data["churn_risk"], bool):
                raise Invalid("churn_risk must be true or false.")
            values["churn_risk"] = data["churn_risk"]
        if "consent" in data:
            if data["consent"] not in ("required", "any"):
                raise Invalid(
                    'consent must be "required" (only customers who agreed to '
                    'marketing messages) or "any".'
                )
            values["consent"] = data["consent"]
        spec = cls(**values)
        spec._check()
        return spec

    def _check(self) -> None:
        if (
            self.last_service_after
            and self.last_service_before
            and self.last_service_after >= self.last_service_before
        ):
            raise Invalid(
                "last_service_after must be before last_service_before, or no customer can match."
            )
        if (
            self.min_days_since_last_service is not None
            and self.max_days_since_last_service is not None
            and self.min_days_since_last_service > self.max_days_since_last_service
        ):
            raise Invalid(
                "min_days_since_last_service is larger than "
                "max_days_since_last_service; no customer can match."
            )
        if (
            self.min_visits is not None
            and self.max_visits is not None
            and self.min_visits > self.max_visits
        ):
            raise Invalid("min_visits is larger than max_visits; no customer can match.")

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON, leaving out what is not set."""
        data: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if value in (None, (), [], False) and name != "consent":
                continue
            data[name] = (
                value.isoformat()
                if isinstance(value, dt.date)
                else (list(value) if isinstance(value, tuple) else value)
            )
        return data


def _texts(value: object, name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise Invalid(f'{name} must be a list of names, e.g. ["上海", "浙江"].')
    cleaned: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str):
            raise Invalid(f"Every entry of {name} must be text, not {item!r}.")
        if item.strip():
            cleaned.setdefault(item.strip(), None)
    items = tuple(cleaned)
    if len(items) > MAX_LIST:
        raise Invalid(f"{name} lists {len(items)} entries; keep it to {MAX_LIST}.")
    if any(len(item) > 64 for item in items):
        raise Invalid(f"An entry of {name} is longer than 64 characters.")
    return items


def _date(value: object, name: str) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise Invalid(f"{name} must be a date such as 2026-03-01, not {value!r}.")


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**12:
        raise Invalid(f"{name} must be a whole number of at least 0, not {value!r}.")
    if "days" in name and value > MAX_DAYS:
        raise Invalid(f"{name} must be at most {MAX_DAYS} days.")
    return value


# --- conditions ---------------------------------------------------------------------------------


def _region_spellings(regions: Sequence[str]) -> list[str]:
    spellings: dict[str, None] = {}
    for region in regions:
        key = region_key(region)
        spellings.setdefault(region, None)
        spellings.setdefault(key, None)
        for suffix in _REGION_SUFFIXES:
            spellings.setdefault(key + suffix, None)
    return list(spellings)


def _local_midnight(day: dt.date, tenant: Tenant) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=ZoneInfo(tenant.timezone)).astimezone(dt.UTC)


def _visits(tenant_id: int, *conditions: ColumnElement[bool]) -> Select[Any]:
    return select(Visit.id).where(
        Visit.tenant_id == tenant_id,
        Visit.customer_id == Customer.id,
        Visit.finished_at.is_not(None),
        *conditions,
    )


def conditions(spec: Audience, *, tenant: Tenant, now: dt.datetime) -> list[ColumnElement[bool]]:
    """The spec's filters as conditions on ``Customer`` (reachability not included)."""
    where: list[ColumnElement[bool]] = [Customer.tenant_id == tenant.id]
    if spec.regions:
        where.append(Customer.region.in_(_region_spellings(spec.regions)))
    if spec.tags_any:
        where.append(
            exists(
                select(CustomerTag.id).where(
                    CustomerTag.customer_id == Customer.id, CustomerTag.tag.in_(spec.tags_any)
                )
            )
        )
    for tag in spec.tags_all:
        where.append(
            exists(
                select(CustomerTag.id).where(
                    CustomerTag.customer_id == Customer.id, CustomerTag.tag == tag
                )
            )
        )
    if spec.service_types:
        where.append(exists(_visits(tenant.id, Visit.service_type.in_(spec.service_types))))

    # The last service, of the audience's service types when it names some: "on or after"
    # is a newer visit existing; "before" is one existing and none newer.
    typed = (Visit.service_type.in_(spec.service_types),) if spec.service_types else ()
    if spec.last_service_after:
        where.append(
            exists(
                _visits(
                    tenant.id,
                    *typed,
                    Visit.finished_at >= _local_midnight(spec.last_service_after, tenant),
                )
            )
        )
    if spec.max_days_since_last_service is not None:
        where.append(
            exists(
                _visits(
                    tenant.id,
                    *typed,
                    Visit.finished_at >= now - dt.timedelta(days=spec.max_days_since_last_service),
                )
            )
        )
    newer: list[ColumnElement[bool]] = []
    if spec.last_service_before:
        newer.append(Visit.finished_at >= _local_midnight(spec.last_service_before, tenant))
    if spec.min_days_since_last_service is not None:
        newer.append(Visit.finished_at > now - dt.timedelta(days=spec.min_days_since_last_service))
    if newer:
        where.append(exists(_visits(tenant.id, *typed)))
        where.append(not_(exists(_visits(tenant.id, *typed, or_(*newer)))))

    finished = (Visit.tenant_id == tenant.id, Visit.finished_at.is_not(None))
    if spec.min_visits:
        where.append(
            Customer.id.in_(
                select(Visit.customer_id)
                .where(*finished)
                .group_by(Visit.customer_id)
                .having(func.count(Visit.id) >= spec.min_visits)
            )
        )
    if spec.max_visits is not None:
        where.append(
            Customer.id.not_in(
                select(Visit.customer_id)
                .where(*finished)
                .group_by(Visit.customer_id)
                .having(func.count(Visit.id) > spec.max_visits)
            )
        )
    if spec.min_spend_cents:
        where.append(
            Customer.id.in_(
                select(Visit.customer_id)
                .where(*finished)
                .group_by(Visit.customer_id)
                .having(func.sum(func.coalesce(Visit.amount_cents, 0)) >= spec.min_spend_cents)
            )
        )
    if spec.churn_risk:
        since = now - dt.timedelta(days=CHURN_WINDOW_DAYS)
        where.append(exists(_visits(tenant.id)))
        where.append(
            not_(
                exists(
                    _visits(
                        tenant.id, Visit.finished_at >= since, Visit.service_type != BASIC_CLEANING
                    )
                )
            )
        )
        where.append(
            not_(
                exists(
                    select(InboundMessage.id).where(
                        InboundMessage.tenant_id == tenant.id,
                        InboundMessage.customer_id == Customer.id,
                        InboundMessage.received_at >= since,
                    )
                )
            )
        )
    return where


def opted_out(tenant: Tenant) -> ColumnElement[bool]:
    """The customer's number is suppressed under the company's signature."""
    return exists(opted_out_numbers(tenant).where(Suppression.phone == Customer.phone))


def any_suppressed(*, session: Session, tenant: Tenant) -> bool:
    """Whether any number is suppressed under the company's signature now."""
    return bool(session.scalar(select(exists(opted_out_numbers(tenant)))))


def opted_out_numbers(tenant: Tenant) -> Select[Any]:
    """The company's active suppressions under its signature."""
    return select(Suppression.id).where(
        Suppression.tenant_id == tenant.id,
        Suppression.signature == tenant.signature,
        Suppression.lifted_at.is_(None),
    )


def consented(tenant: Tenant) -> ColumnElement[bool]:
    """An unrevoked marketing consent is on record for the customer's number."""
    return exists(
        select(ConsentRecord.id).where(
            ConsentRecord.tenant_id == tenant.id,
            ConsentRecord.phone == Customer.phone,
            ConsentRecord.revoked_at.is_(None),
        )
    )


def held(tenant: Tenant) -> ColumnElement[bool]:
    """An open complaint or low-rating ticket holds the customer's number from marketing
    (the gate suppresses it, ``complaint_hold``, until the office resolves it)."""
    return exists(
        select(MarketingHold.id).where(
            MarketingHold.tenant_id == tenant.id,
            MarketingHold.phone == Customer.phone,
            MarketingHold.released_at.is_(None),
        )
    )


def recorded_consents(tenant: Tenant, low: int, high: int) -> Subquery:
    """The unrevoked marketing consents recorded for customers ``low``…``high`` (by id):
    outer-joined on customer id *and* number, ``consented_or_recorded`` is ``consented``
    for a range of customers, found with one scan of the range instead of a probe per
    customer.

    A consent is recorded for the customer whose number it is (``record_consent``), so
    the join finds nearly all; one it misses (recorded under another id: a customer
    deleted and added again) is still found by ``consented``, which is evaluated only for
    the customers the join missed. A customer with two unrevoked consents for their
    number comes out of the join twice: statements using it group by customer.
    """
    return (
        select(ConsentRecord.customer_id, ConsentRecord.phone)
        .where(
            ConsentRecord.tenant_id == tenant.id,
            ConsentRecord.customer_id.between(low, high),
            ConsentRecord.revoked_at.is_(None),
        )
        .subquery("recorded")
    )


def recorded_for(recorded: Subquery) -> ColumnElement[bool]:
    """The join condition of ``recorded_consents`` to ``Customer``."""
    return and_(recorded.c.customer_id == Customer.id, recorded.c.phone == Customer.phone)


def consented_or_recorded(tenant: Tenant, recorded: Subquery) -> ColumnElement[bool]:
    """``consented``, once ``recorded`` (``recorded_consents``) is outer-joined."""
    return or_(recorded.c.customer_id.is_not(None), consented(tenant))


def reachable(
    spec: Audience,
    *,
    tenant: Tenant,
    now: dt.datetime,
    suppressions: bool = True,
    consent: bool = True,
) -> list[ColumnElement[bool]]:
    """The spec's filters and reachability: the customers a campaign schedules.

    ``suppressions=False`` leaves out the suppression check, for a company known to have
    no active suppression (``any_suppressed``), where it could only find nothing.
    ``consent=False`` leaves out the consent check, for a caller that makes it with
    ``recorded_consents`` (when ``spec.consent`` requires it)."""
    where = conditions(spec, tenant=tenant, now=now)
    if suppressions:
        where.append(not_(opted_out(tenant)))
    if consent and spec.consent == "required":
        where.append(consented(tenant))
    return where


def select_ids(
    spec: Audience, *, tenant: Tenant, now: dt.datetime, extra: Sequence[ColumnElement[bool]] = ()
) -> Select[Any]:
    """The ids of the customers the audience reaches (``extra``: the rule's own needs)."""
    return select(Customer.id).where(*reachable(spec, tenant=tenant, now=now), *extra)


# --- preview ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleCustomer:
    id: int
    name: str
    phone: str
    region: str | None
    reachable: bool
    why_not: str | None  # "opted out" / "no marketing consent"


@dataclass(frozen=True)
class AudiencePreview:
    """What the office sees before activating: who matches and who can be reached."""

    matched: int  # every customer the filters (and the rule) select
    opted_out: int  # of those, suppressed: nothing may be sent
    without_consent: int  # not opted out, but no marketing consent on record
    reachable: int  # the rest: the customers who will be scheduled
    sample: list[SampleCustomer] = field(default_factory=list)
    # Of the reachable, held now by an open complaint or low rating: scheduled, but the
    # gate holds their marketing until the office resolves it.
    held: int = 0


def preview(
    *,
    session: Session,
    tenant: Tenant,
    spec: Audience,
    now: dt.datetime,
    extra: Sequence[ColumnElement[bool]] = (),
    sample: int = SAMPLE_SIZE,
) -> AudiencePreview:
    """Counts in one scan, and up to ``sample`` customers (the reachable ones first)."""
    where = [*conditions(spec, tenant=tenant, now=now), *extra]
    out, agreed = opted_out(tenant), consented(tenant)
    reach = and_(not_(out), agreed) if spec.consent == "required" else not_(out)

    def count(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    row = session.execute(
        select(
            func.count(Customer.id),
            count(out),
            count(and_(not_(out), not_(agreed))),
            count(reach),
            count(and_(reach, held(tenant))),
        ).where(*where)
    ).one()
    is_out = out.label("is_out")
    has_consent = agreed.label("has_consent")
    rows = (
        session.execute(
            select(Customer.id, Customer.name, Customer.phone, Customer.region, is_out, has_consent)
            .where(*where)
            .order_by(case((reach, 0), else_=1), Customer.id)
            .limit(sample)
        ).all()
        if sample
        else []
    )
    picked = []
    for cid, name, phone, region, was_out, has in rows:
        why = "opted out" if was_out else (None if has else "no marketing consent")
        ok = not was_out and (bool(has) or spec.consent == "any")
        picked.append(SampleCustomer(cid, name, phone, region, ok, why))
    return AudiencePreview(
        matched=int(row[0]),
        opted_out=int(row[1]),
        without_consent=int(row[2]),
        reachable=int(row[3]),
        sample=picked,
        held=int(row[4]),
    )
