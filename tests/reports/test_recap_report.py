"""A report whose visit has clips gets its recap video, made off the request on the media queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from media import ffmpeg, samples
from media import service as media_service
from reports import recaps
from reports import service as reports
from reports.models import Report
from tests.media.conftest import phone_jpeg, upload


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("clips") / "during.mp4"
    samples.room_clip(path, seconds=3, size=(640, 360), seed=4)
    return path.read_bytes()


def _ready(client, session, account, visit_id, data, *, phase, filename, content_type):
    answer = upload(
        client, account, visit_id, data, phase=phase, filename=filename, content_type=content_type
    )
    assert answer.status_code == 202, answer.text
    media_service.process_media(session=session, media_id=answer.json()["id"])
    session.flush()


def _render(session, report_id: int, tmp_path: Path) -> Report:
    """What media.tasks.render_recap does, in the test's transaction."""
    job = recaps.recap_job(session=session, report_id=report_id)
    assert job is not None
    made = recaps.make(job, workdir=tmp_path)
    report = recaps.record(session=session, job=job, made=made)
    assert report is not None
    return report


def test_clips_make_a_recap_on_the_page_and_in_the_mms(
    client, session, account, visit, clip_bytes, tmp_path
):
    _ready(
        client,
        session,
        account,
        visit.id,
        phone_jpeg(size=(900, 1200)),
        phase="before",
        filename="before.jpg",
        content_type="image/jpeg",
    )
    _ready(
        client,
        session,
        account,
        visit.id,
        clip_bytes,
        phase="during",
        filename="during.mp4",
        content_type="video/mp4",
    )
    built = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers)
    assert built.status_code == 201, built.text
    report = reports.get_report(session=session, tenant_id=account.tenant.id, visit_id=visit.id)
    assert report.recap_path is None  # the request does not wait for ffmpeg
    report = _render(session, report.id, tmp_path)
    assert report.recap_bytes and report.recap_bytes <= recaps.RECAP_BUDGET
    assert 0 < report.recap_duration <= 30
    probe = ffmpeg.probe(Path(media_service.storage.resolve(report.recap_path)), "mp4")
    assert probe.video_codec == "h264" and probe.duration <= 30.1
    # Nothing changed: no second render.
    assert recaps.recap_job(session=session, report_id=report.id) is None
    token = built.json()["url"].rsplit("/", 1)[1]
    page = client.get(f"/r/{token}")
    assert "<video" in page.text
    twilio = client.get(
        f"/v1/visits/{visit.id}/report?profile=twilio", headers=account.headers
    ).json()
    assert any(part["content_type"] == "video/mp4" for part in twilio["mms"]["parts"])


def test_a_visit_without_clips_has_no_recap_job(client, session, account, visit):
    _ready(
        client,
        session,
        account,
        visit.id,
        phone_jpeg(size=(900, 1200)),
        phase="after",
        filename="after.jpg",
        content_type="image/jpeg",
    )
    client.post(f"/v1/visits/{visit.id}/report", headers=account.headers)
    report = reports.get_report(session=session, tenant_id=account.tenant.id, visit_id=visit.id)
    assert recaps.recap_job(session=session, report_id=report.id) is None
