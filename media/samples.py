"""Sample visit media for the demo and the tests: a stained room before and the same room
after, and short clips made by ffmpeg's own test sources."""

from __future__ import annotations

import datetime as dt
import io
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from media import ffmpeg


def room_photo(
    *,
    clean: bool,
    seed: int,
    size: tuple[int, int] = (1600, 1200),
    captured_at: dt.datetime | None = None,
) -> bytes:
    """A JPEG of a simple room: wall, floor, window; stains and dust when not clean.

    ``captured_at`` (aware) is written as a phone writes it: local time and its offset;
    without it the photo says it was taken on 2026-11-20 at 10:15 in China.
    """
    rng = random.Random(seed)  # noqa: S311  (drawing stains, not secrets)
    width, height = size
    image = Image.new("RGB", size, (236, 230, 214) if clean else (205, 193, 168))
    draw = ImageDraw.Draw(image)
    floor_top = int(height * 0.68)
    draw.rectangle((0, floor_top, width, height), fill=(168, 122, 84) if clean else (130, 96, 70))
    draw.rectangle(
        (int(width * 0.58), int(height * 0.12), int(width * 0.9), int(height * 0.5)),
        fill=(170, 205, 235),
        outline=(250, 250, 250),
        width=14,
    )
    draw.rectangle(
        (int(width * 0.1), int(height * 0.45), int(width * 0.45), floor_top + 40),
        fill=(120, 120, 130),
    )  # a sofa
    if not clean:
        for _ in range(60):
            x, y = rng.randrange(width), rng.randrange(height)
            r = rng.randrange(8, 60)
            shade = rng.randrange(70, 140)
            draw.ellipse((x - r, y - r // 2, x + r, y + r // 2), fill=(shade, shade - 15, 40))
    image = image.filter(ImageFilter.GaussianBlur(2))
    out = io.BytesIO()
    exif = Image.Exif()
    if captured_at is None:
        exif.get_ifd(0x8769)[0x9003] = "2026:11:20 10:15:00"
    else:
        if captured_at.tzinfo is None:
            raise ValueError("captured_at is naive; give a time zone")
        offset = captured_at.strftime("%z")  # +0800
        exif.get_ifd(0x8769).update(
            {
                0x9003: captured_at.strftime("%Y:%m:%d %H:%M:%S"),
                0x9011: f"{offset[:3]}:{offset[3:]}",
            }
        )
    image.save(out, "JPEG", quality=88, exif=exif)
    return out.getvalue()


def room_clip(
    path: Path,
    *,
    seconds: float,
    size: tuple[int, int] = (1280, 720),
    rotation: int = 0,
    seed: int,
    fps: int = 30,
    audio: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a real H.264 + AAC MP4 clip to ``path``: a moving test pattern and a tone.

    ``size`` is the coded size. ``rotation`` (0, 90, 180 or 270) is the clockwise turn a
    player must give the picture, stored as a display matrix the way phones store portrait
    clips, so a 1280×720 clip with rotation 90 is shown 720×1280. ``seed`` changes the tone
    and a marker's position, so two seeds never make the same file. ``metadata`` adds
    container tags (``location``, ``creation_time``) as a phone would.
    """
    if rotation % 90:
        raise ValueError("rotation must be a multiple of 90 degrees")
    rng = random.Random(seed)  # noqa: S311  (varying a test picture, not a secret)
    width, height = size
    box = (rng.randrange(max(1, width - width // 8)), rng.randrange(max(1, height - height // 8)))
    video = (
        f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds},"
        f"drawbox=x={box[0]}:y={box[1]}:w={max(2, width // 8)}:h={max(2, height // 8)}"
        f":color=0x{rng.randrange(0x1000000):06x}:t=fill"
    )
    args = ["-f", "lavfi", "-i", video]
    if audio:
        args += [
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={220 + seed % 660}:sample_rate=48000:duration={seconds}",
        ]
    tags: list[str] = []
    for key, value in (metadata or {}).items():
        tags += ["-metadata", f"{key}={value}"]
    encode = [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        *(["-c:a", "aac", "-b:a", "96k"] if audio else []),
        *tags,
        "-f",
        "mp4",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rotation % 360:
        ffmpeg.run([*args, *encode, str(path)], timeout=120)
        return
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        upright = Path(scratch) / "coded.mp4"
        ffmpeg.run([*args, *encode, str(upright)], timeout=120)
        # -display_rotation is an input option, counter-clockwise: a phone's clockwise turn
        # of 90 is stored as a matrix of -90 (ffmpeg prints "rotation of -90.00 degrees").
        ffmpeg.run(
            [
                "-display_rotation",
                str(-(rotation % 360)),
                "-i",
                str(upright),
                "-map",
                "0",
                "-c",
                "copy",
                "-map_metadata",
                "0",
                "-f",
                "mp4",
                str(path),
            ],
            timeout=60,
        )
