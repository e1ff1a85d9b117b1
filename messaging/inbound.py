"""Customers' replies: recorded once, routed by keyword, acted on before the webhook answers.

``receive`` is what every inbound webhook (Twilio, Aliyun SmsUp) and the embedded-mode
simulator call. In one transaction it records the reply with the rule that routed it and
does what the route asks:

- ``opt_out``: the suppression is committed with the reply (the webhook answers only after
  the commit), and one confirmation is sent; a second STOP finds the suppression already
  there and sends nothing;
- ``opt_in``: the suppression is lifted, the reply is recorded as consent, one confirmation;
- ``help``: an answer with the company's name and how to stop or book;
- ``book``: a booking request without a time (staff call back), tied to the message the
  customer answered, acknowledged at once; it also waits in the inbox (``state = open``);
- ``other``: waits in the company's inbox; complaints are flagged for service recovery.

Confirmations are ordinary outbox messages of category ``reply`` (the gate lets them
through the opt-out the customer just sent, and outside quiet hours: the customer is the
one who wrote). They are created due now and their ids returned: ``queued`` for a webhook,
which enqueues them once its transaction commits (``take_reply``), otherwise
``scheduled``, for the dispatcher's next tick (the CLI's simulated replies).

Which company a reply is for: Aliyun pushes to each company's own path. Twilio numbers
may be shared by several companies, so a reply goes to the company that last wrote to the
number; an opt-out applies to every company that has the number, since the carrier stops
that sender for that recipient whoever it sends for.

Over 800 lines: the reply's path (with its one-statement form for PostgreSQL) and the inbox
and tickets built on the same rows; the sections are marked ``# ---`` where it would split.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import BigInteger, Select, String, Table, and_, bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access import audit
from access.actors import Actor
from alerts import events as alert_events
from compliance import service as compliance
from compliance.models import HOLD_COMPLAINT, HOLD_LOW_RATING
from customers.models import Customer
from customers.phones import normalize_phone
from huifang.db import as_utc, dialect_of, insert_or_skip, utcnow
from huifang.errors import Conflict, Invalid, NotFound
from huifang.sql import Prepared
from messaging import keywords, sms_templates, tasks
from messaging.models import (
    BOOK,
    HANDLED,
    HELP,
    OPEN,
    OPT_IN,
    OPT_OUT,
    QUEUED,
    SCHEDULED,
    InboundMessage,
    KeywordRule,
    Message,
)
from messaging.service import reply_message, reply_message_ctes, reply_message_values
from tenancy.languages import language_for
from tenancy.models import Tenant

MAX_TEXT = 1600  # longer than any SMS a phone can send (Twilio concatenates up to 1,600)

# What a "1" reply books (``bookings.service.book_from_reply``), handed in by the caller:
# it returns the link where the customer picks the time (None: no booking was made).
BookHandler = Callable[..., str | None]


@dataclass
class Received:
    """What a reply did: the replies recorded (ids, one per company) and messages to send now."""

    reply_ids: list[int] = field(default_factory=list)
    send_now: list[int] = field(default_factory=list)
    duplicate: bool = False


@dataclass(frozen=True)
class _Company:
    """A company the reply is for, with its customer at the number and the last message sent."""

    id: int
    name: str
    signature: str
    customer_id: int | None
    last_message_id: int | None
    last_sent_at: dt.datetime | None
    has_keywords: bool  # its own keyword rules (most companies have none: no query for them)
    company_language: str
    customer_language: str | None

    @property
    def english(self) -> bool:
        """Answers follow the customer's language (else the company's), never the keyword's."""
        return language_for(self.customer_language, self.company_language) == "en"


def _answer(name: str, route: str, english: bool) -> str | None:
    if route == OPT_OUT:
        return (
            f"You will get no more texts from {name}. Reply START to resubscribe."
            if english
            else "您已退订，将不再收到我们的短信。如需恢复，请回复“订阅”。"
        )
    if route == OPT_IN:
        return (
            f"You are subscribed to {name} again. Reply STOP to unsubscribe."
            if english
            else "您已重新订阅，感谢信任。如需退订，请回复T。"
        )
    if route == HELP:
        return (
            f"{name}: reply 1 to book a visit, STOP to unsubscribe."
            if english
            else f"{name}：回复1预约上门服务，回复T退订。"
        )
    if route == BOOK:
        return (
            "Thanks, we got your booking request and will confirm a time shortly."
            if english
            else "已收到您的预约，我们会尽快与您联系确认上门时间。"
        )
    return None


