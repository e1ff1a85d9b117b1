"""Stored files: generated names, one backend chosen by settings, no path ever from a client.

A stored file is named by a relative key such as ``renditions/7/2026/11/3f2c….jpg``
(``new_relative_path``). The backend keeps it: ``LocalStorage`` under the media root (the
embedded default), or ``S3Storage`` in a bucket (``huifang.s3storage``) so that the API and
the workers of the distributed mode share nothing but the bucket.

Whatever the backend, work on files happens on this machine's disk: ``staging_dir`` is local
scratch for uploads on their way in, ``local_copy`` hands ffmpeg and Pillow a local file
(the stored file itself on local disk, a download into the caller's scratch directory from
S3), and ``put_file`` streams a finished local file back. A whole clip is never held in
memory. The module-level functions delegate to the configured backend, so callers never ask
which one it is.

A file arriving in pieces (a resumable upload) is kept by the backend too, until it is whole:
``pieces()`` names each piece by its upload's token and start offset, as files under the
staging area on local disk, as objects in the bucket with S3 (so any API host takes the
next piece).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from huifang.settings import get_settings

AREAS = ("originals", "renditions", "logos", "exports")
CHUNK = 1024 * 1024
# An upload's token as it may name a directory or key prefix: our own characters only.
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Storage(ABC):
    """Where stored files live. Keys are relative names made by ``new_relative_path``."""

    name: str

    @abstractmethod
    def put_file(self, source: Path, relative: str, *, move: bool = False) -> None:
        """Store a local file under ``relative`` (streamed; ``move`` lets the source go)."""

    @abstractmethod
    def write_bytes(self, relative: str, data: bytes) -> None:
        """Store a small file held in memory (an image, never a clip)."""

    @abstractmethod
    def local_copy(self, relative: str, scratch: Path) -> Path:
        """A local file with the stored content, for ffmpeg and Pillow: the file itself on
        local disk, otherwise a download into ``scratch`` (which the caller removes)."""

    @abstractmethod
    def open(self, relative: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The stored bytes ``start..end`` (inclusive), in chunks, for a response body."""

    @abstractmethod
    def size(self, relative: str) -> int | None:
        """The stored file's size, or None when there is no such file."""

    @abstractmethod
    def remove(self, relative: str) -> None:
        """Delete the stored file; a missing one is not an error."""

    @abstractmethod
    def pieces(self) -> Pieces:
        """Where the pieces of files arriving in pieces are kept until they are whole."""

    def exists(self, relative: str) -> bool:
        return self.size(relative) is not None

    def download_url(
        self, relative: str, *, content_type: str, expires_in: int, filename: str | None = None
    ) -> str | None:
        """A URL the client may fetch the file from directly, or None to serve it ourselves."""
        return None


def check_key(relative: str) -> str:
    """Refuse a key that is not one of ours: absolute, with ``..``, or outside the areas."""
    parts = PurePosixPath(relative).parts
    if (
        not relative
        or relative.startswith("/")
        or "\\" in relative
        or any(part in ("", ".", "..") for part in parts)
        or parts[0] not in AREAS
        or len(parts) < 2
    ):
        raise ValueError(f"not a stored file name: {relative!r}")
    return relative


class PieceWriter(ABC):
    """One piece's bytes on their way in, written as they arrive; the piece only once kept.

    ``write`` may hold bytes in memory (never more than a part of the piece); when it says
    so, the caller runs ``flush`` where blocking is allowed (off the event loop), as it runs
    ``close``, ``keep`` and ``discard``.
    """

    @abstractmethod
    def write(self, chunk: bytes) -> bool:
        """Take the next bytes; True when bytes wait in memory for ``flush``."""

    @abstractmethod
    def flush(self) -> None:
        """Send the bytes waiting in memory on (with S3, one part of the piece)."""

    @abstractmethod
    def close(self) -> None:
        """No more bytes come (the body ended, or the client went away): write what is left."""

    @abstractmethod
    def keep(self) -> None:
        """Make the bytes the piece at the start offset, in one step, replacing whatever a
        failed recording left there; no bytes make no piece."""

    @abstractmethod
    def discard(self) -> None:
        """Drop the bytes. Does not raise: what a failure leaves, the sweep removes."""


class Pieces(ABC):
    """The pieces of files that arrive in pieces (resumable uploads), named by the upload's
    token and each piece's start offset, kept until the file is whole."""

    @abstractmethod
    def prepare(self, token: str) -> None:
        """Make room for a new upload's pieces (on disk: its directory, which the sweep finds
        if the upload's creation rolls back)."""

    @abstractmethod
    def writer(self, token: str, start: int) -> PieceWriter:
        """A writer for a piece starting at ``start``."""

    @abstractmethod
    def sizes(self, token: str) -> dict[int, int]:
        """Start offset → size of each piece kept for the upload."""

    @abstractmethod
    def read(self, token: str, start: int, *, limit: int | None = None) -> Iterator[bytes]:
        """The piece's bytes (the first ``limit`` of them), in chunks."""

    @abstractmethod
    def remove(self, token: str) -> None:
        """Delete the upload's pieces, and any still arriving; none is not an error."""

    @abstractmethod
    def idle(self, *, before: dt.datetime, limit: int) -> list[str]:
        """Tokens of uploads whose pieces were last touched before ``before``."""


def check_token(token: str) -> str:
    if not TOKEN.fullmatch(token):
        raise ValueError(f"not an upload token: {token!r}")
    return token


def piece_name(start: int) -> str:
    """A piece's name: its start offset, zero-padded so names sort by offset."""
    return f"{int(start):012d}"


def piece_start(name: str) -> int | None:
    return int(name) if len(name) == 12 and name.isdigit() else None


class _FilePiece(PieceWriter):
    """A piece written to a temporary file beside the others, renamed into place."""

    def __init__(self, directory: Path, target: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=".in-")
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._path = Path(name)
        self._target = target
        self._written = 0

    def write(self, chunk: bytes) -> bool:
        self._file.write(chunk)
        self._written += len(chunk)
        return False  # nothing waits: the bytes are in the file

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self._file.close()

    def keep(self) -> None:
        if self._written:
            os.replace(self._path, self._target)
        else:
            self._path.unlink(missing_ok=True)

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._path.unlink(missing_ok=True)


class LocalPieces(Pieces):
    """Pieces as files under the staging area, one directory per upload:
    ``staging/resumable/<token>/<start offset>``."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def root(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True)
        return self.base

    def directory(self, token: str) -> Path:
        """The directory of an upload's pieces; refuses a token that would leave the area."""
        base = self.root().resolve()
        path = (base / check_token(token)).resolve()
        if path.parent != base:
            raise ValueError(f"upload token outside the staging area: {token!r}")
        return path

    def prepare(self, token: str) -> None:
        self.directory(token).mkdir(parents=True, exist_ok=True)

    def writer(self, token: str, start: int) -> PieceWriter:
        directory = self.directory(token)
        return _FilePiece(directory, directory / piece_name(start))

    def sizes(self, token: str) -> dict[int, int]:
        try:
            entries = list(os.scandir(self.directory(token)))
        except FileNotFoundError:
            return {}
        found = {}
        for entry in entries:
            start = piece_start(entry.name)
            if start is not None:
                found[start] = entry.stat().st_size
        return found

    def read(self, token: str, start: int, *, limit: int | None = None) -> Iterator[bytes]:
        with (self.directory(token) / piece_name(start)).open("rb") as fh:
            left = limit
            while left is None or left > 0:
                chunk = fh.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def remove(self, token: str) -> None:
        shutil.rmtree(self.directory(token), ignore_errors=True)

    def idle(self, *, before: dt.datetime, limit: int) -> list[str]:
        cutoff = before.timestamp()
        return [
            path.name
            for path in self.root().iterdir()
            if path.is_dir() and path.stat().st_mtime < cutoff
        ][:limit]


