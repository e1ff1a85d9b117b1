"""What every console page shares: the signed-in person, permissions, CSRF, rendering.

A page handler is thin: it reads the form, calls the service the JSON route calls, and
renders. The session cookie holds a random token (signed, HttpOnly, SameSite=Lax, Secure
when the service is served over HTTPS) whose session row says who it is; a disabled user's
sessions are revoked, so they are signed out at their next request. Every form carries the
session's CSRF token, checked against the CSRF cookie (fastapi-csrf-protect's double
submit) before the handler runs.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_csrf_protect import CsrfProtect
from fastapi_csrf_protect.exceptions import CsrfProtectError
from itsdangerous import BadSignature, URLSafeSerializer
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from access.actors import Actor
from access.roles import Permission, Role
from accounts import service as accounts
from accounts.models import User, UserSession
from customers import phones
from huifang import i18n
from huifang.deps import SessionDep
from huifang.headers import csp
from huifang.i18n import _
from huifang.settings import get_settings
from tenancy.models import Tenant

SESSION_COOKIE = "hf_session"
CSRF_COOKIE = "hf_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"  # what our pages' scripts send with a cookie-authenticated write
STATIC = Path(__file__).parent / "static"

# Console pages run our own script and style files and nothing else.
OFFICE_CSP = csp(
    {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data: blob:",
        "media-src": "'self' blob:",
        "connect-src": "'self'",
        "form-action": "'self'",
        "base-uri": "'none'",
        "frame-ancestors": "'none'",
        "manifest-src": "'self'",
    }
)

# The console's sections, in the order of the navigation.
NAV: tuple[tuple[str, str, Permission], ...] = (
    ("today", "今日", Permission.WORK),
    ("customers", "客户", Permission.WORK),
    ("visits", "服务记录", Permission.WORK),
    ("inbox", "回复与预约", Permission.WORK),
    ("ratings", "满意度", Permission.WORK),
    ("campaigns", "营销活动", Permission.WORK),
    ("compliance", "合规", Permission.COMPLIANCE),
    ("settings", "设置", Permission.SETTINGS),
)
ROLE_NAMES = {Role.OWNER: "店长", Role.OFFICE: "客服/调度", Role.STAFF: "服务人员"}


def _https() -> bool:
    return get_settings().public_url.startswith("https://")


@CsrfProtect.load_config
def _csrf_config() -> list[tuple[str, Any]]:
    return [
        ("secret_key", get_settings().secret_key),
        ("cookie_key", CSRF_COOKIE),
        ("token_location", "body"),
        ("token_key", CSRF_FIELD),
        ("cookie_samesite", "lax"),
        ("cookie_secure", _https()),
        ("httponly", True),
        # The form token lives as long as the longest session (the staff phone's).
        ("max_age", int(accounts.SESSION_VALID[Role.STAFF].total_seconds())),
    ]


csrf = CsrfProtect()


@functools.cache
def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(get_settings().secret_key, salt="huifang-office-session")


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("office", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    i18n.install(env)
    env.globals.update(
        format_datetime=i18n.format_datetime,
        format_date=i18n.format_date,
        format_duration=i18n.format_duration,
        ROLE_NAMES=ROLE_NAMES,
        Permission=Permission,
        phone=phones.display,
    )
    return env


# --- who is signed in --------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    user: User
    tenant: Tenant
    actor: Actor
    csrf_token: str
    session_row: UserSession

    def may(self, permission: Permission) -> bool:
        return self.actor.may(permission)


class SignInRequired(Exception):
    """No open session: the page sends the person to sign in, and back afterwards."""


class NotAllowed(Exception):
    """Signed in, but this page is not for this role."""


class FormRefused(Exception):
    """A form without a valid CSRF token: made elsewhere, or from a page open too long."""


def session_token(request: Request) -> str | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        token = _signer().loads(raw)
    except BadSignature:
        return None
    return token if isinstance(token, str) else None


def signed_in(request: Request, session: SessionDep) -> SignedIn:
    token = session_token(request)
    # Found, the session names its company: the rest of the request sees only its rows.
    found = accounts.session_user(session=session, token=token) if token else None
    if found is None:
        raise SignInRequired
    user, row = found
    tenant = session.get(Tenant, user.tenant_id)
    if tenant is None:
        raise SignInRequired
    return SignedIn(user, tenant, accounts.actor_for(user), row.csrf_token, row)


def require(permission: Permission) -> Callable[..., SignedIn]:
    """A page dependency: the signed-in person, if their role has ``permission``."""

    def dependency(person: Annotated[SignedIn, Depends(signed_in)]) -> SignedIn:
        if not person.may(permission):
            raise NotAllowed
        return person

    dependency.__name__ = f"require_{permission.value}"
    return dependency


OfficeUser = Annotated[SignedIn, Depends(require(Permission.WORK))]


async def check_form(request: Request) -> None:
    """For every console route that changes something: the CSRF token of the form must
    match the CSRF cookie."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        await request.form()  # parsed once; the handler reads the same
        try:
            await csrf.validate_csrf(request)
        except CsrfProtectError:
            raise FormRefused from None
        return
    # Our pages' scripts post forms too (FormData): anything else is not from our pages.
    raise FormRefused


