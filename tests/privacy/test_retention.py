"""Retention: each kind of data kept for the company's period, then deleted by the daily job."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from compliance import capture
from compliance import service as compliance
from compliance.models import CaptureConsent, ComplianceDecision
from compliance.schemas import PolicyUpdate
from huifang import storage
from huifang.errors import Invalid
from media import service as media_service
from media.models import Media
from messaging import service as outbox
from messaging.models import SENT
from privacy import retention
from tests.factories import make_company, make_customer, make_visit
from tests.media.conftest import phone_jpeg, upload


def _kinds(items: list[retention.Upcoming]) -> dict[str, retention.Upcoming]:
    return {item.kind: item for item in items}


def test_periods_have_lawful_minimums(session, account):
    with pytest.raises(Invalid, match="capture_consent_retention_days must be at least 153"):
        compliance.update_policy(
            session=session,
            tenant_id=account.tenant.id,
            changes=PolicyUpdate(capture_consent_retention_days=100),
        )
    other = make_company(session).tenant  # a refused change leaves its object changed
    with pytest.raises(Invalid, match="decision_log_days must be at least 153"):
        compliance.update_policy(
            session=session, tenant_id=other.id, changes=PolicyUpdate(decision_log_days=30)
        )
    third = make_company(session).tenant
    policy = compliance.update_policy(
        session=session, tenant_id=third.id, changes=PolicyUpdate(original_media_days=30)
    )
    assert policy.original_media_days == 30


def test_the_daily_job_deletes_what_outlived_its_period(client, session, account):
    tenant = account.tenant
    compliance.update_policy(
        session=session,
        tenant_id=tenant.id,
        changes=PolicyUpdate(original_media_days=30, message_text_days=60, reply_days=60),
    )
    customer = make_customer(session, tenant, name="留存测试", phone="13811112222")
    visit = make_visit(session, tenant, customer=customer)
    sent = upload(client, account, visit.id, phone_jpeg(color=(33, 66, 99)))
    assert sent.status_code == 202, sent.text
    media_service.process_media(session=session, media_id=sent.json()["id"])
    media = session.get(Media, sent.json()["id"])
    assert media is not None
    original = media.original_path
    message, _ = outbox.schedule(
        session=session,
        tenant=tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type="visit_report",
        source_id=str(visit.id),
        body="留存测试您好",
        due_at=media.received_at,
    )
    message.status = SENT
    withdrawn = capture.withdraw_capture_consent(
        session=session,
        tenant_id=tenant.id,
        customer_id=customer.id,
        evidence="客户撤回",
        now=media.received_at,
    )
    assert withdrawn is not None
    session.flush()
    start = media.received_at

    soon = _kinds(retention.upcoming(session=session, tenant_id=tenant.id, now=start))
    assert soon["originals"].count == 0
    ahead = _kinds(
        retention.upcoming(session=session, tenant_id=tenant.id, now=start + dt.timedelta(days=25))
    )
    assert ahead["originals"].count == 1
    assert ahead["originals"].first_at == start + dt.timedelta(days=30)
    assert ahead["message_texts"].count == 0

    # Day 31: the original goes, the message text stays (60 days), the withdrawn consent stays.
    done = retention.enforce(
        session=session, tenant_id=tenant.id, now=start + dt.timedelta(days=31)
    )
    assert done["originals"] == 1 and done["message_texts"] == 0
    assert not storage.resolve(original).exists()
    assert media.original_deleted_at == start + dt.timedelta(days=31)
    assert message.body == "留存测试您好"
    assert session.get(CaptureConsent, withdrawn.id) is not None
    answer = client.get(f"/v1/media/{media.id}/original", headers=account.headers)
    assert answer.status_code == 410

    # Day 200: the message text and the withdrawn capture consent (183 days) go too.
    done = retention.enforce(
        session=session, tenant_id=tenant.id, now=start + dt.timedelta(days=200)
    )
    assert done["message_texts"] == 1 and done["capture_consents"] == 1
    session.refresh(message)
    assert message.body == "" and message.text is None
    assert session.get(CaptureConsent, withdrawn.id) is None


def test_the_gate_log_is_kept_its_period(session, account):
    tenant = account.tenant
    customer = make_customer(session, tenant, phone="13822223333")
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    session.add(
        ComplianceDecision(
            tenant_id=tenant.id,
            customer_id=customer.id,
            phone=customer.phone,
            message_ref="m:1",
            category="service",
            decision="send",
            reason="allowed",
            detail="",
            decided_at=at,
        )
    )
    session.flush()
    kept = retention.enforce(session=session, tenant_id=tenant.id, now=at + dt.timedelta(days=364))
    assert kept["decisions"] == 0
    gone = retention.enforce(session=session, tenant_id=tenant.id, now=at + dt.timedelta(days=366))
    assert gone["decisions"] == 1
    assert not list(
        session.scalars(select(ComplianceDecision).where(ComplianceDecision.tenant_id == tenant.id))
    )


def test_the_upcoming_list_through_the_api(client, account):
    answer = client.get("/v1/retention/upcoming?days=30", headers=account.headers)
    assert answer.status_code == 200
    kinds = {item["kind"] for item in answer.json()}
    assert kinds == {
        "consents",
        "capture_consents",
        "originals",
        "message_texts",
        "replies",
        "decisions",
        "report_media",
    }
