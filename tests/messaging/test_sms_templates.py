"""A company's approved SMS templates: Aliyun's rules when one is recorded, the API and its
roles, the console's settings section (Chinese, CSRF-protected)."""

from __future__ import annotations

import pytest

from huifang.settings import get_settings
from messaging import sms_templates
from messaging.sms_templates import check
from tenancy import service as tenancy
from tests.office.support import form_token, sign_in

BASE = "https://hf.example.cn"


@pytest.fixture(autouse=True)
def _public_url(monkeypatch):
    monkeypatch.setattr(get_settings(), "public_url", BASE)


def problems(text, *, purpose="booking_confirmed", kind="notification", signature="洁家家政"):
    return " ".join(
        check(
            text=text,
            kind=kind,
            purpose_code=purpose,
            signature=signature,
            company_signature="洁家家政",
            base_url=BASE,
        )
    )


@pytest.mark.parametrize("purpose", sorted(sms_templates.ONE_PER_COMPANY))
def test_every_suggested_text_passes_aliyuns_rules(purpose):
    what = sms_templates.PURPOSES[purpose]
    text = sms_templates.suggested_text(purpose, BASE)
    assert text and not problems(text, purpose=purpose, kind=what.kind)
    assert set(sms_templates.variables_of(text)) <= set(what.variables)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("${service}", "不能只有变量"),
        ("您好：${service}，${time}", "紧挨着"),
        ("您预约的${service}已确认，${service}见", "只能出现一次"),
        ("您预约的${mobile}已确认", "mobile"),
        ("您预约的${1abc}已确认", "英文字母开头"),
        ("您预约的${reason}已确认", "提供不了 ${reason}"),
        ("【洁家家政】您预约的${service}已确认", "【】"),
        ("您预约的${service}已确认★", "特殊符号"),
        ("您预约的${service}已确认，拒收请回复R", "通知短信不能带"),
        ("您预约的${service}已确认" + "好" * 480, "阿里云最多500字"),
    ],
)
def test_what_aliyun_would_refuse_is_said(text, said):
    assert said in problems(text)


def test_links_are_fixed_text_on_our_domain_with_a_link_variable_for_the_path():
    good = "${customer_name}您好，${service}报告：" + BASE + "/r/${report_token}"
    assert not problems(good, purpose="report_ready")
    assert "不在本公司的网址" in problems(
        "${customer_name}您好，${service}报告：https://t.cn/r/${report_token}",
        purpose="report_ready",
    )
    assert "须紧跟在固定网址后" in problems(
        "${customer_name}您好，${service}报告编号${report_token}", purpose="report_ready"
    )
    assert "不是链接变量" in problems(
        "您好，${service}报告：" + BASE + "/r/${customer_name}", purpose="report_ready"
    )


def test_signature_kind_and_footer():
    text = "您预约的${service}已确认，上门时间：${time}。"
    assert "2–12" in problems(text, signature="洁")
    assert "不是本公司的签名" in problems(text, signature="别家家政")
    assert "须用通知短信模板" in problems(text, kind="marketing")
    campaign = "${customer_name}您好，空调清洗季开始了，欢迎预约"
    assert "退订方式结尾" in problems(campaign, purpose="campaign_marketing", kind="marketing")
    assert not problems(campaign + "，拒收请回复R", purpose="campaign_marketing", kind="marketing")


def test_segments_follow_the_70_and_67_rule():
    assert [sms_templates.segments(n) for n in (1, 70, 71, 134, 135)] == [1, 1, 2, 2, 3]


