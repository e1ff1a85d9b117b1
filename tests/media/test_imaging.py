"""Decoding photos from phones: sniffing, refusals, orientation, colour, capture time."""

from __future__ import annotations

import csv
import datetime as dt
import io
import tracemalloc
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image, ImageChops, ImageStat

from huifang.errors import HuifangError, Invalid, TooLarge, UnsupportedType
from media import imaging
from tests.media.conftest import CORPUS, phone_jpeg

NOW = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.UTC)


def _bytes_of(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _write(tmp_path: Path, data: bytes, name: str = "upload.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


RGB = Image.new("RGB", (64, 48), (10, 120, 200))


@pytest.mark.parametrize(
    ("data", "fmt", "kind"),
    [
        (_bytes_of(RGB, "JPEG"), "jpeg", "photo"),
        (_bytes_of(RGB, "PNG"), "png", "photo"),
        (_bytes_of(RGB, "WEBP"), "webp", "photo"),
        (_bytes_of(RGB, "AVIF"), "avif", "photo"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "heif", "photo"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41", "mp4", "clip"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ", "mov", "clip"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm", "webm", "clip"),
    ],
)
def test_sniff_decides_by_content(data, fmt, kind):
    sniffed = imaging.sniff(data[:64])
    assert (sniffed.format, sniffed.kind) == (fmt, kind)


def test_heic_from_pillow_heif_is_sniffed_as_heif():
    pillow_heif.register_heif_opener()
    assert imaging.sniff(_bytes_of(RGB, "HEIF")[:64]).format == "heif"


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"<!DOCTYPE html><html>", "web page"),
        (b"\xef\xbb\xbf<svg xmlns='http://www.w3.org/2000/svg'>", "SVG"),
        (b"%PDF-1.4", "PDF"),
        (b"#EXTM3U\n#EXT-X-VERSION:3\n", "playlist"),
        (b"GIF89a\x01\x00", "GIF"),
        (b"just some text", "not a photo"),
    ],
)
def test_sniff_refuses_what_is_not_a_photo_or_clip(data, what):
    with pytest.raises(UnsupportedType, match=what):
        imaging.sniff(data)


def test_empty_is_invalid():
    with pytest.raises(Invalid, match="empty"):
        imaging.sniff(b"")


def _corpus():
    index = CORPUS / "INDEX.tsv"
    if not index.exists():
        return []
    with index.open(encoding="utf-8") as fh:
        return [(r["file"], r["verdict"]) for r in csv.DictReader(fh, delimiter="\t")]


UPRIGHT_SIZE = {
    "orientation_rectangle.jpg": (1, 2),
    "avif_rot1mir0.avif": (640, 427),
    "derived_iphone_like_4032x3024_orient6.jpg": (3024, 4032),
    "heif_arrow.heic": (3024, 4032),
}


@pytest.mark.skipif(
    not (CORPUS / "INDEX.tsv").exists(),
    reason="../shared/corpus/images is not beside this checkout (CI has it)",
)
@pytest.mark.parametrize(("name", "verdict"), _corpus())
def test_corpus_conformance(name, verdict):
    """accept → upright RGB; reject → 413/415/422 with a sentence; never anything else."""
    path = CORPUS / name
    try:
        imaging.check_photo(path)
        decoded = imaging.open_photo(path, max_edge=2048, now=NOW)
    except HuifangError as exc:
        assert verdict in ("reject", "either"), f"{name}: {exc.detail}"
        assert exc.status_code in (413, 415, 422)
        assert len(exc.detail) > 20 and exc.detail.endswith(".")
        return
    assert verdict in ("accept", "either"), f"{name} was accepted"
    assert decoded.image.mode == "RGB"
    if name in UPRIGHT_SIZE:
        assert decoded.size == UPRIGHT_SIZE[name]
        w, h = decoded.image.size
        assert (w > h) == (decoded.size[0] > decoded.size[1]) or w == h


@pytest.mark.skipif(not (CORPUS / "hopper.jpg").exists(), reason="corpus not present")
@pytest.mark.parametrize("orientation", range(2, 9))
def test_every_exif_orientation_comes_out_upright(orientation):
    reference = imaging.open_photo(CORPUS / "hopper.jpg").image
    turned = imaging.open_photo(CORPUS / f"hopper_orientation_{orientation}.jpg").image
    difference = ImageStat.Stat(ImageChops.difference(turned, reference)).mean
    assert max(difference) < 12  # a wrong turn or flip differs by 40 or more


