"""服务记录 in the console: the list, a visit's photos, its report built and sent."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from media import service as media_service
from media.upload import stage_bytes
from messaging.models import Message
from reports.models import Report
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
from tests.factories import make_account, make_customer, make_staff, make_visit
from tests.media.conftest import phone_jpeg
from tests.office.support import form_token, sign_in

__all__ = ["chromium", "live_app"]  # fixtures


def _visit_with_photos(session, tenant):
    customer = make_customer(session, tenant, name="王女士", phone="13800138010")
    staff = make_staff(session, tenant, name="李秀兰")
    visit = make_visit(
        session,
        tenant,
        customer=customer,
        staff=staff,
        areas=["客厅"],
        finished_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
    )
    for phase, color in (("before", (90, 80, 70)), ("after", (230, 230, 220))):
        staged = stage_bytes(
            phone_jpeg(size=(800, 600), color=color),
            fields={"phase": phase, "area": "客厅"},
            filename="IMG.jpg",
        )
        media, _ = media_service.accept_upload(
            session=session, tenant=tenant, visit_id=visit.id, staged=staged
        )
        media_service.process_media(session=session, media_id=media.id)
    return visit


def test_the_office_builds_and_sends_a_report(client, session):
    tenant = make_account(session).tenant
    visit = _visit_with_photos(session, tenant)
    token = sign_in(client, session, tenant, role="office", phone="13900139220", name="客服")
    listing = client.get("/office/visits")
    assert listing.status_code == 200 and "王女士" in listing.text and "未生成" in listing.text
    page = client.get(f"/office/visits/{visit.id}")
    assert page.status_code == 200 and "客厅" in page.text and "生成报告" in page.text
    built = client.post(
        f"/office/visits/{visit.id}/report", data={"csrf_token": token}, follow_redirects=False
    )
    assert built.status_code == 303
    page = client.get(built.headers["location"])
    assert "报告已生成" in page.text and "/r/" in page.text and "短信备用文字" in page.text
    assert session.scalars(select(Report).where(Report.visit_id == visit.id)).one()
    sent = client.post(
        f"/office/visits/{visit.id}/report/send",
        data={"csrf_token": form_token(page.text)},
        follow_redirects=True,
    )
    assert "报告已交给发送队列" in sent.text
    again = client.post(
        f"/office/visits/{visit.id}/report/send",
        data={"csrf_token": form_token(page.text)},
        follow_redirects=True,
    )
    assert "没有重复发送" in again.text
    assert (
        len(
            session.scalars(
                select(Message).where(
                    Message.source_type == "visit_report", Message.tenant_id == tenant.id
                )
            ).all()
        )
        == 1
    )


def test_a_report_without_photos_is_refused_in_chinese(client, session):
    tenant = make_account(session).tenant
    customer = make_customer(session, tenant, name="赵先生", phone="13800138011")
    visit = make_visit(session, tenant, customer=customer, areas=["厨房"])
    token = sign_in(client, session, tenant, role="office", phone="13900139221", name="客服")
    answer = client.post(f"/office/visits/{visit.id}/report", data={"csrf_token": token})
    assert answer.status_code == 409 and "处理完再试" in answer.text
    other = make_account(session).tenant
    foreign = make_visit(
        session, other, customer=make_customer(session, other, phone="13800138012")
    )
    assert client.get(f"/office/visits/{foreign.id}").status_code == 404


def test_staff_users_cannot_see_the_office_visits(client, session):
    tenant = make_account(session).tenant
    sign_in(client, session, tenant, role="staff", phone="13900139222", name="师傅")
    assert client.get("/office/visits").status_code == 403


@pytest.mark.browser
@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_visits_in_the_browser(chromium, live_app, width):
    tenant = make_company(live_app, f"记录家政{width}")
    with live_app.database.session() as session:
        visit = _visit_with_photos(session, session.merge(tenant))
        visit_id = visit.id
    link = make_user(live_app, tenant)
    with open_page(chromium, live_app, WIDTHS[width]) as (page, _watched):
        sign_in_through_link(page, link)
        page.get_by_role("navigation", name="主菜单").get_by_role("link", name="服务记录").click()
        page.get_by_role("link", name="王女士").click()
        assert page.url.endswith(f"/office/visits/{visit_id}")
        page.get_by_role("button", name="生成报告").click()
        assert page.get_by_text("报告已生成").is_visible()
        assert page.locator("figure.shot img").count() == 2
        page.once("dialog", lambda dialog: dialog.accept())  # "把报告发给客户？"
        page.get_by_role("button", name="发送给客户").click()
        assert page.get_by_text("报告已交给发送队列").is_visible()
        page.wait_for_load_state("networkidle")
        assert page_width(page) <= WIDTHS[width]["width"]
        shot(page, f"visit-{width}")
        page.goto(f"{live_app.url}/office/visits")
        shot(page, f"visits-{width}")
