"""Messaging queue entry points: the dispatcher tick and the send task."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
TASK_MESSAGES = 50


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
    (committed), then the next, each batch ``service.batch_size(provider)`` messages."""
    waiting = list(message_ids)
    while waiting:
        size = service.batch_size(provider)
        batch, waiting = waiting[:size], waiting[size:]
        claimed = service.claim_many_for_send(session=session, message_ids=batch, now=utcnow())
        session.commit()  # `sending` is on record before anything leaves
        if claimed:
            service.deliver_many(
                session=session,
                message_ids=claimed,
                provider=provider,
                now=utcnow(),
                throttle=throttle,
            )
            session.commit()


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
