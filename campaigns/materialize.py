"""Materialize: fan out campaign occurrences, set-based.
A campaign becomes messages in two periodic steps, both idempotent:

``materialize``: for every active campaign, each audience customer without a pending
   occurrence gets the next one its rule names, inserted with ``ON CONFLICT DO NOTHING``
   on (campaign, customer, local date). It is set-based: one ``INSERT … SELECT`` per chunk
   of customers, computed by the database, never a customer loaded into Python.
   - Cadence rules need each customer's last service: the SQL is ``rules.next_occurrence``
     for cadences spelled as date arithmetic and ``CASE`` (the roll-forward after a
     reminder, the catch-up window, the skip to the next date). The local send instant
     of each date comes from a small table of (time zone, date) → instant computed in
     Python with ``rules.local_instant`` for the few dates the horizon spans, so
     daylight-saving gaps and repeats resolve exactly as the rules say.
   - Yearly rules (solar terms, 入梅, lunar festivals, fixed dates, anniversaries) give
     the same dates to every customer of a time zone (and region, for 入梅; and month-day
     of the first service, for anniversaries): those dates come from
     ``rules.next_occurrence`` itself, once per group, and the database picks each
     customer's first one after the last reminder.
   ``tests/campaigns/test_materialize.py`` compares both paths with
   ``rules.next_occurrence`` customer by customer, across time zones with daylight saving.
   Yearly rules have no catch-up window, so they look for dates after the materializer's
   previous run (at most ``YEARLY_GRACE`` back): an outage delays a yearly reminder
   instead of dropping it, and a long one does not send last season's.

"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    FromClause,
    Integer,
    Select,
    String,
    Table,
    and_,
    case,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    union_all,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, aliased, outerjoin

from campaigns import calendar, rules
from campaigns.audiences import (
    Audience,
    any_suppressed,
    consented_or_recorded,
    recorded_consents,
    recorded_for,
)
from campaigns.audiences import reachable as reachable_conditions
from campaigns.facts import (
    aware,
    campaign_rule,
    plum_table,
    served_conditions,
    zone_info,
)
from campaigns.models import (
    ACTIVE,
    HANDED_OFF,
    PENDING,
    SKIPPED,
    TOO_LATE,
    Campaign,
    CampaignOccurrence,
)
from customers.models import Customer
from huifang.db import UTCDateTime
from huifang.errors import Invalid
from huifang.sql import Dialect
from tenancy.models import Tenant
from visits.models import Visit

HORIZON = dt.timedelta(days=31)  # occurrences are materialized this far ahead
YEARLY_GRACE = dt.timedelta(days=7)  # the furthest back a yearly rule looks after an outage
CHUNK_CUSTOMERS = 50_000  # customer ids per INSERT … SELECT


# Core, not the ORM: the insert's rowcount, and no ORM bulk path.
_OCCURRENCES = cast(Table, CampaignOccurrence.__table__)
_COLUMNS = (
    "tenant_id",
    "campaign_id",
    "customer_id",
    "local_date",
    "due_at",
    "basis_at",
    "campaign_version",
    "status",
    "reason",
    "caught_up",
    "late_by_days",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class _Run:
    """One campaign's materialization: the fixed values every statement binds."""

    sql: Dialect
    campaign: Campaign
    tenant: Tenant
    rule: rules.Rule
    now: dt.datetime
    until: dt.datetime
    zones: dict[str, ZoneInfo]
    where: list[ColumnElement[bool]]
    consent: bool  # the audience requires marketing consent (checked per chunk)

    def at(self, value: dt.datetime) -> ColumnElement[dt.datetime]:
        return literal(value, UTCDateTime())

    def audience(
        self, low: int, high: int, untouched: bool
    ) -> tuple[FromClause, list[ColumnElement[bool]]]:
        """The customers to select from and the conditions that keep the chunk's customers
        the campaign reaches that have no occurrence waiting (none has, when the campaign
        has no occurrence in the chunk at all: ``untouched``).

        Consent comes with the chunk's recorded consents outer-joined (one scan of the
        range, ``audiences.recorded_consents``): a customer can come out once per such
        consent, so every statement groups by customer. The waiting ones are looked up
        within the chunk's ids too: the table grows as the chunks go in, and the
        planner's statistics do not know it yet.
        """
        source: FromClause = Customer.__table__
        where = [Customer.id.between(low, high), *self.where]
        if self.consent:
            recorded = recorded_consents(self.tenant, low, high)
            source = outerjoin(Customer, recorded, recorded_for(recorded))
            where.append(consented_or_recorded(self.tenant, recorded))
        if untouched:
            return source, where
        waiting = aliased(CampaignOccurrence)
        return source, [
            *where,
            not_(
                exists(
                    select(waiting.id).where(
                        waiting.campaign_id == self.campaign.id,
                        waiting.customer_id == Customer.id,
                        waiting.customer_id.between(low, high),
                        waiting.status == PENDING,
                    )
                )
            ),
        ]

    def fired(self, low: int, high: int) -> FromClause:
        """Per customer of the chunk, when the campaign last handed them a message."""
        occ = aliased(CampaignOccurrence)
        return (
            select(occ.customer_id, func.max(occ.due_at).label("fired_at"))
            .where(
                occ.campaign_id == self.campaign.id,
                occ.status == HANDED_OFF,
                occ.customer_id.between(low, high),
            )
            .group_by(occ.customer_id)
            .subquery("fired")
        )

    def constants(self) -> dict[str, ColumnElement[Any]]:
        return {
            "tenant_id": literal(self.tenant.id, BigInteger()),
            "campaign_id": literal(self.campaign.id, BigInteger()),
            "campaign_version": literal(self.campaign.version, Integer()),
            "created_at": self.at(self.now),
            "updated_at": self.at(self.now),
        }


