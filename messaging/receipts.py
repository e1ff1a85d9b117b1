"""Delivery receipts: a provider's word on what became of a message, applied forward only.

Receipts arrive late, twice and out of order (invariant 6). Each one is recorded as a
``MessageEvent``; it moves ``Message.status`` only through ``service.transition``, so a
late ``sent`` after ``delivered`` is kept as history (``applied=False``) and changes nothing.

What a provider's words and error codes mean is the provider's own knowledge (its
``statuses`` module, read through ``providers.status_map``). Progress reports that say
nothing about the outcome (Twilio's ``queued``, ``sending``, ``accepted``, ``scheduled``) are
recorded under the provider's own word and never go through ``transition``:
``unknown → queued`` is an operator's retry in our lifecycle, and a receipt must never queue
a message for sending again (invariant 1).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, true
from sqlalchemy.orm import Session

from compliance import service as compliance
from customers.models import Customer
from messaging.models import (
    FAILED,
    RECEIPT_PROGRESS,
    UNDELIVERED,
    UNKNOWN,
    Message,
    MessageEvent,
)
from messaging.providers import status_map
from messaging.service import transition
from tenancy.models import Tenant

_EVENT_STATUS_CHARS = 16  # MessageEvent.status is String(16)


def _find(
    session: Session,
    provider: str,
    provider_message_id: str,
    message_id: int | None,
    tenant_id: int | None,
) -> Message | None:
    # FOR UPDATE (PostgreSQL; SQLite ignores it and serialises writers itself): two
    # receipts for one message are applied one after the other, never both from `sent`.
    # populate_existing: the status is read fresh even when the row is already loaded.
    mine = (Message.tenant_id == tenant_id) if tenant_id is not None else true()
    stmt = (
        select(Message)
        .where(
            Message.provider == provider, Message.provider_message_id == provider_message_id, mine
        )
        .order_by(Message.id)
        .limit(1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    message = session.scalars(stmt).first()
    if message is not None or message_id is None:
        return message
    # A send that timed out never learned the provider's id; the status callback URL
    # names our message, so the first receipt can still settle it and teach us the id.
    # By id alone: while the send is being recorded its row is locked and its committed
    # version has no provider yet, so a condition on the provider would skip it instead of
    # waiting for the commit; the provider is checked once the row is ours.
    message = session.scalars(
        select(Message)
        .where(Message.id == message_id, mine)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if (
        message is None
        or message.provider != provider
        or message.provider_message_id not in (None, provider_message_id)
    ):
        return None
    message.provider_message_id = provider_message_id
    return message


def _detail(provider: str, status: str, error_code: str | None) -> str:
    detail = f"{provider.capitalize()} reported '{status}'"
    if error_code:
        detail += f" (provider code {error_code})"
    return detail + "."


def apply_receipt(
    *,
    session: Session,
    provider: str,
    provider_message_id: str,
    status: str,
    error_code: str | None,
    now: dt.datetime,
    message_id: int | None = None,
    tenant_id: int | None = None,
) -> Message | None:
    """Record a delivery receipt and move the message forward if the lifecycle allows it.

    Returns the message, or None when no message of ours has that provider id (a receipt
    for something we never sent: nothing to do). ``message_id`` is an optional hint (from
    the callback URL) for a message whose send timed out before the provider's id came back;
    ``tenant_id`` limits the search to one company's messages (receipts posted to that
    company's own path). Only flushes; the caller owns the transaction.
    """
    message = _find(session, provider, provider_message_id, message_id, tenant_id)
    if message is None:
        return None
    provider_status = status.strip().lower()
    error_code = (error_code or "").strip() or None
    words = status_map(provider)
    ours, reason = words.statuses.get(provider_status, (None, RECEIPT_PROGRESS))
    detail = _detail(provider, provider_status, error_code)
    if ours is None:
        # Progress only (or a status we do not know): history, never a change.
        session.add(
            MessageEvent(
                tenant_id=message.tenant_id,
                message_id=message.id,
                status=(provider_status or "?")[:_EVENT_STATUS_CHARS],
                reason=reason,
                detail=detail,
                applied=False,
                at=now,
            )
        )
        session.flush()
        return message
    was = message.status
    if error_code and ours in (UNDELIVERED, FAILED):
        # Some codes speak of the number or the time, not of this one message.
        reason = words.reasons.get(error_code, reason)
        if error_code in words.suppressing:
            _suppress(session, message, words.suppressing[error_code], detail, now)
    applied = transition(
        session=session, message=message, status=ours, now=now, reason=reason, detail=detail
    )
    if applied and was == UNKNOWN and ours != FAILED and message.sent_at is None:
        message.sent_at = now  # the receipt proves it went out
        session.flush()
    return message


def _suppress(
    session: Session, message: Message, reason: str, detail: str, now: dt.datetime
) -> None:
    """Stop later messages to this number: the carrier's word on it, not on one message."""
    customer = session.get(Customer, message.customer_id)
    tenant = session.get(Tenant, message.tenant_id)
    if customer is not None and tenant is not None:
        compliance.opt_out(
            session=session,
            tenant=tenant,
            phone=customer.phone,
            reason=reason,
            detail=detail,
            now=now,
        )
