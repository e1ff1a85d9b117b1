"""Opening photos from phones safely: sniff by content, refuse bombs, decode one frame, upright.

Every failure becomes a ``huifang.errors`` refusal with a sentence for the person uploading:
413 for too large, 415 for not a photo we take, 422 for damaged. Nothing else escapes.

Pixel limit: 64,000,000 pixels (MAX_PIXELS), checked from the header before any decoding.
That covers every normal phone mode (12, 48 and 50 MP); the 108 and 200 MP modes are refused
with a sentence saying which mode to use, because decoding them needs 300–600 MB per worker.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import math
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast
from xml.etree.ElementTree import ParseError

import pillow_heif
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from huifang.errors import Invalid, TooLarge, UnsupportedType

pillow_heif.register_heif_opener()  # HEIC/HEIF; Pillow itself reads AVIF
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut-off upload is an error, never grey pixels

MAX_PIXELS = 64_000_000
DRAFT_SLACK = 0.98
# Pillow's own bomb check stays on, well above ours, for anything that reaches a decoder
# unchecked; below it our own check answers with the photo's megapixels and what to do.
Image.MAX_IMAGE_PIXELS = 4 * MAX_PIXELS

ALLOWED = {"JPEG", "MPO", "PNG", "WEBP", "HEIF", "AVIF"}
OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF", "AVIF")  # Pillow's JPEG plugin also opens MPO
ACCEPTED_WORDS = "JPEG, PNG, WebP, HEIC or AVIF photos, or MP4, MOV or WebM clips"
DECODER_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    zlib.error,
    ParseError,
    IndexError,
    KeyError,
    TypeError,
)

ORIENTATION = 0x0112
EXIF_IFD = 0x8769
DATETIME_ORIGINAL = 0x9003
OFFSET_TIME_ORIGINAL = 0x9011


@dataclass(frozen=True)
class Sniffed:
    kind: Literal["photo", "clip"]
    format: str
    mime: str
    ext: str


_HEIF_BRANDS = {
    b"heic",
    b"heix",
    b"hevc",
    b"hevx",
    b"heim",
    b"heis",
    b"hevm",
    b"hevs",
    b"mif1",
    b"msf1",
    b"mif2",
}
_AVIF_BRANDS = {b"avif", b"avis"}
_MOV_BRANDS = {b"qt  "}
_MP4_BRANDS = {
    b"isom",
    b"iso2",
    b"iso3",
    b"iso4",
    b"iso5",
    b"iso6",
    b"mp41",
    b"mp42",
    b"avc1",
    b"dash",
    b"M4V ",
    b"M4VH",
    b"M4VP",
    b"MSNV",
    b"3gp4",
    b"3gp5",
    b"3gp6",
    b"3g2a",
    b"mmp4",
    b"f4v ",
}

PHOTO = {
    "jpeg": Sniffed("photo", "jpeg", "image/jpeg", ".jpg"),
    "png": Sniffed("photo", "png", "image/png", ".png"),
    "webp": Sniffed("photo", "webp", "image/webp", ".webp"),
    "heif": Sniffed("photo", "heif", "image/heic", ".heic"),
    "avif": Sniffed("photo", "avif", "image/avif", ".avif"),
}
CLIP = {
    "mp4": Sniffed("clip", "mp4", "video/mp4", ".mp4"),
    "mov": Sniffed("clip", "mov", "video/quicktime", ".mov"),
    "webm": Sniffed("clip", "webm", "video/webm", ".webm"),
}


def _refuse_type(what: str | None = None) -> UnsupportedType:
    lead = f"This is {what}, not a photo or clip" if what else "This file is not a photo or clip"
    return UnsupportedType(f"{lead} we can take; send {ACCEPTED_WORDS}.")


def sniff(head: bytes) -> Sniffed:
    """What the file is, from its first bytes alone."""
    if not head:
        raise Invalid("The file is empty; please choose the photo again and upload it.")
    if head.startswith(b"\xff\xd8\xff"):
        return PHOTO["jpeg"]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PHOTO["png"]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return PHOTO["webp"]
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return CLIP["webm"]
    if head[4:8] == b"ftyp" and len(head) >= 12:
        box = struct.unpack(">I", head[:4])[0]
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(box, len(head)) - 3, 4)}
        major = head[8:12]
        if major in _AVIF_BRANDS:
            return PHOTO["avif"]
        if major in _HEIF_BRANDS:
            return PHOTO["heif"]
        if major in _MOV_BRANDS:
            return CLIP["mov"]
        if major in _MP4_BRANDS:
            return CLIP["mp4"]
        if brands & _AVIF_BRANDS:
            return PHOTO["avif"]
        if brands & _HEIF_BRANDS:
            return PHOTO["heif"]
        if brands & _MP4_BRANDS:
            return CLIP["mp4"]
        raise _refuse_type("an MP4-family file of a kind we do not know")
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    for marker, what in (
        (b"<!doctype html", "a web page"),
        (b"<html", "a web page"),
        (b"<svg", "an SVG drawing"),
        (b"<?xml", "an XML document"),
        (b"%pdf", "a PDF document"),
        (b"#extm3u", "a playlist"),
        (b"gif8", "a GIF"),
        (b"bm", "a BMP image"),
        (b"ii*\x00", "a TIFF image"),
        (b"mm\x00*", "a TIFF image"),
        (b"8bps", "a Photoshop file"),
    ):
        if text.startswith(marker):
            raise _refuse_type(what)
    raise _refuse_type()


@dataclass
class Decoded:
    image: Image.Image
    size: tuple[int, int]
    format: str
    captured_at: dt.datetime | None
    # A small RGB profile (Display P3 from iPhones, ~0.5 KB) the renditions carry instead of
    # converting: colour-managed viewers show it right, and converting is the slow part of
    # a photo's processing (BENCHMARKS.md, photo ingest).
    icc_profile: bytes | None = None


KEEP_ICC_BYTES = 8 * 1024  # larger profiles (printers, scanners) are converted to sRGB


def _open(path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow's bomb *warning* is an error here: size is decided by MAX_PIXELS alone.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only our formats' parsers ever see the bytes: a BMP or PSD bomb never reaches one.
            image = Image.open(path, formats=OPEN_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLarge(
            "This photo has far too many pixels to be a real photo; "
            "take it again with the phone's normal camera mode."
        ) from None
    except DECODER_ERRORS as exc:
        raise _damaged(exc) from None
    if image.format not in ALLOWED:
        image.close()
        raise _refuse_type(f"a {image.format} image" if image.format else None)
    width, height = image.size
    if width < 1 or height < 1:
        image.close()
        raise Invalid("This photo has no pixels; please take it again.")
    if width * height > MAX_PIXELS:
        image.close()
        mp = width * height / 1_000_000
        raise TooLarge(
            f"This photo is {mp:.0f} megapixels, more than the {MAX_PIXELS // 1_000_000}"
            " we accept; set the camera to its 12 MP or 50 MP mode and upload it again."
        )
    return image


def _damaged(exc: BaseException) -> Invalid | TooLarge | UnsupportedType:
    text = str(exc).lower()
    if "truncat" in text or "broken data stream" in text or isinstance(exc, EOFError):
        return Invalid("The upload was cut off before the end; please upload the photo again.")
    if isinstance(exc, UnidentifiedImageError):
        return _refuse_type()
    if "decompressed data too large" in text or "too large" in text:
        return TooLarge(
            "This file hides far more data than a photo holds; "
            "send the photo straight from the phone's camera."
        )
    return Invalid(
        "This photo is damaged and cannot be read; please take it again or send another copy."
    )


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ORIENTATION, 1)
        return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1
    except DECODER_ERRORS:
        return 1


def _captured_at(image: Image.Image, now: dt.datetime | None) -> dt.datetime | None:
    """The capture time the phone recorded, when it is readable and plausible."""
    try:
        exif_ifd = image.getexif().get_ifd(EXIF_IFD)
        raw = exif_ifd.get(DATETIME_ORIGINAL)
        offset = exif_ifd.get(OFFSET_TIME_ORIGINAL)
        if not isinstance(raw, str):
            return None
        if isinstance(offset, str) and len(offset.strip("\x00 ")) == 6:
            sign = -1 if offset.startswith("-") else 1
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            zone = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
        else:
            # Phones without an offset write local time; ours are in China by default.
            zone = dt.timezone(dt.timedelta(hours=8))
        aware = (
            dt.datetime.strptime(raw.strip("\x00 ")[:19] + "+0000", "%Y:%m:%d %H:%M:%S%z")
            .replace(tzinfo=zone)
            .astimezone(dt.UTC)
        )
    except (*DECODER_ERRORS, ArithmeticError):
        return None
    reference = now or dt.datetime.now(dt.UTC)
    if aware.year < 2000 or aware > reference + dt.timedelta(days=1):
        return None
    return aware


def _keepable_icc(image: Image.Image) -> bytes | None:
    icc = image.info.get("icc_profile")
    if image.mode == "RGB" and isinstance(icc, bytes) and len(icc) <= KEEP_ICC_BYTES:
        return icc
    return None


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB without alpha: 16-bit scaled, alpha on white, CMYK/palette converted, and a
    profile that is not kept (see Decoded.icc_profile) converted to sRGB."""
    icc = None if _keepable_icc(image) else image.info.get("icc_profile")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _sixteen_to_eight(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "PA", "La"):
        image = image.convert("RGBA")
    if image.mode == "RGBA" or image.mode == "RGBa":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGB"), mask=image.getchannel("A"))
        image = background
    if icc and image.mode in ("RGB", "CMYK", "L"):
        try:
            transform = _to_srgb(icc, image.mode)
            if image.mode == "RGB":
                ImageCms.applyTransform(image, transform, inPlace=True)
            else:
                image = ImageCms.applyTransform(image, transform) or image
        except (ImageCms.PyCMSError, *DECODER_ERRORS):
            pass  # a broken profile: fall back to the plain conversion below
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


