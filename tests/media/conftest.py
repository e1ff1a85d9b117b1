"""Fixtures for media tests: a visit to upload to, and photos made the way phones make them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.factories import make_staff, make_visit

# ../shared beside the checkout; a git worktree one level further down finds it too.
CORPUS = next(
    (
        up / "shared" / "corpus" / "images"
        for up in Path(__file__).resolve().parents[3:5]
        if (up / "shared" / "corpus" / "images").is_dir()
    ),
    Path(__file__).resolve().parents[3] / "shared" / "corpus" / "images",
)


@pytest.fixture
def visit(session, account):
    return make_visit(
        session, account.tenant, staff=make_staff(session, account.tenant), areas=["客厅", "厨房"]
    )


def phone_jpeg(
    size: tuple[int, int] = (1600, 1200),
    *,
    orientation: int | None = None,
    gps: bool = False,
    color: tuple[int, int, int] = (90, 140, 200),
    taken: str | None = "2026:11:20 10:15:00",
) -> bytes:
    """A JPEG as a phone writes it: EXIF with capture time, maybe Orientation and GPS."""
    image = Image.new("RGB", size, color)
    # A marker in the stored top-left corner, so orientation handling can be checked.
    image.paste((250, 30, 30), (0, 0, size[0] // 4, size[1] // 4))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken  # DateTimeOriginal
    if gps:
        exif.get_ifd(0x8825).update({1: "N", 2: (31.0, 13.0, 0.0), 3: "E", 4: (121.0, 28.0, 0.0)})
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def upload(
    client,
    account,
    visit_id: int,
    data: bytes,
    *,
    phase: str = "before",
    area: str | None = "客厅",
    filename: str = "IMG_0001.jpg",
    content_type: str = "image/jpeg",
):
    form = {"phase": phase}
    if area:
        form["area"] = area
    return client.post(
        f"/v1/visits/{visit_id}/media",
        headers=account.headers,
        data=form,
        files={"file": (filename, data, content_type)},
    )
