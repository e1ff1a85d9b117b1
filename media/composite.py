"""Before/after composites: one picture per area, 服务前 beside (or above) 服务后.

The inputs are watermarked display renditions, so each is fitted whole (never cropped): the
watermark at its bottom edge, with the receive time and verification code, stays readable in
the composite.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from media.fonts import load_font

BACKGROUND = (255, 255, 255)
# 服务前 in a neutral dark, 服务后 in a fresh green: the eye reads the result first.
LABEL_COLORS = ((38, 38, 38, 215), (22, 140, 80, 235))
LABEL_SHARE = 0.045  # label text size as a share of one half's short edge
MIN_LABEL_PX = 14


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        flat = Image.new("RGB", image.size, BACKGROUND)
        rgba = image.convert("RGBA")
        flat.paste(rgba, (0, 0), rgba)
        return flat
    return image.convert("RGB")


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _label(
    canvas: Image.Image,
    text: str,
    origin: tuple[int, int],
    px: int,
    color: tuple[int, int, int, int],
) -> None:
    """A bold pill with white text, its top-left corner at ``origin``."""
    font = load_font(px, bold=True)
    left, top, right, bottom = (round(edge) for edge in font.getbbox(text, anchor="lm"))
    pad_x, pad_y = round(px * 0.7), round(px * 0.38)
    width = right - left + 2 * pad_x
    height = bottom - top + 2 * pad_y
    pill = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(pill)
    draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=height // 2, fill=color)
    draw.text((pad_x - left, height // 2), text, font=font, fill=(255, 255, 255, 255), anchor="lm")
    canvas.paste(pill, origin, pill)


def before_after(
    before: Image.Image,
    after: Image.Image,
    *,
    labels: tuple[str, str] = ("服务前", "服务后"),
    max_edge: int = 2048,
) -> Image.Image:
    """One RGB picture of both photos, labelled, its long edge at most ``max_edge``.

    Landscape pairs stand side by side at a common height; if either shot is portrait they are
    stacked (before on top) at a common width. Nothing is cropped and nothing is enlarged.
    """
    if max_edge < 16:
        raise ValueError("max_edge must be at least 16 px")
    first, second = _rgb(before), _rgb(after)
    stacked = any(image.height > image.width for image in (first, second))
    if stacked:
        common = min(first.width, second.width)
        lengths = [round(image.height * common / image.width) for image in (first, second)]
    else:
        common = min(first.height, second.height)
        lengths = [round(image.width * common / image.height) for image in (first, second)]
    gap = max(2, round(common * 0.008))
    long_edge = max(common, sum(lengths) + gap)
    if long_edge > max_edge:
        shrink = max_edge / long_edge
        common = max(1, int(common * shrink))
        lengths = [max(1, int(length * shrink)) for length in lengths]
        gap = max(2, round(common * 0.008))
        # Rounding may leave the sum a pixel or two over; take it from the gap's neighbours.
        while sum(lengths) + gap > max_edge:
            longest = lengths.index(max(lengths))
            lengths[longest] -= 1
    if stacked:
        sizes = [(common, length) for length in lengths]
        canvas = Image.new("RGB", (common, sum(lengths) + gap), BACKGROUND)
        origins = [(0, 0), (0, lengths[0] + gap)]
    else:
        sizes = [(length, common) for length in lengths]
        canvas = Image.new("RGB", (sum(lengths) + gap, common), BACKGROUND)
        origins = [(0, 0), (lengths[0] + gap, 0)]
    for image, size, origin in zip((first, second), sizes, origins, strict=True):
        canvas.paste(_resized(image, size), origin)
    # One label size for both halves, from the smaller one, so the pair reads as a pair.
    px = max(MIN_LABEL_PX, round(min(min(size) for size in sizes) * LABEL_SHARE))
    inset = round(px * 0.6)
    for text, origin, color in zip(labels, origins, LABEL_COLORS, strict=True):
        _label(canvas, text, (origin[0] + inset, origin[1] + inset), px, color)
    return canvas
