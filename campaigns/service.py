"""Campaigns: create, edit, lint, activate, pause; fan out occurrences; hand them to the outbox.

A campaign becomes messages in two periodic steps, both idempotent:

1. ``materialize``: for every active campaign, each audience customer without a pending
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

2. ``hand_off_due``: pending occurrences that are due are cancelled with a reason when the
   customer opted out or booked the service since the occurrence's basis; the rest are
   rendered for their customer (with the customer's own booking link) and scheduled in
   the outbox (``messaging.service.schedule``), where the compliance gate decides at send
   time (consent, frequency cap, quiet hours). A cadence rolls forward from there: the
   next materialize passes the handed-off occurrence as ``last_fired``.

Edits bump the version and recompute only pending occurrences not yet due; pausing stops
hand-off at once and suppresses the campaign's messages not yet sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    column,
    delete,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    union_all,
    update,
    values,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import QueryableAttribute, Session, aliased
from sqlalchemy.types import TypeEngine

from accounts import audit
from accounts.actors import Actor
from campaigns import calendar, lint, rules, templating
from campaigns.audiences import Audience, AudiencePreview
from campaigns.audiences import preview as audience_preview
from campaigns.audiences import reachable as reachable_conditions
from campaigns.models import (
    ACTIVE,
    ARCHIVED,
    BOOKED_EARLY,
    CAMPAIGN_ARCHIVED,
    CAMPAIGN_PAUSED,
    CAMPAIGN_STATES,
    CANCELLED,
    DRAFT,
    HANDED_OFF,
    MESSAGE_PAUSED,
    OCCURRENCE_STATES,
    OPTED_OUT,
    PAUSED,
    PENDING,
    RENDER_FAILED,
    SKIPPED,
    TOO_LATE,
    Campaign,
    CampaignOccurrence,
    PlumRainOnset,
)
from campaigns.presets import get_preset
from compliance import service as compliance
from compliance.models import Suppression
from customers import service as customers
from customers.models import Customer
from huifang import dates
from huifang.db import UTCDateTime, utcnow
from huifang.errors import Conflict, Invalid, NotFound
from huifang.pagination import PageParams, paginate
from huifang.settings import get_settings
from media import report as reports
from media.models import Media, Rendition, Report
from messaging import booking
from messaging import service as outbox
from messaging.models import CANCELLED as BOOKING_CANCELLED
from messaging.models import (
    DECLINED,
    DEFERRED,
    DELIVERED,
    FAILED,
    QUEUED,
    SCHEDULED,
    SENDING,
    SENT,
    SUPPRESSED,
    UNDELIVERED,
    UNKNOWN,
    Booking,
    Message,
    ShortLink,
)
from tenancy.models import Tenant
from visits.models import Staff, Visit
from visits.service_types import normalize_service_type

SOURCE_TYPE = "campaign"  # Message, ShortLink and Booking source_type
HORIZON = dt.timedelta(days=31)  # occurrences are materialized this far ahead
YEARLY_GRACE = dt.timedelta(days=7)  # the furthest back a yearly rule looks after an outage
CHUNK_CUSTOMERS = 50_000  # customer ids per INSERT … SELECT
HAND_OFF_BATCH = 500
PREVIEW_CUSTOMERS = 3
MAX_NAME = 100
MAX_SUBJECT = 40
_FOREVER = dt.date(1900, 1, 1)


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise Invalid(f"{what} must be a timezone-aware datetime (UTC).")
    return value.astimezone(dt.UTC)


# --- campaigns ------------------------------------------------------------------------------


def _check_template(body: object, what: str) -> str:
    if not isinstance(body, str):
        raise Invalid(f"The {what} must be text.")
    templating.check(body)  # refuses anything but text, variables, if and a few filters
    return body


def _check_mms(session: Session, tenant: Tenant, data: object) -> dict[str, Any] | None:
    """The MMS variant, checked: {subject?, body, image_media_id? | image_url?}."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise Invalid("The MMS variant must be an object: {\"subject\": …, \"body\": …, "
                      "\"image_media_id\": …} (or \"image_url\").")
    unknown = sorted(set(data) - {"subject", "body", "image_media_id", "image_url"})
    if unknown:
        raise Invalid(f"The MMS variant has no field {', '.join(map(repr, unknown))}; its "
                      f"fields are subject, body, image_media_id and image_url.")
    subject = data.get("subject") or ""
    if not isinstance(subject, str) or len(subject) > MAX_SUBJECT:
        raise Invalid(f"The MMS subject must be text of at most {MAX_SUBJECT} characters.")
    if subject:
        _check_template(subject, "MMS subject")
    body = _check_template(data.get("body"), "MMS body")
    media_id, image_url = data.get("image_media_id"), data.get("image_url")
    if media_id is not None and image_url is not None:
        raise Invalid("Give the MMS picture as image_media_id or as image_url, not both.")
    if media_id is not None:
        if isinstance(media_id, bool) or not isinstance(media_id, int):
            raise Invalid("image_media_id must be the id of a photo uploaded to a visit.")
        _picture_url(session, tenant.id, media_id)
    if image_url is not None:
        parts = urlsplit(image_url) if isinstance(image_url, str) else None
        if parts is None or parts.scheme != "https" or not parts.hostname:
            raise Invalid("image_url must be an https:// address of a JPEG or PNG picture; "
                          "providers fetch it when sending.")
    return {"subject": subject.strip() or None, "body": body, "image_media_id": media_id,
            "image_url": image_url}


PICTURE_KINDS = ("mms", "display")  # a photo's MMS picture, its display copy when it has none


def _picture_url(session: Session, tenant_id: int, media_id: int) -> str:
    """The public address of a photo's MMS picture (its display copy when it has none)."""
    media = session.get(Media, media_id)
    if media is None or media.tenant_id != tenant_id:
        raise Invalid(f"There is no media {media_id} in this company to attach to the MMS.")
    found = session.execute(
        select(Rendition.kind, Rendition.token).where(
            Rendition.media_id == media_id, Rendition.kind.in_(PICTURE_KINDS))).all()
    tokens = dict(cast(Iterable[tuple[str, str]], found))
    token = tokens.get("mms") or tokens.get("display")
    if token is None:
        raise Invalid(f"Media {media_id} has no picture ready for MMS yet (it may still be "
                      f"processing, or it is not a photo); try again in a minute.")
    return f"{get_settings().public_url}/m/{token}.jpg"


def picture_in_use(*, session: Session, rendition: Rendition) -> bool:
    """Whether a campaign that may still send (not archived) has this rendition as its MMS
    picture: its messages carry the picture's public link, which providers fetch at send."""
    if rendition.kind not in PICTURE_KINDS:
        return False
    variants = session.scalars(select(Campaign.mms).where(
        Campaign.tenant_id == rendition.tenant_id, Campaign.status != ARCHIVED))
    if not any(isinstance(v, dict) and v.get("image_media_id") == rendition.media_id
               for v in variants):
        return False
    try:
        return _picture_url(session, rendition.tenant_id, rendition.media_id).endswith(
            f"/m/{rendition.token}.jpg")
    except Invalid:
        return False


