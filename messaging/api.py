from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from sqlalchemy import select

from access.roles import Permission
from bookings import recovery
from bookings import service as booking
from customers import phones
from customers import service as customers
from customers.models import Customer
from huifang.db import utcnow
from huifang.deps import KeyActorDep, SessionDep, TenantDep, key_may
from huifang.errors import Conflict, NotFound
from huifang.fields import Id
from huifang.headers import csp, page_directives
from huifang.openapi import refusals
from huifang.settings import get_settings
from huifang.templating import render
from huifang.worker import enqueue
from messaging import inbound, service, tasks
from messaging.models import Message
from messaging.schemas import (
    KeywordRuleCreate,
    KeywordRuleRead,
    MessageRead,
    RecoveryFigures,
    ReplyRead,
    ReplySimulate,
    ReplyUpdate,
)
from tenancy import service as tenancy
from tenancy.models import Tenant

router = APIRouter(tags=["messages"])
public_router = APIRouter(tags=["console"])


@router.get("/messages", response_model=list[MessageRead], responses=refusals(404))
def list_messages(
    session: SessionDep, tenant: TenantDep, customer_id: Id | None = None
) -> list[MessageRead]:
    """Messages, newest first, each with its status history."""
    if customer_id is not None:
        customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    return [
        MessageRead.model_validate(m)
        for m in service.list_messages(
            session=session, tenant_id=tenant.id, customer_id=customer_id
        )
    ]


@router.get("/messages/{message_id}", response_model=MessageRead)
def read_message(message_id: Id, session: SessionDep, tenant: TenantDep) -> MessageRead:
    return MessageRead.model_validate(
        service.get_message(session=session, tenant_id=tenant.id, message_id=message_id)
    )


@router.post("/messages/{message_id}/retry", response_model=MessageRead, responses=refusals(409))
def retry_message(message_id: Id, session: SessionDep, tenant: TenantDep) -> MessageRead:
    """Send an ``unknown`` message again: an operator's call, since it may arrive twice."""
    message = service.retry(
        session=session, tenant_id=tenant.id, message_id=message_id, now=utcnow()
    )
    enqueue(session, tasks.send_message, message_id=message.id)
    return MessageRead.model_validate(message)


def _console_on() -> None:
    settings = get_settings()
    if settings.sms_provider != "console" or settings.environment == "production":
        raise NotFound("The console is only there when messages go to the console provider.")


_console_basic = HTTPBasic(
    auto_error=False,
    realm="Huifang console",
    description="Any user name, and an API key as the password.",
)
_console_bearer = HTTPBearer(auto_error=False)
CONSOLE_KEY = (
    "The console shows one company's messages: sign in with the company's API key as "
    "the password (any user name), or send 'Authorization: Bearer hf_…'."
)


def console_tenant(
    _: Annotated[None, Depends(_console_on)],
    session: SessionDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_console_bearer)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_console_basic)],
) -> Tenant:
    """The company whose key came as a bearer token or, from a browser's sign-in prompt, as
    the Basic password; a key in the address would end up in logs and histories."""
    key = bearer.credentials if bearer else basic.password if basic else ""
    api_key = tenancy.find_api_key(session=session, key=key) if key else None
    tenant = session.get(Tenant, api_key.tenant_id) if api_key else None
    if tenant is None:
        raise HTTPException(
            401,
            CONSOLE_KEY,
            headers={"WWW-Authenticate": 'Basic realm="Huifang console", charset="UTF-8"'},
        )
    return tenant


@public_router.get("/console", response_class=HTMLResponse, include_in_schema=False)
def console(
    session: SessionDep, tenant: Annotated[Tenant, Depends(console_tenant)]
) -> HTMLResponse:
    """What the console provider 'sent' for this company, as its customers would see it
    (numbers shown by their last four digits; never in production)."""
    rows = session.execute(
        select(Message, Customer.phone)
        .join(Customer, Customer.id == Message.customer_id)
        .where(Message.tenant_id == tenant.id, Message.provider == "console")
        .order_by(Message.id.desc())
        .limit(100)
    ).all()
    messages = [
        {
            "to": phones.masked(phone),
            "at": (m.sent_at or m.updated_at).strftime("%Y-%m-%d %H:%M"),
            "status": m.status,
            "text": m.text,
            "body": m.body,
            "media_urls": m.media_urls,
        }
        for m, phone in rows
    ]
    # Campaign pictures may live on any https address; everything else is the default.
    policy = page_directives(get_settings().public_url)
    policy["img-src"] += " https:"
    return HTMLResponse(
        render("messaging", "console.html", company=tenant.name, messages=messages),
        headers={"Content-Security-Policy": csp(policy)},
    )


