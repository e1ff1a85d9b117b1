"""The report page in a real Chromium at a small phone's size (360×740).

The app is served for real (uvicorn in a thread) over committed rows in the SQLite test
database; Playwright drives the system's Chromium (/usr/bin/chromium), never a downloaded one.
The screenshot is kept under $HUIFANG_TEST_ARTIFACTS (default var/test-artifacts/) for people
to look at.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from PIL import Image
from sqlalchemy import delete

from media import ffmpeg, fonts, samples
from media import service as media_service
from media.upload import stage_bytes
from reports import service as reports
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.browser import live_app, page_width
from tests.conftest import REQUIRE_SERVICES
from tests.factories import create_consenting_customer
from tests.media.conftest import phone_jpeg
from visits import service as visits

__all__ = ["live_app"]  # a fixture

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 360, "height": 740}
ROOT = Path(__file__).resolve().parents[2]


def _need_chromium() -> None:
    why = None
    if not CHROMIUM.is_file():
        why = f"{CHROMIUM} is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "the playwright package is not installed (pip install -e '.[dev]')"
    if why is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"the report page test needs Chromium: {why}")
    pytest.skip(f"the report page test needs a real Chromium: {why}")


def _fontconfig(folder: Path) -> dict[str, str]:
    """The browser's environment, with the CJK font the watermarks use added to fontconfig.

    Phones have Chinese fonts; a bare CI machine may not, and the screenshot would show
    boxes. This only affects the test's browser: the page itself loads no font.
    """
    font = Path(fonts.find_cjk_font().path)
    config = folder / "fonts.conf"
    config.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
        '  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>\n'
        f"  <dir>{escape(str(font.parent))}</dir>\n"
        f"  <cachedir>{escape(str(folder / 'fc-cache'))}</cachedir>\n</fontconfig>\n",
        encoding="utf-8",
    )
    return {**os.environ, "FONTCONFIG_FILE": str(config)}


def _artifacts() -> Path:
    folder = Path(os.environ.get("HUIFANG_TEST_ARTIFACTS") or ROOT / "var" / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _photo(data: bytes, *, session, tenant, visit_id: int, phase: str, area: str | None) -> None:
    staged = stage_bytes(
        data, fields={"phase": phase, **({"area": area} if area else {})}, filename="IMG.jpg"
    )
    media, _ = media_service.accept_upload(
        session=session, tenant=tenant, visit_id=visit_id, staged=staged
    )
    media_service.process_media(session=session, media_id=media.id)


def _marked_room(*, clean: bool, seed: int) -> bytes:
    image = Image.open(io.BytesIO(samples.room_photo(clean=clean, seed=seed, size=(1200, 900))))
    image = image.convert("RGB")
    image.paste((seed * 40 % 256, 120, 90), (6, 6, 12 + seed * 4, 12))  # each file its own
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
def built_report(sqlite_database, tmp_path):
    """A committed company, staff card and visit with photos, a recap, and its report."""
    video = tmp_path / "recap.mp4"
    ffmpeg.run(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=540x960:rate=15:duration=2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
            str(video),
        ],
        timeout=60,
    )
    poster = tmp_path / "poster.jpg"
    Image.new("RGB", (540, 960), (15, 118, 110)).save(poster, "JPEG")
    with sqlite_database.session() as session:
        tenant = tenancy.create_tenant(
            session=session, name="洁家家政服务（上海）有限公司", signature="洁家家政"
        )
        customer = create_consenting_customer(
            session=session, tenant=tenant, name="王女士", phone="13800138000"
        )
        staff = visits.create_staff(
            session=session,
            tenant=tenant,
            name="李秀兰",
            years_experience=8,
            certificates=[
                "家政服务员（高级）",
                "空调清洗技师",
                "母婴护理师-ThisIsAVeryLongCertificateNameWithoutSpaces",
            ],
        )
        media_service.set_staff_photo(
            session=session,
            tenant_id=tenant.id,
            staff_id=staff.id,
            staged=stage_bytes(phone_jpeg(size=(900, 1200), color=(210, 180, 160)), fields={}),
        )
        visit = visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=customer.id,
            staff_id=staff.id,
            service_type="sofa_care",
            areas=["客厅", "厨房", "MasterBedroomNorth1"],
        )
        # Long unbroken words and links must wrap, not widen the page.
        reports.set_care_advice(
            session=session,
            tenant_id=tenant.id,
            service_type="sofa_care",
            text="真皮沙发建议每 3 个月护理一次，避免阳光直晒。护理说明："
            "https://example.com/care/leather-sofa/" + "x" * 90,
        )
        for seed, area in enumerate(("客厅", "厨房")):
            _photo(
                _marked_room(clean=False, seed=seed),
                session=session,
                tenant=tenant,
                visit_id=visit.id,
                phase="before",
                area=area,
            )
            _photo(
                _marked_room(clean=True, seed=seed),
                session=session,
                tenant=tenant,
                visit_id=visit.id,
                phase="after",
                area=area,
            )
        _photo(
            _marked_room(clean=False, seed=5),
            session=session,
            tenant=tenant,
            visit_id=visit.id,
            phase="during",
            area="客厅",
        )
        _photo(
            phone_jpeg(size=(900, 1200), color=(60, 160, 90)),
            session=session,
            tenant=tenant,
            visit_id=visit.id,
            phase="staff_report",
            area=None,
        )
        report, _ = reports.build_report(session=session, tenant=tenant, visit_id=visit.id)
        reports.attach_recap(
            session=session, report=report, video=video, duration=2.0, poster=poster
        )
        tenant_id, token = tenant.id, report.token
    yield token
    with sqlite_database.session() as session:
        session.execute(delete(Tenant).where(Tenant.id == tenant_id))


@pytest.fixture
def server(live_app):
    """The app served for real over the session's SQLite file (``tests.browser.live_app``)."""
    return live_app.url


