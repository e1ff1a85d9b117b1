"""A campaign's preview: who it reaches and what the first customers would receive, when."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    select,
)
from sqlalchemy.orm import Session

from campaigns import rules, templating
from campaigns.audiences import Audience
from campaigns.audiences import preview as audience_preview
from campaigns.facts import (
    PREVIEW_CUSTOMERS,
    aware,
    booking_links,
    campaign_rule,
    customer_facts,
    last_fired,
    message_facts,
    plum_table,
    rule_applies,
    zone_info,
)
from campaigns.lifecycle import get_campaign, lint_campaign, mms_template
from campaigns.models import (
    ARCHIVED,
)
from campaigns.schemas import (
    AudienceCounts,
    CampaignPreviewRead,
    LintFindingRead,
    MessagePreviewRead,
    OccurrenceRead,
    RenderedRead,
    ScheduleRead,
)
from compliance import service as compliance
from customers import service as customers
from customers.models import Customer
from huifang.errors import Invalid
from tenancy.models import Tenant


def preview(
    *,
    session: Session,
    tenant: Tenant,
    campaign_id: int,
    now: dt.datetime,
    customer_ids: Sequence[int] = (),
    count: int = PREVIEW_CUSTOMERS,
) -> CampaignPreviewRead:
    """Who the campaign reaches, each sample customer's message as sent (with their real
    booking link), the lint findings, and the next dates of those customers."""
    now = aware(now, "now")
    campaign = get_campaign(session=session, tenant_id=tenant.id, campaign_id=campaign_id)
    rule = campaign_rule(campaign)
    spec = Audience.from_dict(campaign.audience)
    counts = audience_preview(
        session=session, tenant=tenant, spec=spec, now=now, extra=rule_applies(rule, tenant.id)
    )
    if customer_ids:
        people = [
            customers.get_customer(session=session, tenant_id=tenant.id, customer_id=i)
            for i in dict.fromkeys(customer_ids)
        ]
    else:
        chosen = [s.id for s in counts.sample if s.reachable][:count] or [
            s.id for s in counts.sample
        ][:count]
        people = list(
            session.scalars(select(Customer).where(Customer.id.in_(chosen)).order_by(Customer.id))
        )
    links = booking_links(session, tenant, campaign, people, now)
    facts = message_facts(session, tenant, campaign, people, now=now, links=links)
    footer = compliance.policy_for(session=session, tenant_id=tenant.id).opt_out_footer
    messages = []
    for person in people:
        sms = mms = None
        problem = None
        try:
            sms = templating.preview(
                campaign.template,
                facts=facts[person.id],
                signature=tenant.signature,
                footer=footer,
                category=cast(templating.Category, campaign.category),
            )
            if campaign.mms:
                mms = templating.preview(
                    mms_template(campaign.mms),
                    facts=facts[person.id],
                    signature=tenant.signature,
                    footer=footer,
                    category=cast(templating.Category, campaign.category),
                )
        except Invalid as error:
            problem = error.detail
        messages.append(
            MessagePreviewRead(
                customer_id=person.id,
                name=person.name,
                sms=None if sms is None else RenderedRead.model_validate(sms),
                mms=None if mms is None else RenderedRead.model_validate(mms),
                problem=problem,
            )
        )
    findings = lint_campaign(
        session=session, tenant=tenant, campaign=campaign, samples=list(facts.values())
    )
    table = plum_table(session=session, tenant_id=tenant.id)
    known = customer_facts(session=session, tenant_id=tenant.id, customers=people)
    fired = last_fired(
        session=session, campaign_id=campaign.id, customer_ids=[p.id for p in people]
    )
    schedules = []
    for person in people:
        zone = zone_info(person.timezone) or ZoneInfo("UTC")
        found = rules.occurrences(
            rule,
            customer=known[person.id],
            after=now,
            tz=zone,
            count=3,
            plum_table=table,
            last_fired=fired.get(person.id),
        )
        schedules.append(
            ScheduleRead(
                customer_id=person.id,
                name=person.name,
                timezone=person.timezone,
                occurrences=[OccurrenceRead.model_validate(o) for o in found],
            )
        )
    return CampaignPreviewRead(
        audience=AudienceCounts.model_validate(counts),
        lint=[LintFindingRead.model_validate(f) for f in findings],
        can_activate=not any(f.severity == "error" for f in findings)
        and campaign.status != ARCHIVED,
        messages=messages,
        schedules=schedules,
    )
