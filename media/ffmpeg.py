"""Running the bundled ffmpeg safely, and reading what a clip holds.

Every run is confined: no standard input, only local files (``-protocol_whitelist file``),
the demuxer forced from the container we sniffed (so a playlist or concat list renamed
``.mp4`` is read as a broken MP4, never followed), a wall-clock timeout, and limits on
address space and CPU time set in the child before ffmpeg starts.

imageio-ffmpeg ships ffmpeg without ffprobe, so ``probe`` reads what ``ffmpeg -i`` prints.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import resource
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

from huifang.errors import Invalid

# The demuxer for each container ``media.imaging.sniff`` knows.
DEMUXERS = {"mp4": "mov", "mov": "mov", "webm": "matroska"}

MEMORY_LIMIT = 2 * 1024**3  # bytes of address space for one ffmpeg run
DEFAULT_TIMEOUT = 300.0  # seconds of wall-clock time


class FfmpegError(RuntimeError):
    """ffmpeg failed, ran out of time, or hit its memory limit; ``detail`` holds its last words."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@functools.cache
def executable() -> str:
    """The ffmpeg binary (imageio-ffmpeg's own, or ``IMAGEIO_FFMPEG_EXE`` when set)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def input_args(path: Path, container: str) -> list[str]:
    """The arguments that open ``path`` as ``container`` and nothing else."""
    try:
        demuxer = DEMUXERS[container]
    except KeyError:
        raise ValueError(f"no demuxer for container {container!r}") from None
    return ["-protocol_whitelist", "file", "-f", demuxer, "-i", str(path)]


# glibc reserves 64 MB of address space for each malloc arena it opens, up to 8 per core, as
# threads first allocate: how many a run opens depends on its threads' timing, so under the
# address-space limit a run could fail now and then with ENOMEM (exit status 244) for
# memory it never used. Two arenas are plenty for ffmpeg's few allocating threads.
ARENAS = {"MALLOC_ARENA_MAX": "2"}


def _limits(memory: int, cpu_seconds: int) -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))


def run(
    args: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    memory: int = MEMORY_LIMIT,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg with ``args`` (after the common safety flags); its stderr is returned as text."""
    command = [executable(), "-nostdin", "-hide_banner", "-y", *args]
    cpu = int(timeout * 2) + 10  # both cores may be busy for the whole wall-clock budget
    try:
        # The command is our own argument list (no shell); paths come from our storage.
        done = subprocess.run(  # noqa: S603
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            preexec_fn=lambda: _limits(memory, cpu),
            env={**os.environ, **ARENAS},
            text=True,
            errors="replace",
        )
    except subprocess.TimeoutExpired as exc:
        raise FfmpegError(f"ffmpeg took longer than {timeout:.0f} s and was stopped") from exc
    if check and done.returncode != 0:
        detail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise FfmpegError(f"ffmpeg failed with exit status {done.returncode}", detail)
    return done


@functools.cache
def filters() -> frozenset[str]:
    """The names of the filters this ffmpeg was built with (``ffmpeg -filters``)."""
    done = run(["-filters"], timeout=30.0, check=False)
    return frozenset(
        parts[1]
        for line in done.stderr.splitlines() + done.stdout.splitlines()
        if len(parts := line.split()) >= 3 and parts[2] and "->" in parts[2]
    )


# Transfer functions of HDR video: HLG (iPhones' HDR and Dolby Vision 8.4 base layer) and
# PQ (HDR10, Dolby Vision 8.1).
HDR_TRANSFERS = frozenset({"arib-std-b67", "smpte2084"})


