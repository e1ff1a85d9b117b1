"""Provider webhooks: delivery receipts from Twilio (status callbacks) and Aliyun (SmsReport).

Thin routes: each provider's wire format (its signature, the fields of its forms and pushes)
is read by its own ``webhooks`` module (``messaging.providers.twilio.webhooks``,
``messaging.providers.aliyun.webhooks``); these decide what to trust, call the receipts and
inbound services, commit and answer.

Receipts come from Twilio, not from a tenant, so no API key protects them: only the
``X-Twilio-Signature`` does. It is checked against the URL Twilio was given —
``HUIFANG_PUBLIC_URL`` + path (+ query) — never against the Host or scheme the request
claims, which a proxy may have rewritten and an attacker may choose.

Aliyun pushes carry no signature. Each company gets its own unguessable path instead
(``/hooks/aliyun/{key}/report``, the key from ``tenancy.service.hook_key``, shown on
``GET /v1/tenant``), and a receipt posted there can only touch that company's messages.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote_plus

import structlog
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookings.service import book_from_reply
from huifang import deps
from huifang.db import utcnow
from huifang.deps import UnitOfWork, UnitOfWorkDep
from huifang.errors import HuifangError, Invalid
from huifang.logs import REQUEST_ID_HEADER, bind_request_id, unbind_request_id
from huifang.metrics import WEBHOOK_ITEM_FAILURES, record_request
from huifang.settings import get_settings
from messaging.inbound import take_reply
from messaging.providers.aliyun import webhooks as aliyun
from messaging.providers.base import Reply
from messaging.providers.twilio import webhooks as twilio
from messaging.receipts import apply_receipt
from tenancy import service as tenancy

log = structlog.get_logger(__name__)
T = TypeVar("T")

router = APIRouter(tags=["webhooks"])

# The most a provider posts at once: an Aliyun push of ALIYUN_MAX_ITEMS items, with room.
MAX_BODY_BYTES = 512 * 1024

SIGNATURE_HEADER = twilio.SIGNATURE_HEADER
# The status callback URL may name our message (``?message_id=``): a send that timed out
# never learned Twilio's id, and the first receipt can still find and settle it.
MESSAGE_ID_PARAM = "message_id"


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
        raise _forbidden(
            f"Twilio {what} are refused: HUIFANG_TWILIO_AUTH_TOKEN is not set, "
            "so their signature cannot be checked."
        )
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        raise _forbidden(
            f"This request has no {SIGNATURE_HEADER} header; only Twilio may send {what} here."
        )
    form = await request.form()
    url = settings.public_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    fields = twilio.verified_fields(token, url, form.multi_items(), signature)
    if fields is None:
        raise _forbidden(
            f"The {SIGNATURE_HEADER} does not match this request; check that "
            f"HUIFANG_PUBLIC_URL ({settings.public_url}) is the address Twilio "
            "calls and that HUIFANG_TWILIO_AUTH_TOKEN is the account's token."
        )
    return fields


def _form(*fields: str) -> dict[str, Any]:
    """The form a provider posts, for the OpenAPI document (the route reads it itself)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {name: {"type": "string"} for name in fields},
                        "additionalProperties": {"type": "string"},
                    }
                }
            },
        }
    }


_TWILIO_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Signed, but without the fields this callback needs."},
    403: {"description": "No valid X-Twilio-Signature (or no auth token configured)."},
}


@router.post(
    "/hooks/twilio/status",
    status_code=204,
    response_class=Response,
    responses=_TWILIO_REFUSALS,
    openapi_extra=_form("MessageSid", "MessageStatus", "ErrorCode"),
)
async def twilio_status(request: Request, unit: UnitOfWorkDep) -> Response:
    """A Twilio status callback (form-encoded). 204 when taken, duplicates included."""
    fields = await _twilio_fields(request, "receipts")
    receipt = twilio.receipt(fields, request.query_params.get(MESSAGE_ID_PARAM, ""))
    if receipt is None:
        raise HTTPException(400, "A Twilio status callback needs MessageSid and MessageStatus.")
    await committed(
        unit,
        lambda session: apply_receipt(
            session=session,
            provider="twilio",
            provider_message_id=receipt.provider_message_id,
            status=receipt.status,
            error_code=receipt.error_code,
            now=utcnow(),
            message_id=receipt.message_id,
        ),
    )
    return Response(status_code=204)