def _row(run: _Run, **values: ColumnElement[Any]) -> Select[Any]:
    merged = {**run.constants(), **values}
    return select(*(merged[name].label(name) for name in _COLUMNS))


def _cadence_tables(run: _Run) -> tuple[FromClause, FromClause]:
    """Each zone's today, and the send instants of the dates a pending occurrence can fall
    on: from yesterday (an earlier date is late, so due now) to the end of the horizon."""
    rule = cast(rules.Cadence, run.rule)
    now = run.now
    zones = run.sql.table(
        "zones",
        [("tz", String()), ("today", Date())],
        [(name, now.astimezone(zone).date()) for name, zone in run.zones.items()],
    )
    day_rows = []
    for name, zone in run.zones.items():
        day = now.astimezone(zone).date() - dt.timedelta(days=1)
        while day <= run.until.astimezone(zone).date() + dt.timedelta(days=1):
            day_rows.append((name, day, rules.local_instant(day, rule.send_time, zone)))
            day += dt.timedelta(days=1)
    days = run.sql.table(
        "days", [("tz", String()), ("day", Date()), ("due_at", UTCDateTime())], day_rows
    )
    return zones, days


def _cadence(
    run: _Run, low: int, high: int, untouched: bool, zones: FromClause, days: FromClause
) -> Any:
    """``rules.next_occurrence`` for a cadence, for every customer of the chunk at once."""
    rule = cast(rules.Cadence, run.rule)
    sql, now = run.sql, run.now
    every, catch_up = rule.every_days, rule.catch_up_days
    source, audience = run.audience(low, high, untouched)
    # In the insert's order (below), so the planner aggregates sorted rows.
    served = (
        select(
            Customer.id.label("customer_id"),
            Customer.timezone.label("tz"),
            func.max(sql.local_date(Visit.finished_at, Customer.timezone)).label("served_on"),
            func.max(Visit.finished_at).label("served_at"),
        )
        .select_from(source)
        .join(
            Visit,
            and_(
                Visit.customer_id == Customer.id,
                Visit.tenant_id == run.tenant.id,
                # the chunk's range on the index (tenant_id, customer_id)
                Visit.customer_id.between(low, high),
            ),
        )
        .where(*audience, Visit.service_type == rule.service_type, *served_conditions())
        .group_by(Customer.id, Customer.timezone)
        .order_by(Customer.id)
        .subquery("served")
    )
    fired = run.fired(low, high)
    fired_on = sql.local_date(fired.c.fired_at, served.c.tz)
    # A reminder since the last service: the cadence counts from the reminder.
    from_reminder = and_(fired.c.fired_at.is_not(None), fired_on >= served.c.served_on)
    anchored = (
        select(
            served.c.customer_id,
            served.c.tz,
            zones.c.today,
            sql.add_days(case((from_reminder, fired_on), else_=served.c.served_on), every).label(
                "first"
            ),
            case((from_reminder, fired.c.fired_at), else_=served.c.served_at).label("basis_at"),
        )
        .join(zones, zones.c.tz == served.c.tz)
        .outerjoin(fired, fired.c.customer_id == served.c.customer_id)
        .subquery("anchored")
    )
    # Dates more than catch_up days late are skipped, whole cadences at a time.
    behind = sql.days_between(anchored.c.today, anchored.c.first) - catch_up
    stepped = select(
        anchored, case((behind > 0, (behind + (every - 1)) // every), else_=0).label("steps")
    ).subquery("stepped")
    found = select(
        stepped, sql.add_days(stepped.c.first, stepped.c.steps * every).label("candidate")
    ).cte("found")

    due = case((days.c.due_at > run.at(now), days.c.due_at), else_=run.at(now))
    late = sql.days_between(found.c.today, found.c.candidate)
    pending = (
        _row(
            run,
            customer_id=found.c.customer_id,
            local_date=found.c.candidate,
            due_at=due,
            basis_at=found.c.basis_at,
            status=literal(PENDING, String()),
            reason=literal(None, String()),
            caught_up=case((days.c.due_at > run.at(now), False), else_=True),
            late_by_days=case((days.c.due_at > run.at(now), 0), else_=late),
        )
        .select_from(found)
        .outerjoin(days, and_(days.c.tz == found.c.tz, days.c.day == found.c.candidate))
        # Not in the table: late by two days or more (due now), or past the horizon.
        .where(or_(days.c.day.is_not(None), late >= 2), due <= run.at(run.until))
    )
    skipped_on = sql.add_days(found.c.candidate, -every)
    skipped = (
        _row(
            run,
            customer_id=found.c.customer_id,
            local_date=skipped_on,
            due_at=run.at(now),
            basis_at=found.c.basis_at,
            status=literal(SKIPPED, String()),
            reason=literal(TOO_LATE, String()),
            caught_up=literal(False),
            late_by_days=sql.days_between(found.c.today, skipped_on),
        )
        .select_from(found)
        .where(found.c.steps > 0)
    )
    # In customer id order: the rows then go into the occurrences' indexes on customer
    # id at their right edge instead of all over them (BENCHMARKS.md, Fan-out). The join
    # with ``days`` may hand them over in the order of its own table.
    rows = union_all(pending, skipped).subquery("due")
    return run.sql.insert(_OCCURRENCES).from_select(
        list(_COLUMNS),
        select(*(rows.c[name] for name in _COLUMNS)).order_by(rows.c.customer_id),
        include_defaults=False,
    )


def _yearly_groups(session: Session, run: _Run) -> dict[str, rules.CustomerFacts]:
    """The customers a yearly rule cannot tell apart, by group key, with stand-in facts."""
    rule = run.rule
    if isinstance(rule, rules.PlumRainOffset) and rule.region is None:
        regions = session.scalars(
            select(func.coalesce(Customer.region, ""))
            .where(Customer.tenant_id == run.tenant.id)
            .distinct()
        ).all()
        return {r: rules.CustomerFacts(region=r or None) for r in regions}
    if isinstance(rule, rules.Anniversary):
        groups = {}
        for zone in run.zones.values():
            day = _yearly_after(run).astimezone(zone).date() - dt.timedelta(days=1)
            while day <= run.until.astimezone(zone).date() + dt.timedelta(days=1):
                keys = [(day.month, day.day)]
                if (day.month, day.day) == (2, 28) and _common_year(day.year):
                    keys.append((2, 29))
                for month, mday in keys:
                    # A first service in 2000 (a leap year) stands for every year before.
                    groups[f"{month:02d}-{mday:02d}"] = rules.CustomerFacts(
                        first_service=dt.date(2000, month, mday)
                    )
                day += dt.timedelta(days=1)
        return groups
    return {"": rules.CustomerFacts()}


def _common_year(year: int) -> bool:
    """A common (non-leap) year: 29 February anniversaries fall on the 28th."""
    return not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0))


