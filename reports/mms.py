"""What a report becomes as one MMS for a given provider, or as an SMS with a link.

Pure: no database, no files. The caller (reports.service) says what it has, most important
first; this module decides what fits each provider's limits and in which order the parts go.

Provider profiles (DESIGN.md, "Provider profiles"):

- ``twilio``: up to 10 media, 5 MB for the body and the media together, body up to 1,600
  characters; image/jpeg and video/mp4 are among the types Twilio accepts for every carrier.
- ``console``: the embedded provider, the same limits as Twilio (it shows what would be sent).
- ``aliyun`` (数字短信): at most 9 frames and 1,900 KB in all; each frame is one picture or
  video plus its text, in order (a SMIL presentation); a message of one kind of media only is
  refused, so it must hold at least one image and text.
- ``sms``: no MMS at all: the text with the report's short link.

The limits are the providers' own declared capabilities (``messaging.providers.capabilities``),
so this stays in step with what the sender enforces. Aliyun's adapter sends plain SMS today;
its profile here describes 数字短信, which the report is made ready for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import quoteattr

from messaging.providers import capabilities

TEXT_TYPE = "text/plain; charset=utf-8"
BOOK_HINT = "回复1预约"
ALIYUN_FRAME_MS = 5000
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "video/mp4": "mp4"}


@dataclass(frozen=True)
class MmsProfile:
    name: str
    supports_mms: bool
    max_media: int  # pictures and videos (Aliyun: frames)
    max_total_bytes: int  # text and media together; 0 when there is no MMS
    max_body_chars: int
    image_types: frozenset[str] = frozenset()
    video_types: frozenset[str] = frozenset()
    frames: bool = False  # Aliyun: ordered frames, each a picture or video with its text
    must_mix: bool = False  # Aliyun: a message of a single kind of media is refused


def _declared(name: str, *, supports_mms: bool | None = None) -> MmsProfile:
    """The profile a provider's declared capabilities describe."""
    limits = capabilities(name)
    return MmsProfile(
        name=name,
        supports_mms=limits.supports_mms if supports_mms is None else supports_mms,
        max_media=limits.max_media,
        max_total_bytes=limits.max_total_bytes,
        max_body_chars=limits.max_body_chars,
        image_types=limits.image_types,
        video_types=limits.video_types,
        frames=limits.frames,
        must_mix=limits.must_mix,
    )


TWILIO = _declared("twilio")
CONSOLE = _declared("console")
ALIYUN = _declared("aliyun", supports_mms=True)  # 数字短信, not yet the adapter's SendSms
ALIYUN_MAX_TOTAL_BYTES = ALIYUN.max_total_bytes
ALIYUN_MAX_FRAMES = ALIYUN.max_media
SMS = MmsProfile(name="sms", supports_mms=False, max_media=0, max_total_bytes=0, max_body_chars=500)
PROFILES = {profile.name: profile for profile in (TWILIO, CONSOLE, ALIYUN, SMS)}


def profile_for(provider_name: str) -> MmsProfile:
    """The profile of a provider by its name (HUIFANG_SMS_PROVIDER's values, and ``sms``)."""
    try:
        return PROFILES[provider_name.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"no MMS profile for provider {provider_name!r}; known: {known}") from None


@dataclass(frozen=True)
class MediaCandidate:
    """A picture or video the report could send, with what it weighs."""

    name: str  # stable within a report: "recap", "pair-1", "staff_report", "long"
    kind: Literal["image", "video"]
    content_type: str
    bytes: int
    url: str
    caption: str  # the frame's text on Aliyun: "客厅 服务前后对比"


@dataclass(frozen=True)
class MmsSource:
    """What the report has to say and show; ``media`` is most important first."""

    signature: str  # the company's signature, without 【】
    summary: str  # one line of what was done: "11月20日，李秀兰为您完成了空调清洗（客厅）"
    link: str  # the report page, absolute
    media: Sequence[MediaCandidate] = ()


@dataclass(frozen=True)
class MmsPart:
    kind: Literal["text", "image", "video"]
    name: str
    content_type: str
    bytes: int
    url: str | None = None
    text: str | None = None
    frame: int | None = None  # Aliyun: the frame (from 1) this part belongs to


