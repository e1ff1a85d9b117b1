"""What Aliyun pushes to us: SmsReport (delivery reports) and SmsUp (customers' replies).

Each push is a JSON array of flat objects; Aliyun signs nothing (the route's unguessable
path is the secret). These functions read one item each: the route parses the array.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messaging.providers.base import Receipt, Reply, our_message_id


def report(item: Mapping[str, Any]) -> Receipt | None:
    """One SmsReport item, or None without the ``biz_id`` to find its message by."""
    biz_id = str(item.get("biz_id") or "").strip()
    if not biz_id:
        return None  # Aliyun always sends biz_id for our sends
    success = item.get("success")
    delivered = success is True or str(success).lower() == "true"
    return Receipt(
        provider_message_id=biz_id,
        status="delivered" if delivered else "undelivered",
        error_code=None if delivered else str(item.get("err_code") or "") or None,
        message_id=our_message_id(str(item.get("out_id") or "")),
    )


def reply(item: Mapping[str, Any]) -> Reply | None:
    """One SmsUp item, or None when it cannot be identified or answered."""
    sequence = str(item.get("sequence_id") or "").strip()
    phone = str(item.get("phone_number") or "").strip()
    if not sequence or not phone:
        return None
    return Reply(provider_message_id=sequence, phone=phone, text=str(item.get("content") or ""))
