"""Console pages in a real Chromium (Debian's /usr/bin/chromium, driven by Playwright).

``live_app`` serves the app with uvicorn in a thread over the session's SQLite file, as
the embedded mode does. ``open_page`` gives a page at a width that fails the test on any
console error, page error, failed request or answer ≥ 400 it did not expect, and aborts
(and reports) any request that leaves our server, so a page that would need the internet
fails here. ``signed_in_page`` makes a user and signs them in through their link, as a
person does. Screenshots go to $HUIFANG_TEST_ARTIFACTS (default var/test-artifacts/).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
import uvicorn

from accounts import service as accounts
from huifang.app import create_app
from huifang.db import Database
from media import fonts
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.conftest import REQUIRE_SERVICES

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
PHONE = {"width": 390, "height": 844}
SMALL_PHONE = {"width": 360, "height": 800}
DESKTOP = {"width": 1280, "height": 800}
WIDTHS = {"390": PHONE, "1280": DESKTOP}
PASSWORD = "洁家家政-2026"


def need_chromium() -> None:
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
        pytest.fail(f"browser tests need Chromium: {why}")
    pytest.skip(f"browser tests need a real Chromium: {why}")


def artifacts(*parts: str) -> Path:
    folder = Path(os.environ.get("HUIFANG_TEST_ARTIFACTS") or ROOT / "var" / "test-artifacts")
    path = folder.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _fontconfig(folder: Path) -> dict[str, str]:
    """The browser's environment with the CJK font of the watermarks in fontconfig: a bare
    CI machine may have no Chinese font, and screenshots would show boxes."""
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


@dataclass
class LiveApp:
    url: str
    database: Database


@pytest.fixture
def live_app(sqlite_database: Database) -> Iterator[LiveApp]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(database=sqlite_database),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield LiveApp(f"http://127.0.0.1:{port}", sqlite_database)
    running.should_exit = True
    thread.join(timeout=10)


# One Playwright driver and browser at a time, for one test module: each module that
# imports the ``chromium`` fixture gets a fixture of its own, and a second sync Playwright
# started while another runs fails ("Sync API inside the asyncio loop"). The module's
# fixture closes it when the module ends, since a running sync Playwright also keeps an
# event loop running that later tests' ``asyncio.run`` (and other browser tests) trip on.
_RUNNING: dict[str, Any] = {}


def _shared_browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if "browser" not in _RUNNING:
        from playwright.sync_api import sync_playwright

        driver = sync_playwright().start()
        try:
            _RUNNING["browser"] = driver.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
                env=_fontconfig(tmp_path_factory.mktemp("fonts")),
            )
        except BaseException:
            driver.stop()
            raise
        _RUNNING["driver"] = driver
    return _RUNNING["browser"]


def _close_shared_browser() -> None:
    browser, driver = _RUNNING.pop("browser", None), _RUNNING.pop("driver", None)
    if browser is not None:
        browser.close()
    if driver is not None:
        driver.stop()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    need_chromium()
    try:
        yield _shared_browser(tmp_path_factory)
    finally:
        _close_shared_browser()


@dataclass
class Watched:
    """What went wrong on a page: each list must be empty at the end."""

    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)
    allowed_statuses: set[int] = field(default_factory=set)


@contextlib.contextmanager
def open_page(
    chromium: Any, app: LiveApp, viewport: dict[str, int], *, touch: bool = False
) -> Iterator[tuple[Any, Watched]]:
    context = chromium.new_context(
        viewport=viewport,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        has_touch=touch,
        is_mobile=touch,
    )
    page = context.new_page()
    watched = Watched()

    def only_ours(route: Any) -> None:
        url = route.request.url
        if url.startswith((app.url + "/", "data:", "blob:")):
            route.continue_()
        else:
            watched.elsewhere.append(url)
            route.abort()

    page.route("**/*", only_ours)
    page.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: watched.errors.append(str(e)))
    # A request still in flight when the page navigates away is aborted: no defect of
    # the page (requests that leave our server are caught above, in ``elsewhere``).
    page.on(
        "requestfailed",
        lambda r: (
            None
            if r.failure == "net::ERR_ABORTED"
            else watched.failed.append(f"{r.url} {r.failure}")
        ),
    )
    page.on(
        "response",
        lambda r: (
            watched.failed.append(f"{r.url} {r.status}")
            if r.status >= 400 and r.status not in watched.allowed_statuses
            else None
        ),
    )
    try:
        yield page, watched
        assert watched.elsewhere == [], f"requests that left our server: {watched.elsewhere}"
        assert watched.failed == [], f"failed requests: {watched.failed}"
        assert watched.errors == [], f"console errors: {watched.errors}"
    finally:
        context.close()


def make_company(app: LiveApp, name: str = "洁家家政") -> Tenant:
    with app.database.session() as session:
        tenant = tenancy.create_tenant(session=session, name=name, signature=name[:8])
    return tenant


def make_user(
    app: LiveApp,
    tenant: Tenant,
    *,
    role: str = "owner",
    name: str = "张店长",
    phone: str = "13900139000",
    staff_id: int | None = None,
) -> str:
    """A user of ``tenant``; returns their sign-in link's address."""
    with app.database.session() as session:
        made = accounts.create_user(
            session=session, tenant=tenant, role=role, name=name, phone=phone, staff_id=staff_id
        )
        token = made.link_token
    return f"{app.url}/office/welcome/{token}"


def sign_in_through_link(page: Any, link: str, *, staff: bool = False) -> None:
    """Open a sign-in link and do what the person does there."""
    answer = page.goto(link)
    assert answer is not None and answer.status == 200
    if not staff:
        page.get_by_label("新密码").fill(PASSWORD)
        page.get_by_label("再输一次").fill(PASSWORD)
        page.get_by_role("button", name="设置密码并登录").click()
    else:
        page.get_by_role("button", name="登录").click()
    page.wait_for_load_state("load")


def page_width(page: Any) -> int:
    """The page's full width once its stylesheets apply. Measured while one is still on
    its way (a busy machine, a page just after a form's redirect), it is the unstyled
    page's: the SMS-templates table read 1,213 px at a phone's 390 so in CI."""
    page.wait_for_load_state("load")
    # A sheet that failed has no rules to read (reading them throws): counted as missing.
    unstyled = page.evaluate(
        """() => [...document.querySelectorAll('link[rel=stylesheet]')].filter((link) => {
            try { return !link.sheet.cssRules.length; } catch (e) { return true; }
        }).map((link) => link.href)"""
    )
    assert unstyled == [], f"stylesheets that do not apply: {unstyled}"
    return int(page.evaluate("document.documentElement.scrollWidth"))


def shot(page: Any, name: str) -> Path:
    path = artifacts("screens", f"{name}.png")
    page.screenshot(path=str(path), full_page=True)
    return path
