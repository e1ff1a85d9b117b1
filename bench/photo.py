"""Photo ingest against plain decoding, in the same run (DESIGN.md, Targets).

    .venv/bin/python bench/photo.py [--photos 8] [--no-icc]

Builds a set of 12 MP JPEGs stored with EXIF Orientation 6 (portrait, as phones write
them) from the corpus's iPhone-like sample when ../shared is present, else synthetic, in
a temporary directory. For each: the ingest our media worker does (decode at reduced
scale, orient, sRGB, watermark, display + MMS + thumbnail JPEGs) and the floor, Pillow
decoding the same file at full size. Prints ms per photo, the ratio and the peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageFilter

from media import imaging, renditions, watermark

CORPUS_SAMPLE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "corpus"
    / "images"
    / "derived_iphone_like_4032x3024_orient6.jpg"
)


def make_photos(directory: Path, count: int, *, keep_icc: bool) -> list[Path]:
    if CORPUS_SAMPLE.exists():
        base = Image.open(CORPUS_SAMPLE)
        icc = base.info.get("icc_profile") if keep_icc else None
        base = base.convert("RGB")
    else:
        base = Image.effect_noise((4032, 3024), 40).convert("RGB").filter(ImageFilter.BLUR)
        icc = None
    paths = []
    rng = random.Random(7)
    for i in range(count):
        variant = base.rotate(rng.uniform(-2, 2), expand=False) if i else base
        exif = Image.Exif()
        exif[0x0112] = 6
        exif.get_ifd(0x8769)[0x9003] = "2026:11:20 10:15:00"
        out = io.BytesIO()
        variant.save(out, "JPEG", quality=85, exif=exif, icc_profile=icc)
        path = directory / f"phone-{i}.jpg"
        path.write_bytes(out.getvalue())
        paths.append(path)
    return paths


FACTS = watermark.WatermarkFacts(
    company="洁家家政",
    service="空调清洗",
    phase="服务前",
    received_at=dt.datetime(2026, 11, 23, 6, 5, tzinfo=dt.UTC),
    timezone="Asia/Shanghai",
    code="K7Q2A-9XMA3",
    staff="李秀兰",
    area="客厅",
)


def ingest(path: Path) -> None:
    decoded = imaging.open_photo(path, max_edge=renditions.DISPLAY_EDGE)
    marked = watermark.apply(renditions.fit(decoded.image, renditions.DISPLAY_EDGE), FACTS)
    renditions.standard_set(
        marked, captured_at=decoded.captured_at, icc_profile=decoded.icc_profile
    )


def floor(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


def timed(fn, paths: list[Path], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        for path in paths:
            started = time.perf_counter()
            fn(path)
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-icc",
        action="store_true",
        help="strip the Display P3 profile (as most Android phones write sRGB)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_photos(Path(tmp), args.photos, keep_icc=not args.no_icc)
        ingest(paths[0])  # warm up: font loading, ICC transform cache
        floor(paths[0])
        # Interleave the two measurements so machine noise hits both alike.
        ours, base = [], []
        for _ in range(args.rounds):
            ours.append(timed(ingest, paths, 1))
            base.append(timed(floor, paths, 1))
        ours_ms, base_ms = statistics.median(ours), statistics.median(base)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    profile = (
        "no ICC" if args.no_icc else "Display P3 ICC" if CORPUS_SAMPLE.exists() else "synthetic"
    )
    print(f"{args.photos} photos, 4032x3024 stored with Orientation 6, {profile}")
    print(
        f"ingest 12 MP: {ours_ms:.0f} ms/photo; floor full decode: {base_ms:.0f} ms/photo; "
        f"ratio {ours_ms / base_ms:.2f}x; peak RSS {rss_mb:.0f} MB"
    )


if __name__ == "__main__":
    main()
