"""The recap's shape and sound, measured on real ffmpeg output: portrait visits give 9:16,
mixed visits the majority's orientation with the others fitted whole (aspect kept), the
clips' own sound brought to the loudness target, the end card only with a public address.

imageio-ffmpeg ships no ffprobe; ``media.ffmpeg.probe`` reads the same stream facts from
``ffmpeg -i``, and ffmpeg's ``ebur128`` filter measures loudness as ffprobe would report it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from PIL import Image

from huifang import storage
from huifang.settings import Settings
from media import ffmpeg
from reports import recap_video as recap
from reports import recaps

TITLE = recap.title_card(company="洁家家政", service="空调清洗", day=recap.dt.date(2026, 12, 6))
END = recap.end_card(booking_url="https://hf.example.cn/b/Ab3dE9")
ORANGE, TEAL = (230, 140, 30), (30, 160, 150)


def make_clip(
    path: Path,
    *,
    size: tuple[int, int],
    color: tuple[int, int, int],
    seconds: float = 3.0,
    volume: float | None = 1.0,
) -> Path:
    """A flat-coloured H.264 clip of ``size`` with a 440 Hz tone at ``volume`` (None: silent)."""
    width, height = size
    hexed = "0x" + "".join(f"{c:02x}" for c in color)
    args = ["-f", "lavfi", "-i", f"color=c={hexed}:size={width}x{height}:rate=30:d={seconds}"]
    if volume is not None:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:d={seconds}"]
        args += ["-af", f"volume={volume}", "-c:a", "aac", "-b:a", "96k"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-shortest"]
    ffmpeg.run([*args, str(path)], timeout=60)
    return path


def segment(path: Path, phase: str, seconds: float = 3.0) -> recap.Segment:
    return recap.Segment(kind="clip", path=path, container="mp4", duration=seconds, phase=phase)


def job(*segments: recap.Segment) -> recaps.RecapJob:
    """A recap job as the worker gets it: its segments are stored files, named by key."""
    stored = []
    for number, one in enumerate(segments):
        key = f"renditions/recap-shape/{number}-{one.path.name}"
        storage.put_file(one.path, key)
        stored.append(dataclasses.replace(one, path=Path(key)))
    return recaps.RecapJob(
        report_id=1, fingerprint="x", segments=tuple(stored), title=TITLE, end=END
    )


def integrated_loudness(video: Path) -> float:
    """The integrated loudness (LUFS) of ``video``'s sound, from ffmpeg's EBU R128 scanner."""
    done = ffmpeg.run([*ffmpeg.input_args(video, "mp4"), "-af", "ebur128", "-f", "null", "-"])
    summary = done.stderr[done.stderr.rfind("Summary:") :]
    found = re.search(r"I:\s+(-?\d+(?:\.\d+)?) LUFS", summary)
    assert found, summary
    return float(found.group(1))


def content_box(frame: Image.Image) -> tuple[int, int, int, int]:
    """The box of what is not black padding in ``frame``."""
    mask = frame.convert("L").point(lambda v: 255 if v > 40 else 0)
    box = mask.getbbox()
    assert box is not None
    return box


def frame_at(video: Path, seconds: float, work: Path) -> Image.Image:
    out = work / f"frame-{seconds:.2f}.png"
    ffmpeg.run(
        ["-ss", f"{seconds:.3f}", *ffmpeg.input_args(video, "mp4"), "-frames:v", "1", str(out)]
    )
    with Image.open(out) as image:
        return image.convert("RGB")


def middle_of(plan: recap.RecapPlan, index: int) -> float:
    before = sum(shot.frames for shot in plan.shots[:index])
    return (before + plan.shots[index].frames / 2) / plan.fps


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("shape")
    return {
        # Portrait as the normalized clips are: upright 9:16 pixels.
        "tall-quiet": make_clip(work / "tq.mp4", size=(360, 640), color=ORANGE, volume=0.03),
        "tall-loud": make_clip(work / "tl.mp4", size=(360, 640), color=ORANGE, volume=3.0),
        "wide": make_clip(work / "w.mp4", size=(640, 360), color=TEAL),
        "wide-2": make_clip(work / "w2.mp4", size=(640, 360), color=TEAL, volume=0.5),
        "tall-silent": make_clip(work / "ts.mp4", size=(360, 640), color=ORANGE, volume=None),
        "wide-silent": make_clip(work / "ws.mp4", size=(640, 360), color=TEAL, volume=None),
    }


def test_two_portrait_clips_give_a_720x1280_recap_at_the_loudness_target(inputs, tmp_path):
    made = recaps.make(
        job(segment(inputs["tall-quiet"], "before"), segment(inputs["tall-loud"], "after")),
        workdir=tmp_path,
    )
    probed = ffmpeg.probe(made.video, "mp4")
    assert probed.display_size == (720, 1280) and probed.rotation == 0
    assert (probed.color_space, probed.color_primaries, probed.color_transfer) == ("bt709",) * 3
    assert probed.audio_codec == "aac"
    assert made.duration <= recap.MAX_SECONDS
    assert made.video.stat().st_size <= recaps.RECAP_BUDGET
    # One clip at -35 LUFS and one clipping: the recap plays at the target all the same.
    measured = integrated_loudness(made.video)
    print(f"recap loudness: {measured:.1f} LUFS (target {recap.LOUDNESS_TARGET:g})")
    assert abs(measured - recap.LOUDNESS_TARGET) <= 2.0


def test_a_mixed_visit_takes_the_majority_and_fits_the_rest_without_distortion(inputs, tmp_path):
    plan = recap.plan(
        [
            segment(inputs["tall-quiet"], "before"),
            segment(inputs["wide"], "during"),
            segment(inputs["tall-loud"], "after"),
        ],
        title=TITLE,
        end=END,
    )
    assert plan.orientation == "portrait"
    result = recap.render(plan, tmp_path / "mixed.mp4", budget_bytes=recaps.RECAP_BUDGET)
    assert (result.width, result.height) == ffmpeg.probe(result.path, "mp4").display_size
    assert result.height > result.width
    # The landscape clip, letterboxed: its content keeps 16:9 within 1%, full width.
    left, top, right, bottom = content_box(frame_at(result.path, middle_of(plan, 2), tmp_path))
    assert abs((right - left) / (bottom - top) / (640 / 360) - 1) <= 0.01
    assert right - left >= result.width - 2
    # A portrait clip fills the portrait frame.
    assert content_box(frame_at(result.path, middle_of(plan, 1), tmp_path)) == (
        0,
        0,
        result.width,
        result.height,
    )


def test_a_mostly_landscape_visit_pillarboxes_its_portrait_clip(inputs, tmp_path):
    plan = recap.plan(
        [
            segment(inputs["wide"], "before"),
            segment(inputs["tall-silent"], "during"),
            segment(inputs["wide-2"], "after"),
        ],
        title=TITLE,
        end=END,
    )
    assert plan.orientation == "landscape"
    result = recap.render(plan, tmp_path / "wide.mp4", budget_bytes=recaps.RECAP_BUDGET)
    assert result.width > result.height
    left, top, right, bottom = content_box(frame_at(result.path, middle_of(plan, 2), tmp_path))
    assert abs((right - left) / (bottom - top) / (360 / 640) - 1) <= 0.01
    assert bottom - top >= result.height - 2
    # A silent clip among sounding ones: the sound track is still at the target.
    assert abs(integrated_loudness(result.path) - recap.LOUDNESS_TARGET) <= 2.0


def test_clips_without_sound_give_a_recap_without_a_sound_track(inputs, tmp_path):
    plan = recap.plan(
        [segment(inputs["tall-silent"], "before"), segment(inputs["wide-silent"], "after")],
        title=TITLE,
        end=END,
    )
    assert not recap.has_sound(plan) and recap.loudness(plan) is None
    result = recap.render(plan, tmp_path / "silent.mp4", budget_bytes=recaps.RECAP_BUDGET)
    assert ffmpeg.probe(result.path, "mp4").audio_codec is None
    assert result.loudness is None


@pytest.mark.parametrize(
    ("public_url", "shown"),
    [
        ("http://localhost:8000", None),
        ("http://127.0.0.1:8000", None),
        ("http://[::1]:8000", None),
        ("http://huifang.local", None),
        ("https://hf.example.cn/", "https://hf.example.cn"),
        ("http://192.168.1.20:8000", "http://192.168.1.20:8000"),
    ],
)
def test_only_an_address_customers_can_reach_is_public(public_url, shown):
    assert Settings(public_url=public_url).public_address == shown


def test_the_end_card_leaves_out_an_unreachable_address():
    assert recap.end_card(booking_url=None).lines == ["预约下次服务", "回复1预约"]
    assert "https://hf.example.cn/b/Ab3dE9" in END.lines


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [("http://127.0.0.1:8000", None), ("https://hf.example.cn", "https://hf.example.cn/b/")],
)
def test_a_report_s_end_card_shows_the_public_booking_address_only(
    client, session, account, visit, monkeypatch, tmp_path, public_url, expected
):
    from huifang.settings import get_settings
    from media import samples
    from reports import service as reports
    from tests.reports.test_recap_report import _ready

    clip = tmp_path / "during.mp4"
    samples.room_clip(clip, seconds=2, size=(320, 180), seed=7)
    _ready(
        client,
        session,
        account,
        visit.id,
        clip.read_bytes(),
        phase="during",
        filename="during.mp4",
        content_type="video/mp4",
    )
    from tests.media.conftest import phone_jpeg

    _ready(
        client,
        session,
        account,
        visit.id,
        phone_jpeg(size=(900, 1200)),
        phase="after",
        filename="after.jpg",
        content_type="image/jpeg",
    )
    assert client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).status_code == 201
    report = reports.get_report(session=session, tenant_id=account.tenant.id, visit_id=visit.id)
    monkeypatch.setenv("HUIFANG_PUBLIC_URL", public_url)
    get_settings.cache_clear()
    try:
        made = recaps.recap_job(session=session, report_id=report.id)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert made is not None
    lines = made.end.lines
    assert not any("127.0.0.1" in line or "localhost" in line for line in lines)
    if expected is None:
        assert lines == ["预约下次服务", "回复1预约"]
    else:
        assert f"{expected}{report.token}" in lines
