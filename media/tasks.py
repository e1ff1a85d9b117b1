"""Media queue entry points: thin wrappers over media.service."""

from __future__ import annotations

from sqlalchemy.orm import Session

from huifang.db import utcnow
from huifang.worker import enqueue, task
from media import service


@task(queue="media")
def process_media(*, session: Session, media_id: int) -> None:
    """Decode, watermark and render one uploaded photo or clip."""
    job = service.clip_job(session=session, media_id=media_id)
    if job is None:  # a photo (or a clip already finished): one short transaction
        service.process_media(session=session, media_id=media_id)
        return
    # A clip takes ffmpeg seconds to minutes: commit first, so no lock is held meanwhile
    # (SQLite's write lock would make every upload of the embedded mode wait on it).
    session.commit()
    service.run_clip_job(session=session, job=job)


@task(queue="default")
def requeue_stuck_media(*, session: Session) -> None:
    """Periodic: media whose task was lost (flushed Redis, a restart) are sent again."""
    now = utcnow()
    ids = service.stuck_media(session=session, now=now)
    service.touch(session=session, media_ids=ids, now=now)
    for media_id in ids:
        enqueue(session, process_media, media_id=media_id)
