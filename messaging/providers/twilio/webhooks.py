"""What Twilio posts to us: the X-Twilio-Signature, status callbacks and customers' texts.

Both arrive form-encoded. The signature is base64(HMAC-SHA1(auth token, url + each name and
value)), over the URL Twilio was given; the route decides which URL that is and answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping

from messaging.providers.base import Receipt, Reply, our_message_id

SIGNATURE_HEADER = "X-Twilio-Signature"


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature: base64(HMAC-SHA1(token, url + name+value …)).

    Parameters sorted by name, each value of a repeated name sorted (and, as Twilio's own
    validator does, each distinct value counted once).
    """
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    payload = url + "".join(
        name + value for name in sorted(values) for value in sorted(values[name])
    )
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def valid_signature(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], claimed: str
) -> bool:
    expected = signature(auth_token, url, params).encode("ascii")
    return hmac.compare_digest(expected, claimed.strip().encode("utf-8", "replace"))


def verified_fields(
    auth_token: str, url: str, items: Iterable[tuple[str, object]], claimed: str
) -> dict[str, str] | None:
    """The posted form's fields once ``claimed`` proves them, else None.

    Twilio posts text fields only: a form carrying anything else (a file) was not Twilio's.
    """
    items = list(items)
    params = [(name, value) for name, value in items if isinstance(value, str)]
    if len(params) != len(items) or not valid_signature(auth_token, url, params, claimed):
        return None
    return dict(params)


def receipt(fields: Mapping[str, str], message_id: str = "") -> Receipt | None:
    """A status callback, or None without the message's sid and status.

    ``message_id`` is the hint our StatusCallback URL carries (``?message_id=``).
    """
    sid = fields.get("MessageSid") or fields.get("SmsSid")
    status = fields.get("MessageStatus") or fields.get("SmsStatus")
    if not sid or not status:
        return None
    return Receipt(
        provider_message_id=sid,
        status=status,
        error_code=fields.get("ErrorCode"),
        message_id=our_message_id(message_id),
    )


def reply(fields: Mapping[str, str]) -> Reply | None:
    """A customer's text to our number, or None without its sid and sender."""
    sid = fields.get("MessageSid") or fields.get("SmsSid")
    sender = fields.get("From")
    if not sid or not sender:
        return None
    return Reply(provider_message_id=sid, phone=sender, text=fields.get("Body", ""))