def test_the_api_records_lists_replaces_and_deletes(client, session, account):
    read = client.get("/v1/sms-templates", headers=account.headers).json()
    purposes = {p["purpose"]: p for p in read["purposes"]}
    assert set(purposes) == set(sms_templates.PURPOSES)
    assert not purposes["booking_confirmed"]["recorded"]
    assert purposes["report_ready"]["suggested"].startswith("${customer_name}您好")
    body = {
        "code": "SMS_123456789",
        "kind": "notification",
        "purpose": "booking_confirmed",
        "text": "您预约的${service}已确认，上门时间：${time}。",
    }
    made = client.post("/v1/sms-templates", headers=account.headers, json=body)
    assert made.status_code == 201, made.text
    assert made.json()["signature"] == "测试家政"  # the company's, by default
    assert made.json()["variables"] == ["service", "time"]
    assert made.json()["segments"] == 2  # 【测试家政】 + text + 2 × 35 > 70
    again = client.post("/v1/sms-templates", headers=account.headers, json=body)
    assert again.status_code == 201 and again.json()["id"] == made.json()["id"]
    # Another one for the purpose replaces it: one per purpose.
    other = client.post(
        "/v1/sms-templates",
        headers=account.headers,
        json={**body, "code": "SMS_123456790", "text": "您的${service}预约已确认：${time}。"},
    )
    assert other.status_code == 201
    listed = client.get("/v1/sms-templates", headers=account.headers).json()
    assert [t["code"] for t in listed["templates"]] == ["SMS_123456790"]
    refused = client.post(
        "/v1/sms-templates",
        headers=account.headers,
        json={**body, "code": "SMS_123456791", "text": "${service}"},
    )
    assert refused.status_code == 422 and "不能只有变量" in refused.json()["detail"]
    bad_code = client.post("/v1/sms-templates", headers=account.headers, json={**body, "code": "x"})
    assert bad_code.status_code == 422 and "SMS_" in bad_code.json()["detail"]
    unknown = client.post(
        "/v1/sms-templates", headers=account.headers, json={**body, "purpose": "lottery"}
    )
    assert unknown.status_code == 422 and "用途" in unknown.json()["detail"]
    gone = client.delete(f"/v1/sms-templates/{other.json()['id']}", headers=account.headers)
    assert gone.status_code == 204
    assert client.get("/v1/sms-templates", headers=account.headers).json()["templates"] == []


def test_office_keys_read_owners_record_and_companies_are_apart(
    client, session, account, other_account
):
    _, office_key = tenancy.create_api_key(session=session, tenant=account.tenant, role="office")
    session.flush()
    office = {"Authorization": f"Bearer {office_key}"}
    assert client.get("/v1/sms-templates", headers=office).status_code == 200
    body = {
        "code": "SMS_123456789",
        "kind": "notification",
        "purpose": "help_answer",
        "text": "回复1预约上门服务，其他问题请直接回复本短信。",
    }
    assert client.post("/v1/sms-templates", headers=office, json=body).status_code == 403
    made = client.post("/v1/sms-templates", headers=account.headers, json=body)
    assert made.status_code == 201
    theirs = client.get("/v1/sms-templates", headers=other_account.headers).json()
    assert theirs["templates"] == []
    assert (
        client.delete(
            f"/v1/sms-templates/{made.json()['id']}", headers=other_account.headers
        ).status_code
        == 404
    )


def test_the_settings_section_records_in_chinese_behind_csrf(client, session, account, monkeypatch):
    # The console's cookies are Secure under an https address; the test client speaks http.
    monkeypatch.setattr(get_settings(), "public_url", "http://testserver")
    sign_in(client, session, account.tenant)
    page = client.get("/office/settings/sms-templates")
    assert page.status_code == 200
    assert "短信模板" in page.text and "预约已确认" in page.text and "未登记" in page.text
    assert "${service}" in page.text
    form = {
        "purpose": "opt_out_confirmation",
        "kind": "notification",
        "code": "SMS_555000111",
        "text": "您已退订，将不再收到我们的短信。",
    }
    no_token = client.post("/office/settings/sms-templates", data=form)
    assert no_token.status_code in (400, 403)
    token = form_token(page.text)
    bad = client.post(
        "/office/settings/sms-templates",
        data={**form, "text": "${reason}", "csrf_token": token},
    )
    assert bad.status_code == 422 and "模板没有登记" in bad.text and "不能只有变量" in bad.text
    done = client.post(
        "/office/settings/sms-templates",
        data={**form, "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    shown = client.get(done.headers["location"])
    assert "SMS_555000111" in shown.text and "已保存" in shown.text
    assert "【测试家政】您已退订" in shown.text
    index = client.get("/office/settings")
    assert "/office/settings/sms-templates" in index.text
