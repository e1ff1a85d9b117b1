"""Customers' replies: webhooks (Twilio signed, Aliyun per company), routing, acting once.

Twilio signatures are computed by the official ``twilio`` package's RequestValidator: it is
the reference our verifier must agree with.
"""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from twilio.request_validator import RequestValidator
from typer.testing import CliRunner

from compliance import service as compliance
from customers import service as customers
from huifang import cli
from huifang.settings import get_settings
from messaging import inbound
from messaging import service as outbox
from messaging.models import InboundMessage, Message
from messaging.providers.base import Provider, SendResult
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.factories import make_consent, make_customer
from tests.messaging import webhook_payloads as payloads

TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC_URL = "https://hf.example.cn"
PATH = "/hooks/twilio/inbound"
NOON_CN = dt.datetime(2026, 11, 23, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai


@pytest.fixture(autouse=True)
def _twilio_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "twilio_auth_token", TOKEN)
    monkeypatch.setattr(get_settings(), "public_url", PUBLIC_URL)


@pytest.fixture
def hooks(app):
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def customer(session, account):
    return make_customer(session, account.tenant)


def _form(body: str, sid: str, sender: str = "+8613800138000") -> dict[str, str]:
    """Twilio's inbound payload (fixtures/twilio_inbound_stop.txt) with this text."""
    return payloads.form(
        "twilio_inbound_stop.txt",
        Body=body,
        MessageSid=sid,
        SmsSid=sid,
        SmsMessageSid=sid,
        From=sender,
    )


def _post(client, form, *, url=PUBLIC_URL + PATH, signature=None, sign=None):
    if signature is None:
        signature = RequestValidator(TOKEN).compute_signature(url, sign or form)
    headers = {} if signature == "" else {"X-Twilio-Signature": signature}
    return client.post(PATH, data=form, headers=headers)


def _replies(session, tenant_id=None):
    session.expire_all()
    query = select(InboundMessage).order_by(InboundMessage.id)
    if tenant_id is not None:
        query = query.where(InboundMessage.tenant_id == tenant_id)
    return list(session.scalars(query))


def _answers(session, customer):
    session.expire_all()
    return list(
        session.scalars(
            select(Message)
            .where(Message.customer_id == customer.id, Message.category == "reply")
            .order_by(Message.id)
        )
    )


class Accepts(Provider):
    name = "console"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, message):
        self.sent.append(message.body)
        return SendResult(provider_message_id=f"c{len(self.sent)}")


def _send_all(session, now=NOON_CN) -> Accepts:
    provider = Accepts()
    ids = outbox.claim_due(session=session, now=now)
    for message_id in ids + list(
        session.scalars(select(Message.id).where(Message.status == "queued"))
    ):
        if outbox.claim_for_send(session=session, message_id=message_id, now=now):
            outbox.deliver(session=session, message_id=message_id, provider=provider, now=now)
    return provider


# --- Twilio ----------------------------------------------------------------------------------


def test_stop_is_committed_before_the_answer_and_confirmed_once(hooks, session, account, customer):
    answer = _post(hooks, _form("STOP", "SM1"))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    assert "<Response>" in answer.text
    assert (
        compliance.active_suppression(session=session, tenant=account.tenant, phone=customer.phone)
        is not None
    )
    [reply] = _replies(session)
    assert (reply.route, reply.rule, reply.state) == ("opt_out", reply.rule, "handled")
    assert reply.rule
    [confirmation] = _answers(session, customer)
    assert confirmation.status == "queued"  # enqueued when the request committed
    # A second STOP (a new message) is recorded, but sends no second confirmation.
    assert _post(hooks, _form("stop", "SM2")).status_code == 200
    assert len(_replies(session)) == 2
    assert len(_answers(session, customer)) == 1
    # The confirmation goes out although the number is now suppressed; marketing does not.
    sent = _send_all(session)
    # In the customer's language (the company's: Chinese), whatever the keyword's alphabet.
    assert len(sent.sent) == 1 and "订阅" in sent.sent[0]


