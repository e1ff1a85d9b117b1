"""What every provider must do, run against each provider's local fake.

The send pipeline knows a provider only through ``base``'s outcomes, so every provider answers
the same situations the same way: an accepted message carries the provider's id; a rate
limit (with the wait asked for), a server error or a refused connection is worth another try;
wrong credentials or a number that cannot be one are refused for good; an answer lost after
the request was written may hide a message that went out. Each provider enters as a ``Side``:
how to build it against its fake, and the few codes and words that are its own. What only
one provider does stays in test_twilio_provider.py and test_aliyun_provider.py.

Also here: what every provider declares (its name in the registry and the settings, its
capabilities, its status map), read without building it.
"""

from __future__ import annotations

import email.utils
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pydantic
import pytest

from huifang.settings import Settings, get_settings
from messaging.providers import PROVIDERS, capabilities, get_provider, status_map
from messaging.providers.aliyun import AliyunProvider
from messaging.providers.base import (
    Capabilities,
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    RequestMayHaveLeft,
    RetryableError,
    SendResult,
    StatusMap,
)
from messaging.providers.console import ConsoleProvider
from messaging.providers.twilio import TwilioProvider
from reports import mms
from tests.messaging import aliyun_fake, fake_http, twilio_fake
from tests.messaging.aliyun_fake import FakeAliyun
from tests.messaging.provider_support import (
    FAST,
    IMPATIENT,
    LOST_ANSWERS,
    SERVER_ERRORS,
    TRANSPORT_FAILURES,
    closing_all,
    everything_said_by,
    message_maker,
    mock_client,
    raising_client,
    refusing_base_url,
    timed_failure,
    without_proxies,
)
from tests.messaging.twilio_fake import FakeTwilio

TO = "+8613800138000"
SIGN = "洁家家政"
TWILIO_MEDIA = (
    "https://hf.example/media/1/before.jpg",
    "https://hf.example/media/1/after.jpg?sig=a%2Fb&v=2",
    "https://hf.example/media/1/staff_report.jpg",
)


@dataclass
class Side:
    """One provider as the contract sees it."""

    name: str
    fake: fake_http.LocalFake[Any]
    build: Callable[..., Provider]  # against the fake; keyword overrides win
    offline: Callable[[httpx.Client], Provider]  # made-up credentials, this client
    message: Callable[..., OutboundMessage]  # its usual message, with changes
    answer_id: str  # the key of the fake's answer that holds the provider's id
    accepted_status: str  # SendResult.status of a message the fake took
    ok_answer: int  # the fake's HTTP status for a message sent
    busy: Any  # the provider's too-many-requests code, as its fake takes it
    busy_code: str  # …and as the provider reports it
    retry_once: Callable[[], None]  # the fake refuses the next request, worth a retry
    retry_answer: int  # …with this HTTP status
    where_to_look: str  # what a may-have-left sentence sends the office to
    wrong_secret: tuple[str, str]  # the keyword of the secret, and a wrong value
    wrong_secret_code: str
    wrong_secret_answer: int
    credentials_ok: Callable[[Any], bool]  # whether the fake took a request's credentials
    invalid_number_code: str
    invalid_number_words: str
    invalid_number_answers: list[int]  # the fake's answers: [] when refused before sending


def _twilio(fake: FakeTwilio) -> Side:
    def build(**overrides: object) -> Provider:
        options: dict[str, object] = {
            "account_sid": fake.account_sid,
            "auth_token": fake.auth_token,
            "api_base": fake.base_url,
            "from_number": fake.from_number,
            "timeout": FAST,
        }
        return TwilioProvider(**{**options, **overrides})  # type: ignore[arg-type]

    def offline(client: httpx.Client) -> Provider:
        return TwilioProvider(
            account_sid="AC" + "0" * 32,
            auth_token="t" * 32,
            from_number="+15005550006",
            client=client,
        )

    return Side(
        name="twilio",
        fake=fake,
        build=build,
        offline=offline,
        message=message_maker(
            message_id=42,
            to=TO,
            body=f"【{SIGN}】王女士您好，服务报告已生成",
            signature=SIGN,
            media_urls=TWILIO_MEDIA,
            status_callback="https://hf.example/hooks/twilio/status",
        ),
        answer_id="sid",
        accepted_status="queued",
        ok_answer=201,
        busy=20429,
        busy_code="20429",
        retry_once=lambda: fake.server_error_next(),
        retry_answer=500,
        where_to_look="Twilio console's messaging logs",
        wrong_secret=("auth_token", "0123456789abcdef0123456789abcdef"),
        wrong_secret_code="20003",
        wrong_secret_answer=401,
        credentials_ok=lambda request: (
            (request.username, request.password) == (fake.account_sid, fake.auth_token)
        ),
        invalid_number_code="21211",
        invalid_number_words="not a valid phone number",
        invalid_number_answers=[400],
    )