def _yearly_after(run: _Run) -> dt.datetime:
    last = run.campaign.materialized_at or run.campaign.activated_at or run.now
    return max(min(last, run.now), run.now - YEARLY_GRACE)


def _yearly_dates(
    run: _Run, groups: Mapping[str, rules.CustomerFacts], table: calendar.PlumTable
) -> FromClause | None:
    """A yearly rule's dates within the horizon per (zone, group), from ``rules`` itself."""
    rule = run.rule
    after = _yearly_after(run)
    rows = []
    for name, zone in run.zones.items():
        for key, facts in groups.items():
            since, fired = after, None
            while True:
                found = rules.next_occurrence(
                    rule, customer=facts, after=since, tz=zone, last_fired=fired, plum_table=table
                )
                if found is None or found.due_at > run.until:
                    break
                rows.append((name, key, found.local_date, found.due_at))
                since = fired = found.due_at
    if not rows:
        return None
    return run.sql.table(
        "cands",
        [("tz", String()), ("grp", String()), ("day", Date()), ("due_at", UTCDateTime())],
        rows,
    )


def _yearly(run: _Run, low: int, high: int, untouched: bool, cands: FromClause) -> Any:
    """Each customer's first date of ``cands`` after their last reminder, in SQL."""
    rule, sql = run.rule, run.sql
    source, audience = run.audience(low, high, untouched)
    first_on: ColumnElement[Any] | None = None
    if isinstance(rule, rules.Anniversary):
        base = (
            select(
                Customer.id.label("customer_id"),
                Customer.timezone.label("tz"),
                func.min(sql.local_date(Visit.finished_at, Customer.timezone)).label("first_on"),
            )
            .select_from(source)
            .join(
                Visit,
                and_(
                    Visit.customer_id == Customer.id,
                    Visit.tenant_id == run.tenant.id,
                    Visit.customer_id.between(low, high),
                    *served_conditions(),
                ),
            )
            .where(*audience)
            .group_by(Customer.id, Customer.timezone)
            .subquery("base")
        )
        first_on = base.c.first_on
        group: ColumnElement[Any] = sql.month_day(base.c.first_on)
    elif isinstance(rule, rules.PlumRainOffset) and rule.region is None:
        base = (
            select(
                Customer.id.label("customer_id"),
                Customer.timezone.label("tz"),
                func.coalesce(Customer.region, "").label("grp"),
            )
            .select_from(source)
            .where(*audience)
            .subquery("base")
        )
        group = base.c.grp
    else:
        base = (
            select(Customer.id.label("customer_id"), Customer.timezone.label("tz"))
            .select_from(source)
            .where(*audience)
            .subquery("base")
        )
        group = literal("", String())
    fired = run.fired(low, high)
    joined = [
        cands.c.tz == base.c.tz,
        cands.c.grp == group,
        or_(fired.c.fired_at.is_(None), cands.c.day > sql.local_date(fired.c.fired_at, base.c.tz)),
    ]
    if first_on is not None:
        joined.append(cands.c.day > first_on)  # an anniversary needs a year gone by
    # In one zone later dates have later instants, so both minimums are the same date's.
    picked = (
        select(
            base.c.customer_id,
            func.min(cands.c.day).label("day"),
            func.min(cands.c.due_at).label("due_at"),
        )
        .select_from(
            base.outerjoin(fired, fired.c.customer_id == base.c.customer_id).join(
                cands, and_(*joined)
            )
        )
        .group_by(base.c.customer_id)
        .order_by(base.c.customer_id)  # the insert's order, as the cadence's
        .subquery("picked")
    )
    rows_select = (
        _row(
            run,
            customer_id=picked.c.customer_id,
            local_date=picked.c.day,
            due_at=picked.c.due_at,
            basis_at=run.at(run.now),
            status=literal(PENDING, String()),
            reason=literal(None, String()),
            caught_up=literal(False),
            late_by_days=literal(0, Integer()),
        )
        .select_from(picked)
        .where(picked.c.due_at <= run.at(run.until))
    )
    return run.sql.insert(_OCCURRENCES).from_select(
        list(_COLUMNS), rows_select, include_defaults=False
    )