def test_a_stop_replayed_as_twilio_posts_it_is_taken(hooks, session, account, customer):
    fields = payloads.form("twilio_inbound_stop.txt")  # blank fields are signed too
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL + PATH, fields)
    answer = hooks.post(
        PATH,
        content=payloads.raw("twilio_inbound_stop.txt"),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert answer.status_code == 200, answer.text
    assert (
        compliance.active_suppression(session=session, tenant=account.tenant, phone=customer.phone)
        is not None
    )
    [reply] = _replies(session)
    assert (reply.provider_message_id, reply.route) == (fields["MessageSid"], "opt_out")


def test_the_same_signed_request_twice_has_one_effect(hooks, session, account, customer):
    form = _form("T", "SM-dup")
    assert _post(hooks, form).status_code == 200
    assert _post(hooks, form).status_code == 200
    assert len(_replies(session)) == 1
    assert len(_answers(session, customer)) == 1


@pytest.mark.parametrize("how", ["tampered", "scheme", "missing", "garbage"])
def test_forged_replies_are_refused(hooks, session, account, customer, how):
    form = _form("STOP", "SM-forged")
    if how == "tampered":  # signed for another text
        answer = _post(hooks, form, sign=_form("hello", "SM-forged"))
    elif how == "scheme":  # signed for http:// while Twilio was given https://
        answer = _post(hooks, form, url=PUBLIC_URL.replace("https", "http") + PATH)
    elif how == "missing":
        answer = _post(hooks, form, signature="")
    else:
        answer = _post(hooks, form, signature="bm90IGEgc2lnbmF0dXJl")
    assert answer.status_code == 403
    assert "Twilio" in answer.json()["detail"] or "X-Twilio-Signature" in answer.json()["detail"]
    assert _replies(session) == []
    assert (
        compliance.active_suppression(session=session, tenant=account.tenant, phone=customer.phone)
        is None
    )


def test_start_restores_and_records_consent(hooks, session, account, customer):
    _post(hooks, _form("退订", "SM-a"))
    _post(hooks, _form("ＳＴＡＲＴ", "SM-b"))  # full-width, from a Chinese keyboard
    assert (
        compliance.active_suppression(session=session, tenant=account.tenant, phone=customer.phone)
        is None
    )
    consent = compliance.active_consent(
        session=session, tenant_id=account.tenant.id, phone=customer.phone
    )
    assert consent is not None and consent.source == "reply"
    assert [m.source_type for m in _answers(session, customer)] == ["opt_out_reply", "opt_in_reply"]


def test_booking_and_complaints_land_in_the_inbox(hooks, session, account, customer):
    _post(hooks, _form("1", "SM-book"))
    _post(hooks, _form("阿姨今天没擦干净，厨房还是油", "SM-complaint"))
    book, complaint = _replies(session)
    assert (book.route, book.state) == ("book", "open")
    assert complaint.route == "other" and complaint.complaint and complaint.state == "open"
    assert [m.source_type for m in _answers(session, customer)] == ["book_reply"]


def test_a_reply_goes_to_the_company_that_last_wrote_and_stop_to_all(
    hooks, session, account, other_account
):
    mine = customers.create_customer(
        session=session, tenant=account.tenant, name="王女士", phone="13800138000"
    )
    theirs = customers.create_customer(
        session=session, tenant=other_account.tenant, name="王女士", phone="13800138000"
    )
    for tenant, person, at in (
        (account.tenant, mine, NOON_CN),
        (other_account.tenant, theirs, NOON_CN + dt.timedelta(hours=1)),
    ):
        message, _ = outbox.schedule(
            session=session,
            tenant=tenant,
            customer=person,
            channel="sms",
            category="service",
            source_type="visit_report",
            source_id="v1",
            body="服务报告已生成",
            due_at=at,
        )
        outbox.claim_due(session=session, now=at)
        outbox.claim_for_send(session=session, message_id=message.id, now=at)
        outbox.deliver(session=session, message_id=message.id, provider=Accepts(), now=at)
    _post(hooks, _form("1", "SM-x"))
    assert [r.tenant_id for r in _replies(session)] == [other_account.tenant.id]
    _post(hooks, _form("STOP", "SM-y"))
    for tenant in (account.tenant, other_account.tenant):
        assert (
            compliance.active_suppression(session=session, tenant=tenant, phone="+8613800138000")
            is not None
        )


def test_a_reply_from_an_unknown_number_is_kept(hooks, session, account):
    assert _post(hooks, _form("你好", "SM-u", sender="+8613900000000")).status_code == 200
    [reply] = _replies(session)
    assert reply.tenant_id is None and reply.customer_id is None


# --- Aliyun SmsUp ----------------------------------------------------------------------------


def _smsup(content: str, sequence: int) -> dict[str, object]:
    """An item of Aliyun's SmsUp push (fixtures/aliyun_smsup.json) with this text."""
    return payloads.item("aliyun_smsup.json", content=content, sequence_id=sequence)


def test_aliyun_replies_arrive_on_the_company_path(
    hooks, session, account, other_account, customer
):
    path = f"/hooks/aliyun/{tenancy.hook_key(account.tenant.id)}/reply"
    body = payloads.raw("aliyun_smsup.json")  # "T", then a booking request
    for _ in range(2):  # Aliyun repeats pushes
        answer = hooks.post(path, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200 and answer.json() == {"code": 0, "msg": "成功"}
    replies = _replies(session)
    assert [(r.tenant_id, r.route) for r in replies] == [
        (account.tenant.id, "opt_out"),
        (account.tenant.id, "book"),
    ]
    assert (
        compliance.active_suppression(session=session, tenant=account.tenant, phone=customer.phone)
        is not None
    )
    assert (
        hooks.post(
            f"/hooks/aliyun/{account.tenant.id}.{'f' * 32}/reply",
            content=body,
            headers={"Content-Type": "application/json"},
        ).status_code
        == 404
    )


# --- the dashboard API and the CLI -----------------------------------------------------------


def test_simulated_replies_and_the_inbox(client, session, account, customer):
    answer = client.post(
        "/v1/replies/simulate",
        headers=account.headers,
        json={"phone": "13800138000", "text": "迟到了一个小时，很不满意"},
    )
    assert answer.status_code == 201, answer.text
    [reply] = answer.json()
    assert reply["route"] == "other" and reply["complaint"] is True
    inbox = client.get("/v1/replies?state=open", headers=account.headers).json()
    assert [r["id"] for r in inbox] == [reply["id"]]
    done = client.patch(
        f"/v1/replies/{reply['id']}", headers=account.headers, json={"state": "handled"}
    )
    assert done.status_code == 200 and done.json()["state"] == "handled"
    assert client.get("/v1/replies?state=open", headers=account.headers).json() == []
    bad = client.post(
        "/v1/replies/simulate", headers=account.headers, json={"phone": "not a phone", "text": "T"}
    )
    assert bad.status_code == 422


def test_simulation_is_refused_with_a_real_provider(client, account, monkeypatch):
    monkeypatch.setattr(get_settings(), "redis_url", "redis://127.0.0.1:6379/0")
    monkeypatch.setattr(get_settings(), "sms_provider", "twilio")
    answer = client.post(
        "/v1/replies/simulate", headers=account.headers, json={"phone": "13800138000", "text": "T"}
    )
    assert answer.status_code == 409 and "webhook" in answer.json()["detail"]


def test_company_keywords_win_and_are_checked(client, session, account, customer):
    made = client.post(
        "/v1/keyword-rules", headers=account.headers, json={"route": "opt_out", "value": "不要了"}
    )
    assert made.status_code == 201, made.text
    again = client.post(
        "/v1/keyword-rules", headers=account.headers, json={"route": "opt_out", "value": "不要了"}
    )
    assert again.status_code == 409
    empty = client.post(
        "/v1/keyword-rules", headers=account.headers, json={"route": "opt_out", "value": "  "}
    )
    assert empty.status_code == 422
    answer = client.post(
        "/v1/replies/simulate",
        headers=account.headers,
        json={"phone": "13800138000", "text": "不要了"},
    )
    assert answer.json()[0]["route"] == "opt_out"
    assert answer.json()[0]["rule"] == f"tenant:{made.json()['id']}"
    assert (
        client.delete(f"/v1/keyword-rules/{made.json()['id']}", headers=account.headers).status_code
        == 204
    )
    assert client.get("/v1/keyword-rules", headers=account.headers).json() == []


def test_cli_reply_routes_and_reports(committed_db, monkeypatch):
    monkeypatch.setattr(cli, "_migrate", lambda: None)
    with committed_db.session() as session:
        tenant = tenancy.create_tenant(session=session, name="命令行家政", signature="命令行家政")
        customers.create_customer(
            session=session, tenant=tenant, name="李先生", phone="13700137000"
        )
        tenant_id = tenant.id
    try:
        result = CliRunner().invoke(
            cli.app, ["reply", "13700137000", "Ｔ。", "--tenant", str(tenant_id)]
        )
        assert result.exit_code == 0, result.output
        assert "routed opt_out" in result.output and "answer is scheduled" in result.output
        with committed_db.session() as session:
            rows = inbound.list_replies(session=session, tenant_id=tenant_id)
            assert [r.route for r in rows] == ["opt_out"]
    finally:  # committed rows: gone, so that no other test counts them
        with committed_db.session() as session:
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))