def _service_type(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 64:
        raise Invalid("service_type must be a service code such as ac_cleaning (空调清洗).")
    return normalize_service_type(value)


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid("Give the campaign a name, e.g. 空调滤网季度清洗.")
    if len(value.strip()) > MAX_NAME:
        raise Invalid(f"The campaign name is longer than {MAX_NAME} characters.")
    return value.strip()


def create_campaign(*, session: Session, tenant: Tenant, name: str | None = None,
                    preset: str | None = None, rule: Mapping[str, object] | None = None,
                    audience: Mapping[str, object] | None = None, template: str | None = None,
                    mms: Mapping[str, object] | None = None,
                    service_type: str | None = None) -> Campaign:
    """A draft campaign, from scratch or from a preset (whose parts the others override)."""
    chosen = get_preset(preset) if preset is not None else None
    if chosen is None and rule is None:
        raise Invalid("A campaign needs a rule (e.g. {\"kind\": \"cadence\", \"service_type\": "
                      "\"ac_cleaning\", \"every_days\": 90}) or a preset to start from; the "
                      "presets are listed at GET /v1/campaign-presets.")
    if chosen is None and template is None:
        raise Invalid("A campaign needs the text of its message (template), or a preset.")
    if rule is not None:
        parsed = rules.rule_from_dict(rule)
    else:
        assert chosen is not None  # refused above otherwise
        parsed = chosen.rule
    spec = Audience.from_dict(audience)
    if template is None:
        assert chosen is not None
        template = chosen.sms_body
    body = _check_template(template, "template")
    if mms is not None:
        variant = _check_mms(session, tenant, mms)
    elif chosen is not None:
        variant = _check_mms(session, tenant, {"subject": chosen.mms.subject,
                                               "body": chosen.mms.body})
    else:
        variant = None
    kind_service = parsed.service_type if isinstance(parsed, rules.Cadence) else None
    preset_service = chosen.service_types[0] if chosen and chosen.service_types else None
    campaign = Campaign(
        tenant_id=tenant.id, name=_name(name if name is not None else (
            chosen.title if chosen else rules.describe(parsed)[:MAX_NAME])),
        preset=chosen.name if chosen else None, rule=rules.to_dict(parsed),
        audience=spec.to_dict(),
        service_type=_service_type(service_type) or kind_service or preset_service,
        template=body, mms=variant,
        category=chosen.category if chosen else "marketing", status=DRAFT, version=1)
    session.add(campaign)
    session.flush()
    return campaign


def get_campaign(*, session: Session, tenant_id: int, campaign_id: int) -> Campaign:
    """The campaign, or NotFound when it does not exist in this tenant."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.tenant_id != tenant_id:
        raise NotFound(f"There is no campaign {campaign_id} in this company.")
    return campaign


def _locked(session: Session, tenant_id: int, campaign_id: int) -> Campaign:
    """The campaign, its row locked: state changes and hand-offs take turns on it."""
    get_campaign(session=session, tenant_id=tenant_id, campaign_id=campaign_id)
    return session.execute(select(Campaign).where(Campaign.id == campaign_id)
                           .with_for_update().execution_options(populate_existing=True)
                           ).scalar_one()


def list_campaigns(*, session: Session, tenant_id: int, page: PageParams,
                   status: str | None = None) -> tuple[list[Campaign], int]:
    stmt = select(Campaign).where(Campaign.tenant_id == tenant_id)
    if status is not None:
        if status not in CAMPAIGN_STATES:
            raise Invalid(f"status must be one of {', '.join(CAMPAIGN_STATES)}.")
        stmt = stmt.where(Campaign.status == status)
    return paginate(session, stmt.order_by(Campaign.id.desc()), page)


def update_campaign(*, session: Session, tenant: Tenant, campaign_id: int,
                    changes: Mapping[str, object], now: dt.datetime) -> Campaign:
    """Edit a campaign. Changing what it sends or to whom makes a new version: pending
    occurrences not yet due are recomputed; those due or handed off stay as they are.

    Everything is checked (and an active campaign's texts linted) before anything changes.
    """
    now = _aware(now, "now")
    campaign = _locked(session, tenant.id, campaign_id)
    if campaign.status == ARCHIVED:
        raise Conflict("This campaign is archived and cannot change; create a new one (from "
                       "the same preset if you like).")
    for required in ("rule", "template"):
        if required in changes and changes[required] is None:
            raise Invalid(f"A campaign always has a {required}; send the new one instead.")
    wanted: dict[str, Any] = {}
    if changes.get("name") is not None:
        wanted["name"] = _name(changes["name"])
    if changes.get("rule") is not None:
        parsed = rules.rule_from_dict(cast(Mapping[str, object], changes["rule"]))
        wanted["rule"] = rules.to_dict(parsed)
        if isinstance(parsed, rules.Cadence) and "service_type" not in changes:
            wanted["service_type"] = parsed.service_type
    if "audience" in changes:
        wanted["audience"] = Audience.from_dict(
            cast(Mapping[str, object] | None, changes["audience"])).to_dict()
    if changes.get("template") is not None:
        wanted["template"] = _check_template(changes["template"], "template")
    if "mms" in changes:
        wanted["mms"] = _check_mms(session, tenant, changes["mms"])
    if "service_type" in changes:
        wanted["service_type"] = _service_type(changes["service_type"])
    changed = {k: v for k, v in wanted.items() if getattr(campaign, k) != v}
    material = bool(set(changed) - {"name"})
    if material and campaign.status in (ACTIVE, PAUSED):
        current = {c: getattr(campaign, c) for c in (
            "id", "tenant_id", "name", "rule", "audience", "service_type", "template", "mms",
            "category")}
        draft = Campaign(**{**current, **changed})  # never added to the session
        _require_clean_lint(session, tenant, draft, now)
    for attr, value in changed.items():
        setattr(campaign, attr, value)
    if material:
        campaign.version += 1
        # Only what is not yet due: due and handed-off occurrences belong to the past.
        session.execute(delete(CampaignOccurrence).where(
            CampaignOccurrence.campaign_id == campaign.id,
            CampaignOccurrence.status == PENDING, CampaignOccurrence.due_at > now))
    campaign.updated_at = now
    session.flush()
    return campaign


# --- lint and activation ------------------------------------------------------------------


@dataclass(frozen=True)
class LintFinding:
    part: str  # "sms" (the template) or "mms" (the MMS variant)
    code: str
    severity: str
    message: str
    hint: str


class LintFailed(Invalid):
    """Activation refused: the texts have errors providers or the gate would refuse."""

    def __init__(self, findings: Sequence[LintFinding]) -> None:
        errors = [f for f in findings if f.severity == "error"]
        super().__init__(
            f"The campaign cannot be activated: its texts have {len(errors)} "
            f"problem{'s' if len(errors) != 1 else ''} that providers or the compliance gate "
            f"would refuse. First: {errors[0].message} {errors[0].hint}")
        self.findings = list(findings)


def _tenant_domains() -> list[str]:
    host = urlsplit(get_settings().public_url).hostname
    return [host] if host else []


def _placeholder_link() -> str:
    # As long as the real ones (16-character tokens), without making a link per sample.
    return f"{get_settings().public_url}/b/{'x' * 16}"


def lint_campaign(*, session: Session, tenant: Tenant, campaign: Campaign,
                  samples: Sequence[templating.MessageFacts] = ()) -> list[LintFinding]:
    """What providers or our gate would refuse in the campaign's texts, as sent."""
    footer = compliance.policy_for(session=session, tenant_id=tenant.id).opt_out_footer
    variables = [s.variables() for s in samples]
    found: list[LintFinding] = []
    parts = [("sms", campaign.template)]
    if campaign.mms:
        parts.append(("mms", _mms_template(campaign.mms)))
    for part, body in parts:
        for f in lint.lint(body, signature=tenant.signature, category=campaign.category,
                           tenant_domains=_tenant_domains(), footer=footer,
                           rendered_samples=variables, channel=part):
            found.append(LintFinding(part, f.code, f.severity, f.message, f.hint))
    return found


def _mms_template(variant: Mapping[str, Any]) -> str:
    subject = variant.get("subject")
    return f"{subject}\n{variant['body']}" if subject else str(variant["body"])


def _require_clean_lint(session: Session, tenant: Tenant, campaign: Campaign,
                        now: dt.datetime) -> None:
    people = _sample_customers(session, tenant, campaign, now, PREVIEW_CUSTOMERS)
    facts = _message_facts(session, tenant, campaign, people, now=now, links=None)
    findings = lint_campaign(session=session, tenant=tenant, campaign=campaign,
                             samples=[facts[c.id] for c in people])
    if any(f.severity == "error" for f in findings):
        raise LintFailed(findings)


def _audit(session: Session, actor: Actor | None, action: str, campaign: Campaign) -> None:
    audit.record(session, actor, action, f"campaign:{campaign.id}", {"name": campaign.name},
                 tenant_id=campaign.tenant_id)


def activate(*, session: Session, tenant: Tenant, campaign_id: int, now: dt.datetime,
             actor: Actor | None = None, _action: str = "campaign.activated") -> Campaign:
    """Start the campaign: its texts must lint clean; occurrences follow at the next tick.
    Who did it (``actor``, None: the system) goes into the audit log."""
    now = _aware(now, "now")
    campaign = _locked(session, tenant.id, campaign_id)
    if campaign.status == ARCHIVED:
        raise Conflict("This campaign is archived and cannot be activated again; create a "
                       "new one (from the same preset if you like).")
    if campaign.status == ACTIVE:
        return campaign
    rules.rule_from_dict(campaign.rule)
    _require_clean_lint(session, tenant, campaign, now)
    if campaign.status == PAUSED:
        _forget_unsent(session, campaign)
    campaign.status, campaign.paused_at = ACTIVE, None
    campaign.activated_at = campaign.activated_at or now
    campaign.updated_at = now
    session.flush()
    _audit(session, actor, _action, campaign)
    return campaign


def pause(*, session: Session, tenant: Tenant, campaign_id: int, now: dt.datetime,
          actor: Actor | None = None) -> Campaign:
    """Stop sending at once: nothing more is handed off, and the campaign's messages not
    yet sent are suppressed (``campaign_paused``). Resume picks up from there."""
    now = _aware(now, "now")
    campaign = _locked(session, tenant.id, campaign_id)
    if campaign.status == PAUSED:
        return campaign
    if campaign.status != ACTIVE:
        raise Conflict(f"Only an active campaign can be paused; this one is {campaign.status}.")
    campaign.status, campaign.paused_at, campaign.updated_at = PAUSED, now, now
    session.flush()
    _stop_messages(session, campaign, now, CAMPAIGN_PAUSED,
                   "The campaign was paused before this message was sent.")
    _audit(session, actor, "campaign.paused", campaign)
    return campaign


def resume(*, session: Session, tenant: Tenant, campaign_id: int, now: dt.datetime,
           actor: Actor | None = None) -> Campaign:
    """Start a paused campaign again. What was waiting is recomputed (a cadence reminder
    now too late moves on to its next date), and the texts must still lint clean."""
    campaign = get_campaign(session=session, tenant_id=tenant.id, campaign_id=campaign_id)
    if campaign.status == DRAFT:
        raise Conflict("This campaign has not been activated yet; activate it instead.")
    if campaign.status not in (PAUSED, ACTIVE):
        raise Conflict(f"Only a paused campaign can be resumed; this one is {campaign.status}.")
    return activate(session=session, tenant=tenant, campaign_id=campaign_id, now=now,
                    actor=actor, _action="campaign.resumed")


def archive(*, session: Session, tenant: Tenant, campaign_id: int, now: dt.datetime,
            actor: Actor | None = None) -> Campaign:
    """End the campaign for good: unsent messages are suppressed, waiting ones cancelled."""
    now = _aware(now, "now")
    campaign = _locked(session, tenant.id, campaign_id)
    if campaign.status == ARCHIVED:
        return campaign
    campaign.status, campaign.updated_at = ARCHIVED, now
    session.flush()
    _stop_messages(session, campaign, now, CAMPAIGN_ARCHIVED,
                   "The campaign was archived before this message was sent.")
    session.execute(update(CampaignOccurrence).where(
        CampaignOccurrence.campaign_id == campaign.id, CampaignOccurrence.status == PENDING)
        .values(status=CANCELLED, reason=CAMPAIGN_ARCHIVED, updated_at=now))
    _audit(session, actor, "campaign.archived", campaign)
    return campaign


def _stop_messages(session: Session, campaign: Campaign, now: dt.datetime, reason: str,
                   detail: str) -> None:
    """Suppress the campaign's messages still waiting in the outbox (not those in flight).

    The rows are locked first (PostgreSQL), so a send task claiming one at the same time
    either got it before (it is ``sending`` and is left alone) or finds it suppressed.
    """
    stmt = (select(Message).join(CampaignOccurrence, CampaignOccurrence.message_id == Message.id)
            .where(CampaignOccurrence.campaign_id == campaign.id,
                   Message.status.in_((SCHEDULED, DEFERRED, QUEUED)))
            .execution_options(populate_existing=True))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=Message)
    stopped = []
    for message in session.scalars(stmt).all():
        if outbox.transition(session=session, message=message, status=SUPPRESSED, now=now,
                             reason=MESSAGE_PAUSED, detail=detail):
            stopped.append(message.id)
    if stopped:
        session.execute(update(CampaignOccurrence).where(
            CampaignOccurrence.message_id.in_(stopped))
            .values(status=CANCELLED, reason=reason, detail=detail, updated_at=now))


def _forget_unsent(session: Session, campaign: Campaign) -> None:
    """On resume: drop what a pause left waiting or stopped, for the materializer to redo.

    Pending occurrences may be long overdue (the catch-up window decides again), and those
    whose message the pause suppressed never reached the customer; their suppressed
    messages stay in the outbox as the record.
    """
    session.execute(delete(CampaignOccurrence).where(
        CampaignOccurrence.campaign_id == campaign.id,
        or_(CampaignOccurrence.status == PENDING,
            and_(CampaignOccurrence.status == CANCELLED,
                 CampaignOccurrence.reason == CAMPAIGN_PAUSED))))


# --- facts about customers ------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _served() -> tuple[ColumnElement[bool], ...]:
    """Finished visits whose date a person could have meant: a stored typo such as
    9999-12-31 (entered before dates were checked) names no date and overflows none."""
    return (Visit.finished_at.is_not(None), Visit.finished_at >= dates.EARLIEST,
            Visit.finished_at <= dates.latest(utcnow()))


def customer_facts(*, session: Session, tenant_id: int, customers: Sequence[Customer]
                   ) -> dict[int, rules.CustomerFacts]:
    """What the rules need about each customer: last service of each type and first
    service (local dates in the customer's zone), and region. For a few customers."""
    by_id = {c.id: c for c in customers}
    last: dict[int, dict[str, dt.date]] = {c.id: {} for c in customers}
    first: dict[int, dt.date] = {}
    for customer_id, code, finished in session.execute(
            select(Visit.customer_id, Visit.service_type, Visit.finished_at).where(
                Visit.tenant_id == tenant_id, Visit.customer_id.in_(list(by_id)),
                *_served())):
        zone = _zone(by_id[customer_id].timezone) or ZoneInfo("UTC")
        day = cast(dt.datetime, finished).astimezone(zone).date()
        if day > last[customer_id].get(code, _FOREVER):
            last[customer_id][code] = day
        if customer_id not in first or day < first[customer_id]:
            first[customer_id] = day
    return {c.id: rules.CustomerFacts(last_services=last[c.id], first_service=first.get(c.id),
                                      region=c.region) for c in customers}


def last_fired(*, session: Session, campaign_id: int, customer_ids: Sequence[int]
               ) -> dict[int, dt.datetime]:
    """When the campaign last handed each customer a message (its occurrence's due time)."""
    return {cid: at for cid, at in session.execute(
        select(CampaignOccurrence.customer_id, func.max(CampaignOccurrence.due_at))
        .where(CampaignOccurrence.campaign_id == campaign_id,
               CampaignOccurrence.customer_id.in_(list(customer_ids)),
               CampaignOccurrence.status == HANDED_OFF)
        .group_by(CampaignOccurrence.customer_id))}


@dataclass(frozen=True)
class _LastVisit:
    service_type: str
    finished_at: dt.datetime
    staff_name: str | None
    report: Report | None


def _last_visits(session: Session, tenant_id: int, customer_ids: Sequence[int],
                 service_type: str | None) -> dict[int, _LastVisit]:
    """Each customer's last visit (of the campaign's service when they had one), in one query."""
    if not customer_ids:
        return {}
    preferred = (case((Visit.service_type == service_type, 0), else_=1) if service_type
                 else literal(0))
    ranked = select(
        Visit.id.label("visit_id"), Visit.customer_id, Visit.service_type, Visit.finished_at,
        Visit.staff_id,
        func.row_number().over(partition_by=Visit.customer_id, order_by=(
            preferred, Visit.finished_at.desc(), Visit.id.desc())).label("rank"),
    ).where(Visit.tenant_id == tenant_id, Visit.customer_id.in_(list(customer_ids)),
            *_served()).subquery("ranked")
    found: dict[int, _LastVisit] = {}
    for row in session.execute(
            select(ranked.c.customer_id, ranked.c.service_type, ranked.c.finished_at,
                   Staff.name, Report)
            .outerjoin(Staff, Staff.id == ranked.c.staff_id)
            .outerjoin(Report, Report.visit_id == ranked.c.visit_id)
            .where(ranked.c.rank == 1)):
        customer_id, code, finished, staff_name, report = row
        found[customer_id] = _LastVisit(code, finished, staff_name, report)
    return found


def _links(session: Session, tenant: Tenant, campaign: Campaign,
           people: Sequence[Customer], now: dt.datetime) -> dict[int, ShortLink]:
    """Each customer's booking link for the campaign, made once (one query for those made)."""
    found = {link.customer_id: link for link in session.scalars(select(ShortLink).where(
        ShortLink.tenant_id == tenant.id, ShortLink.source_type == SOURCE_TYPE,
        ShortLink.source_id == str(campaign.id),
        ShortLink.customer_id.in_([c.id for c in people])))}
    for person in people:
        if person.id not in found:
            found[person.id] = booking.link_for(
                session=session, tenant=tenant, customer=person, source_type=SOURCE_TYPE,
                source_id=str(campaign.id), service_type=campaign.service_type, now=now)
    return found


def _message_facts(session: Session, tenant: Tenant, campaign: Campaign,
                   people: Sequence[Customer], *, now: dt.datetime,
                   links: Mapping[int, ShortLink] | None) -> dict[int, templating.MessageFacts]:
    """What each customer's message may say; ``links`` None uses a stand-in booking link."""
    visits = _last_visits(session, tenant.id, [c.id for c in people], campaign.service_type)
    facts = {}
    for person in people:
        last = visits.get(person.id)
        zone = _zone(person.timezone) or ZoneInfo("UTC")
        report_link = None
        if last and last.report is not None and not reports.is_expired(last.report, now=now):
            report_link = reports.page_url(last.report)
        facts[person.id] = templating.MessageFacts(
            customer_name=person.name, company=tenant.name,
            last_service=last.service_type if last else None,
            last_service_date=last.finished_at.astimezone(zone).date() if last else None,
            staff_name=last.staff_name if last else None,
            booking_link=booking.url(links[person.id]) if links else _placeholder_link(),
            report_link=report_link)
    return facts


# --- rules × audience -----------------------------------------------------------------------


def _rule(campaign: Campaign) -> rules.Rule:
    return rules.rule_from_dict(campaign.rule)


def _applies(rule: rules.Rule, tenant_id: int) -> list[ColumnElement[bool]]:
    """What a customer needs for the rule to name a date: the service a cadence follows,
    any service for an anniversary."""
    visit = select(Visit.id).where(Visit.tenant_id == tenant_id,
                                   Visit.customer_id == Customer.id, *_served())
    if isinstance(rule, rules.Cadence):
        return [exists(visit.where(Visit.service_type == rule.service_type))]
    if isinstance(rule, rules.Anniversary):
        return [exists(visit)]
    return []


def plum_table(*, session: Session, tenant_id: int) -> dict[str, dict[int, dt.date]]:
    """The company's 入梅 dates by region and year."""
    table: dict[str, dict[int, dt.date]] = {}
    for row in session.scalars(select(PlumRainOnset).where(PlumRainOnset.tenant_id == tenant_id)
                               .order_by(PlumRainOnset.region, PlumRainOnset.year)):
        table.setdefault(row.region, {})[row.year] = row.onset
    return table


def set_plum_table(*, session: Session, tenant_id: int,
                   table: Mapping[str, Mapping[int, dt.date]]) -> dict[str, dict[int, dt.date]]:
    """Replace the company's 入梅 table (checked whole: regions once, dates in May–July)."""
    checked = calendar.check_plum_table(table)
    session.execute(delete(PlumRainOnset).where(PlumRainOnset.tenant_id == tenant_id))
    session.add_all(PlumRainOnset(tenant_id=tenant_id, region=region, year=year, onset=onset)
                    for region, rows in checked.items() for year, onset in rows.items())
    session.flush()
    return plum_table(session=session, tenant_id=tenant_id)


def _sample_customers(session: Session, tenant: Tenant, campaign: Campaign, now: dt.datetime,
                      count: int) -> list[Customer]:
    spec = Audience.from_dict(campaign.audience)
    ids = session.scalars(
        select(Customer.id).where(*reachable_conditions(spec, tenant=tenant, now=now),
                                  *_applies(_rule(campaign), tenant.id))
        .order_by(Customer.id).limit(count)).all()
    return list(session.scalars(select(Customer).where(Customer.id.in_(ids))
                                .order_by(Customer.id)))


# --- preview --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessagePreview:
    customer_id: int
    name: str
    sms: templating.Preview | None
    mms: templating.Preview | None
    problem: str | None  # why the template cannot be filled for this customer


@dataclass(frozen=True)
class CustomerSchedule:
    customer_id: int
    name: str
    timezone: str
    occurrences: list[rules.Occurrence]


@dataclass(frozen=True)
class CampaignPreview:
    audience: AudiencePreview
    lint: list[LintFinding]
    can_activate: bool
    messages: list[MessagePreview] = field(default_factory=list)
    schedules: list[CustomerSchedule] = field(default_factory=list)


def preview(*, session: Session, tenant: Tenant, campaign_id: int, now: dt.datetime,
            customer_ids: Sequence[int] = (), count: int = PREVIEW_CUSTOMERS
            ) -> CampaignPreview:
    """Who the campaign reaches, each sample customer's message as sent (with their real
    booking link), the lint findings, and the next dates of those customers."""
    now = _aware(now, "now")
    campaign = get_campaign(session=session, tenant_id=tenant.id, campaign_id=campaign_id)
    rule = _rule(campaign)
    spec = Audience.from_dict(campaign.audience)
    counts = audience_preview(session=session, tenant=tenant, spec=spec, now=now,
                              extra=_applies(rule, tenant.id))
    if customer_ids:
        people = [customers.get_customer(session=session, tenant_id=tenant.id, customer_id=i)
                  for i in dict.fromkeys(customer_ids)]
    else:
        chosen = [s.id for s in counts.sample if s.reachable][:count] or [
            s.id for s in counts.sample][:count]
        people = list(session.scalars(select(Customer).where(Customer.id.in_(chosen))
                                      .order_by(Customer.id)))
    links = _links(session, tenant, campaign, people, now)
    facts = _message_facts(session, tenant, campaign, people, now=now, links=links)
    footer = compliance.policy_for(session=session, tenant_id=tenant.id).opt_out_footer
    messages = []
    for person in people:
        sms = mms = None
        problem = None
        try:
            sms = templating.preview(campaign.template, facts=facts[person.id],
                                     signature=tenant.signature, footer=footer,
                                     category=cast(templating.Category, campaign.category))
            if campaign.mms:
                mms = templating.preview(_mms_template(campaign.mms), facts=facts[person.id],
                                         signature=tenant.signature, footer=footer,
                                         category=cast(templating.Category, campaign.category))
        except Invalid as error:
            problem = error.detail
        messages.append(MessagePreview(person.id, person.name, sms, mms, problem))
    findings = lint_campaign(session=session, tenant=tenant, campaign=campaign,
                             samples=list(facts.values()))
    table = plum_table(session=session, tenant_id=tenant.id)
    known = customer_facts(session=session, tenant_id=tenant.id, customers=people)
    fired = last_fired(session=session, campaign_id=campaign.id,
                       customer_ids=[p.id for p in people])
    schedules = []
    for person in people:
        zone = _zone(person.timezone) or ZoneInfo("UTC")
        schedules.append(CustomerSchedule(person.id, person.name, person.timezone,
                                          rules.occurrences(
                                              rule, customer=known[person.id], after=now,
                                              tz=zone, count=3, plum_table=table,
                                              last_fired=fired.get(person.id))))
    return CampaignPreview(audience=counts, lint=findings,
                           can_activate=not any(f.severity == "error" for f in findings)
                           and campaign.status != ARCHIVED,
                           messages=messages, schedules=schedules)


# --- materialize: set-based fan-out -----------------------------------------------------------


def _local_date_text(value: str | None, zone: str | None) -> str | None:
    """SQLite has no time zones: the local date of a stored UTC timestamp, for SQL."""
    if value is None or zone is None:
        return None
    found = _zone(zone)
    if found is None:
        return None
    moment = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return moment.astimezone(found).date().isoformat()


_Column = ColumnElement[Any] | QueryableAttribute[Any]


class _Sql:
    """Date arithmetic, which PostgreSQL and SQLite spell differently."""

    def __init__(self, session: Session) -> None:
        connection = session.connection()
        self.session = session
        self.dialect = connection.dialect
        self.postgres = connection.dialect.name == "postgresql"
        if not self.postgres:
            raw = cast(Any, connection.connection).dbapi_connection
            raw.create_function("huifang_local_date", 2, _local_date_text, deterministic=True)

    def local_date(self, moment: _Column, zone: _Column) -> ColumnElement[dt.date]:
        """The date of a UTC timestamp on the wall calendar of ``zone``."""
        if self.postgres:
            return func.timezone(zone, moment).cast(Date)
        return func.huifang_local_date(moment, zone, type_=Date)

    def add_days(self, day: ColumnElement[Any], days: ColumnElement[Any] | int
                 ) -> ColumnElement[dt.date]:
        if self.postgres:
            return cast(ColumnElement[dt.date], day + days)
        return func.date(day, func.printf("%+d days", days), type_=Date)

    def days_between(self, later: ColumnElement[Any], earlier: ColumnElement[Any]
                     ) -> ColumnElement[int]:
        if self.postgres:
            return cast(ColumnElement[int], later - earlier)
        return (func.julianday(later) - func.julianday(earlier)).cast(Integer)

    def month_day(self, day: ColumnElement[Any]) -> ColumnElement[str]:
        if self.postgres:
            return func.to_char(day, "MM-DD")
        return func.strftime("%m-%d", day)

    @contextlib.contextmanager
    def custom_plans(self) -> Iterator[None]:
        """Plan every chunk's statement with its own bounds (PostgreSQL).

        The statement's text is the same for every chunk, so psycopg prepares it after a
        few runs and PostgreSQL may then switch to a generic plan that ignores the bounds:
        measured at a million customers, chunk 12 chose a nested-loop anti-join over every
        pending row and did not finish in 20 minutes (the chunks before: 4 s each). Not
        preparing it keeps one plan per chunk. (``plan_cache_mode = force_custom_plan``
        would too, but it also re-plans the foreign-key triggers' checks for every row
        inserted: measured twice as slow.)
        """
        if not self.postgres:
            yield
            return
        raw = cast(Any, self.session.connection().connection).dbapi_connection
        previous = raw.prepare_threshold
        raw.prepare_threshold = None
        try:
            yield
        finally:
            raw.prepare_threshold = previous

    def insert(self) -> Any:
        table = cast(Table, CampaignOccurrence.__table__)  # Core: rowcount, no ORM bulk path
        return (postgresql.insert if self.postgres else sqlite.insert)(table)

    def table(self, name: str, columns: Sequence[tuple[str, TypeEngine[Any]]],
              rows: Sequence[Sequence[Any]]) -> FromClause:
        """Constant rows for the database to join: a ``VALUES`` list on PostgreSQL; on
        SQLite (no column names on ``VALUES``, 500 terms at most in a compound select) one
        JSON parameter read with ``json_each``, each value as the column type stores it."""
        if self.postgres:
            return values(*(column(n, kind) for n, kind in columns), name=name).data(
                [tuple(row) for row in rows])
        processors = [kind.dialect_impl(self.dialect).bind_processor(self.dialect)
                      for _, kind in columns]
        payload = json.dumps([[p(v) if p else v for p, v in zip(processors, row, strict=True)]
                              for row in rows], ensure_ascii=False)
        each = func.json_each(literal(payload, String())).table_valued("value")
        return select(*(func.json_extract(each.c.value, f"$[{i}]", type_=kind).label(n)
                        for i, (n, kind) in enumerate(columns))).subquery(name)




_COLUMNS = ("tenant_id", "campaign_id", "customer_id", "local_date", "due_at", "basis_at",
            "campaign_version", "status", "reason", "caught_up", "late_by_days", "created_at",
            "updated_at")


@dataclass(frozen=True)
class _Run:
    """One campaign's materialization: the fixed values every statement binds."""

    sql: _Sql
    campaign: Campaign
    tenant: Tenant
    rule: rules.Rule
    now: dt.datetime
    until: dt.datetime
    zones: dict[str, ZoneInfo]
    where: list[ColumnElement[bool]]

    def at(self, value: dt.datetime) -> ColumnElement[dt.datetime]:
        return literal(value, UTCDateTime())

    def audience(self, low: int, high: int) -> list[ColumnElement[bool]]:
        """The chunk's customers the campaign reaches that have no occurrence waiting.

        The waiting ones are looked up within the chunk's ids too: the table grows as the
        chunks go in, and the planner's statistics do not know it yet.
        """
        waiting = aliased(CampaignOccurrence)
        return [Customer.id.between(low, high), *self.where, not_(exists(
            select(waiting.id).where(waiting.campaign_id == self.campaign.id,
                                     waiting.customer_id == Customer.id,
                                     waiting.customer_id.between(low, high),
                                     waiting.status == PENDING)))]

    def fired(self, low: int, high: int) -> FromClause:
        """Per customer of the chunk, when the campaign last handed them a message."""
        occ = aliased(CampaignOccurrence)
        return (select(occ.customer_id, func.max(occ.due_at).label("fired_at"))
                .where(occ.campaign_id == self.campaign.id, occ.status == HANDED_OFF,
                       occ.customer_id.between(low, high))
                .group_by(occ.customer_id).subquery("fired"))

    def constants(self) -> dict[str, ColumnElement[Any]]:
        return {"tenant_id": literal(self.tenant.id, BigInteger()),
                "campaign_id": literal(self.campaign.id, BigInteger()),
                "campaign_version": literal(self.campaign.version, Integer()),
                "created_at": self.at(self.now), "updated_at": self.at(self.now)}


def _row(run: _Run, **values: ColumnElement[Any]) -> Select[Any]:
    merged = {**run.constants(), **values}
    return select(*(merged[name].label(name) for name in _COLUMNS))


def _cadence_tables(run: _Run) -> tuple[FromClause, FromClause]:
    """Each zone's today, and the send instants of the dates a pending occurrence can fall
    on: from yesterday (an earlier date is late, so due now) to the end of the horizon."""
    rule = cast(rules.Cadence, run.rule)
    now = run.now
    zones = run.sql.table("zones", [("tz", String()), ("today", Date())],
                   [(name, now.astimezone(zone).date()) for name, zone in run.zones.items()])
    day_rows = []
    for name, zone in run.zones.items():
        day = now.astimezone(zone).date() - dt.timedelta(days=1)
        while day <= run.until.astimezone(zone).date() + dt.timedelta(days=1):
            day_rows.append((name, day, rules.local_instant(day, rule.send_time, zone)))
            day += dt.timedelta(days=1)
    days = run.sql.table("days", [("tz", String()), ("day", Date()), ("due_at", UTCDateTime())],
                  day_rows)
    return zones, days


def _cadence(run: _Run, low: int, high: int, zones: FromClause, days: FromClause) -> Any:
    """``rules.next_occurrence`` for a cadence, for every customer of the chunk at once."""
    rule = cast(rules.Cadence, run.rule)
    sql, now = run.sql, run.now
    every, catch_up = rule.every_days, rule.catch_up_days
    served = (select(Customer.id.label("customer_id"), Customer.timezone.label("tz"),
                     func.max(sql.local_date(Visit.finished_at, Customer.timezone))
                     .label("served_on"),
                     func.max(Visit.finished_at).label("served_at"))
              .join(Visit, and_(Visit.customer_id == Customer.id,
                                Visit.tenant_id == run.tenant.id,
                                # the chunk's range on the index (tenant_id, customer_id)
                                Visit.customer_id.between(low, high)))
              .where(*run.audience(low, high), Visit.service_type == rule.service_type,
                     *_served())
              .group_by(Customer.id, Customer.timezone).subquery("served"))
    fired = run.fired(low, high)
    fired_on = sql.local_date(fired.c.fired_at, served.c.tz)
    # A reminder since the last service: the cadence counts from the reminder.
    from_reminder = and_(fired.c.fired_at.is_not(None), fired_on >= served.c.served_on)
    anchored = (select(served.c.customer_id, served.c.tz, zones.c.today,
                       sql.add_days(case((from_reminder, fired_on), else_=served.c.served_on),
                                    every).label("first"),
                       case((from_reminder, fired.c.fired_at), else_=served.c.served_at)
                       .label("basis_at"))
                .join(zones, zones.c.tz == served.c.tz)
                .outerjoin(fired, fired.c.customer_id == served.c.customer_id)
                .subquery("anchored"))
    # Dates more than catch_up days late are skipped, whole cadences at a time.
    behind = sql.days_between(anchored.c.today, anchored.c.first) - catch_up
    stepped = select(anchored, case((behind > 0, (behind + (every - 1)) // every), else_=0)
                     .label("steps")).subquery("stepped")
    found = select(stepped, sql.add_days(stepped.c.first, stepped.c.steps * every)
                   .label("candidate")).cte("found")

    due = case((days.c.due_at > run.at(now), days.c.due_at), else_=run.at(now))
    late = sql.days_between(found.c.today, found.c.candidate)
    pending = (_row(run, customer_id=found.c.customer_id, local_date=found.c.candidate,
                    due_at=due, basis_at=found.c.basis_at, status=literal(PENDING, String()),
                    reason=literal(None, String()),
                    caught_up=case((days.c.due_at > run.at(now), False), else_=True),
                    late_by_days=case((days.c.due_at > run.at(now), 0), else_=late))
               .select_from(found)
               .outerjoin(days, and_(days.c.tz == found.c.tz, days.c.day == found.c.candidate))
               # Not in the table: late by two days or more (due now), or past the horizon.
               .where(or_(days.c.day.is_not(None), late >= 2), due <= run.at(run.until)))
    skipped_on = sql.add_days(found.c.candidate, -every)
    skipped = (_row(run, customer_id=found.c.customer_id, local_date=skipped_on,
                    due_at=run.at(now), basis_at=found.c.basis_at,
                    status=literal(SKIPPED, String()), reason=literal(TOO_LATE, String()),
                    caught_up=literal(False),
                    late_by_days=sql.days_between(found.c.today, skipped_on))
               .select_from(found).where(found.c.steps > 0))
    return run.sql.insert().from_select(list(_COLUMNS), union_all(pending, skipped),
                                        include_defaults=False)


def _yearly_groups(session: Session, run: _Run) -> dict[str, rules.CustomerFacts]:
    """The customers a yearly rule cannot tell apart, by group key, with stand-in facts."""
    rule = run.rule
    if isinstance(rule, rules.PlumRainOffset) and rule.region is None:
        regions = session.scalars(select(func.coalesce(Customer.region, "")).where(
            Customer.tenant_id == run.tenant.id).distinct()).all()
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
                        first_service=dt.date(2000, month, mday))
                day += dt.timedelta(days=1)
        return groups
    return {"": rules.CustomerFacts()}


def _common_year(year: int) -> bool:
    """A common (non-leap) year: 29 February anniversaries fall on the 28th."""
    return not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0))


