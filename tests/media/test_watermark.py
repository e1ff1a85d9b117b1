"""The CJK font lookup and the watermark: real glyphs, facts only, readable anywhere, scaled."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageStat

from media import fonts, watermark
from media.fonts import FontMissing
from media.watermark import WatermarkFacts, WatermarkStyle

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
RECEIVED = dt.datetime(2026, 11, 23, 6, 5, tzinfo=dt.UTC)  # 14:05 in Shanghai


def make_facts(**changes: object) -> WatermarkFacts:
    facts = WatermarkFacts(
        company="洁家家政",
        service="空调清洗",
        phase="服务前",
        received_at=RECEIVED,
        timezone="Asia/Shanghai",
        code="K7Q2-9XMA",
        staff="李秀兰",
        area="客厅",
        captured_at=RECEIVED - dt.timedelta(minutes=3),
    )
    return dataclasses.replace(facts, **changes)  # type: ignore[arg-type]


@pytest.fixture
def fresh_fonts(monkeypatch):
    """Font lookups that see this test's environment, and leave no trace for the next test."""
    monkeypatch.delenv(fonts.ENV_VAR, raising=False)
    fonts.clear_caches()
    yield monkeypatch
    fonts.clear_caches()


def latin_font_file() -> str:
    """A Latin-only TrueType font from the system, or skip the control that needs one."""
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        pytest.skip("no fc-match here to find a Latin-only font for the negative control")
    for family in ("DejaVu Sans", "Liberation Sans"):
        found = subprocess.run(
            [fc_match, "-f", "%{file}", family], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if (
            found
            and Path(found).is_file()
            and family.split()[0] in " ".join(ImageFont.truetype(found, 12).getname())
        ):
            return found
    pytest.skip("neither DejaVu Sans nor Liberation Sans is installed for the negative control")


# --- fonts ---------------------------------------------------------------------------------


def test_the_cjk_font_renders_real_glyphs():
    font = fonts.load_font(48)
    assert fonts.renders_real_glyphs("服务前", font)
    assert fonts.renders_real_glyphs(fonts.PROBE, fonts.load_font(14, bold=False))


def test_a_latin_font_is_caught_printing_boxes():
    latin = ImageFont.truetype(latin_font_file(), 48)
    assert fonts.renders_real_glyphs("Hello", latin)
    assert not fonts.renders_real_glyphs("服务前", latin)
    assert not fonts.renders_real_glyphs("客厅 Hello", latin)


def test_without_the_variable_the_lookup_finds_a_cjk_font(fresh_fonts):
    spec = fonts.find_cjk_font()
    assert spec.source in ("fontconfig", "manimgx-fonts-cjk")
    family = " ".join(fonts.load_font(32).getname())
    if spec.path.lower().endswith((".ttc", ".otc")) and "CJK" in family:
        assert " SC" in family  # the Simplified Chinese face of the collection
    assert fonts.ensure_cjk_font() == spec


def test_fontconfig_answering_a_latin_font_is_not_taken(fresh_fonts):
    # fc-match always answers; without a CJK font installed it answers DejaVu or similar.
    spec = fonts._from_fontconfig()
    if spec is not None:
        font = ImageFont.truetype(spec.path, 48, index=spec.index)
        assert fonts.renders_real_glyphs("服务前", font)


def test_the_variable_wins_when_it_names_a_cjk_font(fresh_fonts):
    wheel_font = fonts._from_wheel()
    if wheel_font is None:
        pytest.skip("manimgx-fonts-cjk is not installed")
    fresh_fonts.setenv(fonts.ENV_VAR, wheel_font.path)
    spec = fonts.ensure_cjk_font()
    assert spec.source == "HUIFANG_FONT_PATH"
    assert "SC" in fonts.load_font(20).getname()[0]


def test_the_variable_naming_a_missing_file_stops_the_worker(fresh_fonts, tmp_path):
    fresh_fonts.setenv(fonts.ENV_VAR, str(tmp_path / "nope.ttf"))
    with pytest.raises(FontMissing, match="HUIFANG_FONT_PATH"):
        fonts.ensure_cjk_font()


def test_the_variable_naming_a_latin_font_stops_the_worker(fresh_fonts):
    fresh_fonts.setenv(fonts.ENV_VAR, latin_font_file())
    with pytest.raises(FontMissing, match="HUIFANG_FONT_PATH") as caught:
        fonts.ensure_cjk_font()
    assert "Chinese" in str(caught.value)


def test_no_font_anywhere_says_what_to_install(fresh_fonts):
    fresh_fonts.setattr(fonts, "_from_fontconfig", lambda: None)
    fresh_fonts.setattr(fonts, "_from_wheel", lambda: None)
    with pytest.raises(FontMissing) as caught:
        fonts.ensure_cjk_font()
    message = str(caught.value)
    for hint in ("HUIFANG_FONT_PATH", "fonts-noto-cjk", "pip install manimgx-fonts-cjk"):
        assert hint in message


# --- what it says --------------------------------------------------------------------------


def test_lines_carry_the_facts_in_the_tenants_time_zone():
    assert watermark.lines_for(make_facts()) == [
        "洁家家政 · 空调清洗 · 服务前",
        "客厅 · 李秀兰",
        "2026-11-23 14:05 上传 (拍摄 14:02)",
        "验证码 K7Q2-9XMA",
    ]
    in_la = watermark.lines_for(make_facts(timezone="America/Los_Angeles", captured_at=None))
    assert in_la[2] == "2026-11-22 22:05 上传"


def test_capture_time_only_when_given_and_plausible():
    assert "拍摄" not in watermark.lines_for(make_facts(captured_at=None))[2]
    day_before = watermark.lines_for(make_facts(captured_at=RECEIVED - dt.timedelta(days=1)))
    assert day_before[2] == "2026-11-23 14:05 上传 (拍摄 2026-11-22 14:05)"
    # A capture "after" our receipt is a wrong phone clock: we do not vouch for it.
    future = watermark.lines_for(make_facts(captured_at=RECEIVED + dt.timedelta(hours=2)))
    assert "拍摄" not in future[2]


def test_missing_area_and_staff_leave_no_empty_line():
    lines = watermark.lines_for(make_facts(area=None, staff=None))
    assert lines == [
        "洁家家政 · 空调清洗 · 服务前",
        "2026-11-23 14:05 上传 (拍摄 14:02)",
        "验证码 K7Q2-9XMA",
    ]


def test_naive_times_and_unknown_zones_are_refused():
    with pytest.raises(ValueError, match="naive"):
        make_facts(received_at=dt.datetime(2026, 11, 23, 14, 5))
    with pytest.raises(ValueError, match="naive"):
        make_facts(captured_at=dt.datetime(2026, 11, 23, 14, 5))
    with pytest.raises(Exception):  # noqa: B017  (ZoneInfo raises its own error types)
        make_facts(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="position"):
        WatermarkStyle(position="middle")  # type: ignore[arg-type]


def test_facts_are_the_only_input():
    # What is printed comes from WatermarkFacts, filled from our records; there is no way in
    # for text typed on a phone.
    # (in_place only says whether the frame itself is marked: no text)
    assert list(inspect.signature(watermark.apply).parameters) == [
        "image",
        "facts",
        "style",
        "in_place",
    ]
    assert inspect.signature(watermark.apply).parameters["in_place"].annotation in (bool, "bool")
    assert list(inspect.signature(watermark.overlay).parameters) == ["size", "facts", "style"]
    assert {field.name for field in dataclasses.fields(WatermarkFacts)} == {
        "company",
        "service",
        "phase",
        "received_at",
        "timezone",
        "code",
        "staff",
        "area",
        "captured_at",
        "logo",
    }


# --- how it looks --------------------------------------------------------------------------


@pytest.mark.parametrize("position", watermark.POSITIONS)
def test_overlay_is_one_block_in_the_configured_corner(position):
    width, height = 2000, 1500
    layer = watermark.overlay((width, height), make_facts(), WatermarkStyle(position=position))
    assert layer.mode == "RGBA" and layer.size == (width, height)
    box = layer.getchannel("A").getbbox()
    assert box is not None
    left, top, right, bottom = box
    # A modest block, nowhere near the centre of the photo.
    assert (right - left) * (bottom - top) < 0.12 * width * height
    assert not (left < width / 2 < right and top < height / 2 < bottom)
    vertical, horizontal = position.split("-")
    if horizontal == "left":
        assert left < 0.05 * width and right < width / 2
    else:
        assert right > 0.95 * width and left > width / 2
    if vertical == "top":
        assert top < 0.05 * height and bottom < height / 2
    else:
        assert bottom > 0.95 * height and top > height / 2
    # Transparent everywhere outside the block's box.
    outside = layer.getchannel("A").copy()
    ImageDraw.Draw(outside).rectangle((left, top, right - 1, bottom - 1), fill=0)
    assert outside.getbbox() is None


def _text_mask(layer: Image.Image) -> Image.Image:
    """Where the overlay puts its white ink (opaque and bright)."""
    red = layer.getchannel("R").point(lambda v: 255 if v > 200 else 0)
    alpha = layer.getchannel("A").point(lambda v: 255 if v > 200 else 0)
    return ImageChops.multiply(red, alpha)


def _luminance(level: float) -> float:
    value = level / 255
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 0), (128, 128, 128)])
def test_text_stands_out_on_white_black_and_grey_photos(background):
    facts, size = make_facts(), (1600, 1200)
    marked = watermark.apply(Image.new("RGB", size, background), facts).convert("L")
    text = _text_mask(watermark.overlay(size, facts))
    ring = ImageChops.subtract(text.filter(ImageFilter.MaxFilter(5)), text)
    assert text.getbbox() is not None and ring.getbbox() is not None
    ink = _luminance(ImageStat.Stat(marked, text).mean[0])
    around = _luminance(ImageStat.Stat(marked, ring).mean[0])
    contrast = (max(ink, around) + 0.05) / (min(ink, around) + 0.05)
    assert contrast >= 3, f"text/surround contrast {contrast:.1f}:1 on {background}"


