"""What every provider implements and declares, and the outcomes the send pipeline understands.

The pipeline claims a message row, passes the compliance gate, renders the text, then calls
``Provider.send`` and records the outcome:

- ``SendResult``            → ``sent`` (or ``queued`` at the provider), with its id;
- ``RetryableError``        → back off for minutes and try again;
- ``PermanentError``        → ``failed`` with the provider's code and a sentence;
- ``RecipientOptedOut``     → ``suppressed`` and a suppression row (Twilio 21610);
- ``RequestMayHaveLeft``    → ``unknown``: never re-sent automatically, an operator decides.

Each provider class also declares, without being built (no credentials needed), what it can
carry (``Capabilities``) and what its delivery receipts mean in our words (``StatusMap``);
what it posts to us is read into ``Receipt`` and ``Reply`` by its own ``webhooks`` module.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Self

if TYPE_CHECKING:
    from huifang.settings import Settings


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


@dataclass(frozen=True)
class Capabilities:
    """What a provider carries: the send path and the MMS parts of a report keep to it."""

    supports_mms: bool = False  # this adapter sends pictures and videos today
    max_body_chars: int = 500
    # The provider's MMS product, which a report's MMS parts are fitted to (a provider may
    # declare it before its adapter sends MMS: Aliyun's 数字短信).
    max_media: int = 0  # pictures and videos in one message (frames, when ``frames``)
    max_total_bytes: int = 0  # text and media together; 0 when there is no MMS
    image_types: frozenset[str] = frozenset()
    video_types: frozenset[str] = frozenset()
    frames: bool = False  # ordered frames, each one picture or video with its text
    must_mix: bool = False  # a message of a single kind of media is refused
    rate_per_second: int | None = None  # default send rate (None: unlimited)
    # Sends only templates the provider approved (Aliyun): every message goes out as its
    # purpose's template filled with its values (``messaging.sms_templates``), never as text.
    approved_templates: bool = False


@dataclass(frozen=True)
class StatusMap:
    """A provider's receipt vocabulary in our lifecycle's words (``messaging.models``)."""

    # The provider's status word → (our status, or None for progress only; the reason).
    statuses: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    # An error code on an undelivered or failed receipt → the reason recorded instead.
    reasons: Mapping[str, str] = field(default_factory=dict)
    # An error code that speaks of the number, not of one message → the suppression reason.
    suppressing: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt as a provider posted it, read by the provider's webhooks module."""

    provider_message_id: str
    status: str  # the provider's word, looked up in its StatusMap
    error_code: str | None = None
    message_id: int | None = None  # our id, when the provider echoes it back


@dataclass(frozen=True)
class Reply:
    """A customer's text to us, as a provider posted it."""

    provider_message_id: str
    phone: str  # as the provider wrote it; customers.phones normalises it
    text: str


def our_message_id(text: str) -> int | None:
    """Our message id echoed back by a provider (a query parameter, an OutId), if it is one."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None


class ProviderError(Exception):
    """A send that did not succeed. ``code`` is the provider's, ``detail`` a sentence."""

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


class RetryableError(ProviderError):
    """Nothing was sent (connection refused, 429, 5xx before acceptance): try again later."""

    def __init__(
        self, detail: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


class PermanentError(ProviderError):
    """The provider refused this message for good (bad number, content rejected, auth)."""


class RecipientOptedOut(PermanentError):
    """The recipient has unsubscribed at the provider (Twilio error 21610)."""


class RequestMayHaveLeft(ProviderError):
    """A timeout or broken connection after the request was sent: it may have gone out."""


# Declared in ``capabilities`` now; a subclass setting one of these would be ignored silently.
_IN_CAPABILITIES = (
    "supports_mms",
    "max_body_chars",
    "max_media",
    "max_total_bytes",
    "rate_per_second",
)


class Provider(abc.ABC):
    name: str = ""  # HUIFANG_SMS_PROVIDER's value, and Message.provider
    capabilities: ClassVar[Capabilities] = Capabilities()
    status_map: ClassVar[StatusMap] = StatusMap()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        misplaced = [name for name in _IN_CAPABILITIES if name in vars(cls)]
        if misplaced:
            raise TypeError(
                f"{cls.__name__} sets {', '.join(misplaced)}: declare them in "
                "capabilities = Capabilities(...)"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The provider as configured (HUIFANG_*); providers with credentials override this."""
        return cls()

    @abc.abstractmethod
    def send(self, message: OutboundMessage) -> SendResult:
        """Send one message, or raise one of the errors above; never anything else."""

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections."""