def _yearly_after(run: _Run) -> dt.datetime:
    last = run.campaign.materialized_at or run.campaign.activated_at or run.now
    return max(min(last, run.now), run.now - YEARLY_GRACE)


def _yearly_dates(run: _Run, groups: Mapping[str, rules.CustomerFacts],
                  table: calendar.PlumTable) -> FromClause | None:
    """A yearly rule's dates within the horizon per (zone, group), from ``rules`` itself."""
    rule = run.rule
    after = _yearly_after(run)
    rows = []
    for name, zone in run.zones.items():
        for key, facts in groups.items():
            since, fired = after, None
            while True:
                found = rules.next_occurrence(rule, customer=facts, after=since, tz=zone,
                                              last_fired=fired, plum_table=table)
                if found is None or found.due_at > run.until:
                    break
                rows.append((name, key, found.local_date, found.due_at))
                since = fired = found.due_at
    if not rows:
        return None
    return run.sql.table("cands", [("tz", String()), ("grp", String()), ("day", Date()),
                            ("due_at", UTCDateTime())], rows)


def _yearly(run: _Run, low: int, high: int, cands: FromClause) -> Any:
    """Each customer's first date of ``cands`` after their last reminder, in SQL."""
    rule, sql = run.rule, run.sql
    first_on: ColumnElement[Any] | None = None
    if isinstance(rule, rules.Anniversary):
        base = (select(Customer.id.label("customer_id"), Customer.timezone.label("tz"),
                       func.min(sql.local_date(Visit.finished_at, Customer.timezone))
                       .label("first_on"))
                .join(Visit, and_(Visit.customer_id == Customer.id,
                                  Visit.tenant_id == run.tenant.id,
                                  Visit.customer_id.between(low, high), *_served()))
                .where(*run.audience(low, high))
                .group_by(Customer.id, Customer.timezone).subquery("base"))
        first_on = base.c.first_on
        group: ColumnElement[Any] = sql.month_day(base.c.first_on)
    elif isinstance(rule, rules.PlumRainOffset) and rule.region is None:
        base = (select(Customer.id.label("customer_id"), Customer.timezone.label("tz"),
                       func.coalesce(Customer.region, "").label("grp"))
                .where(*run.audience(low, high)).subquery("base"))
        group = base.c.grp
    else:
        base = (select(Customer.id.label("customer_id"), Customer.timezone.label("tz"))
                .where(*run.audience(low, high)).subquery("base"))
        group = literal("", String())
    fired = run.fired(low, high)
    joined = [cands.c.tz == base.c.tz, cands.c.grp == group,
              or_(fired.c.fired_at.is_(None),
                  cands.c.day > sql.local_date(fired.c.fired_at, base.c.tz))]
    if first_on is not None:
        joined.append(cands.c.day > first_on)  # an anniversary needs a year gone by
    # In one zone later dates have later instants, so both minimums are the same date's.
    picked = (select(base.c.customer_id, func.min(cands.c.day).label("day"),
                     func.min(cands.c.due_at).label("due_at"))
              .select_from(base.outerjoin(fired, fired.c.customer_id == base.c.customer_id)
                           .join(cands, and_(*joined)))
              .group_by(base.c.customer_id).subquery("picked"))
    rows_select = _row(run, customer_id=picked.c.customer_id, local_date=picked.c.day,
                       due_at=picked.c.due_at, basis_at=run.at(run.now),
                       status=literal(PENDING, String()), reason=literal(None, String()),
                       caught_up=literal(False), late_by_days=literal(0, Integer())
                       ).select_from(picked).where(picked.c.due_at <= run.at(run.until))
    return run.sql.insert().from_select(list(_COLUMNS), rows_select, include_defaults=False)


