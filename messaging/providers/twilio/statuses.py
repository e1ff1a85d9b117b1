"""Twilio's message statuses and delivery error codes, in our lifecycle's words.

The same words describe a message Twilio has just created (the answer to a send) and the
later status callbacks (``MessageStatus``). Error codes come from Twilio's error dictionary.
"""

from __future__ import annotations

from messaging.models import (
    CARRIER_QUIET_HOURS,
    DELIVERED,
    FAILED,
    PROVIDER_CANCELED,
    PROVIDER_REFUSED,
    PROVIDER_UNDELIVERED,
    RECEIPT_PROGRESS,
    SENT,
    UNDELIVERED,
)
from messaging.providers.base import StatusMap

# MessageStatus → (our status, or None for "record only"; the reason).
STATUSES: dict[str, tuple[str | None, str | None]] = {
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

# Error codes on an undelivered/failed receipt that say something about the number or the
# time, not about this one message:
# 21610 / 30004 the recipient has blocked or unsubscribed from this sender → a suppression;
# 30005 unknown or inactive number, 30006 a landline or a carrier that cannot take SMS →
#       a suppression that is not the customer's choice (no consent is revoked);
# 30610 marketing blocked by the carrier outside its hours → recorded with its own reason.
SUPPRESSING = {
    "21610": "provider_opt_out",
    "30004": "provider_opt_out",
    "30005": "unreachable",
    "30006": "unreachable",
}
REASONS = {"30610": CARRIER_QUIET_HOURS}

STATUS_MAP = StatusMap(statuses=STATUSES, reasons=REASONS, suppressing=SUPPRESSING)


def settled(status: str) -> str | None:
    """Our status for a Twilio status word, or None while Twilio is still working on it."""
    return STATUSES.get(status.strip().lower(), (None, None))[0]
