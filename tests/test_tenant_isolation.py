"""Invariant 7: a key of company A reads, changes and deletes nothing of company B.

The walk covers every ``/v1`` route the app has: a route with an id in its path must
answer 404 for B's object (not 403, not data); a collection route must not list B's rows
and must refuse B's ids in filters and bodies. A new route that this file does not know
how to walk fails the test, so coverage cannot silently fall behind.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from access.models import AuditEntry
from alerts import service as alerts
from bookings import service as booking
from bookings.models import Booking
from campaigns import lifecycle as campaigns
from compliance import service as compliance
from compliance.models import CaptureConsent
from customers.models import ImportJob, ImportJobRow
from media import resumable
from media.models import Media
from messaging import inbound, sms_templates
from messaging import service as outbox
from reports.models import Report, ReportRating
from tests.factories import create_consenting_customer
from visits import service as visits

# Collection routes (no id in the path) and how to check them.
COLLECTION_ROUTES = {
    ("GET", "/v1/tenant"),
    ("PATCH", "/v1/tenant"),
    ("GET", "/v1/api-keys"),
    ("POST", "/v1/api-keys"),
    ("GET", "/v1/customers"),
    ("POST", "/v1/customers"),
    ("POST", "/v1/customers/import"),
    ("GET", "/v1/staff"),
    ("POST", "/v1/staff"),
    ("GET", "/v1/visits"),
    ("POST", "/v1/visits"),
    ("GET", "/v1/watermark"),
    ("PUT", "/v1/watermark"),
    ("PUT", "/v1/watermark/logo"),
    ("GET", "/v1/consents/export"),
    ("GET", "/v1/compliance/policy"),
    ("PUT", "/v1/compliance/policy"),
    ("GET", "/v1/messages"),
    ("GET", "/v1/replies"),
    ("POST", "/v1/replies/simulate"),
    ("GET", "/v1/keyword-rules"),
    ("POST", "/v1/keyword-rules"),
    ("GET", "/v1/bookings"),
    ("GET", "/v1/service-recovery"),
    ("GET", "/v1/care-advice"),
    ("PUT", "/v1/care-advice/{service_type}"),
    ("DELETE", "/v1/care-advice/{service_type}"),
    ("GET", "/v1/report-offers"),
    ("PUT", "/v1/report-offers/{month}"),
    ("DELETE", "/v1/report-offers/{month}"),
    ("GET", "/v1/campaigns"),
    ("POST", "/v1/campaigns"),
    ("GET", "/v1/campaign-presets"),
    ("GET", "/v1/reports/retention"),
    ("GET", "/v1/reports/conversion"),
    ("GET", "/v1/ratings"),
    ("GET", "/v1/ratings/figures"),
    ("GET", "/v1/plum-rain"),
    ("PUT", "/v1/plum-rain"),
    ("GET", "/v1/alert-channels"),
    ("POST", "/v1/alert-channels"),
    ("GET", "/v1/alerts"),
    ("PUT", "/v1/plum-rain"),
    ("GET", "/v1/threads"),
    ("GET", "/v1/bookings/queue"),
    ("GET", "/v1/today"),
    ("GET", "/v1/bookings/openings"),
    ("OPTIONS", "/v1/uploads"),
    ("POST", "/v1/campaigns/lint"),
    ("POST", "/v1/campaigns/audience"),
    ("GET", "/v1/reports/trend"),
    ("POST", "/v1/keyword-rules/test"),
    ("GET", "/v1/provider"),
    ("GET", "/v1/watermark/preview"),
    ("GET", "/v1/bookings/answered"),
    ("GET", "/v1/import-jobs"),
    ("POST", "/v1/import-jobs"),
    ("POST", "/v1/consents/bulk"),
    ("GET", "/v1/consents"),
    ("GET", "/v1/suppressions"),
    ("POST", "/v1/suppressions"),
    ("GET", "/v1/audit-log"),
    ("GET", "/v1/sms-templates"),
    ("POST", "/v1/sms-templates"),
    ("GET", "/v1/retention/upcoming"),
}
TUS = {"Tus-Resumable": "1.0.0"}
# Path words that name something in the caller's own company (a service code, a month),
# not another object: routes with only these are walked as collections.
OWN_NAME_PARAMS = {"service_type", "month"}
PATCH_BODIES = {
    "customer_id": {"name": "改名"},
    "staff_id": {"name": "改名"},
    "visit_id": {"notes": "改了"},
    "reply_id": {"state": "handled"},
    "booking_id": {"status": "confirmed"},
    "campaign_id": {"name": "改名"},
}
# POST bodies that would succeed on one's own object, keyed by the path's last word.
POST_BODIES = {
    "consents": {"source": "in_person", "evidence": "x"},
    "capture-consents": {"source": "in_person", "evidence": "x", "scopes": ["photos"]},
    "withdraw": {"evidence": "x"},
    "media-expiry": {"after_view_days": 7},
    "revoke": {"source": "api"},
    "opt-out": {"detail": "x"},
    "answers": {"body": "你好"},
    "assign": {"assignee_id": 1},
    "resolve": {"resolution": "x"},
    "decline": {"reason": "x"},
    "confirm": {"slot_start": "2030-01-08T10:00:00+08:00", "staff_id": 1},
    "propose": {"slot_start": "2030-01-08T10:00:00+08:00", "staff_id": 1},
}


@pytest.fixture
def b_objects(session, other_account):
    tenant = other_account.tenant
    customer = create_consenting_customer(
        session=session, tenant=tenant, name="B的客户", phone="13800138000"
    )
    staff = visits.create_staff(session=session, tenant=tenant, name="B的员工")
    visit = visits.create_visit(
        session=session,
        tenant=tenant,
        customer_id=customer.id,
        staff_id=staff.id,
        service_type="ac_cleaning",
        areas=["客厅"],
        finished_at=dt.datetime.now(dt.UTC),
    )
    key_id = other_account.tenant.api_keys[0].id
    media = Media(
        tenant_id=tenant.id,
        visit_id=visit.id,
        kind="photo",
        phase="before",
        area="客厅",
        status="ready",
        original_path="originals/0/B的原图.jpg",
        sha256="b" * 64,
        bytes=1,
        mime="image/jpeg",
        received_at=dt.datetime.now(dt.UTC),
        verification_code="B0000000B0",
    )
    session.add(media)
    session.flush()
    message, _ = outbox.schedule(
        session=session,
        tenant=tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type="visit_report",
        source_id=str(visit.id),
        body="B的报告",
        due_at=dt.datetime.now(dt.UTC),
    )
    received = inbound.receive(
        session=session,
        provider="console",
        provider_message_id="b-1",
        phone=customer.phone,
        text="1",
        tenant=tenant,
        now=dt.datetime.now(dt.UTC),
        on_book=booking.book_from_reply,
    )
    reply = inbound.replies(session=session, received=received)[0]
    rule = inbound.add_keyword(
        session=session,
        tenant_id=tenant.id,
        route="opt_out",
        kind="exact",
        value="B的退",
        now=dt.datetime.now(dt.UTC),
    )
    request = session.scalars(select(Booking).where(Booking.tenant_id == tenant.id)).one()
    campaign = campaigns.create_campaign(
        session=session, tenant=tenant, name="B的活动", preset="ac_filter_quarterly"
    )
    job = ImportJob(
        tenant_id=tenant.id,
        status="done",
        filename="B的名单.csv",
        created_at=dt.datetime.now(dt.UTC),
    )
    session.add(job)
    session.flush()
    session.add(
        ImportJobRow(
            tenant_id=tenant.id,
            job_id=job.id,
            line=2,
            status="imported",
            customer_id=customer.id,
            phone=customer.phone,
        )
    )
    suppression, _ = compliance.opt_out(
        session=session,
        tenant=tenant,
        phone="+8613900000000",
        reason="manual",
        detail="B的退订",
        now=dt.datetime.now(dt.UTC),
    )
    session.add(
        AuditEntry(
            tenant_id=tenant.id,
            at=dt.datetime.now(dt.UTC),
            actor_kind="user",
            actor_id=1,
            actor_name="B的前台",
            action="consent.recorded",
            target=f"customer:{customer.id}",
            detail={},
        )
    )
    session.flush()
    upload = resumable.create_upload(
        session=session,
        tenant=tenant,
        visit_id=visit.id,
        length=1000,
        metadata={"phase": "before"},
        photo_max=2000,
        clip_max=2000,
        now=dt.datetime.now(dt.UTC),
    )
    channel = alerts.create_channel(
        session=session, tenant=tenant, kind="webhook", name="B的群", url="https://example.com/b"
    )
    template = sms_templates.record(
        session=session,
        tenant_id=tenant.id,
        company_signature=tenant.signature,
        base_url="https://hf.example.cn",
        code="SMS_100000001",
        kind="notification",
        purpose_code="help_answer",
        text="回复1预约上门服务，B的客服会尽快答复。",
        signature=tenant.signature,
        now=dt.datetime.now(dt.UTC),
    )
    return {
        "customer_id": customer.id,
        "staff_id": staff.id,
        "visit_id": visit.id,
        "key_id": key_id,
        "media_id": media.id,
        "message_id": message.id,
        "reply_id": reply.id,
        "rule_id": rule.id,
        "booking_id": request.id,
        "campaign_id": campaign.id,
        "channel_id": channel.id,
        "upload_id": upload.token,
        "job_id": job.id,
        "suppression_id": suppression,
        "template_id": template.id,
        "consent_id": session.scalars(
            select(CaptureConsent.id).where(CaptureConsent.customer_id == customer.id)
        ).one(),
    }


def _v1_routes(app):
    """Every (method, path) of /v1, read from the OpenAPI document the app serves."""
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/v1"):
            for method in sorted(operations):
                yield method.upper(), path


def test_every_route_with_an_id_answers_404_for_another_company(
    app, client, account, other_account, b_objects
):
    walked = 0
    collections = set()
    for method, template in _v1_routes(app):
        params = [p for p in re.findall(r"{(\w+)}", template) if p not in OWN_NAME_PARAMS]
        if not params:
            collections.add((method, template))
            assert (method, template) in COLLECTION_ROUTES, (
                f"{method} {template} is new: teach the isolation walk how to check it"
            )
            continue
        unknown = set(params) - set(b_objects)
        assert not unknown, f"{method} {template}: no tenant-B object for {unknown}"
        path = template.format(**b_objects)
        body = None
        if method in ("PATCH", "PUT", "POST"):
            last = template.rsplit("/", 1)[-1]
            body = POST_BODIES.get(last) or PATCH_BODIES.get(params[-1], {})
        # Tus-Resumable: the version a resumable upload's routes check before anything else.
        response = client.request(method, path, headers={**account.headers, **TUS}, json=body)
        assert response.status_code == 404, f"{method} {path} -> {response.status_code}"
        assert "B的" not in response.text
        walked += 1
    assert walked >= 10  # the walk found the id routes
    assert collections == COLLECTION_ROUTES  # and the list of collection routes is current

    # Nothing of B's changed or disappeared through A's key.
    for path, name in (
        (f"/v1/customers/{b_objects['customer_id']}", "B的客户"),
        (f"/v1/staff/{b_objects['staff_id']}", "B的员工"),
    ):
        assert client.get(path, headers=other_account.headers).json()["name"] == name
    assert (
        client.get(f"/v1/visits/{b_objects['visit_id']}", headers=other_account.headers).status_code
        == 200
    )
    key_list = client.get("/v1/api-keys", headers=other_account.headers).json()
    assert all(k["revoked_at"] is None for k in key_list)
    b_customer = client.get(
        f"/v1/customers/{b_objects['customer_id']}", headers=other_account.headers
    ).json()
    assert b_customer["messaging"]["service"]["can_receive"] is True  # not opted out by A
    assert (
        client.get(
            f"/v1/customers/{b_objects['customer_id']}/consents", headers=other_account.headers
        ).json()
        == []
    )


def test_collections_show_only_ones_own_rows(client, session, account, other_account, b_objects):
    for path in ("/v1/customers", "/v1/staff", "/v1/visits"):
        page = client.get(path, headers=account.headers).json()
        assert page["total"] == 0 and page["items"] == [], path
    for path in (
        "/v1/replies",
        "/v1/bookings",
        "/v1/keyword-rules",
        "/v1/threads",
        "/v1/bookings/queue",
        "/v1/bookings/answered",
    ):
        assert client.get(path, headers=account.headers).json() == [], path
    assert client.get("/v1/sms-templates", headers=account.headers).json()["templates"] == []
    counts = client.get("/v1/today", headers=account.headers).json()["counts"]
    assert set(counts.values()) == {0}
    # B's customer rated B's report 不满意: none of it is A's.
    now = dt.datetime.now(dt.UTC)
    report = Report(
        tenant_id=other_account.tenant.id,
        visit_id=b_objects["visit_id"],
        token="b" * 24,
        expires_at=now + dt.timedelta(days=30),
        built_at=now,
        snapshot={},
        long_path="reports/b.jpg",
        long_bytes=1,
        long_width=1,
        long_height=1,
        long_token="c" * 24,
    )
    session.add(report)
    session.flush()
    session.add(
        ReportRating(
            tenant_id=other_account.tenant.id,
            report_id=report.id,
            visit_id=b_objects["visit_id"],
            customer_id=b_objects["customer_id"],
            service_type="ac_cleaning",
            score="bad",
            problems=["late"],
            rated_at=now,
            changed_at=now,
            changes=0,
        )
    )
    session.flush()
    assert len(client.get("/v1/ratings", headers=other_account.headers).json()) == 1
    assert client.get("/v1/ratings", headers=account.headers).json() == []
    figures = client.get("/v1/ratings/figures", headers=account.headers).json()
    assert figures["groups"] == []
    openings = client.get("/v1/bookings/openings", headers=account.headers).json()
    assert openings and all(o["free"] == [] for o in openings)  # B's staff are not A's
    client.put("/v1/watermark", headers=account.headers, json={"position": "top-right"})
    assert client.get("/v1/watermark", headers=other_account.headers).json()["position"] == (
        "bottom-left"
    )
    client.post(
        f"/v1/customers/{b_objects['customer_id']}/consents",
        headers=other_account.headers,
        json={"source": "in_person", "evidence": "B"},
    )
    export = client.get("/v1/consents/export", headers=account.headers).text
    assert "B" not in export.splitlines()[-1] and len(export.splitlines()) == 1
    assert client.get("/v1/messages", headers=account.headers).json() == []
    keys = client.get("/v1/api-keys", headers=account.headers).json()
    assert b_objects["key_id"] not in {k["id"] for k in keys}
    assert client.get("/v1/tenant", headers=account.headers).json()["id"] == account.tenant.id
    filtered = client.get(
        f"/v1/visits?customer_id={b_objects['customer_id']}", headers=account.headers
    ).json()
    assert filtered["total"] == 0
    for path in (
        "/v1/import-jobs",
        "/v1/suppressions",
        "/v1/consents",
        f"/v1/consents?customer_id={b_objects['customer_id']}",
    ):
        page = client.get(path, headers=account.headers).json()
        assert page["total"] == 0 and page["items"] == [], path
    log = client.get("/v1/audit-log", headers=account.headers)  # A's own changes only
    assert log.status_code == 200 and "B的" not in log.text
    bulk = client.post(
        "/v1/consents/bulk",
        headers=account.headers,
        json={"customer_ids": [b_objects["customer_id"]], "evidence": "A的合同"},
    ).json()
    assert bulk["rows"] == [
        {
            "customer_id": b_objects["customer_id"],
            "outcome": "not_found",
            "consent_id": None,
            "reason": "There is no such customer in this company.",
        }
    ]
    by_job = client.post(
        "/v1/consents/bulk",
        headers=account.headers,
        json={"import_job_id": b_objects["job_id"], "evidence": "A的合同"},
    )
    assert by_job.status_code == 404 and "B的" not in by_job.text


def test_bodies_cannot_point_at_another_companys_objects(client, account, b_objects):
    own = client.post(
        "/v1/customers", headers=account.headers, json={"name": "A的客户", "phone": "13900012345"}
    ).json()
    cases = [
        (
            "POST",
            "/v1/visits",
            {"customer_id": b_objects["customer_id"], "service_type": "ac_cleaning"},
        ),
        (
            "POST",
            "/v1/visits",
            {
                "customer_id": own["id"],
                "staff_id": b_objects["staff_id"],
                "service_type": "ac_cleaning",
            },
        ),
        (
            "POST",
            f"/v1/threads/{own['id']}/answers",
            {"body": "你好", "reply_id": b_objects["reply_id"]},
        ),
    ]
    for method, path, body in cases:
        # Tus-Resumable: the version a resumable upload's routes check before anything else.
        response = client.request(method, path, headers={**account.headers, **TUS}, json=body)
        assert response.status_code == 404, (path, body, response.text)
    visit = client.post(
        "/v1/visits",
        headers=account.headers,
        json={"customer_id": own["id"], "service_type": "ac_cleaning"},
    ).json()
    moved = client.patch(
        f"/v1/visits/{visit['id']}",
        headers=account.headers,
        json={"staff_id": b_objects["staff_id"]},
    )
    assert moved.status_code == 404
