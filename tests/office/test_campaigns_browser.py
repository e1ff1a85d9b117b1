"""营销活动 and 设置 in a real Chromium, at a phone's width and a desk's: start a campaign
from a preset, fix a lint error with 应用修改, activate it, see its results; change the
working hours, try the keyword tester, watch the watermark preview follow the form."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns.facts import SOURCE_TYPE
from compliance import service as compliance
from customers import service as customers
from customers.models import Customer
from messaging.models import DELIVERED, SENT, Message
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
from visits import service as visits

pytestmark = pytest.mark.browser
__all__ = ["chromium", "live_app"]  # fixtures
BAD = "{{ customer_name }}您好，空调该清洗了，详见 t.cn/abc 预约 {{ booking_link }}"


def _fits(page, width: str) -> None:
    assert page_width(page) <= WIDTHS[width]["width"]


def _served_customers(app, tenant, phone_base: int) -> None:
    now = dt.datetime.now(dt.UTC)
    with app.database.session() as session:
        for i, name in enumerate(("王女士", "李先生")):
            person = customers.create_customer(
                session=session,
                tenant=tenant,
                name=name,
                phone=f"13{phone_base + i:09d}",
                region="上海",
            )
            visits.create_visit(
                session=session,
                tenant=tenant,
                customer_id=person.id,
                service_type="ac_cleaning",
                finished_at=now - dt.timedelta(days=80),
            )
            compliance.record_consent(
                session=session,
                tenant_id=tenant.id,
                customer=person,
                source="in_person",
                evidence="服务合同",
                granted_at=now,
                now=now,
            )


def _sent_last_week(app, tenant, campaign_id: int) -> None:
    """What the campaign's messages did a week ago, as the sender would have recorded it."""
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)
    with app.database.session() as session:
        people = session.query(Customer).filter(Customer.tenant_id == tenant.id).all()
        for i, person in enumerate(people):
            session.add(
                Message(
                    tenant_id=tenant.id,
                    customer_id=person.id,
                    channel="sms",
                    category="marketing",
                    source_type=SOURCE_TYPE,
                    source_id=f"{campaign_id}:{900_000 + i}",
                    idempotency_key=f"browser-{campaign_id}-{i}",
                    body="空调滤网该清洗了",
                    status=DELIVERED if i == 0 else SENT,
                    due_at=at,
                    sent_at=at,
                )
            )


def _image_loaded(page, selector: str) -> bool:
    return page.eval_on_selector(selector, "i => i.complete && i.naturalWidth > 0")


