"""The compliance gate every send passes, and the consent ledger and suppressions behind it.

``gate()`` is the one function a send calls, at send time, inside the transaction that
claimed the message: checking at scheduling time would miss an opt-out that came since.
Each decision is written to ``compliance_decisions`` with its reason.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    Integer,
    Table,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from compliance import audit_log
from compliance.models import (
    ALLOWED,
    COMPLAINT_HOLD,
    CONSENT_SOURCES,
    DEFER,
    FREQUENCY_CAP,
    HOLD_LOW_RATING,
    HOLD_REASONS,
    MESSAGE_RULES,
    NO_CONSENT,
    OPTED_OUT,
    QUIET_HOURS,
    REFUSE,
    RETENTION_MINIMUMS,
    SEND,
    SUPPRESS,
    ComplianceDecision,
    CompliancePolicy,
    ConsentRecord,
    MarketingHold,
    MarketingSend,
    Suppression,
)
from compliance.schemas import PolicyUpdate
from customers.models import Customer
from huifang.dates import check_plausible
from huifang.errors import Conflict, Invalid
from huifang.sql import driver_sql, insert_rows
from tenancy.models import Tenant

# marketing: offers and reminders (consent, cap, quiet hours, footer);
# service: about the customer's own visit (no consent needed, opt-out respected);
# reply: an immediate answer to the customer's own text — the one confirmation of an
#   opt-out or opt-in, a HELP answer, a booking acknowledgement. It is the customer who
#   just wrote, so neither the opt-out they just sent nor quiet hours hold it back.
Category = Literal["marketing", "service", "reply"]


@dataclass(frozen=True)
class Verdict:
    """What the gate decided, and for a send the exact text that goes out."""

    decision: str  # send | defer | suppress | refuse
    reason: str
    detail: str
    text: str | None = None
    not_before: dt.datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.decision == SEND


# --- policy ---------------------------------------------------------------------------------


def policy_for(*, session: Session, tenant_id: int) -> CompliancePolicy:
    """The company's policy, or the defaults (2 marketing per 90 days, 08:00–21:00, 回复T退订)."""
    policy = session.get(CompliancePolicy, tenant_id)
    if policy is None:
        policy = CompliancePolicy(
            tenant_id=tenant_id,
            marketing_cap=2,
            cap_window_days=90,
            window_start_minute=8 * 60,
            window_end_minute=21 * 60,
            opt_out_footer="回复T退订",
            consent_retention_days=183,
            capture_consent_retention_days=183,
            original_media_days=365,
            message_text_days=730,
            reply_days=730,
            decision_log_days=365,
        )
    return policy


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def update_policy(
    *, session: Session, tenant_id: int, changes: PolicyUpdate, actor: audit_log.Actor | None = None
) -> CompliancePolicy:
    """Change the fields set in ``changes`` (the window as "HH:MM", stored in minutes)."""
    policy = session.get(CompliancePolicy, tenant_id)
    if policy is None:
        policy = policy_for(session=session, tenant_id=tenant_id)
        session.add(policy)
    for attr, value in changes.model_dump(exclude_unset=True).items():
        if value is None:
            continue
        if attr in ("window_start", "window_end"):
            attr, value = f"{attr}_minute", _minutes(value)
        setattr(policy, attr, value)
    if policy.window_start_minute >= policy.window_end_minute:
        raise Invalid("The sending window must start before it ends (e.g. 08:00 to 21:00).")
    if policy.consent_retention_days < 153:
        raise Invalid(
            "Keep revoked consents at least 5 months (153 days); the regulator "
            "asks for proof of consent that long."
        )
    for attr, least in RETENTION_MINIMUMS.items():
        if getattr(policy, attr) < least:
            raise Invalid(
                f"{attr} must be at least {least} days; evidence of consent and the record "
                f"of checking it are kept 5 months, the rest long enough to answer a complaint."
            )
    session.flush()
    audit_log.record(
        session,
        actor,
        "policy.updated",
        "policy",
        {k: v for k, v in changes.model_dump(exclude_unset=True).items() if v is not None},
    )
    return policy


# --- consent ledger -------------------------------------------------------------------------


def active_consent(*, session: Session, tenant_id: int, phone: str) -> ConsentRecord | None:
    return session.scalars(
        select(ConsentRecord)
        .where(
            ConsentRecord.tenant_id == tenant_id,
            ConsentRecord.phone == phone,
            ConsentRecord.revoked_at.is_(None),
        )
        .order_by(ConsentRecord.granted_at.desc())
    ).first()


