"""Visit media: accept uploads, process photos and clips into watermarked renditions, pair
before/after."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog
from PIL import Image
from sqlalchemy import and_, column, or_, select, table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access import audit
from access.actors import Actor
from compliance import capture
from huifang import rls, storage
from huifang.db import UTCDateTime, on_commit, utcnow
from huifang.errors import HuifangError, Invalid, NotFound, UnsupportedType
from huifang.settings import get_settings
from media import clips, composite, imaging, renditions, watermark
from media.models import (
    FAILED,
    PHASE_LABELS,
    PHASES,
    PROCESSING,
    READY,
    Media,
    Rendition,
    WatermarkTemplate,
)
from media.upload import StagedUpload
from tenancy.models import Tenant
from visits import service as visits
from visits.models import Staff, Visit

log = structlog.get_logger(__name__)

# Crockford's base32: no I, L, O or U, so a code read aloud or retyped survives.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10  # 50 bits: short since people type it off a watermark; /v/ is rate-limited
COMPOSITE = "before_after"
STUCK_AFTER = dt.timedelta(minutes=3)
# A clip's ffmpeg run may take up to clips.NORMALIZE_TIMEOUT; only after that is it lost.
CLIP_STUCK_AFTER = dt.timedelta(minutes=8)
POSTER_AT = 1.0  # seconds into the clip, or its middle when shorter than two seconds
# The file extension of each kind of rendition we write.
EXTENSIONS = {"image/jpeg": ".jpg", "video/mp4": ".mp4"}
# The container of a clip, from the type sniffed at upload (Media.mime).
CONTAINERS = {sniffed.mime: sniffed.format for sniffed in imaging.CLIP.values()}
STAFF_PHOTO_EDGE = 512  # the staff card shows it at most 132 px wide, at 3x on phones
STAFF_PHOTO_MAX_BYTES = 10 * 1024 * 1024


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def format_code(code: str) -> str:
    """``K7Q2A9XMA3`` → ``K7Q2A-9XMA3``, as printed on the watermark."""
    return f"{code[:5]}-{code[5:]}"


def normalize_code(text: str) -> str:
    """What a person typed back into a stored code: any case, dashes, O for 0, I/L for 1."""
    cleaned = text.strip().upper().replace("-", "").replace(" ", "")
    return cleaned.translate(str.maketrans("OIL", "011"))


# --- upload --------------------------------------------------------------------------------


def accept_upload(
    *,
    session: Session,
    tenant: Tenant,
    visit_id: int,
    staged: StagedUpload,
    now: dt.datetime | None = None,
) -> tuple[Media, bool]:
    """Keep a staged upload as a media of the visit: the media and whether it is new.

    The same file sent twice to a visit gives back the first media. A photo is checked here
    (header, format, pixel limit, complete data) so a bad file gets its 4xx now; the work
    of processing it runs later on the media queue. A clip is only sniffed here: reading
    it means running ffmpeg, which is the media queue's work, so a damaged clip ends
    ``failed`` with a sentence rather than refused at the door.
    """
    now = now or utcnow()
    try:
        visit = visits.get_visit(session=session, tenant_id=tenant.id, visit_id=visit_id)
        capture.require_capture(
            session=session, tenant=tenant, customer_id=visit.customer_id, kind=staged.sniffed.kind
        )
        phase = staged.fields.get("phase", "").strip()
        if phase not in PHASES:
            raise Invalid(f"Say which moment this shows: phase must be one of {', '.join(PHASES)}.")
        area = staged.fields.get("area", "").strip() or None
        if area and len(area) > visits.MAX_AREA_LENGTH:
            raise Invalid(f"The area {area[:20]!r} is too long; use a room name such as 客厅.")
        note = staged.fields.get("note", "").strip() or None
        existing = session.scalars(
            select(Media).where(Media.visit_id == visit.id, Media.sha256 == staged.sha256)
        ).first()
        if existing is not None:
            staged.discard()
            return existing, False
        if staged.sniffed.kind == "photo":
            imaging.check_photo(staged.path)
    except BaseException:
        staged.discard()
        raise

    relative = storage.new_relative_path("originals", tenant.id, staged.sniffed.ext, now=now)
    storage.adopt(staged.path, relative)
    media = Media(
        tenant_id=tenant.id,
        visit_id=visit.id,
        kind=staged.sniffed.kind,
        phase=phase,
        area=area,
        note=note,
        status=PROCESSING,
        original_path=relative,
        original_name=staged.filename,
        sha256=staged.sha256,
        bytes=staged.size,
        mime=staged.sniffed.mime,
        received_at=now,
        verification_code=new_code(),
    )
    try:
        with session.begin_nested():  # two phones sending the same file at once
            session.add(media)
            session.flush()
    except IntegrityError:
        storage.remove(relative)
        existing = session.scalars(
            select(Media).where(Media.visit_id == visit.id, Media.sha256 == staged.sha256)
        ).first()
        if existing is None:
            raise
        return existing, False
    return media, True


def check_capture(*, session: Session, tenant: Tenant, visit_id: int) -> Visit:
    """The visit, once its customer's permission to photograph the home is on record (when
    the company asks for it): checked before an upload's body is read."""
    visit = visits.get_visit(session=session, tenant_id=tenant.id, visit_id=visit_id)
    capture.require_capture(session=session, tenant=tenant, customer_id=visit.customer_id)
    return visit


