"""The office's reply threads: a customer's replies and our messages in one line, answered
from the console.

A thread is a customer who has replied: their replies (each with the routing decision
``messaging.keywords`` recorded on arrival, in the office's words) interleaved with every
message we sent them. An answer typed in the console is an ordinary outbox message: it is
checked first with ``compliance.preview`` so that one the gate would stop is not even
scheduled (the person is told why, in Chinese), and the gate decides again when it goes
out. Complaints are assigned to an office user, marked responded (the response clock
stops) and resolved, each with its time, and each change a person makes is audited.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from access import audit
from access.actors import Actor
from access.roles import Permission, may
from accounts import service as accounts
from accounts.models import User
from compliance import service as compliance
from compliance import wording
from compliance.models import DEFER, SEND
from customers import service as customers
from customers.models import Customer
from huifang.db import as_utc
from huifang.errors import Conflict, Invalid
from huifang.i18n import _
from messaging import inbound, keywords, sms_templates
from messaging.models import (
    HANDLED,
    OPEN,
    InboundMessage,
    KeywordRule,
    Message,
)
from messaging.service import schedule
from messaging.thread_schemas import (
    AnswerRead,
    ResponseClock,
    Routing,
    Thread,
    ThreadItem,
    ThreadSummary,
)
from tenancy.models import Tenant

ROUTE_LABELS = {
    keywords.OPT_OUT: "退订",
    keywords.OPT_IN: "恢复订阅",
    keywords.HELP: "询问帮助",
    keywords.BOOK: "预约",
    keywords.OTHER: "其他（等人工处理）",
}
STATUS_LABELS = {
    "scheduled": "待发送",
    "queued": "排队中",
    "sending": "发送中",
    "sent": "已发出",
    "delivered": "已送达",
    "undelivered": "未送达",
    "failed": "发送失败",
    "unknown": "结果未知",
    "deferred": "延后发送",
    "suppressed": "被拦截",
}
# Why a message did not go out, when the outbox (not the gate) decided it.
SEND_PROBLEMS = {
    "provider_refused": "短信通道拒收了这条短信（号码或内容有问题），请电话联系客户。",
    "retries_exhausted": "短信通道多次失败，这条没有发出，请稍后重发或电话联系客户。",
    "timeout_after_send": "短信通道没有回应，不确定客户是否收到；可在消息详情里重发。",
    "retry_backoff": "短信通道暂时出错，几分钟后自动重试。",
    "rate_limited": "发送量达到通道速率上限，一分钟后自动重试。",
    "provider_undelivered": "运营商未能送达（可能关机或停机）。",
    "provider_canceled": "短信在通道侧被取消，没有发出。",
    "carrier_quiet_hours": "运营商在其限定时段外拦下了这条营销短信。",
    "campaign_paused": "活动已暂停，这条没有发出。",
}
MAX_ANSWER = 500
THREAD_ITEMS = 200


class AnswerRefused(Conflict):
    """The gate would not let the answer go; ``detail`` says why in Chinese."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# --- clocks and words -------------------------------------------------------------------

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def typed_text(value: str, *, what: str) -> str:
    """Text a person typed, trimmed; refused (in Chinese) when no column can store it."""
    if _UNSTORABLE.search(value):
        raise Invalid(_("{what}里有无法保存的字符，请删掉后再提交。").format(what=what))
    return value.strip()