def record_consent(
    *,
    session: Session,
    tenant_id: int,
    customer: Customer,
    source: str,
    evidence: str,
    granted_at: dt.datetime,
    now: dt.datetime,
    actor: audit_log.Actor | None = None,
) -> ConsentRecord:
    """Record a customer's consent to marketing messages, with what proves it."""
    if source not in CONSENT_SOURCES:
        raise Invalid(
            f"Say how consent was given: source must be one of {', '.join(CONSENT_SOURCES)}."
        )
    if not evidence.strip():
        raise Invalid(
            "Consent needs evidence: the form id, a note of the signed sheet, or the "
            "reply text, so it can be shown later."
        )
    if granted_at > now + dt.timedelta(minutes=5):
        raise Invalid("Consent cannot be given in the future; check the date and time.")
    check_plausible(granted_at, what="The date consent was given", now=now)
    existing = active_consent(session=session, tenant_id=tenant_id, phone=customer.phone)
    if existing is not None:
        raise Conflict(
            f"This customer already consented on {existing.granted_at:%Y-%m-%d} "
            f"({existing.source}); revoke it first to record a new one."
        )
    record = ConsentRecord(
        tenant_id=tenant_id,
        customer_id=customer.id,
        phone=customer.phone,
        source=source,
        evidence=evidence.strip(),
        granted_at=granted_at,
        recorded_at=now,
    )
    session.add(record)
    session.flush()
    audit_log.record(
        session,
        actor,
        "consent.recorded",
        f"customer:{customer.id}",
        {"consent_id": record.id, "source": source, "evidence": record.evidence},
    )
    return record


_CONSENTS = cast(Table, ConsentRecord.__table__)
_REVOKE_CONSENT = (
    update(_CONSENTS)
    .where(
        _CONSENTS.c.tenant_id == bindparam("b_tenant_id"),
        _CONSENTS.c.phone == bindparam("b_phone"),
        _CONSENTS.c.revoked_at.is_(None),
    )
    .values(
        revoked_at=bindparam("b_revoked_at"),
        revoke_source=bindparam("b_source"),
        revoke_evidence=bindparam("b_evidence"),
    )
)


def revoke_consent(
    *,
    session: Session,
    tenant_id: int,
    phone: str,
    source: str,
    evidence: str | None,
    now: dt.datetime,
    actor: audit_log.Actor | None = None,
) -> bool:
    """Revoke the active consent (kept as evidence); False when there was none.

    One statement: ``record_consent`` allows one active consent per number.
    """
    revoked = session.execute(
        _REVOKE_CONSENT,
        {
            "b_tenant_id": tenant_id,
            "b_phone": phone,
            "b_revoked_at": now,
            "b_source": source,
            "b_evidence": evidence,
        },
    )
    done = bool(getattr(revoked, "rowcount", 0))
    _consent_revoked(session, actor, phone, source, evidence, done)
    return done


def _consent_revoked(
    session: Session,
    actor: audit_log.Actor | None,
    phone: str,
    source: str,
    evidence: str | None,
    done: bool = True,
) -> None:
    """After ``_REVOKE_CONSENT`` ran (a Core statement: the ORM's bulk UPDATE cost more
    than the query): consents this session has loaded are read again on their next use,
    and a revocation is audited."""
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, ConsentRecord):
            session.expire(loaded)
    if done:
        audit_log.record(
            session,
            actor,
            "consent.revoked",
            f"phone:{phone}",
            {"source": source, "evidence": evidence},
        )


def _revoke_source(reason: str) -> str:
    """Who revoked the consent, by the opt-out's reason."""
    return "reply" if reason == "reply_opt_out" else "api"


def consents(*, session: Session, tenant_id: int, phone: str | None = None) -> list[ConsentRecord]:
    stmt = select(ConsentRecord).where(ConsentRecord.tenant_id == tenant_id)
    if phone:
        stmt = stmt.where(ConsentRecord.phone == phone)
    return list(session.scalars(stmt.order_by(ConsentRecord.id)))


def companies_with_revoked_consents(*, session: Session) -> list[int]:
    """The companies whose ledger holds revoked consents (the purge's work list)."""
    return list(
        session.scalars(
            select(ConsentRecord.tenant_id)
            .where(ConsentRecord.revoked_at.is_not(None))
            .distinct()
            .order_by(ConsentRecord.tenant_id)
        )
    )


def purge_expired_consents(
    *, session: Session, now: dt.datetime, tenant_id: int | None = None
) -> int:
    """Delete revoked consents older than the company's retention (every company's when
    ``tenant_id`` is None); returns how many."""
    purged = 0
    tenants = (
        [tenant_id] if tenant_id is not None else companies_with_revoked_consents(session=session)
    )
    for company in tenants:
        keep = policy_for(session=session, tenant_id=company).consent_retention_days
        purged += cast(
            CursorResult[Any],
            session.execute(
                delete(ConsentRecord).where(
                    ConsentRecord.tenant_id == company,
                    ConsentRecord.revoked_at.is_not(None),
                    ConsentRecord.revoked_at < now - dt.timedelta(days=keep),
                )
            ),
        ).rowcount
    session.flush()
    return purged