def get_media(*, session: Session, tenant_id: int, media_id: int) -> Media:
    """The media, or NotFound when it does not exist in this tenant."""
    media = session.get(Media, media_id)
    if media is None or media.tenant_id != tenant_id:
        raise NotFound(f"There is no media {media_id} in this company.")
    return media


def list_visit_media(*, session: Session, tenant_id: int, visit_id: int) -> list[Media]:
    visits.get_visit(session=session, tenant_id=tenant_id, visit_id=visit_id)
    return list(
        session.scalars(
            select(Media)
            .where(Media.tenant_id == tenant_id, Media.visit_id == visit_id)
            .order_by(Media.received_at, Media.id)
        )
    )


def original_file(media: Media, scratch: Path) -> Path:
    """The original as a local file (a download into ``scratch`` with an S3 backend)."""
    return storage.local_copy(media.original_path, scratch)


# --- processing ----------------------------------------------------------------------------


def template_for(*, session: Session, tenant_id: int) -> WatermarkTemplate:
    """The company's watermark layout (the defaults until it sets one)."""
    template = session.get(WatermarkTemplate, tenant_id)
    if template is None:
        template = WatermarkTemplate(
            tenant_id=tenant_id, position="bottom-left", scale=1.0, show_capture_time=True
        )
    return template


def facts_for(
    *, session: Session, media: Media, template: WatermarkTemplate, captured_at: dt.datetime | None
) -> watermark.WatermarkFacts:
    """What the watermark says, all of it from our own records: never from the client."""
    visit = session.get(Visit, media.visit_id)
    tenant = session.get(Tenant, media.tenant_id)
    assert visit is not None and tenant is not None
    staff = session.get(Staff, visit.staff_id) if visit.staff_id else None
    logo = None
    if template.logo_path:
        try:
            with Image.open(io.BytesIO(storage.read_bytes(template.logo_path))) as raw:
                logo = raw.copy()
        except Exception:  # a missing or broken logo is left out, never fatal
            log.warning("watermark logo unreadable", tenant_id=tenant.id)
    return watermark.WatermarkFacts(
        company=tenant.name,
        service=visit.service_label,
        phase=PHASE_LABELS.get(media.phase, media.phase),
        received_at=media.received_at,
        timezone=tenant.timezone,
        code=format_code(media.verification_code),
        staff=staff.name if staff else None,
        area=media.area,
        captured_at=captured_at if template.show_capture_time else None,
        logo=logo,
    )


