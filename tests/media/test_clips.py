"""Clips: normalizing with real ffmpeg, and clips through the upload API and the media queue."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageChops, ImageStat
from sqlalchemy import delete

import huifang.db
from huifang import storage, worker
from huifang.app import create_app
from huifang.db import set_database
from huifang.errors import Invalid, TooLarge
from media import clips, ffmpeg, samples, watermark
from media import service as media_service
from media.models import Media
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.factories import make_customer
from tests.media.conftest import upload
from visits import service as visits

LOCATION = "+31.2304+121.4737/"

FACTS = watermark.WatermarkFacts(
    company="洁净家政",
    service="空调清洗",
    phase="服务前",
    received_at=dt.datetime(2026, 11, 20, 2, 15, tzinfo=dt.UTC),
    timezone="Asia/Shanghai",
    code="K7Q2A-9XMA3",
    staff="李秀兰",
    area="客厅",
)


# --- sample clips, made once per run -------------------------------------------------------


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def portrait_clip(clip_dir: Path) -> Path:
    """Coded 1280×720 with a 90° display matrix: how phones store a clip filmed upright."""
    path = clip_dir / "portrait.mp4"
    samples.room_clip(path, seconds=2, size=(1280, 720), rotation=90, seed=1)
    return path


@pytest.fixture(scope="session")
def hd_clip(clip_dir: Path) -> Path:
    """1080p at 60 fps with a location and a capture time in the container."""
    path = clip_dir / "hd.mp4"
    samples.room_clip(
        path,
        seconds=2,
        size=(1920, 1080),
        fps=60,
        seed=2,
        metadata={"location": LOCATION, "creation_time": "2026-11-20T10:15:00Z"},
    )
    return path


@pytest.fixture(scope="session")
def small_clip(clip_dir: Path) -> Path:
    path = clip_dir / "small.mp4"
    samples.room_clip(path, seconds=2, size=(640, 360), seed=3)
    return path


@pytest.fixture(scope="session")
def long_clip(clip_dir: Path) -> Path:
    """70 s, tiny and at 10 fps so the suite stays fast; only its length matters."""
    path = clip_dir / "long.mp4"
    samples.room_clip(path, seconds=70, size=(160, 90), fps=10, seed=4)
    return path


@pytest.fixture(scope="session")
def secret(clip_dir: Path) -> tuple[Path, bytes]:
    """A local file no upload may ever get ffmpeg to read."""
    content = b"HUIFANG-SECRET-7f3a9c1e-d0b2-4e55"
    path = clip_dir / "server-secret.txt"
    path.write_bytes(content + b"\n")
    return path, content


def _frame(path: Path, at: float, *, autorotate: bool = True) -> Image.Image:
    """The decoded frame at ``at`` seconds, as ffmpeg shows it (upright unless told not to)."""
    out = path.with_name(f"{path.stem}-{at:.2f}-{autorotate}.png")
    ffmpeg.run(
        [
            "-ss",
            str(at),
            *([] if autorotate else ["-noautorotate"]),
            *ffmpeg.input_args(path, "mp4"),
            "-frames:v",
            "1",
            "-f",
            "image2",
            "-update",
            "1",
            "-c:v",
            "png",
            str(out),
        ]
    )
    with Image.open(out) as image:
        return image.convert("RGB")


def _info(path: Path) -> str:
    return ffmpeg.run(["-i", str(path)], check=False).stderr


def _top_level_boxes(data: bytes) -> list[str]:
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        elif size == 0:
            size = len(data) - offset
        boxes.append(kind.decode("latin-1"))
        offset += size
    return boxes


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


# --- normalize, without a database ---------------------------------------------------------


def test_a_portrait_clip_comes_out_upright_with_no_rotation_left(portrait_clip, tmp_path):
    source = clips.probe(portrait_clip, "mp4")
    assert (source.width, source.height, source.rotation) == (1280, 720, 90)  # the fixture
    assert "rotation of" in _info(portrait_clip)

    out = tmp_path / "portrait-out.mp4"
    result = clips.normalize(portrait_clip, "mp4", out, max_seconds=60, overlay=None)

    made = clips.probe(out, "mp4")
    assert (made.width, made.height) == (720, 1280) == (result.width, result.height)
    assert made.height > made.width and made.rotation == 0
    assert "rotation of" not in _info(out) and "Display Matrix" not in _info(out)
    # Turned the right way: the stored picture turned clockwise, not counter-clockwise.
    coded = _frame(portrait_clip, 1.0, autorotate=False)
    shown = _frame(out, 1.0)
    clockwise = coded.rotate(-90, expand=True).resize(shown.size)
    counter = coded.rotate(90, expand=True).resize(shown.size)
    assert _mean_difference(shown, clockwise) < 6
    assert _mean_difference(shown, counter) > 4 * _mean_difference(shown, clockwise)


def test_a_1080p_clip_is_made_small_h264_aac_constant_rate_faststart_and_bare(hd_clip, tmp_path):
    assert LOCATION in _info(hd_clip) and b"loci" in hd_clip.read_bytes()  # MP4's place box
    out = tmp_path / "hd-out.mp4"
    result = clips.normalize(hd_clip, "mp4", out, max_seconds=60, overlay=None)

    made = clips.probe(out, "mp4")
    assert (made.width, made.height) == (1280, 720)
    assert (made.video_codec, made.audio_codec) == ("h264", "aac")
    assert made.fps == 30 and abs(made.duration - 2.0) < 0.1
    assert (result.trimmed, result.has_audio, result.bytes) == (False, True, out.stat().st_size)
    # Constant frame rate: every frame lasts exactly 1/30 s (60 fps in, 30 out).
    lines = ffmpeg.run(["-i", str(out), "-map", "0:v", "-f", "framemd5", "-"]).stdout
    pts = sorted(
        int(line.split(",")[1]) for line in lines.splitlines() if line and not line.startswith("#")
    )
    assert len(pts) == 60
    assert len({b - a for a, b in itertools.pairwise(pts)}) == 1
    # +faststart: the index (moov) comes before the media data (mdat).
    boxes = _top_level_boxes(out.read_bytes())
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    # No location, capture time or other tags the phone put in.
    info = _info(out)
    assert "location" not in info and "creation_time" not in info
    data = out.read_bytes()
    assert b"loci" not in data and b"\xa9xyz" not in data and LOCATION.encode() not in data


def test_the_watermark_is_burned_into_the_frames(small_clip, tmp_path):
    found = clips.probe(small_clip, "mp4")
    size = clips.output_size(found.display_size)
    mark = watermark.overlay(size, FACTS)
    plain, marked = tmp_path / "plain.mp4", tmp_path / "marked.mp4"
    clips.normalize(small_clip, "mp4", plain, max_seconds=60, overlay=None)
    clips.normalize(small_clip, "mp4", marked, max_seconds=60, overlay=mark)

    a, b = _frame(plain, 1.0), _frame(marked, 1.0)
    box = mark.getchannel("A").getbbox()
    assert box is not None and box[1] > size[1] // 2  # bottom-left by default
    inside = _mean_difference(a.crop(box), b.crop(box))
    # Away from the block (and from encoder bleed around its edges) the frames agree.
    away = (0, 0, size[0], max(0, box[1] - 32))
    outside = _mean_difference(a.crop(away), b.crop(away))
    assert inside > 15, inside
    assert outside < 3, outside


def test_a_clip_over_the_cap_is_trimmed(small_clip, tmp_path):
    out = tmp_path / "trimmed.mp4"
    result = clips.normalize(small_clip, "mp4", out, max_seconds=1.0, overlay=None)
    assert result.trimmed and abs(result.original_duration - 2.0) < 0.05
    assert result.duration <= 1.1
    assert clips.probe(out, "mp4").duration <= 1.1


def test_a_poster_is_a_jpeg_of_the_clip(small_clip, tmp_path):
    poster = clips.poster(small_clip, tmp_path / "poster.jpg", at=1.0)
    with Image.open(tmp_path / "poster.jpg") as image:
        assert image.format == "JPEG" and image.size == (640, 360)
        assert (poster.width, poster.height) == image.size


def test_running_out_of_time_is_a_sentence_about_trimming(small_clip, tmp_path):
    with pytest.raises(Invalid, match=r"took too long.*trim it on the phone"):
        clips.normalize(
            small_clip, "mp4", tmp_path / "late.mp4", max_seconds=60, overlay=None, timeout=0.01
        )
    assert not (tmp_path / "late.mp4").exists()


def test_a_cut_off_clip_is_refused_whether_its_index_is_first_or_last(small_clip, tmp_path):
    whole = small_clip.read_bytes()
    assert _top_level_boxes(whole)[-1] == "moov"  # the sample keeps its index at the end
    index_last = tmp_path / "index-last.mp4"
    index_last.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(Invalid, match="damaged or only partly uploaded"):
        clips.normalize(index_last, "mp4", tmp_path / "a.mp4", max_seconds=60, overlay=None)

    faststart = tmp_path / "faststart.mp4"
    clips.normalize(small_clip, "mp4", faststart, max_seconds=60, overlay=None)
    index_first = tmp_path / "index-first.mp4"
    index_first.write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    with pytest.raises(Invalid, match="partly uploaded"):
        clips.normalize(index_first, "mp4", tmp_path / "b.mp4", max_seconds=60, overlay=None)


def test_an_8k_clip_is_refused_before_it_is_decoded(small_clip, monkeypatch):
    eight_k = ffmpeg.Probe(
        duration=2.0,
        width=7680,
        height=4320,
        rotation=0,
        fps=30.0,
        video_codec="hevc",
        audio_codec="aac",
    )
    monkeypatch.setattr(ffmpeg, "probe", lambda *args, **kwargs: eight_k)
    with pytest.raises(TooLarge, match="set the camera to 4K or 1080p"):
        clips.probe(small_clip, "mp4")


def test_output_size_fits_720p_either_way_up_and_is_even():
    assert clips.output_size((3840, 2160)) == (1280, 720)
    assert clips.output_size((1080, 1920)) == (720, 1280)
    assert clips.output_size((1440, 1080)) == (960, 720)  # 4:3: the short edge decides
    assert clips.output_size((640, 360)) == (640, 360)  # never enlarged
    assert all(v % 2 == 0 for v in clips.output_size((641, 359)))


# --- through the API (SQLite and PostgreSQL) -----------------------------------------------


def _process(session, media_id: int) -> None:
    media_service.process_media(session=session, media_id=media_id)
    session.flush()


def _read(client, account, media_id: int) -> dict:
    response = client.get(f"/v1/media/{media_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


def _path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def _upload_clip(client, account, visit_id: int, data: bytes, name: str = "VID_0001.mp4"):
    return upload(client, account, visit_id, data, filename=name, content_type="video/mp4")


def test_a_clip_is_accepted_processed_and_served(client, session, account, visit, small_clip):
    response = _upload_clip(client, account, visit.id, small_clip.read_bytes())
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["kind"], body["status"], body["mime"]) == ("clip", "processing", "video/mp4")

    _process(session, body["id"])
    media = _read(client, account, body["id"])
    assert media["status"] == "ready", media["failure_reason"]
    assert (media["width"], media["height"]) == (640, 360)
    assert abs(media["duration_seconds"] - 2.0) < 0.1
    assert media["trimmed_from_seconds"] is None and media["trimmed_note"] is None
    kinds = {r["kind"]: r for r in media["renditions"]}
    assert set(kinds) == {"video", "poster", "thumb"}
    video, poster = kinds["video"], kinds["poster"]
    assert video["url"].endswith(".mp4") and video["content_type"] == "video/mp4"
    assert poster["url"].endswith(".jpg") and kinds["thumb"]["content_type"] == "image/jpeg"

    served = client.get(_path_of(video["url"]))
    assert served.status_code == 200
    assert served.headers["content-type"] == "video/mp4"
    assert len(served.content) == video["bytes"]
    assert _top_level_boxes(served.content)[:2] == ["ftyp", "moov"]
    picture = client.get(_path_of(poster["url"]))
    assert picture.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(picture.content)).size == (640, 360)
    # Each link answers only under its own kind's extension.
    assert client.get(_path_of(video["url"]).replace(".mp4", ".jpg")).status_code == 404
    assert client.get(_path_of(video["url"]).removesuffix(".mp4")).status_code == 404
    assert client.get(_path_of(poster["url"]).replace(".jpg", ".mp4")).status_code == 404
    # The verification page shows the clip's watermarked poster.
    page = client.get(f"/v/{media['verification_code']}")
    assert page.status_code == 200 and f'src="{_path_of(poster["url"])}"' in page.text


def test_a_clip_over_the_company_cap_is_trimmed_and_says_so(
    client, session, account, visit, long_clip
):
    assert account.tenant.clip_max_seconds == 60
    created = _upload_clip(client, account, visit.id, long_clip.read_bytes()).json()
    _process(session, created["id"])
    media = _read(client, account, created["id"])
    assert media["status"] == "ready", media["failure_reason"]
    assert media["duration_seconds"] <= 60.1
    assert abs(media["trimmed_from_seconds"] - 70) < 0.2
    assert media["trimmed_note"] == "trimmed to 60 s of 70 s"
    video = next(r for r in media["renditions"] if r["kind"] == "video")
    served = client.get(_path_of(video["url"]))
    out = Path(storage.staging_dir()) / "trimmed-check.mp4"
    out.write_bytes(served.content)
    try:
        assert clips.probe(out, "mp4").duration <= 60.1
    finally:
        out.unlink()


def _hostile_files(secret_path: Path) -> dict[str, bytes]:
    where = str(secret_path).encode()
    ftyp = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    return {
        "playlist": (
            b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nfile://"
            + where
            + b"\n#EXTINF:10.0,\n"
            + where
            + b"\n#EXT-X-ENDLIST\n"
        ),
        "ffconcat": b"ffconcat version 1.0\nfile '" + where + b"'\nduration 10\n",
        "ftyp-then-ffconcat": ftyp + b"ffconcat version 1.0\nfile '" + where + b"'\n",
        "ftyp-then-playlist": ftyp + b"\n#EXTM3U\n#EXTINF:10.0,\n" + where + b"\n#EXT-X-ENDLIST\n",
    }


def test_playlists_and_concat_lists_never_read_a_local_file(
    client, session, account, visit, secret
):
    secret_path, content = secret
    assert secret_path.read_bytes().startswith(content)  # there is something to steal
    outcomes = {}
    for name, data in _hostile_files(secret_path).items():
        assert content not in data
        response = _upload_clip(client, account, visit.id, data, name=f"{name}.mp4")
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert response.status_code in (415, 422)
            assert len(response.json()["detail"]) > 20
            outcomes[name] = response.status_code
            continue
        _process(session, response.json()["id"])
        media = _read(client, account, response.json()["id"])
        assert media["status"] == "failed", name
        assert "upload it" in media["failure_reason"]
        assert media["renditions"] == []
        outcomes[name] = "failed"
    assert outcomes["playlist"] == 415
    assert outcomes["ftyp-then-ffconcat"] == outcomes["ftyp-then-playlist"] == "failed"
    for path in storage.root().rglob("*"):
        if path.is_file():
            assert content not in path.read_bytes(), path


def test_a_truncated_clip_ends_failed_with_a_sentence(client, session, account, visit, small_clip):
    whole = small_clip.read_bytes()
    response = _upload_clip(client, account, visit.id, whole[: len(whole) // 2])
    assert response.status_code == 202, response.text
    _process(session, response.json()["id"])
    media = _read(client, account, response.json()["id"])
    assert media["status"] == "failed"
    assert "partly uploaded" in media["failure_reason"]
    assert media["renditions"] == [] and media["duration_seconds"] is None


def test_a_file_without_pictures_ends_failed(client, session, account, visit, clip_dir):
    sound = clip_dir / "sound-only.mp4"
    if not sound.exists():
        ffmpeg.run(
            [
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=300:duration=2",
                "-c:a",
                "aac",
                "-f",
                "mp4",
                str(sound),
            ]
        )
    response = _upload_clip(client, account, visit.id, sound.read_bytes(), name="voice.mp4")
    assert response.status_code == 202, response.text
    _process(session, response.json()["id"])
    media = _read(client, account, response.json()["id"])
    assert media["status"] == "failed" and "could not be read" in media["failure_reason"]


def test_a_clip_being_processed_is_not_taken_for_lost(session, account, visit, small_clip):
    now = dt.datetime.now(dt.UTC)
    rows = []
    for kind, minutes in (("clip", 5), ("clip", 9), ("photo", 5)):
        row = Media(
            tenant_id=account.tenant.id,
            visit_id=visit.id,
            kind=kind,
            phase="before",
            status="processing",
            original_path="originals/x.mp4",
            sha256=f"{kind}{minutes}".ljust(64, "0"),
            bytes=1,
            mime="video/mp4",
            received_at=now,
            verification_code=f"TEST{kind[:2]}{minutes:02d}".upper(),
        )
        session.add(row)
        session.flush()
        row.updated_at = now - dt.timedelta(minutes=minutes)
        rows.append(row)
    session.flush()
    stuck = set(media_service.stuck_media(session=session, now=now))
    assert rows[0].id not in stuck  # a clip's ffmpeg run may still be going
    assert rows[1].id in stuck and rows[2].id in stuck


# --- the media queue in embedded mode ------------------------------------------------------


@pytest.fixture
def company(sqlite_database):
    """A committed company with a visit, removed afterwards."""
    with sqlite_database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="短片家政", signature="短片家政")
        _, key = tenancy.create_api_key(session=session, tenant=tenant)
        customer = make_customer(session, tenant, name="王女士", phone="13800138000")
        visit = visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=customer.id,
            service_type="deep_cleaning",
            areas=["客厅"],
        )
        ids = (tenant.id, visit.id)
    yield SimpleNamespace(headers={"Authorization": f"Bearer {key}"}), ids[1]
    with sqlite_database.session() as session:
        session.execute(delete(Tenant).where(Tenant.id == ids[0]))


@pytest.mark.serial
def test_embedded_mode_processes_a_portrait_clip_on_the_queue(
    sqlite_database, company, portrait_clip
):
    account, visit_id = company
    set_database(sqlite_database)
    try:
        with (
            worker.EmbeddedWorker(beat=False),
            TestClient(create_app(database=sqlite_database)) as client,
        ):
            created = _upload_clip(client, account, visit_id, portrait_clip.read_bytes())
            assert created.status_code == 202, created.text
            deadline = time.monotonic() + 60
            while True:
                media = _read(client, account, created.json()["id"])
                if media["status"] != "processing" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert media["status"] == "ready", media
            assert (media["width"], media["height"]) == (720, 1280)
            kinds = {r["kind"]: r for r in media["renditions"]}
            assert set(kinds) == {"video", "poster", "thumb"}
            assert kinds["poster"]["height"] > kinds["poster"]["width"]
            served = client.get(_path_of(kinds["video"]["url"]))
            assert served.status_code == 200
            assert served.headers["content-type"] == "video/mp4"
            assert len(served.content) == kinds["video"]["bytes"]
            # Players ask for ranges (Safari always does before it plays).
            part = client.get(_path_of(kinds["video"]["url"]), headers={"Range": "bytes=0-99"})
            assert part.status_code == 206 and part.content == served.content[:100]
    finally:
        huifang.db._database = None
