"""设置 → 告警 in the console: add a DingTalk robot, send a test, see it delivered."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from alerts import tasks as alert_tasks
from alerts.models import AlertDelivery
from tests.alerts.fakes import Robots
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
from tests.conftest import make_account
from tests.office.support import sign_in

__all__ = ["chromium", "live_app"]  # fixtures


@pytest.fixture
def robots():
    made = Robots()
    yield made
    made.close()


def test_office_users_cannot_reach_alert_settings(client, session):
    tenant = make_account(session).tenant
    sign_in(client, session, tenant, role="office", phone="13900139210", name="客服")
    assert client.get("/office/settings/alerts").status_code == 403


def test_a_wrong_address_is_refused_and_the_form_kept(client, session):
    tenant = make_account(session).tenant
    token = sign_in(client, session, tenant)
    page = client.post(
        "/office/settings/alerts",
        data={
            "csrf_token": token,
            "kind": "wecom",
            "name": "客服群",
            "url": "ftp://example.com/x",
            "events": ["complaint"],
        },
    )
    assert page.status_code == 422 and "https://" in page.text
    assert 'value="客服群"' in page.text and 'value="complaint" checked' in page.text


@pytest.mark.browser
@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_owner_adds_a_dingtalk_robot_and_sends_a_test(chromium, live_app, robots, width):
    tenant = make_company(live_app, f"告警家政{width}")
    link = make_user(live_app, tenant)
    fake = robots.fakes["dingtalk"]
    with open_page(chromium, live_app, WIDTHS[width]) as (page, _watched):
        sign_in_through_link(page, link)
        page.goto(f"{live_app.url}/office/settings/alerts")
        page.get_by_label("类型").select_option("dingtalk")
        page.get_by_label("名称").fill("客服群")
        page.get_by_label("机器人地址（Webhook）").fill(fake.url)
        page.get_by_label("密钥（钉钉加签密钥；通用 Webhook 可不填，自动生成）").fill(fake.secret)
        page.get_by_label("新预约").check()
        page.get_by_label("投诉").check()
        page.get_by_role("button", name="添加", exact=True).click()
        assert page.get_by_text("已添加告警渠道").is_visible()
        page.get_by_role("button", name="发送测试").click()
        assert page.get_by_text("测试消息已交给后台发送").is_visible()
        # The worker's part, done here: the test process delivers what is pending.
        with live_app.database.session() as session:
            pending = list(
                session.scalars(
                    select(AlertDelivery.id).where(AlertDelivery.tenant_id == tenant.id)
                )
            )
            alert_tasks.deliver(session=session, delivery_ids=pending)
        page.reload()  # after a redirect: reloading sends nothing again
        assert page.locator(".badge.ok", has_text="已送达").count() == 1
        assert page.locator("td", has_text="回访告警测试").count() == 1
        assert page_width(page) <= WIDTHS[width]["width"]
        shot(page, f"settings-alerts-{width}")
    assert fake.refusals == [] and len(fake.received) == 1
    assert "回访告警测试" in fake.received[0].json["markdown"]["title"]
