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
request(s): ``fail_next`` (any Code), ``server_error_next``, ``hang_next``, ``drop_next``.

``received`` holds every request that was read in full (whatever the answer); ``accepted`` holds
those that sent a message, including the ones whose answer was then lost.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import socket
import struct
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")
INTERNATIONAL = re.compile(r"^[2-9]\d{6,14}$|^1\d{10}$")  # country code + number, no "+"
HOST_ID = "dysmsapi.aliyuncs.com"
COMMON = ("AccessKeyId", "Action", "Format", "SignatureMethod", "SignatureNonce",
          "SignatureVersion", "Timestamp", "Version", "Signature")


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
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, list[str]] = field(default_factory=dict)  # query and form together
    signature_ok: bool = False
    answer_status: int | None = None  # None when the answer was withheld (hang, drop)
    answer: dict[str, Any] | None = None  # the JSON sent back, or that would have been

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None

    def template_param(self) -> dict[str, Any]:
        return dict(json.loads(self.param("TemplateParam") or "{}"))


@dataclass
class _Misbehaviour:
    kind: str  # error | hang | drop
    status: int = 200
    payload: dict[str, Any] | None = None
    seconds: float = 0.0
    deliver: bool = True  # hang/drop: send the message first (the ambiguous case)
    reset: bool = False  # drop: RST instead of a clean close


def error_body(code: str, message: str) -> dict[str, Any]:
    body: dict[str, Any] = {"RequestId": str(uuid.uuid4()).upper(), "Code": code,
                            "Message": message}
    if not code.startswith(("isv.", "isp.")):  # gateway errors carry the host and a hint
        body["HostId"] = HOST_ID
        body["Recommend"] = f"https://next.api.aliyun.com/troubleshoot?q={code}"
    return body


