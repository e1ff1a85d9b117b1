"""What every provider implements, and the outcomes the send pipeline understands.

The pipeline (issue 5) claims a message row, passes the compliance gate, renders the
text, then calls ``Provider.send`` and records the outcome:

- ``SendResult``            → ``sent`` (or ``queued`` at the provider), with its id;
- ``RetryableError``        → back off for minutes and try again;
- ``PermanentError``        → ``failed`` with the provider's code and a sentence;
- ``RecipientOptedOut``     → ``suppressed`` and a suppression row (Twilio 21610);
- ``RequestMayHaveLeft``    → ``unknown``: never re-sent automatically, an operator decides.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OutboundMessage:
    message_id: int  # our id: Twilio StatusCallback query, Aliyun OutId
    to: str  # E.164
    body: str  # final text: signature first, footer included (the gate has checked it)
    signature: str  # the inner text of 【…】, for providers that take it separately (Aliyun)
    media_urls: tuple[str, ...] = ()  # public https URLs of images/video for MMS
    status_callback: str | None = None  # where delivery receipts should be posted
    template_code: str | None = None  # providers with approved templates (Aliyun)
    template_params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    status: str = "sent"  # sent | queued (the provider accepted it; receipts follow)


class ProviderError(Exception):
    """A send that did not succeed. ``code`` is the provider's, ``detail`` a sentence."""

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


class RetryableError(ProviderError):
    """Nothing was sent (connection refused, 429, 5xx before acceptance): try again later."""

    def __init__(self, detail: str, *, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


class PermanentError(ProviderError):
    """The provider refused this message for good (bad number, content rejected, auth)."""


class RecipientOptedOut(PermanentError):
    """The recipient has unsubscribed at the provider (Twilio error 21610)."""


class RequestMayHaveLeft(ProviderError):
    """A timeout or broken connection after the request was sent: it may have gone out."""


class Provider(abc.ABC):
    name: str = ""
    supports_mms: bool = False
    max_body_chars: int = 500
    max_media: int = 0
    max_total_bytes: int = 0  # message + media together, 0 when there is no MMS
    rate_per_second: int | None = None  # default send rate (None: unlimited)

    @abc.abstractmethod
    def send(self, message: OutboundMessage) -> SendResult:
        """Send one message, or raise one of the errors above; never anything else."""

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections."""