# --- suppressions ---------------------------------------------------------------------------


def active_suppression(*, session: Session, tenant: Tenant, phone: str) -> Suppression | None:
    return session.scalars(
        select(Suppression)
        .where(
            Suppression.tenant_id == tenant.id,
            Suppression.phone == phone,
            Suppression.signature == tenant.signature,
            Suppression.lifted_at.is_(None),
        )
        .order_by(Suppression.id.desc())
    ).first()


# Suppressions that are not the customer's choice (the number cannot take SMS): they stop
# sending but leave the consent ledger alone, since nobody revoked anything.
NOT_A_CHOICE = frozenset({"unreachable"})


class Sender(Protocol):
    """What an opt-out needs of a company: whose it is and the signature it sends under."""

    @property
    def id(self) -> int: ...

    @property
    def signature(self) -> str: ...


_COLUMNS = Suppression.__table__.c
# The active suppression of a number.
_ACTIVE_SUPPRESSION = (
    select(Suppression.id)
    .where(
        Suppression.tenant_id == bindparam("b_tenant_id", type_=_COLUMNS.tenant_id.type),
        Suppression.phone == bindparam("b_phone", type_=_COLUMNS.phone.type),
        Suppression.signature == bindparam("b_signature", type_=_COLUMNS.signature.type),
        Suppression.lifted_at.is_(None),
    )
    .order_by(Suppression.id.desc())
)


def _insert_suppression(when: ColumnElement[bool] | None = None) -> Any:
    """``INSERT … SELECT … WHERE NOT EXISTS`` (the active suppression) and ``when``."""
    names = ("tenant_id", "phone", "signature", "reason", "detail", "created_at")
    row = select(*(bindparam(f"b_{name}", type_=_COLUMNS[name].type) for name in names)).where(
        ~_ACTIVE_SUPPRESSION.exists()
    )
    if when is not None:
        row = row.where(when)
    return (
        insert(cast(Table, Suppression.__table__))
        .from_select(list(names), row)
        .returning(_COLUMNS.id)
    )


_INSERT_SUPPRESSION = _insert_suppression()


def opt_out_ctes(*, when: ColumnElement[bool] | None = None) -> tuple[CTE, CTE]:
    """PostgreSQL: an opt-out (not ``NOT_A_CHOICE``) as two CTEs for a statement of the
    caller's: ``added``, the suppression's ``INSERT … WHERE NOT EXISTS`` (and ``when``)
    returning its ``id``, and ``revoked``, the consent's revocation when it inserted,
    returning the consents' ids. Their values are ``opt_out_values``; the number must be
    locked (``number_lock``) by an earlier statement of the transaction, so that the
    suppression's snapshot is taken under the lock; ``opted_out`` afterwards."""
    added = _insert_suppression(when).cte("added")
    consents = cast(Table, ConsentRecord.__table__)
    revoked = (
        _REVOKE_CONSENT.where(select(added.c.id).exists()).returning(consents.c.id).cte("revoked")
    )
    return added, revoked


def opt_out_values(
    *, tenant: Sender, phone: str, reason: str, detail: str | None, now: dt.datetime
) -> dict[str, Any]:
    """The values of ``opt_out_ctes``' statements (and of ``_INSERT_SUPPRESSION_REVOKING``)."""
    return {
        "b_tenant_id": tenant.id,
        "b_phone": phone,
        "b_signature": tenant.signature,
        "b_reason": reason,
        "b_detail": detail,
        "b_created_at": now,
        "b_revoked_at": now,
        "b_source": _revoke_source(reason),
        "b_evidence": detail,
    }


def opted_out(
    *,
    session: Session,
    phone: str,
    reason: str,
    detail: str | None,
    suppression_id: int,
    revoked: bool,
    actor: audit_log.Actor | None = None,
) -> None:
    """What ``opt_out`` does after its statements inserted suppression ``suppression_id``
    (and revoked a consent, or not), for a caller that ran ``opt_out_ctes`` itself."""
    if revoked:  # audited as part of the suppression (as revoke_consent is)
        _consent_revoked(session, None, phone, _revoke_source(reason), detail)
    audit_log.record(
        session,
        actor,
        "suppression.added",
        f"phone:{phone}",
        {"suppression_id": suppression_id, "reason": reason, "detail": detail},
    )


def _suppression_revoking_consent() -> Any:
    """PostgreSQL: ``_INSERT_SUPPRESSION`` and, when it inserted, ``_REVOKE_CONSENT`` in one
    statement; its row is the new suppression's id (or NULL) and how many consents it revoked."""
    added, revoked = opt_out_ctes()
    return select(
        select(added.c.id).scalar_subquery(),
        select(func.count()).select_from(revoked).scalar_subquery(),
    )