@router.get("/replies", response_model=list[ReplyRead], tags=["replies"], responses=refusals(404))
def list_replies(
    session: SessionDep, tenant: TenantDep, state: str | None = None, customer_id: Id | None = None
) -> list[ReplyRead]:
    """Customers' replies, newest first; ``state=open`` is the inbox."""
    if customer_id is not None:
        customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    return [
        ReplyRead.model_validate(r)
        for r in inbound.list_replies(
            session=session, tenant_id=tenant.id, state=state, customer_id=customer_id
        )
    ]


@router.patch("/replies/{reply_id}", response_model=ReplyRead, tags=["replies"])
def update_reply(
    reply_id: Id, body: ReplyUpdate, session: SessionDep, tenant: TenantDep
) -> ReplyRead:
    """Work on an inbox item: take it (owner), say the customer heard back, resolve it."""
    return ReplyRead.model_validate(
        inbound.update_reply(
            session=session,
            tenant_id=tenant.id,
            reply_id=reply_id,
            now=utcnow(),
            **body.model_dump(exclude_unset=True),
        )
    )


@router.get("/service-recovery", response_model=RecoveryFigures, tags=["replies"])
def service_recovery(
    session: SessionDep, tenant: TenantDep, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> RecoveryFigures:
    """Complaints of the last ``days`` days: time to first response and to resolution."""
    until = utcnow()
    return RecoveryFigures.model_validate(
        recovery.recovery_figures(
            session=session, tenant_id=tenant.id, since=until - dt.timedelta(days=days), until=until
        )
    )


@router.post(
    "/replies/simulate",
    response_model=list[ReplyRead],
    status_code=201,
    tags=["replies"],
    responses=refusals(409),
)
def simulate_reply(body: ReplySimulate, session: SessionDep, tenant: TenantDep) -> list[ReplyRead]:
    """Pretend a customer replied (embedded mode or the console provider only)."""
    settings = get_settings()
    if not (settings.embedded or settings.sms_provider == "console"):
        raise Conflict(
            "Replies can only be simulated in embedded mode or with the console "
            "provider; real replies come through the provider's webhook."
        )
    received = inbound.take_reply(
        session,
        on_book=booking.book_from_reply,
        provider="console",
        tenant=tenant,
        phone=body.phone,
        text=body.text,
        provider_message_id=f"sim-{uuid.uuid4().hex}",
    )
    return [
        ReplyRead.model_validate(r) for r in inbound.replies(session=session, received=received)
    ]


@router.get("/keyword-rules", response_model=list[KeywordRuleRead], tags=["replies"])
def list_keyword_rules(session: SessionDep, tenant: TenantDep) -> list[KeywordRuleRead]:
    """The company's own reply keywords (checked before the built-in ones)."""
    return [
        KeywordRuleRead.model_validate(r)
        for r in inbound.list_keywords(session=session, tenant_id=tenant.id)
    ]


@router.post(
    "/keyword-rules",
    response_model=KeywordRuleRead,
    status_code=201,
    tags=["replies"],
    responses=refusals(409),
    dependencies=[key_may(Permission.SETTINGS)],
)
def add_keyword_rule(
    body: KeywordRuleCreate, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> KeywordRuleRead:
    return KeywordRuleRead.model_validate(
        inbound.add_keyword(
            session=session,
            tenant_id=tenant.id,
            route=body.route,
            kind=body.kind,
            value=body.value,
            now=utcnow(),
            actor=actor,
        )
    )


@router.delete(
    "/keyword-rules/{rule_id}",
    status_code=204,
    tags=["replies"],
    dependencies=[key_may(Permission.SETTINGS)],
)
def delete_keyword_rule(
    rule_id: Id, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> None:
    inbound.delete_keyword(session=session, tenant_id=tenant.id, rule_id=rule_id, actor=actor)
