"""Customer lists imported in the background: a job per file, its progress, its row report.

The office uploads a CSV or XLSX file; ``create_job`` stores it (the bytes stay in the job's
row until it ends) and queues ``customers.tasks.run_import_job``. The task reads the file and
writes it ``CHUNK`` rows per transaction, each chunk committed with its rows' outcomes and
the job's counters, so a poller sees ``rows_done`` of ``rows_total`` grow, and the embedded
mode's single writer is never held for the whole file.

Surviving a restart: a running job's worker touches ``heartbeat_at`` with every chunk. A job
queued or running whose worker went silent for ``STALE`` (a restart, a task lost with the
in-memory queue or a flushed Redis) is queued again by the periodic
``customers.tasks.resume_import_jobs``; the worker claims it (a conditional update, so two
deliveries never run it together) and goes on after the last committed chunk. Importing a
row twice changes nothing, so a chunk cut off mid-way is simply done again. A job that has
been started ``MAX_ATTEMPTS`` times without finishing is marked ``interrupted`` with a
sentence saying how far it got, rather than retried for ever.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, insert, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from access import audit
from access.actors import Actor
from customers import service as customers
from customers.importer import ImportedRow, check_file_kind, read_customer_file
from customers.models import (
    DONE,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    ImportJob,
    ImportJobRow,
)
from huifang.db import utcnow
from huifang.errors import Conflict, HuifangError, NotFound, TooLarge
from huifang.pagination import PageParams, paginate
from huifang.settings import get_settings
from tenancy.models import Tenant

CHUNK = 500
STALE = dt.timedelta(minutes=2)
MAX_ATTEMPTS = 3
ROW_STATUSES = ("imported", "updated", "unchanged", "rejected")


def create_job(
    *,
    session: Session,
    tenant: Tenant,
    data: bytes,
    filename: str | None = None,
    actor: Actor | None = None,
) -> ImportJob:
    """Store an uploaded list and queue its import; the job to poll.

    What is plainly not a customer list (empty, too big, an old .xls, binary) is refused here,
    at once; a header or a row the file gets wrong is reported by the job.
    """
    limit = get_settings().import_max_bytes
    if len(data) > limit:
        raise TooLarge(f"The file is over {limit // (1024 * 1024)} MB; split it and retry.")
    check_file_kind(data)
    name = (filename or "").replace("\x00", "").strip()[:255] or None
    job = ImportJob(
        tenant_id=tenant.id,
        status=QUEUED,
        filename=name,
        file_bytes=len(data),
        data=data,
        created_at=utcnow(),
        created_by=actor.label[:100] if actor is not None else None,
    )
    session.add(job)
    session.flush()
    if actor is not None:
        audit.record(
            session,
            actor,
            "customers.import_started",
            f"import_job:{job.id}",
            {"filename": name, "bytes": len(data)},
        )
    _queue(session, job.id)
    return job


def _queue(session: Session, job_id: int) -> None:
    from customers import tasks  # the task module imports this one
    from huifang.worker import enqueue

    enqueue(session, tasks.run_import_job, job_id=job_id)


def get_job(*, session: Session, tenant_id: int, job_id: int) -> ImportJob:
    """The import job, or NotFound when it does not exist in this company."""
    job = session.get(ImportJob, job_id)
    if job is None or job.tenant_id != tenant_id:
        raise NotFound(f"There is no import {job_id} in this company.")
    return job


def list_jobs(*, session: Session, tenant_id: int, page: PageParams) -> tuple[list[ImportJob], int]:
    """The company's imports, newest first."""
    return paginate(
        session,
        select(ImportJob).where(ImportJob.tenant_id == tenant_id).order_by(ImportJob.id.desc()),
        page,
    )


def job_rows(
    *, session: Session, tenant_id: int, job_id: int, page: PageParams, status: str | None = None
) -> tuple[list[ImportJobRow], int]:
    """One page of a job's per-row report, in file order (only one outcome when asked)."""
    get_job(session=session, tenant_id=tenant_id, job_id=job_id)
    stmt = select(ImportJobRow).where(ImportJobRow.job_id == job_id)
    if status is not None:
        stmt = stmt.where(ImportJobRow.status == status)
    return paginate(session, stmt.order_by(ImportJobRow.line), page)


def job_customer_ids(*, session: Session, tenant_id: int, job_id: int) -> list[int]:
    """The customers a finished job imported or matched (its rejected rows left out)."""
    job = get_job(session=session, tenant_id=tenant_id, job_id=job_id)
    if job.status != DONE:
        raise Conflict(f"Import {job_id} has not finished ({job.status}); wait until it is done.")
    return list(
        session.scalars(
            select(ImportJobRow.customer_id)
            .where(
                ImportJobRow.job_id == job_id,
                ImportJobRow.status != "rejected",
                ImportJobRow.customer_id.is_not(None),
            )
            .order_by(ImportJobRow.line)
        )
    )


def stalled(job: ImportJob, *, now: dt.datetime) -> bool:
    """Whether a job waiting or running has not been heard of for ``STALE`` (it will resume)."""
    if job.status not in (QUEUED, RUNNING):
        return False
    last = job.heartbeat_at or job.created_at
    return now - last > STALE


# --- the worker's side ----------------------------------------------------------------------


