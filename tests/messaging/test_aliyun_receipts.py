"""Aliyun SmsReport pushes under each company's secret path; Twilio error codes on receipts.

Aliyun signs nothing: the path is the secret, so a push to one company's path must never
touch another company's messages, and a wrong path learns nothing (404).
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from compliance import service as compliance
from compliance.models import ConsentRecord
from huifang.settings import get_settings
from messaging import service as outbox
from messaging.models import Message, MessageEvent
from messaging.providers.base import Provider, SendResult
from messaging.receipts import apply_receipt
from tenancy import service as tenancy
from tests.factories import make_consent, make_customer
from tests.messaging import webhook_payloads as payloads

NOON_CN = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai


class Accepts(Provider):
    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, message):
        return SendResult(provider_message_id=uuid.uuid4().hex)


@pytest.fixture
def hooks(app):
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _customer(session, account, phone="13800138000"):
    return make_customer(session, account.tenant, phone=phone)


def _sent(session, account, customer, provider="aliyun", source_id="visit-1"):
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
    outbox.deliver(session=session, message_id=message.id, provider=Accepts(provider), now=NOON_CN)
    session.refresh(message)
    assert message.status == "sent"
    return message


def _report(message, *, success=True, err_code="DELIVERED", out_id=None):
    """An item of Aliyun's SmsReport push (fixtures/aliyun_smsreport.json: first delivered,
    then failed) for this message."""
    return payloads.item(
        "aliyun_smsreport.json",
        0 if success else 1,
        success=success,
        err_code=err_code,
        biz_id=message.provider_message_id,
        out_id=str(message.id if out_id is None else out_id),
    )


def _status(session, message):
    session.expire_all()
    return session.get(Message, message.id).status


def test_the_company_sees_its_push_addresses(client, account):
    hooks = client.get("/v1/tenant", headers=account.headers).json()["webhooks"]
    key = tenancy.hook_key(account.tenant.id)
    assert hooks["aliyun_report"] == f"{get_settings().public_url}/hooks/aliyun/{key}/report"
    assert hooks["aliyun_reply"].endswith(f"/hooks/aliyun/{key}/reply")
    assert len(key.partition(".")[2]) == 32


def test_a_push_settles_messages_and_is_answered_as_aliyun_expects(hooks, session, account):
    customer = _customer(session, account)
    delivered = _sent(session, account, customer, source_id="a")
    failed = _sent(session, account, customer, source_id="b")
    path = f"/hooks/aliyun/{tenancy.hook_key(account.tenant.id)}/report"
    body = [_report(delivered), _report(failed, success=False, err_code="MK:0001")]
    answer = hooks.post(path, json=body)
    assert answer.status_code == 200 and answer.json() == {"code": 0, "msg": "成功"}
    assert _status(session, delivered) == "delivered"
    assert _status(session, failed) == "undelivered"
    detail = session.scalars(
        select(MessageEvent.detail).where(
            MessageEvent.message_id == failed.id, MessageEvent.status == "undelivered"
        )
    ).one()
    assert "MK:0001" in detail
    # Aliyun repeats pushes: the second changes nothing and is still answered code 0.
    events = session.scalars(
        select(MessageEvent).where(
            MessageEvent.message_id == delivered.id, MessageEvent.applied.is_(True)
        )
    ).all()
    again = hooks.post(path, json=body)
    assert again.json() == {"code": 0, "msg": "成功"}
    assert _status(session, delivered) == "delivered"
    assert (
        session.scalars(
            select(MessageEvent).where(
                MessageEvent.message_id == delivered.id, MessageEvent.applied.is_(True)
            )
        ).all()
        == events
    )


def test_a_wrong_or_forged_path_is_not_found(hooks, session, account):
    message = _sent(session, account, _customer(session, account))
    key = tenancy.hook_key(account.tenant.id)
    tenant_id, _, mac = key.partition(".")
    forged = f"{tenant_id}.{'0' * 32}"
    for bad in (forged, tenant_id, f"{int(tenant_id) + 1}.{mac}", "x" * 40, f"{tenant_id}."):
        answer = hooks.post(f"/hooks/aliyun/{bad}/report", json=[_report(message)])
        assert answer.status_code == 404, bad
    assert _status(session, message) == "sent"


def test_another_companys_path_cannot_touch_this_companys_messages(
    hooks, session, account, other_account
):
    message = _sent(session, account, _customer(session, account))
    path = f"/hooks/aliyun/{tenancy.hook_key(other_account.tenant.id)}/report"
    answer = hooks.post(path, json=[_report(message)])
    assert answer.json()["code"] == 0  # nothing of theirs matched; nothing to retry
    assert _status(session, message) == "sent"


@pytest.mark.parametrize("body", ["not json", '{"a": 1', "[1, 2]", '"text"'])
def test_a_malformed_push_is_refused_with_a_sentence(hooks, session, account, body):
    path = f"/hooks/aliyun/{tenancy.hook_key(account.tenant.id)}/report"
    answer = hooks.post(path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert "JSON array" in answer.json()["detail"]


@pytest.mark.parametrize("kind", ["report", "reply"])
@pytest.mark.parametrize("text", ['"\\ud800"', '"a\\u0000b"'])
def test_a_push_with_text_no_column_can_hold_is_a_422_not_a_server_error(
    hooks, session, account, kind, text
):
    customer = _customer(session, account)
    message = _sent(session, account, customer)
    item = (
        f'{{"biz_id": {text}, "success": true}}'
        if kind == "report"
        else f'{{"sequence_id": "7", "phone_number": "13800138000", "content": {text}}}'
    )
    answer = hooks.post(
        f"/hooks/aliyun/{tenancy.hook_key(account.tenant.id)}/{kind}",
        content=f"[{item}]",
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text[:300]
    assert answer.json()["errors"][0]["loc"][:2] == ["body", 0]
    assert _status(session, message) == "sent"


def test_twilio_codes_that_speak_of_the_number_suppress_it(session, account):
    unreachable = _customer(session, account, "13800138001")
    blocked = _customer(session, account, "13800138002")
    for customer in (unreachable, blocked):
        make_consent(session, account.tenant, customer, now=NOON_CN)
    later = NOON_CN + dt.timedelta(minutes=1)
    for customer, code in ((unreachable, "30005"), (blocked, "30004")):
        message = _sent(session, account, customer, provider="twilio")
        apply_receipt(
            session=session,
            provider="twilio",
            provider_message_id=message.provider_message_id,
            status="undelivered",
            error_code=code,
            now=later,
        )
        assert _status(session, message) == "undelivered"
    gone = compliance.active_suppression(
        session=session, tenant=account.tenant, phone=unreachable.phone
    )
    assert gone is not None and gone.reason == "unreachable"
    # Nobody revoked anything: the consent of an unreachable number stays as recorded.
    assert (
        compliance.active_consent(
            session=session, tenant_id=account.tenant.id, phone=unreachable.phone
        )
        is not None
    )
    stopped = compliance.active_suppression(
        session=session, tenant=account.tenant, phone=blocked.phone
    )
    assert stopped is not None and stopped.reason == "provider_opt_out"
    assert (
        compliance.active_consent(session=session, tenant_id=account.tenant.id, phone=blocked.phone)
        is None
    )
    assert (
        session.scalars(select(ConsentRecord).where(ConsentRecord.phone == blocked.phone))
        .one()
        .revoked_at
        is not None
    )


def test_carrier_quiet_hours_is_named_and_not_a_suppression(session, account):
    customer = _customer(session, account)
    message = _sent(session, account, customer, provider="twilio")
    apply_receipt(
        session=session,
        provider="twilio",
        provider_message_id=message.provider_message_id,
        status="undelivered",
        error_code="30610",
        now=NOON_CN,
    )
    session.expire_all()
    fresh = session.get(Message, message.id)
    assert (fresh.status, fresh.status_reason) == ("undelivered", "carrier_quiet_hours")
    assert (
        compliance.active_suppression(session=session, tenant=account.tenant, phone=customer.phone)
        is None
    )


@pytest.mark.parametrize("kind", ["reply", "report"])
@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_is_refused_with_a_sentence(hooks, account, kind, depth):
    path = f"/hooks/aliyun/{tenancy.hook_key(account.tenant.id)}/{kind}"
    answer = hooks.post(
        path, content="[" * depth + "]" * depth, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["detail"] == (
        "An Aliyun push must be a flat JSON array of reports; "
        "this one nests more than 4 levels deep."
    )


def test_brackets_inside_texts_are_not_nesting(hooks, session, account):
    customer = _customer(session, account)
    path = f"/hooks/aliyun/{tenancy.hook_key(account.tenant.id)}/reply"
    item = {
        "phone_number": customer.phone.removeprefix("+86"),
        "sequence_id": "88001",
        "content": '[[[[[[{{{{ "\\"[[[[',
        "send_time": "2026-11-23 10:00:00",
    }
    answer = hooks.post(path, json=[item])
    assert answer.status_code == 200, answer.text
    assert answer.json()["code"] == 0
    replies = hooks.get("/v1/replies", headers=account.headers).json()
    assert [r["body"] for r in replies] == [item["content"]]
