"""Clips from staff phones made fit to send: one ffmpeg run per clip, no database.

``normalize`` turns whatever the phone recorded (HEVC or H.264, 4K or 1080p, 60 fps, a
display matrix instead of upright pixels, GPS in the ``udta`` atoms) into one predictable
file: H.264 High + AAC in an MP4 whose index comes first (``+faststart``, so a browser or an
MMS gateway can start playing before the end has arrived), at most 1280×720 either way up,
upright pixels with no rotation left to honour, a constant frame rate, no metadata, no
chapters and no stream but the first picture and the first sound. HDR clips (iPhones record
HLG, Dolby Vision 8.4 on an HLG base) are tone-mapped to SDR BT.709 first (``tone_map``):
shown as they are, BT.2020 pixels on an SDR screen look grey and washed out. The watermark is drawn
once by Pillow (``media.watermark.overlay``) at the output size and laid over every frame by
ffmpeg's ``overlay`` filter in the same run; Python never touches a frame.

Every ffmpeg failure, including running out of time, becomes ``huifang.errors.Invalid`` with
a sentence the staff member can act on; ``media.ffmpeg`` confines each run (local files only,
the demuxer forced from the sniffed container, memory, CPU and wall-clock limits).
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import structlog
from PIL import Image

from huifang.errors import Invalid, TooLarge
from media import ffmpeg

log = structlog.get_logger(__name__)

MAX_LONG_EDGE = 1280
MAX_SHORT_EDGE = 720
MAX_FPS = 30.0
MIN_FPS = 10.0  # below this (time-lapse, broken headers) the output runs at MAX_FPS
# The most pixels per frame we decode: 8K phones record 7680×4320 (33 MP); decoding that
# within the run's memory limit is not worth it for a 720p result.
MAX_SOURCE_PIXELS = 4096 * 2160  # DCI 4K, the largest 4K mode phones offer
CRF = 23  # x264's visually good default; phone footage is noisy, a lower value only adds bytes
PRESET = "veryfast"  # far faster than "medium" for a few more bytes at the same CRF
MAX_VIDEO_RATE = "3M"  # cap for very busy footage, so a clip stays sendable
AUDIO_RATE = "128k"
NORMALIZE_TIMEOUT = 240.0  # seconds: inside the media task's 300 s soft limit
PROBE_TIMEOUT = 30.0
POSTER_TIMEOUT = 30.0
# Cuts shorter than this are not worth telling anyone about.
TRIM_TOLERANCE = 0.5
# An output this much shorter than the input means the input stopped early: a partial
# upload whose index was written first (+faststart) still decodes, up to the cut.
SHORT_OUTPUT_SHARE = 0.9
SHORT_SLACK = 0.5  # seconds: container and stream durations of a sound file differ a little

_DAMAGED = (
    "This clip could not be converted; it may be damaged or only partly uploaded. "
    "Please record or export it again and upload it."
)


@dataclass(frozen=True)
class ClipResult:
    """The normalized clip: its upright size, its length and whether it was cut to the cap."""

    width: int
    height: int
    duration: float  # seconds, of the normalized clip
    trimmed: bool  # cut to ``max_seconds``
    original_duration: float  # seconds, of the clip as uploaded
    bytes: int
    has_audio: bool
    tone_mapped: bool = False  # an HLG / PQ source, made SDR BT.709


@dataclass(frozen=True)
class Poster:
    width: int
    height: int
    bytes: int


def _even(value: float, most: int) -> int:
    """``value`` rounded to an even number of pixels, at least 2, at most ``most``."""
    return max(2, min(int(value / 2 + 0.5) * 2, most - most % 2))


def output_size(display_size: tuple[int, int]) -> tuple[int, int]:
    """The upright size of the normalized clip: fits 1280×720 either way up, even, never larger."""
    width, height = display_size
    if width < 1 or height < 1:
        raise ValueError("a clip has at least one pixel")
    scale = min(1.0, MAX_LONG_EDGE / max(width, height), MAX_SHORT_EDGE / min(width, height))
    # Even sizes: yuv420p halves both chroma planes. The caps are even, so rounding to the
    # nearest even size never crosses them.
    return _even(width * scale, width), _even(height * scale, height)


def output_fps(source_fps: float | None) -> float:
    """The constant frame rate of the output: the source's when it is sensible, at most 30."""
    if source_fps is None or not MIN_FPS <= source_fps <= MAX_FPS + 0.5:
        return MAX_FPS
    return round(min(source_fps, MAX_FPS), 3)


