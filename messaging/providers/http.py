"""What a transport failure means for a send, the same for every HTTP provider.

Before the request was written (no connection, DNS, proxy, pool timeout) nothing was sent:
retry later. After it was written (read timeout, dropped connection, anything unforeseen)
it may have gone out: ``RequestMayHaveLeft``, which the pipeline turns into ``unknown``
and never re-sends by itself (DESIGN.md, invariant 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from messaging.providers.base import PermanentError, RequestMayHaveLeft, RetryableError

ADMIN = "the administrator must correct it in the settings"


def post(client: httpx.Client, url: str, *, provider: str, setting: str,
         may_have_left: Callable[[Exception], str], **kwargs: Any) -> httpx.Response:
    """POST, turning every transport failure into the error class the pipeline understands."""
    try:
        return client.post(url, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
            httpx.ProxyError) as exc:
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
