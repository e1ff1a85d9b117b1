"""The settings screen's watermark preview: the company's watermark in a proposed layout on
a sample photo, in bounded time, with nothing saved."""

from __future__ import annotations

import datetime as dt
import io
import os
import time
from pathlib import Path

from PIL import Image, ImageChops

from media import watermark_preview

NOW = dt.datetime(2026, 5, 1, 2, tzinfo=dt.UTC)


def _files(root: str) -> set[Path]:
    return {p for p in Path(root).rglob("*") if p.is_file()}


def _marked_share(jpeg: bytes, box: tuple[int, int, int, int]) -> float:
    """How much of ``box`` differs from the bare sample photo."""
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    diff = ImageChops.difference(image, watermark_preview._sample()).crop(box).convert("L")
    changed = sum(diff.histogram()[41:])
    return changed / ((box[2] - box[0]) * (box[3] - box[1]))


def test_the_layout_moves_the_watermark_and_nothing_is_saved(session, account) -> None:
    root = os.environ["HUIFANG_MEDIA_ROOT"]
    before = _files(root)
    started = time.perf_counter()
    left = watermark_preview.render(session=session, tenant=account.tenant, now=NOW)
    right = watermark_preview.render(
        session=session, tenant=account.tenant, now=NOW, position="top-right", scale=2.0
    )
    took = time.perf_counter() - started
    assert took < 5  # two renders; typically well under a second
    assert Image.open(io.BytesIO(left)).size == watermark_preview.SAMPLE_SIZE
    bottom_left, top_right = (0, 540, 480, 720), (480, 0, 960, 180)
    assert _marked_share(left, bottom_left) > 0.02 and _marked_share(left, top_right) < 0.001
    assert _marked_share(right, top_right) > 0.02 and _marked_share(right, bottom_left) < 0.001
    assert _files(root) == before
    assert len(left) < 300_000


def test_preview_by_api(client, account) -> None:
    saved = client.get("/v1/watermark", headers=account.headers).json()
    answer = client.get(
        "/v1/watermark/preview?position=top-left&scale=1.5&show_capture_time=false",
        headers=account.headers,
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    assert answer.content[:3] == b"\xff\xd8\xff"
    assert client.get("/v1/watermark", headers=account.headers).json() == saved
    for bad in ("scale=3", "scale=0.1", "position=middle"):
        refused = client.get(f"/v1/watermark/preview?{bad}", headers=account.headers)
        assert refused.status_code == 422 and refused.json()["detail"], bad


def test_preview_carries_the_company_logo(client, account) -> None:
    plain = client.get("/v1/watermark/preview", headers=account.headers).content
    logo = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    logo.paste((220, 30, 30, 255), (40, 40, 160, 160))
    data = io.BytesIO()
    logo.save(data, "PNG")
    put = client.put(
        "/v1/watermark/logo",
        headers=account.headers,
        files={"file": ("logo.png", data.getvalue(), "image/png")},
    )
    assert put.status_code == 200, put.text
    with_logo = client.get("/v1/watermark/preview", headers=account.headers).content
    image = Image.open(io.BytesIO(with_logo)).convert("RGB")
    raw = image.crop((0, 540, 480, 720)).tobytes()
    reds = sum(
        1 for i in range(0, len(raw), 3) if raw[i] > 180 and raw[i + 1] < 90 and raw[i + 2] < 90
    )
    assert reds > 50 and with_logo != plain
