"""Messaging queue entry points: the dispatcher tick and the send task."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from huifang import rls
from huifang.db import utcnow
from huifang.worker import Coalescer, each_on_its_own, enqueue, task
from messaging import service, waiting
from messaging.models import Message
from messaging.providers import get_provider
from messaging.providers.base import Provider
from messaging.ratelimit import send_rate

# Due messages per send task: a worker sends them in batches sized to the provider's pace.
# A multiple of the usual calls at once (1, 2, 4, 8, 16, 32), so that the task's last round
# of calls fills every slot (50 left two of eight slots idle for a whole provider round).
TASK_MESSAGES = 64


@task(queue="messaging")
def dispatch_due(*, session: Session) -> None:
    """Periodic: claim the messages that are due and send them in tasks of up to
    ``TASK_MESSAGES``."""
    now = utcnow()
    ids = service.claim_due(session=session, now=now) + service.sweep(session=session, now=now)
    for start in range(0, len(ids), TASK_MESSAGES):
        enqueue(session, send_messages, message_ids=ids[start : start + TASK_MESSAGES])


@task(queue="messaging")
def send_messages(*, session: Session, message_ids: list[int]) -> None:
    """``send_message`` for many, in batches: claim a batch (committed), gate, send and
    record it (committed), then the next.

    A batch is as many messages as the provider takes in about a quarter of a second
    (``service.batch_size``): one at a time against a provider (or a rate limit) that takes
    250 ms or more per message, up to 50 against a fast one. A worker killed mid-batch
    leaves that batch ``sending`` (settled as ``unknown`` by the sweep, never re-sent) and
    the rest ``queued`` (sent by the sweep).
    """
    _send(session, message_ids)


# On the default queue, not behind a campaign's batches on the messaging queue: one message
# someone is waiting for now (an answer to the customer's own text, a booking confirmation,
# a report staff just sent, an operator's retry). The messaging workers take both queues.
@task(queue="default", company=(Message, "message_id"))
def send_message(*, session: Session, message_id: int) -> None:
    """Claim, then gate, render, call the provider and record (two transactions)."""
    _send(session, [message_id])


@task(queue="default")
def send_answers(*, session: Session, message_ids: list[int]) -> None:
    """``send_message`` for the answers to replies that arrived together (``answers``)."""
    _send(session, message_ids)


# Answers to customers' replies (opt-out and opt-in confirmations, help, booking
# acknowledgements): published by the webhooks, coalesced over 50 ms.
answers = Coalescer(send_answers, argument="message_ids", window=0.05, limit=TASK_MESSAGES)


def _send(session: Session, message_ids: list[int]) -> None:
    provider = get_provider()
    rate = send_rate(provider.name, provider.capabilities.rate_per_second)
    # Ids handed in together (the dispatcher's claim, coalesced answers) may be several
    # companies'; each company's are sent under its own scope (row-level security).
    for tenant_id, ids in rls.by_tenant(session, Message, message_ids).items():
        if tenant_id is not None:
            rls.scope_to_tenant(session, tenant_id)
        try:
            send_in_batches(
                session=session,
                message_ids=ids,
                provider=provider,
                throttle=(lambda: rate.wait(provider.name)) if rate else None,
            )
        finally:
            rls.forget(session)


def send_in_batches(
    *,
    session: Session,
    message_ids: Sequence[int],
    provider: Provider,
    throttle: Callable[[], bool] | None = None,
) -> None:
    """What a send task does: claim a batch (committed), gate, send and record it
    (committed), then the next.

    On PostgreSQL, once the provider's pace is known (the process's first send to it
    measures it, alone), when its calls set a batch's pace (``service.calls_set_the_pace``:
    not against a provider answering within milliseconds, where the database does) and more
    than one batch is left, the work goes through ``LANES`` such loops at once, each in a
    transaction of its own on its own connection, sharing the process's
    ``send_concurrency`` call slots: while one lane claims,
    gates or records its batch, the other's calls keep the slots busy, so the database work
    between batches does not leave the provider idle. Each lane's batch is sized to its
    share of the calls at once (``service.batch_size(provider, lanes=LANES)``), so a batch
    holds its numbers' locks about as long as one lane alone would. Two lanes never wait
    for each other in a circle: a lane's transaction takes its numbers' locks in one
    statement, then only waits for call slots, which the other lane's calls give back
    without touching the database (the same reason two worker processes are safe). SQLite,
    whose writers queue for one lock, and a session bound to a connection (a test's
    transaction) keep one lane.
    """
    work = _Work(message_ids)
    if not service.pace_known(provider):  # one message first, to measure it
        _send_lane(session, work, provider, throttle, lanes=1, first=True)
    engine = session.get_bind()
    if (
        LANES <= 1
        or not isinstance(engine, Engine)
        or engine.dialect.name != "postgresql"
        or not service.calls_set_the_pace(provider)  # a fast provider: one lane
        or work.left() <= service.batch_size(provider, lanes=LANES)  # one batch: one lane
    ):
        _send_lane(session, work, provider, throttle, lanes=1)
        return
    failures: list[BaseException] = []

    def other_lane() -> None:
        try:
            # Closed unfinished, the lane's open transaction is rolled back.
            with Session(bind=engine, expire_on_commit=False, info=dict(session.info)) as own:
                _send_lane(own, work, provider, throttle, lanes=LANES)
        except BaseException as exc:  # handed to the task's thread, which raises it
            work.stop()
            failures.append(exc)

    others = [
        threading.Thread(target=other_lane, name=f"send-lane-{n}", daemon=True)
        for n in range(1, LANES)
    ]
    for thread in others:
        thread.start()
    try:
        _send_lane(session, work, provider, throttle, lanes=LANES)
    except BaseException:
        work.stop()
        raise
    finally:
        for thread in others:
            thread.join()
    if failures:
        raise failures[0]


# Send loops per task on PostgreSQL (``send_in_batches``).
LANES = 2


class _Work:
    """The task's messages not yet taken by a lane, handed out a batch at a time."""

    def __init__(self, message_ids: Sequence[int]) -> None:
        self._waiting = list(message_ids)
        self._lock = threading.Lock()
        self._stopped = False

    def take(self, size: int) -> list[int]:
        with self._lock:
            if self._stopped:
                return []
            batch, self._waiting = self._waiting[:size], self._waiting[size:]
            return batch

    def left(self) -> int:
        with self._lock:
            return 0 if self._stopped else len(self._waiting)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True


def _send_lane(
    session: Session,
    work: _Work,
    provider: Provider,
    throttle: Callable[[], bool] | None,
    *,
    lanes: int,
    first: bool = False,
) -> None:
    """Take batches from ``work`` until none is left (``first``: one batch only)."""
    while batch := work.take(service.batch_size(provider, lanes=lanes)):
        claimed = service.claim_many_for_send(session=session, message_ids=batch, now=utcnow())
        session.commit()  # `sending` is on record before anything leaves
        if claimed:
            service.send_batch(
                session=session,
                message_ids=claimed,
                provider=provider,
                now=utcnow(),
                throttle=throttle,
            )
            session.commit()
        if first:
            return


@task(queue="default")
def scan_alerts(*, session: Session) -> None:
    """Every minute: replies waiting past the response target, a provider failing; each
    company on its own (one that fails is logged and skipped)."""
    now = utcnow()
    each_on_its_own(
        session,
        "scan_alerts",
        waiting.companies_listening(session=session),
        lambda tenant_id: waiting.scan(session=session, tenant_id=tenant_id, now=now),
        what="tenant_id",
        scope=rls.COMPANIES,
    )
