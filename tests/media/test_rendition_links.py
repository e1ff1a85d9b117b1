"""Public photo links (/m/{token}) live as long as the report that gave them out.

A rendition of a visit with a report answers while the report is valid, with a cache that
ends when the report does; after that 410, unless a campaign that can still send uses the
photo as its MMS picture. Before there is a report, only the company has the link.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from reports.models import Report
from tests.reports.test_report import _ready, _room

YEAR = 31_536_000


def _max_age(answer) -> int:
    return int(re.search(r"max-age=(\d+)", answer.headers["cache-control"]).group(1))


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1] if "://" in url else url


def _expire(session, visit_id: int) -> None:
    report = session.scalars(select(Report).where(Report.visit_id == visit_id)).one()
    report.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    session.flush()


def _report_photo_links(client, account, visit_id: int) -> list[str]:
    body = client.post(f"/v1/visits/{visit_id}/report", headers=account.headers).json()
    page = client.get(_path(body["url"]))
    assert page.status_code == 200
    links = sorted(set(re.findall(r"/m/[A-Za-z0-9_-]+\.jpg", page.text)))
    assert links, "the report page links its photos"
    return links


def test_photo_links_close_when_their_report_expires(client, session, account, visit):
    media_id = _ready(client, session, account, visit.id, _room(clean=True, seed=1), phase="after")
    links = _report_photo_links(client, account, visit.id)
    report = session.scalars(select(Report).where(Report.visit_id == visit.id)).one()
    left = (report.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
    for link in links:
        answer = client.get(link)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/jpeg"
        assert 0 < _max_age(answer) <= left  # no cache keeps it past the report
    renditions = client.get(f"/v1/media/{media_id}", headers=account.headers).json()
    code = client.get(f"/v1/media/{media_id}", headers=account.headers).json()
    assert "/m/" in client.get(f"/v/{code['verification_code']}").text

    _expire(session, visit.id)
    assert (
        client.get(
            _path(
                client.get(f"/v1/visits/{visit.id}/report", headers=account.headers).json()["url"]
            )
        ).status_code
        == 410
    )
    for link in links + [_path(r["url"]) for r in renditions["renditions"]]:
        answer = client.get(link)
        assert answer.status_code == 410, link
        assert "expired" in answer.json()["detail"]
    # The verification page keeps the facts, without the photo.
    verify = client.get(f"/v/{code['verification_code']}")
    assert verify.status_code == 200 and "/m/" not in verify.text
    assert code["sha256"] in verify.text


def test_rebuilding_the_report_opens_the_links_again(client, session, account, visit):
    _ready(client, session, account, visit.id, _room(clean=True, seed=2), phase="after")
    links = _report_photo_links(client, account, visit.id)
    _expire(session, visit.id)
    assert client.get(links[0]).status_code == 410
    assert _report_photo_links(client, account, visit.id) == links
    assert client.get(links[0]).status_code == 200


def test_before_a_report_the_link_is_cached_briefly(client, session, account, visit):
    media_id = _ready(client, session, account, visit.id, _room(clean=True, seed=3), phase="after")
    media = client.get(f"/v1/media/{media_id}", headers=account.headers).json()
    answer = client.get(_path(media["renditions"][0]["url"]))
    assert answer.status_code == 200
    assert _max_age(answer) <= 3600 and "immutable" not in answer.headers["cache-control"]


def test_a_campaign_picture_stays_while_the_campaign_can_send(client, session, account, visit):
    media_id = _ready(client, session, account, visit.id, _room(clean=True, seed=4), phase="after")
    links = _report_photo_links(client, account, visit.id)
    media = client.get(f"/v1/media/{media_id}", headers=account.headers).json()
    picture = next(_path(r["url"]) for r in media["renditions"] if r["kind"] == "mms")
    created = client.post(
        "/v1/campaigns",
        headers=account.headers,
        json={
            "name": "年度回访",
            "preset": "yearly_checkin",
            "mms": {
                "body": "{{ customer_name }}您好，一年了，该做保养了。预约：{{ booking_link }}",
                "image_media_id": media_id,
            },
        },
    )
    assert created.status_code == 201, created.text
    _expire(session, visit.id)

    answer = client.get(picture)
    assert answer.status_code == 200
    assert _max_age(answer) <= 3600
    # The photo's other renditions (the page's thumbnail and full view) close with the report.
    others = [link for link in links if link != picture]
    assert others
    assert [client.get(link).status_code for link in others] == [410] * len(others)

    campaign_id = created.json()["id"]
    archived = client.post(f"/v1/campaigns/{campaign_id}/archive", headers=account.headers)
    assert archived.status_code == 200, archived.text
    assert client.get(picture).status_code == 410
