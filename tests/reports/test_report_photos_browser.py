"""The report's photos as a customer reads them, in a real Chromium at 390 and 1280 px:
the staff's notes under their photos, a pair of wide before/after photos stacked on a phone
and side by side on a desktop, and the verification page's time zone and fingerprint."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from media import samples
from media import service as media_service
from media.models import Media
from media.upload import stage_bytes
from reports import service as reports
from tests.browser import PHONE, chromium, live_app, make_company, open_page, shot
from tests.factories import create_consenting_customer
from visits import service as visits

__all__ = ["chromium", "live_app"]  # fixtures

DESKTOP = {"width": 1280, "height": 900}
BEFORE_NOTE = "灶台油污较重，先用蒸汽软化再清洗"
AFTER_NOTE = "油烟机滤网已拆洗，建议每月擦拭一次"
DURING_NOTE = "清洗时已关闭燃气总阀"
WORK_NOTE = "今日共清洗厨房与客厅两处"
FINGERPRINT_SENTENCE = "原图指纹是用 SHA-256 方法从原始照片文件算出的一串字符"


def _room(*, clean: bool, seed: int) -> bytes:
    image = Image.open(io.BytesIO(samples.room_photo(clean=clean, seed=seed, size=(1200, 800))))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=88)
    return out.getvalue()


def _photo(session, tenant, visit_id: int, data: bytes, *, phase: str, note: str) -> Media:
    fields = {"phase": phase, "area": "厨房", "note": note}
    staged = stage_bytes(data, fields=fields, filename="IMG.jpg")
    media, _ = media_service.accept_upload(
        session=session, tenant=tenant, visit_id=visit_id, staged=staged
    )
    processed = media_service.process_media(session=session, media_id=media.id)
    assert processed is not None and processed.status == "ready"
    return processed


@pytest.fixture
def report(live_app):
    """A report with one wide before/after pair, a during photo and a work report, noted."""
    tenant = make_company(live_app, "洁家家政")
    with live_app.database.session() as session:
        customer = create_consenting_customer(
            session=session, tenant=tenant, name="王女士", phone="13800138000"
        )
        staff = visits.create_staff(session=session, tenant=tenant, name="李秀兰")
        visit = visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=customer.id,
            staff_id=staff.id,
            service_type="deep_cleaning",
            areas=["厨房"],
        )
        before = _photo(
            session, tenant, visit.id, _room(clean=False, seed=1), phase="before", note=BEFORE_NOTE
        )
        _photo(session, tenant, visit.id, _room(clean=True, seed=1), phase="after", note=AFTER_NOTE)
        _photo(
            session, tenant, visit.id, _room(clean=False, seed=2), phase="during", note=DURING_NOTE
        )
        _photo(
            session,
            tenant,
            visit.id,
            _room(clean=False, seed=3),
            phase="staff_report",
            note=WORK_NOTE,
        )
        built, _ = reports.build_report(session=session, tenant=tenant, visit_id=visit.id)
        return built.token, before.verification_code


def _boxes(page) -> list[dict[str, float]]:
    boxes = [box for box in (img.bounding_box() for img in page.locator(".pair img").all()) if box]
    assert len(boxes) == 2
    return boxes


def _scroll_through(page, height: int) -> None:
    """Every lazy image loaded, so boxes and screenshots show them."""
    total = page.evaluate("document.documentElement.scrollHeight")
    for y in range(0, total + height, height // 2):
        page.evaluate(f"window.scrollTo(0, {y})")
        page.wait_for_timeout(50)
    page.wait_for_load_state("networkidle")
    page.evaluate("window.scrollTo(0, 0)")


@pytest.mark.browser
def test_on_a_phone_notes_show_and_a_wide_pair_stacks(chromium, live_app, report):
    token, _ = report
    with open_page(chromium, live_app, PHONE, touch=True) as (page, _watched):
        assert page.goto(f"{live_app.url}/r/{token}").status == 200
        _scroll_through(page, PHONE["height"])
        before, after = _boxes(page)
        # One above the other, each the width of the card: the watermark stays readable.
        assert before["y"] + before["height"] <= after["y"]
        assert abs(before["x"] - after["x"]) < 1 and before["width"] > PHONE["width"] * 0.75
        for note in (BEFORE_NOTE, AFTER_NOTE, DURING_NOTE, WORK_NOTE):
            shown = page.get_by_text(note, exact=True)
            assert shown.count() == 1 and shown.is_visible(), note
        # Each pair note sits under its own photo.
        for box, note in ((before, BEFORE_NOTE), (after, AFTER_NOTE)):
            text = page.get_by_text(note, exact=True).bounding_box()
            assert text is not None and text["y"] >= box["y"] + box["height"]
            assert text["y"] - (box["y"] + box["height"]) < 60
        broken = page.evaluate(
            "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length"
        )
        assert broken == 0
        page.set_viewport_size({"width": 390, "height": 844})
        shot(page, "report-photos-390")


@pytest.mark.browser
def test_on_a_desktop_the_pair_stands_side_by_side(chromium, live_app, report):
    token, _ = report
    with open_page(chromium, live_app, DESKTOP) as (page, _watched):
        assert page.goto(f"{live_app.url}/r/{token}").status == 200
        _scroll_through(page, DESKTOP["height"])
        before, after = _boxes(page)
        assert abs(before["y"] - after["y"]) < 1
        assert before["x"] + before["width"] <= after["x"]
        assert page.get_by_text(BEFORE_NOTE, exact=True).is_visible()
        shot(page, "report-photos-1280")


@pytest.mark.browser
@pytest.mark.parametrize("width", ["390", "1280"])
def test_the_verification_page_says_beijing_time_and_what_the_fingerprint_is(
    chromium, live_app, report, width
):
    _, code = report
    viewport = PHONE if width == "390" else DESKTOP
    with open_page(chromium, live_app, viewport) as (page, _watched):
        assert page.goto(f"{live_app.url}/v/{code}").status == 200
        uploaded = page.locator("dd", has_text="服务器记录")
        assert "北京时间" in uploaded.inner_text()
        sentence = page.get_by_text(FINGERPRINT_SENTENCE)
        assert sentence.count() == 1 and sentence.is_visible()
        assert "Asia/Shanghai" not in page.content()
        shot(page, f"verify-{width}")


def test_zone_names_are_chinese_or_an_offset():
    import datetime as dt

    winter = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
    assert media_service.zone_name("Asia/Shanghai", winter) == "北京时间"
    assert media_service.zone_name("Asia/Hong_Kong", winter) == "香港时间"
    assert media_service.zone_name("Australia/Adelaide", winter) == "世界协调时间+10:30"
    assert media_service.zone_name("America/New_York", winter) == "世界协调时间-5"
