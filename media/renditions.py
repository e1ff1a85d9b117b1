"""JPEG renditions of a decoded photo: display, MMS (under a byte budget) and thumbnail.

Re-encoding is also the privacy step: the output carries no GPS, XMP, IPTC or maker notes,
only a small EXIF block rebuilt from scratch (capture time, Orientation 1) and, when the
photo had one, its small colour profile (imaging.Decoded.icc_profile).
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

import pyvips
from PIL import Image

# libvips does only the renditions' downscaling, from pixels already decoded and checked
# (it never parses a file here). One thread: a worker process handles one photo at a time
# on a machine whose cores the other worker processes use, and CPU time is what counts;
# no operation cache: each photo's pixels are used once.
pyvips.concurrency_set(1)
pyvips.cache_set_max(0)
# Pillow mode -> (raw layout handed to libvips, its bands)
_VIPS_LAYOUT = {"RGB": ("RGBX", 4), "L": ("L", 1)}

DISPLAY_EDGE = 2048
THUMB_EDGE = 400
MMS_EDGE = 1280
DEFAULT_MMS_BUDGET = 300_000
MMS_QUALITIES = (85, 78, 70, 62, 55, 48, 40)  # searched before the size is reduced


@dataclass(frozen=True)
class Rendition:
    kind: str
    data: bytes
    width: int
    height: int
    content_type: str = "image/jpeg"


def _exif(captured_at: dt.datetime | None) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 1
    if captured_at is not None:
        offset = captured_at.utcoffset() or dt.timedelta(0)
        minutes = int(offset.total_seconds() // 60)
        sign = "-" if minutes < 0 else "+"
        exif_ifd = exif.get_ifd(0x8769)
        exif_ifd[0x9003] = captured_at.strftime("%Y:%m:%d %H:%M:%S")
        exif_ifd[0x9011] = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return exif.tobytes()


def encode_jpeg(
    image: Image.Image,
    *,
    quality: int,
    captured_at: dt.datetime | None,
    optimize: bool = False,
    icc_profile: bytes | None = None,
) -> bytes:
    """Baseline JPEG with a rebuilt EXIF and nothing else.

    ``optimize`` (Huffman tables fitted to the image) saves 5–10% of the bytes for about
    30% more time: worth it where bytes are counted (MMS), not for the display copy.
    """
    out = io.BytesIO()
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    extra = {"icc_profile": icc_profile} if icc_profile else {}
    # comment=b"": Pillow would otherwise copy the source's JPEG comment into the output.
    rgb.save(
        out,
        "JPEG",
        quality=quality,
        optimize=optimize,
        exif=_exif(captured_at),
        subsampling="4:2:0" if quality < 90 else "4:4:4",
        comment=b"",
        **extra,
    )
    return out.getvalue()


def fit(image: Image.Image, long_edge: int) -> Image.Image:
    """Downscale so the long edge is at most ``long_edge``; never upscale."""
    width, height = image.size
    if max(width, height) <= long_edge:
        return image
    scale = long_edge / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    layout = _VIPS_LAYOUT.get(image.mode)
    if layout:
        # libvips' reduce with a linear kernel widened to the scale (antialiased, like
        # Pillow's bilinear below) takes about half Pillow's CPU time (BENCHMARKS.md).
        # An RGB frame crosses over as Pillow stores it, four bytes a pixel (RGBX): copying
        # those rows costs about half of packing them to three bytes and unpacking them
        # back, and the fourth band is dropped on the way back.
        rawmode, bands = layout
        pixels = image.tobytes("raw", rawmode)
        source = pyvips.Image.new_from_memory(pixels, width, height, bands, "uchar")
        shrunk = source.resize(size[0] / width, vscale=size[1] / height, kernel="linear")
        if (shrunk.width, shrunk.height) == size:
            out = Image.frombytes(image.mode, size, shrunk.write_to_memory(), "raw", rawmode)
            out.info = dict(image.info)
            return out
    # Pillow's bilinear resize widens its filter with the scale, so shrinking is properly
    # antialiased; much faster than Lanczos with no visible difference (BENCHMARKS.md).
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _make(
    kind: str,
    image: Image.Image,
    quality: int,
    captured_at: dt.datetime | None,
    *,
    optimize: bool = False,
    icc_profile: bytes | None = None,
) -> Rendition:
    data = encode_jpeg(
        image, quality=quality, captured_at=captured_at, optimize=optimize, icc_profile=icc_profile
    )
    return Rendition(kind=kind, data=data, width=image.width, height=image.height)


def display(
    image: Image.Image, *, captured_at: dt.datetime | None = None, icc_profile: bytes | None = None
) -> Rendition:
    return _make("display", fit(image, DISPLAY_EDGE), 85, captured_at, icc_profile=icc_profile)


def thumb(
    image: Image.Image, *, captured_at: dt.datetime | None = None, icc_profile: bytes | None = None
) -> Rendition:
    return _make("thumb", fit(image, THUMB_EDGE), 80, captured_at, icc_profile=icc_profile)


def standard_set(
    image: Image.Image,
    *,
    captured_at: dt.datetime | None = None,
    budget: int = DEFAULT_MMS_BUDGET,
    icc_profile: bytes | None = None,
) -> list[Rendition]:
    """Display, MMS and thumbnail of one (already watermarked) photo, each made from the
    smallest frame that serves it."""
    frame = fit(image, MMS_EDGE)
    return [
        display(image, captured_at=captured_at, icc_profile=icc_profile),
        mms(frame, captured_at=captured_at, budget=budget, icc_profile=icc_profile),
        thumb(frame, captured_at=captured_at, icc_profile=icc_profile),
    ]


def mms(
    image: Image.Image,
    *,
    captured_at: dt.datetime | None = None,
    budget: int = DEFAULT_MMS_BUDGET,
    icc_profile: bytes | None = None,
) -> Rendition:
    """The largest-looking JPEG under ``budget`` bytes: quality first, then size."""
    if budget < 10_000:
        raise ValueError("an MMS budget under 10 KB cannot hold a photo")
    frame = fit(image, MMS_EDGE)
    while True:
        # Most photos fit at the best quality: one encode. Otherwise binary search the ladder.
        first = _make(
            "mms", frame, MMS_QUALITIES[0], captured_at, optimize=True, icc_profile=icc_profile
        )
        if len(first.data) <= budget:
            return first
        low, high = 1, len(MMS_QUALITIES) - 1
        best: Rendition | None = None
        while low <= high:
            middle = (low + high) // 2
            candidate = _make(
                "mms",
                frame,
                MMS_QUALITIES[middle],
                captured_at,
                optimize=True,
                icc_profile=icc_profile,
            )
            if len(candidate.data) <= budget:
                best, high = candidate, middle - 1
            else:
                low = middle + 1
        if best is not None:
            return best
        frame = fit(frame, int(max(frame.size) * 0.8))