def test_report_page_on_a_small_phone(built_report, server, tmp_path):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    token = built_report
    console_errors: list[str] = []
    failed: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            env=_fontconfig(tmp_path),
        )
        try:
            page = browser.new_page(viewport=VIEWPORT, locale="zh-CN")
            page.on(
                "console", lambda m: console_errors.append(m.text) if m.type == "error" else None
            )
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
            page.on(
                "response",
                lambda r: failed.append(f"{r.url} {r.status}") if r.status >= 400 else None,
            )
            answer = page.goto(f"{server}/r/{token}", wait_until="load")
            assert answer is not None and answer.status == 200

            book = page.locator("a.book")
            assert book.count() == 1 and book.is_visible()
            assert book.get_attribute("href") == f"/b/{token}"
            box = book.bounding_box()
            assert box is not None and box["y"] + box["height"] <= VIEWPORT["height"]  # on screen

            # Scroll through so every lazy image loads, then check each one really did.
            height = page.evaluate("document.documentElement.scrollHeight")
            for y in range(0, height + VIEWPORT["height"], VIEWPORT["height"] // 2):
                page.evaluate(f"window.scrollTo(0, {y})")
                page.wait_for_timeout(60)
            page.wait_for_load_state("networkidle")
            broken = page.evaluate(
                "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                ".map(i => i.src)"
            )
            assert broken == []
            assert page.evaluate("document.images.length") >= 6
            assert page_width(page) <= page.viewport_size["width"], page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]"
            )
            assert page.locator("video[preload=none][playsinline][poster]").count() == 1
            assert page.get_by_text("回复1预约").is_visible()
            assert book.is_visible()  # still there at the bottom of the page
            page.screenshot(path=str(_artifacts() / "report-360x740-full.png"), full_page=True)
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)  # the video controls settle after their first paint
            page.screenshot(path=str(_artifacts() / "report-360x740.png"))
        finally:
            browser.close()
    assert console_errors == []
    assert failed == []