def test_a_complaint_is_owned_answered_and_resolved_with_its_clock(
    client, session, account, customer
):
    answer = client.post(
        "/v1/replies/simulate",
        headers=account.headers,
        json={"phone": "13800138000", "text": "师傅迟到了，我要投诉"},
    )
    complaint = answer.json()[0]
    assert complaint["complaint"] is True and complaint["state"] == "open"
    path = f"/v1/replies/{complaint['id']}"
    taken = client.patch(
        path, headers=account.headers, json={"owner": "客服小张", "responded": True}
    )
    assert taken.json()["owner"] == "客服小张" and taken.json()["first_response_at"]
    done = client.patch(
        path, headers=account.headers, json={"resolution": "上门返工并赠送一次除螨"}
    )
    assert done.json()["state"] == "handled" and done.json()["resolved_at"]
    figures = client.get("/v1/service-recovery?days=7", headers=account.headers).json()
    assert (figures["complaints"], figures["responded"], figures["resolved"], figures["open"]) == (
        1,
        1,
        1,
        0,
    )
    assert figures["median_minutes_to_first_response"] is not None
    assert figures["rebooked"] == 0
    client.post(
        "/v1/replies/simulate", headers=account.headers, json={"phone": "13800138000", "text": "1"}
    )  # books again afterwards
    assert client.get("/v1/service-recovery", headers=account.headers).json()["rebooked"] == 1
    assert client.get("/v1/service-recovery?days=0", headers=account.headers).status_code == 422


