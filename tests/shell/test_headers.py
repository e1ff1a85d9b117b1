"""Every HTML answer carries CSP, nosniff, a referrer policy and frame protection."""

from __future__ import annotations

import datetime as dt

import pytest

from bookings import links
from huifang import throttle
from media import service as media_service
from media.upload import stage_bytes
from reports import service as reports
from tests.factories import create_consenting_customer
from tests.media.conftest import phone_jpeg
from visits import service as visits


def _directives(policy: str) -> dict[str, str]:
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in policy.split(";")
        if part.strip()
    }


def assert_protected(answer) -> dict[str, str]:
    assert answer.headers["content-type"].startswith("text/html"), answer.headers
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-frame-options"] == "DENY"
    policy = _directives(answer.headers["content-security-policy"])
    assert policy["frame-ancestors"] == "'none'"
    assert policy["default-src"] == "'none'"
    assert "*" not in answer.headers["content-security-policy"]
    return policy


@pytest.fixture
def pages(session, account):
    """A visit with a processed photo and its report, and a booking link."""
    customer = create_consenting_customer(
        session=session, tenant=account.tenant, name="王女士", phone="13800138000"
    )
    visit = visits.create_visit(
        session=session, tenant=account.tenant, customer_id=customer.id, service_type="ac_cleaning"
    )
    media, _ = media_service.accept_upload(
        session=session,
        tenant=account.tenant,
        visit_id=visit.id,
        staged=stage_bytes(phone_jpeg(), fields={"phase": "after", "area": "客厅"}),
    )
    media_service.process_media(session=session, media_id=media.id)
    report, _ = reports.build_report(session=session, tenant=account.tenant, visit_id=visit.id)
    link = links.link_for(
        session=session,
        tenant=account.tenant,
        customer=customer,
        source_type="campaign",
        source_id="1",
        service_type="ac_cleaning",
        now=dt.datetime.now(dt.UTC),
    )
    session.flush()
    return {"code": media.verification_code, "report": report.token, "booking": link.token}


def test_public_pages_carry_the_security_headers(client, account, pages):
    for path in (
        f"/v/{pages['code']}",
        "/v/NOSUCHCODE",
        f"/b/{pages['booking']}",
        f"/r/{pages['report']}",
        f"/r/{'x' * 24}",
    ):
        answer = client.get(path)
        assert answer.status_code in (200, 404), path
        policy = assert_protected(answer)
        if path == f"/r/{pages['report']}":  # the report runs its own counting script
            assert policy["script-src"] == "'self'"
        else:
            assert "script-src" not in policy, path  # our pages run no script
    # A refused booking form is a page too.
    refused = client.post(f"/b/{pages['booking']}", data={"slot": "soon"})
    assert refused.status_code == 422
    assert_protected(refused)


def test_the_booking_page_cannot_be_framed_and_posts_only_to_itself(client, pages):
    policy = assert_protected(client.get(f"/b/{pages['booking']}"))
    assert policy["form-action"] == "'self'"


def test_the_report_page_keeps_its_tighter_policy(client, pages):
    policy = assert_protected(client.get(f"/r/{pages['report']}"))
    assert policy["form-action"] == "'self'"  # its satisfaction form, to itself
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    missing = assert_protected(client.get(f"/r/{'x' * 24}"))
    assert missing["form-action"] == "'none'" and "script-src" not in missing


def test_the_console_carries_the_security_headers(client, account):
    assert_protected(client.get("/console", headers=account.headers))


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_api_docs_carry_the_headers_and_load_nothing_from_elsewhere(client, path):
    answer = client.get(path)
    assert answer.status_code == 200
    policy = assert_protected(answer)
    assert "http" not in answer.headers["content-security-policy"]
    assert "cdn" not in answer.text and "https://" not in answer.text
    assert policy["script-src"].startswith("'self'")
    assert "'unsafe-inline'" not in policy["script-src"]
    for asset in (
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
        "/docs/assets/redoc.standalone.js",
    ):
        if asset.rsplit("/", 1)[1].split(".")[0] in answer.text:
            fetched = client.get(asset)
            assert fetched.status_code == 200 and len(fetched.content) > 10_000, asset


def test_json_answers_are_not_sniffed(client, account):
    answer = client.get("/v1/tenant", headers=account.headers)
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in answer.headers


def test_the_too_many_requests_page_carries_them_too(client):
    for _ in range(throttle.PAGE_VIEWS.amount):
        assert client.get("/v/NOSUCHCODE").status_code == 404
    refused = client.get("/v/NOSUCHCODE")
    assert refused.status_code == 429
    assert_protected(refused)
