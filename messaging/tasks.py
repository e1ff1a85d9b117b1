"""Messaging queue entry points: the dispatcher tick and the send task."""

from __future__ import annotations

from sqlalchemy.orm import Session

from huifang.db import utcnow
from huifang.worker import enqueue, task
from messaging import service
from messaging.providers import get_provider
from messaging.ratelimit import send_rate


@task(queue="messaging")
def dispatch_due(*, session: Session) -> None:
    """Periodic: claim the messages that are due and send each in a task of its own."""
    now = utcnow()
    ids = service.claim_due(session=session, now=now) + service.sweep(session=session, now=now)
    for message_id in ids:
        enqueue(session, send_message, message_id=message_id)


@task(queue="messaging")
def send_message(*, session: Session, message_id: int) -> None:
    """Claim, then gate, render, call the provider and record (two transactions)."""
    if not service.claim_for_send(session=session, message_id=message_id, now=utcnow()):
        return  # a second delivery, or no longer queued
    session.commit()  # `sending` is on record before anything leaves
    provider = get_provider()
    rate = send_rate(provider.name, provider.rate_per_second)
    service.deliver(session=session, message_id=message_id, provider=provider, now=utcnow(),
                    throttle=(lambda: rate.wait(provider.name)) if rate else None)
