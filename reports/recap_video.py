"""The recap video of a visit: title card, clips and photos before → during → after, end card.

Planning is Python and rendering is one ffmpeg run. ``plan`` decides everything that needs a
judgement — order, which segments to leave out when there are too many, how long each shows,
which part of a clip is cut, portrait or landscape — and ``render`` turns the plan into ONE
ffmpeg filtergraph: every input cut at the demuxer (``-ss``/``-t``), scaled, padded, burned
with its overlay, concatenated and encoded once. moviepy is not used: 2.2.1 misreads the
display matrices ffmpeg 9 reports (portrait clips come out squashed) and composites text per
frame in Python, about ten times slower than the filtergraph (DESIGN.md, Targets).

Pillow draws what is still: the title and end cards and each photo (fitted over a blurred
fill of itself) are drawn once as frame-sized PNGs and held on screen by the ``loop`` filter,
so each is decoded and converted to YUV once, not once per frame.

Shape: the majority of the inputs' orientations decides the frame (portrait phone clips give
9:16, 720×1280 when the budget carries it); an input of the other orientation is fitted
whole on black (clips) or on a blurred fill of itself (photos), never stretched or cropped.
Sound: the clips' own, brought to -16 LUFS (why: ``AUDIO_KBPS``); a short first pass measures
it, so the encode applies one steady gain.

The result always fits the byte budget of the provider profile (2 MB by default; Aliyun
数字短信 allows 1.9 MB in total), or ``render`` raises ``TooLarge``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFilter, ImageOps

from huifang.errors import Invalid, TooLarge
from media import ffmpeg, imaging
from media.fonts import load_font

Kind = Literal["clip", "photo"]
Orientation = Literal["portrait", "landscape"]

# The order a visit is told in. staff_report (the staff member holding the day's work report)
# closes the story, just before the end card.
PHASES: tuple[str, ...] = ("before", "during", "after", "staff_report")

DEFAULT_BUDGET = 2_000_000  # bytes: the default provider profile
MAX_SECONDS = 30.0  # "a 30-second service recap" (DESIGN.md): also Huawei's MP4 limit is 33 s
# 25 fps, not the phones' 30: a sixth fewer frames to pay for out of the byte budget, and
# people wiping a cooker hood do not need more.
FPS = 25

CARD_SECONDS = 2.5
MIN_CARD_SECONDS = 2.0  # cards shrink to this before any segment is left out
PHOTO_SECONDS = 2.5
MIN_PHOTO_SECONDS = 2.0
MAX_PHOTO_SECONDS = 3.0  # when clips are short, photos take up to this much of the slack
MIN_CLIP_SECONDS = 2.0  # less than this reads as a glitch, not a shot

# Output sizes, largest first, as (long edge, short edge). Uploaded clips are normalised to at
# most 720p, so nothing larger is ever worth its bytes. H.264 at these sizes looks acceptable
# from about 0.03 bits per pixel per frame for phone footage (mostly still camera, slow
# hands); 2 MB over 30 s leaves ~500 kb/s, which carries 960×540 at 25 fps (0.038) but not
# 1280×720 (0.022), while a 5 MB Twilio budget carries 720p. Below the smallest size text on
# the cards and the watermark stops being legible, so tight budgets get 640×360 regardless.
FRAME_SIZES: tuple[tuple[int, int], ...] = ((1280, 720), (960, 540), (768, 432), (640, 360))
MIN_BITS_PER_PIXEL = 0.03

# The MP4 container costs bytes the video bitrate does not count: ftyp, moov (sample sizes,
# times and sync tables, ~12 bytes a frame), mdat header. Kept aside from the budget, with a
# safety share for x264's rate control.
CONTAINER_BYTES = 24_000
RATE_SAFETY = 0.03
VBV_SECONDS = 1.0  # bufsize: the encoder may run at most this far ahead of the average
MIN_VIDEO_KBPS = 60  # below this, x264 cannot hold the rate even at its coarsest quantiser
RETRY_SAFETY = 0.92  # the second encode aims this far under what the overshoot suggests
X264_PRESET = "fast"  # close to "medium" in quality per bit, noticeably less CPU on 2 cores

# Sound: the clips' own, loudness-normalised; cards and photos are silent. A music bed was
# the other choice, but it needs a licensed track (platforms mute or refuse copyrighted
# music) and hides what the customer wants to hear: the steam cleaner, the water, the staff
# member explaining. -16 LUFS integrated is the level phones and streaming apps play at (AES
# TD1004); -23 (EBU R128, television) would sound faint beside the customer's other media.
# Two passes: ``loudness`` measures, the encode applies one gain (loudnorm's linear mode).
AUDIO_RATE = 48_000  # Hz; a frame at 25 fps is exactly 1920 samples, so the cuts line up
AUDIO_KBPS = 48  # mono AAC-LC: speech and machine noise, a tenth of the video's bytes
LOUDNESS_TARGET = -16.0  # LUFS, integrated
TRUE_PEAK = -1.5  # dBTP: headroom for the AAC encoder's overshoot
LOUDNESS_RANGE = 11.0  # LU
SILENT_BELOW = -60.0  # LUFS: clips measured quieter than this hold no sound worth raising

BACKGROUND = (24, 58, 92)
ACCENT = (74, 190, 150)
INK = (255, 255, 255)


@dataclass(frozen=True)
class Segment:
    """One photo or clip of the visit, in upload order within its phase.

    ``duration`` is the source length for clips (ignored for photos). ``overlay`` is an RGBA
    PNG burned over the picture (not the padding) — for raw clips that are not watermarked
    yet; it should have the picture's aspect ratio (``watermark.overlay(display_size, …)``)
    and is scaled to the picture. ``size`` is the upright display size when the caller knows
    it already; otherwise ``plan`` reads it (ffmpeg for clips, the header for photos).
    """

    kind: Kind
    path: Path
    container: str | None  # for clips, the sniffed container: mp4 | mov | webm
    duration: float
    phase: str
    overlay: Path | None = None
    size: tuple[int, int] | None = None
    # Whether the clip carries sound; None: ``plan`` reads it (with the size, in one probe).
    has_audio: bool | None = None


@dataclass(frozen=True)
class Card:
    """A still with centred lines of text; the first line is the headline."""

    lines: list[str]
    background: tuple[int, int, int] = BACKGROUND
    accent: tuple[int, int, int] = ACCENT
    ink: tuple[int, int, int] = INK


def title_card(*, company: str, service: str, day: dt.date, staff: str | None = None) -> Card:
    """The opening card: who came, for what, when."""
    lines = [company, service, f"{day.year}年{day.month}月{day.day}日"]
    if staff:
        lines.append(f"服务人员 {staff}")
    return Card(lines=lines)


def end_card(
    *, booking_url: str | None, reply_hint: str = "回复1预约", headline: str = "预约下次服务"
) -> Card:
    """The closing card: how to book the next visit.

    ``booking_url`` None leaves the address off (the reply hint still says how to book):
    the caller passes None when the public address is one customers cannot reach.
    """
    return Card(lines=[line for line in (headline, booking_url, reply_hint) if line])


@dataclass(frozen=True)
class Shot:
    """One piece of the recap: a card, a photo, or a cut of a clip (``start`` into the source)."""

    kind: Literal["title", "clip", "photo", "end"]
    frames: int
    segment: Segment | None = None
    card: Card | None = None
    start: float = 0.0
    size: tuple[int, int] | None = None  # the source's upright size (clips and photos)
    sound: bool = False  # a clip whose own sound goes into the recap


@dataclass(frozen=True)
class Dropped:
    segment: Segment
    reason: str


@dataclass(frozen=True)
class RecapPlan:
    shots: tuple[Shot, ...]
    orientation: Orientation
    fps: int
    max_seconds: float
    dropped: tuple[Dropped, ...] = ()
    notes: tuple[str, ...] = ()  # why the plan looks the way it does (orientation, card length)

    @property
    def frames(self) -> int:
        return sum(shot.frames for shot in self.shots)

    @property
    def duration(self) -> float:
        return self.frames / self.fps

    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(shot.segment for shot in self.shots if shot.segment is not None)


@dataclass(frozen=True)
class RecapResult:
    path: Path
    duration: float  # seconds, as ffmpeg reads the output
    bytes: int
    width: int
    height: int
    segments: tuple[Segment, ...]
    video_kbps: int  # the bitrate of the encode that was kept
    encodes: int  # 1, or 2 when the first came out over budget
    loudness: Loudness | None = None  # the clips' sound as measured before the gain; None: silent


@dataclass(frozen=True)
class Loudness:
    """What loudnorm's first pass measured of the recap's sound track (before any gain)."""

    integrated: float  # LUFS
    true_peak: float  # dBTP
    loudness_range: float  # LU
    threshold: float  # LUFS, the relative gate
    offset: float  # LU, loudnorm's own correction for its second pass


# --- planning ------------------------------------------------------------------------------


@dataclass
class _Candidate:
    segment: Segment
    size: tuple[int, int]
    capacity: int  # frames the source can give (photos: as many as asked)
    order: int
    frames: int = 0
    sound: bool = False


def _photo_size(path: Path) -> tuple[int, int]:
    """The upright size of a photo from its header (the pixels are decoded only in render)."""
    with Image.open(path, formats=imaging.OPEN_FORMATS) as image:
        width, height = image.size
        # HEIF comes upright from libheif; its EXIF tag must not turn it twice (imaging.py).
        if image.format != "HEIF" and image.getexif().get(imaging.ORIENTATION) in (5, 6, 7, 8):
            return height, width
        return width, height


def _examine(segment: Segment, fps: int) -> tuple[tuple[int, int], int, bool] | str:
    """(upright size, frames available, has sound) of a segment, or why it cannot be used."""
    if segment.kind not in ("clip", "photo"):
        raise ValueError(f"segment kind must be clip or photo, not {segment.kind!r}")
    if segment.phase not in PHASES:
        raise ValueError(f"segment phase must be one of {', '.join(PHASES)}, not {segment.phase!r}")
    if segment.kind == "clip" and segment.container not in ffmpeg.DEMUXERS:
        raise ValueError(f"a clip needs its sniffed container, not {segment.container!r}")
    if not segment.path.is_file():
        return "its file is missing"
    size = segment.size
    if segment.kind == "photo":
        if size is None:
            try:
                size = _photo_size(segment.path)
            except (*imaging.DECODER_ERRORS, Image.DecompressionBombError):
                return "the photo could not be read"
        return size, 1 << 30, False
    if segment.duration <= 0:
        return "the clip has no length"
    sound = segment.has_audio
    if size is None or sound is None:
        assert segment.container is not None
        try:
            found = ffmpeg.probe(segment.path, segment.container)
        except (Invalid, ffmpeg.FfmpegError):
            return "the clip could not be read"
        size = size or found.display_size
        sound = found.audio_codec is not None if sound is None else sound
    # One frame of margin: a container's duration often counts a last frame that is not there.
    capacity = math.floor(segment.duration * fps) - 1
    if capacity < 1:
        return "the clip is shorter than one frame"
    return size, capacity, sound


def _orientation(sizes: Iterable[tuple[int, int]]) -> tuple[Orientation, str]:
    portrait = landscape = 0
    for width, height in sizes:
        portrait += height > width
        landscape += width > height
    # A tie goes to portrait: the recap is watched on a phone held upright.
    chosen: Orientation = "landscape" if landscape > portrait else "portrait"
    return chosen, (
        f"{chosen}: {portrait} portrait and {landscape} landscape inputs "
        "(the majority decides; a tie is portrait)"
    )


def _importance(candidate: _Candidate, representative: bool) -> float:
    """Higher is kept longer. Before and after are the story; during is the filler."""
    phase = {"before": 3.0, "after": 3.0, "staff_report": 2.0, "during": 1.0}[
        candidate.segment.phase
    ]
    # Moving pictures are what make it a video; photos are in the report page anyway.
    kind = 0.5 if candidate.segment.kind == "clip" else 0.0
    return phase + kind + (10.0 if representative else 0.0)


def _representatives(candidates: Sequence[_Candidate]) -> set[int]:
    """The first shot of each phase, and the last of "after" (the finished work)."""
    chosen: set[int] = set()
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.segment.phase not in seen:
            seen.add(candidate.segment.phase)
            chosen.add(candidate.order)
    afters = [c.order for c in candidates if c.segment.phase == "after"]
    if afters:
        chosen.add(afters[-1])
    return chosen


def _min_frames(candidate: _Candidate, fps: int) -> int:
    if candidate.segment.kind == "photo":
        return round(MIN_PHOTO_SECONDS * fps)
    return min(candidate.capacity, round(MIN_CLIP_SECONDS * fps))


def _share(clips: list[_Candidate], frames: int) -> int:
    """Give the clips ``frames`` between them, evenly, none longer than its source (water-fill).

    Returns the frames nobody could take (every clip got all it has).
    """
    pending = sorted(clips, key=lambda c: c.capacity)
    left = frames
    while pending:
        share = left // len(pending)
        if pending[0].capacity <= share:
            clip = pending.pop(0)
            clip.frames = clip.capacity
            left -= clip.capacity
            continue
        extra = left - share * len(pending)
        for i, clip in enumerate(sorted(pending, key=lambda c: c.order)):
            clip.frames = share + (1 if i < extra else 0)
        return 0
    return left


def plan(
    segments: Sequence[Segment],
    *,
    title: Card,
    end: Card,
    max_seconds: float = MAX_SECONDS,
    fps: int = FPS,
) -> RecapPlan:
    """Order, choose and time the recap's shots; the total never exceeds ``max_seconds``.

    Cards take 2.5 s each (2 s when time is short), photos 2.5 s (2–3 s), and the clips share
    the rest evenly, each cut from its middle and never longer than the clip. When the
    segments cannot all have their minimum, the least important are left out, and
    ``RecapPlan.dropped`` says which and why. ``Invalid`` when nothing usable is left.
    """
    total = math.floor(max_seconds * fps + 1e-6)
    card = round(CARD_SECONDS * fps)
    min_card = round(MIN_CARD_SECONDS * fps)
    if total < 2 * min_card + round(MIN_CLIP_SECONDS * fps):
        raise ValueError(
            f"max_seconds must leave room for two cards and one shot "
            f"(at least {2 * MIN_CARD_SECONDS + MIN_CLIP_SECONDS:g} s)"
        )
    dropped: list[Dropped] = []
    candidates: list[_Candidate] = []
    rank = {phase: i for i, phase in enumerate(PHASES)}
    ordered = sorted(enumerate(segments), key=lambda pair: (rank.get(pair[1].phase, 99), pair[0]))
    for order, (_, segment) in enumerate(ordered):
        examined = _examine(segment, fps)
        if isinstance(examined, str):
            dropped.append(Dropped(segment, f"{segment.path.name} left out: {examined}"))
            continue
        size, capacity, sound = examined
        candidates.append(_Candidate(segment, size, capacity, order, sound=sound))
    if not candidates:
        raise Invalid(
            "There is no photo or clip of this visit that a recap can be made from; "
            "upload at least one before or after photo or clip, then try again."
        )
    orientation, why = _orientation(c.size for c in candidates)
    notes = [why]

    def needed() -> int:
        return sum(_min_frames(c, fps) for c in candidates)

    if needed() > total - 2 * card:
        card = min_card
        notes.append(f"cards shortened to {MIN_CARD_SECONDS:g} s to make room")
    available = total - 2 * card
    while needed() > available:
        keep = _representatives(candidates)
        # The least important goes first; among equals, the one told latest.
        victim = min(candidates, key=lambda c: (_importance(c, c.order in keep), -c.order))
        candidates.remove(victim)
        segment = victim.segment
        dropped.append(
            Dropped(
                segment,
                (
                    f"{segment.path.name} ({segment.phase} {segment.kind}) left out: "
                    f"{len(candidates) + 1} photos and clips need at least "
                    f"{(needed() + _min_frames(victim, fps)) / fps:.1f} s, "
                    f"only {available / fps:.1f} s "
                    f"fit between the cards, and it mattered least"
                ),
            )
        )

    photos = [c for c in candidates if c.segment.kind == "photo"]
    clips = [c for c in candidates if c.segment.kind == "clip"]
    clip_floor = sum(_min_frames(c, fps) for c in clips)
    if photos:
        each = min(round(PHOTO_SECONDS * fps), (available - clip_floor) // len(photos))
        if not clips:
            each = min(round(MAX_PHOTO_SECONDS * fps), available // len(photos))
        for photo in photos:
            photo.frames = each
    left = _share(clips, available - sum(p.frames for p in photos)) if clips else 0
    # Short clips leave time over: photos may stay up to 3 s.
    top_up = round(MAX_PHOTO_SECONDS * fps)
    for photo in photos:
        extra = min(left, top_up - photo.frames)
        if extra > 0:
            photo.frames += extra
            left -= extra

    shots = [Shot(kind="title", frames=card, card=title)]
    for candidate in sorted(candidates, key=lambda c: c.order):
        segment = candidate.segment
        start = 0.0
        if segment.kind == "clip":
            # The middle of a phone clip: its first and last seconds are pressing record,
            # fumbling, turning the phone round.
            start = max(0.0, round((segment.duration - candidate.frames / fps) / 2, 3))
        shots.append(
            Shot(
                kind=segment.kind,
                frames=candidate.frames,
                segment=segment,
                start=start,
                size=candidate.size,
                sound=candidate.sound,
            )
        )
    shots.append(Shot(kind="end", frames=card, card=end))
    result = RecapPlan(
        shots=tuple(shots),
        orientation=orientation,
        fps=fps,
        max_seconds=max_seconds,
        dropped=tuple(dropped),
        notes=tuple(notes),
    )
    assert result.frames <= total, "the plan ran over max_seconds"
    return result


# --- still pictures ------------------------------------------------------------------------


def _wrap(text: str, font_size: int, width: int) -> list[str]:
    """``text`` broken by characters into lines no wider than ``width`` (long URLs)."""
    font = load_font(font_size)
    lines: list[str] = []
    current = ""
    for char in text:
        if current and font.getlength(current + char) > width:
            lines.append(current)
            current = char
        else:
            current += char
    if current:
        lines.append(current)
    return lines


def draw_card(card: Card, size: tuple[int, int]) -> Image.Image:
    """The card as an RGB picture of ``size``: the headline large, the rest below, centred."""
    width, height = size
    image = Image.new("RGB", size, card.background)
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    usable = round(width * 0.86)
    rows: list[tuple[str, int, bool]] = []  # (text, px, bold)
    for i, line in enumerate(card.lines):
        px = round(short * (0.095 if i == 0 else 0.062))
        floor = max(14, round(short * 0.035))
        while px > floor and load_font(px, bold=i == 0).getlength(line) > usable:
            px -= 1
        font = load_font(px, bold=i == 0)
        parts = [line] if font.getlength(line) <= usable else _wrap(line, px, usable)
        rows.extend((part, px, i == 0) for part in parts)
    gaps = [round(px * (0.9 if bold else 0.55)) for _, px, bold in rows]
    block = sum(round(px * 1.25) for _, px, _ in rows) + sum(gaps[:-1])
    y = (height - block) // 2
    bar_w, bar_h = round(short * 0.18), max(3, round(short * 0.012))
    draw.rectangle(
        ((width - bar_w) // 2, y - bar_h * 4, (width + bar_w) // 2, y - bar_h * 3), fill=card.accent
    )
    for (text, px, bold), gap in zip(rows, gaps, strict=True):
        line_h = round(px * 1.25)
        draw.text(
            (width // 2, y + line_h // 2),
            text,
            font=load_font(px, bold=bold),
            fill=card.ink,
            anchor="mm",
        )
        y += line_h + gap
    return image


def _fit(size: tuple[int, int], frame: tuple[int, int]) -> tuple[int, int]:
    """``size`` scaled to fit inside ``frame``, aspect kept, both sides even (for yuv420p)."""
    width, height = size
    scale = min(frame[0] / width, frame[1] / height)
    fitted_w = min(frame[0], max(2, round(width * scale / 2) * 2))
    fitted_h = min(frame[1], max(2, round(height * scale / 2) * 2))
    return fitted_w, fitted_h


def _overlay_image(path: Path, size: tuple[int, int]) -> Image.Image:
    with Image.open(path, formats=("PNG",)) as source:
        mark = source.convert("RGBA")
    if mark.size != size:
        mark = mark.resize(size, Image.Resampling.LANCZOS)
    return mark


def draw_photo(segment: Segment, frame: tuple[int, int]) -> Image.Image:
    """The photo whole, centred on a blurred, darkened fill of itself, with its overlay."""
    decoded = imaging.open_photo(segment.path, max_edge=max(frame))
    picture = decoded.image
    fitted = _fit(picture.size, frame)
    # The fill: the photo covering the frame, blurred at a small size (cheap, and smoother).
    small = (max(1, frame[0] // 8), max(1, frame[1] // 8))
    fill = ImageOps.fit(picture, small, Image.Resampling.BILINEAR)
    fill = fill.filter(ImageFilter.GaussianBlur(3)).resize(frame, Image.Resampling.BILINEAR)
    canvas = Image.blend(fill, Image.new("RGB", frame, (0, 0, 0)), 0.35)
    front = picture.resize(fitted, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if segment.overlay is not None:
        front = front.convert("RGBA")
        front.alpha_composite(_overlay_image(segment.overlay, fitted))
        front = front.convert("RGB")
    canvas.paste(front, ((frame[0] - fitted[0]) // 2, (frame[1] - fitted[1]) // 2))
    return canvas


# --- rendering -----------------------------------------------------------------------------


def video_kbps(budget_bytes: int, seconds: float) -> int:
    """The video bitrate that keeps ``seconds`` of H.264 in MP4 under ``budget_bytes``.

    With ``-maxrate`` equal to the bitrate and a one-second ``-bufsize``, x264 can spend at
    most the rate over the whole length plus one buffer: that is what is divided by.
    """
    payload = (budget_bytes - CONTAINER_BYTES) * (1 - RATE_SAFETY)
    return max(0, math.floor(payload * 8 / (seconds + VBV_SECONDS) / 1000))


def frame_size(orientation: Orientation, kbps: int, fps: int = FPS) -> tuple[int, int]:
    """The largest output size the bitrate carries (``FRAME_SIZES``), as (width, height)."""
    for long_edge, short_edge in FRAME_SIZES:
        if kbps * 1000 / (long_edge * short_edge * fps) >= MIN_BITS_PER_PIXEL:
            break
    if orientation == "portrait":
        return short_edge, long_edge
    return long_edge, short_edge


def _still_input(path: Path, fps: int) -> list[str]:
    # Only files we just drew; "-pattern_type none" so a name is never read as a sequence.
    return [
        "-protocol_whitelist",
        "file",
        "-f",
        "image2",
        "-pattern_type",
        "none",
        "-framerate",
        str(fps),
        "-i",
        str(path),
    ]


# Cards and photos are RGB; clips are tagged by their encoders. Everything is converted to
# BT.709 limited range and the output is tagged so, or players guess and cards shift colour.
_TO_709 = "out_color_matrix=bt709:out_range=tv"


def _samples(frames: int, fps: int) -> int:
    return frames * AUDIO_RATE // fps


def _clip_input(shot: Shot, fps: int, *, audio_only: bool = False) -> list[str]:
    """The arguments opening the cut of ``shot``'s clip (at the demuxer: only it is decoded)."""
    segment = shot.segment
    assert segment is not None and segment.container is not None
    # A frame more than needed is read; trim keeps the count exact whatever the source's timing.
    cut = ["-ss", f"{shot.start:.3f}", "-t", f"{shot.frames / fps + 1 / fps:.3f}"]
    return [
        *cut,
        *(["-vn"] if audio_only else []),
        *ffmpeg.input_args(segment.path, segment.container),
    ]


