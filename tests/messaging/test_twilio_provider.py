"""The Twilio adapter against a local fake of the Messages endpoint (twilio_fake.py).

What every provider must do (rate limits, server errors, lost answers, transport failures,
refusals) is test_provider_contract.py's, run against this fake too; here is what only
Twilio does.

Nothing here leaves 127.0.0.1: the fake listens on loopback, refused connections use a bound
port that never listens, and DNS failures are simulated with httpx.MockTransport.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import httpx
import pytest

from messaging.providers.base import (
    PermanentError,
    RecipientOptedOut,
    RetryableError,
)
from messaging.providers.twilio import TwilioProvider
from tests.messaging.provider_support import (
    FAST,
    IMPATIENT,
    closing_all,
    errors_from,
    everything_said_by,
    message_maker,
    without_proxies,
)
from tests.messaging.twilio_fake import FakeTwilio

TO = "+8613800138000"
BODY = "【洁家家政】王女士您好，今天的空调清洗已完成，服务报告：https://hf.example/r/abc 回复T退订"
MEDIA = (
    "https://hf.example/media/1/before.jpg",
    "https://hf.example/media/1/after.jpg?sig=a%2Fb&v=2",
    "https://hf.example/media/1/staff_report.jpg",
)
CALLBACK = "https://hf.example/hooks/twilio/status?message_id=42"
message = message_maker(
    message_id=42,
    to=TO,
    body=BODY,
    signature="洁家家政",
    media_urls=MEDIA,
    status_callback=CALLBACK,
)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    without_proxies(monkeypatch)


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def make_provider(twilio: FakeTwilio) -> Iterator[Callable[..., TwilioProvider]]:
    def build(**overrides: object) -> TwilioProvider:
        options: dict[str, object] = {
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "api_base": twilio.base_url,
            "timeout": FAST,
        }
        if "messaging_service_sid" not in overrides:
            options["from_number"] = twilio.from_number
        options.update(overrides)
        return TwilioProvider(**options)  # type: ignore[arg-type]

    yield from closing_all(build)


# -- what goes over the wire ---------------------------------------------------------------


def test_posts_the_fields_and_auth_twilio_expects(twilio, make_provider):
    result = make_provider().send(message())

    assert len(twilio.received) == 1
    request = twilio.received[0]
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert (request.username, request.password) == (twilio.account_sid, twilio.auth_token)
    assert set(request.form) == {"To", "From", "Body", "MediaUrl", "StatusCallback"}
    assert request.fields("To") == [TO]
    assert request.fields("From") == [twilio.from_number]
    assert request.fields("Body") == [BODY]  # Chinese, 【】 and the full-width comma intact
    assert request.fields("MediaUrl") == list(MEDIA)  # one field per URL, in order
    assert request.body.count(b"MediaUrl=") == len(MEDIA)
    assert request.fields("StatusCallback") == [CALLBACK]

    assert twilio.accepted == [request]
    assert request.answer is not None
    assert result.provider_message_id == request.answer["sid"]
    assert result.provider_message_id.startswith("MM")
    assert result.status == "queued"


def test_messaging_service_replaces_from(twilio, make_provider):
    provider = make_provider(messaging_service_sid=twilio.messaging_service_sid)

    result = provider.send(message(media_urls=(), status_callback=None))

    request = twilio.accepted[0]
    assert set(request.form) == {"To", "MessagingServiceSid", "Body"}
    assert request.field("MessagingServiceSid") == twilio.messaging_service_sid
    assert request.answer is not None and request.answer["status"] == "accepted"
    assert result.status == "queued"  # Twilio's "accepted" in the pipeline's words
    assert result.provider_message_id == request.answer["sid"]
    assert result.provider_message_id.startswith("SM")


def test_media_only_message_sends_no_body(twilio, make_provider):
    make_provider().send(message(body="", media_urls=MEDIA[:1]))

    assert "Body" not in twilio.accepted[0].form
    assert twilio.accepted[0].fields("MediaUrl") == [MEDIA[0]]


@pytest.mark.parametrize(
    ("from_number", "service"), [(None, None), ("+15005550006", "MG" + "0" * 32)]
)
def test_exactly_one_sender_is_required(from_number, service):
    with pytest.raises(ValueError, match="exactly one sender"):
        TwilioProvider(
            account_sid="AC" + "0" * 32,
            auth_token="t" * 32,
            from_number=from_number,
            messaging_service_sid=service,
        )


def test_the_fake_refuses_what_twilio_refuses(twilio):
    """The field test above means something only if the fake checks like Twilio does."""
    auth = (twilio.account_sid, twilio.auth_token)
    good = {"To": TO, "From": twilio.from_number, "Body": "hi"}
    with httpx.Client(timeout=FAST) as client:
        assert client.post(twilio.messages_url, data=good, auth=auth).status_code == 201
        assert client.post(twilio.messages_url, json=good, auth=auth).status_code == 400
        assert client.post(twilio.messages_url, data=good).json()["code"] == 20003
        both = {**good, "MessagingServiceSid": twilio.messaging_service_sid}
        assert client.post(twilio.messages_url, data=both, auth=auth).status_code == 400
        long = {**good, "Body": "长" * 1601}
        assert client.post(twilio.messages_url, data=long, auth=auth).json()["code"] == 21617
        many = {**good, "MediaUrl": [f"https://x.example/{i}.jpg" for i in range(11)]}
        assert client.post(twilio.messages_url, data=many, auth=auth).json()["code"] == 21623
        other = twilio.messages_url.replace(twilio.account_sid, "AC" + "1" * 32)
        assert client.post(other, data=good, auth=auth).json()["code"] == 20003
    assert len(twilio.accepted) == 1


# -- refusals --------------------------------------------------------------------------------


def test_unsubscribed_recipient_is_opted_out(twilio, make_provider):
    twilio.opted_out.add(TO)

    with pytest.raises(RecipientOptedOut) as caught:
        make_provider().send(message())

    assert caught.value.code == "21610"
    assert "unsubscribed" in caught.value.detail
    assert twilio.accepted == []


def test_too_many_media_is_refused_before_any_request(twilio, make_provider):
    media = tuple(f"https://hf.example/media/{i}.jpg" for i in range(11))

    with pytest.raises(PermanentError) as caught:
        make_provider().send(message(media_urls=media))

    assert "at most 10" in caught.value.detail
    assert twilio.received == []


# -- try again later -----------------------------------------------------------------------


def test_queue_overflow_is_retryable(twilio, make_provider):
    twilio.fail_next(
        21611, message="This 'From' number has exceeded the maximum number of queued messages"
    )

    with pytest.raises(RetryableError) as caught:
        make_provider().send(message())

    assert caught.value.code == "21611"


# -- secrets ---------------------------------------------------------------------------------


def test_auth_token_never_appears_in_errors(twilio, make_provider):
    token = twilio.auth_token
    basic = base64.b64encode(f"{twilio.account_sid}:{token}".encode()).decode()
    provider = make_provider()
    hanging = make_provider(timeout=IMPATIENT)
    scenarios: list[tuple[Callable[[], None], TwilioProvider]] = [
        (lambda: twilio.opted_out.add(TO), provider),
        (lambda: twilio.fail_next(21211), provider),
        # A hostile or buggy upstream echoing the credentials back must still not leak them.
        (lambda: twilio.fail_next(21999, message=f"bad {token} {basic}"), provider),
        (lambda: twilio.fail_next(20003, status=401, message=f"token {token}"), provider),
        (lambda: twilio.rate_limit_next(), provider),
        (lambda: twilio.server_error_next(), provider),
        (lambda: twilio.drop_next(), provider),
        (lambda: twilio.hang_next(seconds=5), hanging),
    ]
    errors = errors_from(scenarios, message(), after_each=twilio.opted_out.clear)
    with pytest.raises(PermanentError) as too_many:
        provider.send(message(media_urls=tuple(f"https://x.example/{i}" for i in range(11))))
    errors.append(too_many.value)

    assert len(errors) == len(scenarios) + 1
    for error in errors:
        text = everything_said_by(error)
        assert token not in text, error
        assert basic not in text, error
    assert token not in repr(provider)
    assert "***" in str(errors[2])  # the echoed token was scrubbed, not dropped silently
