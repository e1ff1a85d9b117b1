"""Report work on the media queue: the recap video, made outside any transaction."""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from huifang.worker import task
from reports import recaps
from reports.models import Report


@task(queue="media", company=(Report, "report_id"))
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
