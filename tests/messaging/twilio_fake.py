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
holds those that created a message, including the ones whose answer was then lost. The server,
the misbehaviour queue and that record are fake_http.py's, shared with the Aliyun fake; this
module is Twilio's wire format only.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import re
import secrets
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.messaging import fake_http

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-f]{32}$")
PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)


@dataclass
class ReceivedRequest(fake_http.ReceivedRequest):
    """A request to the fake Twilio, with its form fields and basic-auth credentials."""

    form: dict[str, list[str]] = field(default_factory=dict)
    username: str | None = None
    password: str | None = None

    def field(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None

    def fields(self, name: str) -> list[str]:
        return list(self.form.get(name, []))


def error_body(code: int, message: str, status: int) -> dict[str, Any]:
    """Twilio's error shape for the 2010-04-01 API."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeTwilio(fake_http.LocalFake[ReceivedRequest]):
    """A threaded HTTP server on 127.0.0.1 with a random port; use it as a context manager."""

    request_type = ReceivedRequest
    server_version = "FakeTwilio/1.0"
    # Headers and body go out in separate writes; without this, Nagle and delayed ACKs
    # add 40 ms to every request on loopback.
    disable_nagle = True

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        from_number: str = "+15005550006",
        opted_out: set[str] | None = None,
        latency: float = 0.0,
    ) -> None:
        super().__init__(latency=latency)
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.from_number = from_number
        self.messaging_service_sid = "MG" + secrets.token_hex(16)
        self.opted_out: set[str] = set(opted_out or ())

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    # -- misbehaviour for the next request(s): Twilio's errors -----------------------------

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
        self._answer_next(status, payload, headers=headers, times=times)

    def rate_limit_payload(self) -> dict[str, Any]:
        return error_body(
            20429, "Too Many Requests. Please retry according to the Retry-After header.", 429
        )

    def server_error_payload(self, status: int) -> dict[str, Any]:
        return error_body(20500, "An internal server error has occurred", status)

    # -- Twilio's wire format ----------------------------------------------------------------

    def parse(self, request: ReceivedRequest, query: str, http_headers: Message) -> None:
        """Basic-auth credentials, and the form when the body is one (Twilio reads no other)."""
        request.username, request.password = _basic_auth(http_headers.get("Authorization"))
        if request.headers.get("content-type", "").startswith(fake_http.FORM):
            request.form = parse_qs(request.body.decode("utf-8"), keep_blank_values=True)

    def accepts(self, status: int, payload: dict[str, Any]) -> bool:
        return status == 201

    def encode(self, payload: dict[str, Any] | None) -> tuple[str, bytes]:
        if payload is None:
            return "text/plain", b"Internal Error"
        return "application/json", json.dumps(payload).encode()

    def answer_headers(self) -> dict[str, str]:
        return {"Twilio-Request-Id": "RQ" + secrets.token_hex(16)}

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
        if service and (
            not MESSAGING_SERVICE_SID.match(service) or service != self.messaging_service_sid
        ):
            return 400, error_body(21701, f"The Messaging Service Sid {service} is invalid.", 400)
        if not body and not media:
            return 400, error_body(21602, "Message body is required.", 400)
        if len(body) > 1600:
            return 400, error_body(
                21617, "The concatenated message body exceeds the 1600 character limit.", 400
            )
        if len(media) > 10:
            return 400, error_body(21623, "Number of media files exceeds allowed limit", 400)
        if any(
            urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc
            for url in media
        ):
            return 400, error_body(21620, "Invalid media URL(s).", 400)
        if callback is not None and (
            urlsplit(callback).scheme not in ("http", "https") or not urlsplit(callback).netloc
        ):
            return 400, error_body(21609, "Invalid StatusCallback url", 400)
        if to in self.opted_out:
            return 400, error_body(21610, "Attempt to send to unsubscribed recipient", 400)
        return 201, self._create(to=to, sender=sender, service=service, body=body, media=media)

    def _create(
        self, *, to: str, sender: str | None, service: str | None, body: str, media: list[str]
    ) -> dict[str, Any]:
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


def _basic_auth(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.lower().startswith("basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    username, _, password = decoded.partition(":")
    return username, password