@functools.lru_cache(maxsize=32)
def _to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform:
    """A cached transform from an embedded profile (Display P3 on iPhones…) to sRGB."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    # NOCACHE: the fastest for whole photos (no per-pixel cache to maintain).
    return ImageCms.buildTransform(
        source, ImageCms.createProfile("sRGB"), mode, "RGB", flags=ImageCms.Flags.NOCACHE
    )


def _sixteen_to_eight(image: Image.Image) -> Image.Image:
    """Scale by the real range of the data: Pillow's own convert clips 16-bit to 255."""
    as_int = image.convert("I")
    low, high = cast(tuple[float, float], as_int.getextrema())
    if high <= 255 and low >= 0:
        return as_int.point(lambda v: v).convert("L")  # 8-bit values in a 16-bit container
    top = 65535 if high > 4095 else 4095 if high > 1023 else 1023
    return as_int.point(lambda v: v * 255 / top).convert("L")


def _reduce(image: Image.Image, max_edge: int | None) -> Image.Image:
    if max_edge and max(image.size) > max_edge * 2:
        factor = max(image.size) // max_edge
        image = image.reduce(factor)
    return image


def open_photo(
    path: Path, *, max_edge: int | None = None, now: dt.datetime | None = None
) -> Decoded:
    """Decode the first frame, upright, as 8-bit RGB; reduced towards ``max_edge`` when given."""
    image = _open(path)
    try:
        fmt = str(image.format)
        stored_w, stored_h = image.size
        if max_edge and fmt in ("JPEG", "MPO"):
            # Ask libjpeg for a smaller decode (1/2, 1/4, 1/8) whose long edge still covers
            # max_edge, within 2% (a 4032-px phone photo then decodes at 2016 px, four times
            # less work), proportioned as stored: a portrait photo is stored landscape.
            scale = max_edge * DRAFT_SLACK / max(stored_w, stored_h)
            if scale < 1:
                image.draft("RGB", (math.ceil(stored_w * scale), math.ceil(stored_h * scale)))
        try:
            _load(image, fmt)
        except Image.DecompressionBombError:
            raise TooLarge(
                "This photo has far too many pixels to be a real photo; "
                "take it again with the phone's normal camera mode."
            ) from None
        except DECODER_ERRORS as exc:
            raise _damaged(exc) from None
        # Metadata only after the pixels: for PNG, reading it loads the image, and a failed
        # load tried a second time would "succeed" with half the picture.
        orientation = _orientation(image)
        captured = _captured_at(image, now)
        keep_icc = _keepable_icc(image)
        frame = _reduce(image, max_edge)
        try:
            frame = _to_rgb(frame)
        except DECODER_ERRORS as exc:
            raise _damaged(exc) from None
        # HEIF and AVIF come upright from their decoders (libheif applies irot/imir); the
        # EXIF tag they still carry must not rotate them twice.
        if fmt not in ("HEIF",) and orientation != 1:
            frame = _transpose(frame, orientation, image)
        if frame is image:
            frame = image.copy()  # the file handle is closed below; keep the pixels
        upright = (
            (stored_h, stored_w)
            if orientation in (5, 6, 7, 8) and fmt != "HEIF"
            else (stored_w, stored_h)
        )
        return Decoded(
            image=frame, size=upright, format=fmt, captured_at=captured, icc_profile=keep_icc
        )
    finally:
        image.close()