def _store_rendition(
    session: Session,
    media: Media,
    made: renditions.Rendition,
    *,
    kind: str | None = None,
    now: dt.datetime,
    file: Path | None = None,
) -> Rendition:
    """Store ``made`` (its bytes, or ``file`` when a clip's video is too big to hold in
    memory) and put it on record in place of the media's earlier one of that kind."""
    kind = kind or made.kind
    relative = storage.new_relative_path(
        "renditions", media.tenant_id, EXTENSIONS[made.content_type], now=now
    )
    if file is not None:
        storage.put_file(file, relative)
        size = file.stat().st_size
    else:
        storage.write_bytes(relative, made.data)
        size = len(made.data)
    old = next((r for r in media.renditions if r.kind == kind), None)
    if old is not None:
        storage.remove(old.path)
        media.renditions.remove(old)
        session.flush()
    row = Rendition(
        tenant_id=media.tenant_id,
        kind=kind,
        path=relative,
        bytes=size,
        width=made.width,
        height=made.height,
        content_type=made.content_type,
        token=secrets.token_urlsafe(18),
        created_at=now,
    )
    media.renditions.append(row)
    return row


def process_media(*, session: Session, media_id: int) -> Media | None:
    """Turn a received photo or clip into its watermarked renditions, in this transaction.

    Safe to run twice: a media that is no longer ``processing`` is left alone. The media
    task runs a clip in two transactions instead (``clip_job``, then ``run_clip_job``).
    """
    # Claim the row: a second delivery of the task waits (SQLite) or skips (PostgreSQL).
    media = session.scalars(
        select(Media)
        .where(Media.id == media_id, Media.status == PROCESSING)
        .with_for_update(skip_locked=True)
    ).first()
    if media is None:
        return session.get(Media, media_id)
    if media.kind == "clip":
        job = _clip_job_or_fail(session, media)
        return run_clip_job(session=session, job=job) if job is not None else media
    try:
        with session.begin_nested():
            _render(session, media)
    except HuifangError as exc:
        media.status, media.failure_reason = FAILED, exc.detail
    except Exception:
        # A bug or a broken file the checks missed: say so on the media rather than
        # leaving it "processing", where the stuck-media tick would retry it for ever.
        log.exception("photo processing failed", media_id=media_id)
        media.status = FAILED
        media.failure_reason = (
            "We could not process this photo; please upload it again, "
            "or send another copy if it fails twice."
        )
    session.flush()
    return media


def _render(session: Session, media: Media) -> None:
    now = utcnow()
    with storage.scratch_dir("photo-") as scratch:
        decoded = imaging.open_photo(
            original_file(media, Path(scratch)),
            max_edge=renditions.DISPLAY_EDGE,
            now=media.received_at,
        )
    template = template_for(session=session, tenant_id=media.tenant_id)
    facts = facts_for(
        session=session, media=media, template=template, captured_at=decoded.captured_at
    )
    style = watermark.WatermarkStyle(
        position=template.position,  # type: ignore[arg-type]
        scale=template.scale,
    )
    # The decoded frame is not used again: it is marked itself, not a copy of it.
    marked = watermark.apply(
        renditions.fit(decoded.image, renditions.DISPLAY_EDGE), facts, style, in_place=True
    )
    for made in renditions.standard_set(
        marked,
        captured_at=decoded.captured_at,
        budget=get_settings().mms_photo_budget,
        icc_profile=decoded.icc_profile,
    ):
        _store_rendition(session, media, made, now=now)
    media.width, media.height = decoded.size
    media.captured_at = decoded.captured_at
    media.status, media.failure_reason = READY, None
    session.flush()
    refresh_pairs(session=session, visit_id=media.visit_id)


# --- clips ---------------------------------------------------------------------------------

CLIP_FAILED = (
    "We could not process this clip; please upload it again, or export it from the "
    "phone again if it fails twice."
)


@dataclass(frozen=True)
class ClipJob:
    """What processing one clip needs from the database, read before ffmpeg starts.

    Plain values only: the media task commits between reading them and running ffmpeg.
    """

    media_id: int
    original: str  # the stored original's name; fetched into the scratch directory
    container: str  # mp4 | mov | webm, as sniffed at upload
    max_seconds: float  # the company's clip_max_seconds
    facts: watermark.WatermarkFacts  # without the capture time: only ffmpeg can read it
    style: watermark.WatermarkStyle
    show_capture_time: bool = True  # the company's template: print the clip's capture time


