"""Delivery receipts: a provider's word on what became of a message, applied forward only.

Receipts arrive late, twice and out of order (invariant 6). Each one is recorded as a
``MessageEvent``; it moves ``Message.status`` only through ``service.transition``, so a
late ``sent`` after ``delivered`` is kept as history (``applied=False``) and changes nothing.

Provider progress reports that say nothing about the outcome (Twilio's ``queued``,
``sending``, ``accepted``, ``scheduled``) are recorded under the provider's own word and
never go through ``transition``: ``unknown → queued`` is an operator's retry in our
lifecycle, and a receipt must never queue a message for sending again (invariant 1).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from messaging.models import (
    DELIVERED,
    FAILED,
    PROVIDER_REFUSED,
    SENT,
    UNDELIVERED,
    UNKNOWN,
    Message,
    MessageEvent,
)
from messaging.service import transition

# Why a receipt changed the status (Message.status_reason / MessageEvent.reason).
PROVIDER_UNDELIVERED = "provider_undelivered"  # the carrier could not hand it over
PROVIDER_CANCELED = "provider_canceled"  # canceled at the provider before it went out
RECEIPT_PROGRESS = "receipt_progress"  # a progress report, recorded without a change

# Twilio's MessageStatus → (our status or None for "record only", reason).
TWILIO_STATUSES: dict[str, tuple[str | None, str | None]] = {
    "queued": (None, RECEIPT_PROGRESS),
    "sending": (None, RECEIPT_PROGRESS),
    "accepted": (None, RECEIPT_PROGRESS),
    "scheduled": (None, RECEIPT_PROGRESS),
    "sent": (SENT, None),
    "delivered": (DELIVERED, None),
    "read": (DELIVERED, None),  # read implies delivered (channels with read receipts)
    "undelivered": (UNDELIVERED, PROVIDER_UNDELIVERED),
    "failed": (FAILED, PROVIDER_REFUSED),
    "canceled": (FAILED, PROVIDER_CANCELED),
}

PROVIDER_STATUSES: dict[str, dict[str, tuple[str | None, str | None]]] = {
    "twilio": TWILIO_STATUSES,
}

_EVENT_STATUS_CHARS = 16  # MessageEvent.status is String(16)


def _find(session: Session, provider: str, provider_message_id: str,
          message_id: int | None) -> Message | None:
    # FOR UPDATE (PostgreSQL; SQLite ignores it and serialises writers itself): two
    # receipts for one message are applied one after the other, never both from `sent`.
    # populate_existing: the status is read fresh even when the row is already loaded.
    stmt = (select(Message)
            .where(Message.provider == provider,
                   Message.provider_message_id == provider_message_id)
            .order_by(Message.id).limit(1)
            .with_for_update().execution_options(populate_existing=True))
    message = session.scalars(stmt).first()
    if message is not None or message_id is None:
        return message
    # A send that timed out never learned the provider's id; the status callback URL
    # names our message, so the first receipt can still settle it and teach us the id.
    message = session.scalars(
        select(Message).where(Message.id == message_id, Message.provider == provider)
        .with_for_update().execution_options(populate_existing=True)).first()
    if message is None or message.provider_message_id not in (None, provider_message_id):
        return None
    message.provider_message_id = provider_message_id
    return message


def _detail(provider: str, status: str, error_code: str | None) -> str:
    detail = f"{provider.capitalize()} reported '{status}'"
    if error_code:
        detail += f" (provider code {error_code})"
    return detail + "."


def apply_receipt(*, session: Session, provider: str, provider_message_id: str, status: str,
                  error_code: str | None, now: dt.datetime,
                  message_id: int | None = None) -> Message | None:
    """Record a delivery receipt and move the message forward if the lifecycle allows it.

    Returns the message, or None when no message of ours has that provider id (a receipt
    for something we never sent: nothing to do). ``message_id`` is an optional hint (from
    the callback URL) for a message whose send timed out before the provider's id came back.
    Only flushes; the caller owns the transaction.
    """
    message = _find(session, provider, provider_message_id, message_id)
    if message is None:
        return None
    provider_status = status.strip().lower()
    error_code = (error_code or "").strip() or None
    ours, reason = PROVIDER_STATUSES.get(provider, {}).get(provider_status,
                                                           (None, RECEIPT_PROGRESS))
    detail = _detail(provider, provider_status, error_code)
    if ours is None:
        # Progress only (or a status we do not know): history, never a change.
        session.add(MessageEvent(
            tenant_id=message.tenant_id, message_id=message.id,
            status=(provider_status or "?")[:_EVENT_STATUS_CHARS], reason=reason,
            detail=detail, applied=False, at=now))
        session.flush()
        return message
    was = message.status
    applied = transition(session=session, message=message, status=ours, now=now,
                         reason=reason, detail=detail)
    if applied and was == UNKNOWN and ours != FAILED and message.sent_at is None:
        message.sent_at = now  # the receipt proves it went out
        session.flush()
    return message


__all__ = ["PROVIDER_STATUSES", "TWILIO_STATUSES", "apply_receipt"]