_INSERT_SUPPRESSION_REVOKING = _suppression_revoking_consent()


def opt_out(
    *,
    session: Session,
    tenant: Sender,
    phone: str,
    reason: str,
    detail: str | None,
    now: dt.datetime,
    actor: audit_log.Actor | None = None,
) -> tuple[int, bool]:
    """Stop all messages to ``phone`` under the company's signature: the suppression's id,
    and True when it is new.

    Also revokes marketing consent. Opting out twice changes nothing (and the caller sends
    no second confirmation). Set-based (an opt-out webhook answers within milliseconds):
    the per-number lock, then one ``INSERT … SELECT … WHERE NOT EXISTS``.
    """
    _lock_number(session, tenant.id, phone)
    key = {"b_tenant_id": tenant.id, "b_phone": phone, "b_signature": tenant.signature}
    values = {**key, "b_reason": reason, "b_detail": detail, "b_created_at": now}
    revoked = False
    fused = reason not in NOT_A_CHOICE and session.get_bind().dialect.name == "postgresql"
    if fused:
        # The consent's revocation rides in the suppression's statement (one round trip).
        row = session.execute(
            _INSERT_SUPPRESSION_REVOKING,
            opt_out_values(tenant=tenant, phone=phone, reason=reason, detail=detail, now=now),
        ).one()
        created, revoked = row[0], bool(row[1])
    else:
        created = session.execute(_INSERT_SUPPRESSION, values).scalar_one_or_none()
    if created is None:
        existing = session.scalars(_ACTIVE_SUPPRESSION, key).first()
        assert existing is not None  # under the number's lock, nothing lifted it meanwhile
        return existing, False
    if reason not in NOT_A_CHOICE and not fused:
        revoke_consent(
            session=session,
            tenant_id=tenant.id,
            phone=phone,
            source=_revoke_source(reason),
            evidence=detail,
            now=now,
        )
    opted_out(
        session=session,
        phone=phone,
        reason=reason,
        detail=detail,
        suppression_id=created,
        revoked=revoked,
        actor=actor,
    )
    return created, True


def opt_in(
    *,
    session: Session,
    tenant: Tenant,
    phone: str,
    now: dt.datetime,
    actor: audit_log.Actor | None = None,
) -> bool:
    """Lift the suppression (service messages resume); marketing still needs new consent."""
    existing = active_suppression(session=session, tenant=tenant, phone=phone)
    if existing is None:
        return False
    existing.lifted_at = now
    session.flush()
    audit_log.record(
        session,
        actor,
        "suppression.lifted",
        f"phone:{phone}",
        {"suppression_id": existing.id, "reason": existing.reason},
    )
    return True


# --- marketing holds (open complaints, low ratings) ------------------------------------------


def hold_marketing(
    *, session: Session, tenant_id: int, phone: str, reason: str, source: str, now: dt.datetime
) -> bool:
    """Hold ``phone`` from marketing while the ticket ``source`` is open; True when the hold
    is new or was released and is now on again (one row per ticket)."""
    if reason not in HOLD_REASONS:
        raise Invalid(f"A marketing hold's reason is one of {', '.join(HOLD_REASONS)}.")
    hold = session.scalars(
        select(MarketingHold).where(
            MarketingHold.tenant_id == tenant_id, MarketingHold.source == source
        )
    ).first()
    if hold is None:
        session.add(
            MarketingHold(
                tenant_id=tenant_id, phone=phone, reason=reason, source=source, opened_at=now
            )
        )
    elif hold.released_at is not None:
        hold.released_at, hold.opened_at, hold.phone = None, now, phone
    else:
        return False
    session.flush()  # the row is the record: opened, released, by which ticket
    return True


def release_hold(*, session: Session, tenant_id: int, source: str, now: dt.datetime) -> bool:
    """The ticket ``source`` is resolved: its hold ends (others on the number still hold)."""
    hold = session.scalars(
        select(MarketingHold).where(
            MarketingHold.tenant_id == tenant_id,
            MarketingHold.source == source,
            MarketingHold.released_at.is_(None),
        )
    ).first()
    if hold is None:
        return False
    hold.released_at = now
    session.flush()
    return True


def active_holds(
    *, session: Session, tenant_id: int, phone: str | None = None
) -> list[MarketingHold]:
    """The company's holds in force (of one number), the oldest first."""
    query = select(MarketingHold).where(
        MarketingHold.tenant_id == tenant_id, MarketingHold.released_at.is_(None)
    )
    if phone is not None:
        query = query.where(MarketingHold.phone == phone)
    return list(session.scalars(query.order_by(MarketingHold.opened_at, MarketingHold.id)))


