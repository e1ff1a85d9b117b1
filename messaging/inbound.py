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
one who wrote). They are scheduled due now and returned, so a webhook can queue them at
once (``messaging.service.queue_now``); otherwise the dispatcher's tick sends them.

Which company a reply is for: Aliyun pushes to each company's own path. Twilio numbers
may be shared by several companies, so a reply goes to the company that last wrote to the
number; an opt-out applies to every company that has the number, since the carrier stops
that sender for that recipient whoever it sends for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from compliance import service as compliance
from customers.models import Customer
from customers.phones import normalize_phone
from huifang.db import as_utc
from huifang.errors import Conflict, Invalid, NotFound
from messaging import booking, keywords
from messaging.models import (
    BOOK,
    HANDLED,
    HELP,
    OPEN,
    OPT_IN,
    OPT_OUT,
    Booking,
    InboundMessage,
    KeywordRule,
    Message,
)
from messaging.service import schedule
from tenancy.models import Tenant

MAX_TEXT = 1600  # longer than any SMS a phone can send (Twilio concatenates up to 1,600)


@dataclass
class Received:
    """What a reply did: the rows recorded (one per company) and messages to send now."""

    replies: list[InboundMessage] = field(default_factory=list)
    send_now: list[int] = field(default_factory=list)
    duplicate: bool = False


def _english(routing: keywords.Routing) -> bool:
    return routing.normalized.isascii() and any(c.isalpha() for c in routing.normalized)


def _answer(tenant: Tenant, route: str, english: bool) -> str | None:
    name = tenant.name
    if route == OPT_OUT:
        return (f"You will get no more texts from {name}. Reply START to resubscribe."
                if english else "您已退订，将不再收到我们的短信。如需恢复，请回复“订阅”。")
    if route == OPT_IN:
        return (f"You are subscribed to {name} again. Reply STOP to unsubscribe."
                if english else "您已重新订阅，感谢信任。如需退订，请回复T。")
    if route == HELP:
        return (f"{name}: reply 1 to book a visit, STOP to unsubscribe."
                if english else f"{name}：回复1预约上门服务，回复T退订。")
    if route == BOOK:
        return ("Thanks, we got your booking request and will confirm a time shortly."
                if english else "已收到您的预约，我们会尽快与您联系确认上门时间。")
    return None


def _customer(session: Session, tenant_id: int, phone: str) -> Customer | None:
    return session.scalars(select(Customer).where(
        Customer.tenant_id == tenant_id, Customer.phone == phone).order_by(Customer.id)).first()


def _last_sent(session: Session, tenant_id: int, customer_id: int) -> Message | None:
    return session.scalars(select(Message).where(
        Message.tenant_id == tenant_id, Message.customer_id == customer_id,
        Message.sent_at.is_not(None)).order_by(Message.sent_at.desc(), Message.id.desc())
    ).first()


def companies_for(*, session: Session, phone: str) -> list[Tenant]:
    """Companies with a customer at ``phone``, the one that last wrote to it first."""
    rows = session.execute(
        select(Tenant, Customer.id).join(Customer, Customer.tenant_id == Tenant.id)
        .where(Customer.phone == phone).order_by(Tenant.id)).all()
    if not rows:
        return []
    latest = session.scalars(
        select(Message.tenant_id).where(Message.customer_id.in_([c for _, c in rows]),
                                        Message.sent_at.is_not(None))
        .order_by(Message.sent_at.desc(), Message.id.desc())).first()
    tenants = list(dict.fromkeys(tenant for tenant, _ in rows))
    tenants.sort(key=lambda t: t.id != latest)
    return tenants


def _existing(session: Session, tenant_id: int | None, provider: str,
              provider_message_id: str) -> InboundMessage | None:
    return session.scalars(select(InboundMessage).where(
        InboundMessage.tenant_id == tenant_id if tenant_id is not None
        else InboundMessage.tenant_id.is_(None),
        InboundMessage.provider == provider,
        InboundMessage.provider_message_id == provider_message_id)).first()


def _confirm(session: Session, tenant: Tenant, customer: Customer, route: str, cause: str,
             english: bool, now: dt.datetime) -> int | None:
    body = _answer(tenant, route, english)
    if body is None:
        return None
    message, new = schedule(session=session, tenant=tenant, customer=customer, channel="sms",
                            category="reply", source_type=f"{route}_reply", source_id=cause,
                            body=body, due_at=now)
    return message.id if new else None


