"""Running the bundled ffmpeg safely, and reading what a clip holds.

Every run is confined: no standard input, only local files (``-protocol_whitelist file``),
the demuxer forced from the container we sniffed (so a playlist or concat list renamed
``.mp4`` is read as a broken MP4, never followed), a wall-clock timeout, and limits on
address space and CPU time set in the child before ffmpeg starts.

imageio-ffmpeg ships ffmpeg without ffprobe, so ``probe`` reads what ``ffmpeg -i`` prints.
"""

from __future__ import annotations

import functools
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
            text=True,
            errors="replace",
        )
    except subprocess.TimeoutExpired as exc:
        raise FfmpegError(f"ffmpeg took longer than {timeout:.0f} s and was stopped") from exc
    if check and done.returncode != 0:
        detail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise FfmpegError(f"ffmpeg failed with exit status {done.returncode}", detail)
    return done


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
_ROTATION = re.compile(r"[Dd]isplay ?[Mm]atrix: rotation of (-?\d+(?:\.\d+)?) degrees")

_UNREADABLE = (
    "This clip could not be read as {what}; it may be damaged or only partly "
    "uploaded. Please record or export it again and upload it."
)


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
    return Probe(
        duration=total,
        width=int(video.group(2)),
        height=int(video.group(3)),
        rotation=rotation,
        fps=float(fps.group(1)) if fps else None,
        video_codec=video.group(1),
        audio_codec=audio.group(1) if audio else None,
    )