def active_campaign_ids(*, session: Session) -> list[int]:
    """Every active campaign, of every company (for the periodic tick)."""
    return list(session.scalars(select(Campaign.id).where(Campaign.status == ACTIVE)
                                .order_by(Campaign.id)))


def materialize(*, session: Session, now: dt.datetime, horizon: dt.timedelta = HORIZON,
                campaign_id: int | None = None, chunk: int = CHUNK_CUSTOMERS) -> dict[int, int]:
    """Insert the next occurrence of each active campaign for each audience customer
    without a pending one, due within ``horizon``; rows inserted per campaign.

    Set-based and streamed: one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` per chunk of
    ``chunk`` customer ids, so memory stays flat whatever the audience. Two runs at once
    skip each other's campaigns (row locks) and could not duplicate a row anyway.
    """
    now = _aware(now, "now")
    if chunk < 1:
        raise Invalid("chunk must be at least 1 customer.")
    sql = _Sql(session)
    with sql.custom_plans():
        return _materialize(session, sql, now, horizon, campaign_id, chunk)


def _materialize(session: Session, sql: _Sql, now: dt.datetime, horizon: dt.timedelta,
                 campaign_id: int | None, chunk: int) -> dict[int, int]:
    stmt = select(Campaign.id).where(Campaign.status == ACTIVE).order_by(Campaign.id)
    if campaign_id is not None:
        stmt = stmt.where(Campaign.id == campaign_id)
    counts: dict[int, int] = {}
    for cid in session.scalars(stmt).all():
        locked = select(Campaign).where(Campaign.id == cid, Campaign.status == ACTIVE)
        if sql.postgres:
            locked = locked.with_for_update(skip_locked=True)
        campaign = session.execute(locked.execution_options(populate_existing=True)
                                   ).scalar_one_or_none()
        if campaign is None:
            continue  # paused meanwhile, or another run has it
        tenant = session.get(Tenant, campaign.tenant_id)
        assert tenant is not None
        counts[campaign.id] = _materialize_one(session, sql, campaign, tenant, now,
                                               now + horizon, chunk)
        campaign.materialized_at = now
        session.flush()
    return counts


