"""Twilio Programmable Messaging: one ``POST …/Messages.json`` per message.

Wire format (Twilio REST API 2010-04-01):

- ``POST {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json``, HTTP basic auth with the
  Account SID and Auth Token, ``application/x-www-form-urlencoded``;
- fields ``To``, ``From`` *or* ``MessagingServiceSid``, ``Body``, ``MediaUrl`` repeated once per
  URL (at most 10), ``StatusCallback``;
- ``201 Created`` with the Message resource as JSON (``sid`` "SM…"/"MM…", ``status`` "queued",
  or "accepted" through a Messaging Service); an error is
  ``{"code": 21610, "message": …, "more_info": …, "status": 400}``.

Twilio has no idempotency key for Messages, so the one question that matters is whether the
request may have reached Twilio. Before the request is written (connection refused, DNS,
connect timeout, no free connection in the pool) nothing left: ``RetryableError``. Once it was
written (read timeout, connection dropped, a gateway timing out upstream, a 201 we cannot read)
it may have been sent: ``RequestMayHaveLeft``, never re-sent automatically.

Delivery failures (30xxx codes such as 30003 unreachable handset or 30610 marketing outside
local hours) are not answers to this request: they arrive later on the StatusCallback, read
by ``webhooks`` and ``statuses``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from messaging.models import DELIVERED, FAILED, SENT, UNDELIVERED
from messaging.providers import http
from messaging.providers.base import (
    Capabilities,
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    RecipientOptedOut,
    RequestMayHaveLeft,
    RetryableError,
    SendResult,
)
from messaging.providers.twilio.statuses import STATUS_MAP, settled

if TYPE_CHECKING:
    from huifang.settings import Settings

DEFAULT_API_BASE = "https://api.twilio.com"
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)

_ADMIN = "the administrator must fix the Twilio settings before anything can be sent"

# Twilio error code → a sentence for the office. Codes not listed fall back on the HTTP status.
_RECIPIENT_PROBLEMS: dict[int, str] = {
    21211: "The customer's phone number is not a valid phone number; "
    "correct it in the customer's record.",
    21265: "The customer's phone number is a short code, which cannot receive these messages; "
    "enter the customer's mobile number.",
    21407: "The customer's phone number cannot receive text messages; "
    "ask the customer for a mobile number.",
    21408: "Sending to the customer's country is not enabled on the company's Twilio account; "
    "the administrator must allow that country under Messaging → Geo permissions in the "
    "Twilio console.",
    21608: "The company's Twilio account is a trial account, which may only text verified "
    "numbers; the administrator must upgrade the account or verify this number.",
    21612: "Twilio cannot deliver to the customer's number from the company's sending number "
    "(the carrier or country does not accept it); check the number, or ask the "
    "administrator for a sender that can reach that country.",
    21614: "The customer's number is not a mobile number (probably a landline) and cannot "
    "receive text messages; ask the customer for a mobile number.",
    21635: "The customer's number is a landline and cannot receive text messages; "
    "ask the customer for a mobile number.",
}
_SENDER_PROBLEMS: dict[int, str] = {
    21212: "The sending number configured for Twilio is not a valid phone number; " + _ADMIN + ".",
    21601: "The sending number configured for Twilio cannot send text messages; " + _ADMIN + ".",
    21603: "No sending number is configured for Twilio; " + _ADMIN + ".",
    21606: "The sending number configured for Twilio cannot send messages to this destination "
    "(not message-capable, not owned by this Twilio account, or from another country); "
    + _ADMIN
    + ".",
    21659: "The sending number configured for Twilio is not a Twilio number of this account; "
    + _ADMIN
    + ".",
    21660: "The sending number configured for Twilio belongs to another Twilio account; "
    + _ADMIN
    + ".",
    21661: "The sending number configured for Twilio cannot send text messages; " + _ADMIN + ".",
    21701: "The Twilio Messaging Service configured for sending does not exist; " + _ADMIN + ".",
    21703: "The Twilio Messaging Service configured for sending has no phone numbers in it; "
    + _ADMIN
    + ".",
    21704: "The Twilio Messaging Service configured for sending has no phone numbers in it; "
    + _ADMIN
    + ".",
    21705: "The Twilio Messaging Service configured for sending is invalid; " + _ADMIN + ".",
}
_CONTENT_PROBLEMS: dict[int, str] = {
    21617: "The message text is longer than Twilio's 1,600-character limit; shorten it.",
    21658: "The message text is longer than Twilio's 1,600-character limit; shorten it.",
    21602: "The message has neither text nor pictures; add text before sending.",
    21619: "The message has neither text nor pictures; add text before sending.",
    21620: "Twilio could not use one of the picture or video links of this message "
    "(it must be a public web address); rebuild the report and send again.",
    21623: "The message has more than 10 pictures or videos, Twilio's limit; remove some.",
    21609: "The delivery-receipt address sent to Twilio is not valid; "
    "the administrator must check HUIFANG_PUBLIC_URL.",
}
_AUTH_PROBLEM = (
    "Twilio refused the company's Twilio credentials (Account SID and Auth Token): they are "
    "wrong, revoked, or belong to another account; the administrator must correct "
    "HUIFANG_TWILIO_ACCOUNT_SID and HUIFANG_TWILIO_AUTH_TOKEN. Nothing was sent."
)
_BUSY_PROBLEMS: dict[int, str] = {
    20429: "Twilio is receiving too many requests from this account right now; "
    "the message will be tried again shortly.",
    21611: "The company's Twilio sending number has a backlog of more than 10 hours of "
    "queued messages; the message will be tried again later.",
}
_WORDING = http.Wording(
    provider="Twilio",
    setting="HUIFANG_TWILIO_API_BASE",
    admin=_ADMIN,
    auth=_AUTH_PROBLEM,
    busy=_BUSY_PROBLEMS[20429],
    not_found="Twilio does not know the Account SID configured, or the Twilio address "
    f"(HUIFANG_TWILIO_API_BASE) is wrong; {_ADMIN}. Nothing was sent.",
    look_up="Look the error up at https://www.twilio.com/docs/errors and correct the message "
    "or the customer's number.",
    forbidden="Twilio does not allow the company's account to send this message ({says}); "
    "the administrator must check the Twilio account. Nothing was sent.",
)
_CONSOLE_LOGS = (
    "check the Twilio console's messaging logs, then mark it sent or send it again by hand"
)


class TwilioProvider(Provider):
    """Send SMS and MMS through Twilio's Messages API."""

    name = "twilio"
    capabilities = Capabilities(
        supports_mms=True,
        max_body_chars=1600,
        max_media=10,
        max_total_bytes=5 * 1024 * 1024,  # the text and every media file together
        # Among the types Twilio accepts for every carrier.
        image_types=frozenset({"image/jpeg", "image/png", "image/gif"}),
        video_types=frozenset({"video/mp4"}),
        rate_per_second=1,  # a US long code sends one MMS per second
    )
    status_map = STATUS_MAP

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        api_base: str = DEFAULT_API_BASE,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        client: httpx.Client | None = None,
    ) -> None:
        if not account_sid:
            raise ValueError("Twilio needs an Account SID (HUIFANG_TWILIO_ACCOUNT_SID)")
        if not auth_token:
            raise ValueError("Twilio needs an Auth Token (HUIFANG_TWILIO_AUTH_TOKEN)")
        if bool(from_number) == bool(messaging_service_sid):
            raise ValueError(
                "Twilio needs exactly one sender: a from_number or a messaging_service_sid"
            )
        self._account_sid = account_sid
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        # Kept only to scrub them out of any text we hand back; never printed.
        self._secrets = (
            auth_token,
            base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode("ascii"),
        )
        self._from_number = from_number or None
        self._messaging_service_sid = messaging_service_sid or None
        url = (
            f"{api_base.rstrip('/')}/2010-04-01/Accounts/{quote(account_sid, safe='')}"
            "/Messages.json"
        )
        # Parsed once (a string is parsed again by every request); an address that does not
        # parse stays a string, refused at the send like any other wrong address.
        try:
            self._url: httpx.URL | str = httpx.URL(url)
        except httpx.InvalidURL:
            self._url = url
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._owns_client = client is None
        if client is None:
            # Our own client carries the credentials, the timeout and the Accept header, so a
            # request merges nothing of its own; a client handed in gets them per request.
            self._client = httpx.Client(
                auth=self._auth, timeout=self._timeout, headers={"Accept": "application/json"}
            )
            self._per_request: dict[str, Any] = {}
        else:
            self._client = client
            self._per_request = {
                "auth": self._auth,
                "timeout": self._timeout,
                "headers": {"Accept": "application/json"},
            }

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioProvider:
        return cls(
            account_sid=settings.twilio_account_sid or "",
            auth_token=settings.twilio_auth_token or "",
            api_base=settings.twilio_api_base,
            from_number=settings.twilio_from_number,
            messaging_service_sid=settings.twilio_messaging_service_sid,
        )

    def __repr__(self) -> str:
        sender = self._from_number or self._messaging_service_sid
        return f"TwilioProvider(account_sid={self._account_sid!r}, sender={sender!r})"

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # -- sending ---------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        form = self._form(message)
        response = http.post(
            self._client,
            self._url,
            provider="Twilio",
            setting="HUIFANG_TWILIO_API_BASE",
            may_have_left=self._may_have_left,
            data=form,
            **self._per_request,
        )
        return self._result(response)

    def _form(self, message: OutboundMessage) -> dict[str, str | list[str]]:
        """The form fields, or ``PermanentError`` for what Twilio would refuse anyway."""
        limits = self.capabilities
        if len(message.media_urls) > limits.max_media:
            raise PermanentError(
                f"The message has {len(message.media_urls)} pictures or videos; Twilio takes at "
                f"most {limits.max_media} in one message. Remove some and send again.",
                code="21623",
            )
        if len(message.body) > limits.max_body_chars:
            raise PermanentError(
                f"The message text has {len(message.body)} characters; Twilio takes at most "
                f"{limits.max_body_chars}. Shorten it and send again.",
                code="21617",
            )
        if not message.body and not message.media_urls:
            raise PermanentError(
                "The message has neither text nor pictures; add text before sending.",
                code="21602",
            )
        form: dict[str, str | list[str]] = {"To": message.to}
        if self._messaging_service_sid:
            form["MessagingServiceSid"] = self._messaging_service_sid
        else:
            assert self._from_number is not None
            form["From"] = self._from_number
        if message.body:
            form["Body"] = message.body
        if message.media_urls:
            form["MediaUrl"] = list(message.media_urls)  # httpx repeats the key, in order
        if message.status_callback:
            form["StatusCallback"] = message.status_callback
        return form

    def _may_have_left(self, exc: BaseException) -> str:
        return self._scrub(
            "The connection to Twilio broke after the message was handed over "
            f"({type(exc).__name__}), so it may have been sent. It will not be sent again "
            "automatically: check the Twilio console's messaging logs for this customer, "
            "then mark the message sent or send it again by hand."
        )

    # -- answers ---------------------------------------------------------------------------

    def _result(self, response: httpx.Response) -> SendResult:
        status = response.status_code
        if 200 <= status < 300:
            return self._accepted(response)
        payload = http.json_object(response)
        code = _twilio_code(payload)
        twilio_says = self._scrub(str(payload.get("message") or "")).strip()
        raise http.refusal(
            response,
            wording=_WORDING,
            code=str(code) if code is not None else None,
            says=twilio_says,
            by_code=self._by_code(response, code),
            where_to_look=_CONSOLE_LOGS,
        )

    def _by_code(self, response: httpx.Response, code: int | None) -> ProviderError | None:
        """What Twilio's error code says, where we have a sentence for it."""
        code_text = str(code) if code is not None else None
        if code in _BUSY_PROBLEMS:
            return RetryableError(
                _BUSY_PROBLEMS[code], code=code_text, retry_after=http.retry_after(response.headers)
            )
        if code == 21610:
            return RecipientOptedOut(
                "The customer has unsubscribed from the company's text messages at Twilio "
                "(they replied STOP or similar); nothing was sent. Only the customer can undo "
                "this, by texting START to the company's number.",
                code=code_text,
            )
        if response.status_code == 401 or code == 20003:
            return PermanentError(_AUTH_PROBLEM, code=code_text)
        for table in (_RECIPIENT_PROBLEMS, _SENDER_PROBLEMS, _CONTENT_PROBLEMS):
            if code is not None and code in table:
                return PermanentError(table[code], code=code_text)
        return None

    def _accepted(self, response: httpx.Response) -> SendResult:
        payload = http.json_object(response)
        sid = payload.get("sid")
        if not isinstance(sid, str) or not sid:
            # Twilio said yes, so the message exists, but without its id we cannot follow it.
            raise RequestMayHaveLeft(
                f"Twilio accepted the message (HTTP {response.status_code}) but its answer "
                "could not be read, so it has probably been sent. It will not be sent again "
                "automatically: check the Twilio console's messaging logs for this customer."
            )
        status = str(payload.get("status") or "queued").lower()
        # A fresh message's status, folded into the pipeline's two words (or a refusal).
        ours = settled(status)
        if ours in (FAILED, UNDELIVERED):
            code = _twilio_code(payload, key="error_code")
            if code == 21610:
                raise RecipientOptedOut(
                    "The customer has unsubscribed from the company's text messages at Twilio; "
                    "nothing was sent.",
                    code="21610",
                )
            raise PermanentError(
                f"Twilio created the message but marked it {status} at once"
                + (f" (Twilio error {code})" if code is not None else "")
                + "; it was not delivered. Check the customer's number.",
                code=str(code) if code is not None else None,
            )
        return SendResult(
            provider_message_id=sid,
            status="sent" if ours in (SENT, DELIVERED) else "queued",
        )

    def _scrub(self, text: str) -> str:
        return http.scrub(text, self._secrets)


def _twilio_code(payload: Mapping[str, Any], key: str = "code") -> int | None:
    value = payload.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


__all__ = ["DEFAULT_API_BASE", "DEFAULT_TIMEOUT", "TwilioProvider"]
