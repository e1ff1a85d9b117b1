"""The console's privacy pages: capture consent on the customer page, export and erasure for
owners only, 合规 → 隐私与保留 with the periods and what goes next."""

from __future__ import annotations

import io
import json
import zipfile

from sqlalchemy import select

from access.models import AuditEntry
from compliance import capture
from customers.models import Customer
from tests.conftest import make_account
from tests.factories import make_customer
from tests.office.support import sign_in


def test_office_records_and_withdraws_capture_consent(client, session):
    account = make_account(session)
    customer = make_customer(
        session, account.tenant, name="授权客户", phone="13955556666", capture_consent=False
    )
    token = sign_in(client, session, account.tenant, role="office")
    page = client.get(f"/office/customers/{customer.id}")
    assert page.status_code == 200
    assert "未授权" in page.text and "不能上传照片和视频" in page.text
    assert "导出全部信息" not in page.text  # owners only

    missing = client.post(
        f"/office/customers/{customer.id}/capture-consent",
        data={"csrf_token": token, "evidence": "纸质授权书 7 号"},
    )
    assert missing.status_code == 422
    assert "至少勾选" in missing.text

    done = client.post(
        f"/office/customers/{customer.id}/capture-consent",
        data={"csrf_token": token, "scope": ["photos", "marketing"], "evidence": "纸质授权书 7 号"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    record = capture.active_capture_consent(
        session=session, tenant_id=account.tenant.id, customer_id=customer.id
    )
    assert record is not None and record.scope_list == ["photos", "marketing"]
    page = client.get(f"/office/customers/{customer.id}")
    assert "已授权" in page.text and "用于宣传" in page.text and "纸质授权书 7 号" in page.text

    client.post(
        f"/office/customers/{customer.id}/capture-consent/withdraw",
        data={"csrf_token": token, "evidence": "客户来电"},
    )
    assert (
        capture.active_capture_consent(
            session=session, tenant_id=account.tenant.id, customer_id=customer.id
        )
        is None
    )


def test_owner_exports_and_erases_a_customer(client, session):
    account = make_account(session)
    customer = make_customer(session, account.tenant, name="导出客户", phone="13966667777")
    token = sign_in(client, session, account.tenant, role="owner")
    page = client.get(f"/office/customers/{customer.id}")
    assert "导出全部信息" in page.text

    zipped = client.get(f"/office/customers/{customer.id}/export")
    assert zipped.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(zipped.content))
    assert json.loads(archive.read("data.json"))["customer"][0]["name"] == "导出客户"
    assert "导出客户" in archive.read("index.html").decode()

    unconfirmed = client.post(
        f"/office/customers/{customer.id}/erase", data={"csrf_token": token, "confirm": "别人"}
    )
    assert unconfirmed.status_code == 422
    assert session.get(Customer, customer.id).name == "导出客户"

    erased = client.post(
        f"/office/customers/{customer.id}/erase",
        data={"csrf_token": token, "confirm": "导出客户"},
        follow_redirects=False,
    )
    assert erased.status_code == 303
    session.expire_all()
    assert session.get(Customer, customer.id).name == "已删除客户"
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "customer.erased")).one()
    assert entry.actor_kind == "user" and entry.actor_name == "张店长"
    assert "已删除这位客户的个人信息" in client.get(erased.headers["location"]).text


def test_office_cannot_export_or_erase(client, session):
    account = make_account(session)
    customer = make_customer(session, account.tenant, name="保护客户", phone="13977778888")
    token = sign_in(client, session, account.tenant, role="office")
    assert client.get(f"/office/customers/{customer.id}/export").status_code == 403
    refused = client.post(
        f"/office/customers/{customer.id}/erase",
        data={"csrf_token": token, "confirm": "保护客户"},
    )
    assert refused.status_code == 403
    assert session.get(Customer, customer.id).name == "保护客户"


def test_retention_page_shows_and_saves_the_periods(client, session):
    account = make_account(session)
    token = sign_in(client, session, account.tenant, role="owner")
    page = client.get("/office/compliance/retention")
    assert page.status_code == 200
    for words in (
        "接下来 7 天将删除",
        "照片和视频原件",
        "服务报告的照片、视频和长图",
        "至少 153 天",
    ):
        assert words in page.text
    fields = {
        "csrf_token": token,
        "report_media_after_view_days": "7",
        "report_media_days": "",
        "consent_retention_days": "183",
        "capture_consent_retention_days": "183",
        "original_media_days": "90",
        "message_text_days": "365",
        "reply_days": "365",
        "decision_log_days": "200",
    }
    too_short = client.post(
        "/office/compliance/retention", data={**fields, "decision_log_days": "30"}
    )
    assert too_short.status_code == 422
    assert "至少保留 153 天" in too_short.text
    saved = client.post("/office/compliance/retention", data=fields, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    session.expire_all()
    tenant = account.tenant
    session.refresh(tenant)
    # The box was left unticked: the company no longer asks for capture consent.
    assert tenant.capture_consent_required is False
    assert tenant.report_media_after_view_days == 7 and tenant.report_media_days is None
    office_token = sign_in(client, session, tenant, role="office", phone="13900139001", name="小王")
    read = client.get("/office/compliance/retention")
    assert read.status_code == 200 and "只有店长可以修改" in read.text
    refused = client.post(
        "/office/compliance/retention", data={**fields, "csrf_token": office_token}
    )
    assert refused.status_code == 403
