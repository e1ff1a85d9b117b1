"""POST /v1/visits/{id}/report/send: MMS parts where the provider carries them, else SMS + link."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from huifang.db import utcnow
from huifang.settings import get_settings
from media import service as media_service
from messaging import service as outbox
from messaging.models import Message
from messaging.providers.aliyun import AliyunProvider
from messaging.providers.twilio import TwilioProvider
from reports import api as reports_api
from tests.media.conftest import phone_jpeg, upload
from tests.messaging.twilio_fake import FakeTwilio


def _ready_photos(client, session, account, visit) -> None:
    for phase, color in (("before", (120, 110, 90)), ("after", (230, 235, 240))):
        response = upload(
            client,
            account,
            visit.id,
            phone_jpeg(size=(900, 1200), color=color),
            phase=phase,
            area="客厅",
        )
        assert response.status_code == 202, response.text
        media_service.process_media(session=session, media_id=response.json()["id"])
    session.flush()


def _deliver(session, message_id, provider):
    # Daytime in Shanghai, whatever the clock says: quiet hours would defer the send.
    now = utcnow().replace(hour=4)
    assert outbox.claim_for_send(session=session, message_id=message_id, now=now)
    return outbox.deliver(session=session, message_id=message_id, provider=provider, now=now)


def test_a_report_goes_as_mms_once_with_its_pictures(client, session, account, visit):
    _ready_photos(client, session, account, visit)
    sent = client.post(f"/v1/visits/{visit.id}/report/send", headers=account.headers)
    assert sent.status_code == 202, sent.text
    message = sent.json()
    assert message["channel"] == "mms" and message["category"] == "service"
    assert message["media_urls"] and all("/r/" in url for url in message["media_urls"])
    assert "【" not in message["body"] and message["status"] == "queued"
    again = client.post(f"/v1/visits/{visit.id}/report/send", headers=account.headers)
    assert again.status_code == 200 and again.json()["id"] == message["id"]
    # This company's only (other tests' committed rows share the database).
    assert (
        len(session.scalars(select(Message).where(Message.tenant_id == visit.tenant_id)).all()) == 1
    )


def test_through_twilio_the_media_urls_reach_the_api(client, session, account, visit, monkeypatch):
    _ready_photos(client, session, account, visit)
    with FakeTwilio() as fake:
        provider = TwilioProvider(
            account_sid=fake.account_sid,
            auth_token=fake.auth_token,
            api_base=fake.base_url,
            from_number=fake.from_number,
        )
        monkeypatch.setattr(reports_api, "get_provider", lambda: provider)
        sent = client.post(f"/v1/visits/{visit.id}/report/send", headers=account.headers)
        assert sent.status_code == 202, sent.text
        done = _deliver(session, sent.json()["id"], provider)
        assert done.status == "sent"
        [request] = fake.accepted
        assert request.fields("MediaUrl") == sent.json()["media_urls"]
        assert 1 <= len(request.fields("MediaUrl")) <= 10
        body = request.field("Body")
        assert body.startswith(account.tenant.sms_signature)
        assert body.count("【") == 1
        provider.close()


def test_without_mms_the_customer_gets_an_sms_with_the_link(
    client, session, account, visit, monkeypatch
):
    _ready_photos(client, session, account, visit)
    provider = AliyunProvider(
        access_key_id="id",
        access_key_secret="secret",
        template_code="SMS_1",
        api_base="http://127.0.0.1:9",
    )
    monkeypatch.setattr(reports_api, "get_provider", lambda: provider)
    sent = client.post(f"/v1/visits/{visit.id}/report/send", headers=account.headers)
    assert sent.status_code == 202, sent.text
    message = sent.json()
    assert message["channel"] == "sms" and message["media_urls"] == []
    assert "/r/" in message["body"] and "回复1" in message["body"]
    assert "【" not in message["body"]


def test_no_photo_yet_is_a_409_and_another_companys_visit_a_404(
    client, account, other_account, visit
):
    answer = client.post(f"/v1/visits/{visit.id}/report/send", headers=account.headers)
    assert answer.status_code == 409 and answer.json()["detail"]
    assert (
        client.post(f"/v1/visits/{visit.id}/report/send", headers=other_account.headers).status_code
        == 404
    )


@pytest.fixture(autouse=True)
def _public_url(monkeypatch):
    monkeypatch.setattr(get_settings(), "public_url", "https://hf.example.cn")