# Each automatic answer's purpose: the approved template a provider like Aliyun sends it as.
_PURPOSE_OF_ROUTE = {
    OPT_OUT: sms_templates.OPT_OUT_CONFIRMATION,
    OPT_IN: sms_templates.OPT_IN_CONFIRMATION,
    HELP: sms_templates.HELP_ANSWER,
    BOOK: sms_templates.BOOKING_RECEIVED,
}


@functools.cache
def _companies_query(by_tenant: bool, lock: bool = False) -> Select[Any]:
    """Built once (statement construction costs more than the query here). With ``lock``
    (PostgreSQL) it also takes each company's lock on the number, as an opt-out does
    first (``compliance.number_lock``), in the order of the companies' ids."""
    # Core columns (the tables', not the mapped classes'): no ORM work per execution.
    tenants, customers_, messages = (
        cast(Table, model.__table__).c for model in (Tenant, Customer, Message)
    )
    sent = (
        select(messages.id, messages.sent_at)
        .where(
            messages.tenant_id == customers_.tenant_id,
            messages.customer_id == customers_.id,
            messages.sent_at.is_not(None),
        )
        .order_by(messages.sent_at.desc(), messages.id.desc())
        .limit(1)
    )
    last_id = sent.with_only_columns(messages.id).scalar_subquery()
    last_at = sent.with_only_columns(messages.sent_at).scalar_subquery()
    rules = cast(Table, KeywordRule.__table__).c
    has_keywords = select(rules.id).where(rules.tenant_id == tenants.id).exists()
    query = select(
        tenants.id,
        tenants.name,
        tenants.signature,
        customers_.id,
        last_id,
        last_at,
        has_keywords,
        tenants.language,
        customers_.language,
    )
    if lock:
        query = query.add_columns(compliance.number_lock(tenants.id))
    phone = bindparam("phone", type_=String())
    if by_tenant:
        query = query.select_from(
            cast(Table, Tenant.__table__).outerjoin(
                cast(Table, Customer.__table__),
                and_(customers_.tenant_id == tenants.id, customers_.phone == phone),
            )
        ).where(tenants.id == bindparam("tenant_id", type_=BigInteger()))
    else:
        query = query.select_from(
            cast(Table, Tenant.__table__).join(
                cast(Table, Customer.__table__), customers_.tenant_id == tenants.id
            )
        ).where(customers_.phone == phone)
    return query.order_by(tenants.id, customers_.id)


# PostgreSQL, an opt-out: run by the driver (``huifang.sql.Prepared``), as a webhook's.
_COMPANIES_LOCKING = Prepared(_companies_query(by_tenant=False, lock=True))


def _companies(
    session: Session, phone: str, tenant_id: int | None, lock: bool = False
) -> list[_Company]:
    """The companies a reply from ``phone`` is for, the one that last wrote to it first.

    One query: each company with its first customer at the number, that customer's last
    sent message, and whether the company has keyword rules of its own. With ``tenant_id``
    (a per-company webhook path) only that company, with or without a customer at the
    number. With ``lock`` (PostgreSQL) it also locks the number for each company.
    """
    found: dict[int, _Company] = {}
    latest: dict[int, dt.datetime] = {}
    if lock:
        assert tenant_id is None
        rows: Any = _COMPANIES_LOCKING.rows(
            session, {"phone": phone, "number_key": compliance.number_key(phone)}
        )
    else:
        rows = session.execute(
            _companies_query(tenant_id is not None), {"phone": phone, "tenant_id": tenant_id}
        )
    for row in rows:
        if row[0] not in found:  # the time as the driver read it, moved to UTC
            id_, name, signature, customer, last_id, last_at, keywords_, language, own = row[:9]
            found[id_] = _Company(
                id_, name, signature, customer, last_id, as_utc(last_at), keywords_, language, own
            )
        at: dt.datetime | None = row[5]
        if at is not None:
            latest[row[0]] = max(latest.get(row[0], at), at)
    newest = max(latest, key=lambda t: latest[t]) if latest else None
    return sorted(found.values(), key=lambda company: company.id != newest)


