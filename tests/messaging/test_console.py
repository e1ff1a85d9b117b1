"""The console: one company's messages behind its API key, numbers shown by their last digits."""

from __future__ import annotations

import datetime as dt

import pytest

from customers import service as customers
from huifang.settings import get_settings
from messaging import service as outbox
from messaging.providers.console import ConsoleProvider

NOON_CN = dt.datetime(2026, 11, 23, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai


def _sent(session, account, phone: str, body: str):
    customer = customers.create_customer(
        session=session, tenant=account.tenant, name="王女士", phone=phone
    )
    message, _ = outbox.schedule(
        session=session,
        tenant=account.tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type="visit_report",
        source_id="visit-1",
        body=body,
        due_at=NOON_CN,
    )
    assert message.id in outbox.claim_due(session=session, now=NOON_CN)
    assert outbox.claim_for_send(session=session, message_id=message.id, now=NOON_CN)
    outbox.deliver(session=session, message_id=message.id, provider=ConsoleProvider(), now=NOON_CN)
    session.flush()
    return message


@pytest.fixture
def two_companies(session, account, other_account):
    _sent(session, account, "13800138000", "您好，甲公司的服务报告已生成。")
    _sent(session, other_account, "13900139000", "您好，乙公司的服务报告已生成。")


def test_the_console_needs_a_key(client, two_companies):
    for headers in (
        {},
        {"Authorization": "Bearer hf_unknown"},
        {"Authorization": "Basic dXNlcjpoZl91bmtub3du"},
    ):  # user:hf_unknown
        answer = client.get("/console", headers=headers)
        assert answer.status_code == 401
        assert "API key" in answer.json()["detail"]
        # A browser asks for the key (as a password) instead of showing the error.
        assert answer.headers["www-authenticate"].startswith('Basic realm="Huifang console"')
        assert "甲公司" not in answer.text and "乙公司" not in answer.text


def test_a_key_shows_only_its_own_companys_messages(client, account, two_companies):
    for auth in ({"Authorization": f"Bearer {account.key}"}, ("office", account.key)):
        kwargs = {"headers": auth} if isinstance(auth, dict) else {"auth": auth}
        page = client.get("/console", **kwargs)
        assert page.status_code == 200, page.text
        assert "甲公司的服务报告" in page.text
        assert "乙公司" not in page.text and "9000" not in page.text


def test_phone_numbers_show_only_their_last_four_digits(client, account, two_companies):
    page = client.get("/console", headers=account.headers)
    assert "+86 ••• •••• 8000" in page.text
    for whole in ("13800138000", "138 0013 8000", "1380013", "0013"):
        assert whole not in page.text


def test_there_is_no_console_in_production_even_with_a_key(client, account, monkeypatch):
    monkeypatch.setattr(get_settings(), "environment", "production")
    assert client.get("/console", headers=account.headers).status_code == 404
    monkeypatch.setattr(get_settings(), "environment", "development")
    monkeypatch.setattr(get_settings(), "sms_provider", "twilio")
    assert client.get("/console", headers=account.headers).status_code == 404
