"""The distributed mode on an S3 bucket: the API (this process) and a real Celery worker (a
process of its own) share nothing but PostgreSQL, Redis and the bucket.

Each has a media root (scratch) of its own; every stored file must travel through the bucket:
upload → processing by the worker (a clip through ffmpeg, photos through Pillow) → report
built by the API → the worker's recap → public links served by the API → a rebuild whose
stale long image leaves the bucket.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import select

from huifang.app import create_app
from media import samples
from media.models import Media, Rendition
from reports.models import Report
from tests.media.conftest import phone_jpeg, upload
from tests.s3 import Bucket, company_with_visit, host_process
from tests.s3 import s3_bucket as s3_bucket
from tests.s3 import s3_server as s3_server
from tests.s3 import s3_storage as s3_storage

pytestmark = pytest.mark.services


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def _files(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def worker_process(postgres_database, redis_url, s3_storage: Bucket, tmp_path):
    """A Celery worker for the media queue with its own media root, on the same bucket."""
    scratch = tmp_path / "worker-scratch"
    log = tmp_path / "worker.log"
    client = Celery(broker=redis_url)
    with host_process(
        ["worker", "-Q", "media", "-c", "1"],
        database=postgres_database,
        redis_url=redis_url,
        bucket=s3_storage,
        scratch=scratch,
        log=log,
    ):
        try:
            yield SimpleNamespace(client=client, log=log, scratch=scratch)
        finally:
            client.close()


@pytest.fixture
def company(postgres_database):
    with company_with_visit(
        postgres_database, name="桶上家政", customer="王女士", phone="13800138000"
    ) as made:
        yield SimpleNamespace(headers=made.headers), made.visit_id


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def test_upload_processing_report_and_links_through_the_bucket_only(
    postgres_database, s3_storage: Bucket, worker_process, company, tmp_path
):
    account, visit_id = company
    api_scratch = Path(os.environ["HUIFANG_MEDIA_ROOT"])
    assert api_scratch != worker_process.scratch
    clip = tmp_path / "during.mp4"
    samples.room_clip(clip, seconds=2, size=(320, 180), seed=5)

    with TestClient(create_app(database=postgres_database)) as client:
        ids = []
        for data, phase, name, mime in (
            (phone_jpeg(color=(120, 90, 60)), "before", "IMG_1.jpg", "image/jpeg"),
            (phone_jpeg(color=(200, 210, 220)), "after", "IMG_2.jpg", "image/jpeg"),
            (clip.read_bytes(), "during", "VID_1.mp4", "video/mp4"),
        ):
            created = upload(
                client, account, visit_id, data, phase=phase, filename=name, content_type=mime
            )
            assert created.status_code == 202, created.text
            ids.append(created.json()["id"])
        with postgres_database.session() as session:
            originals = {m.original_path for m in session.scalars(select(Media)) if m.id in ids}
        assert originals <= s3_storage.objects()  # the API put the originals in the bucket
        assert not any(name.startswith(("originals", "renditions")) for name in _files(api_scratch))

        for media_id in ids:
            worker_process.client.send_task(
                "media.tasks.process_media", kwargs={"media_id": media_id}, queue="media"
            )

        def statuses() -> list[str]:
            with postgres_database.sessionmaker() as session:
                return [session.get(Media, i).status for i in ids]

        assert _wait_for(lambda: "processing" not in statuses(), 180), (
            worker_process.log.read_text()[-3000:]
        )
        assert statuses() == ["ready"] * 3, worker_process.log.read_text()[-3000:]
        with postgres_database.sessionmaker() as session:
            paths = set(session.scalars(select(Rendition.path)))
        assert paths and paths <= s3_storage.objects()  # the worker's renditions, in the bucket
        # ffmpeg worked in the worker's scratch, which it cleaned; nothing stored stays there.
        assert not any(
            name.startswith(("originals", "renditions")) for name in _files(worker_process.scratch)
        )
        assert not any(n.endswith((".mp4", ".jpg")) for n in _files(worker_process.scratch))

        built = client.post(f"/v1/visits/{visit_id}/report", headers=account.headers)
        assert built.status_code == 201, built.text
        report = built.json()
        with postgres_database.sessionmaker() as session:
            row = session.scalars(select(Report).where(Report.visit_id == visit_id)).one()
            report_id, first_long = row.id, row.long_path
        assert first_long in s3_storage.objects()

        page = client.get(_path(report["url"]))
        assert page.status_code == 200 and "桶上家政" in page.text
        long_image = client.get(_path(report["long_image"]["url"]))
        assert long_image.status_code == 200
        assert long_image.content == s3_storage.read(first_long)  # served from the bucket

        worker_process.client.send_task(
            "reports.tasks.render_recap", kwargs={"report_id": report_id}, queue="media"
        )

        def recap_path() -> str | None:
            with postgres_database.sessionmaker() as session:
                return session.get(Report, report_id).recap_path

        assert _wait_for(lambda: recap_path() is not None, 240), worker_process.log.read_text()[
            -3000:
        ]
        recap = client.get(f"/v1/visits/{visit_id}/report", headers=account.headers).json()
        video_url = _path(recap["recap"]["url"])
        stored = s3_storage.read(recap_path())
        whole = client.get(video_url)
        assert whole.status_code == 200 and whole.content == stored
        assert whole.headers["content-type"] == "video/mp4"
        part = client.get(video_url, headers={"Range": "bytes=0-99"})
        assert part.status_code == 206 and part.content == stored[:100]
        assert part.headers["content-range"] == f"bytes 0-99/{len(stored)}"

        # A public rendition link (as in the MMS): bytes from the bucket.
        photo = client.get(f"/v1/media/{ids[1]}", headers=account.headers).json()
        display = next(r for r in photo["renditions"] if r["kind"] == "display")
        served = client.get(_path(display["url"]))
        assert served.status_code == 200 and served.content.startswith(b"\xff\xd8")
        original = client.get(f"/v1/media/{ids[0]}/original", headers=account.headers)
        assert original.status_code == 200 and original.content.startswith(b"\xff\xd8")

        # A rebuild with new words makes a new long image; the old one leaves the bucket.
        changed = client.put(
            "/v1/care-advice/deep_cleaning",
            headers=account.headers,
            json={"text": "厨房油污请每周擦一次。"},
        )
        assert changed.status_code == 200, changed.text
        rebuilt = client.post(f"/v1/visits/{visit_id}/report", headers=account.headers)
        assert rebuilt.status_code == 200, rebuilt.text
        assert rebuilt.json()["long_image"]["url"] != report["long_image"]["url"]
        assert first_long not in s3_storage.objects()
        assert client.get(_path(report["long_image"]["url"])).status_code == 404

    # Nothing stored ever landed in the API's scratch either.
    assert not any(name.startswith(("originals", "renditions")) for name in _files(api_scratch))