def test_phone_portrait_is_decoded_at_reduced_scale_and_upright(tmp_path):
    path = _write(tmp_path, phone_jpeg(size=(4000, 3000), orientation=6), "p.jpg")
    decoded = imaging.open_photo(path, max_edge=1000)
    assert decoded.size == (3000, 4000)
    assert decoded.image.height > decoded.image.width
    assert max(decoded.image.size) < 4000  # draft decoded a smaller copy
    assert max(decoded.image.size) >= 980
    # The red marker stored at the top-left is at the top-right once rotated 90° clockwise.
    w, _ = decoded.image.size
    assert decoded.image.getpixel((w - 5, 5))[0] > 200


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    ramp = Image.linear_gradient("L").resize((256, 64)).convert("I")
    sixteen = ramp.point(lambda v: v * 257).convert("I;16")
    path = _write(tmp_path, _bytes_of(sixteen, "PNG"), "deep.png")
    image = imaging.open_photo(path).image
    mean = ImageStat.Stat(image).mean[0]
    assert 100 < mean < 160  # clipping would make it nearly all white (mean ≈ 254)


def test_alpha_is_flattened_onto_white(tmp_path):
    clear = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    clear.paste((200, 0, 0, 255), (10, 10, 30, 30))
    image = imaging.open_photo(_write(tmp_path, _bytes_of(clear, "PNG"), "a.png")).image
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((20, 20))[0] > 180


def test_cmyk_comes_out_rgb(tmp_path):
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # red ink
    image = imaging.open_photo(_write(tmp_path, _bytes_of(cmyk, "JPEG"), "c.jpg")).image
    r, g, b = image.getpixel((16, 16))
    assert image.mode == "RGB" and r > 200 and g < 80 and b < 80


def test_capture_time_is_read_with_its_offset_and_checked_for_plausibility(tmp_path):
    image = Image.new("RGB", (16, 16))
    exif = Image.Exif()
    exif.get_ifd(0x8769).update({0x9003: "2026:11:20 10:15:00", 0x9011: "+08:00"})
    path = _write(tmp_path, _bytes_of(image, "JPEG", exif=exif), "t.jpg")
    assert imaging.open_photo(path, now=NOW).captured_at == dt.datetime(
        2026, 11, 20, 2, 15, tzinfo=dt.UTC
    )
    for bad in ("1970:01:01 00:00:00", "2031:01:01 00:00:00", "garbage", "0000:00:00 00:00:00"):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = bad
        path = _write(tmp_path, _bytes_of(image, "JPEG", exif=exif), "bad.jpg")
        assert imaging.open_photo(path, now=NOW).captured_at is None, bad


def test_huge_dimensions_are_refused_before_any_pixel_is_allocated(tmp_path):
    tiny = _bytes_of(Image.new("1", (20000, 20000)), "PNG", optimize=True)
    assert len(tiny) < 100_000
    path = _write(tmp_path, tiny, "bomb.png")
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge):
            imaging.check_photo(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024


def test_over_the_pixel_limit_says_how_many_megapixels(tmp_path):
    # 9000 x 8000 = 72 MP: over our limit, under Pillow's own bomb guard.
    path = _write(tmp_path, _bytes_of(Image.new("1", (9000, 8000)), "PNG", optimize=True))
    with pytest.raises(TooLarge, match="72 megapixels"):
        imaging.check_photo(path)


def test_a_truncated_photo_asks_for_the_upload_again(tmp_path):
    data = phone_jpeg(size=(640, 480))
    with pytest.raises(Invalid, match="upload the photo again"):
        imaging.check_photo(_write(tmp_path, data[: len(data) // 2], "cut.jpg"))


def test_a_psd_or_tiff_is_refused_even_when_pillow_could_open_it(tmp_path):
    path = _write(tmp_path, _bytes_of(RGB, "TIFF"), "photo.jpg")
    with pytest.raises(UnsupportedType, match="TIFF"):
        imaging.check_photo(path)


def test_a_png_with_damaged_image_data_is_refused_not_half_decoded(tmp_path):
    import struct
    import zlib

    noise = Image.merge("RGB", [Image.effect_noise((300, 200), 60) for _ in range(3)])
    data = bytearray(_bytes_of(noise, "PNG"))
    start = data.find(b"IDAT") - 4
    length = struct.unpack(">I", data[start : start + 4])[0]
    middle = start + 8 + length // 2
    for i in range(40):
        data[middle + i] ^= 0x5A  # corrupt the compressed pixels, keep the chunk CRC valid
    crc = zlib.crc32(bytes(data[start + 4 : start + 8 + length])) & 0xFFFFFFFF
    data[start + 8 + length : start + 12 + length] = struct.pack(">I", crc)
    with pytest.raises(Invalid):
        imaging.open_photo(_write(tmp_path, bytes(data), "damaged.png"))
