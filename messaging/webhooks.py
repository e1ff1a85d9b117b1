"""Provider webhooks: delivery receipts from Twilio (status callbacks) and Aliyun (SmsReport).

Receipts come from Twilio, not from a tenant, so no API key protects them: only the
``X-Twilio-Signature`` does. It is checked against the URL Twilio was given —
``HUIFANG_PUBLIC_URL`` + path (+ query) — never against the Host or scheme the request
claims, which a proxy may have rewritten and an attacker may choose.

Aliyun pushes carry no signature. Each company gets its own unguessable path instead
(``/hooks/aliyun/{key}/report``, the key from ``tenancy.service.hook_key``, shown on
``GET /v1/tenant``), and a receipt posted there can only touch that company's messages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from huifang.db import utcnow
from huifang.deps import SessionDep
from huifang.settings import get_settings
from messaging.receipts import apply_receipt
from tenancy import service as tenancy

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


# What Aliyun expects back within 700 ms; anything else makes it retry at 1, 5 and 10 min.
ALIYUN_TAKEN = {"code": 0, "msg": "成功"}
ALIYUN_MAX_ITEMS = 1000


async def _aliyun_items(request: Request) -> list[dict[str, Any]]:
    """The pushed JSON array (a lone object is taken as one item); 400 for anything else."""
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "An Aliyun push must be a JSON array of reports.") from None
    items = [body] if isinstance(body, dict) else body
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise HTTPException(400, "An Aliyun push must be a JSON array of report objects.")
    if len(items) > ALIYUN_MAX_ITEMS:
        raise HTTPException(413, f"An Aliyun push may hold at most {ALIYUN_MAX_ITEMS} reports.")
    return items


def _apply_aliyun_reports(session: Session, tenant_id: int, items: list[dict[str, Any]]) -> None:
    now = utcnow()
    for item in items:
        biz_id = str(item.get("biz_id") or "").strip()
        if not biz_id:
            continue  # nothing to find it by; Aliyun always sends biz_id for our sends
        success = item.get("success")
        delivered = success is True or str(success).lower() == "true"
        out_id = str(item.get("out_id") or "")
        apply_receipt(
            session=session, provider="aliyun", provider_message_id=biz_id,
            status="delivered" if delivered else "undelivered",
            error_code=None if delivered else str(item.get("err_code") or "") or None,
            now=now, tenant_id=tenant_id,
            message_id=int(out_id) if out_id.isascii() and out_id.isdigit()
            and len(out_id) < 19 else None)


@router.post("/hooks/aliyun/{key}/report")
async def aliyun_report(key: str, request: Request, session: SessionDep) -> JSONResponse:
    """Aliyun SmsReport push: a JSON array of delivery reports, answered ``{"code":0}``."""
    tenant = await run_in_threadpool(tenancy.tenant_for_hook_key, session=session, key=key)
    if tenant is None:
        raise HTTPException(404, "Not found.")
    items = await _aliyun_items(request)
    await run_in_threadpool(_apply_aliyun_reports, session, tenant.id, items)
    return JSONResponse(ALIYUN_TAKEN)


__all__ = ["router", "twilio_signature", "valid_twilio_signature"]
