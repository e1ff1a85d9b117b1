"""The compliance gate: every rule, its reason in the audit log, and the cap under concurrency."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from sqlalchemy import delete, select

from compliance import service as compliance
from compliance.models import ComplianceDecision
from compliance.schemas import PolicyUpdate
from customers import service as customers
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.factories import make_consent, make_customer

# 10:00 in Shanghai: inside the default window.
NOON_CN = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def customer(session, account):
    return make_customer(session, account.tenant)


def _gate(
    session,
    account,
    customer,
    *,
    category="marketing",
    body="冬季深度保洁九折，回复1预约",
    now=NOON_CN,
    ref=None,
    max_chars=500,
):
    return compliance.gate(
        session=session,
        tenant=account.tenant,
        customer=customer,
        category=category,
        body=body,
        message_ref=ref or uuid.uuid4().hex,
        max_chars=max_chars,
        now=now,
    )


def _consent(session, account, customer, now=NOON_CN):
    return make_consent(
        session, account.tenant, customer, now=now, granted_at=now - dt.timedelta(days=30)
    )


def test_marketing_needs_consent_service_does_not(session, account, customer):
    refused = _gate(session, account, customer)
    assert (refused.decision, refused.reason) == ("suppress", "no_consent")
    assert "consent" in refused.detail
    service = _gate(session, account, customer, category="service", body="您的服务报告已生成")
    assert service.allowed
    assert service.text == "【测试家政】您的服务报告已生成"  # no marketing footer on service


def test_allowed_marketing_has_signature_first_and_the_footer(session, account, customer):
    _consent(session, account, customer)
    verdict = _gate(session, account, customer)
    assert verdict.allowed
    assert verdict.text.startswith("【测试家政】")
    assert verdict.text.endswith("回复T退订")
    assert verdict.text.count("【") == 1


def test_footer_is_configurable_and_not_doubled(session, account, customer):
    _consent(session, account, customer)
    compliance.update_policy(
        session=session,
        tenant_id=account.tenant.id,
        changes=PolicyUpdate(opt_out_footer="拒收请回复R"),
    )
    assert _gate(session, account, customer).text.endswith("拒收请回复R")
    already = _gate(session, account, customer, body="春节前深度保洁 拒收请回复R")
    assert already.text.count("拒收请回复R") == 1


def test_opt_out_stops_both_kinds_and_revokes_consent(session, account, customer):
    _consent(session, account, customer)
    _, new = compliance.opt_out(
        session=session,
        tenant=account.tenant,
        phone=customer.phone,
        reason="reply_opt_out",
        detail="T",
        now=NOON_CN,
    )
    _, again = compliance.opt_out(
        session=session,
        tenant=account.tenant,
        phone=customer.phone,
        reason="reply_opt_out",
        detail="T",
        now=NOON_CN,
    )
    assert new and not again  # one confirmation, not two
    for category in ("marketing", "service"):
        verdict = _gate(session, account, customer, category=category)
        assert (verdict.decision, verdict.reason) == ("suppress", "opted_out")
    assert (
        compliance.active_consent(
            session=session, tenant_id=account.tenant.id, phone=customer.phone
        )
        is None
    )
    assert compliance.opt_in(
        session=session, tenant=account.tenant, phone=customer.phone, now=NOON_CN
    )
    assert _gate(session, account, customer, category="service").allowed
    assert _gate(session, account, customer).reason == "no_consent"  # needs new consent


def test_suppression_belongs_to_the_signature(session, account, other_account):
    mine = customers.create_customer(
        session=session, tenant=account.tenant, name="王女士", phone="13800138000"
    )
    theirs = customers.create_customer(
        session=session, tenant=other_account.tenant, name="王女士", phone="13800138000"
    )
    compliance.opt_out(
        session=session,
        tenant=account.tenant,
        phone=mine.phone,
        reason="manual",
        detail=None,
        now=NOON_CN,
    )
    assert _gate(session, account, mine, category="service").reason == "opted_out"
    assert _gate(session, other_account, theirs, category="service").allowed


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ("【限时】空调清洗五折", "【】"),
        ("超长" * 300, "characters"),
    ],
)
def test_message_rules_refuse_the_text(session, account, customer, body, phrase):
    _consent(session, account, customer)
    verdict = _gate(session, account, customer, body=body)
    assert (verdict.decision, verdict.reason) == ("refuse", "message_rules")
    assert phrase in verdict.detail


@pytest.mark.parametrize(
    ("utc", "expected_utc"),
    [
        (
            dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC),  # 23:00 in Shanghai
            dt.datetime(2026, 11, 24, 0, 0, tzinfo=dt.UTC),
        ),  # next day 08:00
        (
            dt.datetime(2026, 11, 22, 22, 30, tzinfo=dt.UTC),  # 06:30 in Shanghai
            dt.datetime(2026, 11, 23, 0, 0, tzinfo=dt.UTC),
        ),  # same day 08:00
    ],
)
def test_quiet_hours_defer_to_the_next_window(session, account, customer, utc, expected_utc):
    verdict = _gate(session, account, customer, category="service", body="报告", now=utc)
    assert (verdict.decision, verdict.reason) == ("defer", "quiet_hours")
    assert verdict.not_before == expected_utc
    assert "08:00" in verdict.detail


def test_quiet_hours_across_a_daylight_saving_change_abroad(session, account):
    abroad = customers.create_customer(
        session=session, tenant=account.tenant, name="Ms Chen", phone="+1 415 555 2671"
    )
    assert abroad.timezone == "America/Los_Angeles"
    # 23:30 on 7 March 2026 in California; clocks spring forward that night.
    late = dt.datetime(2026, 3, 8, 7, 30, tzinfo=dt.UTC)
    verdict = _gate(session, account, abroad, category="service", body="报告", now=late)
    assert verdict.decision == "defer"
    assert verdict.not_before == dt.datetime(2026, 3, 8, 15, 0, tzinfo=dt.UTC)  # 08:00 PDT
    again = _gate(session, account, abroad, category="service", body="报告", now=verdict.not_before)
    assert again.allowed  # no loop: at the window's start it goes


def test_frequency_cap_counts_marketing_only_and_is_idempotent(session, account, customer):
    _consent(session, account, customer)
    first = _gate(session, account, customer, ref="campaign-1:occ-1")
    again = _gate(session, account, customer, ref="campaign-1:occ-1")  # a second delivery
    second = _gate(session, account, customer, ref="campaign-2:occ-1")
    for _ in range(3):
        assert _gate(session, account, customer, category="service", body="报告").allowed
    third = _gate(session, account, customer, ref="campaign-3:occ-1")
    assert first.allowed and again.allowed and second.allowed
    assert (third.decision, third.reason) == ("suppress", "frequency_cap")
    later = _gate(
        session, account, customer, ref="campaign-3:occ-2", now=NOON_CN + dt.timedelta(days=91)
    )
    assert later.allowed  # the rolling window moved on


def test_every_decision_is_audited_with_its_reason(session, account, customer):
    _gate(session, account, customer, ref="ref-a")
    _consent(session, account, customer)
    _gate(session, account, customer, ref="ref-b")
    rows = session.scalars(
        select(ComplianceDecision)
        .where(ComplianceDecision.tenant_id == account.tenant.id)
        .order_by(ComplianceDecision.id)
    ).all()
    assert [(r.message_ref, r.decision, r.reason) for r in rows] == [
        ("ref-a", "suppress", "no_consent"),
        ("ref-b", "send", "allowed"),
    ]
    assert all(r.detail for r in rows)


def test_revoked_consent_is_kept_for_the_retention_period(session, account, customer):
    record = _consent(session, account, customer)
    compliance.revoke_consent(
        session=session,
        tenant_id=account.tenant.id,
        phone=customer.phone,
        source="reply",
        evidence="退订",
        now=NOON_CN,
    )
    assert (
        compliance.purge_expired_consents(session=session, now=NOON_CN + dt.timedelta(days=160))
        == 0
    )
    assert session.get(type(record), record.id) is not None
    assert (
        compliance.purge_expired_consents(session=session, now=NOON_CN + dt.timedelta(days=200))
        >= 1
    )
    assert session.get(type(record), record.id) is None


@pytest.mark.services
def test_two_workers_cannot_both_pass_the_cap(postgres_database):
    """Invariant 3: concurrent gate decisions for one customer never exceed the cap."""
    with postgres_database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="并发家政", signature="并发家政")
        customer = make_customer(session, tenant)
        make_consent(
            session, tenant, customer, now=NOON_CN, granted_at=NOON_CN - dt.timedelta(days=1)
        )
        tenant_id, customer_id = tenant.id, customer.id
    allowed: list[str] = []
    names = ("campaign-a", "campaign-b", "campaign-c", "campaign-d")
    barrier = threading.Barrier(len(names))

    def worker(name: str) -> None:
        barrier.wait()
        for i in range(10):
            with postgres_database.session() as session:
                tenant = session.get(Tenant, tenant_id)
                person = customers.get_customer(
                    session=session, tenant_id=tenant_id, customer_id=customer_id
                )
                verdict = compliance.gate(
                    session=session,
                    tenant=tenant,
                    customer=person,
                    category="marketing",
                    body="优惠",
                    message_ref=f"{name}:{i}",
                    max_chars=500,
                    now=NOON_CN,
                )
                if verdict.allowed:
                    allowed.append(f"{name}:{i}")

    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(allowed) == 2, allowed
    finally:
        with postgres_database.session() as session:
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))