def _claim(session: Session, job_id: int, now: dt.datetime) -> int | None:
    """Take the job for this worker: its attempt number, or None when another has it."""
    jobs = cast(Table, ImportJob.__table__)
    claimed = cast(
        CursorResult[Any],
        session.execute(
            update(jobs)
            .where(
                jobs.c.id == job_id,
                or_(
                    jobs.c.status == QUEUED,
                    (jobs.c.status == RUNNING) & (jobs.c.heartbeat_at < now - STALE),
                ),
            )
            .values(status=RUNNING, attempts=jobs.c.attempts + 1, heartbeat_at=now)
        ),
    )
    if claimed.rowcount != 1:
        return None
    return int(session.scalar(select(jobs.c.attempts).where(jobs.c.id == job_id)) or 0)


def _still_ours(session: Session, job_id: int, attempt: int, now: dt.datetime) -> bool:
    jobs = cast(Table, ImportJob.__table__)
    touched = cast(
        CursorResult[Any],
        session.execute(
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == RUNNING, jobs.c.attempts == attempt)
            .values(heartbeat_at=now)
        ),
    )
    return touched.rowcount == 1


def _finish(
    session: Session, job: ImportJob, status: str, now: dt.datetime, error: str | None = None
) -> None:
    job.status = status
    job.error = error
    job.finished_at = now
    job.heartbeat_at = now
    job.data = None  # the customers are in; the file itself is not kept
    session.flush()


def run(*, session: Session, job_id: int) -> None:
    """Import the job's file a chunk at a time, committing each (the task's body)."""
    now = utcnow()
    attempt = _claim(session, job_id, now)
    if attempt is None:
        return  # finished, or another worker is on it
    job = session.get(ImportJob, job_id)
    assert job is not None
    if attempt > MAX_ATTEMPTS:
        _interrupt(session, job, now)
        return
    if job.started_at is None:
        job.started_at = now
    session.commit()

    tenant = session.get(Tenant, job.tenant_id)
    data = job.data
    if tenant is None or data is None:
        _finish(
            session,
            job,
            FAILED,
            now,
            "The file of this import is no longer there; upload it again.",
        )
        return
    try:
        rows = read_customer_file(data, max_rows=get_settings().import_max_rows)
    except HuifangError as exc:
        _finish(session, job, FAILED, utcnow(), exc.detail)
        return
    job.rows_total = len(rows)
    session.commit()

    # Numbers of the rows already written (a resumed job), so a later duplicate line is
    # still refused as one, as in a single pass.
    first_line_of = {
        phone: line
        for phone, line in session.execute(
            select(ImportJobRow.phone, ImportJobRow.line).where(
                ImportJobRow.job_id == job_id,
                ImportJobRow.phone.is_not(None),
                ImportJobRow.status != "rejected",
            )
        )
        if phone is not None
    }
    for start in range(job.rows_done, len(rows), CHUNK):
        if not _still_ours(session, job_id, attempt, utcnow()):
            session.rollback()
            return
        _write_chunk(session, tenant, job, rows[start : start + CHUNK], first_line_of)
        session.commit()
    _finish(session, job, DONE, utcnow())


def _write_chunk(
    session: Session,
    tenant: Tenant,
    job: ImportJob,
    chunk: Sequence[ImportedRow],
    first_line_of: dict[str, int],
) -> None:
    outcomes = customers.upsert_rows(
        session=session, tenant=tenant, rows=chunk, first_line_of=first_line_of
    )
    session.execute(
        insert(cast(Table, ImportJobRow.__table__)),
        [
            {
                "tenant_id": tenant.id,
                "job_id": job.id,
                "line": o.line,
                "status": o.status,
                "customer_id": o.customer_id,
                "phone": o.phone,
                "reason": o.reason,
            }
            for o in outcomes
        ],
    )
    counts = customers.count_outcomes(outcomes)
    job.imported += counts["imported"]
    job.updated += counts["updated"]
    job.unchanged += counts["unchanged"]
    job.rejected += counts["rejected"]
    job.rows_done += len(chunk)
    job.heartbeat_at = utcnow()


def _interrupt(session: Session, job: ImportJob, now: dt.datetime) -> None:
    total = f" of {job.rows_total}" if job.rows_total is not None else ""
    _finish(
        session,
        job,
        INTERRUPTED,
        now,
        f"The import stopped {MAX_ATTEMPTS} times and was given up after {job.rows_done}"
        f"{total} rows; those rows are in (see the report). Upload the file again to "
        "import the rest: rows already in are reported unchanged.",
    )


def resumable(*, session: Session, now: dt.datetime) -> list[int]:
    """Jobs whose worker went silent: queued or running, not heard of for ``STALE``."""
    return list(
        session.scalars(
            select(ImportJob.id)
            .where(
                ImportJob.status.in_((QUEUED, RUNNING)),
                or_(
                    ImportJob.heartbeat_at < now - STALE,
                    ImportJob.heartbeat_at.is_(None) & (ImportJob.created_at < now - STALE),
                ),
            )
            .order_by(ImportJob.id)
            .limit(100)
        )
    )


def resume(*, session: Session, now: dt.datetime) -> list[int]:
    """Queue silent jobs again (the periodic tick); jobs started too often are given up."""
    ids = resumable(session=session, now=now)
    for job_id in ids:
        job = session.get(ImportJob, job_id)
        assert job is not None
        if job.attempts >= MAX_ATTEMPTS:
            _interrupt(session, job, now)
            continue
        # Queued again, and heard of now: the tick sends it once per STALE, and a worker
        # of the last attempt that is still alive after all stops at its next chunk.
        job.status = QUEUED
        job.heartbeat_at = now
        _queue(session, job_id)
    session.flush()
    return ids