def _held(
    session: Session, numbers: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], MarketingHold]:
    """The oldest hold in force of each (company, phone) asked about, in one query."""
    if not numbers:
        return {}
    wanted = set(numbers)
    found: dict[tuple[int, str], MarketingHold] = {}
    for row in session.scalars(
        select(MarketingHold)
        .where(
            MarketingHold.tenant_id.in_({tenant_id for tenant_id, _ in numbers}),
            MarketingHold.phone.in_({phone for _, phone in numbers}),
            MarketingHold.released_at.is_(None),
        )
        .order_by(MarketingHold.opened_at, MarketingHold.id)
    ):
        if (row.tenant_id, row.phone) in wanted:
            found.setdefault((row.tenant_id, row.phone), row)
    return found


def hold_reason(hold: MarketingHold) -> str:
    """Why a hold stops marketing, in the gate's English detail."""
    what = (
        "a low rating (不满意) on a visit report"
        if hold.reason == HOLD_LOW_RATING
        else "a complaint"
    )
    return (
        f"The customer has {what} open since {hold.opened_at:%Y-%m-%d}; marketing waits "
        "until the office resolves it (service messages still go)."
    )


# --- the gate -------------------------------------------------------------------------------


def compose(*, tenant: Tenant, policy: CompliancePolicy, body: str, category: Category) -> str:
    """The text as sent: 【signature】 first, the opt-out footer on marketing."""
    text_ = f"【{tenant.signature}】{body.strip()}"
    footer = policy.opt_out_footer.strip()
    if category == "marketing" and footer and footer not in body:
        text_ = f"{text_} {footer}"
    return text_


def _rule_problem(body: str, final: str, max_chars: int) -> str | None:
    if "【" in body or "】" in body:
        return (
            "The text has 【】 of its own; carriers only allow the company signature in "
            "【】, at the very start. Use other brackets such as 「」."
        )
    if len(final) > max_chars:
        return (
            f"The message is {len(final)} characters with signature and footer; this "
            f"provider takes {max_chars}. Shorten the text."
        )
    return None


