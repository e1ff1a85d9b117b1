"""Alerts reach WeCom, DingTalk and signed webhooks once per event, with retries."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from urllib.parse import unquote_plus

import pytest
from sqlalchemy import select

from alerts import formats
from alerts import service as alerts
from alerts import tasks as alert_tasks
from alerts.models import FAILED, PENDING, SENT, Alert, AlertDelivery
from bookings import links as short_links
from bookings import service as booking
from bookings.service import book_from_reply
from customers import service as customers
from huifang.errors import Invalid
from messaging import inbound
from tests.alerts.fakes import Robots
from tests.conftest import make_account


@pytest.fixture
def robots():
    made = Robots()
    yield made
    made.close()


def _channels(session, tenant, robots, events=()):
    return {
        kind: alerts.create_channel(
            session=session,
            tenant=tenant,
            kind=kind,
            name=f"{kind} 群",
            url=fake.url,
            secret=fake.secret,
            events=events,
        )
        for kind, fake in robots.fakes.items()
    }


def _deliver_all(session, tenant_id):
    ids = list(
        session.scalars(
            select(AlertDelivery.id).where(
                AlertDelivery.tenant_id == tenant_id, AlertDelivery.status == PENDING
            )
        )
    )
    alert_tasks.deliver(session=session, delivery_ids=ids)


def test_dingtalk_sign_is_computed_as_documented():
    # HMAC-SHA256 of "timestamp\nsecret" keyed by the secret, Base64, then URL-encoded.
    request = formats.build(
        "dingtalk",
        "https://oapi.dingtalk.com/robot/send?access_token=t",
        "SECabc",
        formats.Content("test", "标题", "正文", None, "公司", 1, "今天 10:00", {}),
        now=1700000000.123,
    )
    assert request.url.startswith(
        "https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1700000000123&sign="
    )
    sign = request.url.split("sign=")[1]
    expected = base64.b64encode(
        hmac.new(b"SECabc", b"1700000000123\nSECabc", hashlib.sha256).digest()
    ).decode()
    assert unquote_plus(sign) == expected
    assert json.loads(request.body)["msgtype"] == "markdown"


def test_a_booking_reaches_every_channel_once(session, robots):
    tenant = make_account(session).tenant
    _channels(session, tenant, robots)
    customer = customers.create_customer(
        session=session, tenant=tenant, name="王女士", phone="13800138000"
    )
    now = dt.datetime.now(dt.UTC)
    link = short_links.link_for(
        session=session,
        tenant=tenant,
        customer=customer,
        service_type="ac_cleaning",
        source_type="test",
        source_id="1",
        now=now,
    )
    slot = booking.free_slots(session=session, tenant=tenant, now=now)[0]
    made = booking.book(session=session, link=link, slot_start=slot[0], note="家里有猫", now=now)
    booking.book(session=session, link=link, slot_start=slot[0], note=None, now=now)  # again
    _deliver_all(session, tenant.id)
    for kind, fake in robots.fakes.items():
        assert fake.refusals == [], kind
        assert len(fake.received) == 1, kind
    wecom = robots.fakes["wecom"].received[0].json["markdown"]["content"]
    assert "新预约待确认" in wecom and "家里有猫" in wecom
    assert "王女士（+86 ••• •••• 8000）" in wecom
    assert "13800138000" not in wecom
    ding = robots.fakes["dingtalk"].received[0]
    assert ding.query["timestamp"][0].isdigit() and ding.query["sign"]
    hook = robots.fakes["webhook"].received[0].json
    assert hook["event"] == "booking.new" and hook["facts"]["booking_id"] == made.id
    statuses = session.scalars(
        select(AlertDelivery.status).where(AlertDelivery.tenant_id == tenant.id)
    ).all()
    assert sorted(statuses) == [SENT] * 3


def test_a_complaint_reply_alerts_and_a_plain_reply_does_not(session, robots):
    tenant = make_account(session).tenant
    _channels(session, tenant, robots, events=["complaint"])
    customers.create_customer(session=session, tenant=tenant, name="李先生", phone="13800138001")
    now = dt.datetime.now(dt.UTC)
    inbound.receive(
        session=session,
        provider="console",
        provider_message_id="r1",
        on_book=book_from_reply,
        phone="13800138001",
        text="谢谢，挺好的",
        now=now,
        tenant=tenant,
    )
    inbound.receive(
        session=session,
        provider="console",
        provider_message_id="r2",
        on_book=book_from_reply,
        phone="13800138001",
        text="你们的师傅把我家地板刮坏了，要投诉！",
        now=now,
        tenant=tenant,
    )
    _deliver_all(session, tenant.id)
    got = robots.fakes["wecom"].received
    assert len(got) == 1
    assert "客户投诉" in got[0].json["markdown"]["content"]
    assert "地板刮坏" in got[0].json["markdown"]["content"]


def test_a_failing_endpoint_is_retried_with_backoff_then_given_up(session, robots):
    tenant = make_account(session).tenant
    fake = robots.fakes["webhook"]
    channel = alerts.create_channel(
        session=session, tenant=tenant, kind="webhook", name="x", url=fake.url, secret=fake.secret
    )
    fake.fail_next = [500] * 10
    alerts.send_test(session=session, tenant_id=tenant.id, channel_id=channel.id)
    delivery = session.scalars(
        select(AlertDelivery).where(AlertDelivery.channel_id == channel.id)
    ).one()
    started = dt.datetime.now(dt.UTC)
    alert_tasks.deliver(session=session, delivery_ids=[delivery.id])
    session.refresh(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_error) == (PENDING, 1, "HTTP 500")
    wait = delivery.next_attempt_at - started
    assert dt.timedelta(seconds=25) < wait < dt.timedelta(seconds=40)
    alert_tasks.deliver(session=session, delivery_ids=[delivery.id])  # not due yet: no call
    assert len(fake.refusals) == 1
    for _ in range(alerts.MAX_ATTEMPTS - 1):
        delivery.next_attempt_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        session.flush()
        alert_tasks.deliver(session=session, delivery_ids=[delivery.id])
        session.refresh(delivery)
    assert delivery.status == FAILED and delivery.attempts == alerts.MAX_ATTEMPTS
    assert len(fake.refusals) == alerts.MAX_ATTEMPTS and fake.received == []


def test_a_robot_refusal_is_read_from_its_errcode(session, robots):
    tenant = make_account(session).tenant
    wrong = robots.fakes["wecom"].url.replace("?key=test-key", "")
    channel = alerts.create_channel(
        session=session, tenant=tenant, kind="wecom", name="w", url=wrong
    )
    alerts.send_test(session=session, tenant_id=tenant.id, channel_id=channel.id)
    _deliver_all(session, tenant.id)
    line = alerts.delivery_log(session=session, tenant_id=tenant.id)[0]
    assert line.delivery.last_error == "errcode 93000: invalid webhook url"


def test_channels_refuse_what_cannot_work(session, monkeypatch):
    tenant = make_account(session).tenant
    with pytest.raises(Invalid, match="https"):
        alerts.create_channel(
            session=session, tenant=tenant, kind="wecom", name="", url="http://example.com/hook"
        )
    with pytest.raises(Invalid, match="不认识的事件"):
        alerts.create_channel(
            session=session,
            tenant=tenant,
            kind="wecom",
            name="",
            url="https://example.com/hook",
            events=["everything"],
        )
    monkeypatch.setenv("HUIFANG_ENVIRONMENT", "production")
    from huifang.settings import get_settings

    get_settings.cache_clear()
    try:
        monkeypatch.setenv("HUIFANG_SECRET_KEY", "x" * 40)
        get_settings.cache_clear()
        with pytest.raises(Invalid, match="公网"):
            alerts.create_channel(
                session=session, tenant=tenant, kind="webhook", name="", url="https://10.0.0.5/hook"
            )
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    made = alerts.create_channel(
        session=session, tenant=tenant, kind="webhook", name="", url="https://example.com/hook"
    )
    assert made.secret.startswith("whsec_") and made.name == "通用 Webhook"


def test_the_api_is_for_owner_keys(client, session, robots):
    from tenancy import service as tenancy

    account = make_account(session)
    _, office_key = tenancy.create_api_key(
        session=session, tenant=account.tenant, name="o", role="office"
    )
    session.commit()
    office = {"Authorization": f"Bearer {office_key}"}
    assert client.get("/v1/alert-channels", headers=office).status_code == 403
    made = client.post(
        "/v1/alert-channels",
        headers=account.headers,
        json={
            "kind": "dingtalk",
            "url": robots.fakes["dingtalk"].url,
            "secret": robots.fakes["dingtalk"].secret,
            "events": ["booking.new", "complaint"],
        },
    )
    assert made.status_code == 201, made.text
    assert (
        client.post(
            f"/v1/alert-channels/{made.json()['id']}/test", headers=account.headers
        ).status_code
        == 202
    )
    log = client.get("/v1/alerts", headers=account.headers).json()
    assert [(line["event"], line["status"]) for line in log] == [("test", "pending")]
    _deliver_all(session, account.tenant.id)
    assert robots.fakes["dingtalk"].refusals == []
    assert len(robots.fakes["dingtalk"].received) == 1
    assert session.scalars(
        select(Alert.event).where(Alert.tenant_id == account.tenant.id)
    ).all() == ["test"]


def test_a_reply_waiting_past_the_target_alerts_once(session, robots):
    from messaging import waiting as events
    from messaging.models import FAILED, Message

    tenant = make_account(session).tenant
    _channels(session, tenant, robots, events=["reply.waiting", "provider.failing"])
    customer = customers.create_customer(
        session=session, tenant=tenant, name="周女士", phone="13800138002"
    )
    received = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=130)
    inbound.receive(
        session=session,
        on_book=book_from_reply,
        provider="console",
        provider_message_id="w1",
        phone="13800138002",
        text="师傅明天几点到？",
        now=received,
        tenant=tenant,
    )
    inbound.receive(
        session=session,
        on_book=book_from_reply,
        provider="console",
        provider_message_id="w2",
        phone="13800138002",
        text="太差了，投诉！",
        now=received,
        tenant=tenant,
    )
    now = dt.datetime.now(dt.UTC)
    # The complaint is past its 120 minutes; the plain question not yet past its 240.
    assert events.scan(session=session, tenant_id=tenant.id, now=now) == 1
    assert events.scan(session=session, tenant_id=tenant.id, now=now) == 0
    assert (
        events.scan(session=session, tenant_id=tenant.id, now=now + dt.timedelta(minutes=120)) == 1
    )
    for n in range(3):
        session.add(
            Message(
                tenant_id=tenant.id,
                customer_id=customer.id,
                channel="sms",
                category="service",
                source_type="t",
                source_id=str(n),
                idempotency_key=f"fail-{tenant.id}-{n}",
                body="x",
                status=FAILED,
                due_at=now,
                attempts=1,
            )
        )
    session.flush()
    assert events.scan(session=session, tenant_id=tenant.id, now=now) == 1
    _deliver_all(session, tenant.id)
    titles = [r.json["markdown"]["content"].splitlines()[0] for r in robots.fakes["wecom"].received]
    assert sorted(titles) == sorted(
        [
            "### 客户投诉已等待 2 小时 10 分",
            "### 客户回复已等待 4 小时 10 分",
            "### 短信发送失败增多",
        ]
    )
