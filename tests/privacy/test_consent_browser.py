"""The staff phone at 360 px with touch: a visit whose customer has not allowed photos shows
the permission form instead of the capture blocks; the customer ticks the box and signs with
a finger on the canvas; the permission is recorded with the drawn signature as a PNG, and
the capture blocks appear."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from PIL import Image

from compliance import capture
from customers import service as customers
from huifang import storage
from tests.browser import (
    SMALL_PHONE,
    chromium,
    live_app,
    make_company,
    make_user,
    open_page,
    page_width,
    shot,
    sign_in_through_link,
)
from visits import service as visits

pytestmark = pytest.mark.browser
__all__ = ["chromium", "live_app"]  # fixtures


def _stroke(page: Any, box: dict[str, float]) -> None:
    """A finger signing across the pad: a few touches drawn as pointer moves."""
    left, top = box["x"] + 20, box["y"] + box["height"] / 2
    page.mouse.move(left, top)
    page.mouse.down()
    for step in range(1, 16):
        page.mouse.move(left + step * (box["width"] - 40) / 15, top + (12 if step % 2 else -12))
    page.mouse.up()


def test_the_customer_ticks_and_signs_on_the_staff_phone(chromium, live_app):
    tenant = make_company(live_app, "签名家政")
    with live_app.database.session() as session:
        customer = customers.create_customer(
            session=session, tenant=tenant, name="赵女士", phone="13811110000"
        )
        staff = visits.create_staff(session=session, tenant=tenant, name="李秀兰")
        visit = visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=customer.id,
            staff_id=staff.id,
            service_type="deep_cleaning",
            areas=["客厅"],
            scheduled_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20),
        )
        customer_id, staff_id, visit_id = customer.id, staff.id, visit.id
    link = make_user(
        live_app, tenant, role="staff", name="李秀兰", phone="13900139333", staff_id=staff_id
    )

    with open_page(chromium, live_app, SMALL_PHONE, touch=True) as (page, watched):
        sign_in_through_link(page, link, staff=True)
        answer = page.goto(f"{live_app.url}/staff/visits/{visit_id}")
        assert answer is not None and answer.status == 200
        form = page.locator("#capture-consent")
        assert form.is_visible()
        assert page.locator("form.capture").count() == 0  # no uploading before permission
        assert page.locator("[data-signature-nojs]").is_hidden()  # the script is running
        assert page_width(page) <= SMALL_PHONE["width"]
        form.scroll_into_view_if_needed()
        shot(page, "staff-capture-consent-360")

        # Submitting without a signature is stopped on the page, in Chinese.
        page.get_by_label("我已阅读并同意以上内容").check()
        page.get_by_role("button", name="客户已同意并签名").click()
        assert page.locator(".signature-missing").inner_text() == "请客户在签名框里签名后再提交。"

        pad = page.locator("[data-signature-pad]")
        pad.scroll_into_view_if_needed()
        box = pad.bounding_box()
        assert box is not None and box["width"] <= SMALL_PHONE["width"]
        _stroke(page, box)
        page.get_by_label("照片可用于宣传（如活动中的服务前后对比）").check()
        shot(page, "staff-capture-consent-signed-360")
        page.get_by_role("button", name="客户已同意并签名").click()
        page.wait_for_url(f"**/staff/visits/{visit_id}?consented=1")
        assert "已记录客户的拍照录像授权" in page.locator(".notice").inner_text()
        assert page.locator("#capture-consent").count() == 0
        assert page.locator("form.capture").count() > 0  # the capture blocks are back
        assert page_width(page) <= SMALL_PHONE["width"]
        shot(page, "staff-capture-consent-done-360")
        assert watched.errors == []

    with live_app.database.session() as session:
        record = capture.active_capture_consent(
            session=session, tenant_id=tenant.id, customer_id=customer_id
        )
        assert record is not None
        assert record.source == "signature"
        assert record.scope_list == ["photos", "clips", "marketing"]
        assert "李秀兰" in record.evidence and record.recorded_by == "李秀兰"
        assert record.signature_path is not None
        data = storage.resolve(record.signature_path).read_bytes()
    signature = Image.open(io.BytesIO(data))
    assert signature.format == "PNG" and signature.size == (600, 240)
    # Ink on the white pad: the stroke the finger drew is in the picture.
    dark = sum(signature.convert("L").histogram()[:100])
    assert dark > 500, dark
