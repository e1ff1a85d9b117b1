"""With Aliyun, a campaign is activated only when its text is one of the company's approved
marketing templates: the lint says which variables are missing or which fixed text differs,
and shows the text to submit when there is none. Once recorded, the campaign's messages reach
Aliyun (the fake) as that template with the customer's values.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from campaigns import handoff
from campaigns import materialize as materializer
from campaigns.models import CampaignOccurrence
from huifang.settings import get_settings
from messaging import service as outbox
from messaging import sms_templates
from messaging.models import SENT, Message
from messaging.providers.aliyun import AliyunProvider
from tests.campaigns.test_campaigns_api import people  # noqa: F401  (customers with consent)
from tests.messaging.aliyun_fake import FakeAliyun

BASE = "https://hf.example.cn"
TEXT = "{{ customer_name }}您好，夏季空调清洗现可预约：{{ booking_link }}"
AS_TEMPLATE = "${customer_name}您好，夏季空调清洗现可预约：" + BASE + "/b/${booking_link} 回复T退订"


@pytest.fixture(autouse=True)
def _aliyun(monkeypatch):
    monkeypatch.setattr(get_settings(), "public_url", BASE)
    monkeypatch.setattr(get_settings(), "sms_provider", "aliyun")


def _campaign(client, account, template=TEXT):
    body = {
        "name": "夏季空调清洗",
        "rule": {"kind": "fixed_date", "month": 6, "day": 1},
        "template": template,
    }
    created = client.post("/v1/campaigns", headers=account.headers, json=body)
    assert created.status_code == 201, created.text
    return created.json()


def _activate(client, account, campaign):
    return client.post(f"/v1/campaigns/{campaign['id']}/activate", headers=account.headers)


def _errors(answer, code):
    return [f for f in answer.json()["findings"] if f["code"] == code and f["severity"] == "error"]


def _record(client, account, code, text, kind="marketing"):
    return client.post(
        "/v1/sms-templates",
        headers=account.headers,
        json={"code": code, "kind": kind, "purpose": "campaign_marketing", "text": text},
    )


def test_without_an_approved_template_the_lint_shows_the_text_to_submit(
    client,
    account,
    people,  # noqa: F811
):
    campaign = _campaign(client, account)
    refused = _activate(client, account, campaign)
    assert refused.status_code == 422, refused.text
    [missing] = _errors(refused, "approved_template_missing")
    assert "sends only approved templates" in missing["message"]
    assert f"「{AS_TEMPLATE}」" in missing["hint"]
    assert "【测试家政】" in missing["hint"] and "marketing" in missing["hint"]
    # Its length, as Aliyun bills it: every variable at 35 characters, 67 per segment.
    chars = sms_templates.longest("【测试家政】" + AS_TEMPLATE)
    assert f"{chars} characters" in missing["hint"]
    assert f"{sms_templates.segments(chars)} SMS" in missing["hint"]
    assert (
        client.get(f"/v1/campaigns/{campaign['id']}", headers=account.headers).json()["status"]
        == "draft"
    )


def test_the_lint_says_which_variables_are_missing_and_which_fixed_text_differs(
    client,
    account,
    people,  # noqa: F811
):
    approved = "您好，夏季空调清洗现已开放预约：" + BASE + "/b/${booking_link} 回复T退订"
    assert _record(client, account, "SMS_490000001", approved).status_code == 201
    campaign = _campaign(client, account)
    refused = _activate(client, account, campaign)
    assert refused.status_code == 422
    [mismatch] = _errors(refused, "approved_template_mismatch")
    assert "SMS_490000001" in mismatch["message"]
    assert "no variable for ${customer_name}" in mismatch["message"]
    assert "fixed text differs" in mismatch["message"]
    assert "现可预约" in mismatch["message"] and "现已开放" in mismatch["message"]
    assert f"「{AS_TEMPLATE}」" in mismatch["hint"]  # …or submit this one


def test_conditions_cannot_be_a_template_and_links_must_be_variables_after_our_address(
    client,
    account,
    people,  # noqa: F811
):
    iffy = _campaign(
        client, account, "{% if staff_name %}{{ staff_name }}提醒您，{% endif %}空调该清洗了"
    )
    assert _errors(_activate(client, account, iffy), "approved_template_logic")
    # Aliyun's own rules, read on the text to submit: two variables side by side.
    adjacent = _campaign(client, account, "{{ customer_name }}{{ last_service }}该做了，欢迎预约")
    rules = _errors(_activate(client, account, adjacent), "approved_template_rule")
    assert any("紧挨着" in f["message"] for f in rules), rules


def test_with_the_template_recorded_it_activates_and_sends_as_that_template(
    client,
    session,
    account,
    people,  # noqa: F811
):
    recorded = _record(client, account, "SMS_490000002", AS_TEMPLATE)
    assert recorded.status_code == 201, recorded.text
    campaign = _campaign(client, account)
    activated = _activate(client, account, campaign)
    assert activated.status_code == 200, activated.text
    now = dt.datetime.now(dt.UTC)
    materializer.materialize(
        session=session, now=now, campaign_id=campaign["id"], horizon=dt.timedelta(days=400)
    )
    due = session.scalars(
        select(CampaignOccurrence.due_at).where(CampaignOccurrence.campaign_id == campaign["id"])
    ).all()
    assert due
    when = max(due).replace(tzinfo=dt.UTC) + dt.timedelta(minutes=1)
    handoff.hand_off_due(session=session, now=when)
    messages = list(session.scalars(select(Message).where(Message.purpose == "campaign_marketing")))
    assert messages
    with FakeAliyun(
        sign_names={"测试家政"}, templates={"SMS_490000002": {"customer_name", "booking_link"}}
    ) as fake:
        provider = AliyunProvider(
            access_key_id=fake.access_key_id,
            access_key_secret=fake.access_key_secret,
            api_base=fake.base_url,
        )
        for message in messages:
            outbox.claim_due(session=session, now=when)
            if outbox.claim_for_send(session=session, message_id=message.id, now=when):
                outbox.deliver(session=session, message_id=message.id, provider=provider, now=when)
        provider.close()
    sent = [m for m in messages if m.status == SENT]
    assert sent, [(m.status, m.status_detail) for m in messages]
    by_id = {r.param("OutId"): r for r in fake.accepted}
    for message in sent:
        request = by_id[str(message.id)]
        assert request.param("TemplateCode") == "SMS_490000002"
        params = request.template_param()
        assert list(params) == ["customer_name", "booking_link"]
        assert params["customer_name"] == message.variables["customer_name"]
        assert not params["booking_link"].startswith("http")  # the path after /b/ only
        assert message.text == "【测试家政】" + sms_templates.render(AS_TEMPLATE, params)
        print(
            "\ncampaign_marketing:",
            {k: request.param(k) for k in ("SignName", "TemplateCode", "TemplateParam", "OutId")},
        )
