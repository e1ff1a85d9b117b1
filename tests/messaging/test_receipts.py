"""Delivery receipts: Twilio status callbacks, signed, applied forward only (invariant 6).

Signatures are made with the official ``twilio`` package's RequestValidator: our verifier
is our own code, and this is the reference it must agree with.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from huifang.settings import get_settings
from messaging import service as outbox
from messaging import webhooks
from messaging.models import FINAL, Message, MessageEvent
from messaging.providers.base import Provider, RequestMayHaveLeft, SendResult
from messaging.providers.twilio import webhooks as twilio_hooks
from messaging.receipts import apply_receipt
from tests.factories import make_customer
from tests.messaging import webhook_payloads as payloads

NOON_CN = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC_URL = "https://hf.example.cn"
PATH = "/hooks/twilio/status"
STATUS_URL = PUBLIC_URL + PATH
ACCOUNT_SID = "AC" + "0" * 32
TWILIO_STATUSES = (
    "queued",
    "sending",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "read",
    "accepted",
    "scheduled",
    "canceled",
)
# What each Twilio status settles a message to (None: progress only, no change).
SETTLES_TO = {
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}


class TimesOut(Provider):
    """A provider whose request may have left: the message becomes ``unknown``."""

    name = "twilio"

    def send(self, message):
        raise RequestMayHaveLeft("read timeout after the request was sent")


class Accepts(Provider):
    name = "twilio"

    def __init__(self, sid: str | None = None) -> None:
        self.sid = sid

    def send(self, message):
        return SendResult(provider_message_id=self.sid or _sid())


def _sid() -> str:
    return "SM" + uuid.uuid4().hex


@pytest.fixture(autouse=True)
def _twilio_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "twilio_auth_token", TOKEN)
    monkeypatch.setattr(get_settings(), "public_url", PUBLIC_URL)


@pytest.fixture
def hooks(app):
    app.include_router(webhooks.router)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def customer(session, account):
    return make_customer(session, account.tenant)


def _send(session, account, customer, provider=None, source_id="visit-1"):
    """Schedule a service message and send it through ``provider`` (Twilio-named)."""
    message, _ = outbox.schedule(
        session=session,
        tenant=account.tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type="visit_report",
        source_id=source_id,
        body="您好，本次空调清洗的服务报告已生成。",
        due_at=NOON_CN,
    )
    outbox.claim_due(session=session, now=NOON_CN)
    assert outbox.claim_for_send(session=session, message_id=message.id, now=NOON_CN)
    outbox.deliver(
        session=session, message_id=message.id, provider=provider or Accepts(), now=NOON_CN
    )
    session.refresh(message)
    return message


def _params(message_or_sid, status, **extra):
    """Twilio's status callback (fixtures/twilio_status_delivered.txt) for this message."""
    sid = message_or_sid if isinstance(message_or_sid, str) else message_or_sid.provider_message_id
    return payloads.form(
        "twilio_status_delivered.txt",
        MessageSid=sid,
        SmsSid=sid,
        MessageStatus=status,
        SmsStatus=status,
        **extra,
    )


def _post(
    client, params, *, url=STATUS_URL, token=TOKEN, path=PATH, signature=None, sign_params=None
):
    """POST a status callback signed by Twilio's own validator (unless told otherwise)."""
    if signature is None:
        signature = RequestValidator(token).compute_signature(
            url, sign_params if sign_params is not None else params
        )
    headers = {} if signature == "" else {"X-Twilio-Signature": signature.encode()}
    return client.post(path, data=params, headers=headers)


def _events(session, message):
    return list(
        session.scalars(
            select(MessageEvent)
            .where(MessageEvent.message_id == message.id)
            .order_by(MessageEvent.id)
        )
    )


def _state(session, message):
    session.expire_all()
    fresh = session.get(Message, message.id)
    return (
        fresh.status,
        fresh.status_reason,
        session.scalar(select(func.count()).where(MessageEvent.message_id == message.id)),
    )


# --- the signature -------------------------------------------------------------------------


def test_a_receipt_signed_by_twilio_is_taken(hooks, session, account, customer):
    message = _send(session, account, customer)
    answer = _post(hooks, _params(message, "delivered"))
    assert answer.status_code == 204, answer.text
    assert _state(session, message)[0] == "delivered"


