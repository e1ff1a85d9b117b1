"""客户 and 合规 pages from a test client: search and badges, a customer's page with
consents and timeline, opt-out / opt-in, an import job with its report and bulk consent,
the policy (owners edit, office reads), suppressions, the ledger and the audit log (owners),
CSRF refused, refusals in Chinese."""

from __future__ import annotations

import datetime as dt
import re

from compliance import service as compliance
from customers import import_jobs
from customers import service as customers
from tests.conftest import make_account
from tests.office.support import sign_in
from visits import service as visits

CSV = "姓名,手机号,地区\n陈先生,13800001111,上海\n林女士,13800002222,杭州\n坏行,123,上海\n"


def _people(session, tenant):
    now = dt.datetime.now(dt.UTC)
    wang = customers.create_customer(
        session=session,
        tenant=tenant,
        name="王女士",
        phone="13900000001",
        region="上海",
        tags=["老客户"],
    )
    li = customers.create_customer(
        session=session, tenant=tenant, name="李先生", phone="13900000002", region="北京"
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
        finished_at=now - dt.timedelta(days=3),
    )
    session.commit()
    return wang, li


def test_office_finds_a_customer_and_opts_them_out_and_in(client, session):
    tenant = make_account(session).tenant
    wang, _li = _people(session, tenant)
    token = sign_in(client, session, tenant, role="office")
    listing = client.get("/office/customers", params={"q": "王"})
    assert listing.status_code == 200
    assert "王女士" in listing.text and "李先生" not in listing.text
    assert "可营销" in listing.text
    no_consent = client.get("/office/customers", params={"show": "no_consent"})
    assert "李先生" in no_consent.text and "王女士" not in no_consent.text
    by_area = client.get("/office/customers", params={"area": "北京"})
    assert "李先生" in by_area.text and "王女士" not in by_area.text

    page = client.get(f"/office/customers/{wang.id}")
    assert page.status_code == 200
    assert "签字登记表 第3页" in page.text and "当面" in page.text
    assert "上门服务" in page.text  # the timeline's visit
    assert "可以发送" in page.text

    # Without the form token the change is refused and nothing is recorded.
    refused = client.post(f"/office/customers/{wang.id}/opt-out", data={"detail": "电话"})
    assert refused.status_code == 403 and "页面已过期" in refused.text
    assert compliance.active_suppression(session=session, tenant=tenant, phone=wang.phone) is None

    done = client.post(
        f"/office/customers/{wang.id}/opt-out",
        data={"csrf_token": token, "detail": "电话里要求"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    page = client.get(done.headers["location"])
    assert "已记录退订" in page.text and "已退订" in page.text and "不能发送" in page.text
    assert "已撤回" in page.text  # the consent was revoked with the opt-out
    assert "已退订" in client.get("/office/customers", params={"show": "opted_out"}).text

    back = client.post(
        f"/office/customers/{wang.id}/opt-in", data={"csrf_token": token}, follow_redirects=False
    )
    assert back.status_code == 303
    page = client.get(back.headers["location"])
    assert "已恢复接收短信" in page.text and "没有营销同意记录" in page.text

    missing = client.get("/office/customers/999999")
    assert missing.status_code == 404 and "没有这位客户" in missing.text


def test_import_job_page_report_and_bulk_consent(client, session):
    tenant = make_account(session).tenant
    token = sign_in(client, session, tenant, role="office")
    empty = client.post(
        "/office/customers/import",
        data={"csrf_token": token},
        files={"file": ("a.csv", b"", "text/csv")},
    )
    assert empty.status_code in (400, 413, 415, 422)
    assert "没有导入" in empty.text and "文件是空的" in empty.text
    binary = client.post(
        "/office/customers/import",
        data={"csrf_token": token},
        files={"file": ("a.xls", b"\xd0\xcf\x11\xe0" + bytes(600), "application/vnd.ms-excel")},
    )
    assert binary.status_code == 415 and "只能导入 CSV 或 XLSX 文件" in binary.text

    made = client.post(
        "/office/customers/import",
        data={"csrf_token": token},
        files={"file": ("list.csv", CSV.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    where = made.headers["location"]
    job_id = int(where.rsplit("/", 1)[1])
    waiting = client.get(where)
    assert "<progress" in waiting.text and "data-poll" in waiting.text
    assert "批量记录同意" not in waiting.text

    import_jobs.run(session=session, job_id=job_id)
    session.commit()
    fragment = client.get(f"{where}/progress")
    assert 'value="100"' in fragment.text and "<html" not in fragment.text
    done = client.get(where)
    assert "已完成" in done.text and "新增 2" in done.text and "未导入 1" in done.text
    assert "data-poll" not in done.text

    no_evidence = client.post(
        f"{where}/consent", data={"csrf_token": token, "source": "in_person", "evidence": ""}
    )
    assert no_evidence.status_code == 422 and "请写明同意的凭据" in no_evidence.text
    recorded = client.post(
        f"{where}/consent",
        data={"csrf_token": token, "source": "in_person", "evidence": "门店登记表 12月"},
    )
    assert recorded.status_code == 200, recorded.text
    assert "已记录 2" in recorded.text
    assert "陈先生" in recorded.text and "林女士" in recorded.text
    chen = re.search(r'href="/office/customers/(\d+)">陈先生', recorded.text)
    assert chen
    page = client.get(f"/office/customers/{chen.group(1)}")
    assert "门店登记表 12月" in page.text


def test_compliance_roles_policy_suppressions_ledger_audit(client, session):
    tenant = make_account(session).tenant
    _people(session, tenant)
    token = sign_in(client, session, tenant, role="office", phone="13900139001", name="小周")
    page = client.get("/office/compliance")
    assert page.status_code == 200
    assert (
        "只有店长可以修改发送规则" in page.text
        and 'action="/office/compliance/policy"' not in page.text
    )
    assert "签字登记表 第3页" in page.text  # the ledger
    denied = client.get("/office/compliance/audit")
    assert denied.status_code == 403 and "没有权限" in denied.text
    assert client.get("/office/compliance/consents.csv").status_code == 403
    policy = client.post(
        "/office/compliance/policy", data={"csrf_token": token, "marketing_cap": "5"}
    )
    assert policy.status_code == 403 and "没有权限" in policy.text

    added = client.post(
        "/office/compliance/suppressions",
        data={"csrf_token": token, "phone": "13900000002", "detail": "电话要求"},
        follow_redirects=False,
    )
    assert added.status_code == 303
    listed = client.get("/office/compliance")
    assert "李先生" in listed.text and "办公室记录" in listed.text
    again = client.post(
        "/office/compliance/suppressions", data={"csrf_token": token, "phone": "13900000002"}
    )
    assert again.status_code == 409 and "这个号码已经在名单上了" in again.text
    nonsense = client.post(
        "/office/compliance/suppressions", data={"csrf_token": token, "phone": "12"}
    )
    assert nonsense.status_code == 422 and "手机号不对" in nonsense.text
    bad = client.post("/office/compliance/suppressions", data={"csrf_token": token, "phone": ""})
    assert bad.status_code == 422 and "请填写手机号" in bad.text
    lift = re.search(r"/office/compliance/suppressions/(\d+)/lift", listed.text)
    assert lift
    lifted = client.post(lift.group(0), data={"csrf_token": token}, follow_redirects=False)
    assert lifted.status_code == 303
    twice = client.post(lift.group(0), data={"csrf_token": token})
    assert twice.status_code == 409 and "已经移出过了" in twice.text
    assert "名单是空的" in client.get("/office/compliance").text
    filtered = client.get("/office/compliance", params={"state": "revoked"})
    assert "签字登记表 第3页" not in filtered.text

    client.cookies.clear()
    owner = sign_in(client, session, tenant, role="owner")
    page = client.get("/office/compliance")
    assert 'action="/office/compliance/policy"' in page.text
    wrong = client.post(
        "/office/compliance/policy", data={"csrf_token": owner, "window_start": "25:00"}
    )
    assert wrong.status_code == 422 and "每天最早发送时间" in wrong.text
    backwards = client.post(
        "/office/compliance/policy",
        data={"csrf_token": owner, "window_start": "22:00", "window_end": "08:00"},
    )
    assert backwards.status_code == 422 and "发送时间要先开始后结束" in backwards.text
    saved = client.post(
        "/office/compliance/policy",
        data={"csrf_token": owner, "marketing_cap": "4", "opt_out_footer": "拒收请回复R"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    assert 'value="拒收请回复R"' in client.get("/office/compliance").text
    csv = client.get("/office/compliance/consents.csv")
    assert csv.status_code == 200 and "签字登记表 第3页" in csv.text
    audit = client.get("/office/compliance/audit")
    assert audit.status_code == 200 and "小周" in audit.text
    only_policy = client.get("/office/compliance/audit", params={"action": "policy."})
    assert "小周" not in only_policy.text and "张店长" in only_policy.text


def test_timeline_pages_with_more(client, session):
    from office.customer_timeline import DEFAULT_LIMIT

    tenant = make_account(session).tenant
    wang, _li = _people(session, tenant)
    now = dt.datetime.now(dt.UTC)
    for day in range(DEFAULT_LIMIT):
        visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=wang.id,
            service_type="deep_cleaning",
            finished_at=now - dt.timedelta(days=10 + day),
        )
    session.commit()
    sign_in(client, session, tenant, role="office")
    first = client.get(f"/office/customers/{wang.id}")
    more = re.search(r'href="(/office/customers/\d+\?before=[^"#]+)#timeline"', first.text)
    assert more, "no 更多 link"
    assert first.text.count('<li class="card">') == DEFAULT_LIMIT
    rest = client.get(more.group(1).replace("&amp;", "&"))
    assert rest.status_code == 200
    assert rest.text.count('<li class="card">') == 1
    assert "更多" not in rest.text.split('id="timeline"')[1]


def test_staff_cannot_open_customers_or_compliance(client, session):
    tenant = make_account(session).tenant
    sign_in(client, session, tenant, role="staff", phone="13900139002", name="阿姨")
    for url in ("/office/customers", "/office/compliance", "/office/customers/import"):
        answer = client.get(url, follow_redirects=False)
        assert answer.status_code == 403, url
        assert "没有权限" in answer.text
