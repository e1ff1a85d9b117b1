"""The storage backends: local disk and an S3 bucket on a loopback moto server, same contract."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from huifang import downloads, storage
from huifang.errors import NotFound
from huifang.settings import get_settings
from tests.s3 import Bucket
from tests.s3 import s3_bucket as s3_bucket
from tests.s3 import s3_server as s3_server
from tests.s3 import s3_storage as s3_storage

NOW = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> Iterator[str]:
    """Each backend in turn, configured through the settings as in production."""
    if request.param == "s3":
        request.getfixturevalue("s3_storage")
    else:
        monkeypatch.setenv("HUIFANG_MEDIA_ROOT", str(tmp_path / "media"))
        monkeypatch.setenv("HUIFANG_STORAGE", "local")
        get_settings.cache_clear()
        storage.reset()
    yield request.param
    monkeypatch.undo()
    get_settings.cache_clear()
    storage.reset()


def _staged(data: bytes) -> Path:
    path = storage.staging_dir() / f"upload-{os.urandom(4).hex()}"
    path.write_bytes(data)
    return path


def test_files_go_in_and_come_out_whole(store, tmp_path):
    assert storage.backend().name == store
    key = storage.new_relative_path("originals", 7, ".jpg", now=NOW)
    assert key.startswith("originals/7/2026/12/") and key.endswith(".jpg")
    staged = _staged(b"photo-bytes" * 1000)
    storage.adopt(staged, key)
    assert not staged.exists()  # adopted: the staged upload is gone either way
    assert storage.exists(key) and storage.size(key) == 11_000
    assert storage.read_bytes(key) == b"photo-bytes" * 1000
    assert b"".join(storage.backend().open(key, start=5, end=14)) == b"-bytesphot"

    copy = storage.local_copy(key, tmp_path)
    assert copy.read_bytes() == b"photo-bytes" * 1000
    if store == "s3":
        assert copy.parent == tmp_path  # a download into the caller's scratch directory
    else:
        assert copy == storage.resolve(key)  # the stored file itself

    small = storage.new_relative_path("renditions", 7, ".png", now=NOW)
    storage.write_bytes(small, b"\x89PNG...")
    storage.remove(key)
    storage.remove(key)  # twice: a missing file is not an error
    storage.remove(None)
    assert not storage.exists(key) and storage.size(key) is None
    assert storage.read_bytes(small) == b"\x89PNG..."
    with pytest.raises(FileNotFoundError):
        storage.local_copy(key, tmp_path)


@pytest.mark.parametrize(
    "bad",
    ["../etc/passwd", "/etc/passwd", "originals/../../x", "staging/upload-1", "", "originals"],
)
def test_names_not_made_by_us_are_refused(store, bad):
    with pytest.raises(ValueError):
        storage.write_bytes(bad, b"x")
    if bad:  # remove("") and remove(None) mean "no file", as for a column left empty
        with pytest.raises(ValueError):
            storage.remove(bad)
    assert storage.size(bad) is None


def test_a_big_file_is_streamed_not_held_in_memory(store, tmp_path):
    # 64 MB: eight multipart parts in S3. Neither way keeps the file in memory: what is
    # held at once is bounded by the parts in flight (4 × 8 MB), not by the file.
    big = tmp_path / "clip.mp4"
    with big.open("wb") as out:
        for _ in range(64):
            out.write(os.urandom(1024 * 1024))
    key = storage.new_relative_path("renditions", 3, ".mp4", now=NOW)
    tracemalloc.start()
    try:
        storage.put_file(big, key)
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        copy = storage.local_copy(key, scratch)
        streamed = sum(len(chunk) for chunk in storage.backend().open(key))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert big.exists()  # put_file copies; only adopt lets the source go
    assert copy.stat().st_size == streamed == 64 * 1024 * 1024
    assert peak < 32 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a 64 MB file"


def test_stored_files_are_served_with_ranges(store):
    key = storage.new_relative_path("renditions", 1, ".mp4", now=NOW)
    data = bytes(range(256)) * 400
    storage.write_bytes(key, data)
    app = FastAPI()

    @app.get("/f/it")
    def serve(request: Request):  # type: ignore[no-untyped-def]
        return downloads.stored_file(
            key,
            media_type="video/mp4",
            headers={"Cache-Control": "public, max-age=60"},
            range_header=request.headers.get("range"),
        )

    with TestClient(app, raise_server_exceptions=False) as client:
        whole = client.get("/f/it")
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-type"] == "video/mp4"
        assert whole.headers["cache-control"] == "public, max-age=60"
        part = client.get("/f/it", headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == data[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
        tail = client.get("/f/it", headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == data[-10:]
        beyond = client.get("/f/it", headers={"Range": f"bytes={len(data) + 5}-"})
        assert beyond.status_code == 416
    with pytest.raises(NotFound):  # the app's error handler answers 404 with the sentence
        downloads.stored_file(key.replace(".mp4", "0.mp4"), media_type="video/mp4", headers={})


def test_s3_keys_are_the_relative_names(s3_storage: Bucket):
    key = storage.new_relative_path("logos", 9, ".png", now=NOW)
    storage.write_bytes(key, b"logo")
    assert s3_storage.objects() == {key}
    assert s3_storage.read(key) == b"logo"
    assert storage.backend().download_url(key, content_type="image/png", expires_in=60) is None
    with pytest.raises(RuntimeError):  # no local path exists for a stored file in S3
        storage.resolve(key)


def test_s3_presigned_urls_when_asked(s3_storage: Bucket, monkeypatch):
    import httpx

    monkeypatch.setenv("HUIFANG_S3_PRESIGN", "true")
    get_settings.cache_clear()
    storage.reset()
    key = storage.new_relative_path("originals", 9, ".jpg", now=NOW)
    storage.write_bytes(key, b"original")
    url = storage.backend().download_url(
        key, content_type="image/jpeg", expires_in=300, filename="media-1.jpg"
    )
    assert url and url.startswith(s3_storage.endpoint) and "Signature" in url
    fetched = httpx.get(url)
    assert fetched.status_code == 200 and fetched.content == b"original"
    assert "media-1.jpg" in fetched.headers["content-disposition"]


def test_settings_refuse_s3_without_a_bucket_outside_development(monkeypatch):
    from huifang.settings import Settings

    with pytest.raises(ValueError, match="HUIFANG_S3_BUCKET"):
        Settings(
            _env_file=None,
            environment="production",
            secret_key="k" * 40,
            storage="s3",
        )


# --- pieces of files arriving in pieces (resumable uploads) --------------------------------


def _arriving(store: str) -> list[str]:
    """Keys of pieces still arriving: multipart uploads begun in the bucket and neither
    completed nor aborted (with local files, the temporary files beside the pieces)."""
    backend = storage.backend()
    if store == "s3":
        client, bucket = backend.client, backend.bucket  # type: ignore[attr-defined]
        return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return [str(path) for path in storage.local_pieces().root().rglob(".in-*")]


def _written(token: str, start: int, data: bytes, *, chunk: int = 64 * 1024):
    writer = storage.pieces().writer(token, start)
    for at in range(0, len(data), chunk):
        if writer.write(data[at : at + chunk]):
            writer.flush()
    writer.close()
    return writer


def test_pieces_are_kept_by_token_and_offset_and_read_back(store):
    pieces = storage.pieces()
    token = "Tok3n_piece-test0001"
    pieces.prepare(token)
    assert pieces.sizes(token) == {}
    _written(token, 0, b"a" * 1000).keep()
    _written(token, 1000, b"b" * 500).keep()
    assert pieces.sizes(token) == {0: 1000, 1000: 500}
    assert b"".join(pieces.read(token, 1000)) == b"b" * 500
    assert b"".join(pieces.read(token, 0, limit=64)) == b"a" * 64
    assert b"".join(pieces.read(token, 0, limit=0)) == b""

    # Written but not kept: not a piece. Kept again at an offset: replaces the one there.
    dropped = _written(token, 1500, b"c" * 10)
    assert pieces.sizes(token) == {0: 1000, 1000: 500}
    assert len(_arriving(store)) == 1
    dropped.discard()
    dropped.discard()  # twice: nothing to drop is not an error
    assert _arriving(store) == []
    _written(token, 1000, b"d" * 700).keep()
    assert pieces.sizes(token) == {0: 1000, 1000: 700}
    assert b"".join(pieces.read(token, 1000)) == b"d" * 700
    _written(token, 1700, b"").keep()  # no bytes: no piece
    assert pieces.sizes(token) == {0: 1000, 1000: 700}
    assert _arriving(store) == []

    other = "Other_token_piece002"
    _written(other, 0, b"x" * 10).keep()
    arriving = _written(token, 1700, b"e" * 10)  # bytes still arriving as the upload goes
    pieces.remove(token)
    pieces.remove(token)  # twice: nothing there is not an error
    assert pieces.sizes(token) == {} and pieces.sizes(other) == {0: 10}
    assert _arriving(store) == []  # what was arriving went too
    arriving.discard()  # the PATCH that was sending it gives up: no error either
    with pytest.raises(ValueError):
        pieces.writer("../escape", 0)


def test_pieces_untouched_for_a_while_are_found_idle(store):
    pieces = storage.pieces()
    kept, arriving = "Idle_token_kept00001", "Idle_token_arriving1"
    _written(kept, 0, b"k" * 100).keep()
    writer = _written(arriving, 0, b"a" * 100)  # begun, never kept: a process that died
    now = dt.datetime.now(dt.UTC)
    later = now + dt.timedelta(days=1)
    assert set(pieces.idle(before=later, limit=100)) == {kept, arriving}
    assert len(pieces.idle(before=later, limit=1)) == 1
    recent = pieces.idle(before=now - dt.timedelta(hours=1), limit=100)
    # moto says every multipart upload began in 2010, so there the one arriving looks old.
    assert recent == ([] if store == "local" else [arriving])
    for token in (kept, arriving):
        pieces.remove(token)
    writer.discard()
    assert pieces.idle(before=later, limit=100) == []


def test_a_big_piece_goes_to_the_bucket_in_parts_never_whole_in_memory(s3_storage: Bucket):
    # 40 MB in one piece, as a program sending a clip in one PATCH: five parts of 8 MB.
    # What is held at once is about one part, not the piece.
    from huifang.s3storage import PART_BYTES

    token = "Big_piece_token00001"
    writer = storage.pieces().writer(token, 0)
    hasher = hashlib.sha256()
    tracemalloc.start()
    try:
        for _ in range(40 * 16):
            chunk = os.urandom(64 * 1024)
            hasher.update(chunk)
            if writer.write(chunk):
                writer.flush()
        writer.close()
        writer.keep()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    key = f"resumable/{token}/{0:012d}"
    assert s3_storage.objects() == {key}
    head = s3_storage.client.head_object(Bucket=s3_storage.name, Key=key, PartNumber=1)
    assert head["PartsCount"] == 5 and head["ContentLength"] == PART_BYTES
    read = hashlib.sha256()
    for chunk in storage.pieces().read(token, 0):
        read.update(chunk)
    assert read.hexdigest() == hasher.hexdigest()
    assert peak < 1.5 * PART_BYTES, f"peak {peak / 1e6:.1f} MB for a 40 MB piece"
    assert not any(path.is_file() for path in storage.root().rglob("*"))  # nothing on disk


def test_pieces_go_one_by_one_where_the_store_refuses_a_batch_delete(
    s3_storage: Bucket, monkeypatch
):
    # Some S3-compatible stores answer DeleteObjects from a current botocore with
    # MissingContentMD5; the pieces must go all the same.
    from botocore.exceptions import ClientError

    token = "Batchless_store_0001"
    for start in (0, 10, 20):
        _written(token, start, b"p" * 10).keep()
    client = storage.backend().client  # type: ignore[attr-defined]

    def refuse(**kwargs):  # type: ignore[no-untyped-def]
        error = {"Code": "MissingContentMD5", "Message": "Missing required header: Content-Md5."}
        raise ClientError({"Error": error}, "DeleteObjects")

    monkeypatch.setattr(client, "delete_objects", refuse)
    storage.pieces().remove(token)
    assert s3_storage.objects() == set()