def test_a_receipt_replayed_as_twilio_posts_it_is_taken(hooks, session, account, customer):
    fields = payloads.form("twilio_status_delivered.txt")
    assert fields["AccountSid"] == ACCOUNT_SID
    message = _send(session, account, customer, provider=Accepts(fields["MessageSid"]))
    signature = RequestValidator(TOKEN).compute_signature(STATUS_URL, fields)
    answer = hooks.post(
        PATH,
        content=payloads.raw("twilio_status_delivered.txt"),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert answer.status_code == 204, answer.text
    assert _state(session, message)[0] == "delivered"


def test_our_signature_agrees_with_twilios_validator():
    params = {"MessageSid": _sid(), "MessageStatus": "delivered", "Body": "回复T退订 a+b&c=d"}
    url = STATUS_URL + "?message_id=42"
    assert twilio_hooks.signature(TOKEN, url, params.items()) == RequestValidator(
        TOKEN
    ).compute_signature(url, params)


@pytest.mark.parametrize("tamper", ["parameter", "scheme", "missing", "token", "garbage"])
def test_a_bad_signature_is_refused_and_changes_nothing(hooks, session, account, customer, tamper):
    message = _send(session, account, customer)
    before = _state(session, message)
    params = _params(message, "delivered")
    if tamper == "parameter":  # signed as "undelivered", sent as "delivered"
        answer = _post(hooks, params, sign_params={**params, "MessageStatus": "undelivered"})
    elif tamper == "scheme":  # signed for http://, we are https://
        answer = _post(hooks, params, url=STATUS_URL.replace("https://", "http://"))
    elif tamper == "missing":
        answer = _post(hooks, params, signature="")
    elif tamper == "token":
        answer = _post(hooks, params, token="f" * 32)
    else:
        answer = _post(hooks, params, signature="签名 not base64")
    assert answer.status_code == 403
    assert "X-Twilio-Signature" in answer.json()["detail"]
    assert _state(session, message) == before


def test_no_token_configured_refuses_every_receipt(hooks, session, account, customer, monkeypatch):
    message = _send(session, account, customer)
    before = _state(session, message)
    monkeypatch.setattr(get_settings(), "twilio_auth_token", None)
    answer = _post(hooks, _params(message, "delivered"), token=TOKEN)
    assert answer.status_code == 403
    assert "HUIFANG_TWILIO_AUTH_TOKEN" in answer.json()["detail"]
    assert _state(session, message) == before


def test_the_query_string_is_part_of_what_is_signed(hooks, session, account, customer):
    message = _send(session, account, customer)
    params = _params(message, "delivered")
    signed_without = _post(hooks, params, path=PATH + "?message_id=1")
    assert signed_without.status_code == 403
    signed_with = _post(
        hooks, params, url=STATUS_URL + "?message_id=1", path=PATH + "?message_id=1"
    )
    assert signed_with.status_code == 204
    assert _state(session, message)[0] == "delivered"


# --- applying receipts ---------------------------------------------------------------------


def test_delivered_receipt_delivers_and_the_history_shows_it(hooks, session, account, customer):
    message = _send(session, account, customer)
    for status in ("queued", "sent", "delivered"):
        assert _post(hooks, _params(message, status)).status_code == 204
    assert _state(session, message)[0] == "delivered"
    events = [(e.status, e.applied) for e in _events(session, message)]
    assert events == [
        ("scheduled", True),
        ("queued", True),
        ("sending", True),
        ("sent", True),
        ("queued", False),
        ("sent", False),
        ("delivered", True),
    ]
    listed = hooks.get(f"/v1/messages/{message.id}", headers=account.headers).json()
    assert [e["status"] for e in listed["events"]][-1] == "delivered"


def test_a_late_sent_after_delivered_is_recorded_not_applied(hooks, session, account, customer):
    message = _send(session, account, customer)
    assert _post(hooks, _params(message, "delivered")).status_code == 204
    assert _post(hooks, _params(message, "sent")).status_code == 204
    assert _state(session, message)[0] == "delivered"
    late = _events(session, message)[-1]
    assert (late.status, late.applied) == ("sent", False)


def test_the_same_receipt_twice_applies_once(hooks, session, account, customer):
    message = _send(session, account, customer)
    for _ in range(2):
        assert _post(hooks, _params(message, "delivered")).status_code == 204
    delivered = [e.applied for e in _events(session, message) if e.status == "delivered"]
    assert delivered == [True, False]
    assert _state(session, message)[0] == "delivered"


def test_failed_with_an_error_code_fails_with_the_code(hooks, session, account, customer):
    message = _send(session, account, customer)
    answer = _post(
        hooks,
        _params(
            message, "failed", ErrorCode="30003", ErrorMessage="Unreachable destination handset"
        ),
    )
    assert answer.status_code == 204
    status, reason, _ = _state(session, message)
    assert (status, reason) == ("failed", "provider_refused")
    assert "30003" in session.get(Message, message.id).status_detail
    assert "30003" in _events(session, message)[-1].detail


def test_undelivered_keeps_the_carrier_code(hooks, session, account, customer):
    message = _send(session, account, customer)
    assert _post(hooks, _params(message, "undelivered", ErrorCode="30005")).status_code == 204
    assert _state(session, message)[0] == "undelivered"
    assert "30005" in session.get(Message, message.id).status_detail


def test_a_receipt_for_a_message_we_never_sent_changes_nothing(hooks, session, account, customer):
    message = _send(session, account, customer)
    before = _state(session, message)
    events = session.scalar(select(func.count()).select_from(MessageEvent))
    assert _post(hooks, _params(_sid(), "delivered")).status_code == 204
    assert _state(session, message) == before
    assert session.scalar(select(func.count()).select_from(MessageEvent)) == events
    assert (
        apply_receipt(
            session=session,
            provider="twilio",
            provider_message_id=_sid(),
            status="delivered",
            error_code=None,
            now=NOON_CN,
        )
        is None
    )


def test_an_unknown_message_is_settled_by_a_delivered_receipt(hooks, session, account, customer):
    message = _send(session, account, customer, provider=TimesOut())
    assert message.status == "unknown"
    message.provider_message_id = _sid()  # the provider's id, learnt some other way
    session.flush()
    assert _post(hooks, _params(message, "delivered")).status_code == 204
    assert _state(session, message)[0] == "delivered"
    assert session.get(Message, message.id).sent_at is not None


def test_an_unknown_message_is_found_by_the_callback_url_when_its_sid_was_never_seen(
    hooks, session, account, customer
):
    message = _send(session, account, customer, provider=TimesOut())
    assert message.provider_message_id is None
    sid = _sid()
    query = f"?message_id={message.id}"
    answer = _post(hooks, _params(sid, "sent"), url=STATUS_URL + query, path=PATH + query)
    assert answer.status_code == 204
    assert _state(session, message)[0] == "sent"
    assert session.get(Message, message.id).provider_message_id == sid
    # The hint never captures another message that already has its own provider id.
    other = _send(session, account, customer, source_id="visit-2")
    query = f"?message_id={other.id}"
    _post(hooks, _params(_sid(), "failed"), url=STATUS_URL + query, path=PATH + query)
    assert _state(session, other)[0] == "sent"


def test_progress_receipts_never_queue_an_unknown_message_again(hooks, session, account, customer):
    message = _send(session, account, customer, provider=TimesOut())
    message.provider_message_id = _sid()
    session.flush()
    for status in ("queued", "accepted", "scheduled", "sending"):
        assert _post(hooks, _params(message, status)).status_code == 204
    assert _state(session, message)[0] == "unknown"  # unknown → queued is an operator's retry
    assert [e.applied for e in _events(session, message)[-4:]] == [False] * 4


# --- the property --------------------------------------------------------------------------

_receipts = st.lists(st.sampled_from(TWILIO_STATUSES), min_size=1, max_size=8).flatmap(
    lambda statuses: st.permutations(statuses + statuses)
)  # every receipt twice, any order


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(receipts=_receipts)
def test_receipts_never_move_a_message_back(session, account, customer, receipts):
    nested = session.begin_nested()
    try:
        message = Message(
            tenant_id=account.tenant.id,
            customer_id=customer.id,
            channel="sms",
            category="service",
            source_type="test",
            source_id="p",
            idempotency_key=uuid.uuid4().hex,
            body="报告",
            status="sent",
            due_at=NOON_CN,
            provider="twilio",
            provider_message_id=_sid(),
        )
        session.add(message)
        session.flush()
        settled = None  # the first final status received wins; nothing leaves it
        for status in receipts:
            apply_receipt(
                session=session,
                provider="twilio",
                provider_message_id=message.provider_message_id,
                status=status,
                error_code="30003" if status == "failed" else None,
                now=NOON_CN,
            )
            settled = settled or SETTLES_TO.get(status)
            assert message.status == (settled or "sent")
        applied = [e.status for e in _events(session, message) if e.applied]
        assert applied == ([settled] if settled else [])
        assert (message.status in FINAL) == (settled is not None)
    finally:
        nested.rollback()