def test_apply_is_the_overlay_composited_and_ignores_the_photo():
    facts, size = make_facts(), (900, 700)
    layer = watermark.overlay(size, facts)
    for background in ((255, 255, 255), (10, 60, 30)):
        photo = Image.new("RGB", size, background)
        expected = Image.alpha_composite(photo.convert("RGBA"), layer).convert("RGB")
        got = watermark.apply(photo, facts)
        assert got.mode == "RGB" and got.size == size and photo.getpixel((0, 0)) == background
        assert max(high for _, high in ImageChops.difference(got, expected).getextrema()) <= 2


def test_in_place_marks_the_frame_itself_with_the_same_pixels():
    facts, size = make_facts(), (900, 700)
    photo = Image.new("RGB", size, (40, 90, 160))
    copied = watermark.apply(photo, facts)
    assert photo.getpixel((size[0] - 1, size[1] - 1)) == (40, 90, 160)  # left alone
    marked = watermark.apply(photo, facts, in_place=True)
    assert marked is photo
    assert ImageChops.difference(marked, copied).getbbox() is None
    # A frame of another mode is converted, never changed: in place applies to RGB only.
    grey = Image.new("L", size, 128)
    out = watermark.apply(grey, facts, in_place=True)
    assert out is not grey and out.mode == "RGB" and grey.getextrema() == (128, 128)


