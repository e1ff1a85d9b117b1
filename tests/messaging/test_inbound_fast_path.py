"""The Twilio inbound webhook's lean path (``messaging.webhooks.TwilioInboundFastPath``).

The usual signed STOP is answered outside FastAPI and the middlewares; everything else is
handed to the app with its body. Both must answer alike, and the lean one must keep what
the middlewares gave: the body cap, the request id, ``nosniff`` and the request metric.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import event, func, select
from twilio.request_validator import RequestValidator

from access.models import AuditEntry
from compliance import service as compliance
from compliance.models import ConsentRecord, Suppression
from huifang.db import utcnow
from huifang.errors import Conflict
from huifang.settings import get_settings
from messaging import inbound, webhooks
from messaging import service as outbox
from messaging.models import InboundMessage, Message, MessageEvent
from tests.factories import make_consent, make_customer
from tests.messaging import webhook_payloads as payloads

TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC_URL = "https://hf.example.cn"
PATH = "/hooks/twilio/inbound"


@pytest.fixture(autouse=True)
def _twilio_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "twilio_auth_token", TOKEN)
    monkeypatch.setattr(get_settings(), "public_url", PUBLIC_URL)


@pytest.fixture
def hooks(app):
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def customer(session, account):
    return make_customer(session, account.tenant)


def _form(customer, body: str = "STOP", sid: str = "SM-fast") -> dict[str, str]:
    return payloads.form(
        "twilio_inbound_stop.txt",
        Body=body,
        MessageSid=sid,
        SmsSid=sid,
        SmsMessageSid=sid,
        From=customer.phone,
    )


def _headers(form: dict[str, str], **more: str) -> dict[str, str]:
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(PUBLIC_URL + PATH, form),
        **more,
    }


def _chunked(body: bytes) -> Iterator[bytes]:
    """A body without Content-Length (sent chunked): the lean path leaves it to the app."""
    yield body


def _requests(status: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "huifang_http_requests_total",
            {"method": "POST", "route": PATH, "status": status},
        )
        or 0.0
    )


def _suppressed(session, account, customer) -> bool:
    session.expire_all()
    found = compliance.active_suppression(
        session=session, tenant=account.tenant, phone=customer.phone
    )
    return found is not None


def test_a_signed_stop_is_taken_without_the_route(hooks, session, account, customer, monkeypatch):
    def not_here(*_: object, **__: object) -> None:
        raise AssertionError("the route read this request")

    monkeypatch.setattr(webhooks, "_twilio_fields", not_here)
    before = _requests("200")
    form = _form(customer)
    answer = hooks.post(PATH, data=form, headers=_headers(form, **{"X-Request-ID": "abc-123"}))
    assert answer.status_code == 200
    assert answer.text == webhooks.EMPTY_TWIML
    assert answer.headers["content-type"] == "text/xml; charset=utf-8"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-request-id"] == "abc-123"
    assert _requests("200") == before + 1
    assert _suppressed(session, account, customer)


def test_the_lean_path_and_the_route_answer_alike(hooks, session, account, customer):
    form = _form(customer, sid="SM-lean")
    lean = hooks.post(PATH, data=form, headers=_headers(form))
    other = _form(customer, body="STOP", sid="SM-route")
    routed = hooks.post(PATH, content=_chunked(urlencode(other).encode()), headers=_headers(other))
    assert (
        (lean.status_code, lean.content)
        == (routed.status_code, routed.content)
        == (
            200,
            webhooks.EMPTY_TWIML.encode(),
        )
    )
    assert len(lean.headers["x-request-id"]) == len(routed.headers["x-request-id"]) == 32

    def comparable(headers):
        return {name: value for name, value in headers.items() if name != "x-request-id"}

    assert comparable(lean.headers) == comparable(routed.headers)


def test_a_bad_signature_is_still_refused(hooks, session, account, customer):
    before = _requests("403")
    form = _form(customer)
    signed_for_another = _headers(_form(customer, body="hello"))
    answer = hooks.post(PATH, data=form, headers=signed_for_another)
    assert answer.status_code == 403
    assert "X-Twilio-Signature" in answer.json()["detail"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert _requests("403") == before + 1
    assert not _suppressed(session, account, customer)


def test_an_oversized_body_is_refused_before_it_is_read(hooks, session, account, customer):
    form = {**_form(customer), "Padding": "x" * webhooks.MAX_BODY_BYTES}
    answer = hooks.post(PATH, data=form, headers=_headers(form))
    assert answer.status_code == 413
    assert "512 KB" in answer.json()["detail"]
    assert not _suppressed(session, account, customer)


def test_an_oversized_chunked_body_is_refused(hooks, session, account, customer):
    form = {**_form(customer), "Padding": "x" * webhooks.MAX_BODY_BYTES}
    answer = hooks.post(PATH, content=_chunked(urlencode(form).encode()), headers=_headers(form))
    assert answer.status_code == 413
    assert not _suppressed(session, account, customer)


def test_a_form_without_the_sender_is_answered_by_the_route(hooks, session, account, customer):
    form = _form(customer)
    del form["From"]
    answer = hooks.post(PATH, data=form, headers=_headers(form))
    assert answer.status_code == 400
    assert "From" in answer.json()["detail"]


def test_an_error_the_app_answers_is_answered_by_the_app(
    hooks, session, account, customer, monkeypatch
):
    def refuses(*_: object, **__: object) -> None:
        raise Conflict("This reply cannot be taken now.")

    monkeypatch.setattr(webhooks, "take_reply", refuses)
    form = _form(customer)
    answer = hooks.post(PATH, data=form, headers=_headers(form))
    assert answer.status_code == 409
    assert answer.json() == {"detail": "This reply cannot be taken now."}


def test_a_failure_is_a_500_and_counted(hooks, session, account, customer, monkeypatch):
    def breaks(*_: object, **__: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(webhooks, "take_reply", breaks)
    before = _requests("500")
    form = _form(customer)
    answer = hooks.post(PATH, data=form, headers=_headers(form))
    assert answer.status_code == 500
    assert _requests("500") == before + 1
    assert not _suppressed(session, account, customer)


def test_a_stop_revokes_consent_and_writes_the_confirmations_history_in_order(
    hooks, session, account, customer
):
    """On PostgreSQL these are two statements (suppression with revocation, confirmation
    with history); on SQLite four. Either way the records are the same."""
    consent = make_consent(session, account.tenant, customer, now=utcnow())
    session.commit()
    form = _form(customer, sid="SM-history")
    assert hooks.post(PATH, data=form, headers=_headers(form)).status_code == 200
    session.expire_all()
    revoked = session.get(ConsentRecord, consent.id)
    assert revoked is not None
    assert (revoked.revoked_at is not None, revoked.revoke_source) == (True, "reply")
    assert revoked.revoke_evidence == "Replied 'STOP'"
    [confirmation] = session.scalars(
        select(Message).where(Message.customer_id == customer.id, Message.category == "reply")
    ).all()
    history = session.scalars(
        select(MessageEvent)
        .where(MessageEvent.message_id == confirmation.id)
        .order_by(MessageEvent.id)
    ).all()
    assert [(e.status, e.applied, e.tenant_id) for e in history] == [
        ("scheduled", True, account.tenant.id),
        ("queued", True, account.tenant.id),
    ]
    assert all(e.at == confirmation.created_at for e in history)
    # A second STOP finds the suppression: no second revocation, no second confirmation.
    again = _form(customer, sid="SM-history-2")
    assert hooks.post(PATH, data=again, headers=_headers(again)).status_code == 200
    session.expire_all()
    assert session.get(ConsentRecord, consent.id).revoked_at == revoked.revoked_at
    assert (
        len(
            session.scalars(
                select(Message).where(
                    Message.customer_id == customer.id, Message.category == "reply"
                )
            ).all()
        )
        == 1
    )


def _stop_records(session, account, customer) -> dict[str, object]:
    """What a STOP from ``customer`` left, without the ids and numbers that differ."""
    session.expire_all()
    [reply] = session.scalars(
        select(InboundMessage).where(InboundMessage.customer_id == customer.id)
    ).all()
    [suppression] = session.scalars(
        select(Suppression).where(
            Suppression.tenant_id == account.tenant.id, Suppression.phone == customer.phone
        )
    ).all()
    [consent] = session.scalars(
        select(ConsentRecord).where(ConsentRecord.customer_id == customer.id)
    ).all()
    [confirmation] = session.scalars(
        select(Message).where(Message.customer_id == customer.id, Message.category == "reply")
    ).all()
    history = session.scalars(
        select(MessageEvent)
        .where(MessageEvent.message_id == confirmation.id)
        .order_by(MessageEvent.id)
    ).all()
    assert reply.phone == customer.phone
    assert reply.in_reply_to_id is None
    assert confirmation.source_id == f"suppression-{suppression.id}"
    assert confirmation.idempotency_key == outbox.idempotency_key(
        tenant_id=account.tenant.id,
        source_type="opt_out_reply",
        source_id=confirmation.source_id,
        customer_id=customer.id,
        channel="sms",
    )

    def columns(row, *leave_out: str) -> dict[str, object]:
        return {
            column.key: getattr(row, column.key)
            for column in row.__table__.columns
            if column.key not in ("id", "customer_id", "phone", *leave_out)
        }

    return {
        "reply": columns(reply, "provider_message_id", "received_at"),
        "suppression": columns(suppression, "created_at"),
        "consent": columns(consent, "revoked_at", "granted_at", "recorded_at"),
        "revoked at the suppression": consent.revoked_at == suppression.created_at,
        "confirmation": columns(
            confirmation, "source_id", "idempotency_key", "due_at", "created_at", "updated_at"
        ),
        "confirmation times": confirmation.due_at
        == confirmation.created_at
        == confirmation.updated_at
        == suppression.created_at
        == reply.received_at,
        "history": [
            (e.tenant_id, e.status, e.reason, e.detail, e.applied, e.at == confirmation.created_at)
            for e in history
        ],
    }


def test_the_one_statement_stop_leaves_the_records_of_the_statements_one_by_one(
    hooks, session, account, monkeypatch, database
):
    """PostgreSQL takes a STOP in one statement per company; SQLite, and this test with the
    switch off, one by one. The rows are the same, and no audit entry is added either way."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has only the statements one by one")
    records, audits = [], []
    for at_once in (True, False):
        monkeypatch.setattr(inbound, "_at_once", lambda session, at_once=at_once: at_once)
        customer = make_customer(session, account.tenant, phone=f"+86139000{int(at_once)}0000")
        make_consent(session, account.tenant, customer, now=utcnow())
        session.commit()
        before = session.scalar(select(func.count()).select_from(AuditEntry))
        form = _form(customer, sid=f"SM-at-once-{at_once}")
        assert hooks.post(PATH, data=form, headers=_headers(form)).status_code == 200
        audits.append(session.scalar(select(func.count()).select_from(AuditEntry)) - before)
        records.append(_stop_records(session, account, customer))
        # A repeated delivery and a second STOP change nothing.
        assert hooks.post(PATH, data=form, headers=_headers(form)).status_code == 200
        again = _form(customer, sid=f"SM-at-once-{at_once}-again")
        assert hooks.post(PATH, data=again, headers=_headers(again)).status_code == 200
        session.expire_all()
        assert (
            len(session.scalars(select(Message).where(Message.customer_id == customer.id)).all())
            == 1
        )
        assert (
            len(
                session.scalars(
                    select(Suppression).where(Suppression.phone == customer.phone)
                ).all()
            )
            == 1
        )
    assert records[0] == records[1]
    assert audits == [0, 0]


def test_a_stop_on_postgresql_takes_two_statements(hooks, session, account, customer, database):
    """The companies (which lock the number) and one statement for the reply, the opt-out
    and the confirmation: not one round trip per row."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite takes them one by one")
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        if not statement.startswith(("SAVEPOINT", "RELEASE", "RESET", "SELECT set_config")):
            statements.append(statement)

    form = _form(customer, sid="SM-two")
    event.listen(database.engine, "before_cursor_execute", seen)
    try:
        assert hooks.post(PATH, data=form, headers=_headers(form)).status_code == 200
    finally:
        event.remove(database.engine, "before_cursor_execute", seen)
    assert len(statements) == 2, statements
    assert "pg_advisory_xact_lock" in statements[0]
    assert _suppressed(session, account, customer)