def _aliyun(fake: FakeAliyun) -> Side:
    def build(**overrides: object) -> Provider:
        options: dict[str, object] = {
            "access_key_id": fake.access_key_id,
            "access_key_secret": fake.access_key_secret,
            "api_base": fake.base_url,
            "template_code": fake.template_code,
            "timeout": FAST,
        }
        return AliyunProvider(**{**options, **overrides})  # type: ignore[arg-type]

    def offline(client: httpx.Client) -> Provider:
        return AliyunProvider(
            access_key_id="LTAIx", access_key_secret="s" * 30, template_code="SMS_1", client=client
        )

    return Side(
        name="aliyun",
        fake=fake,
        build=build,
        offline=offline,
        message=message_maker(
            message_id=42, to=TO, body=f"【{SIGN}】王女士您好，服务报告已生成", signature=SIGN
        ),
        answer_id="BizId",
        accepted_status="sent",
        ok_answer=200,
        busy="Throttling.User",
        busy_code="Throttling.User",
        # A business refusal comes with HTTP 200.
        retry_once=lambda: fake.fail_next("isp.SYSTEM_ERROR"),
        retry_answer=200,
        where_to_look="42",  # the OutId to look for in Aliyun's console
        wrong_secret=("access_key_secret", "Wr0ngSecretWr0ngSecret+/*"),
        wrong_secret_code="SignatureDoesNotMatch",
        wrong_secret_answer=400,
        credentials_ok=lambda request: request.signature_ok,
        invalid_number_code="isv.MOBILE_NUMBER_ILLEGAL",
        invalid_number_words="international form",
        invalid_number_answers=[],
    )


FAKES: dict[str, tuple[type[fake_http.LocalFake[Any]], Callable[[Any], Side]]] = {
    "twilio": (twilio_fake.FakeTwilio, _twilio),
    "aliyun": (aliyun_fake.FakeAliyun, _aliyun),
}


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    without_proxies(monkeypatch)


@pytest.fixture(params=sorted(FAKES))
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    fake_type, describe = FAKES[request.param]
    with fake_type() as fake:
        described = describe(fake)
        closing = closing_all(described.build)
        described.build = next(closing)
        yield described
        next(closing, None)  # closes every provider the test built


def _by_side(*cases: tuple[Any, ...]) -> list[Any]:
    """Parameters whose first value names the side (``indirect`` makes it the fixture)."""
    return [pytest.param(*case, id=f"{case[0]}-{case[1]}") for case in cases]


# -- accepted ----------------------------------------------------------------------------------


def test_an_accepted_message_carries_the_providers_id(side):
    result = side.build().send(side.message())

    [request] = side.fake.accepted
    assert side.fake.received == [request]
    assert request.answer_status == side.ok_answer
    assert isinstance(result, SendResult)
    assert result.provider_message_id == request.answer[side.answer_id]
    assert result.status == side.accepted_status


def test_a_client_given_is_not_closed_by_the_provider(side):
    client = httpx.Client()
    provider = side.build(client=client)
    provider.send(side.message())
    provider.close()

    assert not client.is_closed
    client.close()


# -- refused for good ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "code", "provider_says", "words"),
    _by_side(
        ("twilio", 21211, None, "not a valid phone number"),
        ("twilio", 21614, None, "not a mobile number"),
        ("twilio", 21612, None, "cannot deliver"),
        ("twilio", 21408, None, "Geo permissions"),
        ("twilio", 21606, None, "sending number"),
        ("twilio", 21608, None, "trial account"),
        ("twilio", 21635, None, "landline"),
        # A code we have no sentence for: permanent, in the provider's own words.
        ("twilio", 21999, "Something new went wrong", "Something new went wrong"),
        ("aliyun", "isv.MOBILE_NUMBER_ILLEGAL", None, "not a valid mobile number"),
        ("aliyun", "isv.SMS_SIGNATURE_ILLEGAL", None, "signature"),
        ("aliyun", "isv.SMS_TEMPLATE_ILLEGAL", None, "HUIFANG_ALIYUN_TEMPLATE_CODE"),
        ("aliyun", "isv.TEMPLATE_MISSING_PARAMETERS", None, "template"),
        ("aliyun", "isv.AMOUNT_NOT_ENOUGH", None, "top up"),
        ("aliyun", "isv.PARAM_NOT_SUPPORT_URL", None, "link"),
        ("aliyun", "SignatureDoesNotMatch", None, "credentials"),
        ("aliyun", "InvalidAccessKeyId.NotFound", None, "credentials"),
        ("aliyun", "isp.RAM_PERMISSION_DENY", None, "credentials"),
        ("aliyun", "InvalidTimeStamp.Expired", None, "clock"),
        ("aliyun", "isv.SOMETHING_NEW", "新的错误", "新的错误"),
    ),
    indirect=["side"],
)
def test_refusals_are_permanent(side, code, provider_says, words):
    side.fake.fail_next(code, message=provider_says or f"The provider's own words for {code}")

    with pytest.raises(PermanentError) as caught:
        side.build().send(side.message())

    assert type(caught.value) is PermanentError
    assert caught.value.code == str(code)
    assert words in caught.value.detail
    assert caught.value.detail.endswith(".")
    assert side.fake.accepted == []


