"""Media queue entry points: thin wrappers over media.service."""

from __future__ import annotations

from sqlalchemy.orm import Session

from huifang.db import utcnow
from huifang.worker import each_on_its_own, enqueue, task
from media import resumable, service
from media.models import Media, ResumableUpload


@task(queue="media", company=(Media, "media_id"))
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


@task(queue="default")
def sweep_uploads(*, session: Session) -> None:
    """Periodic: resumable uploads that expired (or finished a day ago) are removed with their
    bytes; complete ones whose request died before the handover are handed over; pieces no
    upload owns go. Each upload on its own: one that fails is logged and the others go on."""
    now = utcnow()
    each_on_its_own(
        session,
        "media.tasks.sweep_uploads",
        resumable.stalled(session=session, now=now),
        lambda upload_id: resumable.finish_stalled(
            session=session,
            upload_id=upload_id,
            now=now,
            on_media=lambda media: enqueue(session, process_media, media_id=media.id),
        ),
        what="upload_id",
        scope=ResumableUpload,
    )
    each_on_its_own(
        session,
        "media.tasks.sweep_uploads",
        resumable.sweepable(session=session, now=now),
        lambda upload_id: resumable.remove(session=session, upload_id=upload_id, now=now),
        what="upload_id",
        scope=ResumableUpload,
    )
    for token in resumable.orphans(session=session, now=now):
        resumable.remove_orphan(token)
