"""Campaigns: create, edit, lint, activate, pause, resume, archive.

Edits bump the version and recompute only pending occurrences not yet due; pausing stops
hand-off at once and suppresses the campaign's messages not yet sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import (
    and_,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from access import audit
from access.actors import Actor
from campaigns import lint, rules, templating
from campaigns.audiences import Audience
from campaigns.facts import PREVIEW_CUSTOMERS, aware, message_facts, sample_customers
from campaigns.models import (
    ACTIVE,
    ARCHIVED,
    CAMPAIGN_ARCHIVED,
    CAMPAIGN_PAUSED,
    CAMPAIGN_STATES,
    CANCELLED,
    DRAFT,
    MESSAGE_PAUSED,
    PAUSED,
    PENDING,
    Campaign,
    CampaignOccurrence,
)
from campaigns.presets import get_preset
from campaigns.schemas import CampaignUpdate
from compliance import capture
from compliance import service as compliance
from huifang.errors import Conflict, Invalid, NotFound
from huifang.pagination import PageParams, paginate
from huifang.settings import get_settings
from media.models import Media, Rendition
from messaging import providers, sms_templates
from messaging import service as outbox
from messaging.models import (
    DEFERRED,
    QUEUED,
    SCHEDULED,
    SUPPRESSED,
    Message,
)
from tenancy.models import Tenant
from visits.models import Visit
from visits.service_types import normalize_service_type

MAX_NAME = 100
MAX_SUBJECT = 40


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
        raise Invalid(
            'The MMS variant must be an object: {"subject": …, "body": …, '
            '"image_media_id": …} (or "image_url").'
        )
    unknown = sorted(set(data) - {"subject", "body", "image_media_id", "image_url"})
    if unknown:
        raise Invalid(
            f"The MMS variant has no field {', '.join(map(repr, unknown))}; its "
            f"fields are subject, body, image_media_id and image_url."
        )
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
        picture_url(session, tenant.id, media_id)
    if image_url is not None:
        parts = urlsplit(image_url) if isinstance(image_url, str) else None
        if parts is None or parts.scheme != "https" or not parts.hostname:
            raise Invalid(
                "image_url must be an https:// address of a JPEG or PNG picture; "
                "providers fetch it when sending."
            )
    return {
        "subject": subject.strip() or None,
        "body": body,
        "image_media_id": media_id,
        "image_url": image_url,
    }


PICTURE_KINDS = ("mms", "display")  # a photo's MMS picture, its display copy when it has none


def picture_url(session: Session, tenant_id: int, media_id: int) -> str:
    """The public address of a photo's MMS picture (its display copy when it has none);
    refused when the photo's customer has not allowed its use in marketing."""
    media = session.get(Media, media_id)
    if media is None or media.tenant_id != tenant_id:
        raise Invalid(f"There is no media {media_id} in this company to attach to the MMS.")
    visit = session.get(Visit, media.visit_id)
    if visit is not None:
        capture.check_marketing_use(
            session=session, tenant_id=tenant_id, customer_id=visit.customer_id
        )
    found = session.execute(
        select(Rendition.kind, Rendition.token).where(
            Rendition.media_id == media_id, Rendition.kind.in_(PICTURE_KINDS)
        )
    ).all()
    tokens = dict(cast(Iterable[tuple[str, str]], found))
    token = tokens.get("mms") or tokens.get("display")
    if token is None:
        raise Invalid(
            f"Media {media_id} has no picture ready for MMS yet (it may still be "
            f"processing, or it is not a photo); try again in a minute."
        )
    return f"{get_settings().public_url}/m/{token}.jpg"


def picture_in_use(*, session: Session, rendition: Rendition) -> bool:
    """Whether a campaign that may still send (not archived) has this rendition as its MMS
    picture: its messages carry the picture's public link, which providers fetch at send."""
    if rendition.kind not in PICTURE_KINDS:
        return False
    variants = session.scalars(
        select(Campaign.mms).where(
            Campaign.tenant_id == rendition.tenant_id, Campaign.status != ARCHIVED
        )
    )
    if not any(
        isinstance(v, dict) and v.get("image_media_id") == rendition.media_id for v in variants
    ):
        return False
    try:
        return picture_url(session, rendition.tenant_id, rendition.media_id).endswith(
            f"/m/{rendition.token}.jpg"
        )
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


