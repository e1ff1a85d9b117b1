"""A local stand-in for Aliyun Dysmsapi ``SendSms``, speaking its RPC wire format on 127.0.0.1.

    with FakeAliyun() as aliyun:
        provider = AliyunProvider(access_key_id=aliyun.access_key_id,
                                  access_key_secret=aliyun.access_key_secret,
                                  api_base=aliyun.base_url, template_code=aliyun.template_code)
        provider.send(...)
        assert aliyun.accepted[0].param("PhoneNumbers") == "13800138000"

It checks what Aliyun checks, in Aliyun's order: the common parameters (``Action``, ``Version``,
``Format``, ``SignatureMethod``/``SignatureVersion``, ``Timestamp`` as ``YYYY-MM-DDThh:mm:ssZ``
within 15 minutes, a ``SignatureNonce`` never used before), the AccessKey ID, then the
signature, recomputed here from the parameters received and the secret (its own encoder, written
the way Aliyun's documentation describes, independent of the adapter's); then SendSms's rules:
``PhoneNumbers`` (11 digits for mainland China: stricter than Aliyun, which also takes +86/0086
prefixes, because we promise to strip them), an approved ``SignName`` and ``TemplateCode``,
``TemplateParam`` a JSON object of strings covering the template's variables, ``OutId`` under 256
characters. It answers Aliyun-shaped JSON, and can be told to misbehave for the next
request(s): ``fail_next`` (any Code), ``rate_limit_next``, ``server_error_next``, ``hang_next``,
``drop_next``.

``received`` holds every request that was read in full (whatever the answer); ``accepted`` holds
those that sent a message, including the ones whose answer was then lost. The server, the
misbehaviour queue and that record are fake_http.py's, shared with the Twilio fake; this module
is Aliyun's wire format only.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, quote_plus

from tests.messaging import fake_http

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")
INTERNATIONAL = re.compile(r"^[2-9]\d{6,14}$|^1\d{10}$")  # country code + number, no "+"
HOST_ID = "dysmsapi.aliyuncs.com"
COMMON = (
    "AccessKeyId",
    "Action",
    "Format",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureVersion",
    "Timestamp",
    "Version",
    "Signature",
)


def aliyun_encode(value: str) -> str:
    """Percent-encoding as Aliyun's documentation describes it: form-encode, then fix up."""
    return quote_plus(value, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def expected_signature(secret: str, method: str, params: dict[str, str]) -> str:
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(aliyun_encode(k) + "=" + aliyun_encode(v) for k, v in pairs)
    to_sign = method + "&" + aliyun_encode("/") + "&" + aliyun_encode(canonical)
    mac = hmac.new((secret + "&").encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


@dataclass
class ReceivedRequest(fake_http.ReceivedRequest):
    """A request to the fake Aliyun, with its parameters and whether its signature held."""

    params: dict[str, list[str]] = field(default_factory=dict)  # query and form together
    signature_ok: bool = False

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None

    def template_param(self) -> dict[str, Any]:
        return dict(json.loads(self.param("TemplateParam") or "{}"))


def error_body(code: str, message: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "RequestId": str(uuid.uuid4()).upper(),
        "Code": code,
        "Message": message,
    }
    if not code.startswith(("isv.", "isp.")):  # gateway errors carry the host and a hint
        body["HostId"] = HOST_ID
        body["Recommend"] = f"https://next.api.aliyun.com/troubleshoot?q={code}"
    return body


class FakeAliyun(fake_http.LocalFake[ReceivedRequest]):
    """A threaded HTTP server on 127.0.0.1 with a random port; use it as a context manager."""

    request_type = ReceivedRequest
    server_version = "FakeAliyun/1.0"

    def __init__(
        self,
        *,
        access_key_id: str | None = None,
        access_key_secret: str | None = None,
        sign_names: set[str] | None = None,
        templates: dict[str, set[str]] | None = None,
    ) -> None:
        super().__init__()
        self.access_key_id = access_key_id or "LTAI" + secrets.token_hex(10)
        self.access_key_secret = access_key_secret or secrets.token_urlsafe(22)
        self.sign_name = "洁家家政"
        self.template_code = "SMS_460000001"  # the generic "${content}" template
        self.sign_names: set[str] = set(sign_names or {self.sign_name})
        # approved template code → its variables
        self.templates: dict[str, set[str]] = dict(
            templates or {self.template_code: {"content"}, "SMS_460000002": {"name", "link"}}
        )
        self.nonces: set[str] = set()

    # -- misbehaviour for the next request(s): Aliyun's errors -----------------------------

    def fail_next(
        self, code: str, *, message: str | None = None, status: int | None = None, times: int = 1
    ) -> None:
        """Answer the next request(s) with an Aliyun error body; business codes get HTTP 200."""
        if status is None:
            status = 200 if code.startswith(("isv.", "isp.")) else 400
        payload = error_body(code, message or f"Aliyun error {code}")
        self._answer_next(status, payload, times=times)

    def server_error_payload(self, status: int) -> dict[str, Any]:
        return error_body(
            "InternalError",
            "The request processing has failed due to some unknown error, exception or failure.",
        )

    def rate_limit_payload(self) -> dict[str, Any]:
        # Aliyun's gateways answer flow control with HTTP 400 or 429, depending on the product.
        return error_body("Throttling.User", "Request was denied due to user flow control.")

    # -- Aliyun's wire format ----------------------------------------------------------------

    def parse(self, request: ReceivedRequest, query: str, http_headers: Message) -> None:
        """The parameters: those of the query string, then those of a form body."""
        params = parse_qs(query, keep_blank_values=True)
        if request.headers.get("content-type", "").startswith(fake_http.FORM):
            form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)
            for name, values in form.items():
                params.setdefault(name, []).extend(values)
        request.params = params

    def accepts(self, status: int, payload: dict[str, Any]) -> bool:
        return payload.get("Code") == "OK"

    def encode(self, payload: dict[str, Any] | None) -> tuple[str, bytes]:
        if payload is None:
            return "text/html", b"<html><body>502 Bad Gateway</body></html>"
        return "application/json;charset=utf-8", json.dumps(payload, ensure_ascii=False).encode()

    def answer_headers(self) -> dict[str, str]:
        return {"x-acs-request-id": str(uuid.uuid4()).upper()}

    # -- Aliyun's rules ----------------------------------------------------------------------

    def handle(self, request: ReceivedRequest) -> tuple[int, dict[str, Any]]:
        """Authenticate, validate and send, as Aliyun does; returns (status, JSON)."""
        if any(len(values) > 1 for values in request.params.values()):
            return 400, error_body("InvalidParameter", "A parameter was given twice.")
        p = {name: values[0] for name, values in request.params.items()}
        if request.method not in ("GET", "POST") or request.path != "/":
            return 404, error_body("InvalidApi.NotFound", "Specified api is not found.")
        for name in COMMON:
            if not p.get(name):
                return 400, error_body(
                    "MissingParameter" if name != "Signature" else "IncompleteSignature",
                    f'The input parameter "{name}" that is mandatory for processing this '
                    "request is not supplied.",
                )
        if p["Version"] != "2017-05-25":
            return 400, error_body("InvalidVersion", "Specified parameter Version is not valid.")
        if p["Action"] != "SendSms":
            return 404, error_body("InvalidAction.NotFound", "Specified api is not found.")
        if p["Format"] not in ("JSON", "json"):
            return 400, error_body("InvalidParameter", "Format must be JSON for this fake.")
        if p["SignatureMethod"] != "HMAC-SHA1" or p["SignatureVersion"] != "1.0":
            return 400, error_body(
                "InvalidSignatureMethod", "Specified signature method is not supported."
            )
        if not TIMESTAMP.match(p["Timestamp"]):
            return 400, error_body(
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            )
        sent_at = dt.datetime.strptime(p["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        if abs((dt.datetime.now(dt.UTC) - sent_at).total_seconds()) > 15 * 60:
            return 400, error_body(
                "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."
            )
        if p["AccessKeyId"] != self.access_key_id:
            return 404, error_body(
                "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        wanted = expected_signature(self.access_key_secret, request.method, p)
        if not hmac.compare_digest(wanted, p["Signature"]):
            canonical_hint = "POST&%2F&…"  # Aliyun echoes its string-to-sign, never the secret
            return 400, error_body(
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. server string to "
                f"sign is:{canonical_hint}",
            )
        request.signature_ok = True
        with self._lock:
            if p["SignatureNonce"] in self.nonces:
                return 400, error_body(
                    "SignatureNonceUsed", "Specified signature nonce was used already."
                )
            self.nonces.add(p["SignatureNonce"])
        return self._send_sms(p)

    def _send_sms(self, p: dict[str, str]) -> tuple[int, dict[str, Any]]:
        numbers = p.get("PhoneNumbers", "")
        if not numbers:
            return 400, error_body(
                "MissingPhoneNumbers", "PhoneNumbers is mandatory for this action."
            )
        for number in numbers.split(","):
            if number.startswith("1") and len(number) == 11:
                if not MAINLAND_MOBILE.match(number):
                    return 200, error_body("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
            elif not INTERNATIONAL.match(number) or number.startswith("86"):
                return 200, error_body("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if p.get("SignName") not in self.sign_names:
            return 200, error_body("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        template = self.templates.get(p.get("TemplateCode", ""))
        if template is None:
            return 200, error_body("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        try:
            variables = json.loads(p.get("TemplateParam") or "{}")
        except ValueError:
            return 200, error_body("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        if not isinstance(variables, dict) or not all(
            isinstance(value, str) for value in variables.values()
        ):
            return 200, error_body("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        if not template <= set(variables):
            return 200, error_body("isv.TEMPLATE_MISSING_PARAMETERS", "模板变量中存在未赋值变量")
        if len(p.get("OutId", "")) >= 256:
            return 200, error_body("isv.INVALID_PARAMETERS", "OutId 长度须小于 256")
        biz_id = f"{secrets.randbelow(10**18):018d}^0"
        return 200, {
            "RequestId": str(uuid.uuid4()).upper(),
            "Message": "OK",
            "BizId": biz_id,
            "Code": "OK",
        }
