"""Signing in and out: the sign-in page, one-time sign-in links, the landing page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from limits import RateLimitItemPerMinute

from access.roles import Role
from accounts import service as accounts
from huifang.deps import SessionDep
from huifang.errors import Invalid
from huifang.i18n import _
from huifang.throttle import client_address, throttle_for
from office import web

router = APIRouter()

# Failed sign-ins: a person mistypes a few times; a script guessing passwords tries thousands.
FAILURES_PER_ACCOUNT = RateLimitItemPerMinute(5, 15)
FAILURES_PER_ADDRESS = RateLimitItemPerMinute(20, 15)
PHONE_MAX = 30


def _locked_out(request: Request, phone_key: str) -> int | None:
    throttle = throttle_for(request)
    waits = [
        throttle.wait(FAILURES_PER_ACCOUNT, "sign-in-account", phone_key),
        throttle.wait(FAILURES_PER_ADDRESS, "sign-in-address", client_address(request)),
    ]
    found = [w for w in waits if w is not None]
    return max(found) if found else None


def _count_failure(request: Request, phone_key: str) -> None:
    throttle = throttle_for(request)
    throttle.count(FAILURES_PER_ACCOUNT, "sign-in-account", phone_key)
    throttle.count(FAILURES_PER_ADDRESS, "sign-in-address", client_address(request))


def _signed_in_response(
    target: str, opened: accounts.OpenedSession, signed_csrf: str, max_age: int
) -> Response:
    response = web.redirect(target)
    web.set_session_cookie(response, opened.token, max_age)
    web.set_csrf_cookie_for(response, signed_csrf)
    return response


def _open(session: SessionDep, request: Request, user: accounts.User, target: str) -> Response:
    token, signed = web.csrf.generate_csrf_tokens()
    opened = accounts.open_session(
        session=session,
        user=user,
        csrf_token=token,
        user_agent=request.headers.get("user-agent", ""),
    )
    max_age = int(accounts.SESSION_VALID[Role(user.role)].total_seconds())
    return _signed_in_response(target, opened, signed, max_age)


def home_of(role: str) -> str:
    return "/staff/" if role == Role.STAFF else "/office/today"


@router.get("/login")
def login_page(request: Request, next: str = "") -> Response:
    return web.render(
        request, "office/login.html", {"next": web.safe_next(next), "phone": "", "error": None}
    )


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    phone: Annotated[str, Form(max_length=PHONE_MAX)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    target = web.safe_next(next)
    phone_key = "".join(ch for ch in phone if ch.isdigit())[-11:] or "-"

    def again(error: str, status: int) -> Response:
        return web.render(
            request,
            "office/login.html",
            {"next": target, "phone": phone, "error": error},
            status=status,
        )

    wait = _locked_out(request, phone_key)
    if wait is not None:
        minutes = max(1, -(-wait // 60))
        response = again(
            _("登录失败次数过多，为保护账号安全，请 {n} 分钟后再试。").format(n=minutes), 429
        )
        response.headers["Retry-After"] = str(wait)
        return response
    user = accounts.authenticate(session=session, phone=phone, password=password)
    if user is None:
        _count_failure(request, phone_key)
        return again(_("手机号或密码不对。忘记密码请联系店长生成新的登录链接。"), 401)
    if (
        (user.role == Role.STAFF and target.startswith("/office/"))
        or target == "/office/"
        or (user.role != Role.STAFF and target.startswith("/staff/"))
    ):
        target = home_of(user.role)
    return _open(session, request, user, target)


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    token = web.session_token(request)
    if token:
        accounts.close_session(session=session, token=token)
    response = web.redirect("/office/login")
    web.clear_session_cookie(response)
    return response


@router.get("/welcome/{token}")
def welcome_page(token: str, request: Request, session: SessionDep) -> Response:
    """Where a sign-in link leads: set a password (office) or one tap to sign in (staff).
    Opening it changes nothing, so a chat app's link preview does not use it up."""
    try:
        _link, user = accounts.link_user(session=session, token=token)
    except accounts.LinkUnusable as refused:
        return web.message_page(
            request,
            _("登录链接不可用"),
            refused.detail,
            status=410,
            link=("/office/login", _("去登录")),
        )
    return web.render(request, "office/welcome.html", {"user": user, "error": None})


@router.post("/welcome/{token}")
def welcome(
    token: str,
    request: Request,
    session: SessionDep,
    password: Annotated[str | None, Form(max_length=200)] = None,
    password_again: Annotated[str | None, Form(max_length=200)] = None,
) -> Response:
    try:
        _link, user = accounts.link_user(session=session, token=token)
        if (user.role != Role.STAFF or password) and (password or "") != (password_again or ""):
            raise Invalid(_("两次输入的密码不一样。"))
        user = accounts.redeem_link(session=session, token=token, password=password or None)
    except accounts.LinkUnusable as refused:
        return web.message_page(
            request,
            _("登录链接不可用"),
            refused.detail,
            status=410,
            link=("/office/login", _("去登录")),
        )
    except Invalid as refused:
        _link, user = accounts.link_user(session=session, token=token)
        return web.render(
            request, "office/welcome.html", {"user": user, "error": refused.detail}, status=422
        )
    return _open(session, request, user, home_of(user.role))


@router.get("/")
def landing(person: Annotated[web.SignedIn, Depends(web.signed_in)]) -> Response:
    return web.redirect(home_of(person.user.role))