# An empty TwiML answer: we reply through the outbox (recorded and gated), never inline.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
TWILIO_INBOUND = "/hooks/twilio/inbound"


@router.post(
    TWILIO_INBOUND,
    response_class=Response,
    responses={
        200: {
            "description": "Taken: an empty TwiML answer.",
            "content": {"text/xml": {"schema": {"type": "string"}}},
        },
        **_TWILIO_REFUSALS,
    },
    openapi_extra=_form("MessageSid", "From", "Body"),
)
async def twilio_inbound(request: Request, unit: UnitOfWorkDep) -> Response:
    """A customer's text to our Twilio number (form-encoded), answered with empty TwiML.

    An opt-out is committed before this answers (the request's transaction commits before
    the response leaves); the same MessageSid twice has one effect.
    """
    fields = await _twilio_fields(request, "replies")
    reply = twilio.reply(fields)
    if reply is None:
        raise HTTPException(400, "A Twilio inbound message needs MessageSid and From.")
    await _take_twilio_reply(unit, reply)
    return Response(EMPTY_TWIML, media_type="text/xml")


async def _take_twilio_reply(unit: UnitOfWork, reply: Reply) -> None:
    """Record and act on a Twilio reply, committed before this returns."""
    try:
        await committed(
            unit,
            lambda session: take_reply(
                session,
                on_book=book_from_reply,
                provider="twilio",
                provider_message_id=reply.provider_message_id,
                phone=reply.phone,
                text=reply.text,
            ),
        )
    except Invalid as exc:
        # A sender we cannot read (a short code, an alphanumeric id): nothing to act on,
        # and Twilio must not retry it.
        log.info("inbound reply not taken", sid=reply.provider_message_id, reason=exc.detail)


# --- the Twilio inbound webhook's lean path ------------------------------------------------

_FORM_TYPE = b"application/x-www-form-urlencoded"
_TWIML = EMPTY_TWIML.encode()
REQUEST_ID = REQUEST_ID_HEADER.encode()
_TWIML_HEADERS = [
    # What the route's Response and the app's middlewares put on its answer, in their order.
    (b"content-length", str(len(EMPTY_TWIML)).encode()),
    (b"content-type", b"text/xml; charset=utf-8"),
    (b"x-content-type-options", b"nosniff"),
]
_MAX_FIELDS = 1000  # as many as Starlette's form parser takes; more, and the route refuses


def _plain_form(body: bytes) -> list[tuple[str, str]] | None:
    """The fields of a urlencoded form, read as Starlette reads them (names and values
    percent-decoded from Latin-1 text); None for a form of any other shape (an empty or
    nameless field, a ``;``), which the route reads instead."""
    if b";" in body:
        return None
    pairs = body.split(b"&")
    if len(pairs) > _MAX_FIELDS:
        return None
    fields = []
    for pair in pairs:
        name, equals, value = pair.partition(b"=")
        if not name or not equals:
            return None
        fields.append((_decoded(name), _decoded(value)))
    return fields


def _decoded(raw: bytes) -> str:
    """``unquote_plus`` of the Latin-1 text, skipped where there is nothing to unquote."""
    text = raw.decode("latin-1")
    return unquote_plus(text) if b"%" in raw or b"+" in raw else text


