"""Resumable uploads (tus 1.0) with HUIFANG_STORAGE=s3: the pieces live in the bucket, not on
the API host that took them, so any host takes the next piece.

Against moto's S3 server on loopback. The two-host test runs a second API host in a process
of its own (its own scratch directory; the same PostgreSQL, Redis and bucket) beside the
one in this process, and sends them alternate pieces of one file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from huifang import storage
from huifang.app import create_app
from huifang.db import utcnow
from huifang.errors import NotFound
from huifang.settings import get_settings
from media import resumable
from media.models import Media, ResumableUpload
from tests.media.conftest import phone_jpeg
from tests.media.test_resumable import (
    OCTETS,
    TUS,
    _patch_then_drop,
    head,
    media_count,
    metadata,
    offset_of,
    opened,
    patch,
    token,
)
from tests.s3 import Bucket, company_with_visit, host_process
from tests.s3 import s3_bucket as s3_bucket
from tests.s3 import s3_server as s3_server
from tests.s3 import s3_storage as s3_storage


def pieces_in(bucket: Bucket, upload_token: str) -> dict[int, bytes]:
    """The pieces of an upload kept in the bucket, by start offset."""
    folder = f"resumable/{upload_token}/"
    return {
        int(key[len(folder) :]): bucket.read(key)
        for key in bucket.objects()
        if key.startswith(folder)
    }


def arriving(bucket: Bucket) -> list[str]:
    """Multipart uploads begun and neither completed nor aborted."""
    answer = bucket.client.list_multipart_uploads(Bucket=bucket.name)
    return [item["Key"] for item in answer.get("Uploads", [])]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_pieces_live_in_the_bucket_until_the_file_is_whole(
    s3_storage: Bucket, client, session, account, visit
):
    data = phone_jpeg(size=(1200, 900))
    location = opened(client, account, visit.id, data, phase="after", area="厨房")
    upload_token = token(location)
    cuts = [0, 100, len(data) // 2, len(data)]
    for start, end in itertools.pairwise(cuts):
        answer = patch(client, account, location, start, data[start:end])
        assert answer.status_code == 204, answer.text
        if end < len(data):
            kept = pieces_in(s3_storage, upload_token)
            assert kept == {s: data[s:e] for s, e in itertools.pairwise(cuts) if e <= end}
            assert offset_of(client, account, location) == end
    media = session.get(Media, int(answer.headers["upload-media-id"]))
    assert media is not None and media.bytes == len(data)
    assert media.sha256 == hashlib.sha256(data).hexdigest()
    assert s3_storage.read(media.original_path) == data  # the stored original, whole
    assert pieces_in(s3_storage, upload_token) == {}  # the pieces left the bucket
    assert arriving(s3_storage) == []
    assert s3_storage.objects() == {media.original_path}
    # This host kept nothing: no piece, no assembled copy.
    assert files_under(storage.root()) == []


def test_a_connection_dropped_mid_piece_keeps_exactly_the_bytes_that_arrived(
    s3_storage: Bucket, app, client, session, account, visit
):
    data = phone_jpeg(size=(1600, 1200))
    location = opened(client, account, visit.id, data)
    assert patch(client, account, location, 0, data[:1000]).status_code == 204
    assert _patch_then_drop(app, account, location, 1000, data[1000:3000]) == 204
    assert offset_of(client, account, location) == 3000
    assert pieces_in(s3_storage, token(location)) == {0: data[:1000], 1000: data[1000:3000]}
    assert arriving(s3_storage) == []
    answer = patch(client, account, location, 3000, data[3000:])
    assert answer.status_code == 204, answer.text
    media = session.get(Media, int(answer.headers["upload-media-id"]))
    assert media is not None and s3_storage.read(media.original_path) == data
    assert media_count(session, visit.id) == 1


def test_expiry_removes_the_pieces_from_the_bucket(
    s3_storage: Bucket, client, session, account, visit
):
    data = phone_jpeg(size=(400, 300))
    location = opened(client, account, visit.id, data)
    assert patch(client, account, location, 0, data[:100]).status_code == 204
    assert pieces_in(s3_storage, token(location)) == {0: data[:100]}
    upload = session.scalars(
        select(ResumableUpload).where(ResumableUpload.token == token(location))
    ).one()
    upload.expires_at = utcnow() - dt.timedelta(seconds=1)
    session.flush()
    assert head(client, account, location).status_code == 410
    assert patch(client, account, location, 100, data[100:]).status_code == 410
    assert arriving(s3_storage) == []  # the refused piece's bytes did not stay either

    now = utcnow()
    assert upload.id in resumable.sweepable(session=session, now=now)
    resumable.remove(session=session, upload_id=upload.id, now=now)
    assert pieces_in(s3_storage, token(location)) == {0: data[:100]}  # not before the commit
    session.commit()
    assert s3_storage.objects() == set()
    assert head(client, account, location).status_code == 404


def test_termination_removes_the_pieces_and_a_piece_still_arriving(
    s3_storage: Bucket, client, session, account, visit
):
    data = phone_jpeg(size=(400, 300))
    location = opened(client, account, visit.id, data)
    assert patch(client, account, location, 0, data[:150]).status_code == 204
    # Another PATCH is sending the next piece as the phone gives up on the file.
    settings = get_settings()
    opening = resumable.open_piece(
        session=session,
        tenant_id=account.tenant.id,
        token=token(location),
        offset=150,
        now=utcnow(),
    )
    receiver = resumable.Receiver(
        opening=opening, photo_max=settings.photo_max_bytes, clip_max=settings.clip_max_bytes
    )
    receiver.begin()
    receiver.feed(data[150:400])
    receiver.end()
    assert len(arriving(s3_storage)) == 1

    response = client.delete(location, headers={**account.headers, **TUS})
    assert response.status_code == 204
    assert s3_storage.objects() == set() and arriving(s3_storage) == []
    with pytest.raises(NotFound):  # the late piece is told the upload is gone
        resumable.record_piece(session=session, receiver=receiver, now=utcnow())
    receiver.discard()
    assert s3_storage.objects() == set()


def test_refused_bytes_leave_nothing_in_the_bucket(
    s3_storage: Bucket, client, session, account, visit
):
    data = phone_jpeg(size=(400, 300))
    location = opened(client, account, visit.id, data)
    assert patch(client, account, location, 0, data[:100]).status_code == 204
    past = patch(client, account, location, 100, data[100:] + b"extra bytes")
    assert past.status_code == 413, past.text
    assert pieces_in(s3_storage, token(location)) == {0: data[:100]}
    assert arriving(s3_storage) == []

    over = opened(client, account, visit.id, b"x" * (get_settings().photo_max_bytes + 1))
    refused = patch(client, account, over, 0, phone_jpeg(size=(64, 64)))
    assert refused.status_code == 413 and "photos" in refused.json()["detail"]
    assert pieces_in(s3_storage, token(over)) == {} and arriving(s3_storage) == []


def test_the_sweep_finishes_a_stalled_upload_from_the_bucket(
    s3_storage: Bucket, client, session, account, visit
):
    data = phone_jpeg(size=(500, 400))
    location = opened(client, account, visit.id, data)
    assert patch(client, account, location, 0, data[:300]).status_code == 204
    settings = get_settings()
    now = utcnow()
    opening = resumable.open_piece(
        session=session, tenant_id=account.tenant.id, token=token(location), offset=300, now=now
    )
    receiver = resumable.Receiver(
        opening=opening, photo_max=settings.photo_max_bytes, clip_max=settings.clip_max_bytes
    )
    receiver.begin()
    receiver.feed(data[300:])
    receiver.end()
    upload = resumable.record_piece(session=session, receiver=receiver, now=now)
    # ... and the request died here, before the handover; the sweep runs on a worker.
    later = now + resumable.HANDOVER_STALLED_AFTER + dt.timedelta(seconds=1)
    assert resumable.stalled(session=session, now=later) == [upload.id]
    done = resumable.finish_stalled(session=session, upload_id=upload.id, now=later, on_media=print)
    assert done is not None and done.media is not None
    session.commit()
    assert s3_storage.read(done.media.original_path) == data
    assert pieces_in(s3_storage, token(location)) == {}


def test_pieces_no_upload_owns_are_removed_from_the_bucket(
    s3_storage: Bucket, client, session, account, visit
):
    data = phone_jpeg(size=(200, 100))
    owned = token(opened(client, account, visit.id, data))
    assert patch(client, account, f"/v1/uploads/{owned}", 0, data[:50]).status_code == 204
    stray = "RolledBackCreation0000000"
    writer = storage.pieces().writer(stray, 0)
    writer.write(b"x" * 10)
    writer.close()
    writer.keep()
    now = utcnow()
    assert resumable.orphans(session=session, now=now) == []  # touched just now
    found = resumable.orphans(session=session, now=now + dt.timedelta(days=2))
    assert found == [stray]  # the owned upload's pieces are not an orphan's
    resumable.remove_orphan(stray)
    assert pieces_in(s3_storage, stray) == {}
    assert pieces_in(s3_storage, owned) == {0: data[:50]}


# --- two API hosts ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def second_host(postgres_database, redis_url, s3_storage: Bucket, tmp_path):
    """`huifang serve` in a process of its own: its own scratch directory, the same
    PostgreSQL (as the app role under row-level security when the run uses it), Redis and
    bucket."""
    scratch = tmp_path / "host-b-scratch"
    port = _free_port()
    log = tmp_path / "host-b.log"
    with host_process(
        ["serve", "--port", str(port)],
        database=postgres_database,
        redis_url=redis_url,
        bucket=s3_storage,
        scratch=scratch,
        log=log,
    ) as process:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the second API host did not start: {log.read_text()[-3000:]}")
                time.sleep(0.3)
            yield SimpleNamespace(client=client, scratch=scratch, log=log)
        finally:
            client.close()


@pytest.fixture
def company(postgres_database):
    with company_with_visit(
        postgres_database, name="两台家政", customer="李先生", phone="13900139000"
    ) as made:
        yield made


@pytest.mark.services
def test_two_api_hosts_take_alternate_pieces_and_the_file_arrives_whole_once(
    postgres_database, s3_storage: Bucket, second_host, company
):
    data = phone_jpeg(size=(1600, 1200), color=(60, 120, 180))
    first_scratch = storage.root()
    assert first_scratch != second_host.scratch
    with TestClient(create_app(database=postgres_database)) as first:
        hosts = {"A": first, "B": second_host.client}
        created = first.post(
            f"/v1/visits/{company.visit_id}/uploads",
            headers={
                **company.headers,
                **TUS,
                "Upload-Length": str(len(data)),
                "Upload-Metadata": metadata(phase="before", area="客厅"),
            },
        )
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        upload_token = token(location)

        def send(host: str, start: int, piece: bytes) -> httpx.Response:
            return hosts[host].patch(
                location,
                content=piece,
                headers={**company.headers, **TUS, **OCTETS, "Upload-Offset": str(start)},
            )

        def offset_at(host: str) -> int:
            answer = hosts[host].head(location, headers={**company.headers, **TUS})
            assert answer.status_code == 200, answer.status_code
            return int(answer.headers["upload-offset"])

        cuts = [0, 1000, len(data) // 3, 2 * len(data) // 3, len(data)]
        order = ["A", "B", "A", "B"]
        for (start, end), host in zip(itertools.pairwise(cuts), order, strict=True):
            other = "B" if host == "A" else "A"
            assert offset_at(other) == start  # the other host knows where the file is
            answer = send(host, start, data[start:end])
            assert answer.status_code == 204, (host, answer.text, second_host.log.read_text())
            assert int(answer.headers["upload-offset"]) == end
            if end < len(data):
                kept = pieces_in(s3_storage, upload_token)
                assert kept == {s: data[s:e] for s, e in itertools.pairwise(cuts) if e <= end}
            # Neither host keeps a piece of its own.
            assert files_under(first_scratch) == [] == files_under(second_host.scratch)

        media_id = int(answer.headers["upload-media-id"])
        # The last piece again, on the other host (a retry after a lost answer): 409, no copy.
        again = send("A", cuts[-2], data[cuts[-2] :])
        assert again.status_code == 409, again.text
        done = first.head(location, headers={**company.headers, **TUS})
        assert done.headers["upload-offset"] == str(len(data))
        assert done.headers["upload-media-id"] == str(media_id)

    with postgres_database.sessionmaker() as session:
        media = session.scalars(select(Media).where(Media.visit_id == company.visit_id)).all()
    assert [m.id for m in media] == [media_id]  # once
    assert media[0].sha256 == hashlib.sha256(data).hexdigest() and media[0].bytes == len(data)
    assert s3_storage.read(media[0].original_path) == data  # whole
    assert s3_storage.objects() == {media[0].original_path}  # no piece left behind
    assert arriving(s3_storage) == []
    assert files_under(first_scratch) == [] == files_under(second_host.scratch)


def test_a_piece_bigger_than_a_part_streams_to_the_bucket_in_parts(
    s3_storage: Bucket, client, session, account, visit
):
    from huifang.s3storage import PART_BYTES

    # A program sending a clip in two PATCHes, the first 2.5 parts long. Only the type of a
    # clip is checked at the door, so random bytes after an MP4 header do.
    data = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + os.urandom(PART_BYTES * 3)
    first = PART_BYTES * 5 // 2
    location = opened(client, account, visit.id, data, phase="during")
    assert patch(client, account, location, 0, data[:first]).status_code == 204
    key = f"resumable/{token(location)}/{0:012d}"
    parts = s3_storage.client.head_object(Bucket=s3_storage.name, Key=key, PartNumber=1)
    assert parts["PartsCount"] == 3 and parts["ContentLength"] == PART_BYTES
    answer = patch(client, account, location, first, data[first:])
    assert answer.status_code == 204, answer.text
    media = session.get(Media, int(answer.headers["upload-media-id"]))
    assert media is not None and media.kind == "clip" and media.bytes == len(data)
    assert media.sha256 == hashlib.sha256(data).hexdigest()
    assert s3_storage.read(media.original_path) == data
    assert s3_storage.objects() == {media.original_path}
