"""Sample visit photos for the demo: a stained room before and the same room after."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter


def room_photo(*, clean: bool, seed: int, size: tuple[int, int] = (1600, 1200)) -> bytes:
    """A JPEG of a simple room: wall, floor, window; stains and dust when not clean."""
    rng = random.Random(seed)  # noqa: S311  (drawing stains, not secrets)
    width, height = size
    image = Image.new("RGB", size, (236, 230, 214) if clean else (205, 193, 168))
    draw = ImageDraw.Draw(image)
    floor_top = int(height * 0.68)
    draw.rectangle((0, floor_top, width, height), fill=(168, 122, 84) if clean else (130, 96, 70))
    draw.rectangle((int(width * 0.58), int(height * 0.12), int(width * 0.9), int(height * 0.5)),
                   fill=(170, 205, 235), outline=(250, 250, 250), width=14)
    draw.rectangle((int(width * 0.1), int(height * 0.45), int(width * 0.45), floor_top + 40),
                   fill=(120, 120, 130))  # a sofa
    if not clean:
        for _ in range(60):
            x, y = rng.randrange(width), rng.randrange(height)
            r = rng.randrange(8, 60)
            shade = rng.randrange(70, 140)
            draw.ellipse((x - r, y - r // 2, x + r, y + r // 2), fill=(shade, shade - 15, 40))
    image = image.filter(ImageFilter.GaussianBlur(2))
    out = io.BytesIO()
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2026:11:20 10:15:00"
    image.save(out, "JPEG", quality=88, exif=exif)
    return out.getvalue()
