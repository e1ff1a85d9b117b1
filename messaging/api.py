from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from customers import service as customers
from customers.models import Customer
from huifang.db import utcnow
from huifang.deps import SessionDep, TenantDep
from huifang.errors import NotFound
from huifang.settings import get_settings
from huifang.templating import render
from huifang.worker import enqueue
from messaging import service, tasks
from messaging.models import Message
from messaging.schemas import MessageRead

router = APIRouter(tags=["messages"])
public_router = APIRouter(tags=["console"])


@router.get("/messages", response_model=list[MessageRead])
def list_messages(session: SessionDep, tenant: TenantDep, customer_id: int | None = None
                  ) -> list[MessageRead]:
    """Messages, newest first, each with its status history."""
    if customer_id is not None:
        customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    return [MessageRead.model_validate(m) for m in service.list_messages(
        session=session, tenant_id=tenant.id, customer_id=customer_id)]


@router.get("/messages/{message_id}", response_model=MessageRead)
def read_message(message_id: int, session: SessionDep, tenant: TenantDep) -> MessageRead:
    return MessageRead.model_validate(
        service.get_message(session=session, tenant_id=tenant.id, message_id=message_id))


@router.post("/messages/{message_id}/retry", response_model=MessageRead)
def retry_message(message_id: int, session: SessionDep, tenant: TenantDep) -> MessageRead:
    """Send an ``unknown`` message again: an operator's call, since it may arrive twice."""
    message = service.retry(session=session, tenant_id=tenant.id, message_id=message_id,
                            now=utcnow())
    enqueue(session, tasks.send_message, message_id=message.id)
    return MessageRead.model_validate(message)


@public_router.get("/console", response_class=HTMLResponse, include_in_schema=False)
def console(session: SessionDep) -> HTMLResponse:
    """What the console provider 'sent', as the customers would see it (never in production)."""
    settings = get_settings()
    if settings.sms_provider != "console" or settings.environment == "production":
        raise NotFound("The console is only there when messages go to the console provider.")
    rows = session.execute(
        select(Message, Customer.phone).join(Customer, Customer.id == Message.customer_id)
        .where(Message.provider == "console").order_by(Message.id.desc()).limit(100)).all()
    messages = [{"to": phone, "at": (m.sent_at or m.updated_at).strftime("%Y-%m-%d %H:%M"),
                 "status": m.status, "text": m.text, "body": m.body, "media_urls": m.media_urls}
                for m, phone in rows]
    return HTMLResponse(render("messaging", "console.html", messages=messages))
