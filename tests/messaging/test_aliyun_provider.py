"""The Aliyun SendSms adapter against a local fake of Dysmsapi (aliyun_fake.py).

What every provider must do (rate limits, server errors, lost answers, transport failures,
refusals) is test_provider_contract.py's, run against this fake too; here is what only
Aliyun does.

Nothing here leaves 127.0.0.1: the fake listens on loopback, refused connections use a bound
port that never listens, and DNS failures are simulated with httpx.MockTransport.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from messaging.providers.aliyun import (
    AliyunProvider,
    aliyun_number,
    business_limit_wait,
    encode_form,
    percent_encode,
    signature,
    strip_signature,
)
from messaging.providers.base import (
    PermanentError,
    RetryableError,
)
from tests.messaging.aliyun_fake import FakeAliyun, expected_signature
from tests.messaging.provider_support import (
    FAST,
    IMPATIENT,
    closing_all,
    errors_from,
    everything_said_by,
    message_maker,
    without_proxies,
)

TO = "+8613800138000"
SIGN = "洁家家政"
CONTENT = (
    "王女士您好，今天的空调清洗已完成，服务报告：https://hf.example/r/abc?x=1&y=a b*~ 回复T退订"
)
BODY = f"【{SIGN}】{CONTENT}"
message = message_maker(message_id=42, to=TO, body=BODY, signature=SIGN)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    without_proxies(monkeypatch)


@pytest.fixture
def aliyun() -> Iterator[FakeAliyun]:
    with FakeAliyun() as fake:
        yield fake


@pytest.fixture
def make_provider(aliyun: FakeAliyun) -> Iterator[Callable[..., AliyunProvider]]:
    def build(**overrides: object) -> AliyunProvider:
        options: dict[str, object] = {
            "access_key_id": aliyun.access_key_id,
            "access_key_secret": aliyun.access_key_secret,
            "api_base": aliyun.base_url,
            "template_code": aliyun.template_code,
            "timeout": FAST,
        }
        options.update(overrides)
        return AliyunProvider(**options)  # type: ignore[arg-type]

    yield from closing_all(build)


# -- the signing rules ---------------------------------------------------------------------


def test_signature_matches_aliyuns_documented_example():
    # The worked example of Aliyun's "signature mechanism" page (DescribeRegions, GET).
    params = {
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "Format": "XML",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Timestamp": "2016-02-23T12:46:24Z",
        "Version": "2014-05-26",
    }
    assert signature("testsecret", params, method="GET") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    assert expected_signature("testsecret", "GET", params) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_percent_encoding_follows_aliyuns_rules():
    assert percent_encode("a b*c~d-_.") == "a%20b%2Ac~d-_."
    assert percent_encode("/+=&%") == "%2F%2B%3D%26%25"
    assert percent_encode("洁") == "%E6%B4%81"
    assert encode_form({"b": "2 3", "a": "1"}) == "a=1&b=2%203"


def test_numbers():
    assert aliyun_number("+8613800138000") == "13800138000"
    assert aliyun_number("+85291234567") == "85291234567"
    assert aliyun_number("+14155552671") == "14155552671"
    for bad in ("13800138000", "+86010123456", "+8612345", ""):
        with pytest.raises(PermanentError) as caught:
            aliyun_number(bad)
        assert caught.value.code == "isv.MOBILE_NUMBER_ILLEGAL"


def test_strip_signature():
    assert strip_signature(BODY, SIGN) == CONTENT
    assert strip_signature("没有签名的正文", SIGN) == "没有签名的正文"
    assert strip_signature("【别家】正文", SIGN) == "【别家】正文"


def test_business_limit_wait_reads_aliyuns_window():
    assert business_limit_wait("触发分钟级流控Permits:1") == 60
    assert business_limit_wait("触发小时级流控Permits:5") == 3600
    assert business_limit_wait("触发天级流控Permits:10") == 86400
    assert business_limit_wait("") == 3600


# -- the wire format -----------------------------------------------------------------------


def test_sends_every_parameter_signed(aliyun, make_provider):
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result = make_provider().send(message())
    after = dt.datetime.now(dt.UTC)

    assert len(aliyun.received) == 1
    request = aliyun.received[0]
    assert (request.method, request.path) == ("POST", "/")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert set(request.params) == {
        "AccessKeyId",
        "Action",
        "Format",
        "RegionId",
        "SignatureMethod",
        "SignatureNonce",
        "SignatureVersion",
        "Timestamp",
        "Version",
        "Signature",
        "PhoneNumbers",
        "SignName",
        "TemplateCode",
        "TemplateParam",
        "OutId",
    }
    assert request.signature_ok  # recomputed by the fake from what it received
    assert request.param("AccessKeyId") == aliyun.access_key_id
    assert request.param("Action") == "SendSms"
    assert request.param("Version") == "2017-05-25"
    assert request.param("Format") == "JSON"
    assert request.param("RegionId") == "cn-hangzhou"
    assert request.param("SignatureMethod") == "HMAC-SHA1"
    assert request.param("SignatureVersion") == "1.0"
    stamp = request.param("Timestamp") or ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    sent_at = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert before <= sent_at <= after
    assert re.fullmatch(r"[0-9a-f-]{36}", request.param("SignatureNonce") or "")
    assert request.param("PhoneNumbers") == "13800138000"  # +86 stripped
    assert request.param("SignName") == SIGN
    assert request.param("TemplateCode") == aliyun.template_code
    assert request.param("OutId") == "42"
    # The body without its 【signature】, Chinese, the full-width comma and URL characters intact.
    assert request.template_param() == {"content": CONTENT}
    assert SIGN not in request.template_param()["content"]
    assert "王女士" in (request.param("TemplateParam") or "")  # not \u escapes
    assert b" " not in request.body and b"+" not in request.body  # spaces as %20

    assert aliyun.accepted == [request]
    assert request.answer is not None
    assert result.provider_message_id == request.answer["BizId"]
    assert result.status == "sent"


def test_message_template_and_params_win(aliyun, make_provider):
    params = {"name": "王女士", "link": "https://hf.example/r/abc"}
    make_provider(region_id="cn-shanghai").send(
        message(template_code="SMS_460000002", template_params=params)
    )

    request = aliyun.accepted[0]
    assert request.param("TemplateCode") == "SMS_460000002"
    assert request.template_param() == params
    assert request.param("RegionId") == "cn-shanghai"


def test_each_request_has_a_fresh_nonce(aliyun, make_provider):
    provider = make_provider()
    provider.send(message())
    provider.send(message(message_id=43))

    nonces = {r.param("SignatureNonce") for r in aliyun.accepted}
    assert len(nonces) == 2
    assert [r.param("OutId") for r in aliyun.accepted] == ["42", "43"]


def test_international_number_keeps_its_country_code(aliyun, make_provider):
    make_provider().send(message(to="+85291234567"))

    assert aliyun.accepted[0].param("PhoneNumbers") == "85291234567"


def test_the_fake_refuses_what_aliyun_refuses(aliyun, make_provider):
    """The tests above mean something only if the fake checks like Aliyun does."""
    provider = make_provider()
    base = {
        "Action": "SendSms",
        "Version": "2017-05-25",
        "RegionId": "cn-hangzhou",
        "PhoneNumbers": "13800138000",
        "SignName": SIGN,
        "TemplateCode": aliyun.template_code,
        "TemplateParam": '{"content":"好"}',
        "OutId": "1",
    }

    def post(params: dict[str, str], **sign: object) -> dict[str, object]:
        signed = provider.sign(params, **sign)  # type: ignore[arg-type]
        with httpx.Client(timeout=FAST) as client:
            answer = client.post(
                aliyun.base_url + "/",
                content=encode_form(signed),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        return dict(answer.json())

    assert post(base)["Code"] == "OK"
    assert post({**base, "PhoneNumbers": "8613800138000"})["Code"] == "isv.MOBILE_NUMBER_ILLEGAL"
    assert post({**base, "PhoneNumbers": "12800138000"})["Code"] == "isv.MOBILE_NUMBER_ILLEGAL"
    assert post({**base, "TemplateParam": "content=好"})["Code"] == "isv.INVALID_JSON_PARAM"
    assert post({**base, "TemplateParam": "{}"})["Code"] == "isv.TEMPLATE_MISSING_PARAMETERS"
    assert post({**base, "SignName": "别家"})["Code"] == "isv.SMS_SIGNATURE_ILLEGAL"
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    assert post(base, now=old)["Code"] == "InvalidTimeStamp.Expired"
    assert post(base, nonce="same")["Code"] == "OK"
    assert post(base, nonce="same")["Code"] == "SignatureNonceUsed"
    assert post(base, method="GET")["Code"] == "SignatureDoesNotMatch"  # signed for GET, POSTed
    without_ts = {k: v for k, v in provider.sign(base).items() if k != "Timestamp"}
    with httpx.Client(timeout=FAST) as client:
        answer = client.post(aliyun.base_url + "/", data=without_ts)
    assert answer.json()["Code"] == "MissingParameter"
    assert len(aliyun.accepted) == 2


# -- refusals --------------------------------------------------------------------------------


def test_unapproved_signature_refused_by_the_fake(aliyun, make_provider):
    with pytest.raises(PermanentError) as caught:
        make_provider().send(message(signature="别家", body="【别家】你好"))

    assert caught.value.code == "isv.SMS_SIGNATURE_ILLEGAL"
    assert aliyun.received[0].signature_ok


def test_unapproved_template_refused_by_the_fake(aliyun, make_provider):
    with pytest.raises(PermanentError) as caught:
        make_provider(template_code="SMS_999").send(message())

    assert caught.value.code == "isv.SMS_TEMPLATE_ILLEGAL"


def test_missing_template_variable_refused_by_the_fake(aliyun, make_provider):
    with pytest.raises(PermanentError) as caught:
        make_provider().send(
            message(template_code="SMS_460000002", template_params={"name": "王女士"})
        )

    assert caught.value.code == "isv.TEMPLATE_MISSING_PARAMETERS"


def test_unknown_access_key_is_permanent(aliyun, make_provider):
    with pytest.raises(PermanentError) as caught:
        make_provider(access_key_id="LTAInobody").send(message())

    assert caught.value.code == "InvalidAccessKeyId.NotFound"
    assert aliyun.received[0].answer_status == 404


@pytest.mark.parametrize(
    ("overrides", "provider_overrides", "words"),
    [
        ({}, {"template_code": None}, "HUIFANG_ALIYUN_TEMPLATE_CODE"),
        ({"signature": ""}, {}, "signature"),
        ({"to": "+8602112345678"}, {}, "landline"),
        ({"media_urls": ("https://hf.example/a.jpg",)}, {}, "plain text"),
    ],
)
def test_refused_before_any_request(aliyun, make_provider, overrides, provider_overrides, words):
    with pytest.raises(PermanentError) as caught:
        make_provider(**provider_overrides).send(message(**overrides))

    assert words in caught.value.detail
    assert aliyun.received == []


# -- try again later -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aliyun_message", "wait"),
    [
        ("触发分钟级流控Permits:1", 60.0),
        ("触发小时级流控Permits:5", 3600.0),
        ("触发天级流控Permits:10", 86400.0),
        ("业务限流", 3600.0),
    ],
)
def test_per_number_limit_is_retryable_later(aliyun, make_provider, aliyun_message, wait):
    aliyun.fail_next("isv.BUSINESS_LIMIT_CONTROL", message=aliyun_message)

    with pytest.raises(RetryableError) as caught:
        make_provider().send(message())

    assert caught.value.code == "isv.BUSINESS_LIMIT_CONTROL"
    assert caught.value.retry_after == wait
    assert "frequency limit" in caught.value.detail


def test_daily_quota_waits_for_beijing_midnight(aliyun, make_provider):
    aliyun.fail_next("isv.DAY_LIMIT_CONTROL", message="触发日发送限额")

    with pytest.raises(RetryableError) as caught:
        make_provider().send(message())

    assert caught.value.retry_after is not None
    assert 60 <= caught.value.retry_after <= 86400 + 60


@pytest.mark.parametrize(
    ("code", "status"),
    [("Throttling.User", 400), ("isp.SYSTEM_ERROR", 200), ("ServiceUnavailable", 503)],
)
def test_busy_and_system_errors_are_retryable(aliyun, make_provider, code, status):
    aliyun.fail_next(code, status=status)

    with pytest.raises(RetryableError) as caught:
        make_provider().send(message())

    assert type(caught.value) is RetryableError
    assert caught.value.code == code


# -- settings ------------------------------------------------------------------------------


def test_credentials_are_required():
    with pytest.raises(ValueError, match="AccessKey ID"):
        AliyunProvider(access_key_id="", access_key_secret="s")
    with pytest.raises(ValueError, match="AccessKey secret"):
        AliyunProvider(access_key_id="LTAIx", access_key_secret="")


# -- secrets ---------------------------------------------------------------------------------


def test_secret_never_appears_in_errors(aliyun, make_provider):
    secret = aliyun.access_key_secret
    provider = make_provider()
    hanging = make_provider(timeout=IMPATIENT)
    scenarios: list[tuple[Callable[[], None], AliyunProvider]] = [
        (lambda: aliyun.fail_next("isv.MOBILE_NUMBER_ILLEGAL"), provider),
        # A hostile or buggy upstream echoing the secret back must still not leak it.
        (lambda: aliyun.fail_next("isv.SOMETHING_NEW", message=f"bad {secret}&"), provider),
        (lambda: aliyun.fail_next("SignatureDoesNotMatch", message=f"key {secret}"), provider),
        (lambda: aliyun.fail_next("isv.BUSINESS_LIMIT_CONTROL"), provider),
        (lambda: aliyun.server_error_next(), provider),
        (lambda: aliyun.drop_next(), provider),
        (lambda: aliyun.hang_next(seconds=5), hanging),
    ]
    errors = errors_from(scenarios, message())

    for error in errors:
        assert secret not in everything_said_by(error), error
    assert secret not in repr(provider)
    assert "***" in str(errors[1])  # the echoed secret was scrubbed, not dropped silently
    assert json.dumps(secret) not in "".join(str(e) for e in errors)