def clock(
    *, since: dt.datetime, responded_at: dt.datetime | None, target_minutes: int, now: dt.datetime
) -> ResponseClock:
    """The response clock of something that came in at ``since``."""
    start = as_utc(since)
    answered = as_utc(responded_at)
    assert start is not None
    due = start + dt.timedelta(minutes=target_minutes)
    end = answered if answered is not None else now
    return ResponseClock(
        since=start,
        target_minutes=target_minutes,
        due_at=due,
        responded_at=answered,
        minutes=max(0, int((end - start).total_seconds() // 60)),
        overdue=end > due,
    )


def target_for(tenant: Tenant, *, complaint: bool) -> int:
    """The company's response target in minutes: complaints have the shorter one."""
    return tenant.complaint_target_minutes if complaint else tenant.reply_target_minutes


def rule_label(rule: str | None, company_rules: dict[int, KeywordRule] | None = None) -> str:
    """The rule that routed a reply, as the office reads it."""
    if rule is None:
        return _("没有匹配的关键词")
    kind, _sep, value = rule.partition(":")
    if kind == "rating":
        return _("服务报告页的满意度评价（不满意）")
    if kind == "tenant":
        own = (company_rules or {}).get(int(value)) if value.isdigit() else None
        return (
            _("公司关键词“{value}”").format(value=own.value)
            if own is not None
            else _("公司关键词（已删除）")
        )
    if kind in keywords.ROUTES and value:
        return _("关键词“{value}”").format(value=value)
    return _("内置规则 {rule}").format(rule=rule)


def routing_of(
    reply: InboundMessage, company_rules: dict[int, KeywordRule] | None = None
) -> Routing:
    complaint = (
        _("；投诉词“{word}”").format(word=reply.complaint_rule.partition(":")[2])
        if reply.complaint and reply.complaint_rule
        else ""
    )
    return Routing(
        route=reply.route,
        route_label=_(ROUTE_LABELS.get(reply.route, reply.route)),
        rule=reply.rule,
        rule_label=rule_label(reply.rule, company_rules) + complaint,
        complaint=reply.complaint,
        complaint_rule=reply.complaint_rule,
        handled_automatically=reply.route not in (keywords.BOOK, keywords.OTHER),
    )


# --- reading ---------------------------------------------------------------------------


def list_threads(
    *,
    session: Session,
    tenant_id: int,
    open_only: bool = False,
    q: str | None = None,
    open_first: bool = False,
    limit: int = 50,
) -> list[ThreadSummary]:
    """Customers who replied, the latest reply first (``open_first``: those with replies
    waiting before the rest), with what is still open; ``q`` finds a name or a phone
    number's digits (one query)."""
    replies = (
        select(
            InboundMessage.customer_id.label("customer_id"),
            func.max(InboundMessage.received_at).label("last_at"),
            func.max(InboundMessage.id).label("last_id"),
            func.count().label("replies"),
            func.sum(case((InboundMessage.state == OPEN, 1), else_=0)).label("open"),
            func.sum(
                case(((InboundMessage.state == OPEN) & InboundMessage.complaint, 1), else_=0)
            ).label("complaints"),
        )
        .where(InboundMessage.tenant_id == tenant_id, InboundMessage.customer_id.is_not(None))
        .group_by(InboundMessage.customer_id)
        .subquery()
    )
    query = (
        select(replies, Customer.name, Customer.phone, InboundMessage.body)
        .join(Customer, Customer.id == replies.c.customer_id)
        .join(InboundMessage, InboundMessage.id == replies.c.last_id)
    )
    if open_only:
        query = query.where(replies.c.open > 0)
    words = " ".join((q or "").split())
    if words:
        digits = "".join(ch for ch in words if ch.isdigit())
        found = [Customer.name.contains(words, autoescape=True)]
        if digits:
            found.append(Customer.phone.contains(digits))
        query = query.where(or_(*found))
    order: list[Any] = [replies.c.last_at.desc(), replies.c.customer_id.desc()]
    if open_first:
        order.insert(0, case((replies.c.open > 0, 0), else_=1))
    rows = session.execute(query.order_by(*order).limit(limit))
    return [
        ThreadSummary(
            customer_id=row.customer_id,
            customer_name=row.name,
            phone=row.phone,
            last_reply_at=row.last_at,
            last_reply=row.body[:100],
            replies=row.replies,
            open_replies=int(row.open or 0),
            open_complaints=int(row.complaints or 0),
        )
        for row in rows
    ]


def open_replies(*, session: Session, tenant_id: int) -> int:
    """How many replies of known customers wait for a person."""
    return (
        session.scalar(
            select(func.count())
            .select_from(InboundMessage)
            .where(
                InboundMessage.tenant_id == tenant_id,
                InboundMessage.state == OPEN,
                InboundMessage.customer_id.is_not(None),
            )
        )
        or 0
    )


def status_label(status: str) -> str:
    """A message's status as the office reads it."""
    return _(STATUS_LABELS.get(status, status))


def problem(message: Message, timezone: str) -> str | None:
    """Why the message was held or stopped, in Chinese; None when nothing is wrong."""
    if message.status not in ("suppressed", "failed", "deferred", "undelivered", "unknown"):
        return None
    reason = message.status_reason
    if reason in SEND_PROBLEMS:
        return _(SEND_PROBLEMS[reason])
    return wording.reason_text(reason, not_before=message.due_at, timezone=timezone)


def _message_item(message: Message, customer: Customer) -> ThreadItem:
    return ThreadItem(
        direction="out",
        id=message.id,
        at=message.sent_at or message.created_at,
        body=message.text or message.body,
        category=message.category,
        source_type=message.source_type,
        status=message.status,
        status_label=status_label(message.status),
        status_reason=message.status_reason,
        reason_text=problem(message, customer.timezone),
    )


def thread(
    *,
    session: Session,
    tenant: Tenant,
    customer_id: int,
    now: dt.datetime,
    limit: int = THREAD_ITEMS,
) -> Thread:
    """A customer's replies and our messages, oldest first (the latest ``limit`` of each)."""
    customer = customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    replies = list(
        session.scalars(
            select(InboundMessage)
            .where(InboundMessage.tenant_id == tenant.id, InboundMessage.customer_id == customer.id)
            .order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
            .limit(limit)
        )
    )
    messages = list(
        session.scalars(
            select(Message)
            .where(Message.tenant_id == tenant.id, Message.customer_id == customer.id)
            .order_by(Message.id.desc())
            .limit(limit)
        )
    )
    own_rules = (
        {rule.id: rule for rule in inbound.list_keywords(session=session, tenant_id=tenant.id)}
        if any((r.rule or "").startswith("tenant:") for r in replies)
        else {}
    )
    items = [
        ThreadItem(
            direction="in",
            id=r.id,
            at=r.received_at,
            body=r.body,
            routing=routing_of(r, own_rules),
            state=r.state,
            assignee_id=r.assignee_id,
            owner=r.owner,
            assigned_at=r.assigned_at,
            first_response_at=r.first_response_at,
            resolved_at=r.resolved_at,
            resolution=r.resolution,
            clock=clock(
                since=r.received_at,
                responded_at=r.first_response_at,
                target_minutes=target_for(tenant, complaint=r.complaint),
                now=now,
            )
            if r.state == OPEN or r.complaint
            else None,
        )
        for r in replies
    ]
    items += [_message_item(m, customer) for m in messages]
    items.sort(key=lambda item: (as_utc(item.at), item.direction == "out", item.id))
    return Thread(
        customer_id=customer.id, customer_name=customer.name, phone=customer.phone, items=items
    )


# --- answering --------------------------------------------------------------------------


def before_answering(
    *, session: Session, tenant: Tenant, customer_id: int, now: dt.datetime, max_chars: int
) -> str | None:
    """What the gate would do with a service answer to the customer now, in Chinese, for
    the person about to type one: None when it would go straight out."""
    customer = customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    verdict = compliance.preview(
        session=session,
        tenant=tenant,
        customer=customer,
        category="service",
        body="您好",
        max_chars=max_chars,
        now=now,
    )
    if verdict.decision == SEND:
        return None
    if verdict.decision == DEFER:
        return wording.reason_text(
            verdict.reason, not_before=verdict.not_before, timezone=customer.timezone
        )
    return wording.reason_text(verdict.reason)


def answer(
    *,
    session: Session,
    tenant: Tenant,
    customer_id: int,
    body: str,
    now: dt.datetime,
    max_chars: int,
    reply_id: int | None = None,
    category: str = "service",
    request_id: str | None = None,
    actor: Actor | None = None,
) -> tuple[Message, AnswerRead]:
    """Answer a customer from the console: an outbox message, due now, through the gate.

    Refused with ``AnswerRefused`` (409, the reason in Chinese) when the gate would stop it
    now (opt-out; for an offer, no consent or the cap); quiet hours only delay it (the
    notice says until when). Answering a reply stops its clock and, unless it is a
    complaint (open until resolved), closes it. The caller queues the message once this
    commits (``messaging.send_now``).
    """
    if category not in ("service", "marketing"):
        raise Invalid("category must be service or marketing.")
    text = typed_text(body, what=_("回复内容"))
    if not text:
        raise Invalid(_("请写下要发给客户的内容。"))
    if len(text) > MAX_ANSWER:
        raise Invalid(_("回复请控制在{limit}字以内。").format(limit=MAX_ANSWER))
    customer = customers.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    reply = None
    if reply_id is not None:
        reply = inbound.get_reply(session=session, tenant_id=tenant.id, reply_id=reply_id)
        if reply.customer_id != customer.id:
            raise Invalid(_("这条回复不是这位客户发来的，请在对应客户的对话里回复。"))
    verdict = compliance.preview(
        session=session,
        tenant=tenant,
        customer=customer,
        category=category,  # type: ignore[arg-type]
        body=text,
        max_chars=max_chars,
        now=now,
    )
    if verdict.decision not in (SEND, DEFER):
        raise AnswerRefused(verdict.reason, wording.reason_text(verdict.reason))
    cause = request_id or uuid.uuid4().hex
    message, created = schedule(
        session=session,
        tenant=tenant,
        customer=customer,
        channel="sms",
        category=category,
        source_type="office_answer",
        source_id=cause,
        body=text,
        due_at=now,
        purpose=sms_templates.OFFICE_ANSWER,
        variables={"content": text},
    )
    if created:
        if reply is not None:
            reply.first_response_at = reply.first_response_at or now
            if not reply.complaint:  # answered is done; a complaint waits to be resolved
                reply.state = HANDLED
        audit.record(
            session,
            actor,
            "message.answered",
            f"customer:{customer.id}",
            {"message_id": message.id, "reply_id": reply_id, "category": category},
            tenant_id=tenant.id,
        )
        session.flush()
    if verdict.decision == DEFER:
        notice = wording.reason_text(
            verdict.reason, not_before=verdict.not_before, timezone=customer.timezone
        )
    else:
        notice = _("已交给短信通道发送。")
    return message, AnswerRead(
        message_id=message.id,
        status=message.status,
        due_at=message.due_at,
        decision=verdict.decision,
        notice=notice,
        created=created,
    )


# --- complaints and other open replies ---------------------------------------------------


def assignees(*, session: Session, tenant_id: int) -> list[User]:
    """The company's people who can take a reply: active users whose role handles the work."""
    return [
        user
        for user in accounts.list_users(session=session, tenant_id=tenant_id)
        if user.disabled_at is None and may(user.role, Permission.WORK)
    ]


def assign(
    *,
    session: Session,
    tenant_id: int,
    reply_id: int,
    assignee_id: int,
    now: dt.datetime,
    actor: Actor | None = None,
) -> InboundMessage:
    """Give a reply (a complaint) to an office user of the company to handle."""
    reply = inbound.get_reply(session=session, tenant_id=tenant_id, reply_id=reply_id)
    user = accounts.get_user(session=session, tenant_id=tenant_id, user_id=assignee_id)
    if user.disabled_at is not None or not may(user.role, Permission.WORK):
        raise Invalid(
            _("{name}不能处理回复（账号已停用或不是办公室人员），请选择其他同事。").format(
                name=user.name
            )
        )
    if reply.assignee_id == user.id:
        return reply
    previous = reply.assignee_id
    reply.assignee_id, reply.owner, reply.assigned_at = user.id, user.name[:100], now
    audit.record(
        session,
        actor,
        "reply.assigned",
        f"reply:{reply.id}",
        {"assignee_id": user.id, "name": user.name, "previous": previous},
        tenant_id=tenant_id,
    )
    session.flush()
    return reply


def mark_responded(
    *, session: Session, tenant_id: int, reply_id: int, now: dt.datetime, actor: Actor | None = None
) -> InboundMessage:
    """The customer has heard back (by phone, say): the response clock stops, once."""
    reply = inbound.get_reply(session=session, tenant_id=tenant_id, reply_id=reply_id)
    if reply.first_response_at is None:
        reply.first_response_at = now
        audit.record(session, actor, "reply.responded", f"reply:{reply.id}", tenant_id=tenant_id)
        session.flush()
    return reply


def resolve(
    *,
    session: Session,
    tenant_id: int,
    reply_id: int,
    resolution: str,
    now: dt.datetime,
    actor: Actor | None = None,
) -> InboundMessage:
    """Close a reply with how it ended (a resolution counts as a response if none came)."""
    text = typed_text(resolution, what=_("处理结果"))
    if not text:
        raise Invalid(_("请写一句处理结果，例如“已上门返工，客户满意”。"))
    reply = inbound.get_reply(session=session, tenant_id=tenant_id, reply_id=reply_id)
    if reply.state == HANDLED and reply.resolved_at is not None:
        raise Conflict(_("这条回复已经处理完毕；如需补充，请先重新打开。"))
    reply.resolution, reply.state = text[:2000], HANDLED
    reply.resolved_at = now
    reply.first_response_at = reply.first_response_at or now
    inbound.sync_hold(session=session, reply=reply, now=now)
    audit.record(
        session,
        actor,
        "reply.resolved",
        f"reply:{reply.id}",
        {"resolution": text[:200]},
        tenant_id=tenant_id,
    )
    session.flush()
    return reply


def reopen(
    *, session: Session, tenant_id: int, reply_id: int, now: dt.datetime, actor: Actor | None = None
) -> InboundMessage:
    """Open a resolved reply again (the customer was not satisfied after all)."""
    reply = inbound.get_reply(session=session, tenant_id=tenant_id, reply_id=reply_id)
    if reply.state == OPEN:
        return reply
    reply.state, reply.resolved_at = OPEN, None
    inbound.sync_hold(session=session, reply=reply, now=now)
    audit.record(session, actor, "reply.reopened", f"reply:{reply.id}", tenant_id=tenant_id)
    session.flush()
    return reply
