"""JPEG renditions of a decoded photo: display, MMS (under a byte budget) and thumbnail.

Re-encoding is also the privacy step: the output carries no GPS, XMP, IPTC or maker notes,
only a small EXIF block rebuilt from scratch (capture time, Orientation 1) and, when the
photo had one, its small colour profile (imaging.Decoded.icc_profile).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass

import pyvips
from PIL import Image

# libvips does only the renditions' downscaling, from pixels already decoded and checked
# (it never parses a file here). One thread: a worker process handles one photo at a time
# on a machine whose cores the other worker processes use, and CPU time is what counts;
# no operation cache: each photo's pixels are used once.
pyvips.concurrency_set(1)
pyvips.cache_set_max(0)
# Pillow mode -> (raw layout handed to libvips, its bands). Pillow keeps an RGB pixel in four
# bytes (RGBX), so an RGB frame crosses over as it is stored and comes back as RGBX, which the
# JPEG encoder takes as it takes RGB (the same bytes out).
_VIPS_LAYOUT = {"RGB": ("RGBX", 4), "RGBX": ("RGBX", 4), "L": ("L", 1)}

DISPLAY_EDGE = 2048
THUMB_EDGE = 400
MMS_EDGE = 1280
# The MMS copy's long edge lies between these two: a whole-factor reduction of the frame
# where one lands in the range (a phone's 2016-px frame halves to 1008), else a resize to
# MMS_EDGE. Carriers' guidance for MMS pictures is 640 px wide in portrait and a few hundred
# KB; the halving is a box average, exact for the factor, and ~5x faster than a resize.
MMS_MIN_EDGE = 960
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
    rgb = image if image.mode in ("RGB", "RGBX") else image.convert("RGB")
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
    """Downscale so the long edge is at most ``long_edge``; never upscale. The result has
    the mode of ``image``."""
    shrunk = _fit(image, long_edge)
    if shrunk.mode != image.mode:
        shrunk = shrunk.convert(image.mode)
        shrunk.info = dict(image.info)
    return shrunk


def _fit(image: Image.Image, long_edge: int) -> Image.Image:
    """``fit`` for the renditions' own frames, which are only encoded: an RGB frame may come
    back as RGBX (the same pixels, as libvips hands them over; no conversion)."""
    width, height = image.size
    if max(width, height) <= long_edge:
        return image
    scale = long_edge / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.mode in _VIPS_LAYOUT:
        out = _shrink(image, size)
        if out.size == size:
            out.info = dict(image.info)
            return out
    # Pillow's bilinear resize widens its filter with the scale, so shrinking is properly
    # antialiased; much faster than Lanczos with no visible difference (BENCHMARKS.md).
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _shrink(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """libvips' reduce with a linear kernel widened to the scale (antialiased, like Pillow's
    bilinear), over ``image``'s own pixel memory; the result's pixels are libvips' output
    buffer itself, not a copy.

    Both axes in one ``resize``: reducing only vertically, with the horizontal axis turned
    into a vertical one between two of Pillow's transposes, counts fewer instructions but
    took more time and touched twice the memory (two more frames; BENCHMARKS.md, Photo)."""
    width, height = size
    rawmode, bands = _VIPS_LAYOUT[image.mode]
    with _vips_view(image, rawmode, bands) as source:
        shrunk = source.resize(width / image.width, vscale=height / image.height, kernel="linear")
        if (shrunk.width, shrunk.height) != size:  # libvips rounded a side otherwise
            return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        pixels = shrunk.write_to_memory()
    return Image.frombuffer(rawmode, size, pixels, "raw", rawmode, 0, 1)


class _ArrowArray(ctypes.Structure):
    """The Arrow C data interface's ArrowArray (a stable ABI), as far as it is read here."""


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


@contextlib.contextmanager
def _vips_view(image: Image.Image, rawmode: str, bands: int) -> Iterator[pyvips.Image]:
    """A libvips image over ``image``'s own pixel memory, valid inside the ``with``.

    Pillow exports a frame stored in one block through the Arrow C data interface (Pillow
    keeps the frame alive until the export is released, when the ``with`` ends); copying it
    out with ``tobytes`` costs two passes over the frame (~14 M instructions for a
    1512 x 2016 one). A frame Pillow stores in several blocks (over 16 MB) is copied.
    """
    width, height = image.size
    length = width * height * bands
    try:
        schema, array = image.__arrow_c_array__()
    except (AttributeError, ValueError):
        yield pyvips.Image.new_from_memory(
            image.tobytes("raw", rawmode), width, height, bands, "uchar"
        )
        return
    exported = _ArrowArray.from_address(_capsule_pointer(array, b"arrow_array"))
    # RGB(X) is a fixed-size list of four bytes a pixel, its bytes in the child array; L is
    # a plain byte array. Buffer 0 is the (absent) validity bitmap, buffer 1 the data.
    values = exported.children[0].contents if exported.n_children else exported
    if values.offset or values.length != length or not values.buffers[1]:
        del schema, array
        yield pyvips.Image.new_from_memory(
            image.tobytes("raw", rawmode), width, height, bands, "uchar"
        )
        return
    view = (ctypes.c_ubyte * length).from_address(values.buffers[1])
    try:
        yield pyvips.Image.new_from_memory(view, width, height, bands, "uchar")
    finally:
        del view, schema, array  # the capsule's destructor releases Pillow's export


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
    return _make("display", _fit(image, DISPLAY_EDGE), 85, captured_at, icc_profile=icc_profile)


def thumb(
    image: Image.Image, *, captured_at: dt.datetime | None = None, icc_profile: bytes | None = None
) -> Rendition:
    return _make("thumb", _fit(image, THUMB_EDGE), 80, captured_at, icc_profile=icc_profile)


def standard_set(
    image: Image.Image,
    *,
    captured_at: dt.datetime | None = None,
    budget: int = DEFAULT_MMS_BUDGET,
    icc_profile: bytes | None = None,
) -> list[Rendition]:
    """Display, MMS and thumbnail of one (already watermarked) photo, each made from the
    smallest frame that serves it."""
    frame = mms_frame(image)
    return [
        display(image, captured_at=captured_at, icc_profile=icc_profile),
        mms(frame, captured_at=captured_at, budget=budget, icc_profile=icc_profile),
        thumb(frame, captured_at=captured_at, icc_profile=icc_profile),
    ]


def mms_frame(image: Image.Image) -> Image.Image:
    """The frame the MMS copy starts from: ``image`` itself when it fits MMS_EDGE; else the
    smallest whole-factor reduction that fits, when its long edge is still MMS_MIN_EDGE or
    more; else ``image`` resized to MMS_EDGE."""
    long_edge = max(image.size)
    if long_edge <= MMS_EDGE:
        return image
    factor = -(-long_edge // MMS_EDGE)  # the smallest whole factor that fits MMS_EDGE
    if long_edge // factor >= MMS_MIN_EDGE and image.mode in ("RGB", "RGBX", "L"):
        reduced = image.reduce(factor)
        reduced.info = dict(image.info)
        return reduced
    return _fit(image, MMS_EDGE)


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
    frame = mms_frame(image)
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
        frame = _fit(frame, int(max(frame.size) * 0.8))
