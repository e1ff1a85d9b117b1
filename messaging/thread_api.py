"""Routes of the office's reply threads (``messaging.threads``): read, answer, assign, resolve."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from huifang.db import utcnow
from huifang.deps import KeyActorDep, SessionDep, TenantDep
from huifang.fields import Id
from huifang.openapi import refusals
from messaging import threads
from messaging.providers import get_provider
from messaging.schemas import ReplyRead
from messaging.send_now import send_now
from messaging.thread_schemas import (
    AnswerCreate,
    AnswerRead,
    ReplyAssign,
    ReplyResolve,
    Thread,
    ThreadSummary,
)

router = APIRouter(tags=["replies"])


@router.get("/threads", response_model=list[ThreadSummary])
def list_threads(
    session: SessionDep,
    tenant: TenantDep,
    open: bool = False,
    q: Annotated[str | None, Query(max_length=50)] = None,
) -> list[ThreadSummary]:
    """Customers who replied, latest reply first (``open=true``: those with replies waiting;
    ``q``: a name or part of a phone number)."""
    return threads.list_threads(session=session, tenant_id=tenant.id, open_only=open, q=q)


@router.get("/threads/{customer_id}", response_model=Thread)
def read_thread(customer_id: Id, session: SessionDep, tenant: TenantDep) -> Thread:
    """A customer's replies, with the routing decision of each, and our messages, oldest first."""
    return threads.thread(session=session, tenant=tenant, customer_id=customer_id, now=utcnow())


@router.post(
    "/threads/{customer_id}/answers",
    response_model=AnswerRead,
    status_code=201,
    responses={
        200: {"description": "The same request_id again: the same message."},
        **refusals(409),
    },
)
def answer(
    customer_id: Id,
    body: AnswerCreate,
    response: Response,
    session: SessionDep,
    tenant: TenantDep,
    actor: KeyActorDep,
) -> AnswerRead:
    """Answer the customer: through the compliance gate like any message. 409 (the reason in
    Chinese) when the gate would stop it; quiet hours only delay it."""
    now = utcnow()
    message, read = threads.answer(
        session=session,
        tenant=tenant,
        customer_id=customer_id,
        body=body.body,
        now=now,
        max_chars=get_provider().capabilities.max_body_chars,
        reply_id=body.reply_id,
        category=body.category,
        request_id=body.request_id,
        actor=actor,
    )
    if read.created:
        send_now(session=session, message_ids=[message.id], now=now)
    else:
        response.status_code = 200
    return read


@router.post("/replies/{reply_id}/assign", response_model=ReplyRead)
def assign_reply(
    reply_id: Id, body: ReplyAssign, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> ReplyRead:
    """Give the reply (a complaint) to an office user to handle."""
    return ReplyRead.model_validate(
        threads.assign(
            session=session,
            tenant_id=tenant.id,
            reply_id=reply_id,
            assignee_id=body.assignee_id,
            now=utcnow(),
            actor=actor,
        )
    )


@router.post("/replies/{reply_id}/responded", response_model=ReplyRead)
def reply_responded(
    reply_id: Id, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> ReplyRead:
    """The customer has heard back (the first time is kept: the response clock stops)."""
    return ReplyRead.model_validate(
        threads.mark_responded(
            session=session, tenant_id=tenant.id, reply_id=reply_id, now=utcnow(), actor=actor
        )
    )


@router.post("/replies/{reply_id}/resolve", response_model=ReplyRead, responses=refusals(409))
def resolve_reply(
    reply_id: Id, body: ReplyResolve, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> ReplyRead:
    """Close the reply with how it ended."""
    return ReplyRead.model_validate(
        threads.resolve(
            session=session,
            tenant_id=tenant.id,
            reply_id=reply_id,
            resolution=body.resolution,
            now=utcnow(),
            actor=actor,
        )
    )


@router.post("/replies/{reply_id}/reopen", response_model=ReplyRead)
def reopen_reply(
    reply_id: Id, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> ReplyRead:
    """Open a resolved reply again."""
    return ReplyRead.model_validate(
        threads.reopen(
            session=session, tenant_id=tenant.id, reply_id=reply_id, now=utcnow(), actor=actor
        )
    )