def _existing(
    session: Session, tenant_id: int | None, provider: str, provider_message_id: str
) -> int | None:
    return session.scalars(
        select(InboundMessage.id).where(
            InboundMessage.tenant_id == tenant_id
            if tenant_id is not None
            else InboundMessage.tenant_id.is_(None),
            InboundMessage.provider == provider,
            InboundMessage.provider_message_id == provider_message_id,
        )
    ).first()


def _confirm(
    session: Session,
    company: _Company,
    route: str,
    cause: str,
    now: dt.datetime,
    queue: bool,
    pick_url: str | None = None,
) -> int | None:
    body = _answer(company.name, route, company.english)
    if body is None or company.customer_id is None:
        return None
    purpose, variables = _PURPOSE_OF_ROUTE[route], None
    if pick_url:  # a "1" reply's booking: the answer says where to pick the time
        body = (
            f"Thanks, we got your booking request. Pick a time here: {pick_url}"
            if company.english
            else f"已收到您的预约，请点击链接选择上门时间：{pick_url}"
        )
        purpose = sms_templates.BOOKING_PICK_TIME
        variables = {"booking_token": pick_url.rsplit("/b/", 1)[-1]}
    return reply_message(
        session=session,
        tenant_id=company.id,
        customer_id=company.customer_id,
        source_type=f"{route}_reply",
        source_id=cause,
        body=body,
        now=now,
        queue=queue,
        purpose=purpose,
        variables=variables,
    )


@functools.cache
def _insert_reply(dialect: str) -> Any:
    table = InboundMessage.__table__
    return (
        insert_or_skip(dialect, table)
        .on_conflict_do_nothing(index_elements=["tenant_id", "provider", "provider_message_id"])
        .returning(table.c.id)
    )


def _record(
    session: Session,
    company: _Company | None,
    *,
    provider: str,
    provider_message_id: str,
    phone: str,
    text: str,
    routing: keywords.Routing,
    now: dt.datetime,
) -> tuple[int, bool]:
    """The reply's row, written once: its id, and False when a delivery already wrote it.

    ``INSERT … ON CONFLICT DO NOTHING`` on (company, provider, provider id): a repeated
    delivery, even one racing this one, finds the row there and changes nothing.
    """
    tenant_id = company.id if company is not None else None
    if tenant_id is None:  # NULLs never conflict: look first (only numbers no company has)
        existing = _existing(session, None, provider, provider_message_id)
        if existing is not None:
            return existing, False
    values = _reply_values(
        company,
        provider=provider,
        provider_message_id=provider_message_id,
        phone=phone,
        text=text,
        routing=routing,
        now=now,
    )
    created = session.execute(_insert_reply(dialect_of(session)), values).scalar_one_or_none()
    if created is None:
        again = _existing(session, tenant_id, provider, provider_message_id)
        assert again is not None
        return again, False
    return created, True


def _reply_values(
    company: _Company | None,
    *,
    provider: str,
    provider_message_id: str,
    phone: str,
    text: str,
    routing: keywords.Routing,
    now: dt.datetime,
) -> dict[str, Any]:
    """The reply's row."""
    return {
        "tenant_id": company.id if company is not None else None,
        "customer_id": company.customer_id if company else None,
        "phone": phone,
        "body": text,
        "provider": provider,
        "provider_message_id": provider_message_id,
        "received_at": now,
        "in_reply_to_id": company.last_message_id if company else None,
        "route": routing.route,
        "rule": routing.rule,
        "normalized": routing.normalized[:500],
        "complaint": routing.complaint,
        "complaint_rule": routing.complaint_rule,
        "state": OPEN if routing.route in (BOOK, keywords.OTHER) else HANDLED,
    }


# --- an opt-out in one statement (PostgreSQL) ------------------------------------------------

_REPLY_FIELDS = (
    "tenant_id",
    "customer_id",
    "phone",
    "body",
    "provider",
    "provider_message_id",
    "received_at",
    "in_reply_to_id",
    "route",
    "rule",
    "normalized",
    "complaint",
    "complaint_rule",
    "state",
)


@functools.cache
def _opt_out_statement(statuses: tuple[str, ...]) -> Prepared:
    """PostgreSQL: a company's opt-out reply in one statement: the reply (``_insert_reply``)
    and, when it is new, the opt-out (``compliance.opt_out_ctes``) and, when that is new,
    the confirmation with its history (``messaging.service.reply_message_ctes``). Its row:
    the reply's id (NULL: a repeated delivery), the suppression's (NULL: already opted
    out), how many consents were revoked, the confirmation's id. The number is locked by
    an earlier statement (``_companies_query(lock=True)``)."""
    table = cast(Table, InboundMessage.__table__)
    reply = (
        postgresql.insert(table)
        .values({name: bindparam(f"r_{name}", type_=table.c[name].type) for name in _REPLY_FIELDS})
        .on_conflict_do_nothing(index_elements=["tenant_id", "provider", "provider_message_id"])
        .returning(table.c.id)
        .cte("reply")
    )
    added, revoked = compliance.opt_out_ctes(when=select(reply.c.id).exists())
    message, history = reply_message_ctes(added, statuses)
    return Prepared(
        select(
            select(reply.c.id).scalar_subquery(),
            select(added.c.id).scalar_subquery(),
            select(func.count()).select_from(revoked).scalar_subquery(),
            select(message.c.id).scalar_subquery(),
        ).add_cte(history)
    )


def _at_once(session: Session) -> bool:
    """Whether an opt-out found by number takes one statement per company: PostgreSQL
    (the number is locked as the companies are found, then ``_opt_out_at_once``)."""
    return dialect_of(session) == "postgresql"


def _opt_out_at_once(
    session: Session,
    company: _Company,
    *,
    provider: str,
    provider_message_id: str,
    phone: str,
    text: str,
    routing: keywords.Routing,
    now: dt.datetime,
    queue: bool,
) -> tuple[int | None, int | None]:
    """``_record`` and ``_act`` of an opt-out in one round trip (``_opt_out_statement``),
    the same rows: the reply's id (None: already recorded) and the confirmation's."""
    assert company.customer_id is not None
    reason, detail = "reply_opt_out", f"Replied {text[:100]!r}"
    values = {
        f"r_{name}": value
        for name, value in _reply_values(
            company,
            provider=provider,
            provider_message_id=provider_message_id,
            phone=phone,
            text=text,
            routing=routing,
            now=now,
        ).items()
    }
    values.update(
        compliance.opt_out_values(
            tenant=company, phone=phone, reason=reason, detail=detail, now=now
        )
    )
    body = _answer(company.name, OPT_OUT, company.english)
    assert body is not None
    values.update(
        reply_message_values(
            tenant_id=company.id,
            customer_id=company.customer_id,
            source_type=f"{OPT_OUT}_reply",
            source_id="suppression-",
            body=body,
            now=now,
            queue=queue,
            purpose=_PURPOSE_OF_ROUTE[OPT_OUT],
        )
    )
    statuses = (SCHEDULED, QUEUED) if queue else (SCHEDULED,)
    [(reply_id, suppression_id, revoked, message_id)] = _opt_out_statement(statuses).rows(
        session, values
    )
    if suppression_id is not None:
        compliance.opted_out(
            session=session,
            phone=phone,
            reason=reason,
            detail=detail,
            suppression_id=suppression_id,
            revoked=bool(revoked),
        )
    return reply_id, message_id


# --- acting on a reply ----------------------------------------------------------------------


