"""The report as one long picture, 750 px wide: what customers save and forward in chat apps.

Pure: images and texts in, one JPEG out. Sections are drawn with Pillow in the CJK font of
``media.fonts``: a header band, the before/after pairs, the staff member's work report, the
staff card, photos of the work, care advice, the upcoming offer and how to book (回复1预约).
No QR codes: Aliyun refuses them in messages, and the report link travels as text anyway.

The result is under a byte budget (default 1.5 MB): JPEG quality is lowered first, and only
when the lowest quality is still too heavy is the whole picture scaled down. Callers keep the
content to a sensible amount (``MAX_HIGHLIGHTS``, ``MAX_GALLERY``) so real reports stay 750 px.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont, ImageOps

from media.fonts import load_font

WIDTH = 750
DEFAULT_BUDGET = 1_500_000
QUALITIES = (86, 80, 74, 68, 62, 56, 50, 44, 38)  # searched before the size is reduced
SCALE_STEP = 0.85
MIN_WIDTH = 240
MAX_HIGHLIGHTS = 6
MAX_GALLERY = 6
MAX_PHOTO_HEIGHT = 1100  # a stacked portrait pair is fitted to this height, not the width

MARGIN = 24  # page edge to card
PAD = 28  # card edge to content
GAP = 20  # between cards
INNER = WIDTH - 2 * MARGIN - 2 * PAD
RADIUS = 20

BACKGROUND = (243, 245, 247)
CARD = (255, 255, 255)
BRAND = (15, 118, 110)
BRAND_DARK = (17, 94, 89)
INK = (31, 41, 51)
BODY = (55, 65, 81)
MUTED = (107, 114, 128)
ON_BRAND = (255, 255, 255)
ON_BRAND_SOFT = (204, 251, 241)
CHIP = (236, 253, 245)
CHIP_INK = (4, 120, 87)
OFFER_BG = (255, 247, 237)
OFFER_LINE = (253, 186, 116)
OFFER_INK = (154, 52, 18)

# Never at the start of a line (Chinese line breaking, simplified).
NO_LINE_START = set("，。、；：！？）》」』”’,.;:!?)%")
_TOKENS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:/_\-]*|\s+|.", re.DOTALL)


@dataclass(frozen=True)
class Photo:
    image: Image.Image
    caption: str | None = None


@dataclass(frozen=True)
class StaffCard:
    name: str
    years_experience: int | None = None
    certificates: Sequence[str] = ()
    photo: Image.Image | None = None


@dataclass(frozen=True)
class LongImageContent:
    company: str
    title: str  # "空调清洗 服务报告"
    subtitle: str  # "2026年11月20日 · 服务人员 李秀兰"
    highlights: Sequence[Photo] = ()  # before/after composites, one per area
    more_highlights: int = 0  # areas left out of the picture (the page shows them)
    staff_report: Photo | None = None
    staff: StaffCard | None = None
    gallery: Sequence[Image.Image] = ()
    care_title: str = "保养建议"
    care_text: str = ""
    offer_title: str | None = None
    offer_text: str | None = None
    footer: str = "回复1预约下次服务"
    notes: Sequence[str] = field(default_factory=tuple)  # small print at the very end


@dataclass(frozen=True)
class LongImage:
    data: bytes
    width: int
    height: int
    quality: int
    content_type: str = "image/jpeg"


# --- text ----------------------------------------------------------------------------------


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Lines of ``text`` no wider than ``width``: Chinese breaks anywhere, Latin words and
    links stay whole when they fit, and closing punctuation never starts a line."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for token in _TOKENS.findall(paragraph):
            if not line and token.isspace():
                continue
            if font.getlength(line + token) <= width:
                line += token
                continue
            if len(token) > 1 and font.getlength(token) > width:
                for char in token:  # a link longer than the line: break it anywhere
                    if font.getlength(line + char) > width and line:
                        lines.append(line)
                        line = ""
                    line += char
                continue
            if token in NO_LINE_START and line:
                # Carry the last character down with the punctuation.
                lines.append(line[:-1])
                line = line[-1] + token
                continue
            if line.strip():
                lines.append(line.rstrip())
            line = "" if token.isspace() else token
        lines.append(line.rstrip())
    return [line for line in lines if line] or [""]


# --- layout --------------------------------------------------------------------------------

Painter = Callable[[Image.Image, ImageDraw.ImageDraw, int, int], None]


@dataclass(frozen=True)
class _Item:
    height: int
    paint: Painter


def _text(
    text: str,
    *,
    size: int,
    color: tuple[int, int, int],
    bold: bool = False,
    width: int = INNER,
    leading: float = 1.6,
) -> _Item:
    font = load_font(size, bold=bold)
    lines = wrap(text, font, width)
    line_height = round(size * leading)
    ascent, descent = font.getmetrics()
    offset = (line_height - (ascent + descent)) // 2

    def paint(_: Image.Image, draw: ImageDraw.ImageDraw, x: int, y: int) -> None:
        for number, line in enumerate(lines):
            draw.text(
                (x, y + number * line_height + offset), line, font=font, fill=color, anchor="la"
            )

    return _Item(len(lines) * line_height, paint)


def _gap(height: int) -> _Item:
    return _Item(height, lambda *_: None)


def _rounded(image: Image.Image, radius: int) -> Image.Image:
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        (0, 0, image.width - 1, image.height - 1), radius=radius, fill=255
    )
    return mask


def _fitted(image: Image.Image, width: int, max_height: int) -> Image.Image:
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    scale = min(width / rgb.width, max_height / rgb.height)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    if size == rgb.size:
        return rgb
    return rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _photo(image: Image.Image, *, width: int = INNER, max_height: int = MAX_PHOTO_HEIGHT) -> _Item:
    fitted = _fitted(image, width, max_height)
    mask = _rounded(fitted, 12)

    def paint(canvas: Image.Image, _: ImageDraw.ImageDraw, x: int, y: int) -> None:
        canvas.paste(fitted, (x + (width - fitted.width) // 2, y), mask)

    return _Item(fitted.height, paint)


def _chips(labels: Sequence[str], *, width: int) -> _Item:
    font = load_font(21, bold=False)
    pad_x, height, spacing = 14, 38, 10
    rows: list[list[tuple[str, int]]] = [[]]
    used = 0
    for label in labels:
        label = (
            label
            if font.getlength(label) <= width - 2 * pad_x
            else (wrap(label, font, width - 2 * pad_x - 24)[0] + "…")
        )
        chip = round(font.getlength(label)) + 2 * pad_x
        if rows[-1] and used + spacing + chip > width:
            rows.append([])
            used = 0
        used += (spacing if rows[-1] else 0) + chip
        rows[-1].append((label, chip))
    rows = [row for row in rows if row]

    def paint(_: Image.Image, draw: ImageDraw.ImageDraw, x: int, y: int) -> None:
        for number, row in enumerate(rows):
            left = x
            top = y + number * (height + spacing)
            for label, chip in row:
                draw.rounded_rectangle(
                    (left, top, left + chip, top + height), radius=height // 2, fill=CHIP
                )
                draw.text(
                    (left + pad_x, top + height // 2), label, font=font, fill=CHIP_INK, anchor="lm"
                )
                left += chip + spacing

    return _Item(len(rows) * height + max(0, len(rows) - 1) * spacing if rows else 0, paint)


def _card(
    items: Sequence[_Item],
    *,
    fill: tuple[int, int, int] = CARD,
    outline: tuple[int, int, int] | None = None,
) -> Image.Image:
    height = PAD * 2 + sum(item.height for item in items)
    section = Image.new("RGB", (WIDTH, height + GAP), BACKGROUND)
    draw = ImageDraw.Draw(section)
    draw.rounded_rectangle(
        (MARGIN, 0, WIDTH - MARGIN - 1, height - 1),
        radius=RADIUS,
        fill=fill,
        outline=outline,
        width=2 if outline else 0,
    )
    y = PAD
    for item in items:
        item.paint(section, draw, MARGIN + PAD, y)
        y += item.height
    return section


def _heading(text: str) -> list[_Item]:
    return [_text(text, size=30, color=INK, bold=True, leading=1.4), _gap(14)]


# --- sections ------------------------------------------------------------------------------


def _header(content: LongImageContent) -> Image.Image:
    items = [
        _text(
            content.company,
            size=26,
            color=ON_BRAND_SOFT,
            bold=True,
            width=WIDTH - 2 * 44,
            leading=1.4,
        ),
        _gap(6),
        _text(
            content.title, size=42, color=ON_BRAND, bold=True, width=WIDTH - 2 * 44, leading=1.35
        ),
        _gap(8),
        _text(content.subtitle, size=24, color=ON_BRAND_SOFT, width=WIDTH - 2 * 44, leading=1.5),
    ]
    top, bottom = 52, 56
    height = top + sum(item.height for item in items) + bottom
    band = Image.new("RGB", (WIDTH, height + GAP), BACKGROUND)
    draw = ImageDraw.Draw(band)
    draw.rectangle((0, 0, WIDTH, height), fill=BRAND)
    draw.rectangle((0, height - 8, WIDTH, height), fill=BRAND_DARK)
    y = top
    for item in items:
        item.paint(band, draw, 44, y)
        y += item.height
    return band


def _highlights(photos: Sequence[Photo], more: int) -> Image.Image:
    items = _heading("服务前后对比")
    for number, photo in enumerate(photos[:MAX_HIGHLIGHTS]):
        if number:
            items.append(_gap(24))
        if photo.caption:
            items += [_text(photo.caption, size=24, color=MUTED, bold=True, leading=1.5), _gap(8)]
        items.append(_photo(photo.image))
    more += max(0, len(photos) - MAX_HIGHLIGHTS)
    if more:
        items += [
            _gap(16),
            _text(
                f"另有 {more} 处前后对比，请打开服务报告链接查看。",
                size=22,
                color=MUTED,
                leading=1.5,
            ),
        ]
    return _card(items)


def _staff_report(photo: Photo) -> Image.Image:
    items = _heading("今日工作汇报")
    if photo.caption:
        items += [_text(photo.caption, size=24, color=MUTED, leading=1.5), _gap(10)]
    items.append(_photo(photo.image))
    return _card(items)


def _staff(card: StaffCard) -> Image.Image:
    size = 132
    text_x = size + 28 if card.photo is not None else 0
    width = INNER - text_x
    column = [_text(card.name, size=32, color=INK, bold=True, width=width, leading=1.4)]
    if card.years_experience:
        column += [
            _gap(4),
            _text(
                f"从业 {card.years_experience} 年", size=24, color=MUTED, width=width, leading=1.5
            ),
        ]
    if card.certificates:
        column += [_gap(12), _chips(card.certificates, width=width)]
    column_height = sum(item.height for item in column)
    face = None
    if card.photo is not None:
        face = ImageOps.fit(
            card.photo.convert("RGB"), (size, size), Image.Resampling.LANCZOS, centering=(0.5, 0.35)
        )
    height = max(column_height, size if face is not None else 0)

    def paint(canvas: Image.Image, draw: ImageDraw.ImageDraw, x: int, y: int) -> None:
        if face is not None:
            mask = Image.new("L", (size, size), 0)
            ImageDraw.Draw(mask).ellipse((0, 0, size - 1, size - 1), fill=255)
            canvas.paste(face, (x, y + (height - size) // 2), mask)
        top = y + (height - column_height) // 2
        for item in column:
            item.paint(canvas, draw, x + text_x, top)
            top += item.height

    return _card([*_heading("为您服务的是"), _Item(height, paint)])


def _gallery(images: Sequence[Image.Image]) -> Image.Image:
    spacing = 14
    cell_w = (INNER - spacing) // 2
    cell_h = round(cell_w * 3 / 4)
    cells = [
        ImageOps.fit(image.convert("RGB"), (cell_w, cell_h), Image.Resampling.LANCZOS)
        for image in images[:MAX_GALLERY]
    ]
    rows = (len(cells) + 1) // 2
    mask = _rounded(Image.new("L", (cell_w, cell_h)), 10)

    def paint(canvas: Image.Image, _: ImageDraw.ImageDraw, x: int, y: int) -> None:
        for number, cell in enumerate(cells):
            row, col = divmod(number, 2)
            canvas.paste(cell, (x + col * (cell_w + spacing), y + row * (cell_h + spacing)), mask)

    return _card([*_heading("服务过程"), _Item(rows * cell_h + (rows - 1) * spacing, paint)])


def _care(content: LongImageContent) -> Image.Image:
    return _card(
        [*_heading(content.care_title), _text(content.care_text, size=25, color=BODY, leading=1.7)]
    )


def _offer(title: str, text: str) -> Image.Image:
    return _card(
        [
            _text("近期推荐", size=22, color=OFFER_INK, bold=True, leading=1.4),
            _gap(6),
            _text(title, size=32, color=OFFER_INK, bold=True, leading=1.4),
            _gap(10),
            _text(text, size=25, color=BODY, leading=1.7),
        ],
        fill=OFFER_BG,
        outline=OFFER_LINE,
    )


def _footer(content: LongImageContent) -> Image.Image:
    items = [
        _text(content.footer, size=36, color=ON_BRAND, bold=True, width=WIDTH - 88, leading=1.4),
        _gap(8),
        _text(content.company, size=22, color=ON_BRAND_SOFT, width=WIDTH - 88),
    ]
    for note in content.notes:
        items += [_gap(4), _text(note, size=18, color=ON_BRAND_SOFT, width=WIDTH - 88)]
    top = bottom = 44
    height = top + sum(item.height for item in items) + bottom
    band = Image.new("RGB", (WIDTH, height), BRAND)
    draw = ImageDraw.Draw(band)
    y = top
    for item in items:
        item.paint(band, draw, 44, y)
        y += item.height
    return band


def render(content: LongImageContent) -> Image.Image:
    """The whole picture at 750 px wide, before encoding."""
    sections = [_header(content)]
    if content.highlights:
        sections.append(_highlights(content.highlights, content.more_highlights))
    if content.staff_report is not None:
        sections.append(_staff_report(content.staff_report))
    if content.staff is not None:
        sections.append(_staff(content.staff))
    if content.gallery:
        sections.append(_gallery(content.gallery))
    if content.care_text:
        sections.append(_care(content))
    if content.offer_title and content.offer_text:
        sections.append(_offer(content.offer_title, content.offer_text))
    sections.append(_footer(content))
    canvas = Image.new("RGB", (WIDTH, sum(s.height for s in sections)), BACKGROUND)
    y = 0
    for section in sections:
        canvas.paste(section, (0, y))
        y += section.height
    return canvas


# --- encoding ------------------------------------------------------------------------------


def _encode(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    # Baseline, not progressive: some phones' MMS viewers still show progressive JPEGs badly.
    image.save(out, "JPEG", quality=quality, optimize=True, subsampling="4:2:0")
    return out.getvalue()


def encode(image: Image.Image, *, budget: int = DEFAULT_BUDGET) -> LongImage:
    """The best-looking JPEG of ``image`` under ``budget`` bytes: quality first, then size."""
    if budget < 20_000:
        raise ValueError("a long image needs a budget of at least 20 KB")
    frame = image
    while True:
        best: tuple[bytes, int] | None = None
        first = _encode(frame, QUALITIES[0])
        if len(first) <= budget:
            best = (first, QUALITIES[0])
        else:
            low, high = 1, len(QUALITIES) - 1
            while low <= high:  # the highest quality that fits
                middle = (low + high) // 2
                data = _encode(frame, QUALITIES[middle])
                if len(data) <= budget:
                    best, high = (data, QUALITIES[middle]), middle - 1
                else:
                    low = middle + 1
        if best is not None:
            return LongImage(data=best[0], width=frame.width, height=frame.height, quality=best[1])
        width = int(frame.width * SCALE_STEP)
        if width < MIN_WIDTH:
            raise ValueError(f"cannot fit the long image under {budget} bytes")
        height = max(1, round(frame.height * width / frame.width))
        frame = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=2.0)


def build(content: LongImageContent, *, budget: int = DEFAULT_BUDGET) -> LongImage:
    """Draw the report and encode it under ``budget`` bytes."""
    return encode(render(content), budget=budget)
