"""The hand-off: due occurrences become outbox messages (``messaging.service.schedule``).

Pending occurrences that are due are cancelled with a reason when the customer opted out
or booked the service since the occurrence's basis; the rest are rendered for their
customer (with the customer's own booking link) and scheduled in the outbox, where the
compliance gate decides at send time (consent, frequency cap, quiet hours). A cadence
rolls forward from there: the next materialize passes the handed-off occurrence as
``last_fired``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from alerts import events as alert_events
from bookings.models import CANCELLED as BOOKING_CANCELLED
from bookings.models import DECLINED, Booking
from campaigns import templating
from campaigns.facts import SOURCE_TYPE, aware, booking_links, message_facts
from campaigns.lifecycle import mms_template, picture_url
from campaigns.models import (
    ACTIVE,
    BOOKED_EARLY,
    CANCELLED,
    HANDED_OFF,
    OPTED_OUT,
    PENDING,
    RENDER_FAILED,
    Campaign,
    CampaignOccurrence,
)
from compliance.models import Suppression
from customers.models import Customer
from huifang.errors import Invalid
from huifang.settings import get_settings
from messaging import service as outbox
from messaging import sms_templates
from tenancy.models import Tenant
from visits.models import Visit

HAND_OFF_BATCH = 500


# --- hand-off -----------------------------------------------------------------------------


# A campaign whose hand-off failed waits this long before its occurrences are tried again,
# so they never fill every batch ahead of other companies' occurrences.
HAND_OFF_RETRY = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class HandOff:
    claimed: int  # due occurrences taken in this batch
    message_ids: list[int]  # messages scheduled for them (the rest were cancelled)
    # Campaigns whose hand-off failed, with the error: their occurrences wait HAND_OFF_RETRY.
    failed: dict[int, str] = field(default_factory=dict)


def hand_off_due(
    *, session: Session, now: dt.datetime, limit: int = HAND_OFF_BATCH, mms: bool = False
) -> HandOff:
    """Hand up to ``limit`` due occurrences of active campaigns to the outbox.

    ``mms``: the provider carries MMS, so a campaign with an MMS variant and a picture
    sends that; otherwise the SMS text goes. PostgreSQL takes the rows ``FOR UPDATE SKIP
    LOCKED``, so two ticks never hand off the same occurrence.
    """
    now = aware(now, "now")
    due = (
        select(CampaignOccurrence.id, CampaignOccurrence.campaign_id)
        .join(Campaign, Campaign.id == CampaignOccurrence.campaign_id)
        .where(
            CampaignOccurrence.status == PENDING,
            CampaignOccurrence.due_at <= now,
            Campaign.status == ACTIVE,
        )
        .order_by(CampaignOccurrence.due_at, CampaignOccurrence.id)
        .limit(limit)
    )
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        due = due.with_for_update(of=CampaignOccurrence, skip_locked=True)
    by_campaign: dict[int, list[int]] = {}
    claimed = 0
    for occurrence_id, campaign_id in session.execute(due):
        by_campaign.setdefault(campaign_id, []).append(occurrence_id)
        claimed += 1
    made: list[int] = []
    failed: dict[int, str] = {}
    for campaign_id, ids in by_campaign.items():
        try:
            with session.begin_nested():
                made += _hand_off_campaign(session, campaign_id, ids, now, mms, postgres)
        except Exception as error:  # one campaign's fault must not stall every company's
            failed[campaign_id] = f"{type(error).__name__}: {error}"[:300]
            session.execute(
                update(CampaignOccurrence)
                .where(CampaignOccurrence.id.in_(ids), CampaignOccurrence.status == PENDING)
                .values(
                    due_at=now + HAND_OFF_RETRY,
                    updated_at=now,
                    detail=f"The hand-off failed ({type(error).__name__}); it is tried "
                    "again in ten minutes.",
                )
            )
    return HandOff(claimed=claimed, message_ids=made, failed=failed)


def _hand_off_campaign(
    session: Session,
    campaign_id: int,
    ids: Sequence[int],
    now: dt.datetime,
    mms: bool,
    postgres: bool,
) -> list[int]:
    # A shared lock: a pause waits for this hand-off, or this one sees the pause.
    locked = select(Campaign).where(Campaign.id == campaign_id)
    if postgres:
        locked = locked.with_for_update(read=True)
    campaign = session.execute(locked.execution_options(populate_existing=True)).scalar_one()
    if campaign.status != ACTIVE:
        return []
    tenant = session.get(Tenant, campaign.tenant_id)
    assert tenant is not None
    _cancel_opted_out(session, tenant, ids, now)
    _cancel_booked_early(session, campaign, ids, now)
    made = _schedule(session, tenant, campaign, ids, now, mms)
    _tell_finished(session, campaign, ids)
    return made


def _tell_finished(session: Session, campaign: Campaign, ids: Sequence[int]) -> None:
    """A send day of the campaign whose occurrences are all handed off or held back now:
    the office's "campaign finished" alert, once per campaign and day (two queries)."""
    days = set(
        session.scalars(
            select(CampaignOccurrence.local_date).where(CampaignOccurrence.id.in_(ids)).distinct()
        )
    )
    if not days:
        return
    counts: dict[dt.date, dict[tuple[str, str | None], int]] = {}
    for day, status, reason, count in session.execute(
        select(
            CampaignOccurrence.local_date,
            CampaignOccurrence.status,
            CampaignOccurrence.reason,
            func.count(),
        )
        .where(
            CampaignOccurrence.campaign_id == campaign.id,
            CampaignOccurrence.local_date.in_(days),
        )
        .group_by(
            CampaignOccurrence.local_date, CampaignOccurrence.status, CampaignOccurrence.reason
        )
    ):
        counts.setdefault(day, {})[(status, reason)] = count
    for day in sorted(days):
        tally = counts.get(day, {})
        if any(status == PENDING for status, _ in tally):
            continue  # customers in other time zones are still due later that day
        alert_events.campaign_finished(
            session=session,
            tenant_id=campaign.tenant_id,
            campaign_id=campaign.id,
            name=campaign.name,
            local_date=day.isoformat(),
            sent=sum(n for (status, _), n in tally.items() if status == HANDED_OFF),
            held={
                reason or status: n for (status, reason), n in tally.items() if status != HANDED_OFF
            },
        )