FormChecked = Depends(check_form)


def header_token_ok(request: Request, expected: str) -> bool:
    """Whether the request carries the session's CSRF token in ``X-CSRF-Token`` (what a
    script of ours sends with a write that is not a form: a tus upload's pieces). Another
    site cannot set that header without the browser asking us first, and it cannot read
    the token."""
    return tokens_match(request.headers.get(CSRF_HEADER, ""), expected)


def tokens_match(sent: str, expected: str) -> bool:
    """A CSRF token sent (a header, a streamed form's field) against the session's."""
    return (
        bool(sent)
        and bool(expected)
        and hmac.compare_digest(
            sent.encode("utf-8", "replace"), expected.encode("utf-8", "replace")
        )
    )


def check_header(request: Request, person: Annotated[SignedIn, Depends(signed_in)]) -> SignedIn:
    """For a cookie-authenticated write from our scripts: the session's CSRF token must be
    in ``X-CSRF-Token`` (reads need none)."""
    if request.method not in ("GET", "HEAD", "OPTIONS") and not header_token_ok(
        request, person.csrf_token
    ):
        raise FormRefused
    return person


# --- rendering --------------------------------------------------------------------------


def page_response(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        body,
        status_code=status,
        headers={"Content-Security-Policy": OFFICE_CSP, "Cache-Control": "no-store"},
    )


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    person: SignedIn | None = None,
    status: int = 200,
) -> HTMLResponse:
    """A console page. With ``person``, the navigation and the session's form token; without
    (sign-in pages), a fresh form token and its cookie."""
    fresh: tuple[str, str] | None = None
    if person is not None:
        token = person.csrf_token
    else:
        fresh = csrf.generate_csrf_tokens()
        token = fresh[0]
    section = request.url.path.removeprefix("/office/").split("/")[0]
    nav = [
        (key, label, key == section)
        for key, label, permission in NAV
        if person is not None and person.may(permission)
    ]

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)

    body = (
        environment()
        .get_template(template)
        .render(
            request=request,
            person=person,
            nav=nav,
            csrf_token=token,
            csrf_field=csrf_field,
            timezone=person.tenant.timezone if person else "Asia/Shanghai",
            **(context or {}),
        )
    )
    response = page_response(body, status)
    if fresh is not None:
        csrf.set_csrf_cookie(fresh[1], response)
    return response


def message_page(
    request: Request,
    title: str,
    message: str,
    *,
    status: int,
    person: SignedIn | None = None,
    link: tuple[str, str] | None = None,
) -> HTMLResponse:
    return render(
        request,
        "office/message.html",
        {"title": title, "message": message, "link": link},
        person=person,
        status=status,
    )


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a console path of ours, never another site."""
    if not target:
        return "/office/"
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not parts.path.startswith(("/office/", "/staff/"))
        or target.startswith("//")
    ):
        return "/office/"
    return target


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def set_session_cookie(response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        _signer().dumps(token),
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=_https(),
        path="/",
    )


def set_csrf_cookie_for(response: Response, signed: str) -> None:
    csrf.set_csrf_cookie(signed, response)


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=_https())


def escape_text(value: str) -> str:
    return str(escape(value))


# --- wiring -----------------------------------------------------------------------------


def _sign_in_required(request: Request, _exc: Exception) -> Response:
    if request.method == "GET":
        return redirect(
            "/office/login?next="
            + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        )
    return message_page(
        request,
        _("请先登录"),
        _("登录已失效，请重新登录后再操作。"),
        status=401,
        link=("/office/login", _("去登录")),
    )


def _keeping_csrf_cookie(response: Response) -> Response:
    """A refusal page for someone who may be signed in: their CSRF cookie belongs to their
    session's token, and a fresh one would make every form of theirs fail from then on."""
    del response.headers["set-cookie"]
    return response


def _not_allowed(request: Request, _exc: Exception) -> Response:
    return _keeping_csrf_cookie(
        message_page(
            request,
            _("没有权限"),
            _("您的账号没有查看这个页面的权限。如需开通，请联系店长。"),
            status=403,
            link=("/office/", _("返回首页")),
        )
    )


def _form_refused(request: Request, _exc: Exception) -> Response:
    return _keeping_csrf_cookie(
        message_page(
            request,
            _("页面已过期"),
            _("这个表单无法验证来源（页面打开太久或来自其他网站）。请返回、刷新页面后重新提交。"),
            status=403,
            link=("/office/", _("返回首页")),
        )
    )


def install(app: FastAPI, *routers: APIRouter) -> None:
    """Mount the console on ``app``: its routes, static files and refusal pages. Each router
    goes straight into the app under /office (FastAPI rebuilds every route it includes, so a
    router between them would double the work of making an app)."""
    for extra in routers:
        app.include_router(
            extra, prefix="/office", include_in_schema=False, dependencies=[FormChecked]
        )
    app.mount("/office/static", StaticFiles(directory=STATIC), name="office-static")
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(NotAllowed, _not_allowed)
    app.add_exception_handler(FormRefused, _form_refused)