def probe(source: Path, container: str, *, timeout: float = PROBE_TIMEOUT) -> ffmpeg.Probe:
    """What the clip holds; ``Invalid`` when it is not a video we can read, ``TooLarge`` for 8K."""
    try:
        found = ffmpeg.probe(source, container, timeout=timeout)
    except ffmpeg.FfmpegError:
        raise Invalid(_DAMAGED) from None
    except ValueError:
        raise Invalid(
            "This file is not an MP4, MOV or WebM clip we can read; "
            "send the clip straight from the phone's camera."
        ) from None
    if found.width * found.height > MAX_SOURCE_PIXELS:
        raise TooLarge(
            f"This clip was recorded at {found.width}×{found.height}, more than the "
            "4K we take; set the camera to 4K or 1080p and record it again."
        )
    return found


def tone_map(size: tuple[int, int], found: ffmpeg.Probe) -> str:
    """The filters that scale an HLG or PQ picture to ``size`` as SDR BT.709 (limited range).

    With zimg (``zscale``): to linear light, BT.2020 → BT.709 primaries, Möbius tone
    mapping (colours inside SDR's range stay as they are; only highlights are compressed,
    where Hable dims a whole phone clip by a third), then the BT.709 curve and matrix.
    The bundled ffmpeg (imageio-ffmpeg) has zimg. An ffmpeg of the operator's choosing
    (``IMAGEIO_FFMPEG_EXE``) may not: then only the matrix is converted by ``scale`` and the
    result labelled BT.709 so players treat it as SDR, but the HLG curve is not undone and
    colours stay as flat as before; a warning says so once per process.
    """
    width, height = size
    # The frames are labelled as what they now are: the encoder takes its tags from them.
    label = "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"
    if {"zscale", "tonemap"} <= ffmpeg.filters():
        source = (
            f"tin={found.color_transfer}:min={found.color_space or 'bt2020nc'}"
            f":pin={found.color_primaries or 'bt2020'}"
        )
        return (
            f"zscale=w={width}:h={height}:{source}:t=linear:npl=100,format=gbrpf32le,"
            "zscale=p=bt709,tonemap=tonemap=mobius:desat=0,"
            f"zscale=t=bt709:m=bt709:r=tv:f=bicubic,format=yuv420p,{label}"
        )
    _warn_no_zimg()
    return (
        f"scale={width}:{height}:flags=bicubic:in_color_matrix=bt2020"
        f":out_color_matrix=bt709:out_range=tv,format=yuv420p,{label}"
    )


@functools.cache
def _warn_no_zimg() -> None:
    log.warning(
        "this ffmpeg has no zscale/tonemap: HDR clips are labelled SDR but not tone-mapped; "
        "use an ffmpeg built with zimg (the bundled one is)"
    )


# Tags for a tone-mapped clip, so players do not guess from the frame size.
SDR_TAGS = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]


def _frame_filter(
    size: tuple[int, int],
    fps: float,
    mark_at: tuple[int, int] | None,
    source: ffmpeg.Probe | None = None,
) -> str:
    width, height = size
    # ffmpeg has already turned the picture upright (autorotate) before the graph sees it,
    # so the scale is to the upright size and no rotation side data reaches the output.
    # HDR is tone-mapped in the same step, before the watermark is laid over SDR pixels.
    scale = (
        tone_map(size, source)
        if source is not None and source.hdr
        else f"scale={width}:{height}:flags=bicubic"
    )
    base = f"[0:V:0]{scale},setsar=1,fps={fps}"
    if mark_at is None:
        return f"{base},format=yuv420p[v]"
    x, y = mark_at
    return (
        f"{base}[base];[1:v]format=rgba[mark];"
        # format=yuv420 blends in the encoder's own format; "auto" converted every frame
        # and cost a quarter more CPU on a 720p encode.
        f"[base][mark]overlay={x}:{y}:format=yuv420:eof_action=repeat,format=yuv420p[v]"
    )


def _visible_part(overlay: Image.Image) -> tuple[Image.Image, tuple[int, int]] | None:
    """The overlay cropped to what it draws, and where that goes: ffmpeg blends the block
    alone, not a frame of transparent pixels."""
    rgba = overlay.convert("RGBA")
    box = rgba.getchannel("A").getbbox()
    if box is None:
        return None
    # Even corners keep the block on whole chroma samples of yuv420p.
    left, top = box[0] - box[0] % 2, box[1] - box[1] % 2
    return rgba.crop((left, top, box[2], box[3])), (left, top)


