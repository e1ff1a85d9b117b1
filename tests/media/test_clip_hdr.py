"""Clips from iPhones: HDR (HLG) tone-mapped to SDR BT.709 before the watermark, and the
capture time from the container's tags printed on the watermark as on photos.

The HLG clip is made by ffmpeg itself: a known SDR colour converted to the HLG curve and
BT.2020 by zimg, encoded 10-bit and tagged as an iPhone tags it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from PIL import Image

from media import clips, ffmpeg, samples, watermark
from media import service as media_service
from tests.media.conftest import upload

RED = (200, 40, 40)
FACTS = watermark.WatermarkFacts(
    company="洁净家政",
    service="空调清洗",
    phase="服务前",
    received_at=dt.datetime(2026, 12, 6, 3, 0, tzinfo=dt.UTC),
    timezone="Asia/Shanghai",
    code="K7Q2A-9XMA3",
)


def make_hlg_clip(path: Path, *, created: str | None = None) -> Path:
    """A 2 s 10-bit H.264 clip of RED on the HLG curve, BT.2020, tagged as HLG."""
    picture = (
        "color=c=0xc82828:size=640x360:rate=30:d=2,format=gbrp,"
        "zscale=tin=bt709:min=bt709:pin=bt709:t=arib-std-b67:m=bt2020nc:p=bt2020:r=tv,"
        "format=yuv420p10le"
    )
    tags = ["-metadata", f"com.apple.quicktime.creationdate={created}"] if created else []
    ffmpeg.run(
        [
            "-f",
            "lavfi",
            "-i",
            picture,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-profile:v",
            "high10",
            "-pix_fmt",
            "yuv420p10le",
            "-color_primaries",
            "bt2020",
            "-color_trc",
            "arib-std-b67",
            "-colorspace",
            "bt2020nc",
            *tags,
            "-movflags",
            "use_metadata_tags",
            "-f",
            "mov",
            str(path),
        ],
        timeout=60,
    )
    return path


def stream_line(path: Path) -> str:
    text = ffmpeg.run([*ffmpeg.input_args(path, "mp4")], check=False).stderr
    return next(line for line in text.splitlines() if "Video:" in line)


def centre(path: Path, work: Path) -> tuple[int, int, int]:
    out = work / f"{path.stem}-centre.png"
    ffmpeg.run(["-ss", "1", *ffmpeg.input_args(path, "mp4"), "-frames:v", "1", str(out)])
    with Image.open(out) as image:
        pixel = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]


@pytest.fixture(scope="module")
def hlg_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hlg_clip(tmp_path_factory.mktemp("hdr") / "IMG_4021.mov")


def test_the_hlg_fixture_is_what_an_iphone_records(hlg_clip):
    found = ffmpeg.probe(hlg_clip, "mov")
    assert found.hdr
    assert (found.color_space, found.color_primaries, found.color_transfer) == (
        "bt2020nc",
        "bt2020",
        "arib-std-b67",
    )
    text = ffmpeg.run([*ffmpeg.input_args(hlg_clip, "mov")], check=False).stderr
    assert "yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67" in text


def test_an_hlg_clip_comes_out_sdr_bt709_with_its_colours(hlg_clip, tmp_path):
    out = tmp_path / "out.mp4"
    mark = watermark.overlay(clips.output_size((640, 360)), FACTS)
    result = clips.normalize(hlg_clip, "mov", out, max_seconds=60, overlay=mark)
    assert result.tone_mapped
    made = ffmpeg.probe(out, "mp4")
    assert (made.color_space, made.color_primaries, made.color_transfer) == ("bt709",) * 3
    assert not made.hdr
    assert "yuv420p(tv, bt709" in stream_line(out)  # 8-bit, limited range, BT.709
    # The red comes back red: read as BT.709 without tone mapping it is a dull brown
    # (about 107, 46, 32), the "washed out" look.
    red = centre(out, tmp_path)
    assert all(abs(a - b) <= 20 for a, b in zip(red, RED, strict=True)), red


def test_without_zimg_the_clip_is_at_least_labelled_sdr(hlg_clip, tmp_path, monkeypatch):
    """An ffmpeg without zimg (not the bundled one): the matrix is converted and the clip
    labelled BT.709 so players do not apply the HLG curve; the colours are not corrected."""
    monkeypatch.setattr(ffmpeg, "filters", lambda: frozenset({"scale", "overlay"}))
    found = ffmpeg.probe(hlg_clip, "mov")
    assert "zscale" not in clips.tone_map((640, 360), found)
    out = tmp_path / "fallback.mp4"
    clips.normalize(hlg_clip, "mov", out, max_seconds=60, overlay=None)
    made = ffmpeg.probe(out, "mp4")
    assert (made.color_space, made.color_primaries, made.color_transfer) == ("bt709",) * 3


def test_the_capture_time_comes_from_apple_s_tag_with_its_offset(tmp_path):
    path = make_hlg_clip(tmp_path / "tagged.mov", created="2026-12-06T10:15:00+0800")
    assert ffmpeg.probe(path, "mov").created_at == dt.datetime(2026, 12, 6, 2, 15, tzinfo=dt.UTC)
    untagged = tmp_path / "plain.mp4"
    samples.room_clip(untagged, seconds=1, size=(160, 90), seed=9)
    assert ffmpeg.probe(untagged, "mp4").created_at is None


def test_a_clip_s_watermark_and_record_carry_its_capture_time(
    client, session, account, visit, tmp_path, monkeypatch
):
    taken = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=40)).replace(microsecond=0)
    path = tmp_path / "VID_0002.mp4"
    samples.room_clip(
        path,
        seconds=2,
        size=(640, 360),
        seed=5,
        metadata={"creation_time": taken.strftime("%Y-%m-%dT%H:%M:%SZ")},
    )
    drawn: list[watermark.WatermarkFacts] = []
    real = watermark.overlay

    def spy(size, facts, style=watermark.WatermarkStyle()):
        drawn.append(facts)
        return real(size, facts, style)

    monkeypatch.setattr(watermark, "overlay", spy)
    answer = upload(
        client,
        account,
        visit.id,
        path.read_bytes(),
        filename="VID_0002.mp4",
        content_type="video/mp4",
    )
    assert answer.status_code == 202, answer.text
    media = media_service.process_media(session=session, media_id=answer.json()["id"])
    assert media is not None and media.status == "ready", media and media.failure_reason
    assert media.captured_at == taken
    (facts,) = drawn
    local = taken.astimezone(dt.timezone(dt.timedelta(hours=8)))
    assert any(f"拍摄 {local:%H:%M}" in line for line in watermark.lines_for(facts))
    page = client.get(f"/v/{media.verification_code}")
    assert "拍摄时间" in page.text and f"{local:%Y-%m-%d %H:%M}" in page.text
