"""The send rate per provider, shared by every worker (Redis) or by this process (embedded).

A moving window from the ``limits`` library: at most N sends in any one-second window.
"""

from __future__ import annotations

import functools
import time

from limits import RateLimitItemPerSecond, storage, strategies

from huifang.settings import get_settings


class SendRate:
    """``wait(key)`` blocks until one more send fits under ``per_second`` for ``key``."""

    def __init__(self, *, per_second: int, storage_url: str = "memory://") -> None:
        self.item = RateLimitItemPerSecond(per_second)
        self.limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_url))

    def wait(self, key: str, *, timeout: float = 20.0) -> bool:
        """True once a slot is taken; False when none came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.limiter.hit(self.item, key):
            reset = self.limiter.get_window_stats(self.item, key).reset_time
            pause = min(max(reset - time.time(), 0.005), 0.25)
            if time.monotonic() + pause > deadline:
                return False
            time.sleep(pause)
        return True


@functools.cache
def send_rate(provider: str, per_second: int | None) -> SendRate | None:
    """The process's limiter for a provider (None: unlimited, as for the console)."""
    rate = get_settings().sms_rate_per_second or per_second
    if not rate:
        return None
    return SendRate(per_second=rate, storage_url=get_settings().redis_url or "memory://")