def _record(session: Session, tenant: Tenant | None, *, provider: str,
            provider_message_id: str, phone: str, text: str, routing: keywords.Routing,
            now: dt.datetime) -> tuple[InboundMessage, Customer | None, bool]:
    tenant_id = tenant.id if tenant is not None else None
    existing = _existing(session, tenant_id, provider, provider_message_id)
    if existing is not None:
        return existing, None, False
    customer = _customer(session, tenant.id, phone) if tenant is not None else None
    replied_to = (_last_sent(session, tenant.id, customer.id)
                  if tenant is not None and customer is not None else None)
    reply = InboundMessage(
        tenant_id=tenant_id, customer_id=customer.id if customer else None, phone=phone,
        body=text, provider=provider, provider_message_id=provider_message_id,
        received_at=now, in_reply_to_id=replied_to.id if replied_to else None,
        route=routing.route, rule=routing.rule, normalized=routing.normalized[:500],
        complaint=routing.complaint, complaint_rule=routing.complaint_rule,
        state=OPEN if routing.route in (BOOK, keywords.OTHER) else HANDLED)
    try:
        with session.begin_nested():
            session.add(reply)
            session.flush()
    except IntegrityError:  # the same webhook, twice at once: the other one records it
        again = _existing(session, tenant_id, provider, provider_message_id)
        assert again is not None
        return again, None, False
    return reply, customer, True


def _act(session: Session, tenant: Tenant, reply: InboundMessage, customer: Customer | None,
         routing: keywords.Routing, now: dt.datetime) -> int | None:
    english = _english(routing)
    route = routing.route
    if route == OPT_OUT:
        suppression, new = compliance.opt_out(
            session=session, tenant=tenant, phone=reply.phone, reason="reply_opt_out",
            detail=f"Replied {reply.body[:100]!r}", now=now)
        if new and customer is not None:
            return _confirm(session, tenant, customer, OPT_OUT, f"suppression-{suppression.id}",
                            english, now)
        return None
    if route == OPT_IN:
        lifted = compliance.opt_in(session=session, tenant=tenant, phone=reply.phone, now=now)
        if customer is not None:
            compliance.record_consent(
                session=session, tenant_id=tenant.id, customer=customer, source="reply",
                evidence=f"Replied {reply.body[:100]!r} (reply {reply.id})", granted_at=now,
                now=now)
            if lifted:
                return _confirm(session, tenant, customer, OPT_IN, f"reply-{reply.id}",
                                english, now)
        return None
    if route == BOOK:
        booking.book_from_reply(session=session, reply=reply, now=now)
    if route in (HELP, BOOK) and customer is not None:
        return _confirm(session, tenant, customer, route, f"reply-{reply.id}", english, now)
    return None


def receive(*, session: Session, provider: str, provider_message_id: str, phone: str,
            text: str, now: dt.datetime, tenant: Tenant | None = None,
            region: str = "CN") -> Received:
    """Record and act on one reply; a repeated delivery of the same reply does nothing.

    ``tenant`` is given when the provider says whose reply it is (a per-company path);
    otherwise the companies are found from the number. ``region`` reads a number written
    without its country code (Aliyun sends 11-digit mainland numbers).
    """
    if not provider_message_id.strip():
        raise Invalid("A reply needs the provider's message id, so a repeat is not counted "
                      "twice.")
    number = normalize_phone(phone, region=tenant.phone_region if tenant else region)
    text = text[:MAX_TEXT]
    tenants: list[Tenant | None]
    if tenant is not None:
        tenants = [tenant]
    else:
        found = companies_for(session=session, phone=number)
        tenants = list(found) if found else [None]
    result = Received()
    for index, company in enumerate(tenants):
        extra = keywords_for(session=session, tenant_id=company.id) if company else ()
        routing = keywords.route(text, extra=extra)
        # Only an opt-out reaches every company with the number; anything else is for
        # the company that last wrote to it.
        if index > 0 and routing.route != OPT_OUT:
            break
        reply, customer, new = _record(session, company, provider=provider,
                                       provider_message_id=provider_message_id, phone=number,
                                       text=text, routing=routing, now=now)
        result.replies.append(reply)
        if not new:
            result.duplicate = True
            continue
        if company is not None:
            queued = _act(session, company, reply, customer, routing, now)
            if queued is not None:
                result.send_now.append(queued)
    session.flush()
    return result


