"""Every message goes to Aliyun as the company's approved template of its purpose, filled from
the message (aliyun_fake.py speaks SendSms's wire format and checks its signature): the fake
receives each purpose's ``TemplateCode`` and a ``TemplateParam`` with exactly that template's
variables. A message whose purpose has no approved template is refused before any request.
Twilio and the console keep sending free text.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from bookings import desk, reminders
from bookings.service import book_from_reply
from customers.models import Customer
from huifang.settings import get_settings
from messaging import inbound, sms_templates, threads
from messaging import service as outbox
from messaging.models import FAILED, NO_TEMPLATE, SENT, Message
from messaging.providers.aliyun import AliyunProvider
from messaging.providers.console import ConsoleProvider
from reports import api as reports_api
from tests.factories import make_customer, make_staff
from tests.media.conftest import visit  # noqa: F401  (the media tests' visit)
from tests.messaging.aliyun_fake import FakeAliyun
from tests.reports.test_report_send import _ready_photos

BASE = "https://hf.example.cn"
NOON_CN = dt.datetime(2026, 12, 7, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai, a Monday


@pytest.fixture(autouse=True)
def _public_url(monkeypatch):
    monkeypatch.setattr(get_settings(), "public_url", BASE)


def record_suggested(client, account) -> dict[str, tuple[str, str]]:
    """Record, through the API, the suggested text of every purpose as approved; purpose →
    (code, text)."""
    read = client.get("/v1/sms-templates", headers=account.headers)
    assert read.status_code == 200, read.text
    recorded = {}
    for number, purpose in enumerate(read.json()["purposes"]):
        if not purpose["suggested"]:
            continue
        code = f"SMS_4700{number:05d}"
        answer = client.post(
            "/v1/sms-templates",
            headers=account.headers,
            json={
                "code": code,
                "kind": purpose["kind"],
                "purpose": purpose["purpose"],
                "text": purpose["suggested"],
            },
        )
        assert answer.status_code == 201, answer.text
        recorded[purpose["purpose"]] = (code, purpose["suggested"])
    return recorded


def aliyun_fake(recorded: dict[str, tuple[str, str]], signature: str) -> FakeAliyun:
    return FakeAliyun(
        sign_names={signature},
        templates={code: set(sms_templates.variables_of(text)) for code, text in recorded.values()},
    )


def provider_for(fake: FakeAliyun) -> AliyunProvider:
    return AliyunProvider(
        access_key_id=fake.access_key_id,
        access_key_secret=fake.access_key_secret,
        api_base=fake.base_url,
    )


def deliver(session, message_id, provider, now=NOON_CN) -> Message:
    """What the dispatcher and the send task do, in the test's transaction."""
    outbox.claim_due(session=session, now=now)  # scheduled → queued
    assert outbox.claim_for_send(session=session, message_id=message_id, now=now)
    outbox.deliver(session=session, message_id=message_id, provider=provider, now=now)
    message = session.get(Message, message_id)
    assert message is not None
    session.refresh(message)
    return message


def reply(session, account, customer, text, sid):
    inbound.receive(
        session=session,
        provider="aliyun",
        provider_message_id=sid,
        phone=customer.phone,
        text=text,
        now=NOON_CN,
        on_book=book_from_reply,
        tenant=account.tenant,
        queue=True,
    )
    session.flush()
    return list(
        session.scalars(
            select(Message)
            .where(Message.customer_id == customer.id, Message.status == "queued")
            .order_by(Message.id)
        )
    )


