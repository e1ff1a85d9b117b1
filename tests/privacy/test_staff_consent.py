"""The staff phone without the customer's permission to photograph: uploads refused (422)
with a Chinese sentence, the permission form shown; a form post records it."""

from __future__ import annotations

import base64
import datetime as dt
import io

import pytest
from PIL import Image
from sqlalchemy import func, select

from compliance import capture
from media.models import Media
from tests.factories import make_customer
from tests.media.conftest import phone_jpeg
from tests.office.support import form_token, sign_in
from tests.office.test_staff_pages import _create
from visits import service as visits


def _signature() -> str:
    image = Image.new("RGB", (600, 240), "white")
    image.paste((0, 0, 0), (40, 110, 560, 118))
    out = io.BytesIO()
    image.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.fixture
def phone(client, session, account):
    customer = make_customer(
        session, account.tenant, name="钱女士", phone="13822220000", capture_consent=False
    )
    staff = visits.create_staff(session=session, tenant=account.tenant, name="李秀兰")
    visit = visits.create_visit(
        session=session,
        tenant=account.tenant,
        customer_id=customer.id,
        staff_id=staff.id,
        service_type="deep_cleaning",
        areas=["客厅"],
        scheduled_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30),
    )
    session.flush()
    sign_in(
        client,
        session,
        account.tenant,
        role="staff",
        name="李秀兰",
        phone="13900139111",
        staff_id=staff.id,
    )
    page = client.get(f"/staff/visits/{visit.id}")
    assert page.status_code == 200
    return client, form_token(page.text), visit, customer, page.text


def test_uploads_are_refused_in_chinese_until_the_customer_signs(phone, session, account):
    client, token, visit, customer, page = phone
    assert "请客户同意拍照录像" in page and 'name="signature"' in page
    assert 'class="capture"' not in page

    resumable = _create(client, token, visit.id, 1000)
    assert resumable.status_code == 422
    assert "客户还没有同意拍照录像" in resumable.json()["detail"]
    one = client.post(
        f"/staff/visits/{visit.id}/upload",
        data={"csrf_token": token, "phase": "before", "area": "客厅"},
        files={"file": ("a.jpg", phone_jpeg(), "image/jpeg")},
    )
    assert one.status_code == 422
    assert "客户还没有同意拍照录像" in one.text
    assert session.scalar(select(func.count()).where(Media.visit_id == visit.id)) == 0

    unticked = client.post(
        f"/staff/visits/{visit.id}/capture-consent",
        data={"csrf_token": token, "scope": ["photos"], "signature": _signature()},
    )
    assert unticked.status_code == 422 and "请客户勾选“我同意”" in unticked.text
    unsigned = client.post(
        f"/staff/visits/{visit.id}/capture-consent",
        data={"csrf_token": token, "scope": ["photos"], "agree": "yes", "signature": ""},
    )
    assert unsigned.status_code == 422 and "请客户在签名框里签名" in unsigned.text
    signed = client.post(
        f"/staff/visits/{visit.id}/capture-consent",
        data={
            "csrf_token": token,
            "scope": ["photos", "clips"],
            "agree": "yes",
            "signature": _signature(),
        },
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    record = capture.active_capture_consent(
        session=session, tenant_id=account.tenant.id, customer_id=customer.id
    )
    assert record is not None and record.signature_path and record.source == "signature"

    accepted = client.post(
        f"/staff/visits/{visit.id}/upload",
        data={"csrf_token": token, "phase": "before", "area": "客厅"},
        files={"file": ("a.jpg", phone_jpeg(), "image/jpeg")},
        follow_redirects=False,
    )
    assert accepted.status_code == 303
    assert _create(client, token, visit.id, 1000).status_code == 201
