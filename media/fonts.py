"""The CJK font that watermarks and labels are set in, found once per process.

Lookup order: ``HUIFANG_FONT_PATH``, then a system font that fontconfig offers for Simplified
Chinese, then the Noto Sans CJK collection shipped by the ``manimgx-fonts-cjk`` wheel. Every
candidate is checked for real Chinese glyphs: fontconfig always answers something (often DejaVu),
and a Latin-only font would print boxes instead of characters. When nothing fits, the media
worker refuses to start (``ensure_cjk_font``) rather than watermark photos with tofu.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from huifang.settings import get_settings

ENV_VAR = "HUIFANG_FONT_PATH"
WHEEL = "manimgx-fonts-cjk"
WHEEL_MODULE = "manimgx_fonts_cjk"
WHEEL_FILE = "NotoSansCJK-VF.otf.ttc"
# What the media worker must be able to print before it takes any work.
PROBE = "服务前后厨房客厅"
# Code points no font assigns a glyph to: whatever a font draws for them is its .notdef box.
UNASSIGNED = ("\U0010fffd", "\uffff")
BOLD_WEIGHT = 700
REGULAR_WEIGHT = 400
FC_TIMEOUT_SECONDS = 5
# The Simplified Chinese face of a collection: "Noto Sans CJK SC", "Source Han Sans CN", "… GB".
_SIMPLIFIED = re.compile(r"\b(SC|CN|GB|Simplified)\b|简", re.IGNORECASE)

HOW_TO_FIX = (
    f"set {ENV_VAR} to a CJK font file (e.g. NotoSansCJK-Regular.ttc), "
    "install one system-wide (apt-get install fonts-noto-cjk), "
    f"or pip install {WHEEL}"
)


class FontMissing(RuntimeError):
    """No font that prints Chinese was found; the message says what to install or set."""


@dataclass(frozen=True)
class FontSpec:
    path: str
    index: int
    source: str  # "HUIFANG_FONT_PATH" | "fontconfig" | "manimgx-fonts-cjk"


# --- glyph coverage ------------------------------------------------------------------------


def _glyph(char: str, font: ImageFont.FreeTypeFont) -> bytes:
    """The pixels ``font`` draws for one character, cropped to their own box."""
    size = int(font.size) * 2 + 8
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).text((4, 4), char, font=font, fill=255)
    box = canvas.getbbox()
    if box is None:
        return b""
    return repr(box[2] - box[0]).encode() + b":" + canvas.crop(box).tobytes()


def renders_real_glyphs(text: str, font: ImageFont.FreeTypeFont) -> bool:
    """True when every visible character of ``text`` has its own glyph in ``font``.

    A missing character is drawn as the font's .notdef (a box, or nothing): compare each
    character with what the font draws for unassigned code points, and with the others.
    """
    missing = {_glyph(char, font) for char in UNASSIGNED}
    seen: dict[bytes, str] = {}
    for char in dict.fromkeys(ch for ch in text if not ch.isspace()):
        drawn = _glyph(char, font)
        if not drawn or drawn in missing:
            return False
        if seen.setdefault(drawn, char) != char:
            return False  # two different characters drawn alike: a fallback box
    return True


# --- lookup --------------------------------------------------------------------------------


def _faces(path: str) -> Iterator[tuple[int, str]]:
    """(index, family name) of each face in a font file or collection."""
    index = 0
    while True:
        try:
            font = ImageFont.truetype(path, 16, index=index)
        except OSError:
            return
        yield index, " ".join(part for part in font.getname() if part)
        index += 1
        if index > 64:  # a collection of fonts is never this large; stop on a broken file
            return


def _simplified_face(path: str, preferred: int = 0) -> int:
    """The index of the Simplified Chinese face of a collection (``preferred`` otherwise)."""
    faces = dict(_faces(path))
    if preferred in faces and _SIMPLIFIED.search(faces[preferred]):
        return preferred
    for index, name in faces.items():
        if _SIMPLIFIED.search(name):
            return index
    return preferred


def _covers_chinese(path: str, index: int) -> bool:
    try:
        font = _open(path, index, 48, bold=False)
    except OSError:
        return False
    return renders_real_glyphs(PROBE, font)


def _from_env() -> FontSpec | None:
    # The variable itself, else the settings (which also read a .env file).
    configured = get_settings().font_path
    value = os.environ.get(ENV_VAR, "").strip() or (str(configured) if configured else "")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise FontMissing(f"{ENV_VAR}={value} is not a font file that exists; {HOW_TO_FIX}")
    index = _simplified_face(str(path))
    if not _covers_chinese(str(path), index):
        raise FontMissing(
            f"{ENV_VAR}={value} does not contain Chinese glyphs (服务前 would print as boxes); "
            f"{HOW_TO_FIX}"
        )
    return FontSpec(path=str(path), index=index, source=ENV_VAR)


def _from_fontconfig() -> FontSpec | None:
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603  (fixed arguments, no shell)
            [fc_match, "-f", "%{file}:%{index}", ":lang=zh-cn"],
            capture_output=True,
            text=True,
            timeout=FC_TIMEOUT_SECONDS,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    file, _, index_text = result.stdout.strip().rpartition(":")
    if not file or not Path(file).is_file():
        return None
    try:
        index = int(index_text)
    except ValueError:
        index = 0
    index = _simplified_face(file, preferred=index)
    if not _covers_chinese(file, index):
        return None  # fontconfig's best guess is a Latin font: no CJK font is installed
    return FontSpec(path=file, index=index, source="fontconfig")


def _from_wheel() -> FontSpec | None:
    try:
        spec = importlib.util.find_spec(WHEEL_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / WHEEL_FILE
        if path.is_file():
            index = _simplified_face(str(path))
            if _covers_chinese(str(path), index):
                return FontSpec(path=str(path), index=index, source=WHEEL)
    return None


@functools.cache
def find_cjk_font() -> FontSpec:
    """The font to print Chinese with: HUIFANG_FONT_PATH, then fontconfig, then the wheel.

    A HUIFANG_FONT_PATH that is missing or has no Chinese is an error, not a reason to fall
    back: somebody chose that font on purpose.
    """
    for lookup in (_from_env, _from_fontconfig, _from_wheel):
        found = lookup()
        if found is not None:
            return found
    raise FontMissing(f"no font with Chinese glyphs found; {HOW_TO_FIX}")


def _open(path: str, index: int, size: int, *, bold: bool) -> ImageFont.FreeTypeFont:
    font = ImageFont.truetype(path, size, index=index)
    weight = BOLD_WEIGHT if bold else REGULAR_WEIGHT
    try:
        axes = font.get_variation_axes()
    except (OSError, NotImplementedError):
        return font  # a static font: its weight is what it is
    values: list[float] = []
    for axis in axes:
        low, high, default = axis.get("minimum"), axis.get("maximum"), axis.get("default")
        if axis.get("name") in (b"Weight", "Weight"):
            values.append(
                min(
                    max(weight, low if low is not None else weight),
                    high if high is not None else weight,
                )
            )
        else:
            values.append(default if default is not None else 0)
    # Variable collections default to their lightest instance (Noto CJK VF: Thin).
    with contextlib.suppress(OSError, NotImplementedError, ValueError):
        font.set_variation_by_axes(values)
    return font


@functools.lru_cache(maxsize=64)
def load_font(size: int, *, bold: bool = True) -> ImageFont.FreeTypeFont:
    """The CJK font at ``size`` px, bold by default. Shared: do not change its variation."""
    spec = find_cjk_font()
    return _open(spec.path, spec.index, max(1, int(size)), bold=bold)


def ensure_cjk_font() -> FontSpec:
    """What the media worker calls before taking work: a CJK font exists and really renders.

    Raises FontMissing with what to install or set, so the worker stops with a clear message
    instead of stamping boxes on customers' photos.
    """
    spec = find_cjk_font()
    for bold in (True, False):
        if not renders_real_glyphs(PROBE, load_font(48, bold=bold)):
            raise FontMissing(
                f"{spec.path} (from {spec.source}) does not render {PROBE}; {HOW_TO_FIX}"
            )
    return spec


def clear_caches() -> None:
    """Forget the font found and the fonts loaded (tests; a changed HUIFANG_FONT_PATH)."""
    find_cjk_font.cache_clear()
    load_font.cache_clear()
