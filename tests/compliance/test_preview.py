"""``preview``: what the gate would decide, said in Chinese, with nothing locked, counted or
recorded (the console asks it before scheduling a message a person typed)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from compliance import service as compliance
from compliance import wording
from compliance.models import ComplianceDecision, MarketingSend
from tests.factories import make_consent, make_customer

NOON_CN = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
NIGHT_CN = dt.datetime(2026, 11, 23, 14, 30, tzinfo=dt.UTC)  # 22:30 in Shanghai


@pytest.fixture
def customer(session, account):
    return make_customer(session, account.tenant)


def _both(session, account, customer, *, category="marketing", body="冬季保洁九折", now=NOON_CN):
    """The preview, then the gate itself, for the same message."""
    preview = compliance.preview(
        session=session,
        tenant=account.tenant,
        customer=customer,
        category=category,
        body=body,
        max_chars=500,
        now=now,
    )
    gate = compliance.gate(
        session=session,
        tenant=account.tenant,
        customer=customer,
        category=category,
        body=body,
        message_ref=uuid.uuid4().hex,
        max_chars=500,
        now=now,
    )
    return preview, gate


def _count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def test_the_preview_agrees_with_the_gate_on_every_reason(session, account, customer):
    cases = []
    cases.append(_both(session, account, customer))  # no consent
    cases.append(_both(session, account, customer, category="service", body="【x】报告"))
    cases.append(_both(session, account, customer, category="service", now=NIGHT_CN))
    make_consent(
        session, account.tenant, customer, now=NOON_CN, granted_at=NOON_CN - dt.timedelta(days=1)
    )
    cases.append(_both(session, account, customer))  # allowed, counted by the gate
    cases.append(_both(session, account, customer))  # the second of two
    cases.append(_both(session, account, customer))  # the cap
    compliance.opt_out(
        session=session,
        tenant=account.tenant,
        phone=customer.phone,
        reason="reply_opt_out",
        detail="T",
        now=NOON_CN,
    )
    cases.append(_both(session, account, customer, category="service"))
    reasons = [(preview.decision, preview.reason) for preview, _ in cases]
    assert reasons == [(gate.decision, gate.reason) for _, gate in cases]
    assert [reason for _, reason in reasons] == [
        "no_consent",
        "message_rules",
        "quiet_hours",
        "allowed",
        "allowed",
        "frequency_cap",
        "opted_out",
    ]
    # Only the gate wrote: one decision per gate call, two marketing sends counted.
    assert _count(session, ComplianceDecision) == len(cases)
    assert _count(session, MarketingSend) == 2


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("opted_out", "退订"),
        ("no_consent", "同意"),
        ("frequency_cap", "上限"),
        ("message_rules", "【】"),
        ("allowed", "可以发送"),
        (None, "未能发送"),
        ("something_new", "未能发送"),
    ],
)
def test_every_reason_has_a_chinese_sentence(reason, words):
    assert words in wording.reason_text(reason)


def test_quiet_hours_say_when_in_the_customers_time():
    text = wording.reason_text(
        "quiet_hours", not_before=dt.datetime(2026, 11, 24, 0, 0, tzinfo=dt.UTC)
    )
    assert "11月24日 08:00" in text and "免打扰" in text
    assert "免打扰" in wording.reason_text("quiet_hours")
