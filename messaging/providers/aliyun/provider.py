"""Aliyun (Alibaba Cloud) Short Message Service: one ``SendSms`` call per message.

Wire format (Dysmsapi, RPC style, API version 2017-05-25):

- ``POST {api_base}/`` with ``application/x-www-form-urlencoded`` parameters: the common ones
  ``AccessKeyId``, ``Action=SendSms``, ``Format=JSON``, ``RegionId``, ``SignatureMethod=HMAC-SHA1``,
  ``SignatureNonce`` (a fresh UUID), ``SignatureVersion=1.0``, ``Timestamp`` (ISO 8601 UTC,
  ``2026-01-02T03:04:05Z``), ``Version=2017-05-25``, and ``SendSms``'s own ``PhoneNumbers``,
  ``SignName``, ``TemplateCode``, ``TemplateParam`` (a JSON object as a string) and ``OutId``;
- ``Signature`` = base64(HMAC-SHA1(AccessKeySecret + "&", "POST&%2F&" + E(canonical))), where
  ``canonical`` is the parameters (all but ``Signature``) sorted by name, each ``E(name)=E(value)``,
  joined by "&", and ``E`` is UTF-8 percent-encoding that keeps only ``A-Z a-z 0-9 - _ . ~``
  (so a space is ``%20``, ``*`` is ``%2A``, ``~`` stays);
- the answer is JSON: ``{"Code": "OK", "Message": "OK", "BizId": "…", "RequestId": "…"}``, or
  ``{"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": …, "RequestId": …}``. Business refusals
  (``isv.*``, ``isp.*``) come with HTTP 200; gateway refusals (``SignatureDoesNotMatch``,
  ``InvalidAccessKeyId.NotFound``, ``Throttling.User``, ``MissingParameter`` …) with 4xx.

Aliyun only sends approved templates. The outbox sends each message as the company's
approved template of its purpose (``messaging.sms_templates``): ``template_code`` and
``template_params`` holding exactly that template's variables (none: no ``TemplateParam``).
A message naming no template (a direct call, not the outbox) falls back on the configured
code with ``{"content": <the body without its leading 【signature】>}``.

``PhoneNumbers``: a mainland number (+86) is sent as its 11 digits; other countries as country
code and number without "+" (``14155552671``), the form the SendSms documentation gives for
international and Hong Kong/Macao/Taiwan messages (those need an international template).

Aliyun has no idempotency for SendSms, so this adapter never retries by itself, and the one
question that matters is whether the request may have reached Aliyun: before it was written
(connection refused, DNS, connect timeout) → ``RetryableError``; after (read timeout, dropped
connection, a gateway timeout, an "OK" we cannot read) → ``RequestMayHaveLeft``.

Delivery results are not answers to this request: they arrive later as SmsReport pushes
carrying the ``BizId`` and our ``OutId``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx

from messaging.providers import http
from messaging.providers.aliyun.statuses import STATUS_MAP
from messaging.providers.base import (
    Capabilities,
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    RequestMayHaveLeft,
    RetryableError,
    SendResult,
)

if TYPE_CHECKING:
    from huifang.settings import Settings

DEFAULT_API_BASE = "https://dysmsapi.aliyuncs.com"
DEFAULT_REGION_ID = "cn-hangzhou"
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
API_VERSION = "2017-05-25"
CONTENT_PARAM = "content"  # the variable of the generic approved template "${content}"

# Aliyun's per-number frequency limits (isv.BUSINESS_LIMIT_CONTROL) come in three sizes; its
# Message says which one ("触发分钟级流控…", "触发小时级流控…", "触发天级流控…").
_LIMIT_WINDOWS: tuple[tuple[str, float], ...] = (("分钟", 60.0), ("小时", 3600.0), ("天", 86400.0))
_DEFAULT_LIMIT_WAIT = 3600.0
_CHINA = dt.timezone(dt.timedelta(hours=8))  # Aliyun's daily quotas reset at midnight Beijing time

_MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")

_ADMIN = "the administrator must fix the Aliyun SMS settings before anything can be sent"
_AUTH_PROBLEM = (
    "Aliyun refused the company's Aliyun credentials (AccessKey ID and AccessKey secret): they "
    "are wrong, disabled, or not allowed to send SMS; the administrator must correct "
    "HUIFANG_ALIYUN_ACCESS_KEY_ID and HUIFANG_ALIYUN_ACCESS_KEY_SECRET (and the RAM user's "
    "dysms:SendSms permission). Nothing was sent."
)
_CONSOLE = "the Aliyun SMS console (短信服务控制台)"

# Aliyun code → a sentence for the office. Codes not listed fall back on the HTTP status.
_PERMANENT: dict[str, str] = {
    "isv.MOBILE_NUMBER_ILLEGAL": "The customer's phone number is not a valid mobile number for "
    "Aliyun; correct it in the customer's record.",
    "isv.MOBILE_COUNT_OVER_LIMIT": "Aliyun was given too many phone numbers at once; "
    "this is a program error, report it to the administrator.",
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED": "The template used is an international one and cannot "
    "be sent to a mainland China number; " + _ADMIN + ".",
    "isv.SMS_SIGNATURE_ILLEGAL": "The SMS signature of this message is not an approved signature "
    f"of the company's Aliyun account; the administrator must check the signature in {_CONSOLE} "
    "and the company's signature setting.",
    "isv.SIGN_NAME_ILLEGAL": "The SMS signature of this message is not an approved signature "
    f"of the company's Aliyun account; the administrator must check it in {_CONSOLE}.",
    "isv.SMS_SIGN_ILLEGAL": "Aliyun has forbidden the use of this SMS signature; "
    f"the administrator must check the signature in {_CONSOLE}.",
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL": "The SMS signature and the template are of different "
    f"kinds (notification vs. marketing); {_ADMIN}.",
    "isv.SMS_TEMPLATE_ILLEGAL": "The SMS template used is not an approved template of the "
    f"company's Aliyun account; the administrator must check the template code in {_CONSOLE} "
    "and HUIFANG_ALIYUN_TEMPLATE_CODE.",
    "isv.TEMPLATE_MISSING_PARAMETERS": "The approved SMS template needs a value this message "
    "does not provide; the administrator must check that the template's variables match what "
    "Huifang sends.",
    "isv.TEMPLATE_PARAMS_ILLEGAL": "A value in the message contains words Aliyun does not allow "
    "in template variables; reword the message.",
    "isv.INVALID_JSON_PARAM": "Aliyun could not read the template values of this message; "
    "this is a program error, report it to the administrator.",
    "isv.INVALID_PARAMETERS": "Aliyun says a parameter of this message is malformed; "
    "check the customer's number and the message text.",
    "isv.PARAM_LENGTH_LIMIT": "A value in the message is longer than the approved template "
    "allows; shorten the message.",
    "isv.PARAM_NOT_SUPPORT_URL": "The approved template does not allow web links in its values; "
    "remove the link, or ask the administrator for a template with a link variable.",
    "isv.SMS_CONTENT_ILLEGAL": "Aliyun refused the message text because it contains content "
    "it does not allow; reword the message.",
    "isv.BLACK_KEY_CONTROL_LIMIT": "Aliyun refused the message text because it contains blocked "
    "words; reword the message.",
    "isv.AMOUNT_NOT_ENOUGH": "The company's Aliyun account has run out of money; the "
    "administrator must top up the account (or buy an SMS package), then send again.",
    "isv.OUT_OF_SERVICE": "The company's Aliyun account is suspended (usually overdue "
    "payment); the administrator must settle it in the Aliyun console, then send again.",
    "isv.ACCOUNT_NOT_EXISTS": _AUTH_PROBLEM,
    "isv.ACCOUNT_ABNORMAL": "Aliyun reports the company's account as abnormal; the "
    "administrator must contact Aliyun support. Nothing was sent.",
    "isv.PRODUCT_UN_SUBSCRIPT": "The company's Aliyun account has not activated Short Message "
    f"Service; the administrator must activate it in {_CONSOLE}.",
    "isv.PRODUCT_UNSUBSCRIBE": "The company's Aliyun account has not activated Short Message "
    f"Service; the administrator must activate it in {_CONSOLE}.",
    "isv.DENY_IP_RANGE": "Aliyun refuses requests from this server's address (IP allow-list); "
    f"{_ADMIN}.",
    "isp.RAM_PERMISSION_DENY": _AUTH_PROBLEM,
    "SignatureDoesNotMatch": _AUTH_PROBLEM,
    "IncompleteSignature": _AUTH_PROBLEM,
    "InvalidAccessKeyId.NotFound": _AUTH_PROBLEM,
    "InvalidAccessKeyId.Inactive": _AUTH_PROBLEM,
    "Forbidden.RAM": _AUTH_PROBLEM,
    "Forbidden.AccessKeyDisabled": _AUTH_PROBLEM,
    "InvalidTimeStamp.Expired": "Aliyun refused the request because this server's clock is "
    "wrong by more than 15 minutes; the administrator must set the server's time. "
    "Nothing was sent.",
    "InvalidApi.NotFound": f"The Aliyun address configured (HUIFANG_ALIYUN_API_BASE) is wrong; "
    f"{_ADMIN}.",
    "InvalidVersion": f"The Aliyun address configured (HUIFANG_ALIYUN_API_BASE) is wrong; "
    f"{_ADMIN}.",
}
_BUSY: dict[str, str] = {
    "Throttling": "Aliyun is receiving too many requests from this account right now; "
    "the message will be tried again shortly.",
    "Throttling.User": "Aliyun is receiving too many requests from this account right now; "
    "the message will be tried again shortly.",
    "Throttling.Api": "Aliyun is receiving too many requests right now; "
    "the message will be tried again shortly.",
    "isp.SYSTEM_ERROR": "Aliyun had a system error and did not send the message; "
    "it will be tried again later.",
    "ServiceUnavailable": "Aliyun SMS is temporarily unavailable; "
    "the message will be tried again later.",
    "InternalError": "Aliyun had an internal error and did not send the message; "
    "it will be tried again later.",
    # A nonce collision: Aliyun refused the request as a replay; the next try has a new nonce.
    "SignatureNonceUsed": "Aliyun refused the request as a repeat; it will be tried again shortly.",
}


_WORDING = http.Wording(
    provider="Aliyun",
    setting="HUIFANG_ALIYUN_API_BASE",
    admin=_ADMIN,
    auth=_AUTH_PROBLEM,
    busy=_BUSY["Throttling"],
    not_found=f"The Aliyun address configured (HUIFANG_ALIYUN_API_BASE) answers HTTP 404; "
    f"{_ADMIN}. Nothing was sent.",
    look_up="Look the code up in Aliyun's SMS error-code list and correct the message, the "
    "customer's number or the settings.",
)


class AliyunProvider(Provider):
    """Send plain SMS through Aliyun Dysmsapi ``SendSms`` (数字短信/MMS comes later)."""

    name = "aliyun"
    capabilities = Capabilities(
        supports_mms=False,  # SendSms is text only
        max_body_chars=500,  # Aliyun counts signature + content; long SMS up to 500 characters
        # 数字短信, which reports are made ready for: at most 9 frames and 1,900 KB in all
        # (Aliyun counts in KB; 1,900,000 bytes is the stricter reading), JPG/PNG/GIF and
        # MP4, and never a single kind of media.
        max_media=9,
        max_total_bytes=1_900_000,
        image_types=frozenset({"image/jpeg", "image/png", "image/gif"}),
        video_types=frozenset({"video/mp4"}),
        frames=True,
        must_mix=True,
        rate_per_second=50,  # well under SendSms's per-account QPS
        approved_templates=True,
    )
    status_map = STATUS_MAP

    def __init__(
        self,
        *,
        access_key_id: str,
        access_key_secret: str,
        template_code: str | None = None,
        api_base: str = DEFAULT_API_BASE,
        region_id: str = DEFAULT_REGION_ID,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        client: httpx.Client | None = None,
    ) -> None:
        if not access_key_id:
            raise ValueError("Aliyun needs an AccessKey ID (HUIFANG_ALIYUN_ACCESS_KEY_ID)")
        if not access_key_secret:
            raise ValueError("Aliyun needs an AccessKey secret (HUIFANG_ALIYUN_ACCESS_KEY_SECRET)")
        self._access_key_id = access_key_id
        # Kept only to sign, and to scrub it out of any text we hand back; never printed.
        self._secret = access_key_secret
        self._template_code = template_code or None
        self._region_id = region_id or DEFAULT_REGION_ID
        self._url = api_base.rstrip("/") + "/"
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=self._timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> AliyunProvider:
        return cls(
            access_key_id=settings.aliyun_access_key_id or "",
            access_key_secret=settings.aliyun_access_key_secret or "",
            template_code=settings.aliyun_template_code,
            api_base=settings.aliyun_api_base,
            region_id=settings.aliyun_region_id,
        )

    def __repr__(self) -> str:
        return (
            f"AliyunProvider(access_key_id={self._access_key_id!r}, "
            f"template_code={self._template_code!r})"
        )

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # -- sending ---------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        params = self.sign(self._params(message))
        response = http.post(
            self._client,
            self._url,
            provider="Aliyun",
            setting="HUIFANG_ALIYUN_API_BASE",
            may_have_left=lambda exc: self._may_have_left(exc, message),
            content=encode_form(params).encode("ascii"),
            timeout=self._timeout,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        return self._result(response, message)

    def _params(self, message: OutboundMessage) -> dict[str, str]:
        """SendSms's own parameters, or ``PermanentError`` for what Aliyun would refuse anyway."""
        if message.media_urls:
            raise PermanentError(
                "The message has pictures or videos, but the Aliyun SMS provider sends plain "
                "text only; send it without them.",
            )
        max_chars = self.capabilities.max_body_chars
        if len(message.body) > max_chars:
            raise PermanentError(
                f"The message text has {len(message.body)} characters; Aliyun takes at most "
                f"{max_chars} (signature included). Shorten it and send again.",
                code="isv.PARAM_LENGTH_LIMIT",
            )
        template_code = message.template_code or self._template_code
        if not template_code:
            raise PermanentError(
                "No approved Aliyun SMS template is configured, and Aliyun only sends approved "
                "templates; the administrator must set HUIFANG_ALIYUN_TEMPLATE_CODE. "
                "Nothing was sent.",
                code="isv.SMS_TEMPLATE_ILLEGAL",
            )
        if not message.signature:
            raise PermanentError(
                "The message has no SMS signature (签名), which Aliyun requires; the "
                "administrator must set the company's approved signature. Nothing was sent.",
                code="isv.SMS_SIGNATURE_ILLEGAL",
            )
        if message.template_code:
            # The outbox's template of the message's purpose: exactly its variables (a
            # template without variables takes no TemplateParam at all).
            variables = dict(message.template_params)
        else:
            variables = dict(message.template_params) or {
                CONTENT_PARAM: strip_signature(message.body, message.signature)
            }
        params = {
            "Action": "SendSms",
            "Version": API_VERSION,
            "RegionId": self._region_id,
            "PhoneNumbers": aliyun_number(message.to),
            "SignName": message.signature,
            "TemplateCode": template_code,
            "OutId": str(message.message_id),
        }
        if variables:
            params["TemplateParam"] = json.dumps(
                variables, ensure_ascii=False, separators=(",", ":")
            )
        return params

    def sign(
        self,
        params: Mapping[str, str],
        *,
        method: str = "POST",
        now: dt.datetime | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """``params`` with the common parameters and ``Signature`` added."""
        when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        signed = {
            "AccessKeyId": self._access_key_id,
            "Format": "JSON",
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": nonce or str(uuid.uuid4()),
            "SignatureVersion": "1.0",
            "Timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            **params,
        }
        signed["Signature"] = signature(self._secret, signed, method=method)
        return signed

    def _may_have_left(self, exc: BaseException, message: OutboundMessage) -> str:
        return self._scrub(
            "The connection to Aliyun broke after the message was handed over "
            f"({type(exc).__name__}), so it may have been sent. It will not be sent again "
            f"automatically: look for this customer's number in {_CONSOLE} under 发送记录 "
            f"(the message's OutId is {message.message_id}), then mark the message sent or "
            "send it again by hand."
        )

    # -- answers ---------------------------------------------------------------------------

    def _result(self, response: httpx.Response, message: OutboundMessage) -> SendResult:
        status = response.status_code
        payload = http.json_object(response)
        code = payload.get("Code") if isinstance(payload.get("Code"), str) else None
        aliyun_says = self._scrub(str(payload.get("Message") or "")).strip()[:300]
        look_up = (
            f"look for this customer's number in {_CONSOLE} under 发送记录 (OutId "
            f"{message.message_id})"
        )

        if 200 <= status < 300 and code == "OK":
            biz_id = payload.get("BizId")
            if isinstance(biz_id, str) and biz_id:
                return SendResult(provider_message_id=biz_id, status="sent")
        if 200 <= status < 300 and code in (None, "OK"):
            # Aliyun (or something in between) said yes, or we cannot tell what it said.
            raise RequestMayHaveLeft(
                f"Aliyun answered (HTTP {status}) but its answer could not be read, so the "
                f"message may have been sent. It will not be sent again automatically: "
                f"{look_up}."
            )
        raise http.refusal(
            response,
            wording=_WORDING,
            code=code,
            says=aliyun_says,
            by_code=_by_code(response, code, aliyun_says),
            where_to_look=look_up,
        )

    def _scrub(self, text: str) -> str:
        return http.scrub(text, (self._secret, percent_encode(self._secret)))


def _by_code(response: httpx.Response, code: str | None, aliyun_says: str) -> ProviderError | None:
    """What Aliyun's Code says, where we have a sentence for it."""
    if code == "isv.BUSINESS_LIMIT_CONTROL":
        return RetryableError(
            "Aliyun's per-number frequency limit was reached for this customer (too many "
            "messages to the same number in a short time); nothing was sent and it will "
            "be tried again later.",
            code=code,
            retry_after=business_limit_wait(aliyun_says),
        )
    if code == "isv.DAY_LIMIT_CONTROL":
        return RetryableError(
            "The company's daily Aliyun SMS quota (set in the Aliyun SMS console) is used "
            "up; nothing was sent and it will be tried again after midnight (Beijing "
            "time). The administrator can raise the quota.",
            code=code,
            retry_after=_seconds_to_china_midnight(),
        )
    if code is not None and code in _BUSY:
        return RetryableError(
            _BUSY[code], code=code, retry_after=http.retry_after(response.headers)
        )
    if code is not None and code in _PERMANENT:
        return PermanentError(_PERMANENT[code], code=code)
    return None


# -- the wire format, public for the tests ---------------------------------------------------


def percent_encode(value: str) -> str:
    """Aliyun's encoding: UTF-8, only ``A-Z a-z 0-9 - _ . ~`` left as they are."""
    return quote(value, safe="")  # quote always keeps "-_.~" and alphanumerics


def encode_form(params: Mapping[str, str]) -> str:
    """The canonicalized query string: sorted by name, percent-encoded, joined by "&"."""
    return "&".join(
        f"{percent_encode(name)}={percent_encode(value)}" for name, value in sorted(params.items())
    )


def signature(secret: str, params: Mapping[str, str], *, method: str = "POST") -> str:
    """Signature version 1.0 of an RPC request over every parameter but ``Signature``."""
    canonical = encode_form({k: v for k, v in params.items() if k != "Signature"})
    string_to_sign = f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def aliyun_number(to: str) -> str:
    """E.164 → ``PhoneNumbers``: 11 digits for mainland China, else digits without "+"."""
    number = to.strip()
    if not _E164.match(number):
        raise PermanentError(
            f"The customer's phone number ({number or 'empty'}) is not in international form "
            "(+86…); correct it in the customer's record.",
            code="isv.MOBILE_NUMBER_ILLEGAL",
        )
    if number.startswith("+86"):
        national = number[3:]
        if not _MAINLAND_MOBILE.match(national):
            raise PermanentError(
                "The customer's mainland China number is not an 11-digit mobile number "
                "(probably a landline), and cannot receive text messages; ask the customer "
                "for a mobile number.",
                code="isv.MOBILE_NUMBER_ILLEGAL",
            )
        return national
    return number[1:]


def strip_signature(body: str, sign_name: str) -> str:
    """The body without its leading 【signature】: Aliyun adds the signature itself."""
    prefix = f"【{sign_name}】"
    return body[len(prefix) :].lstrip() if body.startswith(prefix) else body


def business_limit_wait(aliyun_message: str) -> float:
    """Seconds to wait after isv.BUSINESS_LIMIT_CONTROL, from the window Aliyun names."""
    for word, seconds in _LIMIT_WINDOWS:
        if word in aliyun_message:
            return seconds
    return _DEFAULT_LIMIT_WAIT


def _seconds_to_china_midnight(now: dt.datetime | None = None) -> float:
    local = (now or dt.datetime.now(dt.UTC)).astimezone(_CHINA)
    midnight = (local + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - local).total_seconds() + 60.0  # a minute's margin past the reset


__all__ = [
    "API_VERSION",
    "CONTENT_PARAM",
    "DEFAULT_API_BASE",
    "DEFAULT_TIMEOUT",
    "AliyunProvider",
    "aliyun_number",
    "business_limit_wait",
    "encode_form",
    "percent_encode",
    "signature",
    "strip_signature",
]
