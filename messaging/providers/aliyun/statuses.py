"""Aliyun's delivery reports in our lifecycle's words.

An SmsReport says only whether the message arrived (``success``); ``webhooks.report`` turns
that into the two words below, and ``err_code`` carries the carrier's reason as it is.
"""

from __future__ import annotations

from messaging.models import DELIVERED, PROVIDER_UNDELIVERED, UNDELIVERED
from messaging.providers.base import StatusMap

STATUSES: dict[str, tuple[str | None, str | None]] = {
    "delivered": (DELIVERED, None),
    "undelivered": (UNDELIVERED, PROVIDER_UNDELIVERED),
}

STATUS_MAP = StatusMap(statuses=STATUSES)