def _sound_chains(plan: RecapPlan, inputs: dict[int, int], out: str) -> list[str]:
    """The recap's sound track as filter chains ending in ``[out]``: each sounding clip's own
    sound cut to its frames, silence under cards, photos and silent clips, one mono track."""
    chains: list[str] = []
    labels: list[str] = []
    mono = f"aformat=sample_fmts=fltp:sample_rates={AUDIO_RATE}:channel_layouts=mono"
    for n, shot in enumerate(plan.shots):
        samples = _samples(shot.frames, plan.fps)
        if shot.sound and n in inputs:
            chains.append(
                f"[{inputs[n]}:a:0]aresample={AUDIO_RATE},{mono},asetpts=PTS-STARTPTS,"
                f"atrim=end_sample={samples},apad=whole_len={samples}[a{n}]"
            )
        else:
            chains.append(
                f"anullsrc=r={AUDIO_RATE}:cl=mono,atrim=end_sample={samples},{mono}[a{n}]"
            )
        labels.append(f"[a{n}]")
    chains.append(f"{''.join(labels)}concat=n={len(labels)}:v=0:a=1[{out}]")
    return chains


def _loudnorm(measured: Loudness | None) -> str:
    base = f"loudnorm=I={LOUDNESS_TARGET:g}:TP={TRUE_PEAK:g}:LRA={LOUDNESS_RANGE:g}"
    if measured is None:
        return f"{base}:print_format=json"
    return (
        f"{base}:measured_I={measured.integrated:.2f}:measured_TP={measured.true_peak:.2f}"
        f":measured_LRA={measured.loudness_range:.2f}:measured_thresh={measured.threshold:.2f}"
        f":offset={measured.offset:.2f}:linear=true:print_format=none"
    )


