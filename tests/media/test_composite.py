"""Before/after composites: layout by orientation, labels, whole images, size limit."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from media import watermark
from media.composite import before_after

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BEFORE, AFTER = (70, 110, 170), (60, 150, 90)
BEFORE_BAND, AFTER_BAND = (230, 40, 200), (240, 200, 20)


def photo(
    size: tuple[int, int], color: tuple[int, int, int], band: tuple[int, int, int]
) -> Image.Image:
    """A flat photo with a distinct band along its bottom edge, where the watermark lives."""
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).rectangle((0, round(size[1] * 0.93), size[0], size[1]), fill=band)
    return image


def near(pixel: object, color: tuple[int, int, int], tolerance: int = 12) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, color, strict=True))


def label_ink(
    image: Image.Image, box: tuple[int, int, int, int], source: tuple[int, int, int]
) -> tuple[int, int]:
    """(pixels unlike the source photo, near-white pixels) inside ``box``."""
    region = image.crop(box)
    changed = white = 0
    for y in range(0, region.height, 2):
        for x in range(0, region.width, 2):
            pixel = region.getpixel((x, y))
            changed += not near(pixel, source, 30)
            white += near(pixel, (255, 255, 255), 40)
    return changed, white


def test_landscape_pair_stands_side_by_side_with_both_labels():
    result = before_after(
        photo((1600, 1200), BEFORE, BEFORE_BAND), photo((1600, 1200), AFTER, AFTER_BAND)
    )
    assert result.mode == "RGB" and result.width > result.height
    half = result.width // 2
    # Each half keeps its photo, before on the left.
    assert near(result.getpixel((half // 2, result.height // 2)), BEFORE)
    assert near(result.getpixel((half + half // 2, result.height // 2)), AFTER)
    # A label in the top-left corner of each half: ink unlike the photo, and white text.
    corner = (round(half * 0.16), round(result.height * 0.12))
    for left, source in ((0, BEFORE), (half + 8, AFTER)):
        changed, white = label_ink(result, (left, 0, left + corner[0], corner[1]), source)
        assert changed > 50 and white > 10
    # Away from the corners the photos are untouched.
    assert label_ink(result, (half // 2, 100, half // 2 + 100, 200), BEFORE)[0] == 0


def test_portrait_shots_are_stacked_before_on_top():
    result = before_after(
        photo((900, 1200), BEFORE, BEFORE_BAND), photo((1600, 1200), AFTER, AFTER_BAND)
    )
    assert result.height > result.width
    assert near(result.getpixel((result.width // 2, result.height // 4)), BEFORE)
    assert near(result.getpixel((result.width // 2, result.height * 3 // 4)), AFTER)


def _column(image: Image.Image, x: int) -> list[tuple[int, int, int]]:
    return [image.getpixel((x, y)) for y in range(image.height)]  # type: ignore[misc]


def _row(image: Image.Image, y: int) -> list[tuple[int, int, int]]:
    return [image.getpixel((x, y)) for x in range(image.width)]  # type: ignore[misc]


def test_different_sizes_are_fitted_whole_with_their_bottom_rows():
    before = photo((1600, 1200), BEFORE, BEFORE_BAND)
    after = photo((800, 450), AFTER, AFTER_BAND)  # smaller and wider
    result = before_after(before, after)
    assert result.width > result.height
    # Both fill the full height (a common height) and keep their aspect ratio.
    bottom = _row(result, result.height - 2)
    before_width = sum(near(p, BEFORE_BAND) for p in bottom)
    after_width = sum(near(p, AFTER_BAND) for p in bottom)
    assert abs(before_width / result.height - 1600 / 1200) < 0.02
    assert abs(after_width / result.height - 800 / 450) < 0.02
    top = _row(result, result.height // 2)
    assert sum(near(p, BEFORE) for p in top) == before_width
    assert sum(near(p, AFTER) for p in top) == after_width


def test_stacked_pair_keeps_both_bottom_bands():
    result = before_after(
        photo((1200, 1600), BEFORE, BEFORE_BAND), photo((1200, 1600), AFTER, AFTER_BAND)
    )
    column = _column(result, result.width // 2)
    before_band = [y for y, p in enumerate(column) if near(p, BEFORE_BAND)]
    after_rows = [y for y, p in enumerate(column) if near(p, AFTER)]
    assert before_band and after_rows
    assert max(before_band) < min(after_rows)  # the before photo's bottom, above the after photo
    assert near(column[-1], AFTER_BAND)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ((4000, 3000), (4000, 3000)),
        ((3000, 4000), (4000, 3000)),
        ((5000, 1000), (1000, 5000)),
        ((300, 200), (200, 300)),
    ],
)
def test_long_edge_stays_within_max_edge(first, second):
    for max_edge in (2048, 1000, 333):
        result = before_after(
            photo(first, BEFORE, BEFORE_BAND), photo(second, AFTER, AFTER_BAND), max_edge=max_edge
        )
        assert max(result.size) <= max_edge


def test_any_image_mode_gives_rgb():
    grey = Image.new("L", (640, 480), 90)
    clear = Image.new("RGBA", (640, 480), (200, 0, 0, 128))
    result = before_after(grey, clear)
    assert result.mode == "RGB" and result.width > result.height


def test_sample_composite_for_eyes():
    from tests.media.test_watermark import make_facts, sample_photo

    ARTIFACTS.mkdir(exist_ok=True)
    facts = make_facts()
    later = facts.received_at + dt.timedelta(hours=2)
    before = watermark.apply(sample_photo(), facts)
    after_photo = sample_photo()
    ImageDraw.Draw(after_photo).ellipse((700, 460, 1030, 770), fill=(225, 232, 236))
    after = watermark.apply(
        after_photo,
        make_facts(phase="服务后", received_at=later, captured_at=None, code="P3M8-Q2ZC"),
    )
    before_after(before, after).save(ARTIFACTS / "before_after_sample.png")
    portrait = sample_photo((1536, 2048))
    stacked = before_after(watermark.apply(portrait, facts), after)
    stacked.save(ARTIFACTS / "before_after_stacked_sample.png")
    assert stacked.height > stacked.width