def _cancel_opted_out(
    session: Session, tenant: Tenant, ids: Sequence[int], now: dt.datetime
) -> None:
    suppressed = exists(
        select(Suppression.id)
        .join(
            Customer,
            and_(Customer.tenant_id == Suppression.tenant_id, Customer.phone == Suppression.phone),
        )
        .where(
            Customer.id == CampaignOccurrence.customer_id,
            Suppression.tenant_id == tenant.id,
            Suppression.signature == tenant.signature,
            Suppression.lifted_at.is_(None),
        )
    )
    session.execute(
        update(CampaignOccurrence)
        .where(CampaignOccurrence.id.in_(ids), CampaignOccurrence.status == PENDING, suppressed)
        .values(
            status=CANCELLED,
            reason=OPTED_OUT,
            updated_at=now,
            detail="The customer opted out before it was due.",
        )
    )


def campaign_source(campaign_id: int, source_id: Any) -> ColumnElement[bool]:
    """A booking or link of this campaign: its link ("12") or a reply to its message ("12:…")."""
    return or_(source_id == str(campaign_id), source_id.like(f"{campaign_id}:%"))


def _cancel_booked_early(
    session: Session, campaign: Campaign, ids: Sequence[int], now: dt.datetime
) -> None:
    """Cancel when the customer booked or had the service since the occurrence's basis."""
    occ = CampaignOccurrence
    visit = select(Visit.id).where(
        Visit.tenant_id == campaign.tenant_id,
        Visit.customer_id == occ.customer_id,
        Visit.finished_at > occ.basis_at,
    )
    booked = select(Booking.id).where(
        Booking.tenant_id == campaign.tenant_id,
        Booking.customer_id == occ.customer_id,
        Booking.created_at > occ.basis_at,
        Booking.status.not_in((DECLINED, BOOKING_CANCELLED)),
    )
    if campaign.service_type is not None:
        visit = visit.where(Visit.service_type == campaign.service_type)
        booked = booked.where(
            or_(
                Booking.service_type == campaign.service_type,
                and_(
                    Booking.source_type == SOURCE_TYPE,
                    campaign_source(campaign.id, Booking.source_id),
                ),
            )
        )
    session.execute(
        update(occ)
        .where(
            occ.id.in_(ids),
            occ.status == PENDING,
            occ.basis_at.is_not(None),
            or_(exists(visit), exists(booked)),
        )
        .values(
            status=CANCELLED,
            reason=BOOKED_EARLY,
            updated_at=now,
            detail="The customer booked or had this service since the reminder was planned.",
        )
    )