def _act(
    session: Session,
    company: _Company,
    reply_id: int,
    phone: str,
    text: str,
    routing: keywords.Routing,
    now: dt.datetime,
    queue: bool,
    on_book: BookHandler,
) -> int | None:
    route = routing.route
    if route == OPT_OUT:
        suppression_id, new = compliance.opt_out(
            session=session,
            tenant=company,
            phone=phone,
            reason="reply_opt_out",
            detail=f"Replied {text[:100]!r}",
            now=now,
        )
        if new:
            return _confirm(session, company, OPT_OUT, f"suppression-{suppression_id}", now, queue)
        return None
    if route == OPT_IN:
        tenant_row = session.get(Tenant, company.id)
        assert tenant_row is not None
        lifted = compliance.opt_in(session=session, tenant=tenant_row, phone=phone, now=now)
        customer = (
            session.get(Customer, company.customer_id) if company.customer_id is not None else None
        )
        if customer is not None:
            # Consent already on record: the reply is kept, and the ledger keeps the consent
            # it has (its evidence is the original one).
            if (
                compliance.active_consent(
                    session=session, tenant_id=company.id, phone=customer.phone
                )
                is None
            ):
                compliance.record_consent(
                    session=session,
                    tenant_id=company.id,
                    customer=customer,
                    source="reply",
                    evidence=f"Replied {text[:100]!r} (reply {reply_id})",
                    granted_at=now,
                    now=now,
                )
            if lifted:
                return _confirm(session, company, OPT_IN, f"reply-{reply_id}", now, queue)
        return None
    if route == BOOK:
        reply = session.get(InboundMessage, reply_id)
        assert reply is not None
        pick_url = on_book(session=session, reply=reply, now=now)
        return _confirm(session, company, route, f"reply-{reply_id}", now, queue, pick_url)
    if route == HELP:
        return _confirm(session, company, route, f"reply-{reply_id}", now, queue)
    return None


def receive(
    *,
    session: Session,
    provider: str,
    provider_message_id: str,
    phone: str,
    text: str,
    now: dt.datetime,
    on_book: BookHandler,
    tenant: Tenant | None = None,
    region: str = "CN",
    queue: bool = False,
) -> Received:
    """Record and act on one reply; a repeated delivery of the same reply does nothing.

    ``tenant`` is given when the provider says whose reply it is (a per-company path);
    otherwise the companies are found from the number. ``region`` reads a number written
    without its country code (Aliyun sends 11-digit mainland numbers). With ``queue`` the
    answers are created ``queued`` (the caller enqueues ``send_now`` once this commits);
    otherwise ``scheduled``, due now, for the dispatcher's next tick. ``on_book`` makes the
    booking request of a "1" reply (``bookings.service.book_from_reply``: bookings build on
    messaging, so the caller hands it in).

    The hot path (a STOP) is a handful of set-based statements: the companies, their
    keyword rules, the reply (``INSERT … ON CONFLICT DO NOTHING``), the number's lock, the
    suppression (``INSERT … WHERE NOT EXISTS``), the consent's revocation and the one
    confirmation with its history. On PostgreSQL, for a STOP found by number, that is two
    statements run by the driver: the companies, taking the number's lock for each, then
    per company the rest in one (``_opt_out_at_once``); the same rows either way.
    """
    if not provider_message_id.strip():
        raise Invalid("A reply needs the provider's message id, so a repeat is not counted twice.")
    number = normalize_phone(phone, region=tenant.phone_region if tenant else region)
    text = text[:MAX_TEXT]
    usual = keywords.route(text)  # the route unless a company's own keywords say otherwise
    at_once = tenant is None and usual.route == OPT_OUT and _at_once(session)
    found = _companies(session, number, tenant.id if tenant is not None else None, at_once)
    companies: list[_Company | None] = list(found) if found else [None]
    rules = _rules_for(session, [c.id for c in found if c.has_keywords])
    result = Received()
    for index, company in enumerate(companies):
        extra = rules.get(company.id, ()) if company else ()
        routing = keywords.route(text, extra=extra) if extra else usual
        # Only an opt-out reaches every company with the number; anything else is for
        # the company that last wrote to it.
        if index > 0 and routing.route != OPT_OUT:
            break
        if (
            at_once
            and company is not None
            and company.customer_id is not None
            and routing.route == OPT_OUT
            and not routing.complaint
        ):
            reply_id, queued = _opt_out_at_once(
                session,
                company,
                provider=provider,
                provider_message_id=provider_message_id,
                phone=number,
                text=text,
                routing=routing,
                now=now,
                queue=queue,
            )
            if reply_id is None:  # a repeated delivery: nothing was written
                reply_id = _existing(session, company.id, provider, provider_message_id)
                assert reply_id is not None
                result.duplicate = True
            result.reply_ids.append(reply_id)
            if queued is not None:
                result.send_now.append(queued)
            continue
        reply_id, new = _record(
            session,
            company,
            provider=provider,
            provider_message_id=provider_message_id,
            phone=number,
            text=text,
            routing=routing,
            now=now,
        )
        result.reply_ids.append(reply_id)
        if not new:
            result.duplicate = True
            continue
        if company is not None:
            if routing.complaint:
                reply = session.get(InboundMessage, reply_id)
                if reply is not None:
                    sync_hold(session=session, reply=reply, now=now)
                    alert_events.complaint(session=session, reply=reply)
            queued = _act(session, company, reply_id, number, text, routing, now, queue, on_book)
            if queued is not None:
                result.send_now.append(queued)
    return result


