"""Campaign ticks: materialize occurrences ahead, hand the due ones to the outbox."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from campaigns import service
from huifang.db import utcnow
from huifang.worker import task
from messaging.providers import get_provider

HAND_OFF_BUDGET_SECONDS = 45  # under the tick's minute; the next tick takes the rest


@task(queue="default")
def materialize_occurrences(*, session: Session) -> None:
    """Periodic: every active campaign's next occurrences within the horizon."""
    for campaign_id in service.active_campaign_ids(session=session):
        service.materialize(session=session, now=utcnow(), campaign_id=campaign_id)
        session.commit()  # a campaign per transaction: short locks, and progress is kept


@task(queue="default")
def materialize_campaign(*, session: Session, campaign_id: int) -> None:
    """After an activation or an edit: that campaign's occurrences, without waiting."""
    service.materialize(session=session, now=utcnow(), campaign_id=campaign_id)


@task(queue="default")
def hand_off_due_occurrences(*, session: Session) -> None:
    """Periodic: due occurrences become outbox messages, a batch per transaction."""
    mms = get_provider().supports_mms
    started = time.monotonic()
    while time.monotonic() - started < HAND_OFF_BUDGET_SECONDS:
        batch = service.hand_off_due(session=session, now=utcnow(), mms=mms,
                                     limit=service.HAND_OFF_BATCH)
        session.commit()  # each batch on record; a crash later loses none of it
        if batch.claimed < service.HAND_OFF_BATCH:
            return
