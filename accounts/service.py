"""Users of a company: create, list, disable; sign-in links, passwords and sessions.

A user is made with a one-time sign-in link (24 hours): an office user opens it and sets
a password, a staff member opens it on the phone (from the QR code) and is signed in for
30 days. Sessions live in the database, so disabling a user signs them out at their next
request, wherever they are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from access import audit
from access.actors import Actor
from access.roles import Role
from accounts import passwords
from accounts.models import SignInLink, User, UserSession
from customers import phones
from huifang import rls
from huifang.db import as_utc, utcnow
from huifang.errors import Conflict, Invalid, NotFound
from huifang.i18n import _
from huifang.settings import get_settings
from tenancy.models import Tenant
from visits import service as visits

LINK_VALID = dt.timedelta(hours=24)
SESSION_VALID = {
    Role.OWNER: dt.timedelta(days=7),
    Role.OFFICE: dt.timedelta(days=7),
    Role.STAFF: dt.timedelta(days=30),
}
NAME_MAX = 50


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def actor_for(user: User) -> Actor:
    return Actor(
        kind="user",
        id=user.id,
        name=user.name,
        tenant_id=user.tenant_id,
        role=Role(user.role),
        staff_id=user.staff_id,
    )


def _phone(raw: str, region: str) -> str:
    try:
        return phones.normalize_phone(raw, region=region)
    except Invalid:
        raise Invalid(
            _("手机号码“{phone}”无法识别，请填写 11 位手机号。").format(phone=raw[:30])
        ) from None


def _name(raw: str) -> str:
    name = " ".join((raw or "").split())
    if not name:
        raise Invalid(_("请填写姓名。"))
    if len(name) > NAME_MAX:
        raise Invalid(_("姓名最多 {n} 个字。").format(n=NAME_MAX))
    return name


@dataclass(frozen=True)
class NewUser:
    user: User
    link_token: str  # shown once: the sign-in link's secret part


def create_user(
    *,
    session: Session,
    tenant: Tenant,
    role: Role | str,
    name: str,
    phone: str,
    staff_id: int | None = None,
    actor: Actor | None = None,
) -> NewUser:
    """A user with a one-time sign-in link. A staff user is tied to a staff card: the one
    given, or a new card with their name."""
    try:
        role = Role(role)
    except ValueError:
        raise Invalid(
            _("角色只能是 owner（店长）、office（客服/调度）或 staff（服务人员）。")
        ) from None
    name, e164 = _name(name), _phone(phone, tenant.phone_region)
    taken = session.scalars(
        select(User.id).where(User.tenant_id == tenant.id, User.phone == e164)
    ).first()
    if taken is not None:
        raise Conflict(
            _("手机号 {phone} 已有账号；如需重新登录，请为其生成新的登录链接。").format(
                phone=phones.display(e164)
            )
        )
    if role is Role.STAFF:
        if staff_id is None:
            staff_id = visits.create_staff(session=session, tenant=tenant, name=name).id
        else:
            visits.get_staff(session=session, tenant_id=tenant.id, staff_id=staff_id)
    elif staff_id is not None:
        raise Invalid(_("只有服务人员账号可以关联服务人员档案。"))
    user = User(tenant_id=tenant.id, role=role.value, name=name, phone=e164, staff_id=staff_id)
    session.add(user)
    session.flush()
    token = issue_link(session=session, user=user)
    audit.record(
        session,
        actor,
        "user.created",
        f"user:{user.id}",
        {"role": role.value, "name": name},
        tenant_id=tenant.id,
    )
    return NewUser(user, token)


def list_users(*, session: Session, tenant_id: int) -> Sequence[User]:
    return session.scalars(
        select(User)
        .where(User.tenant_id == tenant_id)
        .order_by(User.disabled_at.is_not(None), User.id)
    ).all()


def get_user(*, session: Session, tenant_id: int, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or user.tenant_id != tenant_id:
        raise NotFound(_("没有这个账号。"))
    return user


def issue_link(*, session: Session, user: User) -> str:
    """A new one-time sign-in link for ``user`` (valid 24 hours); earlier unused ones stop
    working."""
    now = utcnow()
    session.execute(
        update(SignInLink)
        .where(SignInLink.user_id == user.id, SignInLink.used_at.is_(None))
        .values(used_at=now)
    )
    token = _new_token()
    session.add(
        SignInLink(
            tenant_id=user.tenant_id,
            user_id=user.id,
            token_hash=_hash(token),
            created_at=now,
            expires_at=now + LINK_VALID,
        )
    )
    return token


def new_link(*, session: Session, tenant_id: int, user_id: int, actor: Actor | None = None) -> str:
    user = get_user(session=session, tenant_id=tenant_id, user_id=user_id)
    if user.disabled_at is not None:
        raise Conflict(_("该账号已停用，请先启用。"))
    token = issue_link(session=session, user=user)
    audit.record(session, actor, "user.link_issued", f"user:{user.id}", tenant_id=tenant_id)
    return token


class LinkUnusable(Invalid):
    status_code = 410


def link_user(*, session: Session, token: str) -> tuple[SignInLink, User]:
    """The link and its user, if the link can still be used; LinkUnusable saying why."""
    link = (
        session.scalars(
            select(SignInLink).where(SignInLink.token_hash == _hash(token))
        ).one_or_none()
        if token
        else None
    )
    if link is None:
        raise LinkUnusable(_("这个登录链接无效，请向店长索取新的链接。"))
    rls.scope_to_tenant(session, link.tenant_id)  # the rest: that company's rows only
    user = session.get(User, link.user_id)
    if link.used_at is not None:
        raise LinkUnusable(_("这个登录链接已经用过了，请向店长索取新的链接。"))
    if as_utc(link.expires_at) <= utcnow():  # type: ignore[operator]
        raise LinkUnusable(_("这个登录链接已过期（有效期 24 小时），请向店长索取新的链接。"))
    if user is None or user.disabled_at is not None:
        raise LinkUnusable(_("该账号已停用。"))
    return link, user


def check_password_rule(password: str) -> None:
    if len(password) < passwords.MIN_LENGTH:
        raise Invalid(_("密码至少 {n} 位。").format(n=passwords.MIN_LENGTH))
    if len(password) > passwords.MAX_LENGTH:
        raise Invalid(_("密码最多 {n} 位。").format(n=passwords.MAX_LENGTH))


def redeem_link(*, session: Session, token: str, password: str | None) -> User:
    """Use a sign-in link: sets the password when one is given (the office's first sign-in)
    and consumes the link."""
    link, user = link_user(session=session, token=token)
    if password is not None:
        check_password_rule(password)
        user.password_hash = passwords.hash_password(password)
    elif user.role != Role.STAFF and user.password_hash is None:
        raise Invalid(_("请设置密码。"))
    link.used_at = utcnow()
    return user


def authenticate(*, session: Session, phone: str, password: str, region: str = "CN") -> User | None:
    """The active user with this phone and password (in any company), or None."""
    try:
        e164 = phones.normalize_phone(phone, region=region)
    except Invalid:
        passwords.verify(password, None)
        return None
    candidates = session.scalars(
        select(User).where(User.phone == e164, User.disabled_at.is_(None))
    ).all()
    if not candidates:
        passwords.verify(password, None)
    for user in candidates:
        if passwords.verify(password, user.password_hash):
            rls.scope_to_tenant(session, user.tenant_id)  # the rest: that company's rows only
            return user
    return None


@dataclass(frozen=True)
class OpenedSession:
    token: str  # for the cookie
    csrf_token: str
    expires_at: dt.datetime


def open_session(
    *, session: Session, user: User, csrf_token: str, user_agent: str = ""
) -> OpenedSession:
    now = utcnow()
    token = _new_token()
    expires = now + SESSION_VALID[Role(user.role)]
    session.add(
        UserSession(
            tenant_id=user.tenant_id,
            user_id=user.id,
            token_hash=_hash(token),
            csrf_token=csrf_token,
            created_at=now,
            expires_at=expires,
            user_agent=user_agent[:200],
        )
    )
    return OpenedSession(token, csrf_token, expires)


def session_user(*, session: Session, token: str) -> tuple[User, UserSession] | None:
    """The signed-in user of a session token, if the session is open and the user active."""
    row = session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(
            UserSession.token_hash == _hash(token),
            UserSession.revoked_at.is_(None),
            User.disabled_at.is_(None),
        )
    ).one_or_none()
    if row is None:
        return None
    user_session, user = row
    if as_utc(user_session.expires_at) <= utcnow():  # type: ignore[operator]
        return None
    rls.scope_to_tenant(session, user.tenant_id)  # the rest: that company's rows only
    return user, user_session


def close_session(*, session: Session, token: str) -> None:
    session.execute(
        update(UserSession)
        .where(UserSession.token_hash == _hash(token), UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def disable_user(
    *, session: Session, tenant_id: int, user_id: int, actor: Actor | None = None
) -> User:
    """Disable a user and sign them out everywhere at once (a lost phone, someone who left).
    An owner cannot disable the last active owner."""
    user = get_user(session=session, tenant_id=tenant_id, user_id=user_id)
    if user.disabled_at is not None:
        return user
    if user.role == Role.OWNER:
        owners = session.scalars(
            select(User.id).where(
                User.tenant_id == tenant_id,
                User.role == Role.OWNER.value,
                User.disabled_at.is_(None),
            )
        ).all()
        if len(owners) <= 1:
            raise Conflict(_("不能停用最后一个店长账号。"))
    now = utcnow()
    user.disabled_at = now
    session.execute(
        update(UserSession)
        .where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.execute(
        update(SignInLink)
        .where(SignInLink.user_id == user.id, SignInLink.used_at.is_(None))
        .values(used_at=now)
    )
    audit.record(
        session, actor, "user.disabled", f"user:{user.id}", {"name": user.name}, tenant_id=tenant_id
    )
    return user


def enable_user(
    *, session: Session, tenant_id: int, user_id: int, actor: Actor | None = None
) -> User:
    user = get_user(session=session, tenant_id=tenant_id, user_id=user_id)
    if user.disabled_at is not None:
        user.disabled_at = None
        audit.record(
            session,
            actor,
            "user.enabled",
            f"user:{user.id}",
            {"name": user.name},
            tenant_id=tenant_id,
        )
    return user


def sign_in_url(token: str) -> str:
    """The address a sign-in link opens (for the CLI, the console and its QR code)."""
    return f"{get_settings().public_url.rstrip('/')}/office/welcome/{token}"
