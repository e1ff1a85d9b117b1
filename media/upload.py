"""Read a multipart upload from the request stream, counting and checking as the bytes arrive.

The size cap is enforced while the body streams (chunked bodies included), so an oversized
upload is refused with 413 long before it is all read; the type is decided from the first
bytes, so an HTML page named .jpg is refused at once. Nothing here trusts the client's
filename or Content-Type.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from huifang import storage
from huifang.errors import Invalid, TooLarge, UnsupportedType
from media.imaging import Sniffed, sniff

SNIFF_BYTES = 64
MAX_FIELD_BYTES = 4096  # phase, area and note are short texts


@dataclass
class StagedUpload:
    """An uploaded file written to the staging area, with what we know of it."""

    path: Path
    sniffed: Sniffed
    sha256: str
    size: int
    filename: str | None
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def _mb(limit: int) -> str:
    return f"{limit / (1024 * 1024):.0f} MB"


class _Reader:
    """Callbacks for python-multipart's streaming parser."""

    def __init__(self, *, photo_max: int, clip_max: int) -> None:
        self.photo_max = photo_max
        self.clip_max = clip_max
        self.fields: dict[str, str] = {}
        self.part_name: str | None = None
        self.part_filename: str | None = None
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.buffer = bytearray()  # a text field's value, or the file's first bytes
        self.file: IO[bytes] | None = None
        self.file_path: Path | None = None
        self.sniffed: Sniffed | None = None
        self.hasher = hashlib.sha256()
        self.size = 0
        self.seen_file = False

    # --- headers of each part -------------------------------------------------------
    def on_part_begin(self) -> None:
        self.headers = {}
        self.part_name = self.part_filename = None
        self.buffer = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.part_name = options.get(b"name", b"").decode("utf-8", "replace")
        raw = options.get(b"filename")
        self.part_filename = raw.decode("utf-8", "replace") if raw is not None else None
        if self.part_name == "file":
            if self.seen_file:
                raise Invalid("Send one file per upload, in the field named 'file'.")
            self.seen_file = True

    # --- data -------------------------------------------------------------------------
    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.part_name != "file":
            self.buffer += chunk
            if len(self.buffer) > MAX_FIELD_BYTES:
                raise Invalid(f"The field {self.part_name!r} is too long; keep it under 4 KB.")
            return
        self.size += len(chunk)
        if self.sniffed is None:
            self.buffer += chunk
            if len(self.buffer) < SNIFF_BYTES:
                return
            self._start_file(bytes(self.buffer))
            chunk, self.buffer = bytes(self.buffer), bytearray()
        self._check_size()
        assert self.file is not None
        self.file.write(chunk)
        self.hasher.update(chunk)

    def _start_file(self, head: bytes) -> None:
        self.sniffed = sniff(head)  # 415 here for HTML, SVG, PDF, TIFF, …
        fd, name = _mkstemp()
        self.file = os.fdopen(fd, "wb")
        self.file_path = Path(name)

    def _check_size(self) -> None:
        assert self.sniffed is not None
        limit = self.photo_max if self.sniffed.kind == "photo" else self.clip_max
        if self.size > limit:
            what = "photos" if self.sniffed.kind == "photo" else "clips"
            raise TooLarge(
                f"This file is over {_mb(limit)}, the most we take for {what}; "
                "send a smaller one (a shorter clip, or the phone's normal photo size)."
            )

    def on_part_end(self) -> None:
        if self.part_name == "file":
            if self.sniffed is None:  # a file shorter than SNIFF_BYTES
                if not self.buffer:
                    raise Invalid("The file is empty; please choose the photo again and upload it.")
                head = bytes(self.buffer)
                self._start_file(head)
                assert self.file is not None
                self.file.write(head)
                self.hasher.update(head)
        elif self.part_name:
            value = self.buffer.decode("utf-8", "replace").strip()
            if "\x00" in value:  # PostgreSQL cannot store it, and no phone types one
                raise Invalid(
                    f"The field {self.part_name!r} holds a NUL character; send it as plain text."
                )
            self.fields[self.part_name] = value

    def close(self) -> None:
        if self.file is not None and not self.file.closed:
            self.file.close()

    def abandon(self) -> None:
        self.close()
        if self.file_path is not None:
            self.file_path.unlink(missing_ok=True)


def _mkstemp() -> tuple[int, str]:
    import tempfile

    return tempfile.mkstemp(dir=storage.staging_dir(), prefix="upload-")


async def read_upload(
    *,
    content_type: str,
    content_length: str | None,
    body: AsyncIterator[bytes],
    photo_max: int,
    clip_max: int,
) -> StagedUpload:
    """Stream a ``multipart/form-data`` body into the staging area; raise on the first problem."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UnsupportedType(
            "Send the upload as multipart/form-data with the photo or clip in a field named 'file'."
        )
    overall = max(photo_max, clip_max) + 64 * 1024  # the parts around the file are small
    if content_length and content_length.isdigit() and int(content_length) > overall:
        raise TooLarge(f"This upload is over {_mb(max(photo_max, clip_max))}; send a smaller file.")
    reader = _Reader(photo_max=photo_max, clip_max=clip_max)
    # Headers up to 64 KB: a phone may send a very long file name, which we only shorten.
    parser = MultipartParser(
        boundary,
        max_header_size=64 * 1024,
        callbacks={
            "on_part_begin": reader.on_part_begin,
            "on_part_data": reader.on_part_data,
            "on_part_end": reader.on_part_end,
            "on_header_field": reader.on_header_field,
            "on_header_value": reader.on_header_value,
            "on_header_end": reader.on_header_end,
            "on_headers_finished": reader.on_headers_finished,
        },
    )
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > overall:
                raise TooLarge(
                    f"This upload is over {_mb(max(photo_max, clip_max))}; send a smaller file."
                )
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        reader.abandon()
        raise Invalid(
            "The upload arrived damaged (not a valid multipart form); please try again."
        ) from None
    except BaseException:
        reader.abandon()
        raise
    reader.close()
    if reader.file_path is None or reader.sniffed is None:
        reader.abandon()
        raise Invalid("No file was sent; put the photo or clip in a field named 'file'.")
    return StagedUpload(
        path=reader.file_path,
        sniffed=reader.sniffed,
        sha256=reader.hasher.hexdigest(),
        size=reader.size,
        filename=_clean_filename(reader.part_filename),
        fields=reader.fields,
    )


def _clean_filename(name: str | None) -> str | None:
    """The client's filename for display only: last path part, printable, at most 100 chars."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in "\x00")
    return name[:100] or None


def stage_bytes(
    data: bytes, *, fields: dict[str, str], filename: str | None = None
) -> StagedUpload:
    """Stage bytes that did not come over HTTP (demo data, imports) exactly like an upload."""
    if not data:
        raise Invalid("The file is empty; please choose the photo again and upload it.")
    sniffed = sniff(data[:SNIFF_BYTES])
    fd, name = _mkstemp()
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return StagedUpload(
        path=Path(name),
        sniffed=sniffed,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        filename=_clean_filename(filename),
        fields=dict(fields),
    )