def has_sound(plan: RecapPlan) -> bool:
    """True when a clip of the plan carries sound (the recap then has a sound track)."""
    return any(shot.sound for shot in plan.shots)


def loudness(plan: RecapPlan, *, timeout: float = ffmpeg.DEFAULT_TIMEOUT) -> Loudness | None:
    """loudnorm's first pass over the recap's sound track: sound only, no picture decoded.

    None when no clip has sound, or what they have is silence (nothing to raise).
    """
    if not has_sound(plan):
        return None
    args: list[str] = []
    inputs: dict[int, int] = {}
    for n, shot in enumerate(plan.shots):
        if shot.sound:
            inputs[n] = len(inputs)
            args += _clip_input(shot, plan.fps, audio_only=True)
    chains = _sound_chains(plan, inputs, "mix")
    chains.append(f"[mix]{_loudnorm(None)}[measured]")
    done = ffmpeg.run(
        [*args, "-filter_complex", ";".join(chains), "-map", "[measured]", "-f", "null", "-"],
        timeout=timeout,
    )
    report = done.stderr[done.stderr.rfind("{") : done.stderr.rfind("}") + 1]
    try:
        values = json.loads(report)
        measured = Loudness(
            integrated=float(values["input_i"]),
            true_peak=float(values["input_tp"]),
            loudness_range=float(values["input_lra"]),
            threshold=float(values["input_thresh"]),
            offset=float(values["target_offset"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ffmpeg.FfmpegError("loudnorm printed no measurement", report[-300:]) from exc
    if not math.isfinite(measured.integrated) or measured.integrated < SILENT_BELOW:
        return None
    return measured


def build_command(
    plan: RecapPlan, frame: tuple[int, int], work: Path, *, sound: Loudness | None = None
) -> list[str]:
    """ffmpeg's inputs and filtergraph for ``plan`` at ``frame`` (stills drawn into ``work``).

    The picture is labelled ``[recap]``; with ``sound`` (the first pass's measurement) the
    clips' sound, brought to ``LOUDNESS_TARGET``, is ``[sound]``. The encoder arguments are
    added by the caller.
    """
    fps = plan.fps
    args: list[str] = []
    chains: list[str] = []
    labels: list[str] = []
    clip_inputs: dict[int, int] = {}
    overlays: dict[tuple[Path, tuple[int, int]], Path] = {}
    index = 0
    for n, shot in enumerate(plan.shots):
        label = f"s{n}"
        if shot.kind in ("title", "end", "photo"):
            if shot.card is not None:
                still = draw_card(shot.card, frame)
            else:
                assert shot.segment is not None
                still = draw_photo(shot.segment, frame)
            path = work / f"still-{n}.png"
            still.save(path, "PNG", compress_level=1)
            args += _still_input(path, fps)
            chains.append(
                f"[{index}:v]scale={_TO_709},format=yuv420p,setsar=1,"
                f"loop=loop={shot.frames - 1}:size=1:start=0,setpts=N/({fps}*TB)[{label}]"
            )
            index += 1
        else:
            segment = shot.segment
            assert segment is not None and segment.container is not None
            assert shot.size is not None
            # Fitted whole, aspect kept: a clip of the other orientation is letterboxed or
            # pillarboxed on black, never stretched or cropped.
            fitted = _fit(shot.size, frame)
            args += _clip_input(shot, fps)
            clip = index
            clip_inputs[n] = clip
            index += 1
            chain = (
                f"[{clip}:v]fps={fps},trim=end_frame={shot.frames},setpts=PTS-STARTPTS,"
                f"scale={fitted[0]}:{fitted[1]}:{_TO_709},setsar=1,format=yuv420p"
            )
            if segment.overlay is not None:
                # One watermark usually serves every clip of a visit: scaled once per size.
                mark = overlays.get((segment.overlay, fitted))
                if mark is None:
                    mark = overlays[segment.overlay, fitted] = work / f"overlay-{n}.png"
                    _overlay_image(segment.overlay, fitted).save(mark, "PNG", compress_level=1)
                args += _still_input(mark, fps)
                # One overlay frame, repeated by overlay's eof_action=repeat: drawn once.
                chains.append(f"{chain}[c{n}]")
                chain = f"[c{n}][{index}:v]overlay=0:0:format=yuv420"
                index += 1
            if fitted != frame:
                chain += (
                    f",pad={frame[0]}:{frame[1]}:{(frame[0] - fitted[0]) // 2}:"
                    f"{(frame[1] - fitted[1]) // 2}:color=black"
                )
            chains.append(f"{chain}[{label}]")
        labels.append(f"[{label}]")
    # The frames carry the tags the encoder writes: its -color_* options alone do not
    # override what the frames say (ffmpeg wrote "bt709/unknown/unknown" without this).
    chains.append(
        f"{''.join(labels)}concat=n={len(labels)}:v=1:a=0,"
        "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv[recap]"
    )
    maps = ["-map", "[recap]"]
    if sound is not None:
        chains += _sound_chains(plan, clip_inputs, "mix")
        # The AAC encoder pads its last frame of 1024 samples: the track stops on a whole
        # frame at or before the picture's end, so the recap is never longer than planned.
        end = _samples(plan.frames, fps) // 1024 * 1024
        chains.append(
            f"[mix]{_loudnorm(sound)},aresample={AUDIO_RATE},atrim=end_sample={end}[sound]"
        )
        maps += ["-map", "[sound]"]
    return [*args, "-filter_complex", ";".join(chains), *maps]


def encoder_args(kbps: int, fps: int = FPS, *, sound: bool = False) -> list[str]:
    """H.264 at ``kbps``, held to it by the VBV, for MMS players (High profile, yuv420p, BT.709);
    with ``sound``, mono AAC at ``AUDIO_KBPS`` (the sound chosen and why: ``AUDIO_KBPS``)."""
    audio = (
        ["-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-ac", "1", "-ar", str(AUDIO_RATE)]
        if sound
        else ["-an"]
    )
    return [
        *audio,
        "-c:v",
        "libx264",
        "-preset",
        X264_PRESET,
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-r",
        str(fps),
        "-b:v",
        f"{kbps}k",
        "-maxrate",
        f"{kbps}k",
        "-bufsize",
        f"{math.ceil(kbps * VBV_SECONDS)}k",
        "-colorspace",
        "bt709",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-color_range",
        "tv",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
    ]


def render(
    plan: RecapPlan,
    dest: Path,
    *,
    budget_bytes: int = DEFAULT_BUDGET,
    timeout: float = ffmpeg.DEFAULT_TIMEOUT,
) -> RecapResult:
    """Render ``plan`` to ``dest`` in one ffmpeg run; the file is never over ``budget_bytes``.

    The bitrate comes from the budget and the length (``video_kbps``), the frame size from
    the bitrate (``frame_size``). Should x264 still overshoot, the same graph is encoded once
    more at a bitrate lowered by the overshoot; a second miss raises ``TooLarge``, as does a
    budget too small for any watchable video. ``timeout`` applies to each ffmpeg run.
    ``dest`` appears only when complete (written beside it, then renamed).
    """
    seconds = plan.duration
    sound = loudness(plan, timeout=timeout)
    # The sound's bytes come out of the budget before the picture's bitrate is worked out.
    audio_bytes = math.ceil(AUDIO_KBPS * 1000 / 8 * (seconds + VBV_SECONDS)) if sound else 0
    kbps = video_kbps(budget_bytes - audio_bytes, seconds)
    if kbps < MIN_VIDEO_KBPS:
        raise TooLarge(
            f"A {seconds:.0f}-second recap cannot fit in {budget_bytes:,} bytes; "
            "allow a larger media size for this provider or a shorter recap."
        )
    frame = frame_size(plan.orientation, kbps, plan.fps)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".recap-", dir=dest.parent) as tmp:
        work = Path(tmp)
        graph = build_command(plan, frame, work, sound=sound)
        out = work / "recap.mp4"
        encodes = 0
        while True:
            encodes += 1
            ffmpeg.run(
                [*graph, *encoder_args(kbps, plan.fps, sound=sound is not None), str(out)],
                timeout=timeout,
            )
            size = out.stat().st_size
            if size <= budget_bytes:
                break
            if encodes == 2:
                raise TooLarge(
                    f"The recap came out at {size:,} bytes, over the {budget_bytes:,}-byte "
                    "limit even after a second, smaller encode; use fewer clips or allow a "
                    "larger media size for this provider."
                )
            fixed = CONTAINER_BYTES + audio_bytes
            over = (size - fixed) / max(1, budget_bytes - fixed)
            kbps = max(1, math.floor(kbps / over * RETRY_SAFETY))
        probed = ffmpeg.probe(out, "mp4", timeout=min(timeout, 30.0))
        if (
            probed.display_size != frame
            or probed.video_codec != "h264"
            or (probed.duration > plan.max_seconds + 0.5 / plan.fps)
        ):
            raise ffmpeg.FfmpegError(
                "the recap ffmpeg wrote is not what was planned",
                f"{probed.display_size} {probed.video_codec} {probed.duration:.2f} s; "
                f"planned {frame} h264 ≤ {plan.max_seconds:g} s",
            )
        os.replace(out, dest)
    return RecapResult(
        path=dest,
        duration=probed.duration,
        bytes=size,
        width=frame[0],
        height=frame[1],
        segments=plan.segments,
        video_kbps=kbps,
        encodes=encodes,
        loudness=sound,
    )