class FakeAliyun:
    """A threaded HTTP server on 127.0.0.1 with a random port; use it as a context manager."""

    def __init__(
        self,
        *,
        access_key_id: str | None = None,
        access_key_secret: str | None = None,
        sign_names: set[str] | None = None,
        templates: dict[str, set[str]] | None = None,
    ) -> None:
        self.access_key_id = access_key_id or "LTAI" + secrets.token_hex(10)
        self.access_key_secret = access_key_secret or secrets.token_urlsafe(22)
        self.sign_name = "洁家家政"
        self.template_code = "SMS_460000001"  # the generic "${content}" template
        self.sign_names: set[str] = set(sign_names or {self.sign_name})
        # approved template code → its variables
        self.templates: dict[str, set[str]] = dict(
            templates or {self.template_code: {"content"}, "SMS_460000002": {"name", "link"}}
        )
        self.received: list[ReceivedRequest] = []
        self.accepted: list[ReceivedRequest] = []
        self.nonces: set[str] = set()
        self._plan: deque[_Misbehaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeAliyun:
        fake = self

        class Handler(_Handler):
            aliyun = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAliyun:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- misbehaviour for the next request(s) ---------------------------------------------

    def fail_next(self, code: str, *, message: str | None = None, status: int | None = None,
                  times: int = 1) -> None:
        """Answer the next request(s) with an Aliyun error body; business codes get HTTP 200."""
        if status is None:
            status = 200 if code.startswith(("isv.", "isp.")) else 400
        payload = error_body(code, message or f"Aliyun error {code}")
        self._queue(_Misbehaviour("error", status, payload), times)

    def server_error_next(self, *, status: int = 500, json_body: bool = True,
                          times: int = 1) -> None:
        payload = error_body("InternalError", "The request processing has failed due to some "
                             "unknown error, exception or failure.")
        self._queue(_Misbehaviour("error", status, payload if json_body else None), times)

    def hang_next(self, *, seconds: float = 5.0, deliver: bool = True, times: int = 1) -> None:
        """Read the request (sending the message when ``deliver``), then say nothing."""
        self._queue(_Misbehaviour("hang", seconds=seconds, deliver=deliver), times)

    def drop_next(self, *, deliver: bool = True, reset: bool = False, times: int = 1) -> None:
        """Read the request (sending the message when ``deliver``), then close the socket."""
        self._queue(_Misbehaviour("drop", deliver=deliver, reset=reset), times)

    def _queue(self, step: _Misbehaviour, times: int) -> None:
        with self._lock:
            self._plan.extend([step] * times)

    def _next_step(self) -> _Misbehaviour | None:
        with self._lock:
            return self._plan.popleft() if self._plan else None

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
                    f"The input parameter \"{name}\" that is mandatory for processing this "
                    "request is not supplied.",
                )
        if p["Version"] != "2017-05-25":
            return 400, error_body("InvalidVersion", "Specified parameter Version is not valid.")
        if p["Action"] != "SendSms":
            return 404, error_body("InvalidAction.NotFound", "Specified api is not found.")
        if p["Format"] not in ("JSON", "json"):
            return 400, error_body("InvalidParameter", "Format must be JSON for this fake.")
        if p["SignatureMethod"] != "HMAC-SHA1" or p["SignatureVersion"] != "1.0":
            return 400, error_body("InvalidSignatureMethod", "Specified signature method is "
                                   "not supported.")
        if not TIMESTAMP.match(p["Timestamp"]):
            return 400, error_body("InvalidTimeStamp.Format",
                                   "Specified time stamp or date value is not well formatted.")
        sent_at = dt.datetime.strptime(p["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.UTC)
        if abs((dt.datetime.now(dt.UTC) - sent_at).total_seconds()) > 15 * 60:
            return 400, error_body("InvalidTimeStamp.Expired",
                                   "Specified time stamp or date value is expired.")
        if p["AccessKeyId"] != self.access_key_id:
            return 404, error_body("InvalidAccessKeyId.NotFound",
                                   "Specified access key is not found.")
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
                return 400, error_body("SignatureNonceUsed",
                                       "Specified signature nonce was used already.")
            self.nonces.add(p["SignatureNonce"])
        return self._send_sms(p)

    def _send_sms(self, p: dict[str, str]) -> tuple[int, dict[str, Any]]:
        numbers = p.get("PhoneNumbers", "")
        if not numbers:
            return 400, error_body("MissingPhoneNumbers", "PhoneNumbers is mandatory for this "
                                   "action.")
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
        return 200, {"RequestId": str(uuid.uuid4()).upper(), "Message": "OK", "BizId": biz_id,
                     "Code": "OK"}


class _Handler(BaseHTTPRequestHandler):
    aliyun: FakeAliyun
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    timeout = 10  # idle keep-alive connections give up eventually
    server_version = "FakeAliyun/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: pytest shows failures, not access logs

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = ReceivedRequest(
            method=self.command,
            path=url.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=raw,
        )
        params = parse_qs(url.query, keep_blank_values=True)
        if request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            for name, values in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items():
                params.setdefault(name, []).extend(values)
        request.params = params
        fake = self.aliyun
        with fake._lock:
            fake.received.append(request)
        step = fake._next_step()

        if step is not None and step.kind == "error":
            request.answer_status, request.answer = step.status, step.payload
            self._answer(step.status, step.payload)
            return
        status, payload = fake.handle(request)
        request.answer = payload
        if payload.get("Code") == "OK" and (step is None or step.deliver):
            with fake._lock:
                fake.accepted.append(request)
        if step is None:
            request.answer_status = status
            self._answer(status, payload)
        elif step.kind == "hang":
            fake._stopping.wait(step.seconds)
            self._drop(reset=False)
        else:
            self._drop(reset=step.reset)

    def _answer(self, status: int, payload: dict[str, Any] | None) -> None:
        data = (json.dumps(payload, ensure_ascii=False).encode() if payload is not None
                else b"<html><body>502 Bad Gateway</body></html>")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8" if payload is not None
                         else "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-acs-request-id", str(uuid.uuid4()).upper())
        self.end_headers()
        self.wfile.write(data)

    def _drop(self, *, reset: bool) -> None:
        self.close_connection = True
        if reset:  # close with SO_LINGER 0 sends an RST: "connection reset by peer"
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.connection.close()
        else:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