def active_campaign_ids(*, session: Session) -> list[int]:
    """Every active campaign, of every company (for the periodic tick)."""
    return list(
        session.scalars(select(Campaign.id).where(Campaign.status == ACTIVE).order_by(Campaign.id))
    )


def materialize(
    *,
    session: Session,
    now: dt.datetime,
    horizon: dt.timedelta = HORIZON,
    campaign_id: int | None = None,
    chunk: int = CHUNK_CUSTOMERS,
) -> dict[int, int]:
    """Insert the next occurrence of each active campaign for each audience customer
    without a pending one, due within ``horizon``; rows inserted per campaign.

    Set-based and streamed: one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` per chunk of
    ``chunk`` customer ids, so memory stays flat whatever the audience. Two runs at once
    skip each other's campaigns (row locks) and could not duplicate a row anyway.
    """
    now = aware(now, "now")
    if chunk < 1:
        raise Invalid("chunk must be at least 1 customer.")
    sql = Dialect(session)
    with sql.custom_plans():
        return _materialize(session, sql, now, horizon, campaign_id, chunk)


def _materialize(
    session: Session,
    sql: Dialect,
    now: dt.datetime,
    horizon: dt.timedelta,
    campaign_id: int | None,
    chunk: int,
) -> dict[int, int]:
    stmt = select(Campaign.id).where(Campaign.status == ACTIVE).order_by(Campaign.id)
    if campaign_id is not None:
        stmt = stmt.where(Campaign.id == campaign_id)
    counts: dict[int, int] = {}
    for cid in session.scalars(stmt).all():
        locked = select(Campaign).where(Campaign.id == cid, Campaign.status == ACTIVE)
        if sql.postgres:
            locked = locked.with_for_update(skip_locked=True)
        campaign = session.execute(
            locked.execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if campaign is None:
            continue  # paused meanwhile, or another run has it
        tenant = session.get(Tenant, campaign.tenant_id)
        assert tenant is not None
        counts[campaign.id] = _materialize_one(
            session, sql, campaign, tenant, now, now + horizon, chunk
        )
        campaign.materialized_at = now
        session.flush()
    return counts


def _materialize_one(
    session: Session,
    sql: Dialect,
    campaign: Campaign,
    tenant: Tenant,
    now: dt.datetime,
    until: dt.datetime,
    chunk: int,
) -> int:
    rule = campaign_rule(campaign)
    spec = Audience.from_dict(campaign.audience)
    names = session.scalars(
        select(Customer.timezone).where(Customer.tenant_id == tenant.id).distinct()
    ).all()
    zones = {name: zone for name in names if (zone := zone_info(name)) is not None}
    low, high = session.execute(
        select(func.min(Customer.id), func.max(Customer.id)).where(Customer.tenant_id == tenant.id)
    ).one()
    if not zones or low is None:
        return 0
    run = _Run(
        sql,
        campaign,
        tenant,
        rule,
        now,
        until,
        zones,
        reachable_conditions(
            spec,
            tenant=tenant,
            now=now,
            suppressions=any_suppressed(session=session, tenant=tenant),
            consent=False,
        ),
        consent=spec.consent == "required",
    )
    if isinstance(rule, rules.Cadence):
        zone_table, days = _cadence_tables(run)

        def statement(low: int, high: int, untouched: bool) -> Any:
            return _cadence(run, low, high, untouched, zone_table, days)
    else:
        cands = _yearly_dates(
            run, _yearly_groups(session, run), plum_table(session=session, tenant_id=tenant.id)
        )
        if cands is None:
            return 0  # no date of the rule within the horizon, for anyone

        def statement(low: int, high: int, untouched: bool) -> Any:
            return _yearly(run, low, high, untouched, cands)

    inserted = 0
    for start in range(low, high + 1, chunk):
        end = min(start + chunk - 1, high)
        # Only this run writes the campaign's occurrences (it holds the campaign's row on
        # PostgreSQL, the write lock on SQLite), so a chunk it has none in yet cannot
        # conflict, nor have one waiting: a campaign's first fan-out inserts without checks.
        untouched = _untouched(session, campaign.id, start, end)
        insert = statement(start, end, untouched)
        if not untouched:
            insert = insert.on_conflict_do_nothing(
                index_elements=["campaign_id", "customer_id", "local_date"]
            )
        result = session.execute(insert.execution_options(preserve_rowcount=True))
        inserted += (
            cast(CursorResult[Any], result).rowcount
            if sql.postgres
            # sqlite3 reports no rowcount for a statement opening with WITH
            else int(session.scalar(select(func.changes())) or 0)
        )
    return inserted


def _untouched(session: Session, campaign_id: int, low: int, high: int) -> bool:
    """Whether the campaign has no occurrence at all for customers ``low``…``high``."""
    return not session.scalar(
        select(
            exists().where(
                CampaignOccurrence.campaign_id == campaign_id,
                CampaignOccurrence.customer_id.between(low, high),
            )
        )
    )
