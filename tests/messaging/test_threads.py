"""Reply threads: replies and our messages in one line with the routing shown, answers from
the console through the gate (refusals in Chinese), complaints assigned, responded, resolved."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from access.actors import Actor
from access.models import AuditEntry
from access.roles import Role
from accounts import service as accounts
from bookings.service import book_from_reply
from compliance import service as compliance
from customers import service as customers
from huifang.errors import Conflict, Invalid
from messaging import inbound, threads
from messaging import service as outbox
from messaging.models import HANDLED, OPEN, Message
from tests.factories import make_customer

NOON_CN = dt.datetime(2026, 11, 23, 4, 0, tzinfo=dt.UTC)  # Monday 12:00 in Shanghai
NIGHT_CN = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)  # 23:00 in Shanghai


@pytest.fixture
def customer(session, account):
    return make_customer(session, account.tenant)


def _audit(session, tenant_id):
    return list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.tenant_id == tenant_id).order_by(AuditEntry.id)
        )
    )


def _reply(session, account, customer, text, sid, at=NOON_CN):
    received = inbound.receive(
        session=session,
        provider="console",
        provider_message_id=sid,
        on_book=book_from_reply,
        phone=customer.phone,
        text=text,
        tenant=account.tenant,
        now=at,
    )
    return inbound.replies(session=session, received=received)[0]


def test_a_thread_interleaves_replies_and_messages_with_the_routing_shown(
    session, account, customer
):
    report, _ = outbox.schedule(
        session=session,
        tenant=account.tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type="visit_report",
        source_id="1",
        body="您的保洁报告",
        due_at=NOON_CN - dt.timedelta(hours=1),
    )
    report.created_at = NOON_CN - dt.timedelta(hours=1)
    complaint = _reply(session, account, customer, "阿姨没擦干净，很失望", "c-1")
    own = inbound.add_keyword(
        session=session,
        tenant_id=account.tenant.id,
        route="help",
        kind="exact",
        value="怎么办",
        now=NOON_CN,
    )
    _reply(session, account, customer, "怎么办", "c-2", at=NOON_CN + dt.timedelta(minutes=5))

    found = threads.thread(
        session=session,
        tenant=account.tenant,
        customer_id=customer.id,
        now=NOON_CN + dt.timedelta(hours=3),
    )
    assert [item.direction for item in found.items][:2] == ["out", "in"]
    first_in = found.items[1]
    assert first_in.id == complaint.id and first_in.routing is not None
    assert first_in.routing.complaint and "没擦干净" in first_in.routing.rule_label
    assert first_in.routing.route_label.startswith("其他")
    assert first_in.clock is not None and first_in.clock.overdue  # 3 h against 2 h
    assert first_in.clock.minutes == 180 and first_in.clock.target_minutes == 120
    help_reply = next(i for i in found.items if i.direction == "in" and i.id != complaint.id)
    assert help_reply.routing is not None
    assert help_reply.routing.rule == f"tenant:{own.id}"
    assert help_reply.routing.rule_label == "公司关键词“怎么办”"
    assert help_reply.routing.handled_automatically
    # The help answer went out as our message, after the reply it answers.
    assert found.items[-1].direction == "out" and found.items[-1].category == "reply"

    [summary] = threads.list_threads(session=session, tenant_id=account.tenant.id)
    assert summary.customer_name == "王女士" and summary.replies == 2
    assert summary.open_complaints == 1 and summary.last_reply == "怎么办"
    assert (
        threads.list_threads(session=session, tenant_id=account.tenant.id, open_only=True)[
            0
        ].open_replies
        == 1
    )


def test_threads_are_found_by_name_or_phone_and_open_ones_come_first(session, account, customer):
    li = customers.create_customer(
        session=session, tenant=account.tenant, name="李先生", phone="13900139007"
    )
    waiting = _reply(session, account, customer, "地板没擦干净", "s-1")
    thanks = _reply(session, account, li, "谢谢，很满意", "s-2", at=NOON_CN + dt.timedelta(hours=1))
    thanks.state = HANDLED
    session.flush()
    tenant_id = account.tenant.id
    latest = threads.list_threads(session=session, tenant_id=tenant_id)
    assert [t.customer_name for t in latest] == ["李先生", "王女士"]
    assert latest[0].open_replies == 0
    first = threads.list_threads(session=session, tenant_id=tenant_id, open_first=True)
    assert [t.customer_name for t in first] == ["王女士", "李先生"]
    assert waiting.state == OPEN
    assert [
        t.customer_name
        for t in threads.list_threads(session=session, tenant_id=tenant_id, q="139 0013 9007")
    ] == ["李先生"]
    assert [
        t.customer_name
        for t in threads.list_threads(session=session, tenant_id=tenant_id, q=" 王 ")
    ] == ["王女士"]
    assert threads.list_threads(session=session, tenant_id=tenant_id, q="%") == []


def test_an_answer_goes_through_the_gate_and_stops_the_clock(session, account, customer):
    complaint = _reply(session, account, customer, "师傅迟到了一个小时", "c-3")
    clerk = accounts.create_user(
        session=session, tenant=account.tenant, role="office", name="客服小李", phone="13900139001"
    ).user
    message, read = threads.answer(
        session=session,
        tenant=account.tenant,
        customer_id=customer.id,
        body="非常抱歉，明天安排返工。",
        reply_id=complaint.id,
        now=NOON_CN,
        max_chars=500,
        request_id="form-0001",
        actor=accounts.actor_for(clerk),
    )
    assert read.created and read.decision == "send" and message.category == "service"
    assert message.source_type == "office_answer" and message.status == "scheduled"
    assert complaint.first_response_at == NOON_CN and complaint.state == OPEN
    again, twice = threads.answer(
        session=session,
        tenant=account.tenant,
        customer_id=customer.id,
        body="非常抱歉，明天安排返工。",
        reply_id=complaint.id,
        now=NOON_CN,
        max_chars=500,
        request_id="form-0001",
    )
    assert again.id == message.id and not twice.created
    assert (
        session.scalar(
            select(func.count()).select_from(Message).where(Message.source_type == "office_answer")
        )
        == 1
    )
    [entry] = [e for e in _audit(session, account.tenant.id) if e.action == "message.answered"]
    assert (entry.actor_kind, entry.actor_id, entry.actor_name) == ("user", clerk.id, "客服小李")
    assert entry.target == f"customer:{customer.id}"
    assert entry.detail["message_id"] == message.id


def test_quiet_hours_delay_an_answer_and_say_until_when(session, account, customer):
    question = _reply(session, account, customer, "明天几点到？", "q-1", at=NIGHT_CN)
    _, read = threads.answer(
        session=session,
        tenant=account.tenant,
        customer_id=customer.id,
        body="收到，明早联系您。",
        reply_id=question.id,
        now=NIGHT_CN,
        max_chars=500,
    )
    assert read.created and read.decision == "defer"
    assert question.state == HANDLED  # answered: no longer waiting
    assert "免打扰" in read.notice and "08:00" in read.notice


def test_the_gate_refuses_in_chinese_and_nothing_is_scheduled(session, account, customer):
    with pytest.raises(threads.AnswerRefused, match="同意") as no_consent:
        threads.answer(
            session=session,
            tenant=account.tenant,
            customer_id=customer.id,
            body="冬季保洁八折",
            category="marketing",
            now=NOON_CN,
            max_chars=500,
        )
    assert no_consent.value.reason == "no_consent" and no_consent.value.status_code == 409
    with pytest.raises(threads.AnswerRefused, match="【】"):
        threads.answer(
            session=session,
            tenant=account.tenant,
            customer_id=customer.id,
            body="【通知】明天上门",
            now=NOON_CN,
            max_chars=500,
        )
    compliance.opt_out(
        session=session,
        tenant=account.tenant,
        phone=customer.phone,
        reason="reply_opt_out",
        detail="T",
        now=NOON_CN,
    )
    with pytest.raises(threads.AnswerRefused, match="退订"):
        threads.answer(
            session=session,
            tenant=account.tenant,
            customer_id=customer.id,
            body="您好",
            now=NOON_CN,
            max_chars=500,
        )
    assert (
        session.scalar(
            select(func.count()).select_from(Message).where(Message.source_type == "office_answer")
        )
        == 0
    )


def test_a_complaint_is_assigned_responded_and_resolved_with_times(session, account, customer):
    complaint = _reply(session, account, customer, "地板没擦干净", "c-4")
    later = NOON_CN + dt.timedelta(minutes=30)
    clerk = accounts.create_user(
        session=session, tenant=account.tenant, role="office", name="客服小李", phone="13900139001"
    ).user
    field = accounts.create_user(
        session=session, tenant=account.tenant, role="staff", name="张阿姨", phone="13900139002"
    ).user
    with pytest.raises(Invalid, match="不能处理回复"):
        threads.assign(
            session=session,
            tenant_id=account.tenant.id,
            reply_id=complaint.id,
            assignee_id=field.id,
            now=later,
        )
    owner = Actor(
        kind="user", id=clerk.id, name="客服小李", tenant_id=account.tenant.id, role=Role.OFFICE
    )
    threads.assign(
        session=session,
        tenant_id=account.tenant.id,
        reply_id=complaint.id,
        assignee_id=clerk.id,
        now=later,
        actor=owner,
    )
    assert (complaint.assignee_id, complaint.owner, complaint.assigned_at) == (
        clerk.id,
        "客服小李",
        later,
    )
    threads.mark_responded(
        session=session,
        tenant_id=account.tenant.id,
        reply_id=complaint.id,
        now=later + dt.timedelta(minutes=5),
    )
    threads.mark_responded(
        session=session,
        tenant_id=account.tenant.id,
        reply_id=complaint.id,
        now=later + dt.timedelta(hours=5),
    )
    assert complaint.first_response_at == later + dt.timedelta(minutes=5)  # the first kept
    threads.resolve(
        session=session,
        tenant_id=account.tenant.id,
        reply_id=complaint.id,
        resolution="已返工，客户满意",
        now=later + dt.timedelta(hours=6),
    )
    assert complaint.state == HANDLED and complaint.resolved_at == later + dt.timedelta(hours=6)
    with pytest.raises(Conflict, match="处理完毕"):
        threads.resolve(
            session=session,
            tenant_id=account.tenant.id,
            reply_id=complaint.id,
            resolution="再次",
            now=later,
        )
    threads.reopen(session=session, tenant_id=account.tenant.id, reply_id=complaint.id, now=later)
    assert complaint.state == OPEN and complaint.resolved_at is None
    entries = [e for e in _audit(session, account.tenant.id) if e.action.startswith("reply.")]
    assert [e.action for e in entries] == [
        "reply.assigned",
        "reply.responded",
        "reply.resolved",
        "reply.reopened",
    ]
    assert entries[0].actor_name == "客服小李" and entries[1].actor_kind == "system"


def test_the_thread_api_answers_and_refuses_with_a_sentence(
    client, session, account, other_account, customer
):
    complaint = _reply(session, account, customer, "很不满意，阿姨迟到", "c-5")
    headers = account.headers
    listed = client.get("/v1/threads", headers=headers)
    assert listed.status_code == 200 and listed.json()[0]["customer_id"] == customer.id
    assert (
        client.get("/v1/threads", headers=headers, params={"q": "王女"}).json()[0]["customer_id"]
        == customer.id
    )
    assert client.get("/v1/threads", headers=headers, params={"q": "赵"}).json() == []
    thread = client.get(f"/v1/threads/{customer.id}", headers=headers).json()
    assert thread["items"][0]["routing"]["complaint"] is True
    body = {"body": "抱歉，马上安排。", "reply_id": complaint.id, "request_id": "req-00001"}
    first = client.post(f"/v1/threads/{customer.id}/answers", headers=headers, json=body)
    assert first.status_code == 201, first.text
    assert first.json()["decision"] in ("send", "defer")
    again = client.post(f"/v1/threads/{customer.id}/answers", headers=headers, json=body)
    assert again.status_code == 200 and again.json()["message_id"] == first.json()["message_id"]
    refused = client.post(
        f"/v1/threads/{customer.id}/answers",
        headers=headers,
        json={"body": "优惠", "category": "marketing"},
    )
    assert refused.status_code == 409 and "同意" in refused.json()["detail"]
    with pytest.raises(Invalid, match="无法保存"):
        threads.answer(
            session=session,
            tenant=account.tenant,
            customer_id=customer.id,
            body="你好\x00",
            now=NOON_CN,
            max_chars=500,
        )
    empty = client.post(f"/v1/threads/{customer.id}/answers", headers=headers, json={"body": "   "})
    assert empty.status_code == 422 and "内容" in empty.json()["detail"]
    clerk = accounts.create_user(
        session=session, tenant=account.tenant, role="office", name="小王", phone="13900139003"
    ).user
    assigned = client.post(
        f"/v1/replies/{complaint.id}/assign", headers=headers, json={"assignee_id": clerk.id}
    )
    assert assigned.status_code == 200 and assigned.json()["owner"] == "小王"
    assert (
        client.post(
            f"/v1/replies/{complaint.id}/assign",
            headers=other_account.headers,
            json={"assignee_id": clerk.id},
        ).status_code
        == 404
    )
    [entry] = [e for e in _audit(session, account.tenant.id) if e.action == "reply.assigned"]
    assert entry.actor_kind == "api_key"  # who did it through the API
    resolved = client.post(
        f"/v1/replies/{complaint.id}/resolve", headers=headers, json={"resolution": "已处理"}
    )
    assert resolved.json()["state"] == "handled" and resolved.json()["resolved_at"]
    assert (
        client.post(
            f"/v1/replies/{complaint.id}/resolve", headers=headers, json={"resolution": "again"}
        ).status_code
        == 409
    )
    # Another company sees nothing of it.
    assert (
        client.get(f"/v1/threads/{customer.id}", headers=other_account.headers).status_code == 404
    )
    assert client.get("/v1/threads", headers=other_account.headers).json() == []


def test_a_message_held_or_stopped_says_why_in_the_thread(session, account, customer):
    _reply(session, account, customer, "好的", "c-6")
    stopped, _ = outbox.schedule(
        session=session,
        tenant=account.tenant,
        customer=customer,
        channel="sms",
        category="marketing",
        source_type="campaign",
        source_id="1",
        body="优惠",
        due_at=NOON_CN,
    )
    refused, _ = outbox.schedule(
        session=session,
        tenant=account.tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type="visit_report",
        source_id="2",
        body="报告",
        due_at=NOON_CN,
    )
    outbox.transition(
        session=session,
        message=stopped,
        status="suppressed",
        now=NOON_CN,
        reason="no_consent",
        detail="No recorded consent.",
    )
    for status in ("queued", "sending"):
        outbox.transition(session=session, message=refused, status=status, now=NOON_CN)
    outbox.transition(
        session=session,
        message=refused,
        status="failed",
        now=NOON_CN,
        reason="provider_refused",
        detail="21211 invalid number",
    )
    found = threads.thread(
        session=session, tenant=account.tenant, customer_id=customer.id, now=NOON_CN
    )
    by_id = {item.id: item for item in found.items if item.direction == "out"}
    assert by_id[stopped.id].status_label == "被拦截"
    assert "同意" in (by_id[stopped.id].reason_text or "")
    assert by_id[refused.id].status_label == "发送失败"
    assert "拒收" in (by_id[refused.id].reason_text or "")


def test_before_answering_says_what_the_gate_would_do(session, account, customer):
    def ahead(now):
        return threads.before_answering(
            session=session, tenant=account.tenant, customer_id=customer.id, now=now, max_chars=500
        )

    assert ahead(NOON_CN) is None
    assert "免打扰" in ahead(NIGHT_CN) and "08:00" in ahead(NIGHT_CN)
    compliance.opt_out(
        session=session,
        tenant=account.tenant,
        phone=customer.phone,
        reason="reply_opt_out",
        detail="T",
        now=NOON_CN,
    )
    assert "客户已退订" in ahead(NOON_CN)
