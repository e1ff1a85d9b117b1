"""Users, sign-in links, passwords and sessions, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from access.models import AuditEntry
from access.roles import Permission, Role, may
from accounts import passwords
from accounts import service as accounts
from accounts.models import SignInLink, User
from huifang.errors import Conflict, Invalid, NotFound
from tests.conftest import make_account


def test_roles_reach():
    assert may(Role.OWNER, Permission.KEYS) and may(Role.OWNER, Permission.POLICY)
    assert may(Role.OFFICE, Permission.WORK)
    assert not any(
        may(Role.OFFICE, p)
        for p in (Permission.KEYS, Permission.USERS, Permission.POLICY, Permission.SETTINGS)
    )
    assert [p for p in Permission if may(Role.STAFF, p)] == [Permission.OWN_VISITS]


def test_passwords_are_argon2_and_verify():
    hashed = passwords.hash_password("correct horse")
    assert hashed.startswith("$argon2id$")
    assert passwords.verify("correct horse", hashed)
    assert not passwords.verify("wrong horse", hashed)
    assert not passwords.verify("anything", None)


def test_create_user_link_password_and_sign_in(session):
    tenant = make_account(session).tenant
    made = accounts.create_user(
        session=session, tenant=tenant, role="office", name=" 王芳 ", phone="139 0013 9100"
    )
    assert made.user.phone == "+8613900139100" and made.user.name == "王芳"
    assert accounts.authenticate(session=session, phone="13900139100", password="x" * 8) is None
    accounts.redeem_link(session=session, token=made.link_token, password="hunter2hunter2")
    with pytest.raises(accounts.LinkUnusable, match="用过"):
        accounts.redeem_link(session=session, token=made.link_token, password="another one")
    user = accounts.authenticate(
        session=session, phone="+86 139-0013-9100", password="hunter2hunter2"
    )
    assert user is not None and user.id == made.user.id
    assert accounts.authenticate(session=session, phone="13900139100", password="nope") is None
    entry = session.scalars(select(AuditEntry).where(AuditEntry.tenant_id == tenant.id)).one()
    assert (entry.action, entry.actor_kind) == ("user.created", "system")


def test_refusals_say_what_to_do(session):
    tenant = make_account(session).tenant
    with pytest.raises(Invalid, match="手机号码"):
        accounts.create_user(session=session, tenant=tenant, role="office", name="a", phone="12345")
    with pytest.raises(Invalid, match="角色"):
        accounts.create_user(
            session=session, tenant=tenant, role="boss", name="a", phone="13900139101"
        )
    made = accounts.create_user(
        session=session, tenant=tenant, role="office", name="a", phone="13900139101"
    )
    with pytest.raises(Conflict, match="已有账号"):
        accounts.create_user(
            session=session, tenant=tenant, role="owner", name="b", phone="13900139101"
        )
    with pytest.raises(Invalid, match="至少 8 位"):
        accounts.redeem_link(session=session, token=made.link_token, password="short")


def test_link_expires_after_a_day_and_a_new_one_replaces_it(session):
    tenant = make_account(session).tenant
    made = accounts.create_user(
        session=session, tenant=tenant, role="owner", name="店长", phone="13900139102"
    )
    link = session.scalars(select(SignInLink).where(SignInLink.user_id == made.user.id)).one()
    assert link.expires_at - link.created_at == dt.timedelta(hours=24)
    second = accounts.new_link(session=session, tenant_id=tenant.id, user_id=made.user.id)
    with pytest.raises(accounts.LinkUnusable):
        accounts.link_user(session=session, token=made.link_token)
    session.scalars(
        select(SignInLink).where(SignInLink.used_at.is_(None), SignInLink.user_id == made.user.id)
    ).one().expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with pytest.raises(accounts.LinkUnusable, match="过期"):
        accounts.link_user(session=session, token=second)


def test_staff_user_gets_a_staff_card_and_a_long_session(session):
    tenant = make_account(session).tenant
    made = accounts.create_user(
        session=session, tenant=tenant, role="staff", name="李秀兰", phone="13900139103"
    )
    assert made.user.staff_id is not None
    user = accounts.redeem_link(session=session, token=made.link_token, password=None)
    opened = accounts.open_session(session=session, user=user, csrf_token="t")
    assert opened.expires_at - dt.datetime.now(dt.UTC) > dt.timedelta(days=29)
    with pytest.raises(Invalid, match="只有服务人员"):
        accounts.create_user(
            session=session,
            tenant=tenant,
            role="office",
            name="x",
            phone="13900139104",
            staff_id=made.user.staff_id,
        )


def test_disabling_signs_out_at_once_but_keeps_the_last_owner(session):
    tenant = make_account(session).tenant
    owner = accounts.create_user(
        session=session, tenant=tenant, role="owner", name="店长", phone="13900139105"
    ).user
    office = accounts.create_user(
        session=session, tenant=tenant, role="office", name="客服", phone="13900139106"
    ).user
    opened = accounts.open_session(session=session, user=office, csrf_token="t")
    assert accounts.session_user(session=session, token=opened.token) is not None
    accounts.disable_user(
        session=session, tenant_id=tenant.id, user_id=office.id, actor=accounts.actor_for(owner)
    )
    assert accounts.session_user(session=session, token=opened.token) is None
    with pytest.raises(Conflict, match="最后一个店长"):
        accounts.disable_user(session=session, tenant_id=tenant.id, user_id=owner.id)
    actions = session.scalars(
        select(AuditEntry.action).where(
            AuditEntry.tenant_id == tenant.id, AuditEntry.actor_name == "店长"
        )
    ).all()
    assert actions == ["user.disabled"]


def test_another_companys_user_is_not_found(session):
    one, two = make_account(session).tenant, make_account(session).tenant
    made = accounts.create_user(
        session=session, tenant=one, role="office", name="a", phone="13900139107"
    )
    with pytest.raises(NotFound):
        accounts.disable_user(session=session, tenant_id=two.id, user_id=made.user.id)
    assert session.get(User, made.user.id).disabled_at is None
