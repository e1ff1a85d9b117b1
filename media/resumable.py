"""Resumable uploads (tus 1.0: core, creation, expiration, termination), state kept in SQL.

A client announces a file's length (POST), sends it in pieces (PATCH at ``Upload-Offset``)
and, after a dropped connection, a reload or hours offline, asks where the server is (HEAD)
and goes on from there. Each upload belongs to a company and a visit. The checks of a
one-request upload (``media.upload``) apply: the type is sniffed from the first bytes (never
the client's name or type), the size is held to that type's cap as soon as it is known,
bytes live in the staging area under names we make. A finished upload goes through
``media.service.accept_upload``, so a file already on the visit is the same media.

Each piece is kept on its own by the storage backend (``huifang.storage.pieces``), named by
its start offset: a file under this host's staging area with local storage, an object in
the bucket with S3, so that with S3 any API host takes the next piece. A piece is on record
only through a short transaction that finds the upload's offset still where the piece
started. No transaction is open while bytes arrive (a phone on two bars may take minutes).
Two clients sending the same piece both write; the first to record it wins, the other is
told 409 and asks again.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from compliance import capture
from huifang import storage
from huifang.db import on_commit
from huifang.errors import Conflict, HuifangError, Invalid, NotFound, TooLarge
from media import service as media_service
from media.imaging import CLIP, PHOTO, Sniffed, sniff
from media.models import DONE, PHASES, RECEIVING, REFUSED, Media, ResumableUpload
from media.upload import SNIFF_BYTES, StagedUpload, _clean_filename, _mb
from tenancy.models import Tenant
from visits import service as visits

log = structlog.get_logger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,expiration,termination"
# An unfinished upload is kept this long after its last piece.
UPLOAD_TTL = dt.timedelta(days=1)
# A finished or refused upload is remembered this long, so a phone that comes back to it
# learns what became of it (its media, or why it was refused).
KEEP_FINISHED = dt.timedelta(days=1)
# All bytes on record but not handed to ingest this long after: the request that recorded
# the last piece died; the sweep finishes it.
HANDOVER_STALLED_AFTER = dt.timedelta(minutes=2)
TOKEN_BYTES = 18  # 24 URL-safe characters
METADATA_MAX = 8192
NOTE_MAX = 2000


class Gone(HuifangError):
    """The upload expired or was refused: sending more cannot help."""

    status_code = 410


def files_of(token: str) -> Path:
    """The directory of an upload's pieces on this host, where local storage keeps them."""
    return storage.local_pieces().directory(token)


def _remove_files(token: str) -> None:
    """Remove an upload's pieces. A failure is logged, not raised: it runs after a commit,
    and what stays behind is removed by the sweep (``orphans``) a day later."""
    try:
        storage.pieces().remove(token)
    except Exception as exc:
        log.warning("could not remove an upload's pieces", token=token, error=str(exc))


def remove_files_after_commit(session: Session, token: str) -> None:
    on_commit(session, lambda: _remove_files(token))


# --- metadata ------------------------------------------------------------------------