@dataclass(frozen=True)
class DroppedPart:
    name: str
    bytes: int
    reason: str


@dataclass(frozen=True)
class MmsPayload:
    profile: str
    mode: Literal["mms", "sms"]  # "sms": text and link only
    parts: tuple[MmsPart, ...]
    total_bytes: int
    max_total_bytes: int
    max_media: int
    dropped: tuple[DroppedPart, ...]
    smil: str | None  # Aliyun: the order and pairing of the frames
    sms_text: str  # what to send when MMS cannot go (or the number takes only SMS)

    @property
    def media_urls(self) -> tuple[str, ...]:
        return tuple(p.url for p in self.parts if p.url is not None)


def _plain(text: str) -> str:
    """No 【】 outside the signature: Chinese carriers read them as a second signature."""
    return text.replace("【", "[").replace("】", "]").strip()


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def sms_text(source: MmsSource, *, max_chars: int = 500) -> str:
    """Signature first, one line of what was done, the link, and how to book."""
    head = f"【{_plain(source.signature)}】"
    tail = f"，服务报告：{source.link} {BOOK_HINT}"
    return head + _fit(_plain(source.summary), max_chars - len(head) - len(tail)) + tail


def _body_text(source: MmsSource, profile: MmsProfile) -> str:
    head = f"【{_plain(source.signature)}】"
    tail = f"。完整报告：{source.link} {BOOK_HINT}"
    room = profile.max_body_chars - len(head) - len(tail)
    return head + _fit(_plain(source.summary), room) + tail


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _kb(size: int) -> str:
    return f"{size / 1000:,.0f} KB"


def mms_parts(source: MmsSource, profile: MmsProfile) -> MmsPayload:
    """The ordered parts of one message for ``profile``, inside its byte and count limits.

    Media are taken in the order given (most important first) while they fit; a part that
    does not fit is dropped with the reason, so less important parts give way first and a
    large part never pushes out everything after it. On Aliyun the most important picture
    is taken before anything else, since a message without one would be refused.
    """
    fallback = sms_text(source, max_chars=profile.max_body_chars)
    if not profile.supports_mms:
        return _sms_only(
            source,
            profile,
            fallback,
            f"{profile.name} sends text only; the link opens the pictures",
        )

    dropped: list[DroppedPart] = []
    usable: list[MediaCandidate] = []
    for media in source.media:
        allowed = profile.image_types if media.kind == "image" else profile.video_types
        if media.content_type not in allowed:
            dropped.append(
                DroppedPart(
                    media.name, media.bytes, f"{profile.name} does not take {media.content_type}"
                )
            )
        elif media.bytes <= 0:
            dropped.append(DroppedPart(media.name, media.bytes, "the file is empty"))
        else:
            usable.append(media)

    if profile.frames:
        opening = f"【{_plain(source.signature)}】{_plain(source.summary)}"
        closing = f"完整报告：{source.link} {BOOK_HINT}"
        # Each frame's text is its caption; the first also opens, the last also closes.
        text_cost = _size(opening) + _size(closing) + 2  # the two line breaks
    else:
        body = _body_text(source, profile)
        text_cost = _size(body)

    def cost(media: MediaCandidate) -> int:
        return media.bytes + (_size(_plain(media.caption)) + 1 if profile.frames else 0)

    taken: list[MediaCandidate] = []
    used = text_cost
    order = list(usable)
    if profile.must_mix:
        first_image = next(
            (m for m in usable if m.kind == "image" and used + cost(m) <= profile.max_total_bytes),
            None,
        )
        if first_image is None:
            reason = (
                f"no picture fits {profile.name}'s {_kb(profile.max_total_bytes)}, and a "
                "message without one is refused; send the link instead"
            )
            return _sms_only(source, profile, fallback, reason, earlier=dropped)
        order.remove(first_image)
        order.insert(0, first_image)
    for media in order:
        if len(taken) >= profile.max_media:
            dropped.append(
                DroppedPart(
                    media.name,
                    media.bytes,
                    f"{profile.name} takes at most {profile.max_media} "
                    f"{'frames' if profile.frames else 'media'}",
                )
            )
        elif used + cost(media) > profile.max_total_bytes:
            dropped.append(
                DroppedPart(
                    media.name,
                    media.bytes,
                    f"{_kb(media.bytes)} would take the message to {_kb(used + cost(media))}, "
                    f"over {profile.name}'s {_kb(profile.max_total_bytes)}",
                )
            )
        else:
            taken.append(media)
            used += cost(media)
    # Shown in the order given, whatever order they were chosen in.
    position = {id(m): i for i, m in enumerate(source.media)}
    taken.sort(key=lambda m: position[id(m)])

    parts: list[MmsPart] = []
    smil: str | None = None
    if profile.frames:
        for number, media in enumerate(taken, start=1):
            lines = [_plain(media.caption)]
            if number == 1:
                lines.insert(0, opening)
            if number == len(taken):
                lines.append(closing)
            text = "\n".join(line for line in lines if line)
            parts.append(
                MmsPart(
                    kind=media.kind,
                    name=media.name,
                    content_type=media.content_type,
                    bytes=media.bytes,
                    url=media.url,
                    frame=number,
                )
            )
            parts.append(
                MmsPart(
                    kind="text",
                    name=f"text-{number}",
                    content_type=TEXT_TYPE,
                    bytes=_size(text),
                    text=text,
                    frame=number,
                )
            )
        smil = _smil(parts)
    else:
        parts.append(
            MmsPart(kind="text", name="body", content_type=TEXT_TYPE, bytes=_size(body), text=body)
        )
        parts.extend(
            MmsPart(kind=m.kind, name=m.name, content_type=m.content_type, bytes=m.bytes, url=m.url)
            for m in taken
        )
    return MmsPayload(
        profile=profile.name,
        mode="mms",
        parts=tuple(parts),
        total_bytes=sum(p.bytes for p in parts),
        max_total_bytes=profile.max_total_bytes,
        max_media=profile.max_media,
        dropped=tuple(dropped),
        smil=smil,
        sms_text=fallback,
    )