def template_values(facts: templating.MessageFacts) -> dict[str, str]:
    """A customer's merge fields as an approved template's values: text, dates as customers
    read them, and for links the path after the fixed address the template carries."""
    base = get_settings().public_url
    values: dict[str, str] = {}
    for name, value in facts.variables().items():
        if value is None:
            continue
        text = templating.format_date(value) if isinstance(value, dt.date) else str(value)
        prefix = sms_templates.CAMPAIGN_LINKS.get(name)
        values[name] = sms_templates.link_value(text, base, prefix) if prefix else text
    return values


def _schedule(
    session: Session,
    tenant: Tenant,
    campaign: Campaign,
    ids: Sequence[int],
    now: dt.datetime,
    mms: bool,
) -> list[int]:
    rows = session.execute(
        select(CampaignOccurrence, Customer)
        .join(Customer, Customer.id == CampaignOccurrence.customer_id)
        .where(CampaignOccurrence.id.in_(ids), CampaignOccurrence.status == PENDING)
        .order_by(CampaignOccurrence.id)
        .execution_options(populate_existing=True)
    ).all()
    if not rows:
        return []
    people = [person for _, person in rows]
    links = booking_links(session, tenant, campaign, people, now)
    facts = message_facts(session, tenant, campaign, people, now=now, links=links)
    picture = None
    if mms and campaign.mms:
        if campaign.mms.get("image_media_id") is not None:
            try:
                picture = picture_url(session, tenant.id, campaign.mms["image_media_id"])
            except Invalid:
                picture = None  # the photo went away: the SMS text still goes
        else:
            picture = campaign.mms.get("image_url")
    made = []
    for occurrence, person in rows:
        try:
            if picture is not None and campaign.mms:
                channel, media = "mms", [picture]
                body = templating.render(mms_template(campaign.mms), facts[person.id].variables())
            else:
                channel, media = "sms", []
                body = templating.render(campaign.template, facts[person.id].variables())
        except Invalid as error:
            occurrence.status, occurrence.reason = CANCELLED, RENDER_FAILED
            occurrence.detail, occurrence.updated_at = error.detail, now
            continue
        message, _ = outbox.schedule(
            session=session,
            tenant=tenant,
            customer=person,
            channel=channel,
            category=campaign.category,
            source_type=SOURCE_TYPE,
            source_id=f"{campaign.id}:{occurrence.id}",
            body=body,
            due_at=occurrence.due_at,
            media_urls=media,
            purpose=(
                sms_templates.CAMPAIGN_MARKETING
                if campaign.category == "marketing"
                else sms_templates.CAMPAIGN_SERVICE
            ),
            variables=template_values(facts[person.id]),
        )
        link = links[person.id]
        if link.message_id is None:
            link.message_id = message.id
        occurrence.status, occurrence.message_id, occurrence.updated_at = (
            HANDED_OFF,
            message.id,
            now,
        )
        made.append(message.id)
    session.flush()
    return made