def create_campaign(
    *,
    session: Session,
    tenant: Tenant,
    name: str | None = None,
    preset: str | None = None,
    rule: Mapping[str, object] | None = None,
    audience: Mapping[str, object] | None = None,
    template: str | None = None,
    mms: Mapping[str, object] | None = None,
    service_type: str | None = None,
) -> Campaign:
    """A draft campaign, from scratch or from a preset (whose parts the others override)."""
    chosen = get_preset(preset) if preset is not None else None
    if chosen is None and rule is None:
        raise Invalid(
            'A campaign needs a rule (e.g. {"kind": "cadence", "service_type": '
            '"ac_cleaning", "every_days": 90}) or a preset to start from; the '
            "presets are listed at GET /v1/campaign-presets."
        )
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
        variant = _check_mms(
            session, tenant, {"subject": chosen.mms.subject, "body": chosen.mms.body}
        )
    else:
        variant = None
    kind_service = parsed.service_type if isinstance(parsed, rules.Cadence) else None
    preset_service = chosen.service_types[0] if chosen and chosen.service_types else None
    campaign = Campaign(
        tenant_id=tenant.id,
        name=_name(
            name
            if name is not None
            else (chosen.title if chosen else rules.describe(parsed)[:MAX_NAME])
        ),
        preset=chosen.name if chosen else None,
        rule=rules.to_dict(parsed),
        audience=spec.to_dict(),
        service_type=_service_type(service_type) or kind_service or preset_service,
        template=body,
        mms=variant,
        category=chosen.category if chosen else "marketing",
        status=DRAFT,
        version=1,
    )
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
    return session.execute(
        select(Campaign)
        .where(Campaign.id == campaign_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def list_campaigns(
    *, session: Session, tenant_id: int, page: PageParams, status: str | None = None
) -> tuple[list[Campaign], int]:
    stmt = select(Campaign).where(Campaign.tenant_id == tenant_id)
    if status is not None:
        if status not in CAMPAIGN_STATES:
            raise Invalid(f"status must be one of {', '.join(CAMPAIGN_STATES)}.")
        stmt = stmt.where(Campaign.status == status)
    return paginate(session, stmt.order_by(Campaign.id.desc()), page)


def update_campaign(
    *, session: Session, tenant: Tenant, campaign_id: int, changes: CampaignUpdate, now: dt.datetime
) -> Campaign:
    """Edit a campaign (the fields set in ``changes``). Changing what it sends or to whom
    makes a new version: pending occurrences not yet due are recomputed; those due or
    handed off stay as they are.

    Everything is checked (and an active campaign's texts linted) before anything changes.
    """
    now = aware(now, "now")
    given = changes.model_dump(exclude_unset=True)
    campaign = _locked(session, tenant.id, campaign_id)
    if campaign.status == ARCHIVED:
        raise Conflict(
            "This campaign is archived and cannot change; create a new one (from "
            "the same preset if you like)."
        )
    for required in ("rule", "template"):
        if required in given and given[required] is None:
            raise Invalid(f"A campaign always has a {required}; send the new one instead.")
    wanted: dict[str, Any] = {}
    if given.get("name") is not None:
        wanted["name"] = _name(given["name"])
    if given.get("rule") is not None:
        parsed = rules.rule_from_dict(cast(Mapping[str, object], given["rule"]))
        wanted["rule"] = rules.to_dict(parsed)
        if isinstance(parsed, rules.Cadence) and "service_type" not in given:
            wanted["service_type"] = parsed.service_type
    if "audience" in given:
        wanted["audience"] = Audience.from_dict(
            cast(Mapping[str, object] | None, given["audience"])
        ).to_dict()
    if given.get("template") is not None:
        wanted["template"] = _check_template(given["template"], "template")
    if "mms" in given:
        wanted["mms"] = _check_mms(session, tenant, given["mms"])
    if "service_type" in given:
        wanted["service_type"] = _service_type(given["service_type"])
    changed = {k: v for k, v in wanted.items() if getattr(campaign, k) != v}
    material = bool(set(changed) - {"name"})
    if material and campaign.status in (ACTIVE, PAUSED):
        current = {
            c: getattr(campaign, c)
            for c in (
                "id",
                "tenant_id",
                "name",
                "rule",
                "audience",
                "service_type",
                "template",
                "mms",
                "category",
            )
        }
        draft = Campaign(**{**current, **changed})  # never added to the session
        _require_clean_lint(session, tenant, draft, now)
    for attr, value in changed.items():
        setattr(campaign, attr, value)
    if material:
        campaign.version += 1
        # Only what is not yet due: due and handed-off occurrences belong to the past.
        session.execute(
            delete(CampaignOccurrence).where(
                CampaignOccurrence.campaign_id == campaign.id,
                CampaignOccurrence.status == PENDING,
                CampaignOccurrence.due_at > now,
            )
        )
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
            f"would refuse. First: {errors[0].message} {errors[0].hint}"
        )
        self.findings = list(findings)


def _tenant_domains() -> list[str]:
    host = urlsplit(get_settings().public_url).hostname
    return [host] if host else []


def lint_campaign(
    *,
    session: Session,
    tenant: Tenant,
    campaign: Campaign,
    samples: Sequence[templating.MessageFacts] = (),
) -> list[LintFinding]:
    """What providers or our gate would refuse in the campaign's texts, as sent."""
    footer = compliance.policy_for(session=session, tenant_id=tenant.id).opt_out_footer
    variables = [s.variables() for s in samples]
    found: list[LintFinding] = []
    parts = [("sms", campaign.template)]
    if campaign.mms:
        parts.append(("mms", mms_template(campaign.mms)))
    for part, body in parts:
        for f in lint.lint(
            body,
            signature=tenant.signature,
            category=campaign.category,
            tenant_domains=_tenant_domains(),
            footer=footer,
            rendered_samples=variables,
            channel=part,
        ):
            found.append(LintFinding(part, f.code, f.severity, f.message, f.hint))
    settings = get_settings()
    if providers.capabilities(settings.sms_provider).approved_templates:
        purpose = (
            sms_templates.CAMPAIGN_MARKETING
            if campaign.category == "marketing"
            else sms_templates.CAMPAIGN_SERVICE
        )
        approved = [
            (t.code, t.text)
            for t in sms_templates.list_templates(session=session, tenant_id=tenant.id)
            if t.purpose == purpose
        ]
        for f in lint.approved_template(
            campaign.template,
            signature=tenant.signature,
            category=campaign.category,
            footer=footer,
            base_url=settings.public_url,
            templates=approved,
        ):
            found.append(LintFinding("sms", f.code, f.severity, f.message, f.hint))
    return found


def mms_template(variant: Mapping[str, Any]) -> str:
    subject = variant.get("subject")
    return f"{subject}\n{variant['body']}" if subject else str(variant["body"])


def _require_clean_lint(
    session: Session, tenant: Tenant, campaign: Campaign, now: dt.datetime
) -> None:
    people = sample_customers(session, tenant, campaign, now, PREVIEW_CUSTOMERS)
    facts = message_facts(session, tenant, campaign, people, now=now, links=None)
    findings = lint_campaign(
        session=session, tenant=tenant, campaign=campaign, samples=[facts[c.id] for c in people]
    )
    if any(f.severity == "error" for f in findings):
        raise LintFailed(findings)


def _audit(session: Session, actor: Actor | None, action: str, campaign: Campaign) -> None:
    audit.record(
        session,
        actor,
        action,
        f"campaign:{campaign.id}",
        {"name": campaign.name},
        tenant_id=campaign.tenant_id,
    )


def activate(
    *,
    session: Session,
    tenant: Tenant,
    campaign_id: int,
    now: dt.datetime,
    actor: Actor | None = None,
    _action: str = "campaign.activated",
) -> Campaign:
    """Start the campaign: its texts must lint clean; occurrences follow at the next tick.
    Who did it (``actor``, None: the system) goes into the audit log."""
    now = aware(now, "now")
    campaign = _locked(session, tenant.id, campaign_id)
    if campaign.status == ARCHIVED:
        raise Conflict(
            "This campaign is archived and cannot be activated again; create a "
            "new one (from the same preset if you like)."
        )
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


def pause(
    *,
    session: Session,
    tenant: Tenant,
    campaign_id: int,
    now: dt.datetime,
    actor: Actor | None = None,
) -> Campaign:
    """Stop sending at once: nothing more is handed off, and the campaign's messages not
    yet sent are suppressed (``campaign_paused``). Resume picks up from there."""
    now = aware(now, "now")
    campaign = _locked(session, tenant.id, campaign_id)
    if campaign.status == PAUSED:
        return campaign
    if campaign.status != ACTIVE:
        raise Conflict(f"Only an active campaign can be paused; this one is {campaign.status}.")
    campaign.status, campaign.paused_at, campaign.updated_at = PAUSED, now, now
    session.flush()
    _stop_messages(
        session,
        campaign,
        now,
        CAMPAIGN_PAUSED,
        "The campaign was paused before this message was sent.",
    )
    _audit(session, actor, "campaign.paused", campaign)
    return campaign


def resume(
    *,
    session: Session,
    tenant: Tenant,
    campaign_id: int,
    now: dt.datetime,
    actor: Actor | None = None,
) -> Campaign:
    """Start a paused campaign again. What was waiting is recomputed (a cadence reminder
    now too late moves on to its next date), and the texts must still lint clean."""
    campaign = get_campaign(session=session, tenant_id=tenant.id, campaign_id=campaign_id)
    if campaign.status == DRAFT:
        raise Conflict("This campaign has not been activated yet; activate it instead.")
    if campaign.status not in (PAUSED, ACTIVE):
        raise Conflict(f"Only a paused campaign can be resumed; this one is {campaign.status}.")
    return activate(
        session=session,
        tenant=tenant,
        campaign_id=campaign_id,
        now=now,
        actor=actor,
        _action="campaign.resumed",
    )


def archive(
    *,
    session: Session,
    tenant: Tenant,
    campaign_id: int,
    now: dt.datetime,
    actor: Actor | None = None,
) -> Campaign:
    """End the campaign for good: unsent messages are suppressed, waiting ones cancelled."""
    now = aware(now, "now")
    campaign = _locked(session, tenant.id, campaign_id)
    if campaign.status == ARCHIVED:
        return campaign
    campaign.status, campaign.updated_at = ARCHIVED, now
    session.flush()
    _stop_messages(
        session,
        campaign,
        now,
        CAMPAIGN_ARCHIVED,
        "The campaign was archived before this message was sent.",
    )
    session.execute(
        update(CampaignOccurrence)
        .where(CampaignOccurrence.campaign_id == campaign.id, CampaignOccurrence.status == PENDING)
        .values(status=CANCELLED, reason=CAMPAIGN_ARCHIVED, updated_at=now)
    )
    _audit(session, actor, "campaign.archived", campaign)
    return campaign


def _stop_messages(
    session: Session, campaign: Campaign, now: dt.datetime, reason: str, detail: str
) -> None:
    """Suppress the campaign's messages still waiting in the outbox (not those in flight).

    The rows are locked first (PostgreSQL), so a send task claiming one at the same time
    either got it before (it is ``sending`` and is left alone) or finds it suppressed.
    """
    stmt = (
        select(Message)
        .join(CampaignOccurrence, CampaignOccurrence.message_id == Message.id)
        .where(
            CampaignOccurrence.campaign_id == campaign.id,
            Message.status.in_((SCHEDULED, DEFERRED, QUEUED)),
        )
        .execution_options(populate_existing=True)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=Message)
    stopped = []
    for message in session.scalars(stmt).all():
        if outbox.transition(
            session=session,
            message=message,
            status=SUPPRESSED,
            now=now,
            reason=MESSAGE_PAUSED,
            detail=detail,
        ):
            stopped.append(message.id)
    if stopped:
        session.execute(
            update(CampaignOccurrence)
            .where(CampaignOccurrence.message_id.in_(stopped))
            .values(status=CANCELLED, reason=reason, detail=detail, updated_at=now)
        )


def _forget_unsent(session: Session, campaign: Campaign) -> None:
    """On resume: drop what a pause left waiting or stopped, for the materializer to redo.

    Pending occurrences may be long overdue (the catch-up window decides again), and those
    whose message the pause suppressed never reached the customer; their suppressed
    messages stay in the outbox as the record.
    """
    session.execute(
        delete(CampaignOccurrence).where(
            CampaignOccurrence.campaign_id == campaign.id,
            or_(
                CampaignOccurrence.status == PENDING,
                and_(
                    CampaignOccurrence.status == CANCELLED,
                    CampaignOccurrence.reason == CAMPAIGN_PAUSED,
                ),
            ),
        )
    )
