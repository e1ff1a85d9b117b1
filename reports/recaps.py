"""The recap video of a visit's report: planned from the visit's media, rendered off-transaction.

A report is built in under a second; its recap takes ffmpeg tens of seconds, so it is made
on the media queue afterwards (``media.tasks.render_recap``) in three steps, like a clip:
``recap_job`` reads what it needs (one short transaction), ``make`` runs ffmpeg on files
only, ``record`` attaches the result. The page and the MMS parts show the recap once it is
there. A recap is made only when the visit has clips; it is made again only when the
visit's media changed since (``RecapJob.fingerprint``).

Inputs are the already watermarked renditions: the normalized ``video`` of each clip and
the ``display`` JPEG of each photo, so nothing is watermarked twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from huifang import storage
from huifang.settings import get_settings
from media import clips
from media.models import READY, Media
from reports import recap_video as recap
from reports import service as reports
from reports.models import Report
from tenancy.models import Tenant
from visits.models import Staff, Visit
from visits.service_types import label

# Fits Twilio (5 MB with the rest of the message) and Aliyun 数字短信 (1.9 MB in all)
# together with a picture or two: DESIGN.md, provider profiles.
RECAP_BUDGET = 1_500_000
SOURCE_KEY = "recap_source"


@dataclass(frozen=True)
class RecapJob:
    """Plain values read from the database before ffmpeg starts."""

    report_id: int
    fingerprint: str
    # Each segment's path is the stored rendition's name until ``make`` fetches it.
    segments: tuple[recap.Segment, ...]
    title: recap.Card
    end: recap.Card


@dataclass(frozen=True)
class RecapMade:
    video: Path
    poster: Path
    duration: float


def _inputs(session: Session, report: Report) -> list[tuple[Media, str, str]]:
    """(media, kind, stored name) for each ready clip and photo of the visit, in upload
    order."""
    found = []
    for media in session.scalars(
        select(Media)
        .where(
            Media.tenant_id == report.tenant_id,
            Media.visit_id == report.visit_id,
            Media.status == READY,
        )
        .order_by(Media.received_at, Media.id)
    ):
        wanted = "video" if media.kind == "clip" else "display"
        rendition = next((r for r in media.renditions if r.kind == wanted), None)
        if rendition is not None:
            found.append((media, media.kind, rendition.path))
    return found


def _fingerprint(inputs: list[tuple[Media, str, str]]) -> str:
    digest = hashlib.sha256()
    for media, kind, relative in inputs:
        digest.update(f"{media.id}:{kind}:{media.sha256}:{PurePosixPath(relative).name};".encode())
    return digest.hexdigest()[:32]


def recap_job(*, session: Session, report_id: int) -> RecapJob | None:
    """What the recap of this report needs, or None when there is nothing (new) to make.

    A report whose visit has no clip left loses its recap here.
    """
    report = session.get(Report, report_id)
    if report is None:
        return None
    inputs = _inputs(session, report)
    if not any(kind == "clip" for _, kind, _ in inputs):
        if report.recap_path:
            reports.clear_recap(session=session, report=report)
        return None
    fingerprint = _fingerprint(inputs)
    if report.recap_path and (report.snapshot or {}).get(SOURCE_KEY) == fingerprint:
        return None
    tenant = session.get(Tenant, report.tenant_id)
    visit = session.get(Visit, report.visit_id)
    assert tenant is not None and visit is not None
    staff = session.get(Staff, visit.staff_id) if visit.staff_id else None
    segments = tuple(
        recap.Segment(
            kind="clip" if kind == "clip" else "photo",
            path=Path(relative),
            container="mp4" if kind == "clip" else None,
            duration=float(media.duration_seconds or 0.0),
            phase=media.phase,
            size=(media.width, media.height) if media.width and media.height else None,
        )
        for media, kind, relative in inputs
    )
    day = visit.finished_at or visit.created_at or dt.datetime.now(dt.UTC)
    local_day = day.astimezone(ZoneInfo(tenant.timezone)).date()
    # The company's public address only: a loopback one (the unset default) would be a
    # link no customer can open, so the card then shows the reply hint alone.
    public = get_settings().public_address
    booking_url = public + reports.book_path(report) if public else None
    return RecapJob(
        report_id=report.id,
        fingerprint=fingerprint,
        segments=segments,
        title=recap.title_card(
            company=tenant.name,
            service=label(visit.service_type),
            day=local_day,
            staff=staff.name if staff else None,
        ),
        end=recap.end_card(booking_url=booking_url),
    )


def make(job: RecapJob, *, workdir: Path) -> RecapMade:
    """Plan and render the recap and take its poster frame: files only, no database.

    ffmpeg reads only local files: the stored renditions themselves on local disk, or
    copies fetched into ``workdir`` from a bucket.
    """
    segments = [
        replace(segment, path=storage.local_copy(segment.path.as_posix(), workdir))
        for segment in job.segments
    ]
    plan = recap.plan(segments, title=job.title, end=job.end)
    result = recap.render(plan, workdir / "recap.mp4", budget_bytes=RECAP_BUDGET)
    poster = workdir / "recap.jpg"
    clips.poster(result.path, poster, at=min(3.0, result.duration / 2))
    return RecapMade(video=result.path, poster=poster, duration=result.duration)


def record(*, session: Session, job: RecapJob, made: RecapMade) -> Report | None:
    """Attach the rendered recap, unless the report went away meanwhile."""
    report = session.get(Report, job.report_id)
    if report is None:
        return None
    reports.attach_recap(
        session=session, report=report, video=made.video, duration=made.duration, poster=made.poster
    )
    report.snapshot = {**(report.snapshot or {}), SOURCE_KEY: job.fingerprint}
    flag_modified(report, "snapshot")
    session.flush()
    return report
