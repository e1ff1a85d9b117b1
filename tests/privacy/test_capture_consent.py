"""Media-capture consent: uploads refused without it, accepted after; marketing needs its scope."""

from __future__ import annotations

import base64
import datetime as dt
import io

import pytest
from PIL import Image

from campaigns import lifecycle
from compliance import capture
from huifang.errors import Invalid
from media import service as media_service
from tests.factories import make_capture_consent, make_company, make_customer, make_visit
from tests.media.conftest import phone_jpeg, upload
from tests.media.test_resumable import create as tus_create

NOW = dt.datetime(2026, 12, 6, 2, 0, tzinfo=dt.UTC)


def _png(size: tuple[int, int] = (300, 120)) -> bytes:
    image = Image.new("RGB", size, "white")
    image.paste((10, 10, 10), (20, 50, 280, 56))  # a stroke
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def unconsented(session, account):
    customer = make_customer(
        session, account.tenant, name="未同意的客户", phone="13900001111", capture_consent=False
    )
    return customer, make_visit(session, account.tenant, customer=customer, areas=["客厅"])


def test_new_companies_ask_for_capture_consent(account):
    assert account.tenant.capture_consent_required is True


def test_upload_refused_without_consent_then_accepted(client, session, account, unconsented):
    customer, visit = unconsented
    refused = upload(client, account, visit.id, phone_jpeg())
    assert refused.status_code == 422
    assert "permission to photograph" in refused.json()["detail"]
    resumable = tus_create(client, account, visit.id, 1000)
    assert resumable.status_code == 422
    assert "permission to photograph" in resumable.json()["detail"]

    given = client.post(
        f"/v1/customers/{customer.id}/capture-consents",
        headers=account.headers,
        json={"source": "in_person", "evidence": "纸质授权书第 12 号", "scopes": ["photos"]},
    )
    assert given.status_code == 201, given.text
    assert given.json()["scopes"] == ["photos"]
    accepted = upload(client, account, visit.id, phone_jpeg())
    assert accepted.status_code == 202, accepted.text

    # Photos only: a clip of this customer's home is refused, naming what is missing.
    with pytest.raises(Invalid, match="being filmed"):
        capture.require_capture(
            session=session, tenant=account.tenant, customer_id=customer.id, kind="clip"
        )

    withdrawn = client.post(
        f"/v1/customers/{customer.id}/capture-consents/withdraw",
        headers=account.headers,
        json={"evidence": "客户来电撤回"},
    )
    assert withdrawn.status_code == 200
    assert withdrawn.json()[0]["withdrawn_at"] is not None
    again = upload(client, account, visit.id, phone_jpeg(color=(1, 2, 3)))
    assert again.status_code == 422


def test_a_company_that_does_not_ask_takes_uploads(client, session):
    relaxed = make_company(session)
    relaxed.tenant.capture_consent_required = False
    other = make_customer(session, relaxed.tenant, capture_consent=False)
    visit = make_visit(session, relaxed.tenant, customer=other)
    session.flush()
    assert upload(client, relaxed, visit.id, phone_jpeg()).status_code == 202


def test_a_drawn_signature_is_kept_as_evidence(client, session, account, unconsented):
    customer, _ = unconsented
    png = _png()
    given = client.post(
        f"/v1/customers/{customer.id}/capture-consents",
        headers=account.headers,
        json={
            "source": "signature",
            "evidence": "客户在手机上签名",
            "scopes": ["photos", "clips"],
            "signature_png": "data:image/png;base64," + base64.b64encode(png).decode(),
        },
    )
    assert given.status_code == 201, given.text
    assert given.json()["has_signature"] is True
    kept = client.get(
        f"/v1/customers/{customer.id}/capture-consents/{given.json()['id']}/signature",
        headers=account.headers,
    )
    assert kept.status_code == 200
    assert kept.headers["content-type"] == "image/png"
    assert kept.content == png


@pytest.mark.parametrize(
    ("signature", "sentence"),
    [
        ("not base64 at all!", "base64"),
        (base64.b64encode(b"GIF89a....").decode(), "PNG"),
        (None, "signature image"),
    ],
)
def test_a_bad_signature_is_refused(client, account, unconsented, signature, sentence):
    customer, _ = unconsented
    body = {"source": "signature", "evidence": "签名", "scopes": ["photos"]}
    if signature is not None:
        body["signature_png"] = signature
    answer = client.post(
        f"/v1/customers/{customer.id}/capture-consents", headers=account.headers, json=body
    )
    assert answer.status_code == 422
    assert sentence in answer.json()["detail"]


def test_consent_must_cover_photos_or_clips(client, account, unconsented):
    customer, _ = unconsented
    answer = client.post(
        f"/v1/customers/{customer.id}/capture-consents",
        headers=account.headers,
        json={"source": "api", "evidence": "表单 88", "scopes": ["marketing"]},
    )
    assert answer.status_code == 422
    assert "photos, clips or both" in answer.json()["detail"]


def test_another_companys_customer_is_not_found(client, account, other_account, unconsented):
    customer, _ = unconsented
    answer = client.post(
        f"/v1/customers/{customer.id}/capture-consents",
        headers=other_account.headers,
        json={"source": "api", "evidence": "x", "scopes": ["photos"]},
    )
    assert answer.status_code == 404


def _ready_photo(client, session, account, visit_id: int) -> int:
    response = upload(client, account, visit_id, phone_jpeg(), phase="after")
    assert response.status_code == 202, response.text
    media_service.process_media(session=session, media_id=response.json()["id"])
    session.flush()
    return int(response.json()["id"])


CAMPAIGN = {
    "name": "年度回访",
    "preset": "yearly_checkin",
    "mms": {"body": "{{ customer_name }}您好，一年了，该做保养了。预约：{{ booking_link }}"},
}


def test_marketing_use_needs_the_marketing_scope(client, session, account, unconsented):
    customer, visit = unconsented
    make_capture_consent(session, account.tenant, customer, scopes=("photos",))
    media_id = _ready_photo(client, session, account, visit.id)

    body = {**CAMPAIGN, "mms": {**CAMPAIGN["mms"], "image_media_id": media_id}}
    refused = client.post("/v1/campaigns", headers=account.headers, json=body)
    assert refused.status_code == 422
    assert "not allowed their photos to be used in marketing" in refused.json()["detail"]
    with pytest.raises(Invalid, match="marketing"):
        lifecycle.picture_url(session, account.tenant.id, media_id)

    capture.withdraw_capture_consent(
        session=session,
        tenant_id=account.tenant.id,
        customer_id=customer.id,
        evidence=None,
        now=dt.datetime.now(dt.UTC),
    )
    make_capture_consent(session, account.tenant, customer, scopes=("photos", "marketing"))
    session.flush()
    created = client.post("/v1/campaigns", headers=account.headers, json=body)
    assert created.status_code == 201, created.text
    assert lifecycle.picture_url(session, account.tenant.id, media_id).endswith(".jpg")


def test_the_company_setting_through_the_api(client, account):
    read = client.get("/v1/tenant", headers=account.headers).json()
    assert read["capture_consent_required"] is True
    assert read["report_media_days"] is None
    changed = client.patch(
        "/v1/tenant",
        headers=account.headers,
        json={"capture_consent_required": False, "report_media_after_view_days": 7},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["capture_consent_required"] is False
    assert changed.json()["report_media_after_view_days"] == 7
    cleared = client.patch(
        "/v1/tenant", headers=account.headers, json={"report_media_after_view_days": 0}
    )
    assert cleared.json()["report_media_after_view_days"] is None