def _load(image: Image.Image, fmt: str) -> None:
    try:
        image.load()
    except OSError as exc:
        # A PNG whose compressed stream carries junk after the complete image (the corpus's
        # broken_data_stream.png, which the team's INDEX accepts) fails only at the end;
        # the pixels are all there. Any other decoder error ("broken data stream",
        # truncation) stays a refusal.
        if fmt == "PNG" and "unrecognized data stream contents" in str(exc):
            image.load()
        else:
            raise


def _transpose(frame: Image.Image, orientation: int, source: Image.Image) -> Image.Image:
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    if method is None:
        return frame
    try:
        return frame.transpose(method)
    except DECODER_ERRORS:
        return frame  # never fail an upload over orientation


LOGO_EDGE = 512


def open_logo(path: Path) -> Image.Image:
    """A company logo as RGBA (its transparency kept), at most 512 px, or a 4xx refusal."""
    with path.open("rb") as fh:
        sniffed = sniff(fh.read(64))
    if sniffed.kind != "photo":
        raise _refuse_type("a video")
    image = _open(path)
    try:
        image.load()
        logo = image.convert("RGBA")
    except DECODER_ERRORS as exc:
        raise _damaged(exc) from None
    finally:
        image.close()
    logo.thumbnail((LOGO_EDGE, LOGO_EDGE))
    return logo


def check_photo(path: Path) -> Sniffed:
    """Quick checks at upload time: content type, header, pixel limit, and complete data."""
    with path.open("rb") as fh:
        sniffed = sniff(fh.read(64))
    if sniffed.kind != "photo":
        return sniffed
    open_photo(path, max_edge=256)
    return sniffed
