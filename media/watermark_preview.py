"""The watermark as a company would see it, on a sample photo, before the layout is saved.

The settings screen shows the company's watermark (its name, its logo) in a proposed
layout (corner, size, whether the capture time is printed) on a sample photo drawn here, so
nothing is read from disk but the logo and nothing is written. The work is bounded: the
sample is 960 × 720, the scale is the schema's (0.5–2.5), the logo was size-checked when it
was uploaded, and the answer is one JPEG of a few tens of kilobytes.
"""

from __future__ import annotations

import datetime as dt
import functools
import io

from PIL import Image, ImageDraw
from sqlalchemy.orm import Session

from huifang import storage
from huifang.errors import Invalid
from media import watermark
from media.service import format_code, template_for
from tenancy.models import Tenant

SAMPLE_SIZE = (960, 720)
SAMPLE_CODE = "K7Q2A9XMA3"
JPEG_QUALITY = 82


@functools.cache
def _sample() -> Image.Image:
    """A plain room: wall, floor, a window and a cabinet, in the colours of a phone photo."""
    width, height = SAMPLE_SIZE
    image = Image.new("RGB", SAMPLE_SIZE)
    draw = ImageDraw.Draw(image)
    floor = int(height * 0.68)
    for y in range(height):
        if y < floor:
            shade = 226 - y * 30 // floor
            draw.line([(0, y), (width, y)], fill=(shade, shade - 6, shade - 16))
        else:
            shade = 150 - (y - floor) * 40 // (height - floor)
            draw.line([(0, y), (width, y)], fill=(shade + 20, shade - 5, shade - 40))
    draw.rectangle(
        [int(width * 0.58), int(height * 0.12), int(width * 0.88), int(height * 0.48)],
        fill=(196, 222, 240),
        outline=(250, 250, 250),
        width=10,
    )
    draw.rectangle(
        [int(width * 0.10), int(height * 0.40), int(width * 0.42), floor + 30],
        fill=(170, 132, 96),
        outline=(120, 90, 60),
        width=4,
    )
    draw.rectangle(
        [int(width * 0.14), int(height * 0.18), int(width * 0.38), int(height * 0.27)],
        fill=(240, 240, 238),
        outline=(200, 200, 200),
        width=3,
    )
    return image


def _logo(path: str | None) -> Image.Image | None:
    if not path:
        return None
    try:
        with Image.open(io.BytesIO(storage.read_bytes(path))) as raw:
            return raw.copy()
    except Exception:
        return None  # as in media.service.facts_for: a broken logo is left out, not fatal


def render(
    *,
    session: Session,
    tenant: Tenant,
    now: dt.datetime,
    position: str | None = None,
    scale: float | None = None,
    show_capture_time: bool | None = None,
    staff: str = "王师傅",
    service: str = "空调清洗",
    area: str = "客厅",
) -> bytes:
    """A JPEG of the sample photo with the company's watermark; what is not given is the
    saved layout's."""
    saved = template_for(session=session, tenant_id=tenant.id)
    position = position if position is not None else saved.position
    scale = scale if scale is not None else saved.scale
    capture = show_capture_time if show_capture_time is not None else saved.show_capture_time
    if position not in watermark.POSITIONS:
        raise Invalid(f"position must be one of {', '.join(watermark.POSITIONS)}.")
    if not 0.5 <= scale <= 2.5:
        raise Invalid("scale must be between 0.5 and 2.5.")
    facts = watermark.WatermarkFacts(
        company=tenant.name,
        service=service,
        phase="服务后",
        received_at=now,
        timezone=tenant.timezone,
        code=format_code(SAMPLE_CODE),
        staff=staff,
        area=area,
        captured_at=now - dt.timedelta(minutes=3) if capture else None,
        logo=_logo(saved.logo_path),
    )
    style = watermark.WatermarkStyle(position=position, scale=scale)  # type: ignore[arg-type]
    marked = watermark.apply(_sample(), facts, style)
    out = io.BytesIO()
    marked.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()