def _materialize_one(session: Session, sql: _Sql, campaign: Campaign, tenant: Tenant,
                     now: dt.datetime, until: dt.datetime, chunk: int) -> int:
    rule = _rule(campaign)
    spec = Audience.from_dict(campaign.audience)
    names = session.scalars(select(Customer.timezone).where(Customer.tenant_id == tenant.id)
                            .distinct()).all()
    zones = {name: zone for name in names if (zone := _zone(name)) is not None}
    low, high = session.execute(select(func.min(Customer.id), func.max(Customer.id))
                                .where(Customer.tenant_id == tenant.id)).one()
    if not zones or low is None:
        return 0
    run = _Run(sql, campaign, tenant, rule, now, until, zones,
               reachable_conditions(spec, tenant=tenant, now=now))
    if isinstance(rule, rules.Cadence):
        zone_table, days = _cadence_tables(run)

        def statement(low: int, high: int) -> Any:
            return _cadence(run, low, high, zone_table, days)
    else:
        cands = _yearly_dates(run, _yearly_groups(session, run),
                              plum_table(session=session, tenant_id=tenant.id))
        if cands is None:
            return 0  # no date of the rule within the horizon, for anyone

        def statement(low: int, high: int) -> Any:
            return _yearly(run, low, high, cands)
    inserted = 0
    for start in range(low, high + 1, chunk):
        result = session.execute(statement(start, min(start + chunk - 1, high))
                                 .on_conflict_do_nothing(index_elements=[
                                     "campaign_id", "customer_id", "local_date"])
                                 .execution_options(preserve_rowcount=True))
        inserted += (cast(CursorResult[Any], result).rowcount if sql.postgres else
                     # sqlite3 reports no rowcount for a statement opening with WITH
                     int(session.scalar(select(func.changes())) or 0))
    return inserted


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


