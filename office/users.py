"""设置 → 账号与密钥: the company's people (owner, office, staff) and its API keys.

Owners only. A new user, or a new link for one, is shown once with its QR code: a staff
member scans it with the phone's camera and is signed in on the phone.
"""

from __future__ import annotations

from typing import Annotated

import segno
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from markupsafe import Markup

from access import audit
from access.roles import Permission, Role
from accounts import service as accounts
from huifang.deps import SessionDep
from huifang.errors import HuifangError
from huifang.fields import Id
from huifang.i18n import _
from huifang.pagination import PageParams
from office import web
from tenancy import service as tenancy
from visits import service as visits

router = APIRouter(prefix="/settings")
UsersOwner = Annotated[web.SignedIn, Depends(web.require(Permission.USERS))]
KeysOwner = Annotated[web.SignedIn, Depends(web.require(Permission.KEYS))]


def qr_svg(url: str) -> Markup:
    """The link as a QR code, inline SVG (no script, no image request)."""
    return Markup(  # noqa: S704  (segno escapes the link it draws)
        segno.make(url, error="m").svg_inline(
            scale=5,
            border=2,
            title=_("扫码登录"),
        )
    )


def _page(
    request: Request,
    session: SessionDep,
    person: web.SignedIn,
    *,
    shown: dict[str, object] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    tenant_id = person.tenant.id
    return web.render(
        request,
        "office/users.html",
        {
            "users": accounts.list_users(session=session, tenant_id=tenant_id),
            "staff": visits.list_staff(
                session=session, tenant_id=tenant_id, active=True, page=PageParams(limit=500)
            )[0],
            "keys": tenancy.list_api_keys(session=session, tenant_id=tenant_id),
            "roles": [Role.OWNER, Role.OFFICE, Role.STAFF],
            "shown": shown,
            "error": error,
        },
        person=person,
        status=status,
    )


@router.get("/users")
def users_page(request: Request, session: SessionDep, person: UsersOwner) -> Response:
    return _page(request, session, person)


def _link_shown(user: accounts.User, token: str) -> dict[str, object]:
    url = accounts.sign_in_url(token)
    return {
        "title": _("{name} 的登录链接").format(name=user.name),
        "url": url,
        "qr": qr_svg(url),
        "staff": user.role == Role.STAFF,
    }


@router.post("/users")
def create_user(
    request: Request,
    session: SessionDep,
    person: UsersOwner,
    name: Annotated[str, Form(max_length=100)] = "",
    phone: Annotated[str, Form(max_length=30)] = "",
    role: Annotated[str, Form(max_length=10)] = Role.OFFICE.value,
    staff_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    try:
        made = accounts.create_user(
            session=session,
            tenant=person.tenant,
            role=role,
            name=name,
            phone=phone,
            staff_id=int(staff_id) if staff_id.isdigit() else None,
            actor=person.actor,
        )
    except HuifangError as refused:
        return _page(request, session, person, error=refused.detail, status=refused.status_code)
    return _page(
        request, session, person, shown=_link_shown(made.user, made.link_token), status=201
    )


@router.post("/users/{user_id}/link")
def new_link(user_id: Id, request: Request, session: SessionDep, person: UsersOwner) -> Response:
    try:
        token = accounts.new_link(
            session=session, tenant_id=person.tenant.id, user_id=user_id, actor=person.actor
        )
    except HuifangError as refused:
        return _page(request, session, person, error=refused.detail, status=refused.status_code)
    user = accounts.get_user(session=session, tenant_id=person.tenant.id, user_id=user_id)
    return _page(request, session, person, shown=_link_shown(user, token))


@router.post("/users/{user_id}/disable")
def disable(user_id: Id, request: Request, session: SessionDep, person: UsersOwner) -> Response:
    try:
        accounts.disable_user(
            session=session, tenant_id=person.tenant.id, user_id=user_id, actor=person.actor
        )
    except HuifangError as refused:
        return _page(request, session, person, error=refused.detail, status=refused.status_code)
    return web.redirect("/office/settings/users")


@router.post("/users/{user_id}/enable")
def enable(user_id: Id, request: Request, session: SessionDep, person: UsersOwner) -> Response:
    try:
        accounts.enable_user(
            session=session, tenant_id=person.tenant.id, user_id=user_id, actor=person.actor
        )
    except HuifangError as refused:
        return _page(request, session, person, error=refused.detail, status=refused.status_code)
    return web.redirect("/office/settings/users")


@router.post("/keys")
def create_key(
    request: Request,
    session: SessionDep,
    person: KeysOwner,
    name: Annotated[str, Form(max_length=100)] = "",
    role: Annotated[str, Form(max_length=10)] = Role.OFFICE.value,
) -> Response:
    name = " ".join(name.split()) or _("接口密钥")
    try:
        row, key = tenancy.create_api_key(
            session=session, tenant=person.tenant, name=name, role=role
        )
    except HuifangError:
        return _page(
            request, session, person, error=_("密钥的角色只能是店长或客服/调度。"), status=422
        )
    audit.record(
        session, person.actor, "api_key.created", f"api_key:{row.id}", {"name": name, "role": role}
    )
    return _page(
        request,
        session,
        person,
        status=201,
        shown={"title": _("新的接口密钥“{name}”").format(name=name), "key": key},
    )


@router.post("/keys/{key_id}/revoke")
def revoke_key(key_id: Id, request: Request, session: SessionDep, person: KeysOwner) -> Response:
    try:
        row = tenancy.revoke_api_key(session=session, tenant_id=person.tenant.id, key_id=key_id)
    except HuifangError:
        return _page(request, session, person, error=_("没有这个密钥。"), status=404)
    audit.record(session, person.actor, "api_key.revoked", f"api_key:{row.id}", {"name": row.name})
    return web.redirect("/office/settings/users")