def test_wrong_credentials_are_permanent_and_say_so(side):
    keyword, wrong = side.wrong_secret

    with pytest.raises(PermanentError) as caught:
        side.build(**{keyword: wrong}).send(side.message())

    assert type(caught.value) is PermanentError
    assert caught.value.code == side.wrong_secret_code
    assert "credentials" in caught.value.detail
    assert side.fake.received[0].answer_status == side.wrong_secret_answer
    assert not side.credentials_ok(side.fake.received[0])
    assert wrong not in everything_said_by(caught.value)


def test_an_invalid_number_is_refused_for_good(side):
    with pytest.raises(PermanentError) as caught:
        side.build().send(side.message(to="13800138000"))  # no +86: not E.164

    assert type(caught.value) is PermanentError
    assert caught.value.code == side.invalid_number_code
    assert side.invalid_number_words in caught.value.detail
    assert [r.answer_status for r in side.fake.received] == side.invalid_number_answers
    assert side.fake.accepted == []


def test_a_too_long_text_is_refused_before_any_request(side):
    limit = side.build().capabilities.max_body_chars

    with pytest.raises(PermanentError) as caught:
        side.build().send(side.message(body="好" * (limit + 1)))

    assert f"at most {limit}" in caught.value.detail
    assert side.fake.received == []


# -- try again later -------------------------------------------------------------------------


def test_rate_limit_is_retryable_with_retry_after(side):
    side.fake.rate_limit_next(retry_after="7")

    with pytest.raises(RetryableError) as caught:
        side.build().send(side.message())

    assert caught.value.retry_after == 7.0
    assert caught.value.code == side.busy_code
    assert side.fake.accepted == []


def test_retry_after_as_an_http_date(side):
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    side.fake.rate_limit_next(retry_after=later)

    with pytest.raises(RetryableError) as caught:
        side.build().send(side.message())

    assert caught.value.retry_after is not None
    assert 100 <= caught.value.retry_after <= 121


def test_rate_limit_without_retry_after(side):
    side.fake.rate_limit_next(retry_after=None)

    with pytest.raises(RetryableError) as caught:
        side.build().send(side.message())

    assert caught.value.retry_after is None


@pytest.mark.parametrize(("status", "json_body"), SERVER_ERRORS)
def test_server_errors_are_retryable(side, status, json_body):
    side.fake.server_error_next(status=status, json_body=json_body)

    with pytest.raises(RetryableError) as caught:
        side.build().send(side.message())

    assert f"HTTP {status}" in caught.value.detail
    assert len(side.fake.received) == 1  # no retry inside the provider


def test_then_the_retry_goes_through(side):
    provider = side.build()
    side.retry_once()
    with pytest.raises(RetryableError):
        provider.send(side.message())

    result = provider.send(side.message())

    assert len(side.fake.received) == 2
    assert [r.answer_status for r in side.fake.received] == [side.retry_answer, side.ok_answer]
    assert result.provider_message_id == side.fake.accepted[0].answer[side.answer_id]


def test_connection_refused_is_retryable(side):
    with refusing_base_url() as api_base:
        error, seconds = timed_failure(
            side.build(api_base=api_base), side.message(), RetryableError
        )

    assert type(error) is RetryableError
    assert "nothing was sent" in error.detail
    assert seconds < 1.5


# -- may have left -------------------------------------------------------------------------


@pytest.mark.parametrize(("lose_answer", "sent"), LOST_ANSWERS)
def test_a_lost_answer_after_sending_may_have_left(side, lose_answer, sent):
    lose_answer(side.fake)
    provider = side.build(timeout=IMPATIENT)

    error, seconds = timed_failure(provider, side.message(), RequestMayHaveLeft)

    assert seconds < 2
    assert len(side.fake.received) == 1  # seen exactly once: no silent retry
    assert len(side.fake.accepted) == sent  # a hang or a drop: in this story it did go out
    assert "may have been sent" in error.detail
    assert side.where_to_look in error.detail


def test_a_gateway_timeout_may_have_left_whatever_its_body_says(side):
    side.fake.fail_next(side.busy, status=504)  # a "too busy" body behind a gateway timeout

    error, _ = timed_failure(side.build(), side.message(), RequestMayHaveLeft)

    assert "HTTP 504" in error.detail


