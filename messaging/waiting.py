"""The office told about what waits: replies past the company's response target
(complaints against theirs) and a provider failing several messages in a quarter hour.
A scan of one company at a time, every minute (``tasks.scan_alerts``); each alert once."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerts import service
from alerts.events import who
from alerts.models import AlertChannel
from customers.models import Customer
from huifang import i18n
from huifang.db import as_utc
from messaging.models import FAILED, OPEN, InboundMessage, Message
from tenancy.models import Tenant

# Replies older than this are not chased by an alert: a company adding its first channel
# hears about today's backlog, not last year's.
WAITING_HORIZON = dt.timedelta(days=3)
FAILING_WINDOW = dt.timedelta(minutes=15)
FAILING_AT_LEAST = 3
SCAN_LIMIT = 50


def companies_listening(*, session: Session) -> list[int]:
    return list(
        session.scalars(
            select(AlertChannel.tenant_id)
            .where(AlertChannel.active.is_(True))
            .distinct()
            .order_by(AlertChannel.tenant_id)
        )
    )


def scan(*, session: Session, tenant_id: int, now: dt.datetime) -> int:
    """The periodic look at one company: replies waiting past the company's response target
    (complaints against theirs), and a provider that failed several messages in the last
    quarter hour. Returns the alerts raised."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        return 0
    raised = 0
    waiting = session.scalars(
        select(InboundMessage)
        .where(
            InboundMessage.tenant_id == tenant_id,
            InboundMessage.state == OPEN,
            InboundMessage.first_response_at.is_(None),
            InboundMessage.received_at >= now - WAITING_HORIZON,
            InboundMessage.received_at
            < now
            - dt.timedelta(
                minutes=min(tenant.reply_target_minutes, tenant.complaint_target_minutes)
            ),
        )
        .order_by(InboundMessage.received_at)
        .limit(SCAN_LIMIT)
    ).all()
    for reply in waiting:
        target = tenant.complaint_target_minutes if reply.complaint else tenant.reply_target_minutes
        received = as_utc(reply.received_at)
        assert received is not None
        if received > now - dt.timedelta(minutes=target):
            continue
        customer = session.get(Customer, reply.customer_id) if reply.customer_id else None
        waited = i18n.format_duration((now - received).total_seconds())
        kind = "投诉" if reply.complaint else "回复"
        made = service.raise_alert(
            session=session,
            tenant_id=tenant_id,
            event="reply.waiting",
            dedupe_key=f"waiting:{reply.id}",
            title=f"客户{kind}已等待 {waited}",
            text=f"{who(customer, reply.phone)}：{reply.body[:200]}\n（目标 {target} 分钟内回复）",
            link=service.office_link("/office/inbox"),
            facts={"reply_id": reply.id, "waited_minutes": int((now - received) // _MINUTE)},
        )
        raised += made is not None
    failed = (
        session.scalar(
            select(func.count(Message.id)).where(
                Message.tenant_id == tenant_id,
                Message.status == FAILED,
                Message.updated_at >= now - FAILING_WINDOW,
            )
        )
        or 0
    )
    if failed >= FAILING_AT_LEAST:
        made = service.raise_alert(
            session=session,
            tenant_id=tenant_id,
            event="provider.failing",
            dedupe_key=f"provider:{now:%Y%m%d%H}",
            title="短信发送失败增多",
            text=f"最近 15 分钟有 {failed} 条短信发送失败，请检查短信通道（余额、签名、模板）。",
            link=service.office_link("/office/settings"),
            facts={"failed": failed},
        )
        raised += made is not None
    return raised


_MINUTE = dt.timedelta(minutes=1)
