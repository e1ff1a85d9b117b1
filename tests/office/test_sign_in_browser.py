"""Signing in and finding one's way in a real Chromium, at a phone's width and a desk's."""

from __future__ import annotations

import pytest

from tests.browser import (
    PASSWORD,
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
def test_owner_signs_in_and_adds_a_staff_member(chromium, live_app, width):
    tenant = make_company(live_app, f"洁家家政{width}")
    link = make_user(live_app, tenant)
    with open_page(chromium, live_app, WIDTHS[width]) as (page, _watched):
        sign_in_through_link(page, link)
        assert page.url.endswith("/office/today")
        assert page.get_by_role("heading", name="今日").is_visible()
        shot(page, f"today-{width}")
        page.get_by_role("navigation", name="主菜单").get_by_role("link", name="设置").click()
        page.locator(".settings-index").get_by_role("link", name="账号与密钥").click()
        page.locator("#new-name").fill("李秀兰")
        page.get_by_label("手机号（登录用）").fill("13900139300")
        page.locator("#new-role").select_option("staff")
        page.get_by_role("button", name="添加并生成登录链接").click()
        assert page.locator(".qr svg").is_visible()
        assert "/office/welcome/" in page.locator("#sign-in-link").inner_text()
        shot(page, f"settings-users-{width}")
        # Nothing overflows sideways at a phone's width.
        assert page_width(page) <= WIDTHS[width]["width"]
        page.get_by_role("button", name="退出登录").click()
        assert "/office/login" in page.url
        page.get_by_label("手机号").fill("13900139000")
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        assert page.url.endswith("/office/today")


def test_keyboard_reaches_every_section(chromium, live_app):
    tenant = make_company(live_app, "键盘家政")
    link = make_user(live_app, tenant, phone="13900139001")
    with open_page(chromium, live_app, WIDTHS["1280"]) as (page, _watched):
        sign_in_through_link(page, link)
        reached = []
        for _ in range(15):
            page.keyboard.press("Tab")
            reached.append(page.evaluate("document.activeElement.textContent.trim()"))
        for section in ("今日", "客户", "服务记录", "回复与预约", "营销活动", "合规", "设置"):
            assert section in reached
