"""The recap video: plan (order, timing, what is left out) and render (real ffmpeg, probed).

Inputs are made with ffmpeg's lavfi sources once per session: small flat-coloured clips
whose colour says which one is on screen, a bar along the coded top edge to see rotation,
testsrc2 clips (hard to compress) for the byte budgets, and JPEG photos.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from huifang.errors import Invalid, TooLarge
from media import ffmpeg
from reports import recap_video as recap

TITLE = recap.title_card(
    company="洁家家政", service="空调清洗", day=dt.date(2026, 11, 23), staff="李秀兰"
)
END = recap.end_card(booking_url="https://hf.example/b/Ab3dE9")
RED, GREEN, BLUE, ORANGE = (200, 40, 40), (40, 170, 70), (40, 70, 200), (230, 140, 30)
BAR = (250, 230, 20)  # yellow: along the coded top edge of the rotated clip
SMALL_BUDGET = 600_000  # keeps short test recaps at small frame sizes, and fast


def _hex(color: tuple[int, int, int]) -> str:
    return "0x" + "".join(f"{c:02x}" for c in color)


def make_clip(
    path: Path,
    *,
    size: tuple[int, int] = (320, 240),
    seconds: float = 2.0,
    color: tuple[int, int, int] | None = RED,
    bar: bool = False,
    display_rotation: int | None = None,
) -> Path:
    """A clip with a sine track: flat ``color`` (testsrc2 when None), maybe a top bar."""
    width, height = size
    source = (
        f"testsrc2=size={width}x{height}:rate=30:duration={seconds}"
        if color is None
        else f"color=c={_hex(color)}:size={width}x{height}:rate=30:duration={seconds}"
    )
    if bar:
        source += f",drawbox=x=0:y=0:w=iw:h=ih/8:color={_hex(BAR)}:t=fill"
    coded = path.with_suffix(".coded.mp4") if display_rotation is not None else path
    ffmpeg.run(
        [
            "-f",
            "lavfi",
            "-i",
            source,
            "-f",
            "lavfi",
            "-i",
            f"sine=duration={seconds}",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(coded),
        ]
    )
    if display_rotation is not None:
        # An input option: the display matrix phones write, on an unchanged coded picture.
        ffmpeg.run(
            ["-display_rotation", str(display_rotation), "-i", str(coded), "-c", "copy", str(path)]
        )
    return path


def make_photo(
    path: Path,
    *,
    size: tuple[int, int],
    color: tuple[int, int, int],
    orientation: int | None = None,
) -> Path:
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", quality=92, exif=exif)
    path.write_bytes(out.getvalue())
    return path


def clip(path: Path, phase: str, seconds: float = 2.0) -> recap.Segment:
    return recap.Segment(kind="clip", path=path, container="mp4", duration=seconds, phase=phase)


def photo(path: Path, phase: str) -> recap.Segment:
    return recap.Segment(kind="photo", path=path, container=None, duration=0.0, phase=phase)


def frame_at(video: Path, seconds: float, work: Path) -> Image.Image:
    """The decoded frame of ``video`` shown at ``seconds``."""
    out = work / f"frame-{video.stem}-{seconds:.2f}.png"
    ffmpeg.run(
        ["-ss", f"{seconds:.3f}", *ffmpeg.input_args(video, "mp4"), "-frames:v", "1", str(out)]
    )
    with Image.open(out) as image:
        return image.convert("RGB")


def near(pixel: object, color: tuple[int, int, int], tolerance: int = 30) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, color, strict=True))


def middle_of(plan: recap.RecapPlan, index: int) -> float:
    """The time in the middle of shot ``index``."""
    before = sum(shot.frames for shot in plan.shots[:index])
    return (before + plan.shots[index].frames / 2) / plan.fps


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recap-inputs")


@pytest.fixture(scope="session")
def coloured(media_dir: Path) -> dict[str, Path]:
    """Three short landscape clips, one colour each."""
    return {
        name: make_clip(media_dir / f"{name}.mp4", color=color)
        for name, color in (("red", RED), ("green", GREEN), ("blue", BLUE))
    }


@pytest.fixture(scope="session")
def rotated(media_dir: Path) -> Path:
    """640×360 coded, shown upright as 360×640 (display matrix 90° counter-clockwise)."""
    return make_clip(
        media_dir / "rotated.mp4", size=(640, 360), color=ORANGE, bar=True, display_rotation=90
    )


@pytest.fixture(scope="session")
def long_clips(media_dir: Path) -> list[Path]:
    """Four 12 s testsrc2 clips: 48 s of busy, hard-to-compress picture."""
    return [make_clip(media_dir / f"long-{i}.mp4", seconds=12.0, color=None) for i in range(4)]


@pytest.fixture(scope="session")
def long_segments(long_clips: list[Path]) -> list[recap.Segment]:
    phases = ("before", "during", "after", "after")
    return [clip(path, phase, 12.0) for path, phase in zip(long_clips, phases, strict=True)]


# --- plan ----------------------------------------------------------------------------------


def test_plan_orders_phases_with_cards_first_and_last(coloured, media_dir):
    still = make_photo(media_dir / "plan-photo.jpg", size=(640, 480), color=GREEN)
    segments = [
        clip(coloured["blue"], "after"),
        photo(still, "during"),
        clip(coloured["red"], "before"),
        clip(coloured["green"], "during"),
        photo(still, "staff_report"),
        clip(coloured["red"], "after"),
    ]
    plan = recap.plan(segments, title=TITLE, end=END)
    kinds = [shot.kind for shot in plan.shots]
    assert kinds[0] == "title" and kinds[-1] == "end"
    assert [s.phase for s in plan.segments] == [
        "before",
        "during",
        "during",
        "after",
        "after",
        "staff_report",
    ]
    # Stable inside a phase: upload order kept.
    assert [s.path.name for s in plan.segments if s.phase == "during"] == [
        "plan-photo.jpg",
        "green.mp4",
    ]
    assert [s.path.name for s in plan.segments if s.phase == "after"] == ["blue.mp4", "red.mp4"]
    assert plan.orientation == "landscape" and not plan.dropped
    assert plan.duration <= 30.0


def test_plan_cuts_long_clips_from_the_middle_and_never_past_their_end(long_segments, coloured):
    short = clip(coloured["red"], "before", 2.0)
    plan = recap.plan([short, *long_segments], title=TITLE, end=END)
    assert plan.duration == pytest.approx(30.0, abs=1 / plan.fps)
    for shot in plan.shots:
        if shot.kind != "clip":
            assert 2.0 <= shot.frames / plan.fps <= 2.5
            continue
        assert shot.segment is not None
        seconds = shot.frames / plan.fps
        assert shot.start >= 0 and shot.start + seconds <= shot.segment.duration
        if shot.segment.duration > 10:
            # A 12 s clip is longer than its share: the cut is centred in it.
            assert shot.start == pytest.approx((12.0 - seconds) / 2, abs=0.01)
        else:
            assert seconds < 2.0  # the short clip gives all it has, less a frame of margin


def test_too_many_segments_leave_out_the_least_important_and_say_why(media_dir, coloured):
    still = make_photo(media_dir / "many.jpg", size=(480, 640), color=BLUE)
    segments = (
        [photo(still, "before") for _ in range(4)]
        + [photo(still, "during") for _ in range(6)]
        + [clip(coloured["green"], "during")]
        + [photo(still, "after") for _ in range(4)]
    )
    plan = recap.plan(segments, title=TITLE, end=END)
    assert plan.duration <= 30.0
    assert plan.dropped and all(
        "left out" in d.reason and "mattered least" in d.reason for d in plan.dropped
    )
    kept = plan.segments
    assert len(kept) + len(plan.dropped) == len(segments)
    # During goes first; the story's ends stay.
    assert {d.segment.phase for d in plan.dropped} == {"during"}
    assert sum(s.phase == "before" for s in kept) == 4
    assert sum(s.phase == "after" for s in kept) == 4
    assert any(s.phase == "during" for s in kept)  # one shot of the work itself is kept
    for shot in plan.shots:
        # Everything keeps its 2 s minimum; the 2 s clip gives all it has, less a frame.
        assert shot.frames >= (49 if shot.kind == "clip" else round(2.0 * plan.fps))
    assert plan.orientation == "portrait"


def test_nothing_to_make_a_recap_from_is_refused_with_a_sentence(media_dir):
    with pytest.raises(Invalid, match="upload at least one"):
        recap.plan([], title=TITLE, end=END)
    missing = clip(media_dir / "never-uploaded.mp4", "before")
    broken = media_dir / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    with pytest.raises(Invalid, match="no photo or clip"):
        recap.plan([missing, clip(broken, "after")], title=TITLE, end=END)


def test_an_unreadable_clip_is_left_out_and_the_rest_planned(media_dir, coloured):
    broken = media_dir / "broken-too.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    plan = recap.plan(
        [clip(broken, "before"), clip(coloured["blue"], "after")], title=TITLE, end=END
    )
    assert [s.path for s in plan.segments] == [coloured["blue"]]
    assert len(plan.dropped) == 1 and "could not be read" in plan.dropped[0].reason


# --- render --------------------------------------------------------------------------------


def test_render_starts_with_the_title_card_and_keeps_the_order(coloured, tmp_path):
    segments = [
        clip(coloured["blue"], "after"),
        clip(coloured["red"], "before"),
        clip(coloured["green"], "during"),
    ]
    plan = recap.plan(segments, title=TITLE, end=END)
    result = recap.render(plan, tmp_path / "out" / "recap.mp4", budget_bytes=SMALL_BUDGET)
    assert result.path.is_file() and result.bytes == result.path.stat().st_size
    assert list(result.path.parent.iterdir()) == [result.path]  # no work files left behind
    probed = ffmpeg.probe(result.path, "mp4")
    assert probed.video_codec == "h264" and probed.audio_codec == "aac"  # the clips' sound
    assert probed.display_size == (result.width, result.height)
    assert result.width > result.height
    assert probed.duration == pytest.approx(plan.duration, abs=0.1)
    assert result.bytes <= SMALL_BUDGET

    size = (result.width, result.height)
    first = frame_at(result.path, 0.5, tmp_path)
    drawn_title = recap.draw_card(TITLE, size)
    drawn_end = recap.draw_card(END, size)

    def ink_found(frame: Image.Image, card: Image.Image) -> float:
        """The share of the card's white text pixels that are bright in ``frame``."""
        hits = total = 0
        for y in range(0, size[1], 2):
            for x in range(0, size[0], 2):
                if min(card.getpixel((x, y))) > 235:  # type: ignore[arg-type]
                    total += 1
                    hits += min(frame.getpixel((x, y))) > 170  # type: ignore[arg-type]
        return hits / total

    assert ink_found(first, drawn_title) > 0.85
    assert ink_found(first, drawn_end) < 0.6  # the comparison tells the cards apart
    background = ImageStat.Stat(first.crop((0, size[1] - 20, size[0], size[1]))).mean
    assert near(tuple(round(c) for c in background), recap.BACKGROUND, 12)

    centre = (size[0] // 2, size[1] // 2)
    for index, color in ((1, RED), (2, GREEN), (3, BLUE)):
        assert near(
            frame_at(result.path, middle_of(plan, index), tmp_path).getpixel(centre), color
        ), f"shot {index} should be {color}"
    last = frame_at(result.path, plan.duration - 0.3, tmp_path)
    assert ink_found(last, drawn_end) > 0.85


def test_portrait_clip_with_a_display_matrix_gives_an_upright_portrait_recap(
    rotated, coloured, media_dir, tmp_path
):
    assert ffmpeg.probe(rotated, "mp4").rotation == 270  # the fixture is what it claims
    upright_photo = make_photo(
        media_dir / "portrait.jpg", size=(640, 360), color=BLUE, orientation=6
    )  # stored landscape, shown portrait
    segments = [
        clip(rotated, "before"),
        photo(upright_photo, "during"),
        clip(coloured["green"], "after"),
    ]
    plan = recap.plan(segments, title=TITLE, end=END)
    assert plan.orientation == "portrait"
    result = recap.render(plan, tmp_path / "recap.mp4", budget_bytes=SMALL_BUDGET)
    probed = ffmpeg.probe(result.path, "mp4")
    width, height = probed.display_size
    assert height > width and probed.rotation == 0
    assert (width, height) == (result.width, result.height)

    frame = frame_at(result.path, middle_of(plan, 1), tmp_path)
    # 360×640 upright fills a 9:16 frame edge to edge: orange everywhere but the bar, and the
    # bar (the coded top) on the left edge over the whole height, as 90° counter-clockwise
    # puts it. Squashed or unrotated, the left column would be black letterbox.
    bar_width = round(width / 8)
    for y in (4, height // 4, height // 2, height * 3 // 4, height - 5):
        assert near(frame.getpixel((bar_width // 3, y)), BAR), y
        assert near(frame.getpixel((width // 2, y)), ORANGE), y
        assert near(frame.getpixel((width - 4, y)), ORANGE), y
    assert near(frame.getpixel((bar_width + 8, height // 2)), ORANGE)

    # The EXIF-rotated photo fills the frame too.
    still = frame_at(result.path, middle_of(plan, 2), tmp_path)
    for y in (6, height // 2, height - 7):
        assert near(still.getpixel((width // 2, y)), BLUE), y
    # The landscape clip in the portrait frame: whole, centred, black above and below.
    land = frame_at(result.path, middle_of(plan, 3), tmp_path)
    assert near(land.getpixel((width // 2, height // 2)), GREEN)
    assert near(land.getpixel((width // 2, 10)), (0, 0, 0), 20)


def test_photos_alone_make_a_recap_on_a_blurred_fill_of_themselves(media_dir, tmp_path):
    before = make_photo(media_dir / "before.jpg", size=(800, 600), color=RED)
    after = make_photo(media_dir / "after.jpg", size=(800, 600), color=GREEN)
    plan = recap.plan([photo(after, "after"), photo(before, "before")], title=TITLE, end=END)
    assert [shot.kind for shot in plan.shots] == ["title", "photo", "photo", "end"]
    assert [shot.frames / plan.fps for shot in plan.shots[1:3]] == [3.0, 3.0]
    result = recap.render(plan, tmp_path / "photos.mp4", budget_bytes=SMALL_BUDGET)
    probed = ffmpeg.probe(result.path, "mp4")
    assert probed.duration == pytest.approx(plan.duration, abs=0.1)
    assert result.bytes <= SMALL_BUDGET
    width, height = probed.display_size
    frame = frame_at(result.path, middle_of(plan, 1), tmp_path)
    assert near(frame.getpixel((width // 2, height // 2)), RED)
    # A 4:3 photo in a 16:9 frame: the sides are its own colour, blurred and darkened.
    side = frame.getpixel((4, height // 2))
    assert near(side, tuple(round(c * 0.65) for c in RED), 25)  # type: ignore[arg-type]
    frame = frame_at(result.path, middle_of(plan, 2), tmp_path)
    assert near(frame.getpixel((width // 2, height // 2)), GREEN)


def test_long_inputs_give_30_seconds_within_the_default_budget(long_segments, tmp_path):
    plan = recap.plan(long_segments, title=TITLE, end=END)
    assert sum(s.duration for s in long_segments) > 40
    result = recap.render(plan, tmp_path / "recap.mp4")
    probed = ffmpeg.probe(result.path, "mp4")
    assert probed.duration <= 30.0 + 1e-6
    assert probed.duration == pytest.approx(30.0, abs=0.1)
    assert result.bytes <= recap.DEFAULT_BUDGET
    # The budget was used, not wasted: at least half of it went into the picture.
    assert result.bytes > recap.DEFAULT_BUDGET // 2
    assert (result.width, result.height) == probed.display_size == (960, 540)


def test_a_tight_budget_is_still_met(long_segments, tmp_path):
    plan = recap.plan(long_segments, title=TITLE, end=END)
    result = recap.render(plan, tmp_path / "tight.mp4", budget_bytes=600_000)
    probed = ffmpeg.probe(result.path, "mp4")
    assert probed.duration <= 30.0 + 1e-6
    assert result.bytes == result.path.stat().st_size <= 600_000
    assert probed.display_size == (640, 360)  # a smaller picture, not mush at 960×540


def test_a_budget_no_video_fits_in_is_refused_before_encoding(long_segments, tmp_path):
    plan = recap.plan(long_segments, title=TITLE, end=END)
    with pytest.raises(TooLarge, match="cannot fit in 150,000 bytes"):
        recap.render(plan, tmp_path / "never.mp4", budget_bytes=150_000)
    assert not (tmp_path / "never.mp4").exists()


def test_a_clip_overlay_is_burned_over_the_picture(coloured, media_dir, tmp_path):
    mark = Image.new("RGBA", (320, 240), (0, 0, 0, 0))
    mark.paste((255, 255, 255, 255), (0, 200, 120, 240))  # a white block, bottom left
    mark_path = media_dir / "mark.png"
    mark.save(mark_path)
    segment = recap.Segment(
        kind="clip",
        path=coloured["blue"],
        container="mp4",
        duration=2.0,
        phase="after",
        overlay=mark_path,
    )
    plan = recap.plan([segment], title=TITLE, end=END)
    result = recap.render(plan, tmp_path / "marked.mp4", budget_bytes=SMALL_BUDGET)
    frame = frame_at(result.path, middle_of(plan, 1), tmp_path)
    width, height = result.width, result.height
    picture_w = round(height * 4 / 3 / 2) * 2  # the 4:3 clip, pillarboxed
    left = (width - picture_w) // 2
    assert near(frame.getpixel((left + 10, height - 10)), (255, 255, 255))
    assert near(frame.getpixel((left + picture_w - 10, height - 10)), BLUE)
    assert near(frame.getpixel((left + 10, 10)), BLUE)


def test_an_encode_over_budget_is_redone_once_at_a_lower_bitrate(long_clips, tmp_path, monkeypatch):
    # x264 overshooting its rate is rare and content-dependent; three times the bitrate the
    # budget allows makes the first (real) encode overshoot for sure.
    real = recap.video_kbps
    monkeypatch.setattr(recap, "video_kbps", lambda budget, seconds: real(budget, seconds) * 3)
    plan = recap.plan([clip(long_clips[0], "before", 12.0)], title=TITLE, end=END, max_seconds=10.0)
    result = recap.render(plan, tmp_path / "retry.mp4", budget_bytes=300_000)
    assert result.encodes == 2
    assert result.bytes == result.path.stat().st_size <= 300_000
    assert result.video_kbps < real(300_000, plan.duration) * 3


def test_a_second_miss_is_an_error_and_leaves_no_file(long_clips, tmp_path, monkeypatch):
    real = recap.video_kbps
    monkeypatch.setattr(recap, "video_kbps", lambda budget, seconds: real(budget, seconds) * 3)
    monkeypatch.setattr(recap, "RETRY_SAFETY", 3.0)  # the retry aims as high as the first
    plan = recap.plan([clip(long_clips[0], "before", 12.0)], title=TITLE, end=END, max_seconds=10.0)
    with pytest.raises(TooLarge, match="over the 300,000-byte limit"):
        recap.render(plan, tmp_path / "out" / "never.mp4", budget_bytes=300_000)
    assert list((tmp_path / "out").iterdir()) == []
