"""What a campaign knows about its customers: last service, last reminder, the rule in
force, the booking links, and the facts each message is rendered from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    ColumnElement,
    case,
    delete,
    exists,
    func,
    literal,
    select,
)
from sqlalchemy.orm import Session

from bookings import links as short_links
from bookings.models import ShortLink
from campaigns import calendar, rules, templating
from campaigns.audiences import Audience
from campaigns.audiences import reachable as reachable_conditions
from campaigns.models import (
    HANDED_OFF,
    Campaign,
    CampaignOccurrence,
    PlumRainOnset,
)
from customers.models import Customer
from huifang import dates
from huifang.db import utcnow
from huifang.errors import Invalid
from huifang.settings import get_settings
from reports import service as reports
from reports.models import Report
from tenancy.models import Tenant
from visits.models import Staff, Visit

SOURCE_TYPE = "campaign"  # Message, ShortLink and Booking source_type
PREVIEW_CUSTOMERS = 3
FOREVER = dt.date(1900, 1, 1)


def aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise Invalid(f"{what} must be a timezone-aware datetime (UTC).")
    return value.astimezone(dt.UTC)


def placeholder_link() -> str:
    # As long as the real ones (16-character tokens), without making a link per sample.
    return f"{get_settings().public_url}/b/{'x' * 16}"


# --- facts about customers ------------------------------------------------------------------


def zone_info(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def served_conditions() -> tuple[ColumnElement[bool], ...]:
    """Finished visits whose date a person could have meant: a stored typo such as
    9999-12-31 (entered before dates were checked) names no date and overflows none."""
    return (
        Visit.finished_at.is_not(None),
        Visit.finished_at >= dates.EARLIEST,
        Visit.finished_at <= dates.latest(utcnow()),
    )


def customer_facts(
    *, session: Session, tenant_id: int, customers: Sequence[Customer]
) -> dict[int, rules.CustomerFacts]:
    """What the rules need about each customer: last service of each type and first
    service (local dates in the customer's zone), and region. For a few customers."""
    by_id = {c.id: c for c in customers}
    last: dict[int, dict[str, dt.date]] = {c.id: {} for c in customers}
    first: dict[int, dt.date] = {}
    for customer_id, code, finished in session.execute(
        select(Visit.customer_id, Visit.service_type, Visit.finished_at).where(
            Visit.tenant_id == tenant_id, Visit.customer_id.in_(list(by_id)), *served_conditions()
        )
    ):
        zone = zone_info(by_id[customer_id].timezone) or ZoneInfo("UTC")
        day = cast(dt.datetime, finished).astimezone(zone).date()
        if day > last[customer_id].get(code, FOREVER):
            last[customer_id][code] = day
        if customer_id not in first or day < first[customer_id]:
            first[customer_id] = day
    return {
        c.id: rules.CustomerFacts(
            last_services=last[c.id], first_service=first.get(c.id), region=c.region
        )
        for c in customers
    }


def last_fired(
    *, session: Session, campaign_id: int, customer_ids: Sequence[int]
) -> dict[int, dt.datetime]:
    """When the campaign last handed each customer a message (its occurrence's due time)."""
    return {
        cid: at
        for cid, at in session.execute(
            select(CampaignOccurrence.customer_id, func.max(CampaignOccurrence.due_at))
            .where(
                CampaignOccurrence.campaign_id == campaign_id,
                CampaignOccurrence.customer_id.in_(list(customer_ids)),
                CampaignOccurrence.status == HANDED_OFF,
            )
            .group_by(CampaignOccurrence.customer_id)
        )
    }


@dataclass(frozen=True)
class _LastVisit:
    service_type: str
    finished_at: dt.datetime
    staff_name: str | None
    report: Report | None


def _last_visits(
    session: Session, tenant_id: int, customer_ids: Sequence[int], service_type: str | None
) -> dict[int, _LastVisit]:
    """Each customer's last visit (of the campaign's service when they had one), in one query."""
    if not customer_ids:
        return {}
    preferred = (
        case((Visit.service_type == service_type, 0), else_=1) if service_type else literal(0)
    )
    ranked = (
        select(
            Visit.id.label("visit_id"),
            Visit.customer_id,
            Visit.service_type,
            Visit.finished_at,
            Visit.staff_id,
            func.row_number()
            .over(
                partition_by=Visit.customer_id,
                order_by=(preferred, Visit.finished_at.desc(), Visit.id.desc()),
            )
            .label("rank"),
        )
        .where(
            Visit.tenant_id == tenant_id,
            Visit.customer_id.in_(list(customer_ids)),
            *served_conditions(),
        )
        .subquery("ranked")
    )
    found: dict[int, _LastVisit] = {}
    for row in session.execute(
        select(
            ranked.c.customer_id, ranked.c.service_type, ranked.c.finished_at, Staff.name, Report
        )
        .outerjoin(Staff, Staff.id == ranked.c.staff_id)
        .outerjoin(Report, Report.visit_id == ranked.c.visit_id)
        .where(ranked.c.rank == 1)
    ):
        customer_id, code, finished, staff_name, report = row
        found[customer_id] = _LastVisit(code, finished, staff_name, report)
    return found


def booking_links(
    session: Session,
    tenant: Tenant,
    campaign: Campaign,
    people: Sequence[Customer],
    now: dt.datetime,
) -> dict[int, ShortLink]:
    """Each customer's booking link for the campaign, made once (one query for those made)."""
    found = {
        link.customer_id: link
        for link in session.scalars(
            select(ShortLink).where(
                ShortLink.tenant_id == tenant.id,
                ShortLink.source_type == SOURCE_TYPE,
                ShortLink.source_id == str(campaign.id),
                ShortLink.customer_id.in_([c.id for c in people]),
            )
        )
    }
    for person in people:
        if person.id not in found:
            found[person.id] = short_links.link_for(
                session=session,
                tenant=tenant,
                customer=person,
                source_type=SOURCE_TYPE,
                source_id=str(campaign.id),
                service_type=campaign.service_type,
                now=now,
            )
    return found


def message_facts(
    session: Session,
    tenant: Tenant,
    campaign: Campaign,
    people: Sequence[Customer],
    *,
    now: dt.datetime,
    links: Mapping[int, ShortLink] | None,
) -> dict[int, templating.MessageFacts]:
    """What each customer's message may say; ``links`` None uses a stand-in booking link."""
    visits = _last_visits(session, tenant.id, [c.id for c in people], campaign.service_type)
    facts = {}
    for person in people:
        last = visits.get(person.id)
        zone = zone_info(person.timezone) or ZoneInfo("UTC")
        report_link = None
        if last and last.report is not None and not reports.is_expired(last.report, now=now):
            report_link = reports.page_url(last.report)
        facts[person.id] = templating.MessageFacts(
            customer_name=person.name,
            company=tenant.name,
            last_service=last.service_type if last else None,
            last_service_date=last.finished_at.astimezone(zone).date() if last else None,
            staff_name=last.staff_name if last else None,
            booking_link=short_links.url(links[person.id]) if links else placeholder_link(),
            report_link=report_link,
        )
    return facts


# --- rules × audience -----------------------------------------------------------------------


def campaign_rule(campaign: Campaign) -> rules.Rule:
    return rules.rule_from_dict(campaign.rule)


def rule_applies(rule: rules.Rule, tenant_id: int) -> list[ColumnElement[bool]]:
    """What a customer needs for the rule to name a date: the service a cadence follows,
    any service for an anniversary."""
    visit = select(Visit.id).where(
        Visit.tenant_id == tenant_id, Visit.customer_id == Customer.id, *served_conditions()
    )
    if isinstance(rule, rules.Cadence):
        return [exists(visit.where(Visit.service_type == rule.service_type))]
    if isinstance(rule, rules.Anniversary):
        return [exists(visit)]
    return []


def plum_table(*, session: Session, tenant_id: int) -> dict[str, dict[int, dt.date]]:
    """The company's 入梅 dates by region and year."""
    table: dict[str, dict[int, dt.date]] = {}
    for row in session.scalars(
        select(PlumRainOnset)
        .where(PlumRainOnset.tenant_id == tenant_id)
        .order_by(PlumRainOnset.region, PlumRainOnset.year)
    ):
        table.setdefault(row.region, {})[row.year] = row.onset
    return table


def set_plum_table(
    *, session: Session, tenant_id: int, table: Mapping[str, Mapping[int, dt.date]]
) -> dict[str, dict[int, dt.date]]:
    """Replace the company's 入梅 table (checked whole: regions once, dates in May–July)."""
    checked = calendar.check_plum_table(table)
    session.execute(delete(PlumRainOnset).where(PlumRainOnset.tenant_id == tenant_id))
    session.add_all(
        PlumRainOnset(tenant_id=tenant_id, region=region, year=year, onset=onset)
        for region, rows in checked.items()
        for year, onset in rows.items()
    )
    session.flush()
    return plum_table(session=session, tenant_id=tenant_id)


def sample_customers(
    session: Session, tenant: Tenant, campaign: Campaign, now: dt.datetime, count: int
) -> list[Customer]:
    spec = Audience.from_dict(campaign.audience)
    ids = session.scalars(
        select(Customer.id)
        .where(
            *reachable_conditions(spec, tenant=tenant, now=now),
            *rule_applies(campaign_rule(campaign), tenant.id),
        )
        .order_by(Customer.id)
        .limit(count)
    ).all()
    return list(session.scalars(select(Customer).where(Customer.id.in_(ids)).order_by(Customer.id)))