def normalize(
    source: Path,
    container: str,
    dest: Path,
    *,
    max_seconds: float,
    overlay: Image.Image | None,
    source_probe: ffmpeg.Probe | None = None,
    timeout: float = NORMALIZE_TIMEOUT,
) -> ClipResult:
    """Re-encode ``source`` (opened as ``container``) into ``dest``, an MP4 ready to send.

    ``overlay`` is an RGBA image of exactly ``output_size(probe.display_size)`` (the
    watermark from ``media.watermark.overlay``), burned into every frame; None for none.
    ``source_probe`` saves probing again when the caller has already done it.
    """
    if max_seconds <= 0:
        raise ValueError("max_seconds must be positive")
    found = source_probe or probe(source, container)
    size = output_size(found.display_size)
    if overlay is not None and overlay.size != size:
        raise ValueError(f"the overlay is {overlay.size}, the clip will be {size}")
    fps = output_fps(found.fps)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            inputs = ffmpeg.input_args(source, container)
        except ValueError:
            raise Invalid(_DAMAGED) from None
        visible = _visible_part(overlay) if overlay is not None else None
        if visible is not None:
            mark = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=dest.parent))) / (
                "overlay.png"
            )
            visible[0].save(mark, "PNG", compress_level=1)
            inputs += ["-protocol_whitelist", "file", "-f", "png_pipe", "-i", str(mark)]
        args = [
            *inputs,
            "-filter_complex",
            _frame_filter(size, fps, visible[1] if visible else None, found),
            "-map",
            "[v]",
            "-map",
            "0:a:0?",  # the first picture and sound; no data, no subtitles
            "-c:v",
            "libx264",
            "-preset",
            PRESET,
            "-crf",
            str(CRF),
            "-maxrate",
            MAX_VIDEO_RATE,
            "-bufsize",
            "6M",
            "-profile:v",
            "high",
            "-pix_fmt",
            "yuv420p",
            *(SDR_TAGS if found.hdr else []),
            "-c:a",
            "aac",
            "-b:a",
            AUDIO_RATE,
            "-ac",
            "2",
            "-t",
            f"{max_seconds:.3f}",
            "-fps_mode",
            "cfr",
            "-map_metadata",
            "-1",
            "-map_chapters",
            "-1",  # GPS, capture time, device, chapters
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
            str(dest),
        ]
        try:
            done = ffmpeg.run(args, timeout=timeout)
        except ffmpeg.FfmpegError as exc:
            dest.unlink(missing_ok=True)
            if isinstance(exc.__cause__, subprocess.TimeoutExpired):
                raise Invalid(
                    f"This clip took too long to process; trim it on the phone (under "
                    f"{max_seconds:.0f} s, at 1080p or lower) and upload it again."
                ) from None
            raise Invalid(_DAMAGED) from None
    made = probe(dest, "mp4")
    expected = min(found.duration, max_seconds)
    # ffmpeg decodes what it can of a cut-off file and exits 0; it says "partial file", and
    # the result is shorter than the clip's own index promised.
    cut_off = ": partial file" in done.stderr and made.duration < expected - SHORT_SLACK
    if cut_off or made.duration < expected * SHORT_OUTPUT_SHARE - SHORT_SLACK:
        dest.unlink(missing_ok=True)
        raise Invalid(
            f"This clip stops after {made.duration:.1f} s of its "
            f"{found.duration:.1f} s; it was probably only partly uploaded. "
            "Please upload it again."
        )
    return ClipResult(
        width=made.width,
        height=made.height,
        duration=made.duration,
        trimmed=found.duration > max_seconds + TRIM_TOLERANCE,
        original_duration=found.duration,
        bytes=dest.stat().st_size,
        has_audio=made.audio_codec is not None,
        tone_mapped=found.hdr,
    )


def poster(clip: Path, dest: Path, *, at: float, timeout: float = POSTER_TIMEOUT) -> Poster:
    """A JPEG of the frame at ``at`` seconds of a normalized clip (an MP4 from ``normalize``)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    args = [
        "-ss",
        f"{max(0.0, at):.3f}",
        *ffmpeg.input_args(clip, "mp4"),
        "-map",
        "0:V:0",
        "-frames:v",
        "1",
        "-an",
        "-map_metadata",
        "-1",
        "-c:v",
        "mjpeg",
        "-q:v",
        "3",
        "-f",
        "image2",
        "-update",
        "1",
        str(dest),
    ]
    try:
        ffmpeg.run(args, timeout=timeout)
    except ffmpeg.FfmpegError:
        dest.unlink(missing_ok=True)
        raise Invalid(_DAMAGED) from None
    if not dest.exists() or dest.stat().st_size == 0:
        raise Invalid(_DAMAGED)
    try:
        with Image.open(dest) as image:
            width, height = image.size
    except (OSError, ValueError):
        raise Invalid(_DAMAGED) from None
    return Poster(width=width, height=height, bytes=dest.stat().st_size)
