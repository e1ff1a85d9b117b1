"""A local stand-in for Twilio's Messages endpoint, speaking its wire format on 127.0.0.1.

    with FakeTwilio() as twilio:
        provider = TwilioProvider(account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                                  api_base=twilio.base_url, from_number=twilio.from_number)
        provider.send(...)
        assert twilio.accepted[0].field("To") == "+8613800138000"

It checks what Twilio checks (path and AccountSid, basic auth, form encoding, E.164 ``To``,
a sender, ``Body`` or ``MediaUrl``, 1,600 characters, 10 media), answers ``201`` with a
Message resource or ``4xx`` with Twilio's error body, and can be told to misbehave for the
next request(s): ``fail_next``, ``rate_limit_next``, ``server_error_next``, ``hang_next``,
``drop_next``.

``received`` holds every request that was read in full (whatever the answer); ``accepted``
holds those that created a message, including the ones whose answer was then lost.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import json
import re
import secrets
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-f]{32}$")
PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    form: dict[str, list[str]] = field(default_factory=dict)
    username: str | None = None
    password: str | None = None
    answer_status: int | None = None  # None when the answer was withheld (hang, drop)
    answer: dict[str, Any] | None = None  # the JSON sent back, or that would have been

    def field(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None

    def fields(self, name: str) -> list[str]:
        return list(self.form.get(name, []))


@dataclass
class _Misbehaviour:
    kind: str  # error | hang | drop
    status: int = 400
    payload: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    deliver: bool = True  # hang/drop: create the message first (the ambiguous case)
    reset: bool = False  # drop: RST instead of a clean close


def error_body(code: int, message: str, status: int) -> dict[str, Any]:
    """Twilio's error shape for the 2010-04-01 API."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeTwilio:
    """A threaded HTTP server on 127.0.0.1 with a random port; use it as a context manager."""

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        from_number: str = "+15005550006",
        opted_out: set[str] | None = None,
        latency: float = 0.0,
    ) -> None:
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.from_number = from_number
        self.messaging_service_sid = "MG" + secrets.token_hex(16)
        self.opted_out: set[str] = set(opted_out or ())
        # Seconds each answer takes, as a real API's round trip does (benchmarks only).
        self.latency = latency
        self.received: list[ReceivedRequest] = []
        self.accepted: list[ReceivedRequest] = []
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

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def start(self) -> FakeTwilio:
        fake = self

        class Handler(_Handler):
            twilio = fake

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

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- misbehaviour for the next request(s) ---------------------------------------------

    def fail_next(
        self,
        code: int,
        *,
        status: int = 400,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next request(s) with a Twilio error body."""
        payload = error_body(code, message or f"Twilio error {code}", status)
        self._queue(_Misbehaviour("error", status, payload, dict(headers or {})), times)

    def rate_limit_next(self, *, retry_after: str | None = "3", times: int = 1) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        payload = error_body(
            20429, "Too Many Requests. Please retry according to the Retry-After header.", 429
        )
        self._queue(_Misbehaviour("error", 429, payload, headers), times)

    def server_error_next(self, *, status: int = 500, json_body: bool = True,
                          times: int = 1) -> None:
        payload = error_body(20500, "An internal server error has occurred", status)
        self._queue(_Misbehaviour("error", status, payload if json_body else None), times)

    def hang_next(self, *, seconds: float = 5.0, deliver: bool = True, times: int = 1) -> None:
        """Read the request (creating the message when ``deliver``), then say nothing."""
        self._queue(_Misbehaviour("hang", seconds=seconds, deliver=deliver), times)

    def drop_next(self, *, deliver: bool = True, reset: bool = False, times: int = 1) -> None:
        """Read the request (creating the message when ``deliver``), then close the socket."""
        self._queue(_Misbehaviour("drop", deliver=deliver, reset=reset), times)

    def _queue(self, step: _Misbehaviour, times: int) -> None:
        with self._lock:
            self._plan.extend([step] * times)

    def _next_step(self) -> _Misbehaviour | None:
        with self._lock:
            return self._plan.popleft() if self._plan else None

    # -- Twilio's rules ------------------------------------------------------------------------

    def handle(self, request: ReceivedRequest) -> tuple[int, dict[str, Any]]:
        """Authenticate, validate and create, as Twilio does; returns (status, JSON)."""
        match = PATH.match(request.path)
        if request.method != "POST" or match is None:
            return 404, error_body(
                20404, f"The requested resource {request.path} was not found", 404
            )
        if request.username != self.account_sid or request.password != self.auth_token:
            return 401, error_body(20003, "Authenticate", 401)
        if match["sid"] != self.account_sid:
            return 401, error_body(20003, "Authenticate", 401)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != (
            "application/x-www-form-urlencoded"
        ):
            # Twilio reads parameters from a form only; a JSON body leaves them all missing.
            return 400, error_body(21604, "A 'To' phone number is required.", 400)

        to = request.field("To")
        sender = request.field("From")
        service = request.field("MessagingServiceSid")
        body = request.field("Body") or ""
        media = request.fields("MediaUrl")
        callback = request.field("StatusCallback")
        if not to:
            return 400, error_body(21604, "A 'To' phone number is required.", 400)
        if not E164.match(to):
            return 400, error_body(21211, f"Invalid 'To' Phone Number: {to}", 400)
        if not sender and not service:
            return 400, error_body(21603, "A 'From' phone number is required.", 400)
        if sender and service:
            return 400, error_body(
                21603, "Use either 'From' or 'MessagingServiceSid', not both.", 400
            )
        if sender and not (E164.match(sender) or ALPHANUMERIC_SENDER.match(sender)):
            return 400, error_body(21212, f"Invalid From Number: {sender}", 400)
        if sender and sender != self.from_number:
            return 400, error_body(
                21606,
                f"The From phone number {sender} is not a valid, SMS-capable inbound phone "
                "number or short code for your account.",
                400,
            )
        if service and (not MESSAGING_SERVICE_SID.match(service)
                        or service != self.messaging_service_sid):
            return 400, error_body(
                21701, f"The Messaging Service Sid {service} is invalid.", 400
            )
        if not body and not media:
            return 400, error_body(21602, "Message body is required.", 400)
        if len(body) > 1600:
            return 400, error_body(
                21617, "The concatenated message body exceeds the 1600 character limit.", 400
            )
        if len(media) > 10:
            return 400, error_body(21623, "Number of media files exceeds allowed limit", 400)
        if any(urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc
               for url in media):
            return 400, error_body(21620, "Invalid media URL(s).", 400)
        if callback is not None and (urlsplit(callback).scheme not in ("http", "https")
                                     or not urlsplit(callback).netloc):
            return 400, error_body(21609, "Invalid StatusCallback url", 400)
        if to in self.opted_out:
            return 400, error_body(21610, "Attempt to send to unsubscribed recipient", 400)
        return 201, self._create(to=to, sender=sender, service=service, body=body, media=media)

    def _create(self, *, to: str, sender: str | None, service: str | None, body: str,
                media: list[str]) -> dict[str, Any]:
        sid = ("MM" if media else "SM") + secrets.token_hex(16)
        now = email.utils.formatdate(usegmt=True).replace("GMT", "+0000")
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            "num_segments": "0" if service else str(_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # Through a Messaging Service Twilio answers "accepted" until a sender is chosen.
            "status": "accepted" if service and not sender else "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to,
            "uri": uri,
        }


def _segments(body: str) -> int:
    if not body:
        return 1
    if all(ch in GSM7 for ch in body):
        return 1 if len(body) <= 160 else -(-len(body) // 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


class _Handler(BaseHTTPRequestHandler):
    twilio: FakeTwilio
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    # Headers and body go out in separate writes; without this, Nagle and delayed ACKs
    # add 40 ms to every request on loopback.
    disable_nagle_algorithm = True
    timeout = 10  # idle keep-alive connections give up eventually
    server_version = "FakeTwilio/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: pytest shows failures, not access logs

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = ReceivedRequest(
            method=self.command,
            path=urlsplit(self.path).path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=raw,
        )
        request.username, request.password = _basic_auth(self.headers.get("Authorization"))
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            request.form = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        fake = self.twilio
        with fake._lock:
            fake.received.append(request)
        if fake.latency:
            time.sleep(fake.latency)
        step = fake._next_step()

        if step is not None and step.kind == "error":
            request.answer_status, request.answer = step.status, step.payload
            self._answer(step.status, step.payload, step.headers)
            return
        status, payload = fake.handle(request)
        request.answer = payload
        if status == 201 and (step is None or step.deliver):
            with fake._lock:
                fake.accepted.append(request)
        if step is None:
            request.answer_status = status
            self._answer(status, payload, {})
        elif step.kind == "hang":
            fake._stopping.wait(step.seconds)
            self._drop(reset=False)
        else:
            self._drop(reset=step.reset)

    def _answer(self, status: int, payload: dict[str, Any] | None,
                headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode() if payload is not None else b"Internal Error"
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/json" if payload is not None else "text/plain"
        )
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Twilio-Request-Id", "RQ" + secrets.token_hex(16))
        for name, value in headers.items():
            self.send_header(name, value)
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


def _basic_auth(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    username, _, password = decoded.partition(":")
    return username, password


def closed_port() -> tuple[socket.socket, int]:
    """A port on 127.0.0.1 that refuses connections: bound, never listening.

    Keep the socket open while it is used (nobody else can take the port), close it after.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]
