"""Report media that expire: kept N days, or deleted N days after the customer first saw them.

A report's media go at the first of: ``media_expires_at`` (None: the report's own expiry)
and ``media_after_view_days`` after ``first_viewed_at`` (阅后自动删除). Expiry deletes the
renditions of the visit's media, the long image, the recap and its poster, and the report's
own pictures from storage; the rows stay (the media ``expired``, the report's
``media_deleted_at``) so the visit keeps the record that media existed and when they went,
and the links answer 410. Originals are not touched here: the company's retention
(privacy.retention) decides when they go.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from huifang import storage
from huifang.errors import Invalid
from media.models import EXPIRED, Media
from reports.models import Report
from tenancy.models import Tenant

MAX_DAYS = 3650


def media_due_at(report: Report) -> dt.datetime:
    """When the report's media are to be deleted."""
    due = report.media_expires_at or report.expires_at
    if report.first_viewed_at is not None and report.media_after_view_days is not None:
        due = min(due, report.first_viewed_at + dt.timedelta(days=report.media_after_view_days))
    return due


def media_gone(report: Report) -> bool:
    return report.media_deleted_at is not None


def apply_company_rules(report: Report, tenant: Tenant, *, now: dt.datetime) -> None:
    """The company's expiry for a report built now (the first build; a rebuild keeps the
    report's own)."""
    if tenant.report_media_days is not None:
        report.media_expires_at = now + dt.timedelta(days=tenant.report_media_days)
    report.media_after_view_days = tenant.report_media_after_view_days


def set_report_expiry(
    *,
    session: Session,
    report: Report,
    keep_days: int | None,
    after_view_days: int | None,
) -> Report:
    """This report's own expiry: media kept ``keep_days`` after it was built (None: as long
    as the report is valid) and deleted ``after_view_days`` after the first view (None: not)."""
    for days in (keep_days, after_view_days):
        if days is not None and not 0 <= days <= MAX_DAYS:
            raise Invalid(f"Give a number of days from 0 to {MAX_DAYS}.")
    if report.media_deleted_at is not None:
        raise Invalid("This report's media have already been deleted.")
    report.media_expires_at = (
        report.built_at + dt.timedelta(days=keep_days) if keep_days is not None else None
    )
    report.media_after_view_days = after_view_days
    session.flush()
    return report


def record_view(*, session: Session, report: Report, now: dt.datetime) -> None:
    """The customer opened the report: the first time starts the 阅后 clock."""
    if report.first_viewed_at is not None:
        return
    session.execute(
        update(Report)
        .where(Report.id == report.id, Report.first_viewed_at.is_(None))
        .values(first_viewed_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(report, ["first_viewed_at"])


def due(*, session: Session, now: dt.datetime, limit: int = 200) -> list[int]:
    """Reports whose media are due for deletion."""
    candidates = session.scalars(
        select(Report)
        .where(
            Report.media_deleted_at.is_(None),
            or_(
                Report.expires_at <= now,
                Report.media_expires_at <= now,
                Report.first_viewed_at.is_not(None) & Report.media_after_view_days.is_not(None),
            ),
        )
        .order_by(Report.id)
    )
    found: list[int] = []
    for report in candidates:
        if media_due_at(report) <= now:
            found.append(report.id)
            if len(found) >= limit:
                break
    return found


def report_files(report: Report) -> list[str]:
    """Every file the report itself keeps: long image, recap, poster, its own pictures."""
    paths = [report.long_path, report.recap_path, report.recap_poster_path]
    paths += [entry["path"] for entry in (report.snapshot or {}).get("assets", {}).values()]
    return [p for p in paths if p]


def delete_visit_media_files(*, session: Session, visit_id: int, now: dt.datetime) -> int:
    """Delete the renditions of a visit's media from storage; the media stay as a record
    (``expired``, when). Returns how many files."""
    removed = 0
    for media in session.scalars(select(Media).where(Media.visit_id == visit_id)):
        for rendition in media.renditions:
            storage.remove(rendition.path)
            removed += 1
        if media.renditions_deleted_at is None:
            media.renditions_deleted_at = now
        media.status = EXPIRED
    return removed


def expire_media(
    *,
    session: Session,
    report_id: int,
    now: dt.datetime,
    held: Callable[[Media], bool] = lambda _media: False,
) -> bool:
    """Delete one report's media files if they are due; False when not (or already done).

    ``held`` says a media must stay for now (a campaign that can still send has it as its
    MMS picture, with the customer's marketing scope): the report waits for the next tick.
    """
    report = session.scalars(select(Report).where(Report.id == report_id).with_for_update()).first()
    if report is None or report.media_deleted_at is not None or media_due_at(report) > now:
        return False
    if any(
        held(m) for m in session.scalars(select(Media).where(Media.visit_id == report.visit_id))
    ):
        return False
    delete_visit_media_files(session=session, visit_id=report.visit_id, now=now)
    for path in report_files(report):
        storage.remove(path)
    report.media_deleted_at = now
    session.flush()
    return True