@pytest.mark.parametrize(("exc", "expected"), TRANSPORT_FAILURES)
def test_transport_failures_are_classified_by_when_they_happen(side, exc, expected):
    client = raising_client(exc)
    with pytest.raises(ProviderError) as caught:
        side.offline(client).send(side.message())

    assert type(caught.value) is expected
    client.close()


@pytest.mark.parametrize(
    ("side", "status", "answer"),
    [
        pytest.param("twilio", 201, "<html>proxy says hi</html>", id="twilio-html"),
        pytest.param("aliyun", 200, "<html>proxy says hi</html>", id="aliyun-html"),
        # "OK" without the BizId to follow the message by.
        pytest.param("aliyun", 200, '{"Code":"OK"}', id="aliyun-ok-without-bizid"),
    ],
    indirect=["side"],
)
def test_an_acceptance_we_cannot_read_may_have_left(side, status, answer):
    client = mock_client(lambda request: httpx.Response(status, text=answer))

    with pytest.raises(RequestMayHaveLeft):
        side.offline(client).send(side.message())
    client.close()


# -- what every provider declares ------------------------------------------------------------


def test_the_settings_take_exactly_the_registered_names():
    named = typing.get_args(Settings.model_fields["sms_provider"].annotation)

    assert set(named) == set(PROVIDERS)
    assert all(PROVIDERS[name].name == name for name in PROVIDERS)
    with pytest.raises(pydantic.ValidationError):
        Settings(sms_provider="carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="known: aliyun, console, twilio"):
        capabilities("carrier-pigeon")


CREDENTIALS: dict[str, dict[str, str]] = {
    "console": {},
    "twilio": {
        "twilio_account_sid": "AC" + "0" * 32,
        "twilio_auth_token": "t" * 32,
        "twilio_from_number": "+15005550006",
    },
    "aliyun": {
        "aliyun_access_key_id": "LTAIx",
        "aliyun_access_key_secret": "s" * 30,
        "aliyun_template_code": "SMS_1",
    },
}


@pytest.mark.parametrize("name", sorted(CREDENTIALS))
def test_the_configured_provider_is_built_once_from_the_settings(monkeypatch, name):
    settings = get_settings()
    monkeypatch.setattr(settings, "sms_provider", name)
    for setting, value in CREDENTIALS[name].items():
        monkeypatch.setattr(settings, setting, value)
    get_provider.cache_clear()
    try:
        provider = get_provider()
        assert type(provider) is PROVIDERS[name]
        assert get_provider() is provider
        provider.close()
    finally:
        get_provider.cache_clear()


def test_capabilities_are_known_by_name_without_credentials(monkeypatch):
    settings = get_settings()
    for setting in (
        "twilio_account_sid",
        "twilio_auth_token",
        "aliyun_access_key_id",
        "aliyun_access_key_secret",
    ):
        monkeypatch.setattr(settings, setting, None)

    assert capabilities("twilio") is TwilioProvider.capabilities
    assert (capabilities("twilio").max_media, capabilities("twilio").max_body_chars) == (10, 1600)
    assert capabilities("console") is ConsoleProvider.capabilities
    aliyun = capabilities("aliyun")
    assert (aliyun.supports_mms, aliyun.max_media, aliyun.max_total_bytes) == (False, 9, 1_900_000)
    # The report's MMS parts keep to what the providers declare.
    for profile in (mms.TWILIO, mms.CONSOLE, mms.ALIYUN):
        declared = capabilities(profile.name)
        assert (profile.max_media, profile.max_total_bytes, profile.max_body_chars) == (
            declared.max_media,
            declared.max_total_bytes,
            declared.max_body_chars,
        )
        assert (profile.image_types, profile.video_types) == (
            declared.image_types,
            declared.video_types,
        )
    assert (mms.ALIYUN_MAX_FRAMES, mms.ALIYUN_MAX_TOTAL_BYTES) == (9, 1_900_000)
    assert mms.ALIYUN.frames and mms.ALIYUN.must_mix and mms.ALIYUN.supports_mms


def test_a_provider_declares_its_limits_in_its_capabilities():
    with pytest.raises(TypeError, match="capabilities"):
        type("Loose", (ConsoleProvider,), {"max_body_chars": 70})

    class Declared(ConsoleProvider):
        capabilities = Capabilities(max_body_chars=70)

    assert Declared.capabilities.max_body_chars == 70


def test_each_provider_names_its_own_receipt_statuses():
    assert status_map("twilio") is TwilioProvider.status_map
    assert status_map("aliyun") is AliyunProvider.status_map
    assert status_map("twilio").statuses["read"][0] == "delivered"
    assert status_map("twilio").suppressing["30005"] == "unreachable"
    assert status_map("aliyun").statuses["undelivered"][0] == "undelivered"
    assert status_map("console") == StatusMap() == status_map("scripted")
