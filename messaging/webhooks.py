"""Provider webhooks: Twilio's status callbacks (delivery receipts).

Receipts come from Twilio, not from a tenant, so no API key protects them: only the
``X-Twilio-Signature`` does. It is checked against the URL Twilio was given —
``HUIFANG_PUBLIC_URL`` + path (+ query) — never against the Host or scheme the request
claims, which a proxy may have rewritten and an attacker may choose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from huifang.db import utcnow
from huifang.deps import SessionDep
from huifang.settings import get_settings
from messaging.receipts import apply_receipt

router = APIRouter(tags=["webhooks"])

SIGNATURE_HEADER = "X-Twilio-Signature"
# The status callback URL may name our message (``?message_id=``): a send that timed out
# never learned Twilio's id, and the first receipt can still find and settle it.
MESSAGE_ID_PARAM = "message_id"


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature: base64(HMAC-SHA1(token, url + name+value …)).

    Parameters sorted by name, each value of a repeated name sorted (and, as Twilio's own
    validator does, each distinct value counted once).
    """
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    payload = url + "".join(name + value for name in sorted(values)
                            for value in sorted(values[name]))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def valid_twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]],
                           signature: str) -> bool:
    expected = twilio_signature(auth_token, url, params).encode("ascii")
    return hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace"))


def _forbidden(sentence: str) -> HTTPException:
    return HTTPException(403, sentence)


@router.post("/hooks/twilio/status", status_code=204, response_class=Response)
async def twilio_status(request: Request, session: SessionDep) -> Response:
    """A Twilio status callback (form-encoded). 204 when taken, duplicates included."""
    settings = get_settings()
    token = settings.twilio_auth_token
    if not token:
        raise _forbidden("Twilio receipts are refused: HUIFANG_TWILIO_AUTH_TOKEN is not set, "
                         "so their signature cannot be checked.")
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise _forbidden(f"This request has no {SIGNATURE_HEADER} header; only Twilio may "
                         "send receipts here.")
    form = await request.form()
    params = [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
    url = settings.public_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    if len(params) != len(form.multi_items()) or not valid_twilio_signature(
            token, url, params, signature):
        raise _forbidden(f"The {SIGNATURE_HEADER} does not match this request; check that "
                         f"HUIFANG_PUBLIC_URL ({settings.public_url}) is the address Twilio "
                         "calls and that HUIFANG_TWILIO_AUTH_TOKEN is the account's token.")
    fields = dict(params)
    sid = fields.get("MessageSid") or fields.get("SmsSid")
    status = fields.get("MessageStatus") or fields.get("SmsStatus")
    if not sid or not status:
        raise HTTPException(400, "A Twilio status callback needs MessageSid and MessageStatus.")
    hint = request.query_params.get(MESSAGE_ID_PARAM, "")
    await run_in_threadpool(
        apply_receipt, session=session, provider="twilio", provider_message_id=sid,
        status=status, error_code=fields.get("ErrorCode"), now=utcnow(),
        message_id=int(hint) if hint.isascii() and hint.isdigit() and len(hint) < 19 else None)
    return Response(status_code=204)


__all__ = ["router", "twilio_signature", "valid_twilio_signature"]
