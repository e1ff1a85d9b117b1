"""Renditions: sizes, byte budgets, and nothing private left in the files."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from PIL import Image, ImageFilter

from media import imaging, renditions
from tests.media.conftest import CORPUS, phone_jpeg

TAKEN = dt.datetime(2026, 11, 20, 2, 15, tzinfo=dt.UTC)


def _noisy(size=(4000, 3000)) -> Image.Image:
    return Image.effect_noise(size, 80).convert("RGB")


def test_gps_in_no_gps_out_and_only_a_small_exif(tmp_path):
    path = tmp_path / "gps.jpg"
    path.write_bytes(phone_jpeg(gps=True, orientation=6))
    decoded = imaging.open_photo(path, max_edge=2048)
    for made in renditions.standard_set(decoded.image, captured_at=decoded.captured_at):
        image = Image.open(io.BytesIO(made.data))
        exif = image.getexif()
        assert not exif.get_ifd(0x8825), made.kind
        assert exif.get(0x0112) == 1
        # 10:15 in China, written as the same instant in UTC with its offset.
        assert exif.get_ifd(0x8769).get(0x9003) == "2026:11:20 02:15:00"
        assert exif.get_ifd(0x8769).get(0x9011) == "+00:00"
        assert b"http://ns.adobe.com/xap/1.0/" not in made.data
        assert b"Photoshop 3.0" not in made.data  # no IPTC
        assert image.height > image.width


def test_display_is_capped_and_never_upscaled():
    big = renditions.display(Image.new("RGB", (5000, 2500)))
    assert (big.width, big.height) == (2048, 1024)
    small = renditions.display(Image.new("RGB", (640, 480)))
    assert (small.width, small.height) == (640, 480)
    assert renditions.thumb(Image.new("RGB", (3000, 4000))).height == 400


@pytest.mark.parametrize("budget", [300_000, 100_000, 40_000])
def test_mms_fits_the_budget(budget):
    made = renditions.mms(_noisy(), budget=budget)
    assert len(made.data) <= budget
    assert Image.open(io.BytesIO(made.data)).format == "JPEG"


def test_mms_lowers_quality_before_size():
    smooth = _noisy((2048, 1536)).filter(ImageFilter.GaussianBlur(6))
    made = renditions.mms(smooth, budget=150_000)
    assert (made.width, made.height) == (1024, 768)  # size kept (the halved frame), quality found
    noisy = renditions.mms(_noisy((2048, 1536)), budget=60_000)
    assert max(noisy.width, noisy.height) < 1024  # only then smaller


@pytest.mark.parametrize(
    ("size", "expected", "halved"),
    [
        ((1512, 2016), (756, 1008), 2),  # a 12 MP phone photo's frame: halved
        ((2048, 1536), (1024, 768), 2),
        ((3000, 2000), (1000, 667), 3),  # a third still lands in the range
        ((1400, 900), (1280, 823), None),  # half would be 700: resized to 1280 instead
        ((2600, 1300), (1280, 640), None),  # a third would be 867
        ((1280, 720), (1280, 720), None),  # small enough already: itself
        ((800, 600), (800, 600), None),
    ],
)
def test_the_mms_frame_is_a_whole_reduction_when_one_lands_in_range(size, expected, halved):
    image = Image.effect_noise(size, 60).convert("RGB").filter(ImageFilter.BoxBlur(1))
    frame = renditions.mms_frame(image)
    assert frame.size == expected
    assert renditions.MMS_MIN_EDGE <= max(frame.size) <= renditions.MMS_EDGE or frame is image
    if halved:  # a box average over whole blocks of pixels: Pillow's reduce, exactly
        assert frame.tobytes() == image.reduce(halved).tobytes()
    made = renditions.standard_set(image)
    assert [(m.kind, m.width, m.height) for m in made][1] == ("mms", *expected)


def test_an_absurd_budget_is_refused():
    with pytest.raises(ValueError, match="10 KB"):
        renditions.mms(Image.new("RGB", (100, 100)), budget=5_000)


def test_a_small_profile_travels_and_a_large_one_is_converted(tmp_path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "p3.jpg"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(path, "JPEG", icc_profile=srgb)
    decoded = imaging.open_photo(path)
    assert decoded.icc_profile == srgb
    made = renditions.display(decoded.image, icc_profile=decoded.icc_profile)
    assert Image.open(io.BytesIO(made.data)).info.get("icc_profile") == srgb
    big = srgb + b"\x00" * (imaging.KEEP_ICC_BYTES + 1)  # padded: too big to carry
    path.write_bytes(b"")
    Image.new("RGB", (64, 64), (200, 40, 40)).save(path, "JPEG", icc_profile=big)
    assert imaging.open_photo(path).icc_profile is None


@pytest.mark.skipif(not (CORPUS / "heif_xiaomi.heic").exists(), reason="corpus not present")
def test_a_heic_with_a_192_kb_exif_encodes():
    decoded = imaging.open_photo(CORPUS / "heif_xiaomi.heic", max_edge=2048)
    made = renditions.standard_set(decoded.image, captured_at=decoded.captured_at)
    assert {m.kind for m in made} == {"display", "mms", "thumb"}
    assert all(len(m.data) < 2_000_000 for m in made)


def test_a_jpeg_comment_never_reaches_a_rendition(tmp_path):
    path = tmp_path / "commented.jpg"
    Image.new("RGB", (300, 200), (50, 90, 120)).save(path, "JPEG", comment=b"customer 13800138000")
    decoded = imaging.open_photo(path)
    for made in renditions.standard_set(decoded.image):
        assert b"13800138000" not in made.data, made.kind


def _vips_resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """libvips' own two-axis reduce (linear kernel) of an RGB or L frame, copied both ways."""
    import pyvips

    rawmode, bands = ("RGBX", 4) if image.mode == "RGB" else ("L", 1)
    source = pyvips.Image.new_from_memory(
        image.tobytes("raw", rawmode), image.width, image.height, bands, "uchar"
    )
    out = source.resize(size[0] / image.width, vscale=size[1] / image.height, kernel="linear")
    return Image.frombytes(image.mode, size, out.write_to_memory(), "raw", rawmode)


@pytest.mark.parametrize(
    ("mode", "size", "edge"),
    [
        ("RGB", (1512, 2016), 1280),  # the MMS frame of a 12 MP portrait photo
        ("RGB", (960, 1280), 400),  # its thumbnail
        ("RGB", (2016, 1512), 1280),  # landscape
        ("L", (1500, 1001), 640),
        # Over Pillow's 16 MB block: stored in several blocks, so handed over as a copy.
        ("RGB", (2900, 1500), 2048),
    ],
)
def test_fit_is_libvips_resize_over_the_frame_s_own_memory(mode, size, edge):
    # The frame handed to libvips without a copy (or copied, over 16 MB): the same pixels
    # as libvips' resize of a copy of the whole frame.
    image = Image.effect_noise(size, 60).convert(mode).filter(ImageFilter.BoxBlur(1))
    shrunk = renditions.fit(image, edge)
    assert shrunk.mode == mode
    assert max(shrunk.size) == edge
    assert shrunk.tobytes() == _vips_resize(image, shrunk.size).tobytes()
    # The renditions' own frames may come back as RGBX: the same pixels, the same JPEG.
    frame = renditions._fit(image, edge)
    assert frame.convert(mode).tobytes() == shrunk.tobytes()
    if mode == "RGB":
        ours = renditions.encode_jpeg(frame, quality=85, captured_at=None)
        assert ours == renditions.encode_jpeg(shrunk, quality=85, captured_at=None)