def hand_off_due(*, session: Session, now: dt.datetime, limit: int = HAND_OFF_BATCH,
                 mms: bool = False) -> HandOff:
    """Hand up to ``limit`` due occurrences of active campaigns to the outbox.

    ``mms``: the provider carries MMS, so a campaign with an MMS variant and a picture
    sends that; otherwise the SMS text goes. PostgreSQL takes the rows ``FOR UPDATE SKIP
    LOCKED``, so two ticks never hand off the same occurrence.
    """
    now = _aware(now, "now")
    due = (select(CampaignOccurrence.id, CampaignOccurrence.campaign_id)
           .join(Campaign, Campaign.id == CampaignOccurrence.campaign_id)
           .where(CampaignOccurrence.status == PENDING, CampaignOccurrence.due_at <= now,
                  Campaign.status == ACTIVE)
           .order_by(CampaignOccurrence.due_at, CampaignOccurrence.id).limit(limit))
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
            session.execute(update(CampaignOccurrence).where(
                CampaignOccurrence.id.in_(ids), CampaignOccurrence.status == PENDING)
                .values(due_at=now + HAND_OFF_RETRY, updated_at=now,
                        detail=f"The hand-off failed ({type(error).__name__}); it is tried "
                               "again in ten minutes."))
    return HandOff(claimed=claimed, message_ids=made, failed=failed)


