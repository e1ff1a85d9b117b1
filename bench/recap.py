"""The recap video against one hand-written ffmpeg command, in the same run (DESIGN.md, Targets).

    .venv/bin/python bench/recap.py [--rounds 5] [--budget 2000000] [--moviepy]

Makes three 10 s 1080p H.264 clips (lavfi testsrc2 + sine, 30 fps, ~15 Mb/s as phones
record) and a 1920×1080 watermark overlay PNG from ``media.watermark.overlay``. Then
``--rounds`` rounds (at least 5), floor and ours in turns (``bench/rounds.py``):

- ours: ``recap.plan`` + ``recap.render`` of a 30 s recap (title card, the three clips
  watermarked by the overlay, end card) within the byte budget;
- floor: ONE ffmpeg command written out below by hand, doing the same cuts, scale, overlay,
  concat and encode at the same bitrate, with the two cards already drawn as PNGs, and the
  same sound (the clips' own, silence under the cards, loudnorm in one pass, mono AAC);
  ours measures the loudness in a first, sound-only pass, which the floor does without.

Prints the median (min–max) over the rounds of both sides' CPU time (this process and the
ffmpeg processes it waited for: the headline, both sides being CPU-bound) and wall time, the
ratios ours/floor (target ≤ 1.3×), and the bytes and length of both outputs.
``--moviepy`` also times a naive moviepy 2 version, when moviepy is installed (it is
not a dependency of the project).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rounds

from media import ffmpeg, watermark
from reports import recap_video as recap

FACTS = watermark.WatermarkFacts(
    company="洁家家政",
    service="空调清洗",
    phase="服务中",
    received_at=dt.datetime(2026, 11, 23, 6, 5, tzinfo=dt.UTC),
    timezone="Asia/Shanghai",
    code="K7Q2A-9XMA3",
    staff="李秀兰",
    area="客厅",
)
TITLE = recap.title_card(
    company="洁家家政", service="空调清洗", day=dt.date(2026, 11, 23), staff="李秀兰"
)
END = recap.end_card(booking_url="https://hf.example/b/Ab3dE9")
PHASES = ("before", "during", "after")


def make_inputs(directory: Path) -> tuple[list[Path], Path]:
    clips = []
    for i in range(3):
        path = directory / f"clip-{i}.mp4"
        ffmpeg.run(
            [
                "-f",
                "lavfi",
                "-i",
                f"testsrc2=size=1920x1080:rate=30:duration=10,hue=h={i * 120}",
                "-f",
                "lavfi",
                "-i",
                f"sine=frequency={440 + 110 * i}:duration=10",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-crf",
                "23",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
                str(path),
            ]
        )
        clips.append(path)
    mark = directory / "watermark.png"
    watermark.overlay((1920, 1080), FACTS).save(mark)
    return clips, mark


def ours(clips: list[Path], mark: Path, dest: Path, budget: int) -> recap.RecapResult:
    segments = [
        recap.Segment(
            kind="clip", path=path, container="mp4", duration=10.0, phase=phase, overlay=mark
        )
        for path, phase in zip(clips, PHASES, strict=True)
    ]
    plan = recap.plan(segments, title=TITLE, end=END)
    return recap.render(plan, dest, budget_bytes=budget)


def floor(
    clips: list[Path],
    mark: Path,
    cards: tuple[Path, Path],
    dest: Path,
    cuts: list[tuple[float, float]],
    card_frames: int,
    kbps: int,
) -> None:
    """The same recap as one ffmpeg command, as a person would write it."""
    title, end = cards
    (s0, t0), (s1, t1), (s2, t2) = cuts
    loops = card_frames - 1
    card_seconds = card_frames / 25
    graph = (
        f"[0:v]format=yuv420p,loop=loop={loops}:size=1:start=0,setpts=N/(25*TB)[t];"
        f"[4:v]scale=960:540,split=3[m0][m1][m2];"
        f"[1:v]fps=25,scale=960:540,setsar=1,format=yuv420p[a0];[a0][m0]overlay=0:0[c0];"
        f"[2:v]fps=25,scale=960:540,setsar=1,format=yuv420p[a1];[a1][m1]overlay=0:0[c1];"
        f"[3:v]fps=25,scale=960:540,setsar=1,format=yuv420p[a2];[a2][m2]overlay=0:0[c2];"
        f"[5:v]format=yuv420p,loop=loop={loops}:size=1:start=0,setpts=N/(25*TB)[e];"
        f"[t][c0][c1][c2][e]concat=n=5:v=1:a=0[v];"
        f"anullsrc=r=48000:cl=mono,atrim=duration={card_seconds}[sa];"
        f"anullsrc=r=48000:cl=mono,atrim=duration={card_seconds}[sb];"
        f"[1:a]aformat=channel_layouts=mono,atrim=duration={t0}[a0s];"
        f"[2:a]aformat=channel_layouts=mono,atrim=duration={t1}[a1s];"
        f"[3:a]aformat=channel_layouts=mono,atrim=duration={t2}[a2s];"
        f"[sa][a0s][a1s][a2s][sb]concat=n=5:v=0:a=1,loudnorm=I=-16:TP=-1.5:LRA=11,"
        f"aresample=48000[s]"
    )
    ffmpeg.run(
        [
            "-framerate",
            "25",
            "-i",
            str(title),
            "-ss",
            f"{s0}",
            "-t",
            f"{t0}",
            "-i",
            str(clips[0]),
            "-ss",
            f"{s1}",
            "-t",
            f"{t1}",
            "-i",
            str(clips[1]),
            "-ss",
            f"{s2}",
            "-t",
            f"{t2}",
            "-i",
            str(clips[2]),
            "-i",
            str(mark),
            "-framerate",
            "25",
            "-i",
            str(end),
            "-filter_complex",
            graph,
            "-map",
            "[v]",
            "-map",
            "[s]",
            "-c:a",
            "aac",
            "-b:a",
            f"{recap.AUDIO_KBPS}k",
            "-ac",
            "1",
            "-c:v",
            "libx264",
            "-preset",
            "fast",
            "-profile:v",
            "high",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            f"{kbps}k",
            "-maxrate",
            f"{kbps}k",
            "-bufsize",
            f"{kbps}k",
            "-movflags",
            "+faststart",
            str(dest),
        ]
    )


def naive_moviepy(
    clips: list[Path],
    mark: Path,
    cards: tuple[Path, Path],
    dest: Path,
    cuts: list[tuple[float, float]],
    card_seconds: float,
    kbps: int,
) -> None:
    """The recap as the moviepy tutorials would have it: composite clips, write the file."""
    from moviepy import (
        CompositeVideoClip,
        ImageClip,
        VideoFileClip,
        concatenate_videoclips,
    )

    parts = [ImageClip(str(cards[0])).with_duration(card_seconds)]
    sources = []
    for path, (start, length) in zip(clips, cuts, strict=True):
        source = VideoFileClip(str(path), audio=False)
        sources.append(source)
        cut = source.subclipped(start, start + length).resized(new_size=(960, 540))
        overlay = ImageClip(str(mark)).resized(new_size=(960, 540)).with_duration(length)
        parts.append(CompositeVideoClip([cut, overlay]))
    parts.append(ImageClip(str(cards[1])).with_duration(card_seconds))
    concatenate_videoclips(parts).write_videofile(
        str(dest),
        fps=25,
        codec="libx264",
        preset="fast",
        bitrate=f"{kbps}k",
        audio=False,
        logger=None,
        ffmpeg_params=[
            "-maxrate",
            f"{kbps}k",
            "-bufsize",
            f"{kbps}k",
            "-profile:v",
            "high",
            "-movflags",
            "+faststart",
        ],
    )
    for source in sources:
        source.close()


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def describe(path: Path) -> str:
    probed = ffmpeg.probe(path, "mp4")
    width, height = probed.display_size
    return f"{path.stat().st_size:,} bytes, {probed.duration:.2f} s, {width}x{height}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=rounds.MIN_ROUNDS)
    parser.add_argument("--budget", type=int, default=recap.DEFAULT_BUDGET)
    parser.add_argument(
        "--moviepy",
        action="store_true",
        help="also time a naive moviepy version (needs moviepy installed)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="huifang-bench-recap-") as tmp:
        work = Path(tmp)
        clips, mark = make_inputs(work)
        # Warm up (font loading, page cache) and learn the plan's cuts and bitrate, so the
        # floor does exactly the same work.
        first = ours(clips, mark, work / "ours.mp4", args.budget)
        segments = [
            recap.Segment(kind="clip", path=path, container="mp4", duration=10.0, phase=phase)
            for path, phase in zip(clips, PHASES, strict=True)
        ]
        plan = recap.plan(segments, title=TITLE, end=END)
        by_path = {shot.segment.path: shot for shot in plan.shots if shot.segment is not None}
        cuts = [(by_path[path].start, by_path[path].frames / plan.fps) for path in clips]
        card_frames = plan.shots[0].frames
        if (first.width, first.height) != (960, 540):
            sys.exit(
                f"the budget chose {first.width}x{first.height}; the floor is written "
                "for 960x540 (the default 2 MB budget)"
            )
        cards = (work / "title.png", work / "end.png")
        recap.draw_card(TITLE, (960, 540)).save(cards[0])
        recap.draw_card(END, (960, 540)).save(cards[1])

        def run_floor() -> None:
            floor(clips, mark, cards, work / "floor.mp4", cuts, card_frames, first.video_kbps)

        run_floor()
        result = rounds.interleave(
            run_floor, lambda: ours(clips, mark, work / "ours.mp4", args.budget), args.rounds
        )
        print(
            f"30 s recap of three 10 s 1080p clips, watermarked, budget {args.budget:,} "
            f"bytes, {first.video_kbps} kb/s; ffmpeg's CPU counted with ours (target <= 1.3x)"
        )
        print(f"ours:  {describe(work / 'ours.mp4')}; {first.encodes} encode")
        print(f"floor: {describe(work / 'floor.mp4')}")
        for line in result.lines(unit="s", scale=1.0):
            print(line)
        floor_wall = result.each("floor", "wall").median
        if args.moviepy:
            try:
                import moviepy  # noqa: F401
            except ImportError:
                print("moviepy: not installed; skipped (pip install moviepy in a scratch venv)")
                return
            seconds = timed(
                lambda: naive_moviepy(
                    clips,
                    mark,
                    cards,
                    work / "moviepy.mp4",
                    cuts,
                    card_frames / plan.fps,
                    first.video_kbps,
                )
            )
            print(
                f"moviepy (naive, one run): {seconds:.2f} s "
                f"({describe(work / 'moviepy.mp4')}); "
                f"{seconds / floor_wall:.1f}x the floor's median"
            )


if __name__ == "__main__":
    main()
