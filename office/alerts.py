"""设置 → 告警: where the office hears about new bookings and complaints (WeCom, DingTalk,
a signed webhook), a test button, and the delivery log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from access.roles import Permission
from alerts import service as alerts
from alerts.models import EVENTS
from huifang.deps import SessionDep
from huifang.errors import HuifangError
from huifang.fields import Id
from office import web

router = APIRouter(prefix="/settings/alerts")
Owner = Annotated[web.SignedIn, Depends(web.require(Permission.SETTINGS))]
CHOOSABLE = {key: label for key, label in EVENTS.items() if key != "test"}


def _page(
    request: Request,
    session: SessionDep,
    person: web.SignedIn,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
    form: dict[str, object] | None = None,
) -> Response:
    tenant_id = person.tenant.id
    return web.render(
        request,
        "office/alerts.html",
        {
            "channels": alerts.list_channels(session=session, tenant_id=tenant_id),
            "log": alerts.delivery_log(session=session, tenant_id=tenant_id, limit=30),
            "kinds": alerts.KIND_NAMES,
            "events": CHOOSABLE,
            "error": error,
            "notice": notice,
            "form": form or {"kind": "wecom", "name": "", "url": "", "secret": "", "events": []},
        },
        person=person,
        status=status,
    )


NOTICES = {
    "added": "已添加告警渠道。点“发送测试”确认群里能收到。",
    "sent": "测试消息已交给后台发送，几秒后在下面的发送记录里看结果。",
    "deleted": "已删除告警渠道。",
}


@router.get("")
def alerts_page(request: Request, session: SessionDep, person: Owner, done: str = "") -> Response:
    return _page(request, session, person, notice=NOTICES.get(done))


@router.get("/log")
def log_fragment(request: Request, session: SessionDep, person: Owner) -> Response:
    """The delivery log alone, refreshed in place by the page."""
    return web.render(
        request,
        "office/alerts_log.html",
        {"log": alerts.delivery_log(session=session, tenant_id=person.tenant.id, limit=30)},
        person=person,
    )


@router.post("")
async def create(
    request: Request,
    session: SessionDep,
    person: Owner,
    kind: Annotated[str, Form(max_length=10)] = "wecom",
    name: Annotated[str, Form(max_length=100)] = "",
    url: Annotated[str, Form(max_length=600)] = "",
    secret: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    events = [e for e in (await request.form()).getlist("events") if isinstance(e, str)]
    try:
        alerts.create_channel(
            session=session,
            tenant=person.tenant,
            kind=kind,
            name=name,
            url=url,
            secret=secret or None,
            events=events,
            actor=person.actor,
        )
    except HuifangError as refused:
        return _page(
            request,
            session,
            person,
            error=refused.detail,
            status=refused.status_code,
            form={"kind": kind, "name": name, "url": url, "secret": secret, "events": events},
        )
    return web.redirect("/office/settings/alerts?done=added")


@router.post("/{channel_id}/test")
def send_test(channel_id: Id, request: Request, session: SessionDep, person: Owner) -> Response:
    try:
        alerts.send_test(
            session=session, tenant_id=person.tenant.id, channel_id=channel_id, actor=person.actor
        )
    except HuifangError as refused:
        return _page(request, session, person, error=refused.detail, status=refused.status_code)
    return web.redirect("/office/settings/alerts?done=sent")


@router.post("/{channel_id}/delete")
def delete(channel_id: Id, request: Request, session: SessionDep, person: Owner) -> Response:
    try:
        alerts.delete_channel(
            session=session, tenant_id=person.tenant.id, channel_id=channel_id, actor=person.actor
        )
    except HuifangError as refused:
        return _page(request, session, person, error=refused.detail, status=refused.status_code)
    return web.redirect("/office/settings/alerts?done=deleted")