def _sms_only(
    source: MmsSource,
    profile: MmsProfile,
    fallback: str,
    reason: str,
    *,
    earlier: Sequence[DroppedPart] = (),
) -> MmsPayload:
    dropped = list(earlier)
    named = {d.name for d in dropped}
    dropped.extend(
        DroppedPart(m.name, m.bytes, reason) for m in source.media if m.name not in named
    )
    part = MmsPart(
        kind="text", name="sms", content_type=TEXT_TYPE, bytes=_size(fallback), text=fallback
    )
    return MmsPayload(
        profile=profile.name,
        mode="sms",
        parts=(part,),
        total_bytes=part.bytes,
        max_total_bytes=profile.max_total_bytes,
        max_media=profile.max_media,
        dropped=tuple(dropped),
        smil=None,
        sms_text=fallback,
    )


def _smil(parts: Sequence[MmsPart]) -> str:
    """A SMIL presentation of the frames: each ``par`` shows one picture or video and its text.

    Sources are named by frame (``1.jpg``, ``1.txt``); the sender uploads each part under
    that name.
    """
    lines = [
        "<smil>",
        "<head><layout>",
        '<root-layout width="100%" height="100%"/>',
        '<region id="Image" left="0" top="0" width="100%" height="75%" fit="meet"/>',
        '<region id="Text" left="0" top="75%" width="100%" height="25%" fit="scroll"/>',
        "</layout></head>",
        "<body>",
    ]
    frames = sorted({p.frame for p in parts if p.frame is not None})
    for frame in frames:
        lines.append(f'<par dur="{ALIYUN_FRAME_MS}ms">')
        for part in (p for p in parts if p.frame == frame):
            if part.kind == "text":
                lines.append(f'<text src={quoteattr(f"{frame}.txt")} region="Text"/>')
            else:
                tag = "img" if part.kind == "image" else "video"
                ext = EXTENSIONS.get(part.content_type, "bin")
                lines.append(f'<{tag} src={quoteattr(f"{frame}.{ext}")} region="Image"/>')
        lines.append("</par>")
    lines += ["</body>", "</smil>"]
    return "\n".join(lines)
