"""The send rate: per provider, shared by all workers through Redis."""

from __future__ import annotations

import threading
import time

import pytest

from messaging import service as outbox
from messaging.ratelimit import SendRate
from tests.messaging.test_outbox import NOON_CN, ScriptedProvider, _schedule


def test_sends_are_spaced_to_the_rate():
    rate = SendRate(per_second=5)
    started = time.monotonic()
    assert all(rate.wait("twilio") for _ in range(12))
    assert time.monotonic() - started >= 1.8  # 12 sends at 5/s need more than two windows


def test_each_provider_has_its_own_rate():
    rate = SendRate(per_second=2)
    started = time.monotonic()
    for _ in range(2):
        assert rate.wait("twilio") and rate.wait("aliyun")
    assert time.monotonic() - started < 0.5


def test_a_full_rate_gives_up_after_the_timeout():
    rate = SendRate(per_second=1)
    assert rate.wait("twilio")
    assert rate.wait("twilio", timeout=0.05) is False


@pytest.mark.services
def test_two_workers_share_one_rate_through_redis(redis_url):
    workers = [SendRate(per_second=3, storage_url=redis_url) for _ in range(2)]
    stamps: list[float] = []
    lock = threading.Lock()

    def send(rate: SendRate) -> None:
        for _ in range(6):
            assert rate.wait("twilio", timeout=10)
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=send, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    stamps.sort()
    assert len(stamps) == 12
    # In any one-second window at most 3 sends, whichever worker made them.
    for i, first in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s - first < 0.95) <= 3


def test_no_slot_defers_the_message_and_sends_nothing(session, account):
    from customers import service as customers

    customer = customers.create_customer(
        session=session, tenant=account.tenant, name="王女士", phone="13800138000"
    )
    message = _schedule(session, account, customer)
    provider = ScriptedProvider()
    outbox.claim_due(session=session, now=NOON_CN)
    outbox.claim_for_send(session=session, message_id=message.id, now=NOON_CN)
    outbox.deliver(
        session=session,
        message_id=message.id,
        provider=provider,
        now=NOON_CN,
        throttle=lambda: False,
    )
    assert (message.status, message.status_reason) == ("deferred", "rate_limited")
    assert provider.calls == []
    assert message.due_at > NOON_CN
