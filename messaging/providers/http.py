"""What an HTTP provider's failures mean for a send, the same for every provider.

A transport failure (``post``): before the request was written (no connection, DNS, proxy,
pool timeout) nothing was sent: retry later. After it was written (read timeout, dropped
connection, anything unforeseen) it may have gone out: ``RequestMayHaveLeft``, which the
pipeline turns into ``unknown`` and never re-sends by itself (DESIGN.md, invariant 1).

An answer that is not an acceptance (``refusal``): one ladder from HTTP status to error
class, into which each provider puts its own codes and sentences (``Wording``).
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from messaging.providers.base import (
    PermanentError,
    ProviderError,
    RequestMayHaveLeft,
    RetryableError,
)

ADMIN = "the administrator must correct it in the settings"


def post(
    client: httpx.Client,
    url: str | httpx.URL,
    *,
    provider: str,
    setting: str,
    may_have_left: Callable[[Exception], str],
    **kwargs: Any,
) -> httpx.Response:
    """POST, turning every transport failure into the error class the pipeline understands."""
    try:
        return client.post(url, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError) as exc:
        raise RetryableError(
            f"Could not reach {provider} (no connection could be opened, "
            f"{type(exc).__name__}); nothing was sent and it will be tried again later."
        ) from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        raise PermanentError(
            f"The {provider} address configured ({setting}) is not a valid http(s) address; "
            f"{ADMIN}. Nothing was sent."
        ) from None
    except Exception as exc:  # read/write timeout, ReadError, RemoteProtocolError, anything
        raise RequestMayHaveLeft(may_have_left(exc)) from None


@dataclass(frozen=True)
class Wording:
    """The parts of a provider's refusals that are its own; the ladder writes the rest."""

    provider: str  # "Twilio"
    setting: str  # the address setting, HUIFANG_…_API_BASE
    admin: str  # who must act, and that nothing goes until they do
    auth: str  # the credentials were refused (401, and 403 unless ``forbidden``)
    busy: str  # too many requests (429)
    not_found: str  # 404: the account or the address is wrong
    look_up: str  # the last sentence of a refusal nobody has a sentence for
    forbidden: str | None = None  # 403 when it is not the credentials; ``{says}`` is filled


def refusal(
    response: httpx.Response,
    *,
    wording: Wording,
    code: str | None,
    says: str,
    by_code: ProviderError | None,
    where_to_look: str,
) -> ProviderError:
    """What an answer that is not an acceptance means, by one ladder for every provider.

    The status speaks first where it is about the request rather than the message: a gateway
    timeout (504) may hide a message that went out, whatever the body says; another 5xx, or
    a 429, sent nothing. Then the provider's reading of its own code (``by_code``: its
    sentences, its retry-later codes, an opted-out recipient), then the rest of the status.
    ``where_to_look`` tells the office how to find out whether a message went out.
    """
    status = response.status_code
    name = wording.provider
    if status == 504:
        return RequestMayHaveLeft(
            f"{name}'s gateway timed out (HTTP 504) after the message was handed over, so it "
            f"may have been sent. It will not be sent again automatically: {where_to_look}.",
            code=code,
        )
    if status >= 500:
        return RetryableError(
            f"{name} had a server error (HTTP {status}); nothing was sent and it will be "
            "tried again later.",
            code=code,
            retry_after=retry_after(response.headers),
        )
    if status == 429:
        return RetryableError(wording.busy, code=code, retry_after=retry_after(response.headers))
    if by_code is not None:
        return by_code
    if status == 401 or (status == 403 and wording.forbidden is None):
        return PermanentError(wording.auth, code=code)
    if status == 403 and wording.forbidden is not None:
        return PermanentError(wording.forbidden.format(says=says or "forbidden"), code=code)
    if status == 404:
        return PermanentError(wording.not_found, code=code)
    if 300 <= status < 400:
        return PermanentError(
            f"The {name} address configured ({wording.setting}) answers with a redirect "
            f"(HTTP {status}); {wording.admin}. Nothing was sent.",
            code=code,
        )
    reason = f"{name} error {code}" if code is not None else f"HTTP {status}"
    return PermanentError(
        f"{name} refused the message ({reason}: {says or 'no explanation given'}); nothing was "
        f"sent. {wording.look_up}",
        code=code,
    )


def retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or ``{}`` for anything else (a proxy's HTML page, a list)."""
    try:
        payload = json.loads(response.content)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``: an upstream may echo one back."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