def replies(*, session: Session, received: Received) -> list[InboundMessage]:
    """The rows a reply recorded (for the simulator and the CLI, which show them)."""
    rows = {
        row.id: row
        for row in session.scalars(
            select(InboundMessage).where(InboundMessage.id.in_(received.reply_ids))
        )
    }
    return [rows[i] for i in received.reply_ids]


_KEYWORDS = cast(Table, KeywordRule.__table__).c
_RULES = (
    select(_KEYWORDS.id, _KEYWORDS.tenant_id, _KEYWORDS.route, _KEYWORDS.kind, _KEYWORDS.value)
    .where(_KEYWORDS.tenant_id.in_(bindparam("tenant_ids", expanding=True)))
    .order_by(_KEYWORDS.id)
)


def _rules_for(session: Session, tenant_ids: list[int]) -> dict[int, tuple[keywords.Rule, ...]]:
    """The companies' own keyword rules (checked before the built-in ones), in one query."""
    rules: dict[int, list[keywords.Rule]] = {}
    if tenant_ids:
        for row in session.execute(_RULES, {"tenant_ids": tenant_ids}):
            rules.setdefault(row.tenant_id, []).append(
                keywords.Rule(
                    name=f"tenant:{row.id}", route=row.route, kind=row.kind, value=row.value
                )
            )
    return {tenant_id: tuple(found) for tenant_id, found in rules.items()}


# --- the inbox and the company's keywords ---------------------------------------------------


def list_replies(
    *,
    session: Session,
    tenant_id: int,
    state: str | None = None,
    customer_id: int | None = None,
    limit: int = 200,
) -> list[InboundMessage]:
    """The company's replies, newest first (``state="open"`` is the inbox)."""
    query = select(InboundMessage).where(InboundMessage.tenant_id == tenant_id)
    if state is not None:
        query = query.where(InboundMessage.state == state)
    if customer_id is not None:
        query = query.where(InboundMessage.customer_id == customer_id)
    return list(
        session.scalars(
            query.order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc()).limit(limit)
        )
    )


def get_reply(*, session: Session, tenant_id: int, reply_id: int) -> InboundMessage:
    reply = session.get(InboundMessage, reply_id)
    if reply is None or reply.tenant_id != tenant_id:
        raise NotFound("There is no such reply.")
    return reply


def update_reply(
    *,
    session: Session,
    tenant_id: int,
    reply_id: int,
    now: dt.datetime,
    state: str | None = None,
    owner: str | None = None,
    responded: bool | None = None,
    resolution: str | None = None,
) -> InboundMessage:
    """Work on an inbox item: take it, answer it, resolve it (which closes it)."""
    reply = get_reply(session=session, tenant_id=tenant_id, reply_id=reply_id)
    if owner is not None:
        reply.owner = owner.strip()
    if responded and reply.first_response_at is None:
        reply.first_response_at = now
    if resolution is not None:
        reply.resolution = resolution.strip()
        reply.resolved_at = reply.resolved_at or now
        reply.first_response_at = reply.first_response_at or now
        reply.state = HANDLED
    if state is not None:
        reply.state = state
        if state == OPEN:
            reply.resolved_at = None
    session.flush()
    sync_hold(session=session, reply=reply, now=now)
    return reply


# --- service-recovery tickets and the marketing they hold ------------------------------------

# InboundMessage.provider of a ticket a low rating on a visit report opened (not a reply).
RATING_TICKET = "report"