@dataclass(frozen=True)
class ClipMade:
    """A clip's renditions, made in a scratch directory and not yet on record."""

    result: clips.ClipResult
    video: Path
    poster: Path
    poster_size: tuple[int, int]
    thumb: renditions.Rendition
    captured_at: dt.datetime | None = None  # from the clip's container tags


def clip_job(*, session: Session, media_id: int) -> ClipJob | None:
    """The work of a clip waiting for processing; None for a photo or a clip already done.

    Marks the clip as being worked on now, so the stuck-media tick leaves it alone for
    ``CLIP_STUCK_AFTER`` once the caller commits.
    """
    media = session.get(Media, media_id)
    if media is None or media.kind != "clip" or media.status != PROCESSING:
        return None
    return _clip_job_or_fail(session, media)


def _clip_job_or_fail(session: Session, media: Media) -> ClipJob | None:
    try:
        tenant = session.get(Tenant, media.tenant_id)
        assert tenant is not None
        template = template_for(session=session, tenant_id=media.tenant_id)
        job = ClipJob(
            media_id=media.id,
            original=media.original_path,
            container=CONTAINERS[media.mime],
            max_seconds=float(tenant.clip_max_seconds),
            facts=facts_for(session=session, media=media, template=template, captured_at=None),
            style=watermark.WatermarkStyle(
                position=template.position,  # type: ignore[arg-type]
                scale=template.scale,
            ),
            show_capture_time=template.show_capture_time,
        )
    except Exception:
        # Left "processing", the stuck-media tick would retry a clip that cannot start.
        log.exception("clip could not be prepared", media_id=media.id)
        media.status, media.failure_reason = FAILED, CLIP_FAILED
        session.flush()
        return None
    media.updated_at = utcnow()
    session.flush()
    return job


def make_clip(job: ClipJob, *, workdir: Path) -> ClipMade:
    """Probe, watermark, normalize and take the poster frame: files only, no database.

    ffmpeg reads only files in ``workdir`` (the original fetched there with an S3 backend)
    or the stored original itself on local disk. Raises ``huifang.errors`` refusals with a
    sentence for the staff member.
    """
    original = storage.local_copy(job.original, workdir)
    found = clips.probe(original, job.container)
    # The capture time, like a photo's: from the phone's tags, checked against our receive
    # time by the watermark itself (``watermark.CLOCK_SKEW``).
    facts = job.facts
    if job.show_capture_time and found.created_at is not None:
        facts = dataclasses.replace(facts, captured_at=found.created_at)
    mark = watermark.overlay(clips.output_size(found.display_size), facts, job.style)
    video = workdir / "clip.mp4"
    result = clips.normalize(
        original,
        job.container,
        video,
        max_seconds=job.max_seconds,
        overlay=mark,
        source_probe=found,
    )
    poster_path = workdir / "poster.jpg"
    poster = clips.poster(video, poster_path, at=min(POSTER_AT, result.duration / 2))
    with Image.open(poster_path) as frame:
        thumb = renditions.thumb(frame.convert("RGB"))
    return ClipMade(
        result=result,
        video=video,
        poster=poster_path,
        poster_size=(poster.width, poster.height),
        thumb=thumb,
        captured_at=found.created_at,
    )


def run_clip_job(*, session: Session, job: ClipJob) -> Media | None:
    """Make the clip's renditions, then record them (or the failure) on the media.

    The session is not used until ffmpeg is done, so the caller may commit before calling
    and hold no lock meanwhile. A clip another delivery finished first is left as it is.
    """
    with storage.scratch_dir("clip-") as scratch:
        made: ClipMade | None = None
        failure: str | None = None
        try:
            made = make_clip(job, workdir=Path(scratch))
        except HuifangError as exc:
            failure = exc.detail
        except Exception:
            log.exception("clip processing failed", media_id=job.media_id)
            failure = CLIP_FAILED
        return _record_clip(session, job.media_id, made, failure)