@pytest.mark.parametrize(
    "changes",
    [{}, {"area": None}, {"area": None, "staff": None}, {"captured_at": None}],
    ids=["four lines", "no area", "no area or staff", "no capture time"],
)
@pytest.mark.parametrize("position", watermark.POSITIONS)
def test_a_block_from_the_kept_panel_is_the_block_drawn_afresh(position, changes):
    # Photos of a visit share their first lines: those are drawn once onto a kept panel
    # and the rest on a copy of it. The pixels must be those of a block drawn from nothing.
    style = WatermarkStyle(position=position)
    watermark._block_with_lines.cache_clear()
    for n in range(3):
        facts = make_facts(code=f"K7Q2-{n:04d}", **changes)
        lines = watermark.lines_for(facts)
        layout = watermark._layout((1512, 2016), lines, style, None)
        fresh = watermark._panel(layout, style, None)
        watermark._draw_lines(fresh, lines, layout, style, None, first=0)
        block = watermark._draw_block(lines, layout, style, None)
        assert block.tobytes() == fresh.tobytes(), n
    assert watermark._block_with_lines.cache_info().hits == 2  # kept after the first photo


def test_text_scales_with_the_image():
    facts = make_facts()

    def text_height(size: tuple[int, int], scale: float = 1.0) -> int:
        box = _text_mask(watermark.overlay(size, facts, WatermarkStyle(scale=scale))).getbbox()
        assert box is not None
        return box[3] - box[1]

    small, large = text_height((2000, 1500)), text_height((4000, 3000))
    assert 1.85 < large / small < 2.15
    assert 1.7 < text_height((2000, 1500), scale=2.0) / small < 2.3
    # The short edge decides: a portrait photo gets the same text as its landscape twin.
    assert abs(text_height((1500, 2000)) - small) <= 2


def test_long_names_on_small_photos_stay_inside():
    facts = make_facts(company="上海市浦东新区张江高科技园区洁家家政服务有限公司第二分公司")
    for position in watermark.POSITIONS:
        layer = watermark.overlay((480, 360), facts, WatermarkStyle(position=position))
        left, top, right, bottom = layer.getchannel("A").getbbox() or (0, 0, 0, 0)
        assert left > 0 and right < 480 and top > 0 and bottom < 360