# --- opt-ins from customers who already consented; pushes decided item by item ------------


@pytest.mark.parametrize("word", ["START", "UNSTOP", "订阅", "重新订阅", "恢复订阅"])
def test_an_opt_in_from_a_consenting_customer_is_kept_as_a_reply(
    client, hooks, session, account, customer, word
):
    given = client.post(
        f"/v1/customers/{customer.id}/consents",
        headers=account.headers,
        json={"source": "in_person", "evidence": "signed"},
    )
    assert given.status_code == 201, given.text
    answer = _post(hooks, _form(word, f"SM-in-{word}"))
    assert answer.status_code == 200, answer.text
    listed = client.get("/v1/replies", headers=account.headers).json()
    assert [(r["body"], r["route"]) for r in listed] == [(word, "opt_in")]
    # The ledger keeps the consent it had, with its original evidence; nothing to confirm.
    consent = compliance.active_consent(
        session=session, tenant_id=account.tenant.id, phone=customer.phone
    )
    assert consent is not None and (consent.source, consent.evidence) == ("in_person", "signed")
    assert _answers(session, customer) == []


def test_one_aliyun_push_keeps_every_opt_out_whatever_its_neighbours_do(
    hooks, session, account, monkeypatch
):
    consenting = make_customer(session, account.tenant, name="甲", phone="13910000033")
    make_consent(session, account.tenant, consenting, now=NOON_CN)
    leaving = customers.create_customer(
        session=session, tenant=account.tenant, name="乙", phone="13910000044"
    )
    path = f"/hooks/aliyun/{tenancy.hook_key(account.tenant.id)}/reply"

    def item(phone, content, sequence):
        return {**_smsup(content, sequence), "phone_number": phone}

    push = [item("13910000033", "START", 301), item("13910000044", "T", 302)]
    answer = hooks.post(path, json=push)
    assert answer.status_code == 200 and answer.json()["code"] == 0, answer.text
    assert (
        compliance.active_suppression(session=session, tenant=account.tenant, phone=leaving.phone)
        is not None
    )
    assert [r.route for r in _replies(session)] == ["opt_in", "opt_out"]

    # An item that fails for a reason of ours: its neighbours' opt-outs are still committed,
    # and the push asks Aliyun to retry, which takes the failed item once it works.
    real_receive = inbound.receive

    def broken_for_one(**fields):
        if fields["provider_message_id"] == "401":
            raise RuntimeError("a bug")
        return real_receive(**fields)

    monkeypatch.setattr(inbound, "receive", broken_for_one)
    third = customers.create_customer(
        session=session, tenant=account.tenant, name="丙", phone="13910000055"
    )
    push = [
        item("13910000055", "帮我约下周", 401),
        item("13910000066", "hi", 402),
        item("13910000055", "TD", 403),
    ]
    customers.create_customer(
        session=session, tenant=account.tenant, name="丁", phone="13910000066"
    )
    answer = hooks.post(path, json=push)
    assert answer.status_code == 200 and answer.json()["code"] != 0
    assert (
        compliance.active_suppression(session=session, tenant=account.tenant, phone=third.phone)
        is not None
    )
    assert sorted(r.provider_message_id for r in _replies(session)) == ["301", "302", "402", "403"]
    monkeypatch.setattr(inbound, "receive", real_receive)
    answer = hooks.post(path, json=push)  # Aliyun's retry of the same batch
    assert answer.json() == {"code": 0, "msg": "成功"}
    assert sorted(r.provider_message_id for r in _replies(session)) == [
        "301",
        "302",
        "401",
        "402",
        "403",
    ]