def _record_clip(
    session: Session, media_id: int, made: ClipMade | None, failure: str | None
) -> Media | None:
    media = session.scalars(
        select(Media).where(Media.id == media_id, Media.status == PROCESSING).with_for_update()
    ).first()
    if media is None:  # finished by another delivery while ffmpeg ran, or deleted
        return session.get(Media, media_id)
    if made is None:
        media.status, media.failure_reason = FAILED, failure or CLIP_FAILED
        session.flush()
        return media
    now = utcnow()
    result = made.result
    _store_rendition(
        session,
        media,
        renditions.Rendition(
            kind="video",
            data=b"",  # streamed from the file
            width=result.width,
            height=result.height,
            content_type="video/mp4",
        ),
        now=now,
        file=made.video,
    )
    _store_rendition(
        session,
        media,
        renditions.Rendition(
            kind="poster",
            data=made.poster.read_bytes(),
            width=made.poster_size[0],
            height=made.poster_size[1],
        ),
        now=now,
    )
    _store_rendition(session, media, made.thumb, now=now)
    media.width, media.height = result.width, result.height
    media.captured_at = made.captured_at
    media.duration_seconds = round(result.duration, 3)
    media.trimmed_from_seconds = round(result.original_duration, 3) if result.trimmed else None
    media.status, media.failure_reason = READY, None
    session.flush()
    return media


def stuck_media(*, session: Session, now: dt.datetime, limit: int = 100) -> list[int]:
    """Media left ``processing`` for a while: their task was lost (a flushed broker, a restart).

    A clip is given longer than a photo: its task may still be running ffmpeg.
    """
    return list(
        session.scalars(
            select(Media.id)
            .where(
                Media.status == PROCESSING,
                or_(
                    and_(Media.kind != "clip", Media.updated_at < now - STUCK_AFTER),
                    and_(Media.kind == "clip", Media.updated_at < now - CLIP_STUCK_AFTER),
                ),
            )
            .order_by(Media.id)
            .limit(limit)
        )
    )


def touch(*, session: Session, media_ids: Sequence[int], now: dt.datetime) -> None:
    for media_id in media_ids:
        media = session.get(Media, media_id)
        if media is not None:
            media.updated_at = now


# --- before / after ------------------------------------------------------------------------


def _display_image(media: Media) -> Image.Image | None:
    display = next((r for r in media.renditions if r.kind == "display"), None)
    if display is None:
        return None
    with Image.open(io.BytesIO(storage.read_bytes(display.path))) as image:
        return image.convert("RGB")


def pairs(*, session: Session, visit_id: int) -> list[tuple[str | None, Media, Media]]:
    """Per area, the latest ready before photo and the latest ready after photo."""
    photos = session.scalars(
        select(Media)
        .where(
            Media.visit_id == visit_id,
            Media.kind == "photo",
            Media.status == READY,
            Media.phase.in_(("before", "after")),
        )
        .order_by(Media.received_at, Media.id)
    ).all()
    latest: dict[tuple[str | None, str], Media] = {}
    for media in photos:
        latest[(media.area, media.phase)] = media
    areas = sorted({area for area, _ in latest}, key=lambda a: (a is None, a or ""))
    return [
        (area, latest[(area, "before")], latest[(area, "after")])
        for area in areas
        if (area, "before") in latest and (area, "after") in latest
    ]


def refresh_pairs(*, session: Session, visit_id: int) -> list[Rendition]:
    """Make sure each area's latest after photo carries a composite with its latest before."""
    made: list[Rendition] = []
    current_after: set[int] = set()
    now = utcnow()
    for _, before, after in pairs(session=session, visit_id=visit_id):
        current_after.add(after.id)
        existing = next((r for r in after.renditions if r.kind == COMPOSITE), None)
        if existing is not None and existing.source_media_id == before.id:
            made.append(existing)
            continue
        before_image, after_image = _display_image(before), _display_image(after)
        if before_image is None or after_image is None:
            continue
        image = composite.before_after(before_image, after_image)
        row = _store_rendition(
            session, after, renditions.display(image, captured_at=None), kind=COMPOSITE, now=now
        )
        row.source_media_id = before.id
        made.append(row)
    # Composites of after photos that are no longer the latest of their area are stale.
    stale = (
        select(Rendition.id)
        .join(Media, Rendition.media_id == Media.id)
        .where(
            Media.visit_id == visit_id,
            Rendition.kind == COMPOSITE,
            Rendition.media_id.not_in(current_after or {0}),
        )
    )
    for rendition in session.scalars(select(Rendition).where(Rendition.id.in_(stale))):
        storage.remove(rendition.path)
        session.delete(rendition)
    session.flush()
    return made