def test_every_purpose_goes_as_its_template_with_exactly_its_variables(
    client,
    session,
    account,
    visit,  # noqa: F811
    monkeypatch,
    capsys,
):
    recorded = record_suggested(client, account)
    assert set(recorded) == set(sms_templates.ONE_PER_COMPANY)
    tenant = account.tenant
    customer = session.get(Customer, visit.customer_id)  # the visit's: the report goes to them
    other = make_customer(session, tenant, name="李先生", phone="13900139000")
    staff = make_staff(session, tenant, name="张师傅")
    fake = aliyun_fake(recorded, tenant.signature)
    sent: dict[str, Message] = {}
    with fake:
        provider = provider_for(fake)

        def go(messages):
            for message in messages:
                done = deliver(session, message.id, provider)
                assert done.status == SENT, (done.purpose, done.status_detail)
                sent[done.purpose] = done

        # A "1" reply: the booking request's answer; then the office confirms it.
        go(reply(session, account, customer, "1", "up-1"))
        [booking_id] = [b for b in _bookings(session, customer)]
        start = dt.datetime(2026, 12, 8, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai
        told = desk.confirm(
            session=session,
            tenant=tenant,
            booking_id=booking_id,
            slot_start=start,
            staff_id=staff.id,
            now=NOON_CN,
            service_type="ac_cleaning",
        )
        assert told.message_id is not None
        go([session.get(Message, told.message_id)])
        # The day before, the customer is reminded of it.
        reminded = reminders.remind(session=session, booking_id=booking_id, now=NOON_CN)
        assert reminded is not None
        go([session.get(Message, reminded)])
        # A third customer's request gets another time proposed, with their booking link.
        third = make_customer(session, tenant, name="赵女士", phone="13700137000")
        go(reply(session, account, third, "1", "up-6"))
        [third_booking] = _bookings(session, third)
        proposed = desk.propose(
            session=session,
            tenant=tenant,
            booking_id=third_booking,
            slot_start=start + dt.timedelta(hours=4),
            staff_id=staff.id,
            now=NOON_CN,
        )
        go([session.get(Message, proposed.message_id)])
        # Another customer's request, declined with a reason.
        go(reply(session, account, other, "1", "up-2"))
        [other_booking] = _bookings(session, other)
        declined = desk.decline(
            session=session,
            tenant=tenant,
            booking_id=other_booking,
            reason="师傅都已排满",
            now=NOON_CN,
        )
        go([session.get(Message, declined.message_id)])
        # Help, opt-out, opt-in.
        go(reply(session, account, other, "帮助", "up-3"))
        go(reply(session, account, other, "T", "up-4"))
        go(reply(session, account, other, "订阅", "up-5"))
        # The office answers in a sentence.
        message, _ = threads.answer(
            session=session,
            tenant=tenant,
            customer_id=customer.id,
            body="师傅明天上午到",
            now=NOON_CN,
            max_chars=500,
        )
        go([message])
        # The visit's report.
        _ready_photos(client, session, account, visit)
        monkeypatch.setattr(reports_api, "get_provider", lambda: provider)
        answer = client.post(f"/v1/visits/{visit.id}/report/send", headers=account.headers)
        assert answer.status_code == 202, answer.text
        go([session.get(Message, answer.json()["id"])])
        provider.close()

    wanted = {
        sms_templates.BOOKING_PICK_TIME,
        sms_templates.BOOKING_CONFIRMED,
        sms_templates.BOOKING_REMINDER,
        sms_templates.BOOKING_PROPOSED,
        sms_templates.BOOKING_DECLINED,
        sms_templates.HELP_ANSWER,
        sms_templates.OPT_OUT_CONFIRMATION,
        sms_templates.OPT_IN_CONFIRMATION,
        sms_templates.OFFICE_ANSWER,
        sms_templates.REPORT_READY,
    }
    assert wanted <= set(sent), sorted(sent)
    requests = {r.param("OutId"): r for r in fake.accepted}
    for purpose in wanted:
        message = sent[purpose]
        code, text = recorded[purpose]
        request = requests[str(message.id)]
        assert request.signature_ok
        assert request.param("TemplateCode") == code, purpose
        assert request.param("SignName") == tenant.signature
        params = request.template_param()
        assert list(params) == list(dict.fromkeys(sms_templates.variables_of(text))), purpose
        if not params:
            assert request.param("TemplateParam") is None  # no variables: no TemplateParam
        # What the customer reads is the approved text filled, never the free text.
        assert message.text == f"【{tenant.signature}】" + sms_templates.render(text, params)
    confirmed = requests[str(sent[sms_templates.BOOKING_CONFIRMED].id)].template_param()
    assert confirmed == {"service": "空调清洗", "time": "12月08日（周二）10:00"}
    declined_params = requests[str(sent[sms_templates.BOOKING_DECLINED].id)].template_param()
    assert declined_params["reason"] == "师傅都已排满"
    assert requests[str(sent[sms_templates.BOOKING_REMINDER].id)].template_param() == {
        "service": "空调清洗",
        "time": "12月08日（周二）10:00",
    }
    offered = requests[str(sent[sms_templates.BOOKING_PROPOSED].id)].template_param()
    assert offered["time"] == "12月08日（周二）14:00" and len(offered["booking_token"]) >= 16
    picked = requests[str(sent[sms_templates.BOOKING_PICK_TIME].id)].template_param()
    assert len(picked["booking_token"]) >= 16 and "/" not in picked["booking_token"]
    report = requests[str(sent[sms_templates.REPORT_READY].id)].template_param()
    assert report["customer_name"] == customer.name and len(report["report_token"]) >= 20
    assert requests[str(sent[sms_templates.OFFICE_ANSWER].id)].template_param() == {
        "content": "师傅明天上午到"
    }
    with capsys.disabled():  # the requests as Aliyun received them, for the record
        for purpose in sorted(wanted):
            request = requests[str(sent[purpose].id)]
            shown = {
                k: request.param(k)
                for k in ("Action", "SignName", "TemplateCode", "TemplateParam", "OutId")
            }
            print(f"\n{purpose}: {shown}")


def _bookings(session, customer) -> list[int]:
    from bookings.models import Booking

    return list(
        session.scalars(
            select(Booking.id).where(Booking.customer_id == customer.id).order_by(Booking.id)
        )
    )


def test_a_purpose_without_a_template_is_refused_before_any_request(client, session, account):
    tenant = account.tenant
    customer = make_customer(session, tenant, name="王女士", phone="13800138000")
    with FakeAliyun(sign_names={tenant.signature}) as fake:
        provider = provider_for(fake)
        [answer] = reply(session, account, customer, "帮助", "up-help")
        refused = deliver(session, answer.id, provider)
        provider.close()
    assert refused.status == FAILED and refused.status_reason == NO_TEMPLATE
    assert "help answer (帮助回复)" in refused.status_detail
    # It says what to record: the text to submit, with the settings page to record it in.
    assert "Settings › SMS templates" in refused.status_detail
    assert sms_templates.suggested_text(sms_templates.HELP_ANSWER, BASE) in refused.status_detail
    assert fake.received == []  # nothing reached Aliyun
    listed = client.get(f"/v1/messages?customer_id={customer.id}", headers=account.headers)
    assert "Settings › SMS templates" in listed.text


def test_a_template_needing_a_value_the_message_lacks_is_refused_saying_which(
    client, session, account
):
    tenant = account.tenant
    customer = make_customer(session, tenant)
    recorded = client.post(
        "/v1/sms-templates",
        headers=account.headers,
        json={
            "code": "SMS_480000001",
            "kind": "notification",
            "purpose": "office_answer",
            "text": "您好，客服答复：${content}。如有疑问请回复本短信。",
        },
    )
    assert recorded.status_code == 201, recorded.text
    long_answer = "您好" * 20  # 40 characters: more than an Aliyun variable takes
    message, _ = threads.answer(
        session=session,
        tenant=tenant,
        customer_id=customer.id,
        body=long_answer,
        now=NOON_CN,
        max_chars=500,
    )
    with FakeAliyun(sign_names={tenant.signature}) as fake:
        provider = provider_for(fake)
        refused = deliver(session, message.id, provider)
        provider.close()
    assert refused.status == FAILED and refused.status_reason == NO_TEMPLATE
    assert "${content} (40 characters)" in refused.status_detail
    assert "35" in refused.status_detail
    assert fake.received == []


def test_twilio_and_the_console_still_send_the_free_text(session, account):
    customer = make_customer(session, account.tenant)
    message, _ = outbox.schedule(
        session=session,
        tenant=account.tenant,
        customer=customer,
        channel="sms",
        category="service",
        source_type="office_answer",
        source_id="free",
        body="师傅明天上午到",
        due_at=NOON_CN,
        purpose=sms_templates.OFFICE_ANSWER,
        variables={"content": "师傅明天上午到"},
    )
    done = deliver(session, message.id, ConsoleProvider())
    assert done.status == SENT
    assert done.text == "【测试家政】师傅明天上午到"
    assert done.purpose == "office_answer" and done.variables == {"content": "师傅明天上午到"}
