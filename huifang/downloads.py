"""HTTP responses for stored files, whichever backend keeps them.

On local disk Starlette's ``FileResponse`` serves the file (ranges, sendfile). From a
bucket the API streams the object through, in chunks and with single byte ranges (phones
play a video by asking for ranges), so report pages keep loading everything from our own
origin. Only a private download may instead redirect to a short-lived presigned URL
(``HUIFANG_S3_PRESIGN``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from huifang import storage
from huifang.errors import NotFound

RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def stored_file(
    relative: str,
    *,
    media_type: str,
    headers: Mapping[str, str],
    range_header: str | None = None,
    filename: str | None = None,
    presign_seconds: int | None = None,
) -> Response:
    """The stored file as a response; NotFound when it is not there (any more)."""
    store = storage.backend()
    if isinstance(store, storage.LocalStorage):
        try:
            path = storage.resolve(relative)
        except ValueError:
            path = None
        if path is None or not path.is_file():
            raise NotFound("This file is no longer stored.")
        return FileResponse(path, media_type=media_type, headers=dict(headers), filename=filename)
    if presign_seconds:
        url = store.download_url(
            relative, content_type=media_type, expires_in=presign_seconds, filename=filename
        )
        if url:
            return RedirectResponse(url, status_code=307, headers=dict(headers))
    total = storage.size(relative)
    if total is None:
        raise NotFound("This file is no longer stored.")
    out = {**headers, "Accept-Ranges": "bytes"}
    if filename:
        out["Content-Disposition"] = f'attachment; filename="{filename}"'
    try:
        wanted = _range(range_header, total)
    except _Unsatisfiable:
        return Response(status_code=416, headers={**out, "Content-Range": f"bytes */{total}"})
    if wanted is None:
        out["Content-Length"] = str(total)
        return StreamingResponse(store.open(relative), media_type=media_type, headers=out)
    start, end = wanted
    out["Content-Length"] = str(end - start + 1)
    out["Content-Range"] = f"bytes {start}-{end}/{total}"
    return StreamingResponse(
        store.open(relative, start=start, end=end),
        status_code=206,
        media_type=media_type,
        headers=out,
    )


class _Unsatisfiable(Exception):
    pass


def _range(header: str | None, total: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` range within ``total``; None for the whole file (no header, or
    several ranges, which we answer with all of it as RFC 9110 allows)."""
    if not header:
        return None
    match = RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            raise _Unsatisfiable
        return max(0, total - length), total - 1
    start = int(first)
    end = min(int(last), total - 1) if last else total - 1
    if start >= total or end < start:
        raise _Unsatisfiable
    return start, end