def parse_metadata(header: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs, values in UTF-8."""
    result: dict[str, str] = {}
    if not header:
        return result
    if len(header) > METADATA_MAX:
        raise Invalid("Upload-Metadata is too long; send the phase, area and a short note only.")
    for pair in header.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, encoded = pair.partition(" ")
        if not key or not key.isascii() or not key.replace("_", "").isalnum():
            raise Invalid(
                f"Upload-Metadata has a key we cannot read ({key[:20]!r}); use "
                "letters, digits and underscores."
            )
        try:
            value = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise Invalid(
                f"The Upload-Metadata value of {key!r} is not Base64 of UTF-8 text."
            ) from None
        if "\x00" in value:
            raise Invalid(
                f"The Upload-Metadata value of {key!r} holds a NUL character; send plain text."
            )
        result[key] = value
    return result


# --- lifecycle -----------------------------------------------------------------------


def create_upload(
    *,
    session: Session,
    tenant: Tenant,
    visit_id: int,
    length: int | None,
    metadata: dict[str, str],
    photo_max: int,
    clip_max: int,
    now: dt.datetime,
) -> ResumableUpload:
    """Open an upload of ``length`` bytes for a visit (tus creation)."""
    visit = visits.get_visit(session=session, tenant_id=tenant.id, visit_id=visit_id)
    capture.require_capture(session=session, tenant=tenant, customer_id=visit.customer_id)
    phase = metadata.get("phase", "").strip()
    if phase not in PHASES:
        raise Invalid(
            f"Say which moment this shows: the metadata 'phase' must be one of {', '.join(PHASES)}."
        )
    area = metadata.get("area", "").strip() or None
    if area and len(area) > visits.MAX_AREA_LENGTH:
        raise Invalid(f"The area {area[:20]!r} is too long; use a room name such as 客厅.")
    note = metadata.get("note", "").strip() or None
    if note and len(note) > NOTE_MAX:
        raise Invalid(f"The note is longer than {NOTE_MAX} characters; keep it short.")
    if length is None:
        raise Invalid(
            "Say the file's size in the Upload-Length header (uploads of a length "
            "not known yet are not taken)."
        )
    if length <= 0:
        raise Invalid("The file is empty; please choose the photo again and upload it.")
    largest = max(photo_max, clip_max)
    if length > largest:
        raise TooLarge(
            f"This file is over {_mb(largest)}, the most we take; send a smaller "
            "one (a shorter clip, or the phone's normal photo size)."
        )
    upload = ResumableUpload(
        token=secrets.token_urlsafe(TOKEN_BYTES),
        tenant_id=tenant.id,
        visit_id=visit.id,
        phase=phase,
        area=area,
        note=note,
        filename=_clean_filename(metadata.get("filename") or metadata.get("name")),
        length=length,
        received=0,
        status=RECEIVING,
        expires_at=now + UPLOAD_TTL,
    )
    session.add(upload)
    session.flush()
    storage.pieces().prepare(upload.token)
    return upload


def get_upload(*, session: Session, tenant_id: int, token: str) -> ResumableUpload:
    """The upload, or NotFound when it does not exist in this tenant (or was swept away)."""
    upload = session.scalars(select(ResumableUpload).where(ResumableUpload.token == token)).first()
    if upload is None or upload.tenant_id != tenant_id:
        raise NotFound(
            "There is no such upload in this company (unfinished uploads are "
            "removed a day after their last piece); start the upload again."
        )
    return upload


def check_open(upload: ResumableUpload, *, now: dt.datetime) -> None:
    """Refuse (410) an upload that expired or was refused."""
    if upload.status == REFUSED:
        raise Gone(upload.failure_reason or "This upload was refused; choose the file again.")
    if upload.status == RECEIVING and upload.expires_at <= now:
        raise Gone(
            "This upload waited over a day for its next piece and has expired; start it again."
        )


def check_offset(upload: ResumableUpload, offset: int) -> None:
    if upload.status == DONE or upload.received != offset:
        raise Conflict(
            f"The server holds {upload.received} bytes of this file, not {offset}; "
            "ask for the offset (HEAD) and go on from there."
        )


# What the first bytes said, found again from the type on record (a piece after the first
# needs no read of them).
_KNOWN = {known.mime: known for known in (*PHOTO.values(), *CLIP.values())}


@dataclass(frozen=True)
class Opening:
    """What receiving one piece needs from the database, read before the bytes arrive."""

    upload_id: int
    token: str
    start: int
    length: int
    sniffed: Sniffed | None
    head: bytes  # the file's first bytes already kept, while the type is not known yet


def open_piece(
    *, session: Session, tenant_id: int, token: str, offset: int | None, now: dt.datetime
) -> Opening:
    """Check that a piece may start at ``offset`` and gather what receiving it needs."""
    upload = get_upload(session=session, tenant_id=tenant_id, token=token)
    check_open(upload, now=now)
    if offset is None:
        raise Invalid(
            "Say where this piece starts in the Upload-Offset header (ask for the "
            "offset with HEAD)."
        )
    check_offset(upload, offset)
    sniffed = None
    head = b""
    if upload.kind is not None:
        sniffed = _KNOWN.get(upload.mime or "") or sniff(_read_head(upload.token, SNIFF_BYTES))
    else:
        head = _read_head(upload.token, upload.received)
    return Opening(
        upload_id=upload.id,
        token=upload.token,
        start=offset,
        length=upload.length,
        sniffed=sniffed,
        head=head,
    )


def _pieces(token: str, upto: int) -> list[tuple[int, int]]:
    """The chain of pieces (start, size) holding bytes 0 … ``upto``: each starts where the
    last ended. Pieces a failed recording left off the chain are not in it."""
    sizes = storage.pieces().sizes(token)
    chain: list[tuple[int, int]] = []
    at = 0
    while at < upto:
        size = sizes.get(at)
        if not size:
            raise OSError(f"no piece at {at} of upload {token}")
        chain.append((at, size))
        at += size
    return chain


def _read_head(token: str, limit: int) -> bytes:
    """Up to ``limit`` of the file's first bytes, from the pieces on record."""
    if limit <= 0:
        return b""
    out = bytearray()
    pieces = storage.pieces()
    sizes = pieces.sizes(token)
    at = 0
    while len(out) < limit and sizes.get(at):
        for chunk in pieces.read(token, at, limit=limit - len(out)):
            out += chunk
        at += sizes[at]
    return bytes(out[:limit])


@dataclass
class Receiver:
    """One PATCH's bytes, written to a piece of their own as they arrive, checked as they come.

    ``refuses_file`` tells, after a refusal, whether the file itself can never be taken (its
    type or size: the upload is refused) or only this piece (bytes past the announced length).
    ``begin``, ``flush``, ``end``, ``keep`` and ``discard`` may wait on the network (S3):
    the edge runs them off the event loop; ``feed`` only writes to a file or a bounded buffer.
    """

    opening: Opening
    photo_max: int
    clip_max: int
    size: int = 0
    sniffed: Sniffed | None = None
    refuses_file: bool = False
    _writer: storage.PieceWriter | None = None
    _head: bytearray = field(default_factory=bytearray)

    def begin(self) -> None:
        """Check what is known before any byte (the type, from earlier pieces), open the piece."""
        self.sniffed = self.opening.sniffed
        self._head = bytearray(self.opening.head)
        if self.sniffed is not None:
            self._check_cap()
        self._writer = storage.pieces().writer(self.opening.token, self.opening.start)

    def feed(self, chunk: bytes) -> bool:
        """Take the next bytes; True when some wait in memory for ``flush``."""
        if not chunk:
            return False
        if self.opening.start + self.size + len(chunk) > self.opening.length:
            raise TooLarge(
                f"This piece goes past the {self.opening.length} bytes announced "
                "for the file; send only the bytes that are left."
            )
        if self.sniffed is None:
            self._head += chunk[: SNIFF_BYTES - len(self._head)]
            if len(self._head) >= SNIFF_BYTES:
                self._sniff()
        assert self._writer is not None
        self.size += len(chunk)
        return self._writer.write(chunk)

    def flush(self) -> None:
        assert self._writer is not None
        self._writer.flush()

    def end(self) -> None:
        """The piece is all here (or the client went away): write the rest, sniff a short
        file."""
        if self._writer is not None:
            self._writer.close()
        if self.sniffed is None and self.opening.start + self.size == self.opening.length:
            self._sniff()

    def keep(self) -> None:
        """Make the bytes the piece at the start offset (called while the upload is locked)."""
        assert self._writer is not None
        self._writer.keep()

    def _sniff(self) -> None:
        try:
            self.sniffed = sniff(bytes(self._head))
        except HuifangError:
            self.refuses_file = True
            raise
        self._check_cap()

    def _check_cap(self) -> None:
        assert self.sniffed is not None
        photo = self.sniffed.kind == "photo"
        limit = self.photo_max if photo else self.clip_max
        if self.opening.length > limit:
            self.refuses_file = True
            raise TooLarge(
                f"This file is over {_mb(limit)}, the most we take for "
                f"{'photos' if photo else 'clips'}; send a smaller one (a shorter "
                "clip, or the phone's normal photo size)."
            )

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.discard()


def _locked(session: Session, upload_id: int) -> ResumableUpload | None:
    return session.scalars(
        select(ResumableUpload).where(ResumableUpload.id == upload_id).with_for_update()
    ).first()


def record_piece(*, session: Session, receiver: Receiver, now: dt.datetime) -> ResumableUpload:
    """Put a received piece on record, if the upload is still where the piece started.

    Raises Conflict (409) when another client's piece got there first; the caller then
    discards this one.
    """
    opening = receiver.opening
    upload = _locked(session, opening.upload_id)
    if upload is None:
        raise NotFound("This upload was removed meanwhile; start it again.")
    check_open(upload, now=now)
    check_offset(upload, opening.start)
    # Replaces a piece a failed recording left at this offset: never on record.
    receiver.keep()
    if receiver.size:
        upload.received = opening.start + receiver.size
    if receiver.sniffed is not None and upload.kind is None:
        upload.kind, upload.mime = receiver.sniffed.kind, receiver.sniffed.mime
    upload.expires_at = now + UPLOAD_TTL
    upload.updated_at = now
    session.flush()
    return upload


def refuse(*, session: Session, upload_id: int, reason: str, now: dt.datetime) -> None:
    """The file can never be taken: say why, and remove its bytes once this commits."""
    upload = _locked(session, upload_id)
    if upload is None or upload.status != RECEIVING:
        return
    upload.status, upload.failure_reason, upload.updated_at = REFUSED, reason, now
    session.flush()
    remove_files_after_commit(session, upload.token)


def is_complete(upload: ResumableUpload) -> bool:
    return upload.status == RECEIVING and upload.received == upload.length


@dataclass(frozen=True)
class Assembly:
    upload_id: int
    staged: StagedUpload


def assemble(upload: ResumableUpload) -> Assembly:
    """Join a complete upload's pieces into one staged file on this host, hashing as it
    goes (no session needed: reads the row's plain values only). With S3 the pieces stream
    from the bucket, whichever hosts took them."""
    fd, name = tempfile.mkstemp(dir=storage.staging_dir(), prefix="upload-")
    hasher = hashlib.sha256()
    size = 0
    head = b""
    pieces = storage.pieces()
    try:
        with os.fdopen(fd, "wb") as out:
            for start, _ in _pieces(upload.token, upload.length):
                for block in pieces.read(upload.token, start):
                    if len(head) < SNIFF_BYTES:
                        head += block[: SNIFF_BYTES - len(head)]
                    hasher.update(block)
                    out.write(block)
                    size += len(block)
        if size != upload.length:
            raise OSError(f"upload {upload.token} holds {size} bytes, not {upload.length}")
        sniffed = sniff(head)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    fields = {"phase": upload.phase, "area": upload.area or "", "note": upload.note or ""}
    staged = StagedUpload(
        path=Path(name),
        sniffed=sniffed,
        sha256=hasher.hexdigest(),
        size=size,
        filename=upload.filename,
        fields=fields,
    )
    return Assembly(upload_id=upload.id, staged=staged)


@dataclass(frozen=True)
class Handover:
    """What became of a complete upload: its media (new or the same file's), or the refusal."""

    upload: ResumableUpload
    media: Media | None
    created: bool
    refusal: HuifangError | None = None


def hand_over(
    *, session: Session, tenant: Tenant, assembly: Assembly, now: dt.datetime
) -> Handover:
    """Give an assembled upload to ingest, once: a second caller (the sweep, a client's
    retry) finds it done and its staged copy is dropped.

    A refusal (a damaged photo) is recorded on the upload and returned, not raised, so the
    caller commits it and then answers with it.
    """
    staged = assembly.staged
    upload = _locked(session, assembly.upload_id)
    if upload is None or not is_complete(upload):
        staged.discard()
        if upload is None:
            raise NotFound("This upload was removed meanwhile; start it again.")
        media = session.get(Media, upload.media_id) if upload.media_id else None
        return Handover(upload=upload, media=media, created=False)
    try:
        with session.begin_nested():
            media, created = media_service.accept_upload(
                session=session, tenant=tenant, visit_id=upload.visit_id, staged=staged, now=now
            )
    except HuifangError as exc:
        upload.status, upload.failure_reason, upload.updated_at = REFUSED, exc.detail, now
        session.flush()
        remove_files_after_commit(session, upload.token)
        return Handover(upload=upload, media=None, created=False, refusal=exc)
    upload.status, upload.media_id, upload.updated_at = DONE, media.id, now
    session.flush()
    remove_files_after_commit(session, upload.token)
    return Handover(upload=upload, media=media, created=created)


def terminate(*, session: Session, tenant_id: int, token: str) -> None:
    """tus termination: the client gives up; the bytes go once this commits."""
    upload = get_upload(session=session, tenant_id=tenant_id, token=token)
    session.delete(upload)
    session.flush()
    remove_files_after_commit(session, upload.token)


# --- the sweep -----------------------------------------------------------------------


def sweepable(*, session: Session, now: dt.datetime, limit: int = 500) -> list[int]:
    """Uploads to remove: unfinished and expired, or finished (or refused) a day ago."""
    return list(
        session.scalars(
            select(ResumableUpload.id)
            .where(
                or_(
                    and_(ResumableUpload.status == RECEIVING, ResumableUpload.expires_at <= now),
                    and_(
                        ResumableUpload.status != RECEIVING,
                        ResumableUpload.updated_at <= now - KEEP_FINISHED,
                    ),
                )
            )
            .order_by(ResumableUpload.id)
            .limit(limit)
        )
    )


def stalled(*, session: Session, now: dt.datetime, limit: int = 50) -> list[int]:
    """Complete uploads whose handover never happened (the request died after the last
    piece was recorded)."""
    return list(
        session.scalars(
            select(ResumableUpload.id)
            .where(
                ResumableUpload.status == RECEIVING,
                ResumableUpload.received == ResumableUpload.length,
                ResumableUpload.expires_at > now,
                ResumableUpload.updated_at <= now - HANDOVER_STALLED_AFTER,
            )
            .order_by(ResumableUpload.id)
            .limit(limit)
        )
    )


def orphans(*, session: Session, now: dt.datetime, limit: int = 500) -> list[str]:
    """Tokens of pieces that no upload owns (its creation rolled back, or its row went
    without its pieces), untouched for a day."""
    names = storage.pieces().idle(before=now - UPLOAD_TTL, limit=limit)
    if not names:
        return []
    owned = set(
        session.scalars(select(ResumableUpload.token).where(ResumableUpload.token.in_(names)))
    )
    return [name for name in names if name not in owned]


def remove_orphan(token: str) -> None:
    _remove_files(token)


def _due_for_removal(upload: ResumableUpload, now: dt.datetime) -> bool:
    if upload.status == RECEIVING:
        return upload.expires_at <= now
    return upload.updated_at <= now - KEEP_FINISHED


def remove(*, session: Session, upload_id: int, now: dt.datetime) -> None:
    """Forget one swept upload and its bytes (checked again under the lock)."""
    upload = _locked(session, upload_id)
    if upload is None or not _due_for_removal(upload, now):
        return
    session.delete(upload)
    session.flush()
    remove_files_after_commit(session, upload.token)


def finish_stalled(
    *, session: Session, upload_id: int, now: dt.datetime, on_media: Callable[[Media], None]
) -> Handover | None:
    """Hand a stalled complete upload over to ingest (the sweep's second job)."""
    upload = session.get(ResumableUpload, upload_id)
    if upload is None or not is_complete(upload):
        return None
    tenant = session.get(Tenant, upload.tenant_id)
    assert tenant is not None
    try:
        assembly = assemble(upload)
    except HuifangError as exc:
        refuse(session=session, upload_id=upload_id, reason=exc.detail, now=now)
        return None
    done = hand_over(session=session, tenant=tenant, assembly=assembly, now=now)
    if done.media is not None and done.created:
        on_media(done.media)
    return done