# --- public lookups ------------------------------------------------------------------------


def by_code(*, session: Session, code: str) -> Media | None:
    """The media behind a verification code as typed by a customer, or None."""
    normalized = normalize_code(code)
    if len(normalized) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in normalized):
        return None
    media = session.scalars(select(Media).where(Media.verification_code == normalized)).first()
    if media is not None:  # the rest of the transaction: that company's rows only
        rls.scope_to_tenant(session, media.tenant_id)
    return media


# Time zones customers know by a Chinese name; any other is shown by its UTC offset.
_ZONE_NAMES = {
    "Asia/Shanghai": "北京时间",
    "Asia/Chongqing": "北京时间",
    "Asia/Harbin": "北京时间",
    "PRC": "北京时间",
    "Asia/Hong_Kong": "香港时间",
    "Asia/Macau": "澳门时间",
    "Asia/Taipei": "台北时间",
    "Asia/Singapore": "新加坡时间",
    "Asia/Tokyo": "东京时间",
    "Asia/Seoul": "首尔时间",
}


def zone_name(timezone: str, moment: dt.datetime) -> str:
    """The company's time zone as a customer reads it: 北京时间, or 世界协调时间+9:30."""
    known = _ZONE_NAMES.get(timezone)
    if known:
        return known
    offset = moment.astimezone(ZoneInfo(timezone)).utcoffset() or dt.timedelta(0)
    minutes = round(offset.total_seconds() / 60)
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"世界协调时间{sign}{hours}" + (f":{rest:02d}" if rest else "")


def verification_facts(*, session: Session, media: Media) -> dict[str, object]:
    """What the public verification page shows: the facts the watermark was made from."""
    visit = session.get(Visit, media.visit_id)
    tenant = session.get(Tenant, media.tenant_id)
    assert visit is not None and tenant is not None
    staff = session.get(Staff, visit.staff_id) if visit.staff_id else None
    zone = ZoneInfo(tenant.timezone)
    # A clip is shown by its poster frame, which carries the same watermark; the photo only
    # while its report is valid (the facts stay).
    display = next((r for r in media.renditions if r.kind in ("display", "poster")), None)
    if display is not None:
        until = link_expires_at(session=session, rendition=display)
        if until is not None and until <= utcnow():
            display = None
    return {
        "company": tenant.name,
        "service": visit.service_label,
        "phase": media.phase_label,
        "area": media.area,
        "staff": staff.name if staff else None,
        "received_at": media.received_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
        "captured_at": (
            media.captured_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
            if media.captured_at
            else None
        ),
        "timezone": tenant.timezone,
        "zone_name": zone_name(tenant.timezone, media.received_at),
        "sha256": media.sha256,
        "code": format_code(media.verification_code),
        # Relative: the page and the picture come from the same server, whatever address
        # the customer reached it by.
        "image_url": f"/m/{display.token}.jpg" if display else None,
        "ready": media.status == READY,
    }


def rendition_by_token(*, session: Session, token: str) -> Rendition | None:
    if not 8 <= len(token) <= 32:
        return None
    rendition = session.scalars(select(Rendition).where(Rendition.token == token)).first()
    if rendition is not None:  # the rest of the transaction: that company's rows only
        rls.scope_to_tenant(session, rendition.tenant_id)
    return rendition


# The report's expiry, read by name: reports builds on media, so media does not import it.
_REPORTS = table("reports", column("visit_id"), column("expires_at", UTCDateTime()))


def link_expires_at(*, session: Session, rendition: Rendition) -> dt.datetime | None:
    """When the public link of a rendition stops serving it for a report: the expiry of its
    visit's report (rebuilding the report renews it). None while the visit has no report:
    then only the company has been given the link."""
    return session.scalar(
        select(_REPORTS.c.expires_at)
        .join(Media, Media.visit_id == _REPORTS.c.visit_id)
        .where(Media.id == rendition.media_id)
    )


