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
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import structlog
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from huifang import deps
from huifang.db import utcnow
from huifang.deps import UnitOfWork, UnitOfWorkDep
from huifang.errors import Invalid
from huifang.settings import get_settings
from messaging.api import take_reply
from messaging.receipts import apply_receipt
from tenancy import service as tenancy

log = structlog.get_logger(__name__)
T = TypeVar("T")

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


async def committed(unit: UnitOfWork, work: Callable[[Session], T]) -> T:
    """Run ``work`` in a session of its own and commit it, in ONE worker-thread call.

    Webhooks arrive in bursts and must answer fast. On SQLite a transaction holds the
    database's write lock from its first statement; if the commit ran in a later thread
    call (a request dependency's teardown), a burst of requests waiting for the lock could
    hold every worker thread while the request that has the lock waits for a thread to
    commit in. Opening, working and committing in one call releases the lock without
    needing another thread, and costs one thread hop instead of three. The answer leaves
    only after the commit: what the webhook reported is on record.
    """
    def run() -> T:
        with unit() as session:
            return work(session)

    return await run_in_threadpool(run)


def _forbidden(sentence: str) -> HTTPException:
    return HTTPException(403, sentence)


async def _twilio_fields(request: Request, what: str) -> dict[str, str]:
    """The form Twilio posted, once its X-Twilio-Signature is proven; 403 otherwise."""
    settings = get_settings()
    token = settings.twilio_auth_token
    if not token:
        raise _forbidden(f"Twilio {what} are refused: HUIFANG_TWILIO_AUTH_TOKEN is not set, "
                         "so their signature cannot be checked.")
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise _forbidden(f"This request has no {SIGNATURE_HEADER} header; only Twilio may "
                         f"send {what} here.")
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
    return dict(params)


def _form(*fields: str) -> dict[str, Any]:
    """The form a provider posts, for the OpenAPI document (the route reads it itself)."""
    return {"requestBody": {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": {
            "type": "object", "properties": {name: {"type": "string"} for name in fields},
            "additionalProperties": {"type": "string"}}}}}}


_TWILIO_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Signed, but without the fields this callback needs."},
    403: {"description": "No valid X-Twilio-Signature (or no auth token configured)."}}


@router.post("/hooks/twilio/status", status_code=204, response_class=Response,
             responses=_TWILIO_REFUSALS,
             openapi_extra=_form("MessageSid", "MessageStatus", "ErrorCode"))
async def twilio_status(request: Request, unit: UnitOfWorkDep) -> Response:
    """A Twilio status callback (form-encoded). 204 when taken, duplicates included."""
    fields = await _twilio_fields(request, "receipts")
    sid = fields.get("MessageSid") or fields.get("SmsSid")
    status = fields.get("MessageStatus") or fields.get("SmsStatus")
    if not sid or not status:
        raise HTTPException(400, "A Twilio status callback needs MessageSid and MessageStatus.")
    hint = request.query_params.get(MESSAGE_ID_PARAM, "")
    message_id = int(hint) if hint.isascii() and hint.isdigit() and len(hint) < 19 else None
    await committed(unit, lambda session: apply_receipt(
        session=session, provider="twilio", provider_message_id=sid, status=status,
        error_code=fields.get("ErrorCode"), now=utcnow(), message_id=message_id))
    return Response(status_code=204)


# An empty TwiML answer: we reply through the outbox (recorded and gated), never inline.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@router.post("/hooks/twilio/inbound", response_class=Response, responses={
    200: {"description": "Taken: an empty TwiML answer.",
          "content": {"text/xml": {"schema": {"type": "string"}}}}, **_TWILIO_REFUSALS},
    openapi_extra=_form("MessageSid", "From", "Body"))
async def twilio_inbound(request: Request, unit: UnitOfWorkDep) -> Response:
    """A customer's text to our Twilio number (form-encoded), answered with empty TwiML.

    An opt-out is committed before this answers (the request's transaction commits before
    the response leaves); the same MessageSid twice has one effect.
    """
    fields = await _twilio_fields(request, "replies")
    sid = fields.get("MessageSid") or fields.get("SmsSid")
    sender = fields.get("From")
    if not sid or not sender:
        raise HTTPException(400, "A Twilio inbound message needs MessageSid and From.")
    try:
        await committed(unit, lambda session: take_reply(
            session, provider="twilio", provider_message_id=sid, phone=sender,
            text=fields.get("Body", "")))
    except Invalid as exc:
        # A sender we cannot read (a short code, an alphanumeric id): nothing to act on,
        # and Twilio must not retry it.
        log.info("inbound reply not taken", sid=sid, reason=exc.detail)
    return Response(EMPTY_TWIML, media_type="text/xml")


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
    # Read by hand, so the app's check of JSON bodies has not seen it.
    deps.refuse(deps.unstorable_text(body, ("body",)))
    return items


def _apply_aliyun_reports(session: Session, key: str, items: list[dict[str, Any]]) -> bool:
    tenant = tenancy.tenant_for_hook_key(session=session, key=key)
    if tenant is None:
        return False
    tenant_id = tenant.id
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
    return True


def _apply_aliyun_replies(session: Session, key: str, items: list[dict[str, Any]]) -> bool:
    tenant = tenancy.tenant_for_hook_key(session=session, key=key)
    if tenant is None:
        return False
    for item in items:
        sequence = str(item.get("sequence_id") or "").strip()
        phone = str(item.get("phone_number") or "").strip()
        if not sequence or not phone:
            continue  # not a reply we can identify or answer
        try:
            take_reply(session, provider="aliyun", provider_message_id=sequence, phone=phone,
                        text=str(item.get("content") or ""), tenant=tenant)
        except Invalid as exc:
            log.info("aliyun reply not taken", sequence_id=sequence, reason=exc.detail)
    return True


_ALIYUN: dict[str, Any] = {
    "responses": {
        200: {"description": "Taken (``{\"code\": 0}``); duplicates included.",
              "content": {"application/json": {"schema": {
                  "type": "object", "required": ["code", "msg"],
                  "properties": {"code": {"type": "integer"}, "msg": {"type": "string"}}}}}},
        400: {"description": "Not a JSON array of objects."},
        404: {"description": "Not one of our companies' addresses."},
        413: {"description": f"More than {ALIYUN_MAX_ITEMS} items in one push."}},
    "openapi_extra": {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"anyOf": [{"type": "array", "items": {"type": "object"}},
                             {"type": "object"}]}}}}},
}


@router.post("/hooks/aliyun/{key}/reply", **_ALIYUN)
async def aliyun_reply(key: str, request: Request, unit: UnitOfWorkDep) -> JSONResponse:
    """Aliyun SmsUp push: customers' replies to this company, answered ``{"code":0}``."""
    items = await _aliyun_items(request)
    if not await committed(unit, lambda session: _apply_aliyun_replies(session, key, items)):
        raise HTTPException(404, "Not found.")
    return JSONResponse(ALIYUN_TAKEN)


@router.post("/hooks/aliyun/{key}/report", **_ALIYUN)
async def aliyun_report(key: str, request: Request, unit: UnitOfWorkDep) -> JSONResponse:
    """Aliyun SmsReport push: a JSON array of delivery reports, answered ``{"code":0}``."""
    items = await _aliyun_items(request)
    if not await committed(unit, lambda session: _apply_aliyun_reports(session, key, items)):
        raise HTTPException(404, "Not found.")
    return JSONResponse(ALIYUN_TAKEN)


__all__ = ["router", "twilio_signature", "valid_twilio_signature"]