def _hand_off_campaign(session: Session, campaign_id: int, ids: Sequence[int],
                       now: dt.datetime, mms: bool, postgres: bool) -> list[int]:
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
    return _schedule(session, tenant, campaign, ids, now, mms)


def _cancel_opted_out(session: Session, tenant: Tenant, ids: Sequence[int],
                      now: dt.datetime) -> None:
    suppressed = exists(select(Suppression.id).join(
        Customer, and_(Customer.tenant_id == Suppression.tenant_id,
                       Customer.phone == Suppression.phone)).where(
        Customer.id == CampaignOccurrence.customer_id, Suppression.tenant_id == tenant.id,
        Suppression.signature == tenant.signature, Suppression.lifted_at.is_(None)))
    session.execute(update(CampaignOccurrence).where(
        CampaignOccurrence.id.in_(ids), CampaignOccurrence.status == PENDING, suppressed)
        .values(status=CANCELLED, reason=OPTED_OUT, updated_at=now,
                detail="The customer opted out before it was due."))


def _campaign_source(campaign_id: int, source_id: Any) -> ColumnElement[bool]:
    """A booking or link of this campaign: its link ("12") or a reply to its message ("12:…")."""
    return or_(source_id == str(campaign_id), source_id.like(f"{campaign_id}:%"))


def _cancel_booked_early(session: Session, campaign: Campaign, ids: Sequence[int],
                         now: dt.datetime) -> None:
    """Cancel when the customer booked or had the service since the occurrence's basis."""
    occ = CampaignOccurrence
    visit = select(Visit.id).where(Visit.tenant_id == campaign.tenant_id,
                                   Visit.customer_id == occ.customer_id,
                                   Visit.finished_at > occ.basis_at)
    booked = select(Booking.id).where(Booking.tenant_id == campaign.tenant_id,
                                      Booking.customer_id == occ.customer_id,
                                      Booking.created_at > occ.basis_at,
                                      Booking.status.not_in((DECLINED, BOOKING_CANCELLED)))
    if campaign.service_type is not None:
        visit = visit.where(Visit.service_type == campaign.service_type)
        booked = booked.where(or_(
            Booking.service_type == campaign.service_type,
            and_(Booking.source_type == SOURCE_TYPE,
                 _campaign_source(campaign.id, Booking.source_id))))
    session.execute(update(occ).where(
        occ.id.in_(ids), occ.status == PENDING, occ.basis_at.is_not(None),
        or_(exists(visit), exists(booked)))
        .values(status=CANCELLED, reason=BOOKED_EARLY, updated_at=now,
                detail="The customer booked or had this service since the reminder was "
                       "planned."))


def _schedule(session: Session, tenant: Tenant, campaign: Campaign, ids: Sequence[int],
              now: dt.datetime, mms: bool) -> list[int]:
    rows = session.execute(
        select(CampaignOccurrence, Customer)
        .join(Customer, Customer.id == CampaignOccurrence.customer_id)
        .where(CampaignOccurrence.id.in_(ids), CampaignOccurrence.status == PENDING)
        .order_by(CampaignOccurrence.id).execution_options(populate_existing=True)
    ).all()
    if not rows:
        return []
    people = [person for _, person in rows]
    links = _links(session, tenant, campaign, people, now)
    facts = _message_facts(session, tenant, campaign, people, now=now, links=links)
    picture = None
    if mms and campaign.mms:
        if campaign.mms.get("image_media_id") is not None:
            try:
                picture = _picture_url(session, tenant.id, campaign.mms["image_media_id"])
            except Invalid:
                picture = None  # the photo went away: the SMS text still goes
        else:
            picture = campaign.mms.get("image_url")
    made = []
    for occurrence, person in rows:
        try:
            if picture is not None and campaign.mms:
                channel, media = "mms", [picture]
                body = templating.render(_mms_template(campaign.mms),
                                         facts[person.id].variables())
            else:
                channel, media = "sms", []
                body = templating.render(campaign.template, facts[person.id].variables())
        except Invalid as error:
            occurrence.status, occurrence.reason = CANCELLED, RENDER_FAILED
            occurrence.detail, occurrence.updated_at = error.detail, now
            continue
        message, _ = outbox.schedule(
            session=session, tenant=tenant, customer=person, channel=channel,
            category=campaign.category, source_type=SOURCE_TYPE,
            source_id=f"{campaign.id}:{occurrence.id}", body=body, due_at=occurrence.due_at,
            media_urls=media)
        link = links[person.id]
        if link.message_id is None:
            link.message_id = message.id
        occurrence.status, occurrence.message_id, occurrence.updated_at = (
            HANDED_OFF, message.id, now)
        made.append(message.id)
    session.flush()
    return made