class LocalStorage(Storage):
    """Files under one directory (``HUIFANG_MEDIA_ROOT``), written atomically."""

    name = "local"

    def __init__(self, base: Path) -> None:
        self.base = base

    def path(self, relative: str) -> Path:
        base = self.base.resolve()
        path = (base / relative).resolve()
        if base not in path.parents:
            raise ValueError(f"path outside the media root: {relative!r}")
        return path

    def _target(self, relative: str) -> Path:
        target = self.path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def put_file(self, source: Path, relative: str, *, move: bool = False) -> None:
        target = self._target(relative)
        if move:
            try:
                os.replace(source, target)  # staging is on the same filesystem: atomic
                return
            except OSError:
                pass
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, CHUNK)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if move:
            source.unlink(missing_ok=True)

    def write_bytes(self, relative: str, data: bytes) -> None:
        target = self._target(relative)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def local_copy(self, relative: str, scratch: Path) -> Path:
        path = self.path(relative)
        if not path.is_file():
            raise FileNotFoundError(relative)
        return path

    def open(self, relative: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        with self.path(relative).open("rb") as fh:
            fh.seek(start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                chunk = fh.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def size(self, relative: str) -> int | None:
        try:
            return self.path(relative).stat().st_size
        except (FileNotFoundError, ValueError):
            return None

    def remove(self, relative: str) -> None:
        self.path(relative).unlink(missing_ok=True)

    def pieces(self) -> Pieces:
        return local_pieces()


@functools.cache
def _backend_for(kind: str, media_root: str) -> Storage:
    if kind == "s3":
        from huifang.s3storage import S3Storage  # boto3 is only imported when used

        return S3Storage.from_settings(get_settings())
    return LocalStorage(Path(media_root))


def backend() -> Storage:
    """The configured backend (``HUIFANG_STORAGE``)."""
    settings = get_settings()
    return _backend_for(settings.storage, str(settings.media_root))


def reset() -> None:
    """Forget the cached backends (after the settings changed, in tests)."""
    _backend_for.cache_clear()


# --- the functions callers use -------------------------------------------------------------


def root() -> Path:
    """This machine's media directory: every stored file with the local backend, scratch only
    with S3."""
    path = get_settings().media_root.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def staging_dir() -> Path:
    """Local scratch for uploads and processing (same filesystem as the local backend)."""
    path = root() / "staging"
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_pieces() -> LocalPieces:
    """This machine's pieces of resumable uploads, under staging (the local backend's)."""
    return LocalPieces(staging_dir() / "resumable")


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A private scratch directory under staging, removed when the ``with`` block ends."""
    return tempfile.TemporaryDirectory(dir=staging_dir(), prefix=prefix)


def new_relative_path(area: str, tenant_id: int, ext: str, *, now: dt.datetime) -> str:
    """A fresh name such as ``originals/7/2026/11/3f2c….jpg``; only our own parts in it."""
    if area not in AREAS:
        raise ValueError(area)
    if not ext.startswith(".") or not ext[1:].isalnum():
        raise ValueError(ext)
    return f"{area}/{int(tenant_id)}/{now:%Y/%m}/{uuid.uuid4().hex}{ext}"


def resolve(relative: str) -> Path:
    """The absolute path of a stored file on local disk; refuses anything outside the media
    root. Only the local backend has such a path: use ``local_copy`` or ``open`` instead."""
    store = backend()
    if not isinstance(store, LocalStorage):
        raise RuntimeError("stored files have no local path with HUIFANG_STORAGE=s3")
    return store.path(relative)


def write_bytes(relative: str, data: bytes) -> None:
    """Store a small file atomically: readers see the whole file or none of it."""
    backend().write_bytes(check_key(relative), data)


def put_file(source: Path, relative: str) -> None:
    """Store a copy of a local file (streamed, never read whole into memory)."""
    backend().put_file(source, check_key(relative))


def adopt(staged: Path, relative: str) -> None:
    """Store a staged upload under its permanent name; the staged file is gone afterwards."""
    backend().put_file(staged, check_key(relative), move=True)


def local_copy(relative: str, scratch: Path) -> Path:
    """A local file with the stored content (see ``Storage.local_copy``)."""
    return backend().local_copy(check_key(relative), scratch)


def read_bytes(relative: str) -> bytes:
    """A small stored file (an image) in memory."""
    return b"".join(backend().open(check_key(relative)))


def size(relative: str) -> int | None:
    try:
        return backend().size(check_key(relative))
    except ValueError:
        return None


def exists(relative: str) -> bool:
    return size(relative) is not None


def remove(relative: str | None) -> None:
    if relative:
        backend().remove(check_key(relative))


def pieces() -> Pieces:
    """Where resumable uploads keep their pieces (see ``Pieces``)."""
    return backend().pieces()