class TwilioInboundFastPath:
    """The Twilio inbound webhook (a customer's STOP) answered without the framework.

    Providers post in bursts, and an opt-out must be on record before the answer: the
    route's work is a few statements, but FastAPI's routing, dependencies and form parser
    and four middlewares cost as much again. This runs outside them, for a signed, plain
    form of the usual size only: it reads the body (held to ``MAX_BODY_BYTES``), checks
    the signature, and takes the reply exactly as the route does (``_take_twilio_reply``),
    with the same answer, request id, ``nosniff`` header and request metric. Anything
    else (no or a wrong signature, a chunked or oversized body, a form of another shape,
    a missing field, an error the app answers) goes to the app with the body it sent, and
    the app answers and refuses it as before.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != TWILIO_INBOUND
            or scope["method"] != "POST"
            or scope.get("query_string")
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        length = form = signature = None
        request_id = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"content-type":
                form = value.partition(b";")[0].strip().lower() == _FORM_TYPE
            elif name == b"x-twilio-signature":
                signature = signature if signature is not None else value
            elif name == b"transfer-encoding":
                length = None
                break
            elif name == b"x-request-id":
                request_id = value
        settings = get_settings()
        if (
            not length
            or length > MAX_BODY_BYTES
            or not form
            or not signature
            or not settings.twilio_auth_token
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        received: list[Message] = []
        body = b""
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False) or len(body) > MAX_BODY_BYTES:
                break
        fields = (
            _plain_form(body)
            if received[-1]["type"] == "http.request" and len(body) <= MAX_BODY_BYTES
            else None
        )
        verified = fields and twilio.verified_fields(
            settings.twilio_auth_token,
            settings.public_url + TWILIO_INBOUND,
            fields,
            signature.decode("latin-1"),
        )
        reply = twilio.reply(verified) if verified else None
        if reply is None:
            await self.app(scope, _replayed(received, receive), send)
            return
        bound = bind_request_id(request_id)
        try:
            unit = deps.unit_of_work_for(scope["app"])
            try:
                await _take_twilio_reply(unit, reply)
            except HuifangError:
                taken = False  # nothing was kept: the transaction rolled back
            else:
                taken = True
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [*_TWIML_HEADERS, (REQUEST_ID, bound.encode())],
                    }
                )
                await send({"type": "http.response.body", "body": _TWIML})
        except BaseException:
            record_request("POST", TWILIO_INBOUND, 500, time.perf_counter() - started)
            raise
        finally:
            unbind_request_id()
        if taken:
            record_request("POST", TWILIO_INBOUND, 200, time.perf_counter() - started)
        else:
            # The app takes it again and answers the error as it answers every other.
            await self.app(scope, _replayed(received, receive), send)


def _replayed(received: list[Message], receive: Receive) -> Receive:
    """``receive`` as if nothing had been read yet: what was read, then the rest."""
    pending = list(received)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


# What Aliyun expects back within 700 ms; anything else makes it retry at 1, 5 and 10 min.
ALIYUN_TAKEN = {"code": 0, "msg": "成功"}
ALIYUN_MAX_ITEMS = 1000
# A push is a flat array of flat objects. Python's parser recurses once per level, and a few
# thousand brackets would exhaust the stack, so deeper text is refused before it is parsed.
ALIYUN_MAX_DEPTH = 4
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nests_deeper_than(text: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays and objects more than ``limit`` deep (strings skipped)."""
    brackets = _JSON_STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    depth = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


async def _aliyun_items(request: Request) -> list[dict[str, Any]]:
    """The pushed JSON array (a lone object is taken as one item); 400 for anything else."""
    text = await request.body()
    if nests_deeper_than(text, ALIYUN_MAX_DEPTH):
        raise HTTPException(
            400,
            "An Aliyun push must be a flat JSON array of reports; this "
            f"one nests more than {ALIYUN_MAX_DEPTH} levels deep.",
        )
    try:
        body = json.loads(text)
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


class _Push:
    """What became of an Aliyun push: the company's path was unknown, or how many items
    failed (those are left for Aliyun's retry; the others are on record)."""

    def __init__(self, found: bool) -> None:
        self.found = found
        self.failed = 0


def _each_on_its_own(
    session: Session, hook: str, items: list[dict[str, Any]], take: Callable[[dict[str, Any]], None]
) -> _Push:
    """Take every item of a push in a savepoint of its own.

    One item that cannot be taken never rolls back another: an opt-out in the same push
    is committed whatever happens to its neighbours. A refusal (``Invalid``: a number that
    is not one) is final and logged; anything else is counted and makes the push answer
    "retry", and the retry finds the items taken the first time already on record.
    """
    push = _Push(found=True)
    for index, item in enumerate(items):
        try:
            with session.begin_nested():
                take(item)
        except Invalid as exc:
            log.info("aliyun push item not taken", hook=hook, item=index, reason=exc.detail)
        except Exception:
            push.failed += 1
            WEBHOOK_ITEM_FAILURES.labels(hook).inc()
            log.exception("aliyun push item failed", hook=hook, item=index)
    return push


