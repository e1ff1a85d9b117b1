"""Campaign ticks: materialize occurrences ahead, hand the due ones to the outbox."""

from __future__ import annotations

import time

import structlog
from sqlalchemy.orm import Session

from campaigns import handoff
from campaigns import materialize as materializer
from campaigns.models import Campaign
from huifang.db import utcnow
from huifang.metrics import PERIODIC_FAILURES
from huifang.worker import each_on_its_own, task
from messaging.providers import get_provider

log = structlog.get_logger(__name__)

HAND_OFF_BUDGET_SECONDS = 45  # under the tick's minute; the next tick takes the rest


@task(queue="default")
def materialize_occurrences(*, session: Session) -> None:
    """Periodic: every active campaign's next occurrences within the horizon.

    A campaign per transaction: short locks, progress kept, and one campaign that fails
    is logged and skipped while every other company's are done.
    """
    each_on_its_own(
        session,
        "materialize_occurrences",
        materializer.active_campaign_ids(session=session),
        lambda campaign_id: materializer.materialize(
            session=session, now=utcnow(), campaign_id=campaign_id
        ),
        what="campaign_id",
        scope=Campaign,
    )


@task(queue="default", company=(Campaign, "campaign_id"))
def materialize_campaign(*, session: Session, campaign_id: int) -> None:
    """After an activation or an edit: that campaign's occurrences, without waiting."""
    materializer.materialize(session=session, now=utcnow(), campaign_id=campaign_id)


@task(queue="default")
def hand_off_due_occurrences(*, session: Session) -> None:
    """Periodic: due occurrences become outbox messages, a batch per transaction."""
    mms = get_provider().capabilities.supports_mms
    started = time.monotonic()
    while time.monotonic() - started < HAND_OFF_BUDGET_SECONDS:
        batch = handoff.hand_off_due(
            session=session, now=utcnow(), mms=mms, limit=handoff.HAND_OFF_BATCH
        )
        session.commit()  # each batch on record; a crash later loses none of it
        for campaign_id, error in batch.failed.items():
            PERIODIC_FAILURES.labels("hand_off_due_occurrences").inc()
            log.error(
                "hand-off failed for a campaign; its occurrences wait",
                campaign_id=campaign_id,
                error=error,
            )
        if batch.claimed < handoff.HAND_OFF_BATCH:
            return
