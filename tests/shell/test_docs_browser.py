"""The API docs render in a real Chromium with every address but ours blocked.

Swagger UI and ReDoc come from this process (``huifang.docs``); a request anywhere else is
aborted and recorded, and a CSP refusal shows up as a console error.
"""

from __future__ import annotations

import pytest

# The fixture that serves the app with uvicorn in a thread.
from tests.browser import live_app as live_app
from tests.reports.test_report_browser import CHROMIUM, _need_chromium
from tests.reports.test_report_browser import server as server


@pytest.mark.parametrize(
    ("path", "rendered"),
    [
        ("/docs", ".swagger-ui .opblock-summary-path"),
        ("/redoc", "[data-section-id^='tag/']"),
    ],
)
def test_the_docs_render_offline(server, path, rendered):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    elsewhere: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()

            def only_ours(route):
                if route.request.url.startswith(server + "/") or route.request.url.startswith(
                    ("data:", "blob:")
                ):
                    route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    route.abort()

            page.route("**/*", only_ours)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            answer = page.goto(server + path, wait_until="load")
            assert answer is not None and answer.status == 200
            page.wait_for_selector(rendered, timeout=20_000)
            assert page.locator(rendered).count() > 10
            assert "/v1/customers" in page.content()
        finally:
            browser.close()
    assert elsewhere == []
    # ReDoc shows its maker's logo from their CDN and hides it when it cannot load: the CSP
    # refusing it is the policy at work, and nothing was requested.
    assert [e for e in errors if "https://cdn.redoc.ly/redoc/logo-mini.svg" not in e] == []
