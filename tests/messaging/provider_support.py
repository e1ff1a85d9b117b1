"""What the provider tests share (test_provider_contract.py, test_twilio_provider.py,
test_aliyun_provider.py): they drive the adapters through the same failures (the network's
and the fakes'), so the scaffolding for them is written once here; the checks stay in the
tests, where pytest explains a failed assert.

Kept apart from ``fake_http`` so the fakes themselves (which ``bench/send.py`` runs) need
no pytest.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import httpx
import pytest

from messaging.providers.base import (
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    RequestMayHaveLeft,
    RetryableError,
)
from tests.messaging.fake_http import closed_port

ProviderT = TypeVar("ProviderT", bound=Provider)
ErrorT = TypeVar("ErrorT", bound=ProviderError)
FAST = httpx.Timeout(2.0, connect=1.0)
IMPATIENT = httpx.Timeout(0.3, connect=1.0)  # gives up on a hanging fake well before it ends
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx honours proxy variables; keep every request on loopback whatever the shell has."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def closing_all(build: Callable[..., ProviderT]) -> Iterator[Callable[..., ProviderT]]:
    """The body of a ``make_provider`` fixture: ``build`` on demand, every provider closed after.

    Use as ``yield from closing_all(build)``.
    """
    made: list[ProviderT] = []

    def make(**overrides: object) -> ProviderT:
        provider = build(**overrides)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


def message_maker(**defaults: object) -> Callable[..., OutboundMessage]:
    """A test file's ``message(**changes)``: its usual message, with the changes a test makes."""

    def message(**changes: object) -> OutboundMessage:
        return OutboundMessage(**{**defaults, **changes})  # type: ignore[arg-type]

    return message


@contextlib.contextmanager
def refusing_base_url() -> Iterator[str]:
    """An ``api_base`` whose connections are refused: nothing can have been sent."""
    sock, port = closed_port()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        sock.close()


def mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    """A client whose every request is answered (or failed) by ``handler``, off the network."""
    return httpx.Client(transport=httpx.MockTransport(handler))


def raising_client(exc: Exception) -> httpx.Client:
    """A client whose every request fails with ``exc``, as the transport would raise it."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return mock_client(handler)


# Transport failures and what they mean for a send (messaging/providers/http.py): before the
# request was written nothing was sent; after, it may have been.
TRANSPORT_FAILURES = [
    pytest.param(exc, expected, id=type(exc).__name__)
    for exc, expected in [
        (httpx.ConnectError("[Errno -2] Name or service not known"), RetryableError),
        (httpx.ConnectTimeout("timed out"), RetryableError),
        (httpx.PoolTimeout("no free connection"), RetryableError),
        (httpx.ProxyError("proxy refused the tunnel"), RetryableError),
        (httpx.UnsupportedProtocol("ftp is not http"), PermanentError),
        (httpx.ReadTimeout("timed out"), RequestMayHaveLeft),
        (httpx.WriteTimeout("timed out"), RequestMayHaveLeft),
        (httpx.ReadError("connection reset"), RequestMayHaveLeft),
        (httpx.WriteError("broken pipe"), RequestMayHaveLeft),
        (httpx.RemoteProtocolError("server disconnected"), RequestMayHaveLeft),
        (RuntimeError("something unforeseen"), RequestMayHaveLeft),
    ]
]

# Server errors of a fake's (HTTP status, JSON body or not): retryable, nothing was sent.
SERVER_ERRORS = [(500, True), (503, True), (502, False)]

# A fake that lost its answer after sending, and how many messages it then accepted: the
# provider cannot tell whether the message left (RequestMayHaveLeft). With ``IMPATIENT``.
LOST_ANSWERS = [
    pytest.param(lambda fake: fake.hang_next(seconds=5), 1, id="read-timeout"),
    pytest.param(lambda fake: fake.drop_next(), 1, id="dropped"),
    pytest.param(lambda fake: fake.drop_next(reset=True), 1, id="reset"),
    pytest.param(lambda fake: fake.server_error_next(status=504), 0, id="gateway-timeout"),
]


def timed_failure(
    provider: Provider, message: OutboundMessage, expected: type[ErrorT]
) -> tuple[ErrorT, float]:
    """Send, expecting ``expected``; the error and how many seconds the provider took to fail."""
    started = time.monotonic()
    with pytest.raises(expected) as caught:
        provider.send(message)
    return caught.value, time.monotonic() - started


def errors_from(
    scenarios: Sequence[tuple[Callable[[], None], Provider]],
    message: OutboundMessage,
    *,
    after_each: Callable[[], None] | None = None,
) -> list[ProviderError]:
    """Arrange each scenario, send with its provider, and collect the ProviderError raised."""
    errors: list[ProviderError] = []
    for arrange, provider in scenarios:
        arrange()
        with pytest.raises(ProviderError) as caught:
            provider.send(message)
        if after_each is not None:
            after_each()
        errors.append(caught.value)
    return errors


def everything_said_by(exc: BaseException) -> str:
    """All an error could show anyone: message, repr, traceback, and a provider's detail."""
    parts = [str(exc), repr(exc), *traceback.format_exception(exc)]
    if isinstance(exc, ProviderError):
        parts += [exc.detail, str(exc.code)]
    return "\n".join(parts)