def next_window(*, policy: CompliancePolicy, timezone: str, now: dt.datetime) -> dt.datetime | None:
    """None when ``now`` is inside the sending window in ``timezone``; else its next start."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    minute = local.hour * 60 + local.minute
    if policy.window_start_minute <= minute < policy.window_end_minute:
        return None
    day = (
        local.date()
        if minute < policy.window_start_minute
        else (local.date() + dt.timedelta(days=1))
    )
    hours, minutes = divmod(policy.window_start_minute, 60)
    # Built from the local wall clock and resolved by zoneinfo, so a day that loses or
    # gains an hour (daylight saving abroad) still lands on the window's start.
    start = dt.datetime(day.year, day.month, day.day, hours, minutes, tzinfo=zone)
    return start.astimezone(dt.UTC)


def number_key(phone: str) -> int:
    """The number's half of its lock's key (the company's id is the other)."""
    return zlib.crc32(phone.encode()) - 2**31  # fits int4


def number_lock(tenant_id: ColumnElement[int]) -> ColumnElement[Any]:
    """PostgreSQL: ``_lock_number``'s lock as an expression, for a caller that takes it in
    a statement of its own (the company ``tenant_id``; the bind ``number_key`` is
    ``number_key(phone)``)."""
    return func.pg_advisory_xact_lock(
        cast_(tenant_id, Integer()), bindparam("number_key", type_=Integer())
    )


def _lock_number(session: Session, tenant_id: int, phone: str) -> None:
    """Serialise gate decisions for one number, so two workers cannot both pass the cap."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:tenant, :key)"),
            {"tenant": tenant_id, "key": number_key(phone)},
        )
    # SQLite: every write transaction already holds the database lock (BEGIN IMMEDIATE).


def marketing_sent(*, session: Session, tenant_id: int, phone: str, since: dt.datetime) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(MarketingSend)
            .where(
                MarketingSend.tenant_id == tenant_id,
                MarketingSend.phone == phone,
                MarketingSend.allowed_at >= since,
            )
        )
        or 0
    )


def uncount_marketing(*, session: Session, message_refs: Sequence[str]) -> None:
    """Take marketing messages that never reached the customer (the provider refused them,
    or every retry failed) out of the frequency cap. Called in the transaction whose gate
    counted them, so the numbers are still locked."""
    if message_refs:
        session.execute(delete(MarketingSend).where(MarketingSend.message_ref.in_(message_refs)))


class Recipient(Protocol):
    """What the gate needs of the customer a message goes to (a ``Customer`` row, or the
    columns a batch of sends read of it)."""

    @property
    def id(self) -> int: ...

    @property
    def phone(self) -> str: ...

    @property
    def timezone(self) -> str: ...


@dataclass(frozen=True)
class Ask:
    """One message for the gate: to whom, what, and the provider's length limit."""

    tenant: Tenant
    customer: Recipient
    category: Category
    body: str
    message_ref: str
    max_chars: int


def gate(
    *,
    session: Session,
    tenant: Tenant,
    customer: Customer,
    category: Category,
    body: str,
    message_ref: str,
    max_chars: int,
    now: dt.datetime,
) -> Verdict:
    """Decide whether ``body`` may go to ``customer`` now; record the decision.

    Order: opt-out, consent (marketing), message rules, quiet hours (defer, never drop),
    frequency cap (marketing; counted under a per-number lock, and the send is counted as
    part of the same decision).
    """
    return gate_many(
        session=session,
        asks=[Ask(tenant, customer, category, body, message_ref, max_chars)],
        now=now,
    )[0]


def gate_many(*, session: Session, asks: Sequence[Ask], now: dt.datetime) -> list[Verdict]:
    """``gate`` for a batch of messages, in a few set-based statements whatever its size.

    The numbers are locked first, all of them, in one order (so two batches never wait for
    each other in a circle); then the suppressions, consents and marketing counts of every
    number are read at once, each message is decided as ``gate`` decides one — a marketing
    message allowed earlier in the batch counts against the cap of the next one to the
    same number — and the decisions are written together.
    """
    if not asks:
        return []
    policies = {
        tenant_id: policy_for(session=session, tenant_id=tenant_id)
        for tenant_id in sorted({ask.tenant.id for ask in asks})
    }
    numbers = sorted({(ask.tenant.id, ask.customer.phone) for ask in asks})
    _lock_numbers(session, numbers)
    suppressions = _active_suppressions(session, numbers)
    marketing = sorted(
        {(ask.tenant.id, ask.customer.phone) for ask in asks if ask.category == "marketing"}
    )
    consented = _consented(session, marketing)
    held = _held(session, marketing)
    refs = [ask.message_ref for ask in asks if ask.category == "marketing"]
    counted = (
        set(
            session.scalars(
                select(MarketingSend.message_ref).where(MarketingSend.message_ref.in_(refs))
            )
        )
        if refs
        else set()
    )
    sent = _marketing_counts(session, marketing, policies, now)
    verdicts: list[Verdict] = []
    allowed: list[dict[str, object]] = []
    for ask in asks:
        number = (ask.tenant.id, ask.customer.phone)
        verdict = _decide(
            ask=ask,
            policy=policies[ask.tenant.id],
            now=now,
            suppression=suppressions.get((*number, ask.tenant.signature)),
            consented=number in consented,
            sent=sent.get(number, 0),
            counted=ask.message_ref in counted,
            held=held.get(number),
        )
        if verdict.allowed and ask.category == "marketing" and ask.message_ref not in counted:
            counted.add(ask.message_ref)
            sent[number] = sent.get(number, 0) + 1
            allowed.append(
                {
                    "tenant_id": ask.tenant.id,
                    "phone": ask.customer.phone,
                    "message_ref": ask.message_ref,
                    "allowed_at": now,
                }
            )
        verdicts.append(verdict)
    if session.get_bind().dialect.name == "postgresql":
        # One statement for the batch (one array per column) rather than one per row.
        insert_rows(
            session,
            cast(Table, ComplianceDecision.__table__),
            _DECISION_COLUMNS,
            [
                (
                    ask.tenant.id,
                    ask.customer.id,
                    ask.customer.phone,
                    ask.message_ref,
                    ask.category,
                    verdict.decision,
                    verdict.reason,
                    verdict.detail,
                    verdict.not_before,
                )
                for ask, verdict in zip(asks, verdicts, strict=True)
            ],
            same={"decided_at": now},
        )
        if allowed:
            insert_rows(
                session,
                cast(Table, MarketingSend.__table__),
                _COUNTED_COLUMNS,
                [tuple(row[name] for name in _COUNTED_COLUMNS) for row in allowed],
            )
        return verdicts
    session.execute(
        insert(cast(Table, ComplianceDecision.__table__)),
        [
            {
                "tenant_id": ask.tenant.id,
                "customer_id": ask.customer.id,
                "phone": ask.customer.phone,
                "message_ref": ask.message_ref,
                "category": ask.category,
                "decision": verdict.decision,
                "reason": verdict.reason,
                "detail": verdict.detail,
                "not_before": verdict.not_before,
                "decided_at": now,
            }
            for ask, verdict in zip(asks, verdicts, strict=True)
        ],
    )
    if allowed:
        session.execute(insert(cast(Table, MarketingSend.__table__)), allowed)
    return verdicts


_DECISION_COLUMNS = (
    "tenant_id",
    "customer_id",
    "phone",
    "message_ref",
    "category",
    "decision",
    "reason",
    "detail",
    "not_before",
)
_COUNTED_COLUMNS = ("tenant_id", "phone", "message_ref", "allowed_at")


def _lock_numbers(session: Session, numbers: Sequence[tuple[int, str]]) -> None:
    """``_lock_number`` for each (company, phone), in the order given (sorted by callers)."""
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: the transaction already holds the database's write lock
    if len(numbers) == 1:
        _lock_number(session, *numbers[0])
        return
    # The ordered subquery is kept apart (OFFSET 0), so the locks are taken in its order.
    driver_sql(
        session,
        "SELECT count(pg_advisory_xact_lock(t, k)) FROM (SELECT t, k FROM "
        "unnest(%(tenants)b::int[], %(keys)b::int[]) AS n(t, k) "
        "ORDER BY t, k OFFSET 0) AS ordered",
        {
            "tenants": [tenant_id for tenant_id, _ in numbers],
            "keys": [number_key(phone) for _, phone in numbers],
        },
    )


class OptedOut(Protocol):
    """What the gate reads of a number's active suppression."""

    @property
    def created_at(self) -> dt.datetime: ...

    @property
    def reason(self) -> str: ...


_SUPPRESSIONS = cast(Table, Suppression.__table__)


def _active_suppressions_statement(postgres: bool) -> Any:
    """Built once: the active suppressions of some companies' numbers, newest first. On
    PostgreSQL the companies and the numbers are one array each (the same statement
    whatever the batch's size); elsewhere expanding ``IN`` lists."""
    columns = _SUPPRESSIONS.c
    if postgres:
        tenants = columns.tenant_id == any_(bindparam("tenants", type_=ARRAY(BigInteger)))
        phones = columns.phone == any_(bindparam("phones", type_=ARRAY(columns.phone.type)))
    else:
        tenants = columns.tenant_id.in_(bindparam("tenants", expanding=True))
        phones = columns.phone.in_(bindparam("phones", expanding=True))
    return (
        select(
            columns.tenant_id, columns.phone, columns.signature, columns.created_at, columns.reason
        )
        .where(tenants, phones, columns.lifted_at.is_(None))
        .order_by(columns.id.desc())
    )


_ACTIVE_SUPPRESSIONS = {
    postgres: _active_suppressions_statement(postgres) for postgres in (True, False)
}


def _active_suppressions(
    session: Session, numbers: Sequence[tuple[int, str]]
) -> dict[tuple[int, str, str], OptedOut]:
    """The newest active suppression of each (company, phone, signature) asked about."""
    found: dict[tuple[int, str, str], OptedOut] = {}
    wanted = set(numbers)
    statement = _ACTIVE_SUPPRESSIONS[session.get_bind().dialect.name == "postgresql"]
    for row in session.execute(
        statement,
        {
            "tenants": sorted({tenant_id for tenant_id, _ in numbers}),
            "phones": sorted({phone for _, phone in numbers}),
        },
    ):
        if (row.tenant_id, row.phone) in wanted:
            found.setdefault((row.tenant_id, row.phone, row.signature), row)
    return found


def _consented(session: Session, numbers: Sequence[tuple[int, str]]) -> set[tuple[int, str]]:
    if not numbers:
        return set()
    rows = session.execute(
        select(ConsentRecord.tenant_id, ConsentRecord.phone).where(
            ConsentRecord.tenant_id.in_({tenant_id for tenant_id, _ in numbers}),
            ConsentRecord.phone.in_({phone for _, phone in numbers}),
            ConsentRecord.revoked_at.is_(None),
        )
    )
    return {(tenant_id, phone) for tenant_id, phone in rows} & set(numbers)


def _marketing_counts(
    session: Session,
    numbers: Sequence[tuple[int, str]],
    policies: dict[int, CompliancePolicy],
    now: dt.datetime,
) -> dict[tuple[int, str], int]:
    """Marketing messages each number got within its company's cap window."""
    counts: dict[tuple[int, str], int] = {}
    for tenant_id in sorted({tenant_id for tenant_id, _ in numbers}):
        since = now - dt.timedelta(days=policies[tenant_id].cap_window_days)
        phones = [phone for owner, phone in numbers if owner == tenant_id]
        for phone, count in session.execute(
            select(MarketingSend.phone, func.count())
            .where(
                MarketingSend.tenant_id == tenant_id,
                MarketingSend.phone.in_(phones),
                MarketingSend.allowed_at >= since,
            )
            .group_by(MarketingSend.phone)
        ):
            counts[(tenant_id, phone)] = int(count)
    return counts


def _decide(
    *,
    ask: Ask,
    policy: CompliancePolicy,
    now: dt.datetime,
    suppression: OptedOut | None,
    consented: bool,
    sent: int,
    counted: bool,
    held: MarketingHold | None = None,
) -> Verdict:
    """One message's verdict from what the batch read (the numbers are locked)."""
    tenant, customer, category = ask.tenant, ask.customer, ask.category
    if suppression is not None and category != "reply":
        return Verdict(
            SUPPRESS,
            OPTED_OUT,
            f"The customer opted out on {suppression.created_at:%Y-%m-%d} "
            f"({suppression.reason}); nothing more may be sent to this number.",
        )
    if category == "marketing" and not consented:
        return Verdict(
            SUPPRESS,
            NO_CONSENT,
            "No recorded consent to marketing messages; record it (at a visit, a "
            "web form or a reply) before sending offers.",
        )
    if held is not None and category == "marketing":
        return Verdict(SUPPRESS, COMPLAINT_HOLD, hold_reason(held))
    final = compose(tenant=tenant, policy=policy, body=ask.body, category=category)
    problem = _rule_problem(ask.body, final, ask.max_chars)
    if problem:
        return Verdict(REFUSE, MESSAGE_RULES, problem)
    not_before = (
        None
        if category == "reply"
        else next_window(policy=policy, timezone=customer.timezone, now=now)
    )
    if not_before is not None:
        local = not_before.astimezone(ZoneInfo(customer.timezone))
        return Verdict(
            DEFER,
            QUIET_HOURS,
            f"Quiet hours for the customer ({customer.timezone}); it goes out at "
            f"{local:%Y-%m-%d %H:%M} local time.",
            not_before=not_before,
        )
    if category == "marketing" and not counted and sent >= policy.marketing_cap:
        return Verdict(
            SUPPRESS,
            FREQUENCY_CAP,
            f"The customer already got {sent} marketing messages in "
            f"{policy.cap_window_days} days, the company's limit.",
        )
    return Verdict(SEND, ALLOWED, "Allowed.", text=final)


def preview(
    *,
    session: Session,
    tenant: Tenant,
    customer: Customer,
    category: Category,
    body: str,
    max_chars: int,
    now: dt.datetime,
) -> Verdict:
    """What ``gate`` would decide for ``body`` now, without locking, counting or recording.

    For a person about to send (an answer typed in the console): a message the gate would
    refuse is not even scheduled, and they are told why. The send itself still passes
    ``gate`` when it goes out, which decides.
    """
    number = (tenant.id, customer.phone)
    policy = policy_for(session=session, tenant_id=tenant.id)
    marketing = [number] if category == "marketing" else []
    return _decide(
        ask=Ask(tenant, customer, category, body, "preview", max_chars),
        policy=policy,
        now=now,
        suppression=_active_suppressions(session, [number]).get((*number, tenant.signature)),
        consented=number in _consented(session, marketing),
        sent=_marketing_counts(session, marketing, {tenant.id: policy}, now).get(number, 0),
        counted=False,
        held=_held(session, marketing).get(number),
    )


def explain(
    *, session: Session, tenant: Tenant, customer: Customer, now: dt.datetime
) -> dict[str, dict[str, object]]:
    """Whether the customer can receive marketing and service messages now, and why not."""
    policy = policy_for(session=session, tenant_id=tenant.id)
    suppression = active_suppression(session=session, tenant=tenant, phone=customer.phone)
    consent = active_consent(session=session, tenant_id=tenant.id, phone=customer.phone)
    window = next_window(policy=policy, timezone=customer.timezone, now=now)
    later: list[str] = []
    if window is not None:
        local = window.astimezone(ZoneInfo(customer.timezone))
        later.append(
            f"It is quiet hours for the customer; messages wait until {local:%H:%M} local time."
        )
    service: list[str] = []
    marketing: list[str] = []
    if suppression is not None:
        why = f"Opted out on {suppression.created_at:%Y-%m-%d} ({suppression.reason})."
        service.append(why)
        marketing.append(why)
    for hold in active_holds(session=session, tenant_id=tenant.id, phone=customer.phone)[:1]:
        marketing.append(hold_reason(hold))
    if consent is None:
        marketing.append("No recorded consent to marketing messages.")
    else:
        sent = marketing_sent(
            session=session,
            tenant_id=tenant.id,
            phone=customer.phone,
            since=now - dt.timedelta(days=policy.cap_window_days),
        )
        if sent >= policy.marketing_cap:
            marketing.append(
                f"Already {sent} marketing messages in the last "
                f"{policy.cap_window_days} days (the limit)."
            )
    return {
        "marketing": {"can_receive": not marketing, "reasons": marketing, "later": later},
        "service": {"can_receive": not service, "reasons": service, "later": later},
    }