def keywords_for(*, session: Session, tenant_id: int) -> tuple[keywords.Rule, ...]:
    """The company's own keyword rules (checked before the built-in ones)."""
    return tuple(keywords.Rule(name=f"tenant:{row.id}", route=row.route, kind=row.kind,
                               value=row.value)
                 for row in session.scalars(select(KeywordRule).where(
                     KeywordRule.tenant_id == tenant_id).order_by(KeywordRule.id)))


# --- the inbox and the company's keywords ---------------------------------------------------


def list_replies(*, session: Session, tenant_id: int, state: str | None = None,
                 customer_id: int | None = None, limit: int = 200) -> list[InboundMessage]:
    """The company's replies, newest first (``state="open"`` is the inbox)."""
    query = select(InboundMessage).where(InboundMessage.tenant_id == tenant_id)
    if state is not None:
        query = query.where(InboundMessage.state == state)
    if customer_id is not None:
        query = query.where(InboundMessage.customer_id == customer_id)
    return list(session.scalars(query.order_by(InboundMessage.received_at.desc(),
                                               InboundMessage.id.desc()).limit(limit)))


def get_reply(*, session: Session, tenant_id: int, reply_id: int) -> InboundMessage:
    reply = session.get(InboundMessage, reply_id)
    if reply is None or reply.tenant_id != tenant_id:
        raise NotFound("There is no such reply.")
    return reply


def update_reply(*, session: Session, tenant_id: int, reply_id: int, now: dt.datetime,
                 state: str | None = None, owner: str | None = None,
                 responded: bool | None = None, resolution: str | None = None
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
    return reply


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return round(ordered[middle], 1)
    return round((ordered[middle - 1] + ordered[middle]) / 2, 1)


def recovery_figures(*, session: Session, tenant_id: int, since: dt.datetime,
                     until: dt.datetime) -> dict[str, object]:
    """Complaints received in [since, until): response and resolution times, rebookings."""
    complaints = list(session.scalars(select(InboundMessage).where(
        InboundMessage.tenant_id == tenant_id, InboundMessage.complaint.is_(True),
        InboundMessage.received_at >= since, InboundMessage.received_at < until)))

    def minutes(later: dt.datetime | None, earlier: dt.datetime) -> float | None:
        end, start = as_utc(later), as_utc(earlier)
        return None if end is None or start is None else (end - start).total_seconds() / 60

    to_response = [m for c in complaints
                   if (m := minutes(c.first_response_at, c.received_at)) is not None]
    to_resolution = [m for c in complaints
                     if (m := minutes(c.resolved_at, c.received_at)) is not None]
    rebooked = 0
    for complaint in complaints:
        if complaint.customer_id is not None and session.scalar(select(Booking.id).where(
                Booking.tenant_id == tenant_id, Booking.customer_id == complaint.customer_id,
                Booking.created_at > complaint.received_at).limit(1)) is not None:
            rebooked += 1
    return {
        "since": since, "until": until, "complaints": len(complaints),
        "responded": len(to_response), "resolved": len(to_resolution),
        "open": sum(1 for c in complaints if c.state == OPEN),
        "median_minutes_to_first_response": _median(to_response),
        "median_minutes_to_resolution": _median(to_resolution),
        "rebooked": rebooked,
    }


def add_keyword(*, session: Session, tenant_id: int, route: str, kind: str, value: str,
                now: dt.datetime) -> KeywordRule:
    """A company's own keyword, checked before the built-in ones; 409 when it exists."""
    rule = keywords.validate_rule(keywords.Rule(name="new", route=route, kind=kind,
                                                value=value))
    row = KeywordRule(tenant_id=tenant_id, route=rule.route, kind=rule.kind, value=rule.value,
                      created_at=now)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(f"The keyword {value!r} is already one of the company's rules; delete "
                       "it first to route it elsewhere.") from None
    return row


def list_keywords(*, session: Session, tenant_id: int) -> list[KeywordRule]:
    return list(session.scalars(select(KeywordRule).where(
        KeywordRule.tenant_id == tenant_id).order_by(KeywordRule.id)))


def delete_keyword(*, session: Session, tenant_id: int, rule_id: int) -> None:
    row = session.get(KeywordRule, rule_id)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound("There is no such keyword rule.")
    session.delete(row)
    session.flush()
