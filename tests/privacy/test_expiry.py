"""Report media that expire: kept N days, or deleted N days after the first view (阅后自动删除)."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from huifang import storage
from media import service as media_service
from media.models import EXPIRED, Media
from privacy import files
from reports import expiry
from reports.models import Report
from tests.factories import make_staff, make_visit
from tests.media.conftest import phone_jpeg, upload


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def _visit_with_report(client, session, account):
    visit = make_visit(
        session, account.tenant, staff=make_staff(session, account.tenant), areas=["客厅"]
    )
    for phase, color in (("before", (120, 90, 60)), ("after", (200, 220, 240))):
        sent = upload(client, account, visit.id, phone_jpeg(color=color), phase=phase)
        assert sent.status_code == 202, sent.text
        media_service.process_media(session=session, media_id=sent.json()["id"])
    session.flush()
    built = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers)
    assert built.status_code == 201, built.text
    return visit, built.json()


def _files(session, visit_id: int) -> tuple[list[str], list[str]]:
    """(renditions and report files, originals) of a visit."""
    media = list(session.scalars(select(Media).where(Media.visit_id == visit_id)))
    report = session.scalars(select(Report).where(Report.visit_id == visit_id)).one()
    made = [r.path for m in media for r in m.renditions] + expiry.report_files(report)
    return made, [m.original_path for m in media]


def _exists(relative: str) -> bool:
    return storage.resolve(relative).is_file()


def test_media_deleted_a_week_after_the_first_view(client, session, account):
    visit, body = _visit_with_report(client, session, account)
    report = session.scalars(select(Report).where(Report.visit_id == visit.id)).one()
    assert report.first_viewed_at is None
    setting = client.put(
        f"/v1/visits/{visit.id}/report/media-expiry",
        headers=account.headers,
        json={"after_view_days": 7},
    )
    assert setting.status_code == 200, setting.text

    page = client.get(_path(body["url"]))
    assert page.status_code == 200
    session.refresh(report)
    viewed = report.first_viewed_at
    assert viewed is not None
    # A second view does not move the clock.
    assert client.get(_path(body["url"])).status_code == 200
    session.refresh(report)
    assert report.first_viewed_at == viewed

    photo_links = sorted(set(re.findall(r"/m/[A-Za-z0-9_-]+\.jpg", page.text)))
    long_image = _path(body["long_image"]["url"])
    assert photo_links and client.get(long_image).status_code == 200
    made, originals = _files(session, visit.id)
    assert made and all(_exists(p) for p in made)

    almost = viewed + dt.timedelta(days=7) - dt.timedelta(minutes=1)
    assert report.id not in expiry.due(session=session, now=almost)
    assert expiry.expire_media(session=session, report_id=report.id, now=almost) is False

    later = viewed + dt.timedelta(days=7, minutes=1)
    assert report.id in expiry.due(session=session, now=later)
    assert expiry.expire_media(session=session, report_id=report.id, now=later) is True
    session.flush()

    assert not any(_exists(p) for p in made), "renditions, long image and pictures are gone"
    assert all(_exists(p) for p in originals), "originals follow the retention setting"
    media = list(session.scalars(select(Media).where(Media.visit_id == visit.id)))
    assert media and all(m.status == EXPIRED and m.renditions_deleted_at == later for m in media)
    assert report.media_deleted_at == later
    assert report.id not in expiry.due(session=session, now=later + dt.timedelta(days=1))

    gone = client.get(_path(body["url"]))
    assert gone.status_code == 410
    assert "照片和视频已按约定删除" in gone.text
    assert client.get(long_image).status_code == 410
    for link in photo_links:
        answer = client.get(link)
        assert answer.status_code == 410
        assert "已删除" in answer.text
    # The visit still says media existed, and when they went.
    listed = client.get(f"/v1/visits/{visit.id}/media", headers=account.headers).json()
    assert len(listed) == 2 and {m["status"] for m in listed} == {EXPIRED}
    read = client.get(f"/v1/visits/{visit.id}/report/media-expiry", headers=account.headers)
    assert read.json()["media_deleted_at"] is not None


def test_the_company_keeps_report_media_n_days(client, session, account):
    account.tenant.report_media_days = 3
    account.tenant.report_media_after_view_days = 5
    session.flush()
    visit, _ = _visit_with_report(client, session, account)
    report = session.scalars(select(Report).where(Report.visit_id == visit.id)).one()
    assert report.media_expires_at == report.built_at + dt.timedelta(days=3)
    assert report.media_after_view_days == 5
    assert expiry.media_due_at(report) == report.media_expires_at
    assert report.id in expiry.due(session=session, now=report.built_at + dt.timedelta(days=3))


def test_by_default_media_last_as_long_as_the_report(client, session, account):
    visit, _ = _visit_with_report(client, session, account)
    report = session.scalars(select(Report).where(Report.visit_id == visit.id)).one()
    assert report.media_expires_at is None and report.media_after_view_days is None
    assert expiry.media_due_at(report) == report.expires_at
    assert report.id not in expiry.due(
        session=session, now=report.expires_at - dt.timedelta(seconds=1)
    )


def test_deleting_a_visit_deletes_its_files(client, session, account):
    visit, _ = _visit_with_report(client, session, account)
    made, originals = _files(session, visit.id)
    assert all(_exists(p) for p in made + originals)
    answer = client.delete(f"/v1/visits/{visit.id}", headers=account.headers)
    assert answer.status_code == 204
    assert not any(_exists(p) for p in made + originals)


def test_a_bad_expiry_is_refused(client, session, account):
    visit, _ = _visit_with_report(client, session, account)
    answer = client.put(
        f"/v1/visits/{visit.id}/report/media-expiry",
        headers=account.headers,
        json={"after_view_days": -1},
    )
    assert answer.status_code == 422


def test_a_photo_a_sending_campaign_uses_waits_for_the_campaign(client, session, account):
    visit, _ = _visit_with_report(client, session, account)
    report = session.scalars(select(Report).where(Report.visit_id == visit.id)).one()
    after = session.scalars(
        select(Media).where(Media.visit_id == visit.id, Media.phase == "after")
    ).one()
    created = client.post(
        "/v1/campaigns",
        headers=account.headers,
        json={
            "name": "年度回访",
            "preset": "yearly_checkin",
            "mms": {
                "body": "{{ customer_name }}您好，预约：{{ booking_link }}",
                "image_media_id": after.id,
            },
        },
    )
    assert created.status_code == 201, created.text
    later = report.expires_at + dt.timedelta(days=1)
    assert report.id in expiry.due(session=session, now=later)

    def held(media: Media) -> bool:
        return files.used_by_campaign(session, media)

    assert expiry.expire_media(session=session, report_id=report.id, now=later, held=held) is False
    made, _ = _files(session, visit.id)
    assert all(_exists(p) for p in made)
    archived = client.post(f"/v1/campaigns/{created.json()['id']}/archive", headers=account.headers)
    assert archived.status_code == 200
    assert expiry.expire_media(session=session, report_id=report.id, now=later, held=held) is True
    assert not any(_exists(p) for p in made)