def _logo() -> Image.Image:
    logo = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    draw = ImageDraw.Draw(logo)
    draw.ellipse((0, 0, 199, 199), fill=(220, 30, 40, 255))
    draw.rectangle((150, 60, 299, 140), fill=(20, 90, 200, 255))
    return logo


@pytest.mark.parametrize("position", ["bottom-left", "top-right"])
def test_logo_sits_at_the_blocks_outer_edge(position):
    size = (1600, 1200)
    layer = watermark.overlay(size, make_facts(logo=_logo()), WatermarkStyle(position=position))
    block = layer.getchannel("A").getbbox()
    red = ImageChops.multiply(
        layer.getchannel("R").point(lambda v: 255 if v > 180 else 0),
        layer.getchannel("G").point(lambda v: 255 if v < 80 else 0),
    )
    logo_box = red.getbbox()
    assert block is not None and logo_box is not None
    block_middle = (block[0] + block[2]) / 2
    if position.endswith("left"):
        assert logo_box[2] < block_middle
    else:
        assert logo_box[0] > block_middle


def test_apply_is_fast_on_a_display_photo():
    photo = Image.new("RGB", (2048, 1536), (120, 130, 140))
    watermark.apply(photo, make_facts())  # fonts loaded once per process
    timings = []
    for i in range(7):
        facts = make_facts(code=f"K7Q2-{i:04d}")  # a new code each time, as in real life
        started = time.process_time()  # CPU time: a busy machine must not fail it
        watermark.apply(photo, facts)
        timings.append(time.process_time() - started)
    median_ms = statistics.median(timings) * 1000
    print(f"watermark.apply 2048x1536: median {median_ms:.1f} ms")
    assert median_ms < 60


def sample_photo(size: tuple[int, int] = (2048, 1536)) -> Image.Image:
    """A room as a phone sees it: a bright window, a pale wall, a dark cabinet at the bottom."""
    width, height = size
    photo = Image.linear_gradient("L").resize(size).point(lambda v: 150 + v // 3)
    photo = Image.merge("RGB", (photo, photo.point(lambda v: v - 6), photo.point(lambda v: v - 18)))
    draw = ImageDraw.Draw(photo)
    draw.rectangle((width * 0.55, height * 0.08, width * 0.92, height * 0.55), fill=(250, 252, 255))
    draw.rectangle((0, height * 0.78, width * 0.2, height), fill=(40, 32, 28))
    draw.rectangle((width * 0.2, height * 0.70, width * 0.5, height), fill=(235, 235, 232))
    draw.ellipse((width * 0.35, height * 0.3, width * 0.5, height * 0.5), fill=(60, 120, 170))
    return photo


def test_sample_watermarked_photo_for_eyes():
    ARTIFACTS.mkdir(exist_ok=True)
    marked = watermark.apply(sample_photo(), make_facts(logo=_logo()))
    marked.save(ARTIFACTS / "watermark_sample.png")
    portrait = watermark.apply(
        sample_photo((1536, 2048)), make_facts(), WatermarkStyle(position="bottom-right")
    )
    portrait.save(ARTIFACTS / "watermark_sample_portrait.png")
    assert fonts.renders_real_glyphs(
        "".join(watermark.lines_for(make_facts())), fonts.load_font(40)
    )


@pytest.mark.parametrize("position", ["bottom-left", "top-right"])
def test_block_is_what_pillows_outlined_text_draws(position):
    """The block's lines come from cached masks; they must be the pixels that Pillow's own
    draw.text with an outline draws, for a repeated line as for a new one."""
    style = WatermarkStyle(position=position)  # type: ignore[arg-type]
    for code in ("K7Q2-9XMA", "K7Q2-9XMA", "Z1Z1-0000"):
        lines = watermark.lines_for(make_facts(code=code))
        layout = watermark._layout((1512, 2016), lines, style, None)
        got = watermark._draw_block(lines, layout, style, None)
        expected = Image.new("RGBA", layout.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(expected)
        draw.rounded_rectangle(
            (0, 0, layout.size[0] - 1, layout.size[1] - 1),
            radius=round(layout.text_px * 0.45),
            fill=(0, 0, 0, round(style.opacity * 0.42)),
        )
        for i, (line, font) in enumerate(zip(lines, layout.fonts, strict=True)):
            draw.text(
                (
                    layout.pad_x + layout.stroke,
                    layout.pad_y + layout.line_height * i + layout.line_height // 2,
                ),
                line,
                font=font,
                fill=(255, 255, 255, style.opacity),
                anchor="lm",
                stroke_width=layout.stroke,
                stroke_fill=(0, 0, 0, min(255, round(style.opacity * 0.85))),
            )
        assert got.tobytes() == expected.tobytes()