def sync_hold(*, session: Session, reply: InboundMessage, now: dt.datetime) -> None:
    """An open complaint (or low-rating ticket) holds the customer's number from marketing;
    resolved, it lets go. Called wherever a complaint opens, closes or opens again."""
    if reply.tenant_id is None or not reply.complaint:
        return
    source = f"reply:{reply.id}"
    if reply.state == OPEN:
        compliance.hold_marketing(
            session=session,
            tenant_id=reply.tenant_id,
            phone=reply.phone,
            reason=HOLD_LOW_RATING if reply.provider == RATING_TICKET else HOLD_COMPLAINT,
            source=source,
            now=now,
        )
    else:
        compliance.release_hold(session=session, tenant_id=reply.tenant_id, source=source, now=now)


def open_ticket(
    *,
    session: Session,
    tenant_id: int,
    customer: Customer,
    key: str,
    body: str,
    now: dt.datetime,
    in_reply_to_id: int | None = None,
) -> tuple[InboundMessage, bool]:
    """A service-recovery ticket that did not come by SMS (a 不满意 on a report): an open
    complaint in the inbox like a complaint reply, with the same clock, owner, response
    and resolution, and the same hold on marketing. One per ``key``, ever: asking again
    finds the first (and changes nothing); the second value says whether it is new."""
    existing = session.scalars(
        select(InboundMessage).where(
            InboundMessage.tenant_id == tenant_id,
            InboundMessage.provider == RATING_TICKET,
            InboundMessage.provider_message_id == key,
        )
    ).first()
    if existing is not None:
        return existing, False
    ticket = InboundMessage(
        tenant_id=tenant_id,
        customer_id=customer.id,
        phone=customer.phone,
        body=body[:MAX_TEXT],
        provider=RATING_TICKET,
        provider_message_id=key,
        received_at=now,
        in_reply_to_id=in_reply_to_id,
        route=keywords.OTHER,
        rule=f"rating:{key}"[:64],
        normalized="",
        complaint=True,
        complaint_rule=None,
        state=OPEN,
    )
    try:
        with session.begin_nested():  # a second tap racing this one finds the first
            session.add(ticket)
            session.flush()
    except IntegrityError:
        return open_ticket(
            session=session, tenant_id=tenant_id, customer=customer, key=key, body=body, now=now
        )
    sync_hold(session=session, reply=ticket, now=now)
    return ticket, True


def add_keyword(
    *,
    session: Session,
    tenant_id: int,
    route: str,
    kind: str,
    value: str,
    now: dt.datetime,
    actor: Actor | None = None,
) -> KeywordRule:
    """A company's own keyword, checked before the built-in ones; 409 when it exists."""
    rule = keywords.validate_rule(keywords.Rule(name="new", route=route, kind=kind, value=value))
    row = KeywordRule(
        tenant_id=tenant_id, route=rule.route, kind=rule.kind, value=rule.value, created_at=now
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(
            f"The keyword {value!r} is already one of the company's rules; delete "
            "it first to route it elsewhere."
        ) from None
    audit.record(
        session,
        actor,
        "keyword_rule.added",
        f"keyword_rule:{row.id}",
        {"route": row.route, "kind": row.kind, "value": row.value},
        tenant_id=tenant_id,
    )
    return row


def list_keywords(*, session: Session, tenant_id: int) -> list[KeywordRule]:
    return list(
        session.scalars(
            select(KeywordRule).where(KeywordRule.tenant_id == tenant_id).order_by(KeywordRule.id)
        )
    )


def delete_keyword(
    *, session: Session, tenant_id: int, rule_id: int, actor: Actor | None = None
) -> None:
    row = session.get(KeywordRule, rule_id)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound("There is no such keyword rule.")
    audit.record(
        session,
        actor,
        "keyword_rule.deleted",
        f"keyword_rule:{row.id}",
        {"route": row.route, "kind": row.kind, "value": row.value},
        tenant_id=tenant_id,
    )
    session.delete(row)
    session.flush()


def take_reply(session: Session, *, on_book: BookHandler, **fields: Any) -> Received:
    """Record and act on a reply now; its answers are published once the caller commits."""
    received = receive(session=session, now=utcnow(), queue=True, on_book=on_book, **fields)
    tasks.answers.add_on_commit(session, received.send_now)
    return received
