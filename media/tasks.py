"""Media queue entry points: thin wrappers over media.service."""

from __future__ import annotations

from sqlalchemy.orm import Session

from huifang.db import utcnow
from huifang.worker import enqueue, task
from media import service


@task(queue="media")
def process_media(*, session: Session, media_id: int) -> None:
    """Decode, watermark and render one uploaded photo."""
    service.process_media(session=session, media_id=media_id)


@task(queue="default")
def requeue_stuck_media(*, session: Session) -> None:
    """Periodic: photos whose task was lost (flushed Redis, a restart) are sent again."""
    now = utcnow()
    ids = service.stuck_media(session=session, now=now)
    service.touch(session=session, media_ids=ids, now=now)
    for media_id in ids:
        enqueue(session, process_media, media_id=media_id)
