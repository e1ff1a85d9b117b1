"""Signing in to the console, sessions, CSRF, roles and the API keys' roles."""

from __future__ import annotations

from sqlalchemy import select

from access.models import AuditEntry
from accounts import service as accounts
from accounts.models import User
from tenancy import service as tenancy
from tests.conftest import make_account
from tests.office.support import PASSWORD, form_token, sign_in


def test_signed_out_pages_send_to_sign_in_and_back(client, session):
    answer = client.get("/office/today?x=1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/office/login?next=/office/today%3Fx%3D1"
    page = client.get(answer.headers["location"])
    assert page.status_code == 200
    assert "手机号" in page.text and "密码" in page.text
    assert 'value="/office/today?x=1"' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "http" not in page.text.split("<body>")[0].replace("http-equiv", "")


def test_first_sign_in_sets_a_password_and_the_cookie_is_locked_down(client, session):
    tenant = make_account(session).tenant
    made = accounts.create_user(
        session=session, tenant=tenant, role="owner", name="张店长", phone="13900139000"
    )
    session.commit()
    page = client.get(f"/office/welcome/{made.link_token}")
    assert "您好，张店长" in page.text
    mismatch = client.post(
        f"/office/welcome/{made.link_token}",
        data={"csrf_token": form_token(page.text), "password": PASSWORD, "password_again": "x"},
    )
    assert mismatch.status_code == 422 and "两次输入的密码不一样" in mismatch.text
    done = client.post(
        f"/office/welcome/{made.link_token}",
        data={
            "csrf_token": form_token(mismatch.text),
            "password": PASSWORD,
            "password_again": PASSWORD,
        },
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/office/today"
    cookie = next(
        v
        for k, v in done.headers.multi_items()
        if k == "set-cookie" and v.startswith("hf_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    today = client.get("/office/today")
    assert today.status_code == 200
    for section in ("今日", "客户", "服务记录", "回复与预约", "营销活动", "合规", "设置"):
        assert section in today.text
    used = client.get(f"/office/welcome/{made.link_token}")
    assert used.status_code == 410 and "已经用过" in used.text


def test_sign_in_with_phone_and_password_and_out(client, session):
    tenant = make_account(session).tenant
    sign_in(client, session, tenant)
    token = form_token(client.get("/office/today").text)
    out = client.post("/office/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/office/today", follow_redirects=False).status_code == 303
    login = client.get("/office/login")
    answer = client.post(
        "/office/login",
        data={
            "csrf_token": form_token(login.text),
            "phone": "139 0013 9000",
            "password": PASSWORD,
            "next": "https://elsewhere.example/",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/office/today"


def test_repeated_failures_lock_the_account_out(client, session):
    tenant = make_account(session).tenant
    sign_in(client, session, tenant)
    client.cookies.clear()
    token = form_token(client.get("/office/login").text)
    for _ in range(5):
        wrong = client.post(
            "/office/login",
            data={"csrf_token": token, "phone": "13900139000", "password": "not it"},
        )
        assert wrong.status_code == 401 and "手机号或密码不对" in wrong.text
        token = form_token(wrong.text)
    locked = client.post(
        "/office/login", data={"csrf_token": token, "phone": "13900139000", "password": PASSWORD}
    )
    assert locked.status_code == 429 and "分钟后再试" in locked.text
    assert int(locked.headers["retry-after"]) > 0


def test_a_form_without_its_token_is_refused(client, session):
    tenant = make_account(session).tenant
    sign_in(client, session, tenant)
    forged = client.post(
        "/office/settings/users", data={"name": "外人", "phone": "13900139555", "role": "owner"}
    )
    assert forged.status_code == 403 and "页面已过期" in forged.text
    wrong = client.post(
        "/office/settings/users",
        data={"csrf_token": "guessed", "name": "外人", "phone": "13900139555", "role": "owner"},
    )
    assert wrong.status_code == 403
    assert session.scalars(select(User).where(User.phone == "+8613900139555")).first() is None


def test_office_users_cannot_reach_users_keys_or_settings(client, session):
    tenant = make_account(session).tenant
    sign_in(client, session, tenant, role="office", phone="13900139200", name="客服小王")
    page = client.get("/office/settings/users")
    assert page.status_code == 403 and "没有权限" in page.text
    nav = client.get("/office/today").text
    assert "/office/settings" not in nav and "/office/customers" in nav


def test_owner_adds_a_staff_member_and_gets_a_qr_code(client, session):
    tenant = make_account(session).tenant
    token = sign_in(client, session, tenant)
    page = client.post(
        "/office/settings/users",
        data={"csrf_token": token, "name": "李秀兰", "phone": "13900139300", "role": "staff"},
    )
    assert page.status_code == 201
    assert "<svg" in page.text and "/office/welcome/" in page.text
    user = session.scalars(select(User).where(User.phone == "+8613900139300")).one()
    assert user.role == "staff" and user.staff_id is not None
    entry = session.scalars(
        select(AuditEntry).where(
            AuditEntry.action == "user.created", AuditEntry.target == f"user:{user.id}"
        )
    ).one()
    assert entry.actor_kind == "user" and entry.actor_name == "张店长"
    refused = client.post(
        "/office/settings/users",
        data={"csrf_token": token, "name": "李秀兰", "phone": "13900139300", "role": "staff"},
    )
    assert refused.status_code == 409 and "已有账号" in refused.text


def test_a_disabled_user_is_signed_out_at_once(client, session):
    tenant = make_account(session).tenant
    sign_in(client, session, tenant, role="office", phone="13900139201", name="客服")
    assert client.get("/office/today").status_code == 200
    user = session.scalars(select(User).where(User.phone == "+8613900139201")).one()
    accounts.disable_user(session=session, tenant_id=tenant.id, user_id=user.id)
    session.commit()
    answer = client.get("/office/today", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/office/login")


def test_api_keys_have_roles(client, session):
    account = make_account(session)
    owner = account.headers
    _, office_key = tenancy.create_api_key(
        session=session, tenant=account.tenant, name="前台", role="office"
    )
    session.commit()
    office = {"Authorization": f"Bearer {office_key}"}
    assert client.get("/v1/customers", headers=office).status_code == 200
    for method, path in (
        ("get", "/v1/api-keys"),
        ("post", "/v1/api-keys"),
        ("get", "/v1/consents/export"),
        ("delete", "/v1/customers/1"),
        ("patch", "/v1/tenant"),
    ):
        answer = client.request(method.upper(), path, headers=office, json={})
        assert answer.status_code == 403, (path, answer.text)
        assert "owner" in answer.json()["detail"]
    made = client.post("/v1/api-keys", headers=owner, json={"name": "x", "role": "office"})
    assert made.status_code == 201 and made.json()["role"] == "office"
    keys = client.get("/v1/api-keys", headers=owner).json()
    assert {k["role"] for k in keys} == {"owner", "office"}


def test_every_app_gets_its_own_console_routes():
    # Including the console's pages into one shared router added them (and nested their
    # lifespan) once more with every app made, until a test run's few hundredth app
    # overflowed the stack at start-up.
    from fastapi.testclient import TestClient

    from huifang.app import create_app

    apps = [create_app() for _ in range(3)]
    assert len({len(app.routes) for app in apps}) == 1
    with TestClient(apps[-1]) as client:
        assert client.get("/office/login").status_code == 200
