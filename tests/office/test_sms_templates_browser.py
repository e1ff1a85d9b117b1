"""设置 › 短信模板 in a real Chromium at a phone's width and a desk's: the purposes with their
texts to submit, recording an approved template, a refusal said in Chinese."""

from __future__ import annotations

import pytest

from messaging import sms_templates
from tests.browser import (
    WIDTHS,
    chromium,
    live_app,
    make_company,
    make_user,
    open_page,
    page_width,
    shot,
    sign_in_through_link,
)

pytestmark = pytest.mark.browser
__all__ = ["chromium", "live_app"]  # fixtures


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_owner_records_an_approved_template(chromium, live_app, width):
    tenant = make_company(live_app, f"模板家政{width}")
    link = make_user(live_app, tenant, phone=f"1390015{int(width):04d}")
    with open_page(chromium, live_app, WIDTHS[width]) as (page, watched):
        sign_in_through_link(page, link)
        page.goto(f"{live_app.url}/office/settings")
        page.locator(".settings-index").get_by_role("link", name="短信模板").click()
        assert page.get_by_role("heading", name="设置 · 短信模板").is_visible()
        rows = page.locator("#sms-purposes tbody tr")
        assert rows.count() == len(sms_templates.PURPOSES)
        assert "未登记" in rows.first.inner_text()

        # Aliyun would refuse a template made of a variable: said in Chinese, nothing kept.
        watched.allowed_statuses.add(422)
        page.get_by_label("用途").select_option("booking_confirmed")
        page.get_by_label("模板CODE（如 SMS_123456789）").fill("SMS_700000001")
        page.get_by_label("审核通过的原文（不含签名，变量写成 ${name}）").fill("${service}")
        page.get_by_role("button", name="登记", exact=True).click()
        page.get_by_text("不能只有变量", exact=False).first.wait_for()
        shot(page, f"settings-sms-templates-refused-{width}")
        # The refusal is the page's 422 answer, which Chromium also logs; nothing else may be.
        watched.errors[:] = [e for e in watched.errors if "status of 422" not in e]

        page.get_by_label("审核通过的原文（不含签名，变量写成 ${name}）").fill(
            "您预约的${service}已确认，上门时间：${time}。"
        )
        page.get_by_role("button", name="登记", exact=True).click()
        page.get_by_text("已保存。").wait_for()
        recorded = page.locator("#sms-templates tbody").inner_text()
        assert "SMS_700000001" in recorded and "您预约的${service}已确认" in recorded
        assert page_width(page) <= WIDTHS[width]["width"]
        shot(page, f"settings-sms-templates-{width}")


def test_a_width_is_measured_on_the_styled_page(chromium, live_app):
    """Unstyled, the page is far wider than a phone (its tables at their natural width):
    ``page_width`` waits for the stylesheets and refuses to measure without them."""
    tenant = make_company(live_app, "模板家政样式")
    link = make_user(live_app, tenant, phone="13900159000")
    with open_page(chromium, live_app, WIDTHS["390"]) as (page, watched):
        sign_in_through_link(page, link)
        page.goto(f"{live_app.url}/office/settings/sms-templates")
        assert page_width(page) <= 390
        page.route("**/*.css*", lambda route: route.abort())
        page.reload()
        assert page.evaluate("document.documentElement.scrollWidth") > 390
        with pytest.raises(AssertionError, match="stylesheets that do not apply"):
            page_width(page)
        watched.failed[:] = [f for f in watched.failed if ".css" not in f]
        watched.errors[:] = [e for e in watched.errors if "ERR_FAILED" not in e]
