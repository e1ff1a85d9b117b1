"""Report work on the media queue: the recap video, made outside any transaction."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from huifang.db import utcnow
from huifang.worker import each_on_its_own, task
from reports import expiry, recaps


@task(queue="media")
def render_recap(*, session: Session, report_id: int) -> None:
    """Make the recap video of a report whose visit has clips (ffmpeg outside any transaction)."""
    job = recaps.recap_job(session=session, report_id=report_id)
    session.commit()
    if job is None:
        return
    with tempfile.TemporaryDirectory(prefix="huifang-recap-") as work:
        made = recaps.make(job, workdir=Path(work))
        recaps.record(session=session, job=job, made=made)
        session.commit()  # the files are copied in before the scratch directory goes


@task(queue="default")
def expire_report_media(*, session: Session) -> None:
    """Every 10 minutes: delete the media files of reports whose time ran out (kept N days,
    or N days after the customer first viewed them), a report per transaction."""
    now = utcnow()
    each_on_its_own(
        session,
        "expire_report_media",
        expiry.due(session=session, now=now),
        lambda report_id: expiry.expire_media(session=session, report_id=report_id, now=now),
        what="report_id",
    )
