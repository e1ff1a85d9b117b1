"""Customer entry points: background imports."""

from __future__ import annotations

from sqlalchemy.orm import Session

from customers import import_jobs
from customers.models import ImportJob
from huifang.db import utcnow
from huifang.worker import task


@task(queue="default", company=(ImportJob, "job_id"))
def run_import_job(*, session: Session, job_id: int) -> None:
    """Import an uploaded customer list, a chunk per transaction (resumes where it stopped)."""
    import_jobs.run(session=session, job_id=job_id)


@task(queue="default")
def resume_import_jobs(*, session: Session) -> None:
    """Periodic: imports whose worker went silent (a restart, a lost task) are queued again."""
    import_jobs.resume(session=session, now=utcnow())
