"""The files a visit has under storage: originals, renditions, the report's own files."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns import lifecycle
from huifang import storage
from media.models import Media
from reports import expiry
from reports.models import Report
from visits import service as visits


def visit_files(*, session: Session, visit_id: int) -> list[str]:
    """Every stored file of a visit, by its relative name."""
    paths: list[str] = []
    for media in session.scalars(select(Media).where(Media.visit_id == visit_id)):
        if media.original_path:
            paths.append(media.original_path)
        paths += [r.path for r in media.renditions if r.path]
    report = session.scalars(select(Report).where(Report.visit_id == visit_id)).first()
    if report is not None:
        paths += expiry.report_files(report)
    return list(dict.fromkeys(paths))


def delete_visit_files(*, session: Session, visit_id: int, now: dt.datetime) -> int:
    """Delete every stored file of a visit (the rows say when); returns how many names."""
    paths = visit_files(session=session, visit_id=visit_id)
    for path in paths:
        storage.remove(path)
    for media in session.scalars(select(Media).where(Media.visit_id == visit_id)):
        media.renditions_deleted_at = media.renditions_deleted_at or now
        media.original_deleted_at = media.original_deleted_at or now
    report = session.scalars(select(Report).where(Report.visit_id == visit_id)).first()
    if report is not None and report.media_deleted_at is None:
        report.media_deleted_at = now
    return len(paths)


def delete_visit(*, session: Session, tenant_id: int, visit_id: int, now: dt.datetime) -> None:
    """Delete a visit with its media and report, and their files from storage."""
    visits.get_visit(session=session, tenant_id=tenant_id, visit_id=visit_id)
    delete_visit_files(session=session, visit_id=visit_id, now=now)
    visits.delete_visit(session=session, tenant_id=tenant_id, visit_id=visit_id)
    session.flush()


def used_by_campaign(session: Session, media: Media) -> bool:
    """Whether a campaign that can still send has this photo as its MMS picture (which the
    customer's marketing scope allowed): its files wait until the campaign ends."""
    return any(lifecycle.picture_in_use(session=session, rendition=r) for r in media.renditions)
