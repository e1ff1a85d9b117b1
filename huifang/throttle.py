"""Rate limits on the public pages (``/v/``, ``/r/``, ``/b/``): what anyone may ask of them.

Those pages answer anyone who has (or guesses) a code or a link, so each client address
gets a budget of page views, and of form posts; a booking link gets its own budget of
posts, whatever address they come from. The limits are far above what a customer does
(open the message, book, change the time once or twice) and far below what a script
guessing verification codes or emptying a booking calendar needs.

The client address is the ASGI client: uvicorn puts the one from ``X-Forwarded-For``
there for the proxies in ``HUIFANG_FORWARDED_ALLOW_IPS``. Counts live in Redis in the
distributed mode, so every API process shares them, and in memory in the embedded mode.
A limit that is reached answers 429 with ``Retry-After`` and a page in Chinese.
"""

from __future__ import annotations

import ipaddress
import math
import time

import structlog
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute, storage
from limits.errors import StorageError
from limits.strategies import MovingWindowRateLimiter

from huifang.settings import get_settings
from huifang.templating import render

log = structlog.get_logger(__name__)

# A person reads a page a few times a minute; guessing a 50-bit code takes billions of tries.
PAGE_VIEWS = RateLimitItemPerMinute(60)
# Booking, changing and cancelling are a handful of posts, even for a household behind one NAT.
FORM_POSTS = RateLimitItemPerHour(30)
# One customer's link: book, change the time a few times, cancel; never a calendar's worth.
LINK_POSTS = RateLimitItemPerHour(10)
# A Redis that does not answer must not hang the public pages: they stay open without limits.
REDIS_TIMEOUT = 0.5


class TooManyRequests(Exception):
    """A public-page limit was reached; ``retry_after`` seconds until one more fits."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limit reached; retry after {retry_after} s")
        self.retry_after = retry_after


class Throttle:
    """Moving-window counts (``limits``) in one storage: Redis, or this process's memory."""

    def __init__(self, storage_url: str = "memory://") -> None:
        options = (
            {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}
            if storage_url.startswith("redis")
            else {}
        )
        self.limiter = MovingWindowRateLimiter(
            storage.storage_from_string(storage_url, wrap_exceptions=True, **options)
        )

    def hit(self, item: RateLimitItem, *key: str) -> None:
        """Count one request against ``item`` for ``key``; ``TooManyRequests`` when full."""
        try:
            if self.limiter.hit(item, *key):
                return
            reset = self.limiter.get_window_stats(item, *key).reset_time
        except StorageError as exc:
            log.warning("public rate limit not checked", error=str(exc))
            return
        raise TooManyRequests(max(1, math.ceil(reset - time.time())))

    def wait(self, item: RateLimitItem, *key: str) -> int | None:
        """Seconds until ``key`` may be counted once more under ``item``; None when it may
        now (checking does not count)."""
        try:
            if self.limiter.test(item, *key):
                return None
            reset = self.limiter.get_window_stats(item, *key).reset_time
        except StorageError as exc:
            log.warning("rate limit not checked", error=str(exc))
            return None
        return max(1, math.ceil(reset - time.time()))

    def count(self, item: RateLimitItem, *key: str) -> None:
        """Count one against ``item`` without refusing (failed sign-ins)."""
        try:
            self.limiter.hit(item, *key)
        except StorageError as exc:
            log.warning("rate limit not counted", error=str(exc))


def throttle_for(request: Request) -> Throttle:
    """The app's throttle, made on first use from the settings (tests set their own)."""
    made: Throttle | None = getattr(request.app.state, "throttle", None)
    if made is None:
        made = Throttle(get_settings().redis_url or "memory://")
        request.app.state.throttle = made
    return made


def client_address(request: Request) -> str:
    """The address to count a client by: an IPv6 client by its /64, which one home or phone
    holds whole (it could otherwise step through 2^64 addresses)."""
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def per_address(request: Request) -> None:
    """A public page's budget per client address (views, and posts besides)."""
    throttle, address = throttle_for(request), client_address(request)
    throttle.hit(PAGE_VIEWS, "public-view", address)
    if request.method == "POST":
        throttle.hit(FORM_POSTS, "public-post", address)


def per_link(request: Request, link_key: str) -> None:
    """A link's budget of posts, from any address (the route calls it once it knows the link)."""
    throttle_for(request).hit(LINK_POSTS, "link-post", link_key)


# For a public route's ``dependencies=[…]``: checked before the request's session opens.
PublicLimit = Depends(per_address)


def too_many_page(_: Request, exc: Exception) -> HTMLResponse:
    """429 with ``Retry-After`` and a page that tells a person when to come back."""
    retry_after = exc.retry_after if isinstance(exc, TooManyRequests) else 60
    minutes = max(1, math.ceil(retry_after / 60))
    return HTMLResponse(
        render("huifang", "too_many_requests.html", minutes=minutes),
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )
