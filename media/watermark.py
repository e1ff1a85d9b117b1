"""The watermark on every visit photo: facts from our own records, drawn on the server.

Nothing a client sends is printed: ``WatermarkFacts`` is filled by the media service from the
tenant, the visit, the staff row and our receive time. The block is white text with a dark
outline on a soft translucent panel, so it reads on white walls and on dark cupboards alike,
sized from the image's short edge and placed in the corner the tenant's template asks for.

``overlay`` draws the block on a transparent canvas and never looks at the photo, so the same
PNG can be laid over a video by ffmpeg. ``apply`` composites only the block's box: it runs on
every uploaded photo.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from PIL import Image, ImageDraw, ImageFont

from media.fonts import load_font

Position = Literal["bottom-left", "bottom-right", "top-left", "top-right"]
POSITIONS: tuple[str, ...] = get_args(Position)

# Text size as a share of the image's short edge, and the smallest size still legible.
TEXT_SHARE = 0.026
MIN_TEXT_PX = 14
# The block never grows past these shares of the image; longer text is set smaller.
MAX_BLOCK_WIDTH = 0.92
MAX_BLOCK_HEIGHT = 0.45
# A phone clock may run a little ahead of ours; a capture time later than this after our
# receive time is not a capture time we can vouch for, so it is left off.
CLOCK_SKEW = dt.timedelta(minutes=10)
SEPARATOR = " · "


@dataclass(frozen=True)
class WatermarkFacts:
    company: str
    service: str  # Chinese label, e.g. 空调清洗
    phase: str  # Chinese label: 服务前 / 服务中 / 服务后 / 工作汇报
    received_at: dt.datetime  # aware, server receive time
    timezone: str  # IANA; times are printed in this zone
    code: str  # short verification code, printed as 验证码 K7Q2-9XMA
    staff: str | None = None
    area: str | None = None
    captured_at: dt.datetime | None = None  # the phone's capture time; printed only when given
    logo: Image.Image | None = None  # company logo, any mode; pasted with alpha, scaled

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None:
            raise ValueError("received_at is naive; give a time zone")
        if self.captured_at is not None and self.captured_at.tzinfo is None:
            raise ValueError("captured_at is naive; give a time zone")
        ZoneInfo(self.timezone)  # an unknown zone fails here, not halfway through a batch


@dataclass(frozen=True)
class WatermarkStyle:
    position: Position = "bottom-left"
    scale: float = 1.0  # multiplies the automatic size (text ≈ 2.6% of the short edge)
    opacity: int = 235

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise ValueError(f"position must be one of {', '.join(POSITIONS)}")
        if not 0.2 <= self.scale <= 5:
            raise ValueError("scale must be between 0.2 and 5")
        if not 0 < self.opacity <= 255:
            raise ValueError("opacity must be between 1 and 255")


def _local(moment: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    return moment.astimezone(zone)


def lines_for(facts: WatermarkFacts) -> list[str]:
    """The watermark's lines, top to bottom, in the tenant's time zone."""
    zone = ZoneInfo(facts.timezone)
    received = _local(facts.received_at, zone)
    headline = SEPARATOR.join(part for part in (facts.company, facts.service, facts.phase) if part)
    where_who = SEPARATOR.join(part for part in (facts.area, facts.staff) if part)
    when = f"{received:%Y-%m-%d %H:%M} 上传"
    captured = facts.captured_at
    if captured is not None and captured <= facts.received_at + CLOCK_SKEW:
        taken = _local(captured, zone)
        shown = f"{taken:%H:%M}" if taken.date() == received.date() else (f"{taken:%Y-%m-%d %H:%M}")
        when += f" (拍摄 {shown})"
    lines = [headline, where_who, when, f"验证码 {facts.code}"]
    return [line for line in lines if line]


# --- layout --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    text_px: int
    fonts: tuple[ImageFont.FreeTypeFont, ...]  # one per line: the headline is bold
    line_height: int
    stroke: int
    pad_x: int
    pad_y: int
    text_width: int
    logo_box: tuple[int, int]  # (width, height) of the logo tile, (0, 0) without a logo
    gap: int
    margin: int

    @property
    def size(self) -> tuple[int, int]:
        logo_w, logo_h = self.logo_box
        width = self.pad_x * 2 + self.text_width + (logo_w + self.gap if logo_w else 0)
        text_h = self.line_height * len(self.fonts)
        height = self.pad_y * 2 + max(text_h, logo_h)
        return width, height


def _logo_box(logo: Image.Image | None, height: int) -> tuple[int, int]:
    if logo is None or logo.width < 1 or logo.height < 1:
        return 0, 0
    width = min(round(height * logo.width / logo.height), height * 3)
    return max(1, width), height


def _measure(lines: list[str], text_px: int, margin: int, logo: Image.Image | None) -> _Layout:
    fonts = tuple(load_font(text_px, bold=(i == 0)) for i in range(len(lines)))
    stroke = max(1, round(text_px / 14))
    width = max(round(font.getlength(line)) for font, line in zip(fonts, lines, strict=True))
    line_height = round(text_px * 1.38)
    # The logo stands beside the first two lines, on a light tile so dark logos still show.
    logo_lines = min(2, len(lines))
    return _Layout(
        text_px=text_px,
        fonts=fonts,
        line_height=line_height,
        stroke=stroke,
        pad_x=round(text_px * 0.6),
        pad_y=round(text_px * 0.45),
        text_width=width + 2 * stroke,
        logo_box=_logo_box(logo, line_height * logo_lines - round(text_px * 0.2)),
        gap=round(text_px * 0.5),
        margin=margin,
    )


def _layout(
    size: tuple[int, int], lines: list[str], style: WatermarkStyle, logo: Image.Image | None
) -> _Layout:
    width, height = size
    short = min(width, height)
    margin = max(4, round(short * 0.022))
    text_px = max(MIN_TEXT_PX, round(short * TEXT_SHARE * style.scale))
    layout = _measure(lines, text_px, margin, logo)
    # Long names on a small or very wide image: set the text smaller rather than spill over.
    for _ in range(4):
        block_w, block_h = layout.size
        fit = min(width * MAX_BLOCK_WIDTH / block_w, height * MAX_BLOCK_HEIGHT / block_h)
        if fit >= 1 or layout.text_px <= 8:
            break
        layout = _measure(lines, max(8, int(layout.text_px * fit)), margin, logo)
    return layout


def _origin(
    size: tuple[int, int], block: tuple[int, int], layout: _Layout, position: Position
) -> tuple[int, int]:
    width, height = size
    block_w, block_h = block
    vertical, horizontal = position.split("-")
    x = layout.margin if horizontal == "left" else width - layout.margin - block_w
    y = layout.margin if vertical == "top" else height - layout.margin - block_h
    return max(0, x), max(0, y)


def _draw_block(
    lines: list[str], layout: _Layout, style: WatermarkStyle, logo: Image.Image | None
) -> Image.Image:
    """The watermark block alone: RGBA, exactly its own size."""
    # The photos of a visit share their first lines (company, service and phase; area and
    # staff) and the block's size: without a logo, the panel with those lines drawn is
    # kept and copied, and only the last two lines (time, code) are drawn on the copy, in
    # the same order as on a fresh block, so the pixels are the same.
    shared = len(lines) - 2
    if logo is None and shared > 0:
        block = _block_with_lines(tuple(lines[:shared]), layout, style).copy()
        _draw_lines(block, lines, layout, style, logo, first=shared)
        return block
    block = _panel(layout, style, logo)
    _draw_lines(block, lines, layout, style, logo, first=0)
    return block


# A few blocks (a 12 MP photo's is ~0.8 MB, a 48 MP one's ~3 MB): one visit at a time.
@functools.lru_cache(maxsize=8)
def _block_with_lines(
    lines: tuple[str, ...], layout: _Layout, style: WatermarkStyle
) -> Image.Image:
    """The panel of a logo-less block with its first ``lines`` drawn. Only read from."""
    block = _panel(layout, style, None)
    _draw_lines(block, list(lines), layout, style, None, first=0)
    return block


def _panel(layout: _Layout, style: WatermarkStyle, logo: Image.Image | None) -> Image.Image:
    """The block's translucent panel, with the logo on its tile when there is one."""
    block_w, block_h = layout.size
    block = Image.new("RGBA", (block_w, block_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(block)
    opacity = style.opacity
    draw.rounded_rectangle(
        (0, 0, block_w - 1, block_h - 1),
        radius=round(layout.text_px * 0.45),
        fill=(0, 0, 0, round(opacity * 0.42)),
    )
    logo_w, logo_h = layout.logo_box
    on_right = style.position.endswith("right")
    if logo is not None and logo_w:
        # The logo sits at the block's outer edge, beside the company's name.
        logo_x = block_w - layout.pad_x - logo_w if on_right else layout.pad_x
        tile = (logo_x, layout.pad_y + round(layout.text_px * 0.1))
        inset = max(1, round(logo_h * 0.08))
        draw.rounded_rectangle(
            (tile[0], tile[1], tile[0] + logo_w - 1, tile[1] + logo_h - 1),
            radius=max(1, round(logo_h * 0.16)),
            fill=(255, 255, 255, opacity),
        )
        inner = (max(1, logo_w - 2 * inset), max(1, logo_h - 2 * inset))
        mark = logo.convert("RGBA")
        mark.thumbnail(inner, Image.Resampling.LANCZOS, reducing_gap=2.0)
        block.alpha_composite(
            mark, (tile[0] + (logo_w - mark.width) // 2, tile[1] + (logo_h - mark.height) // 2)
        )
    return block


def _draw_lines(
    block: Image.Image,
    lines: list[str],
    layout: _Layout,
    style: WatermarkStyle,
    logo: Image.Image | None,
    *,
    first: int,
) -> None:
    """Draw ``lines[first:]`` (each at its own line's place) on ``block``."""
    draw = ImageDraw.Draw(block)
    opacity = style.opacity
    logo_w = layout.logo_box[0]
    text_x = layout.pad_x + layout.stroke
    if logo is not None and logo_w and not style.position.endswith("right"):
        text_x += logo_w + layout.gap
    ink = draw.draw.draw_ink((255, 255, 255, opacity))
    outline = draw.draw.draw_ink((0, 0, 0, min(255, round(opacity * 0.85))))
    for i, (line, font) in enumerate(zip(lines, layout.fonts[: len(lines)], strict=True)):
        if i < first:
            continue
        middle = layout.pad_y + layout.line_height * i + layout.line_height // 2
        # What draw.text(anchor="lm", stroke_width=, stroke_fill=) does: the outlined text in
        # the outline colour, then the text itself in the ink, each from its rendered mask.
        for colour, stroke in ((outline, layout.stroke), (ink, 0)):
            mask, (dx, dy) = _line_mask(font, line, stroke)
            draw.draw.draw_bitmap((text_x + dx, middle + dy), mask, colour)


@functools.lru_cache(maxsize=64)
def _line_mask(font: ImageFont.FreeTypeFont, line: str, stroke: int) -> tuple[Any, tuple[int, int]]:
    """One line's coverage mask as FreeType renders it (left-middle anchor), and its offset.

    Rendering is most of a watermark's cost (a CFF variable font, outlined), and the photos
    of a visit share most lines (company, service and phase; area and staff; often the
    minute): those are rendered once per worker process. Masks are only read from.
    """
    return font.getmask2(line, "L", stroke_width=stroke, anchor="lm", stroke_filled=True)


def _placed_block(
    size: tuple[int, int], facts: WatermarkFacts, style: WatermarkStyle
) -> tuple[Image.Image, tuple[int, int]]:
    lines = lines_for(facts)
    layout = _layout(size, lines, style, facts.logo)
    block = _draw_block(lines, layout, style, facts.logo)
    return block, _origin(size, block.size, layout, style.position)


def overlay(
    size: tuple[int, int], facts: WatermarkFacts, style: WatermarkStyle = WatermarkStyle()
) -> Image.Image:
    """The watermark on a transparent RGBA canvas of ``size`` (for photos and for video)."""
    block, origin = _placed_block(size, facts, style)
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    canvas.paste(block, origin)
    return canvas


def apply(
    image: Image.Image,
    facts: WatermarkFacts,
    style: WatermarkStyle = WatermarkStyle(),
    *,
    in_place: bool = False,
) -> Image.Image:
    """A new RGB image: ``image`` with the watermark composited over the block's box only.

    ``in_place``: an RGB ``image`` its caller will not use again is marked itself and
    returned, instead of a copy (for a 12 MP photo's display frame, 12 MB less memory to
    write and, on memory fresh from the kernel, about 3,000 page faults less)."""
    out = image if in_place and image.mode == "RGB" else image.convert("RGB")
    block, origin = _placed_block(out.size, facts, style)
    out.paste(block, origin, block)  # the block's alpha as the mask: "over" on an opaque photo
    return out