# --- the language of answers -------------------------------------------------------------------


@pytest.mark.parametrize("word", ["T", "TD", "STOP", "退订", "ｔｄ"])
def test_answers_are_in_the_customers_language_not_the_keywords(
    hooks, session, account, customer, word
):
    _post(hooks, _form(word, f"SM-lang-{word}"))
    [confirmation] = _answers(session, customer)
    assert confirmation.body.startswith("您已退订"), confirmation.body
    assert confirmation.purpose == "opt_out_confirmation"  # its approved template's purpose


@pytest.mark.parametrize("word", ["T", "TD", "退订"])
def test_a_customer_who_reads_english_gets_english_whatever_the_keyword(
    client, hooks, session, account, customer, word
):
    changed = client.patch(
        f"/v1/customers/{customer.id}", headers=account.headers, json={"language": "en"}
    )
    assert changed.status_code == 200
    _post(hooks, _form(word, f"SM-en-{word}"))
    [confirmation] = _answers(session, customer)
    assert confirmation.body.startswith("You will get no more texts"), confirmation.body
    assert confirmation.purpose == "opt_out_confirmation"


@pytest.mark.parametrize(
    ("language", "word", "starts", "purpose"),
    [
        ("zh", "HELP", "测试家政", "help_answer"),
        ("en", "帮助", "测试家政: reply 1", "help_answer"),
        ("zh", "START", "您已重新订阅", "opt_in_confirmation"),
        ("en", "订阅", "You are subscribed", "opt_in_confirmation"),
        ("zh", "1", "已收到您的预约", "booking_pick_time"),
        ("en", "预约", "Thanks, we got your booking", "booking_pick_time"),
    ],
)
def test_every_automatic_answer_follows_the_customers_language(
    client, hooks, session, account, customer, language, word, starts, purpose
):
    client.patch(
        f"/v1/customers/{customer.id}", headers=account.headers, json={"language": language}
    )
    if purpose == "opt_in_confirmation":  # an opt-in answers an opt-out
        _post(hooks, _form("T", f"SM-{language}-{word}-0"))
    _post(hooks, _form(word, f"SM-{language}-{word}"))
    answer = _answers(session, customer)[-1]
    assert answer.purpose == purpose
    assert answer.body.startswith(starts.replace("测试家政", account.tenant.name)), answer.body


def test_a_customer_who_reads_english_gets_english_and_the_company_default_applies(
    client, hooks, session, account, customer
):
    changed = client.patch(
        f"/v1/customers/{customer.id}", headers=account.headers, json={"language": "en"}
    )
    assert changed.status_code == 200 and changed.json()["language"] == "en"
    _post(hooks, _form("退订", "SM-en-1"))
    [confirmation] = _answers(session, customer)
    assert confirmation.body.startswith("You will get no more texts"), confirmation.body

    other = customers.create_customer(
        session=session, tenant=account.tenant, name="Ann", phone="13800138001"
    )
    assert (
        client.patch("/v1/tenant", headers=account.headers, json={"language": "en"}).json()[
            "language"
        ]
        == "en"
    )
    _post(hooks, _form("T", "SM-en-2", sender="+8613800138001"))
    [english] = _answers(session, other)
    assert english.body.startswith("You will get no more texts"), english.body

    refused = client.patch(
        f"/v1/customers/{customer.id}", headers=account.headers, json={"language": "fr"}
    )
    assert refused.status_code == 422 and "language" in refused.json()["detail"]