def _until(page, script: str, seconds: float = 10) -> None:
    """Poll ``script`` (the page's CSP forbids the string evaluation wait_for_function uses)."""
    for _tick in range(int(seconds * 10)):
        if page.evaluate(script):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"never true: {script}")


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_campaign_from_preset_lint_fixed_activated_with_results(chromium, live_app, width):
    tenant = make_company(live_app, f"营销家政{width}")
    _served_customers(live_app, tenant, 600_000_000 + int(width) * 10)
    link = make_user(
        live_app, tenant, role="office", name="刘客服", phone=f"1390013{int(width):04d}"
    )
    with open_page(chromium, live_app, WIDTHS[width]) as (page, _watched):
        sign_in_through_link(page, link)
        page.get_by_role("navigation", name="主菜单").get_by_role("link", name="营销活动").click()
        assert page.get_by_role("heading", name="营销活动", exact=True).is_visible()
        assert page.get_by_text("客户上次空调清洗后每 90 天提醒一次").is_visible()
        shot(page, f"campaigns-{width}")
        _fits(page, width)

        page.locator("form.preset").filter(has_text="空调滤网季度清洗").get_by_role(
            "button", name="用这个预设新建"
        ).click()
        page.wait_for_url("**/office/campaigns/*")
        assert page.get_by_text("上次空调清洗后每90天提醒一次").first.is_visible()
        assert page.locator(".customer-preview").count() == 2
        # The audience counts follow the form: nobody in 北京.
        assert page.locator("#audience-counts .count").first.inner_text() == "2"
        page.get_by_label("地区（多个用逗号分开，不填为全部）").fill("北京")
        _until(page, "document.querySelector('#audience-counts .count').textContent === '0'")
        page.get_by_label("地区（多个用逗号分开，不填为全部）").fill("")
        _until(page, "document.querySelector('#audience-counts .count').textContent === '2'")
        # A mistake typed into the text: the lint shows it with its fix, as one types.
        page.get_by_label("短信正文").fill(BAD)
        apply = page.locator("#lint button.apply").first
        apply.wait_for(state="visible")
        assert page.locator("#lint .finding.bad").count() >= 1
        shot(page, f"campaign-editor-{width}")
        _fits(page, width)
        for _round in range(6):
            if page.locator("#lint button.apply").count() == 0:
                break
            page.locator("#lint button.apply").first.click()
            page.wait_for_timeout(600)
        page.get_by_text("短信内容检查通过").wait_for()
        assert "t.cn" not in page.get_by_label("短信正文").input_value()
        page.get_by_role("button", name="保存").click()
        page.get_by_text("已保存。").wait_for()
        page.get_by_role("button", name="启动活动").click()
        page.wait_for_load_state("load")
        assert page.locator("#status").inner_text() == "进行中"
        assert page.get_by_role("button", name="暂停").is_visible()
        # Results: the chart image loads, the table holds the same figures as numbers.
        _sent_last_week(live_app, tenant, int(page.url.rstrip("/").rsplit("/", 1)[1]))
        page.reload()
        chart = page.locator("#weekly-chart")
        chart.scroll_into_view_if_needed()
        _until(page, "document.getElementById('weekly-chart').complete")
        assert _image_loaded(page, "#weekly-chart")
        cells = page.locator("#weekly-table tbody td[data-label='已发送']").all_inner_texts()
        assert len(cells) == 8 and all(c.strip().isdigit() for c in cells)
        assert sum(int(c) for c in cells) == 2
        delivered = page.locator("#weekly-table tbody td[data-label='已送达']").all_inner_texts()
        assert sum(int(c) for c in delivered) == 1
        shot(page, f"campaign-results-{width}")
        _fits(page, width)

        page.get_by_role("link", name="全部活动").click()
        assert page.locator("#campaign-list").get_by_text("进行中").is_visible()
        page.locator(".chart img").scroll_into_view_if_needed()
        _until(
            page,
            "(() => { const i = document.querySelector('.chart img');"
            " return i.complete && i.naturalWidth > 0; })()",
        )
        assert page.locator("#trend-table tbody tr").count() == 6


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_owner_changes_settings(chromium, live_app, width):
    tenant = make_company(live_app, f"设置家政{width}")
    link = make_user(live_app, tenant, phone=f"1390014{int(width):04d}")
    with open_page(chromium, live_app, WIDTHS[width]) as (page, _watched):
        sign_in_through_link(page, link)
        page.get_by_role("navigation", name="主菜单").get_by_role("link", name="设置").click()
        assert page.get_by_role("heading", name="设置", exact=True).is_visible()
        shot(page, f"settings-{width}")
        _fits(page, width)

        # Working hours: 周一至周五, 90-minute visits; saved and shown with the day's slots.
        page.locator(".settings-index").get_by_role("link", name="营业时间").click()
        page.get_by_label("周六").uncheck()
        page.get_by_label("每次上门时长（分钟）").fill("90")
        page.get_by_role("button", name="保存").click()
        page.get_by_text("已保存。").wait_for()
        summary = page.locator("#hours-summary").inner_text()
        assert "周一至周五" in summary and "08:00–09:30" in summary
        shot(page, f"settings-hours-{width}")
        _fits(page, width)

        # The keyword tester answers as one types.
        page.locator(".subnav").get_by_role("link", name="回复关键词").click()
        # The tester listens once its deferred script has run: type only after that.
        page.wait_for_url("**/office/settings/keywords")
        page.wait_for_load_state("domcontentloaded")
        page.get_by_label("客户回复").fill("T")
        page.locator("#route-label").wait_for()
        assert page.locator("#route-label").inner_text() == "退订"
        page.get_by_label("客户回复").fill("想约下周六上门")
        _until(page, "document.getElementById('route-label').textContent.trim() === '预约'")
        shot(page, f"settings-keywords-{width}")
        _fits(page, width)

        # The watermark preview follows the form.
        page.locator(".subnav").get_by_role("link", name="照片水印").click()
        _until(
            page,
            "(() => { const i = document.getElementById('watermark-preview');"
            " return i.complete && i.naturalWidth > 0; })()",
        )
        before = page.locator("#watermark-preview").get_attribute("src")
        page.get_by_label("位置").select_option("top-right")
        _until(page, "document.getElementById('watermark-preview').src.includes('top-right')")
        _until(
            page,
            "(() => { const i = document.getElementById('watermark-preview');"
            " return i.complete && i.naturalWidth > 0; })()",
        )
        assert page.locator("#watermark-preview").get_attribute("src") != before
        page.get_by_role("button", name="保存").click()
        page.get_by_text("已保存。").wait_for()
        assert page.get_by_label("位置").input_value() == "top-right"
        shot(page, f"settings-watermark-{width}")
        _fits(page, width)

        page.locator(".subnav").get_by_role("link", name="短信服务商").click()
        assert page.get_by_text("控制台（演示用，不真正发送）").is_visible()
        shot(page, f"settings-provider-{width}")
        _fits(page, width)
