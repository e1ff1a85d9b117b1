"""The phone's upload queue (staff/static/uploads.js) in a real Chromium at 360 px,
against the app served for real: the connection is cut mid-upload, the page reloaded, the
connection restored, and the file goes on from the server's offset and arrives once.

The page itself comes in phase 2; here a bare page that loads the script is served through
Playwright's routing on the app's own origin, so the script talks to the real /v1 routes.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy import delete, func, select

from media import service as media_service
from media.models import Media
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.browser import (
    chromium,
    live_app,  # noqa: F401  (the fixture `server` needs)
)
from tests.factories import create_consenting_customer
from tests.reports.test_report_browser import server  # noqa: F401
from visits import service as visits

__all__ = ["chromium"]  # fixtures

SCRIPT = Path(__file__).resolve().parents[2] / "staff" / "static" / "uploads.js"
CHUNK = 32 * 1024
PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"></head><body>
<input type="file" id="file" accept="image/*,video/*" multiple>
<script src="/test-staff/uploads.js"></script>
<script>
window.events = [];
window.queue = HuifangUploads.open({
  base: "/v1", chunkSize: %(chunk)d,
  headers: function () { return {Authorization: "Bearer %(key)s"}; },
  onChange: function (item) { window.events.push(item); }
});
document.getElementById("file").addEventListener("change", function (event) {
  Array.prototype.forEach.call(event.target.files, function (file) {
    window.queue.add(file, {visitId: %(visit)d, phase: "before", area: "客厅"});
  });
});
</script></body></html>"""


@pytest.fixture
def company(sqlite_database):
    with sqlite_database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="洁家家政", signature="洁家家政")
        _, key = tenancy.create_api_key(session=session, tenant=tenant)
        customer = create_consenting_customer(
            session=session, tenant=tenant, name="王女士", phone="13800138000"
        )
        staff = visits.create_staff(session=session, tenant=tenant, name="李秀兰")
        visit = visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=customer.id,
            staff_id=staff.id,
            service_type="ac_cleaning",
            areas=["客厅"],
        )
        ids = {"tenant": tenant.id, "visit": visit.id, "key": key}
    yield ids
    with sqlite_database.session() as session:
        session.execute(delete(Tenant).where(Tenant.id == ids["tenant"]))


def _noisy_photo() -> bytes:
    """A phone-like photo that does not compress away: several pieces of CHUNK bytes."""
    image = Image.effect_noise((900, 700), 60).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def _wait(page, predicate, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Wait while the browser runs (its events, our route handlers included)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(100)


@pytest.mark.browser
def test_an_upload_survives_a_cut_connection_and_a_reload(
    sqlite_database,
    server,  # noqa: F811  (the fixture imported above)
    company,
    chromium,
):
    data = _noisy_photo()
    assert len(data) > 5 * CHUNK
    html = PAGE % {"chunk": CHUNK, "key": company["key"], "visit": company["visit"]}
    offsets: list[int] = []  # Upload-Offset of every PATCH the page sent
    state = {"cut": False, "was_cut": False}
    errors: list[str] = []

    def api(route, request):  # type: ignore[no-untyped-def]
        if state["cut"]:
            route.abort("internetdisconnected")
            return
        if request.method == "PATCH":
            offsets.append(int(request.headers["upload-offset"]))
            if len(offsets) == 4 and not state["was_cut"]:  # the fourth piece never arrives
                state["cut"] = state["was_cut"] = True
                route.abort("internetdisconnected")
                return
        route.continue_()

    context = None
    try:
        context = chromium.new_context(
            viewport={"width": 360, "height": 800}, has_touch=True, is_mobile=True, locale="zh-CN"
        )
        context.route(
            f"{server}/test-staff/",
            lambda route: route.fulfill(
                status=200, content_type="text/html; charset=utf-8", body=html
            ),
        )
        context.route(
            f"{server}/test-staff/uploads.js",
            lambda route: route.fulfill(
                status=200,
                content_type="text/javascript; charset=utf-8",
                body=SCRIPT.read_text(encoding="utf-8"),
            ),
        )
        context.route(f"{server}/v1/**", api)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server}/test-staff/")
        page.evaluate("window.queue.ready")
        page.set_input_files(
            "#file",
            files=[{"name": "IMG_20261206_101500.jpg", "mimeType": "image/jpeg", "buffer": data}],
        )
        _wait(page, lambda: state["was_cut"], "the cut")

        # The server holds exactly the three pieces that arrived.
        location = page.evaluate(
            "new Promise(function (resolve) { var r = indexedDB.open('huifang-uploads');"
            " r.onsuccess = function () { var t = r.result.transaction('items');"
            " var g = t.objectStore('items').getAll();"
            " g.onsuccess = function () { resolve(g.result[0].url); }; }; })"
        )
        held = httpx.head(
            location,
            headers={"Authorization": f"Bearer {company['key']}", "Tus-Resumable": "1.0.0"},
        )
        assert held.status_code == 200
        assert int(held.headers["upload-offset"]) == 3 * CHUNK

        page.reload()  # the network is still down
        page.evaluate("window.queue.ready")
        restored = page.evaluate("window.queue.list()")
        assert len(restored) == 1 and restored[0]["name"] == "IMG_20261206_101500.jpg"
        assert restored[0]["kept"] is True  # from IndexedDB, not from memory
        page.wait_for_timeout(1000)
        before_restore = len(offsets)
        state["cut"] = False

        _wait(
            page,
            lambda: any(e["state"] == "processing" for e in page.evaluate("window.events")),
            "the upload to finish",
        )
        resumed = offsets[before_restore:]
        assert resumed[0] == 3 * CHUNK  # went on from the server's offset, not from 0
        assert resumed == sorted(resumed) and len(set(resumed)) == len(resumed)
        labels = [e["label"] for e in page.evaluate("window.events")]
        assert "等待中" in labels and "处理中" in labels
        assert any(label.startswith("上传中 ") and label.endswith("%") for label in labels)

        with sqlite_database.session() as session:
            stored = session.scalars(select(Media).where(Media.visit_id == company["visit"])).all()
            assert len(stored) == 1 and stored[0].bytes == len(data)
            media_service.process_media(session=session, media_id=stored[0].id)
        _wait(
            page,
            lambda: page.evaluate("window.queue.list()")[0]["state"] == "done",
            "the processed photo",
            timeout=20,
        )
        done = page.evaluate("window.queue.list()")[0]
        assert done["label"] == "完成" and done["media"]["status"] == "ready"
        left = page.evaluate(
            "new Promise(function (resolve) { var r = indexedDB.open('huifang-uploads');"
            " r.onsuccess = function () { var t = r.result.transaction('files');"
            " var g = t.objectStore('files').count();"
            " g.onsuccess = function () { resolve(g.result); }; }; })"
        )
        assert left == 0  # nothing left on the phone once the server has it
        with sqlite_database.session() as session:
            assert (
                session.scalar(
                    select(func.count())
                    .select_from(Media)
                    .where(Media.visit_id == company["visit"])
                )
                == 1
            )
        assert errors == []
    finally:
        if context is not None:
            context.close()