@dataclass(frozen=True)
class Probe:
    """What a clip holds, as ffmpeg reads it."""

    duration: float  # seconds
    width: int  # coded size, before rotation
    height: int
    rotation: int  # clockwise degrees to turn the coded picture to show it upright: 0/90/180/270
    fps: float | None
    video_codec: str
    audio_codec: str | None
    # Colour as the stream is tagged (ffmpeg's names: bt709, bt2020nc, arib-std-b67, …).
    color_space: str | None = None
    color_primaries: str | None = None
    color_transfer: str | None = None
    # The phone's capture time from the container's tags; None when it wrote none.
    created_at: dt.datetime | None = None

    @property
    def hdr(self) -> bool:
        """True for an HLG or PQ clip, which must be tone-mapped before it is shown as SDR."""
        return self.color_transfer in HDR_TRANSFERS

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as the clip is shown, after its rotation."""
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height

    @property
    def portrait(self) -> bool:
        width, height = self.display_size
        return height > width


_DURATION = re.compile(r"Duration: (\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\S+.*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_AUDIO = re.compile(r"Stream #\S+.*?: Audio: (\w+)")
# "yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67, progressive)": matrix/primaries/transfer,
# or one name when all three agree ("yuv420p(tv, bt709)").
_COLOUR = re.compile(r", [a-z0-9_]+\(([^)]*)\)")
# Apple's tag carries the capture time with the phone's offset; creation_time is UTC.
_CREATED = re.compile(
    r"^\s*(com\.apple\.quicktime\.creationdate|creation_time)\s*: ([0-9T:.+\-Z ]+)", re.M
)
_ROTATION = re.compile(r"[Dd]isplay ?[Mm]atrix: rotation of (-?\d+(?:\.\d+)?) degrees")

_UNREADABLE = (
    "This clip could not be read as {what}; it may be damaged or only partly "
    "uploaded. Please record or export it again and upload it."
)


def _colour(stream_line: str) -> tuple[str | None, str | None, str | None]:
    """(matrix, primaries, transfer) from a video stream line; None where it says nothing."""
    found = _COLOUR.search(stream_line)
    if found is None:
        return None, None, None
    for part in (p.strip() for p in found.group(1).split(",")):
        names = part.split("/")
        if len(names) == 3:
            return names[0], names[1], names[2]
        if part.startswith(("bt", "smpte")) and re.fullmatch(r"[a-z0-9-]+", part):
            return part, part, part
    return None, None, None


def _created(text: str) -> dt.datetime | None:
    """The capture time the container's tags give, aware; Apple's tag first."""
    found: dict[str, str] = {}
    for key, value in _CREATED.findall(text):
        found.setdefault(key, value.split(";")[0].strip())
    for key in ("com.apple.quicktime.creationdate", "creation_time"):
        if key not in found:
            continue
        try:
            moment = dt.datetime.fromisoformat(found[key].replace("Z", "+00:00"))
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)  # QuickTime stores UTC
        if moment.year > 2000:  # 1904/1970 epochs: a camera with no clock set
            return moment.astimezone(dt.UTC)
    return None


def probe(path: Path, container: str, *, timeout: float = 30.0) -> Probe:
    """Read the first video stream of ``path`` opened as ``container``; Invalid when none.

    ffmpeg prints a display matrix as a counter-clockwise angle; ``Probe.rotation`` is the
    clockwise turn that shows the picture upright, the way phones mean it.
    """
    done = run([*input_args(path, container)], timeout=timeout, check=False)
    text = done.stderr
    what = {"mp4": "an MP4 video", "mov": "a MOV video", "webm": "a WebM video"}[container]
    video = _VIDEO.search(text)
    duration = _DURATION.search(text)
    if video is None or duration is None:
        raise Invalid(_UNREADABLE.format(what=what))
    hours, minutes, seconds = duration.groups()
    total = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if total <= 0:
        raise Invalid(_UNREADABLE.format(what=what))
    stream_line = text[video.start() : text.find("\n", video.start())]
    fps = _FPS.search(stream_line)
    audio = _AUDIO.search(text)
    turn = _ROTATION.search(text[video.start() :])
    rotation = 0
    if turn is not None:
        rotation = round(-float(turn.group(1)) / 90) * 90 % 360
    matrix, primaries, transfer = _colour(stream_line)
    return Probe(
        duration=total,
        width=int(video.group(2)),
        height=int(video.group(3)),
        rotation=rotation,
        fps=float(fps.group(1)) if fps else None,
        video_codec=video.group(1),
        audio_codec=audio.group(1) if audio else None,
        color_space=matrix,
        color_primaries=primaries,
        color_transfer=transfer,
        created_at=_created(text[: video.start()]),
    )
