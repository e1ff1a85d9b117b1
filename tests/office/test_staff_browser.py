"""The staff phone page in a real Chromium at 360×800 with touch, against the app served
for real: signed in from the link, today's visits, before and after photos of two areas
from files (a HEIC and a 12 MP JPEG stored sideways among them), the connection cut in the
middle of an upload, the page reloaded, the connection restored: the upload goes on from the
server's offset and arrives once; the watermarked results show; the visit is finished and
its report opened as the customer will see it.

The media queue is driven from the test (``media.service.process_media`` for what is
waiting), as the embedded worker would.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from media import service as media_service
from media.models import PROCESSING, Media, ResumableUpload
from tests.browser import (
    SMALL_PHONE,
    LiveApp,
    artifacts,
    chromium,
    live_app,
    make_company,
    make_user,
    open_page,
    page_width,
    shot,
    sign_in_through_link,
)
from tests.conftest import REQUIRE_SERVICES
from tests.factories import create_consenting_customer
from tests.media.conftest import CORPUS
from visits import service as visits

pytestmark = pytest.mark.browser
__all__ = ["chromium", "live_app"]  # fixtures

HEIC = "heif_arrow.heic"  # iPhone HEIC, 3024×4032, ICC profile (INDEX.tsv: accept)
SIDEWAYS = "derived_iphone_like_4032x3024_orient6.jpg"  # 12 MP, Orientation=6 (accept)
PIECE = 2 * 1024 * 1024  # uploads.js sends 2 MB pieces
DISCONNECTED = "ERR_INTERNET_DISCONNECTED"


def _corpus(name: str) -> Path:
    path = CORPUS / name
    if not path.is_file():
        why = f"{path} is missing: ../shared/corpus/images is not beside this checkout"
        if REQUIRE_SERVICES:
            pytest.fail(why)
        pytest.skip(why)
    return path


def _big_photo() -> bytes:
    """A phone-sized photo that does not compress away: several 2 MB pieces."""
    image = Image.effect_noise((2400, 1800), 70).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    data = out.getvalue()
    assert len(data) > 2 * PIECE + 1, len(data)
    return data


def _small_photo(color: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (1600, 1200), color)
    image.paste((240, 240, 240), (200, 200, 900, 700))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _process_waiting(app: LiveApp) -> int:
    """What the media queue does: process every photo waiting (the test's worker)."""
    with app.database.session() as session:
        waiting = list(session.scalars(select(Media.id).where(Media.status == PROCESSING)))
    for media_id in waiting:
        with app.database.session() as session:
            media_service.process_media(session=session, media_id=media_id)
    return len(waiting)


def _wait(
    page: Any, predicate: Any, what: str, app: LiveApp | None = None, timeout: float = 90.0
) -> None:
    """Wait while the browser runs (our route handlers included), processing media."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if app is not None:
            _process_waiting(app)
        page.wait_for_timeout(200)


def _items(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("window.staffQueue ? window.staffQueue.list() : []")


def _choose(page: Any, area: str, phase: str, files: list[dict[str, Any]], note: str = "") -> None:
    form = page.locator(f'form.capture[data-area="{area}"][data-phase="{phase}"]')
    if note:
        form.get_by_label("备注（可选，随下一张照片上传）").fill(note)
    form.locator("input[data-pick=gallery]").set_input_files(files)


def _fits(page: Any) -> None:
    assert page_width(page) <= SMALL_PHONE["width"]
    page.evaluate("window.scrollTo(0, 0)")  # the sticky bar above the title in the shot


def test_a_staff_day_on_a_phone(chromium, live_app):
    heic = _corpus(HEIC).read_bytes()
    sideways = _corpus(SIDEWAYS).read_bytes()
    big = _big_photo()
    tenant = make_company(live_app, "洁家家政")
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)
    with live_app.database.session() as session:
        customer = create_consenting_customer(
            session=session, tenant=tenant, name="王女士", phone="13800138000", region="浦东新区"
        )
        other_customer = create_consenting_customer(
            session=session, tenant=tenant, name="陈先生", phone="13800138001"
        )
        staff = visits.create_staff(session=session, tenant=tenant, name="李秀兰")
        someone = visits.create_staff(session=session, tenant=tenant, name="张师傅")
        visit = visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=customer.id,
            staff_id=staff.id,
            service_type="deep_cleaning",
            areas=["客厅", "厨房"],
            scheduled_at=soon,
            notes="有宠物，进门换鞋套",
        )
        visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=other_customer.id,
            staff_id=staff.id,
            service_type="ac_cleaning",
            areas=["卧室"],
            scheduled_at=soon + dt.timedelta(days=1),
        )
        visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=other_customer.id,
            staff_id=someone.id,
            service_type="ac_cleaning",
            areas=["书房"],
            scheduled_at=soon,
        )
        staff_id, visit_id = staff.id, visit.id
    link = make_user(
        live_app, tenant, role="staff", name="李秀兰", phone="13900139222", staff_id=staff_id
    )

    offsets: list[int] = []  # Upload-Offset of every piece the page sent
    cut = {"armed": False, "down": False, "pieces": 0}

    def network(route: Any, request: Any) -> None:
        if cut["down"]:
            route.abort("internetdisconnected")
            return
        if request.method == "PATCH":
            offset = int(request.headers["upload-offset"])
            if cut["armed"]:
                cut["pieces"] += 1
                if cut["pieces"] == 2:  # the second piece of the big photo never arrives
                    cut["down"] = True
                    route.abort("internetdisconnected")
                    return
            offsets.append(offset)
        route.fallback()

    with open_page(chromium, live_app, SMALL_PHONE, touch=True) as (page, watched):
        page.route("**/staff/uploads/**", network)
        page.route("**/staff/visits/*/uploads", network)

        # Signed in from the link, today's visits.
        sign_in_through_link(page, link, staff=True)
        assert page.url.endswith("/staff/")
        assert page.get_by_role("heading", name="今日任务").is_visible()
        card = page.locator(".visit-card").first
        assert "王女士" in card.inner_text() and "深度保洁" in card.inner_text()
        assert "客厅：缺服务前、服务后、视频" in card.inner_text()
        assert page.locator(".visit-card").count() == 2  # not 张师傅's
        assert "陈先生" in page.locator(".visit-card").nth(1).inner_text()
        _fits(page)
        shot(page, "staff-today-360")

        card.click()
        page.wait_for_url(f"**/staff/visits/{visit_id}")
        page.get_by_role("button", name="开始服务").click()
        page.wait_for_url(f"**/staff/visits/{visit_id}")
        assert page.get_by_role("button", name="完成并生成报告").is_disabled()
        assert page.locator(".pick.camera").first.is_visible()  # the script is running
        _fits(page)
        shot(page, "staff-visit-360")

        # A file that is no photo: refused, why in Chinese, a retry and a remove button.
        watched.allowed_statuses.add(415)
        _choose(
            page,
            "客厅",
            "during",
            [
                {
                    "name": "报价单.jpg",
                    "mimeType": "image/jpeg",
                    "buffer": b"%PDF-1.4\n" + b"0" * 4000,
                }
            ],
        )
        _wait(page, lambda: [i["state"] for i in _items(page)] == ["failed"], "the refusal")
        refused = page.locator('form.capture[data-area="客厅"][data-phase="during"] .item')
        assert "不是能接收的照片或视频" in refused.inner_text()
        assert refused.get_by_role("button", name="重试").is_visible()
        refused.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts("screens", "staff-refused-360.png")))  # the screen
        refused.get_by_role("button", name="移除").click()
        _wait(page, lambda: _items(page) == [], "the refused file to go")
        watched.errors[:] = [e for e in watched.errors if "status of 415" not in e]

        # 客厅: the iPhone's HEIC before, the sideways 12 MP JPEG after, with a note.
        _choose(
            page,
            "客厅",
            "before",
            [{"name": "IMG_0001.HEIC", "mimeType": "image/heic", "buffer": heic}],
        )
        _choose(
            page,
            "客厅",
            "after",
            [{"name": "IMG_0002.JPG", "mimeType": "image/jpeg", "buffer": sideways}],
            note="沙发底下也清了",
        )
        _wait(
            page,
            lambda: [i["state"] for i in _items(page)] == ["done", "done"],
            "the first two photos to be processed",
            live_app,
        )
        done = page.locator(".item.done img.thumb")
        assert done.count() == 2
        assert all(
            done.nth(n).evaluate("img => img.complete && img.naturalWidth > 0") for n in range(2)
        )
        with live_app.database.session() as session:
            sideways_media = session.scalars(
                select(Media).where(Media.visit_id == visit_id, Media.phase == "after")
            ).one()
            assert (sideways_media.width, sideways_media.height) == (3024, 4032)  # upright
            assert sideways_media.note == "沙发底下也清了"

        # 厨房 before: a big photo; the network goes in the middle of it.
        cut["armed"] = True
        _choose(
            page,
            "厨房",
            "before",
            [{"name": "IMG_0003.JPG", "mimeType": "image/jpeg", "buffer": big}],
        )
        _wait(page, lambda: cut["down"], "the cut")
        with live_app.database.session() as session:
            held = session.scalars(
                select(ResumableUpload).where(
                    ResumableUpload.visit_id == visit_id, ResumableUpload.length == len(big)
                )
            ).one()
            assert held.received == PIECE  # exactly the piece that arrived

        page.reload()  # the connection is still down
        _wait(page, lambda: len(_items(page)) == 1, "the queue to come back after the reload")
        restored = _items(page)[0]
        assert restored["name"] == "IMG_0003.JPG" and restored["kept"] is True
        page.wait_for_timeout(500)
        item = page.locator('form.capture[data-area="厨房"][data-phase="before"] .item')
        assert item.is_visible() and "等待中" in item.inner_text()
        _fits(page)
        shot(page, "staff-uploading-360")
        before_restore = len(offsets)
        cut["down"] = False  # the connection is back

        _wait(
            page,
            lambda: _items(page) and _items(page)[0]["state"] in ("processing", "done"),
            "the big photo to arrive",
        )
        resumed = offsets[before_restore:]
        assert resumed[0] == PIECE  # went on from the server's offset, not from 0
        assert resumed == sorted(resumed) and len(set(resumed)) == len(resumed)
        _choose(
            page,
            "厨房",
            "after",
            [
                {
                    "name": "IMG_0004.JPG",
                    "mimeType": "image/jpeg",
                    "buffer": _small_photo((60, 120, 90)),
                }
            ],
        )
        _wait(
            page,
            lambda: [i["state"] for i in _items(page)] == ["done", "done"],
            "the kitchen photos to be processed",
            live_app,
        )
        with live_app.database.session() as session:
            assert (
                session.scalar(
                    select(func.count())
                    .select_from(Media)
                    .where(Media.visit_id == visit_id, Media.bytes == len(big))
                )
                == 1
            )  # arrived once
            assert (
                session.scalar(
                    select(func.count()).select_from(Media).where(Media.visit_id == visit_id)
                )
                == 4
            )
        finish = page.get_by_role("button", name="完成并生成报告")
        _wait(page, finish.is_enabled, "the finish button")
        assert page.locator('[data-missing="客厅"]').inner_text() == "缺视频"
        _fits(page)
        shot(page, "staff-done-360")
        # The cut connection's refused requests are the test's own doing.
        watched.failed[:] = [f for f in watched.failed if DISCONNECTED not in f]
        watched.errors[:] = [e for e in watched.errors if DISCONNECTED not in e]

        # Finished; the report as the customer will see it.
        finish.click()
        page.wait_for_url(f"**/staff/visits/{visit_id}/report")
        assert page.get_by_role("heading", name="服务报告已生成").is_visible()
        assert "店里会先审核" in page.locator("main").inner_text()
        _fits(page)
        shot(page, "staff-finished-360")
        page.get_by_role("link", name="查看客户看到的报告").click()
        page.wait_for_url("**/r/**")
        assert "深度保洁" in page.locator("body").inner_text()
        page.wait_for_load_state("networkidle")
        shot(page, "staff-report-360")


def test_without_javascript_the_page_still_uploads_one_file(chromium, live_app):
    tenant = make_company(live_app, "无脚本家政")
    with live_app.database.session() as session:
        customer = create_consenting_customer(
            session=session, tenant=tenant, name="赵女士", phone="13800138009"
        )
        staff = visits.create_staff(session=session, tenant=tenant, name="周师傅")
        visit = visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=customer.id,
            staff_id=staff.id,
            service_type="ac_cleaning",
            areas=["客厅"],
            scheduled_at=dt.datetime.now(dt.UTC),
        )
        staff_id, visit_id = staff.id, visit.id
    link = make_user(
        live_app, tenant, role="staff", name="周师傅", phone="13900139333", staff_id=staff_id
    )
    context = chromium.new_context(
        viewport=SMALL_PHONE,
        locale="zh-CN",
        has_touch=True,
        is_mobile=True,
        java_script_enabled=False,
    )
    try:
        page = context.new_page()
        sign_in_through_link(page, link, staff=True)
        page.goto(f"{live_app.url}/staff/visits/{visit_id}")
        assert not page.locator(".pick.camera").first.is_visible()  # needs the script
        form = page.locator('form.capture[data-area="客厅"][data-phase="before"]')
        form.locator("input[name=file]").set_input_files(
            [
                {
                    "name": "IMG_0009.JPG",
                    "mimeType": "image/jpeg",
                    "buffer": _small_photo((120, 60, 60)),
                }
            ]
        )
        form.get_by_label("备注（可选，随下一张照片上传）").fill("空调出风口")
        form.get_by_role("button", name="上传这张").click()
        page.wait_for_url(f"**/staff/visits/{visit_id}?uploaded=1")
        assert "已上传，正在处理" in page.locator("main").inner_text()
        assert _process_waiting(live_app) == 1
        page.reload()
        thumb = page.locator('form.capture[data-area="客厅"][data-phase="before"] .shot img')
        assert thumb.evaluate("img => img.complete && img.naturalWidth > 0")
        assert "空调出风口" in form.inner_text()
        with live_app.database.session() as session:
            stored = session.scalars(select(Media).where(Media.visit_id == visit_id)).one()
            assert (stored.phase, stored.area, stored.note) == ("before", "客厅", "空调出风口")
        shot(page, "staff-visit-nojs-360")
    finally:
        context.close()