def _apply_aliyun_reports(session: Session, key: str, items: list[dict[str, Any]]) -> _Push:
    tenant = tenancy.tenant_for_hook_key(session=session, key=key)
    if tenant is None:
        return _Push(found=False)
    tenant_id = tenant.id
    now = utcnow()

    def take(item: dict[str, Any]) -> None:
        receipt = aliyun.report(item)
        if receipt is None:
            return  # nothing to find it by
        apply_receipt(
            session=session,
            provider="aliyun",
            provider_message_id=receipt.provider_message_id,
            status=receipt.status,
            error_code=receipt.error_code,
            now=now,
            tenant_id=tenant_id,
            message_id=receipt.message_id,
        )

    return _each_on_its_own(session, "aliyun_report", items, take)


def _apply_aliyun_replies(session: Session, key: str, items: list[dict[str, Any]]) -> _Push:
    tenant = tenancy.tenant_for_hook_key(session=session, key=key)
    if tenant is None:
        return _Push(found=False)

    def take(item: dict[str, Any]) -> None:
        reply = aliyun.reply(item)
        if reply is None:
            return  # not a reply we can identify or answer
        take_reply(
            session,
            on_book=book_from_reply,
            provider="aliyun",
            provider_message_id=reply.provider_message_id,
            phone=reply.phone,
            text=reply.text,
            tenant=tenant,
        )

    return _each_on_its_own(session, "aliyun_reply", items, take)


def _aliyun_answer(push: _Push) -> JSONResponse:
    if not push.found:
        raise HTTPException(404, "Not found.")
    if push.failed:
        # Not {"code": 0}: Aliyun pushes the batch again, and what was taken stays taken.
        return JSONResponse({"code": 1, "msg": f"{push.failed} 条未能处理，请重试"})
    return JSONResponse(ALIYUN_TAKEN)


_ALIYUN: dict[str, Any] = {
    "responses": {
        200: {
            "description": 'Taken (``{"code": 0}``); duplicates included.',
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["code", "msg"],
                        "properties": {"code": {"type": "integer"}, "msg": {"type": "string"}},
                    }
                }
            },
        },
        400: {"description": "Not a JSON array of objects."},
        404: {"description": "Not one of our companies' addresses."},
        413: {"description": f"More than {ALIYUN_MAX_ITEMS} items in one push."},
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"type": "array", "items": {"type": "object"}},
                            {"type": "object"},
                        ]
                    }
                }
            },
        }
    },
}


def _known_hook_key(key: str) -> None:
    """404 for a path that is not one of ours, before its body is read."""
    if not tenancy.is_hook_key(key):
        raise HTTPException(404, "Not found.")


@router.post("/hooks/aliyun/{key}/reply", **_ALIYUN)
async def aliyun_reply(key: str, request: Request, unit: UnitOfWorkDep) -> JSONResponse:
    """Aliyun SmsUp push: customers' replies to this company, answered ``{"code":0}``."""
    _known_hook_key(key)
    items = await _aliyun_items(request)
    return _aliyun_answer(
        await committed(unit, lambda session: _apply_aliyun_replies(session, key, items))
    )


@router.post("/hooks/aliyun/{key}/report", **_ALIYUN)
async def aliyun_report(key: str, request: Request, unit: UnitOfWorkDep) -> JSONResponse:
    """Aliyun SmsReport push: a JSON array of delivery reports, answered ``{"code":0}``."""
    _known_hook_key(key)
    items = await _aliyun_items(request)
    return _aliyun_answer(
        await committed(unit, lambda session: _apply_aliyun_reports(session, key, items))
    )


__all__ = ["MAX_BODY_BYTES", "TwilioInboundFastPath", "committed", "router"]
