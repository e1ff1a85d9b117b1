"""客户 and 合规 in a real Chromium at a phone's width and a desk's: a customer found by
search and opened, a small CSV imported and its job page watched to 100%, consent recorded
for the whole import on one piece of evidence and seen on the customer's page, and the
compliance screen."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from compliance import service as compliance
from customers import import_jobs
from customers import service as customers
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

CSV = "姓名,手机号,地区,标签\n陈先生,13800001111,上海,新客\n林女士,13800002222,杭州,新客\n"


def _fits(page, width: str) -> None:
    assert page_width(page) <= WIDTHS[width]["width"]


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_find_open_import_and_record_consent(chromium, live_app, width, tmp_path):
    tenant = make_company(live_app, f"洁家家政客户{width}")
    now = dt.datetime.now(dt.UTC)
    with live_app.database.session() as session:
        wang = customers.create_customer(
            session=session,
            tenant=tenant,
            name="王秀英",
            phone="13900000001",
            region="上海",
            tags=["老客户", "空调"],
        )
        customers.create_customer(
            session=session, tenant=tenant, name="李建国", phone="13900000002", region="北京"
        )
        compliance.record_consent(
            session=session,
            tenant_id=tenant.id,
            customer=wang,
            source="in_person",
            evidence="签字登记表 第3页",
            granted_at=now,
            now=now,
        )
        visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=wang.id,
            service_type="ac_cleaning",
            finished_at=now - dt.timedelta(days=2),
        )
    link = make_user(
        live_app, tenant, role="owner", name="张店长", phone=f"1390013{width.zfill(4)}"
    )
    upload = tmp_path / "客户.csv"
    upload.write_text(CSV, encoding="utf-8")
    with open_page(chromium, live_app, WIDTHS[width]) as (page, _watched):
        page.on("dialog", lambda dialog: dialog.accept())
        sign_in_through_link(page, link)
        page.goto(f"{live_app.url}/office/customers")
        page.get_by_label("姓名或手机号").fill("王秀")
        page.get_by_role("button", name="查找").click()
        rows = page.locator("#customer-list tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("可营销")
        _fits(page, width)
        shot(page, f"customers-{width}")

        page.get_by_role("link", name="王秀英").click()
        expect(page.locator("h1")).to_have_text("王秀英")
        expect(page.locator("#consents")).to_contain_text("签字登记表 第3页")
        expect(page.locator("#timeline")).to_contain_text("上门服务")
        _fits(page, width)
        shot(page, f"customer-{width}")

        page.goto(f"{live_app.url}/office/customers/import")
        page.set_input_files("#file", str(upload))
        page.get_by_role("button", name="开始导入").click()
        page.wait_for_url(re.compile(r"/office/customers/import/\d+$"))
        job_id = int(page.url.rsplit("/", 1)[1])
        # No separate worker in this test: the job runs here (a second run does nothing).
        with live_app.database.session() as session:
            import_jobs.run(session=session, job_id=job_id)
        expect(page.locator("#job-progress")).to_have_attribute("value", "100", timeout=15_000)
        expect(page.locator("#job-rows tbody tr")).to_have_count(2)
        page.locator("#job-finished").click()
        expect(page.locator("#job-rows tbody tr")).to_have_count(2)
        _fits(page, width)
        shot(page, f"import-{width}")

        page.get_by_label("凭据（例如：2026年12月签字登记表，第 1–40 页）").fill("门店登记表 12月")
        page.get_by_role("button", name="记录同意").click()
        expect(page.locator("#bulk-counts")).to_contain_text("已记录 2")
        _fits(page, width)
        page.locator("#bulk-rows a").first.click()
        expect(page.locator("#consents")).to_contain_text("门店登记表 12月")
        expect(page.locator("#consents")).to_contain_text("有效")

        page.goto(f"{live_app.url}/office/compliance")
        expect(page.locator("#ledger-list")).to_contain_text("门店登记表 12月")
        expect(page.locator("#policy")).to_be_visible()
        _fits(page, width)
        shot(page, f"compliance-{width}")
