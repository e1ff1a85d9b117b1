"""Files under the media root: generated names, atomic writes, no path ever from a client."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import uuid
from pathlib import Path

from huifang.settings import get_settings


def root() -> Path:
    path = get_settings().media_root.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def staging_dir() -> Path:
    path = root() / "staging"
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_relative_path(area: str, tenant_id: int, ext: str, *, now: dt.datetime) -> str:
    """A fresh name such as ``originals/7/2026/11/3f2c….jpg``; only our own parts in it."""
    if area not in ("originals", "renditions", "logos"):
        raise ValueError(area)
    if not ext.startswith(".") or not ext[1:].isalnum():
        raise ValueError(ext)
    return f"{area}/{int(tenant_id)}/{now:%Y/%m}/{uuid.uuid4().hex}{ext}"


def resolve(relative: str) -> Path:
    """The absolute path of a stored file; refuses anything that would leave the media root."""
    base = root()
    path = (base / relative).resolve()
    if base not in path.parents:
        raise ValueError(f"path outside the media root: {relative!r}")
    return path


def write_bytes(relative: str, data: bytes) -> Path:
    """Write atomically: readers see the whole file or none of it."""
    target = resolve(relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def adopt(staged: Path, relative: str) -> Path:
    """Move a staged upload to its permanent name (same filesystem: an atomic rename)."""
    target = resolve(relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)
    return target


def remove(relative: str | None) -> None:
    if relative:
        resolve(relative).unlink(missing_ok=True)