def rendition_for_link(*, session: Session, name: str) -> Rendition | None:
    """The rendition behind a public link: ``{token}.mp4`` for a video, ``{token}.jpg`` (or the
    bare token) for an image; a token with the other kind's extension is no link of ours."""
    token, dot, extension = name.partition(".")
    rendition = rendition_by_token(session=session, token=token)
    if rendition is None:
        return None
    expected = EXTENSIONS.get(rendition.content_type, ".jpg")
    if dot and f".{extension}" != expected:
        return None
    if not dot and expected != ".jpg":
        return None
    return rendition


def set_staff_photo(
    *, session: Session, tenant_id: int, staff_id: int, staged: StagedUpload
) -> Staff:
    """Keep a staff member's card photo: a small square JPEG, re-encoded (no GPS, no EXIF).

    The face is usually in the upper part of a portrait, so the square is taken from there.
    The previous photo's file is removed once the new one is committed.
    """
    try:
        staff = visits.get_staff(session=session, tenant_id=tenant_id, staff_id=staff_id)
        if staged.sniffed.kind != "photo":
            raise UnsupportedType(
                "The staff card needs a photo (JPEG, PNG, WebP or HEIC), not a video."
            )
        decoded = imaging.open_photo(staged.path, max_edge=STAFF_PHOTO_EDGE * 2)
    finally:
        staged.discard()
    image = decoded.image
    side = min(image.size)
    left = (image.width - side) // 2
    top = round((image.height - side) * 0.3)  # a little above the middle: the face
    square = image.crop((left, top, left + side, top + side))
    if side > STAFF_PHOTO_EDGE:
        square = square.resize((STAFF_PHOTO_EDGE, STAFF_PHOTO_EDGE), reducing_gap=2.0)
    data = renditions.encode_jpeg(square, quality=85, captured_at=None, optimize=True)
    relative = storage.new_relative_path("renditions", tenant_id, ".jpg", now=utcnow())
    storage.write_bytes(relative, data)
    old = staff.photo_path
    staff.photo_path = relative
    session.flush()
    if old and old != relative:
        on_commit(session, lambda: storage.remove(old))
    return staff


def set_logo(
    *, session: Session, tenant_id: int, staged: StagedUpload, actor: Actor | None = None
) -> WatermarkTemplate:
    """Keep the company logo (PNG with transparency) for its watermarks."""
    try:
        logo = imaging.open_logo(staged.path)
    finally:
        staged.discard()
    out = io.BytesIO()
    logo.save(out, "PNG", optimize=True)
    template = session.get(WatermarkTemplate, tenant_id)
    if template is None:
        template = template_for(session=session, tenant_id=tenant_id)
        session.add(template)
    old = template.logo_path
    template.logo_path = storage.new_relative_path("logos", tenant_id, ".png", now=utcnow())
    storage.write_bytes(template.logo_path, out.getvalue())
    audit.record(
        session,
        actor,
        "watermark.logo_set",
        f"tenant:{tenant_id}",
        {"width": logo.width, "height": logo.height},
        tenant_id=tenant_id,
    )
    session.flush()
    storage.remove(old)
    return template


def update_template(
    *,
    session: Session,
    tenant_id: int,
    changes: dict[str, object],
    actor: Actor | None = None,
) -> WatermarkTemplate:
    template = session.get(WatermarkTemplate, tenant_id)
    if template is None:
        template = template_for(session=session, tenant_id=tenant_id)
        session.add(template)
    changed: dict[str, object] = {}
    for attr in ("position", "scale", "show_capture_time"):
        if changes.get(attr) is not None and getattr(template, attr) != changes[attr]:
            changed[attr] = {"from": getattr(template, attr), "to": changes[attr]}
            setattr(template, attr, changes[attr])
    if changed:
        audit.record(
            session, actor, "watermark.updated", f"tenant:{tenant_id}", changed, tenant_id=tenant_id
        )
    session.flush()
    return template