# --- results --------------------------------------------------------------------------------


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


@dataclass(frozen=True)
class CampaignResults:
    """A campaign's figures. Message counts are by current status: ``sent`` left us (sent,
    delivered or undelivered), ``failed`` did not arrive (failed or undelivered),
    ``waiting`` is scheduled, queued or sending. ``conversion`` is customers who booked
    from the campaign per customer sent to, in percent."""

    campaign_id: int
    name: str
    status: str
    version: int
    occurrences: dict[str, int]
    cancelled: dict[str, int]
    scheduled: int
    waiting: int
    sent: int
    delivered: int
    failed: int
    deferred: int
    unknown: int
    suppressed: dict[str, int]
    customers_sent: int
    clicked: int  # customers who opened their link at least once
    clicks: int
    booked: int  # bookings made from the campaign's link or a reply to its message
    customers_booked: int
    conversion: float | None

    def rows(self) -> list[tuple[str, object]]:
        """The figures as (metric, value) lines, for CSV."""
        lines: list[tuple[str, object]] = [
            ("campaign_id", self.campaign_id), ("name", self.name), ("status", self.status),
            ("version", self.version)]
        lines += [(f"occurrences_{k}", v) for k, v in self.occurrences.items()]
        lines += [(f"cancelled_{k}", v) for k, v in sorted(self.cancelled.items())]
        lines += [(k, getattr(self, k)) for k in (
            "scheduled", "waiting", "sent", "delivered", "failed", "deferred", "unknown")]
        lines += [(f"suppressed_{k}", v) for k, v in sorted(self.suppressed.items())]
        lines += [(k, getattr(self, k)) for k in (
            "customers_sent", "clicked", "clicks", "booked", "customers_booked")]
        lines.append(("conversion_percent", "" if self.conversion is None else self.conversion))
        return lines


def results(*, session: Session, tenant: Tenant, campaign_id: int) -> CampaignResults:
    """What the campaign did: occurrences, messages by outcome, clicks, bookings."""
    campaign = get_campaign(session=session, tenant_id=tenant.id, campaign_id=campaign_id)
    occurrences = dict.fromkeys(OCCURRENCE_STATES, 0)
    cancelled: dict[str, int] = {}
    for status, reason, count in session.execute(
            select(CampaignOccurrence.status, CampaignOccurrence.reason, func.count())
            .where(CampaignOccurrence.campaign_id == campaign.id)
            .group_by(CampaignOccurrence.status, CampaignOccurrence.reason)):
        occurrences[status] = occurrences.get(status, 0) + count
        if status == CANCELLED:
            cancelled[reason or "other"] = cancelled.get(reason or "other", 0) + count
    ours = and_(Message.tenant_id == tenant.id, Message.source_type == SOURCE_TYPE,
                Message.source_id.like(f"{campaign.id}:%"))
    by_status: dict[str, int] = {}
    suppressed: dict[str, int] = {}
    for status, reason, count in session.execute(
            select(Message.status, Message.status_reason, func.count()).where(ours)
            .group_by(Message.status, Message.status_reason)):
        by_status[status] = by_status.get(status, 0) + count
        if status == SUPPRESSED:
            suppressed[reason or "other"] = suppressed.get(reason or "other", 0) + count
    went = (SENT, DELIVERED, UNDELIVERED)
    customers_sent = session.scalar(select(func.count(func.distinct(Message.customer_id)))
                                    .where(ours, Message.status.in_(went))) or 0
    clicked, clicks = session.execute(
        select(func.coalesce(func.sum(case((ShortLink.clicks > 0, 1), else_=0)), 0),
               func.coalesce(func.sum(ShortLink.clicks), 0))
        .where(ShortLink.tenant_id == tenant.id, ShortLink.source_type == SOURCE_TYPE,
               ShortLink.source_id == str(campaign.id))).one()
    booked, customers_booked = session.execute(
        select(func.count(Booking.id), func.count(func.distinct(Booking.customer_id)))
        .where(Booking.tenant_id == tenant.id, Booking.source_type == SOURCE_TYPE,
               _campaign_source(campaign.id, Booking.source_id))).one()
    return CampaignResults(
        campaign_id=campaign.id, name=campaign.name, status=campaign.status,
        version=campaign.version, occurrences=occurrences, cancelled=cancelled,
        scheduled=sum(by_status.values()),
        waiting=sum(by_status.get(s, 0) for s in (SCHEDULED, QUEUED, SENDING)),
        sent=sum(by_status.get(s, 0) for s in went),
        delivered=by_status.get(DELIVERED, 0),
        failed=by_status.get(FAILED, 0) + by_status.get(UNDELIVERED, 0),
        deferred=by_status.get(DEFERRED, 0), unknown=by_status.get(UNKNOWN, 0),
        suppressed=suppressed, customers_sent=int(customers_sent), clicked=int(clicked),
        clicks=int(clicks), booked=int(booked), customers_booked=int(customers_booked),
        conversion=_percent(int(customers_booked), int(customers_sent)))


@dataclass(frozen=True)
class RetentionFigures:
    """A company's customers over a period ``[since, until]`` (local dates, both included).

    - **Active at the start**: customers with a finished visit in the ``lookback_days``
      before ``since``. **Lost**: those of them with no finished visit within the period.
      **Retention rate** = (active at the start − lost) / active at the start × 100%.
    - **Repeat-purchase rate**: of the customers served within the period, the share with
      at least two finished visits by its end (a returning customer, or two visits in it).
    - **Second-service conversion**: of the customers whose first finished visit fell within
      the period, the share with a second finished visit by its end.
    Rates are None when there is nobody to divide by.
    """

    since: dt.date
    until: dt.date
    lookback_days: int
    active_at_start: int
    lost: int
    retained: int
    retention_rate: float | None
    served: int
    repeat_customers: int
    repeat_purchase_rate: float | None
    new_customers: int
    second_service: int
    second_service_conversion: float | None

    def rows(self) -> list[tuple[str, object]]:
        return [(name, "" if value is None else (
            value.isoformat() if isinstance(value, dt.date) else value))
            for name, value in self.__dict__.items()]


def retention(*, session: Session, tenant: Tenant, since: dt.date, until: dt.date,
              lookback_days: int = 365) -> RetentionFigures:
    """Retention, repeat purchases and second-service conversion; see ``RetentionFigures``."""
    if until < since:
        raise Invalid("until must be on or after since (both are included).")
    if (until - since).days > 3660:
        raise Invalid("Keep the period to ten years at most.")
    if not 1 <= lookback_days <= 3660:
        raise Invalid("lookback_days must be between 1 and 3660.")
    zone = ZoneInfo(tenant.timezone)
    start = dt.datetime.combine(since, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(0), tzinfo=zone
                              ).astimezone(dt.UTC)
    look = start - dt.timedelta(days=lookback_days)
    at = Visit.finished_at

    def flag(condition: ColumnElement[bool]) -> Any:
        return func.max(case((condition, 1), else_=0))

    per = (select(Visit.customer_id,
                  func.count(Visit.id).label("visits"),
                  func.min(at).label("first_at"),
                  flag(and_(at >= look, at < start)).label("active"),
                  flag(at >= start).label("in_period"))
           .where(Visit.tenant_id == tenant.id, at.is_not(None), at < end)
           .group_by(Visit.customer_id).subquery("per"))

    def total(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    new = per.c.first_at >= start
    row = session.execute(select(
        total(per.c.active == 1), total(and_(per.c.active == 1, per.c.in_period == 0)),
        total(per.c.in_period == 1), total(and_(per.c.in_period == 1, per.c.visits >= 2)),
        total(new), total(and_(new, per.c.visits >= 2)))).one()
    active, lost, served, repeat, fresh, second = (int(v) for v in row)
    return RetentionFigures(
        since=since, until=until, lookback_days=lookback_days, active_at_start=active,
        lost=lost, retained=active - lost, retention_rate=_percent(active - lost, active),
        served=served, repeat_customers=repeat, repeat_purchase_rate=_percent(repeat, served),
        new_customers=fresh, second_service=second,
        second_service_conversion=_percent(second, fresh))

