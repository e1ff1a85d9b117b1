"""The settings screen's keyword tester routes a typed reply as a real reply is routed."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from bookings.service import book_from_reply
from customers import service as customers
from messaging import inbound, keyword_tester, keywords
from messaging.models import InboundMessage
from tests.messaging.test_keywords import CASES

NOW = dt.datetime(2026, 5, 1, 2, tzinfo=dt.UTC)


def test_the_corpus_routes_as_the_keywords_do(session, account) -> None:
    for _, text, expected, complaint, _ in CASES:
        found = keyword_tester.test_reply(session=session, tenant=account.tenant, text=text)
        assert (found.route, found.complaint) == (expected, complaint), text
        assert found.route_label and found.what_happens


@pytest.mark.parametrize(
    "text", ["T", "退订", "1", "帮我约下周三", "阿姨把花瓶打碎了", "谢谢", "我的退"]
)
def test_the_tester_agrees_with_a_real_reply(session, account, text) -> None:
    """With a company rule in play: the route a received reply is recorded with."""
    tenant = account.tenant
    rule = inbound.add_keyword(
        session=session,
        tenant_id=tenant.id,
        route="opt_out",
        kind="pattern",
        value="我的退",
        now=NOW,
    )
    person = customers.create_customer(
        session=session, tenant=tenant, name="试", phone="13900000001"
    )
    tested = keyword_tester.test_reply(session=session, tenant=tenant, text=text)
    received = inbound.receive(
        on_book=book_from_reply,
        session=session,
        provider="console",
        provider_message_id=f"t-{uuid.uuid4().hex}",
        phone=person.phone,
        text=text,
        tenant=tenant,
        now=NOW,
    )
    reply = inbound.replies(session=session, received=received)[0]
    assert (tested.route, tested.rule, tested.complaint) == (
        reply.route,
        reply.rule,
        reply.complaint,
    )
    if text == "我的退":
        assert tested.rule == f"tenant:{rule.id}" and "公司自定义规则" in tested.rule_label


def test_a_proposed_rule_is_tried_without_being_saved(session, account) -> None:
    tenant = account.tenant
    before = keyword_tester.test_reply(session=session, tenant=tenant, text="不需要了")
    proposed = keywords.Rule(name="x", route="opt_out", kind="exact", value="不需要了")
    after = keyword_tester.test_reply(
        session=session, tenant=tenant, text="不需要了", proposed=proposed
    )
    assert after.route == "opt_out" and after.rule == "proposed"
    assert "正在编辑的规则" in after.rule_label and after.answer and "退订" in after.answer
    assert before.rule != "proposed"
    assert inbound.list_keywords(session=session, tenant_id=tenant.id) == []
    assert session.scalar(select(func.count()).select_from(InboundMessage)) == 0


def test_keyword_test_by_api(client, account) -> None:
    answer = client.post(
        "/v1/keyword-rules/test", headers=account.headers, json={"text": "帮我约下周三上午"}
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["route"] == "book" and body["route_label"] == "预约"
    assert body["answer"] and "预约" in body["what_happens"]
    tried = client.post(
        "/v1/keyword-rules/test",
        headers=account.headers,
        json={
            "text": "别烦我",
            "proposed": {"route": "opt_out", "kind": "exact", "value": "别烦我"},
        },
    )
    assert tried.json()["route"] == "opt_out" and tried.json()["rule"] == "proposed"
    complaint = client.post(
        "/v1/keyword-rules/test",
        headers=account.headers,
        json={"text": "师傅迟到了两个小时，太差了"},
    ).json()
    assert complaint["complaint"] is True and "投诉" in complaint["what_happens"]
    bad = client.post(
        "/v1/keyword-rules/test",
        headers=account.headers,
        json={"text": "x", "proposed": {"route": "opt_out", "kind": "pattern", "value": "* *"}},
    )
    assert bad.status_code == 422 and bad.json()["detail"]
    assert (
        client.post(
            "/v1/keyword-rules/test", headers=account.headers, json={"text": ""}
        ).status_code
        == 422
    )
