"""Resumable uploads (tus 1.0) through the HTTP API, on SQLite and PostgreSQL: offsets,
caps, sniffing, expiry, two clients on one upload, a connection dropped mid-piece."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import itertools

import pytest
from sqlalchemy import delete as sa_delete
from sqlalchemy import func, select

from huifang.db import utcnow
from huifang.errors import Conflict
from huifang.settings import get_settings
from media import resumable
from media.models import Media, ResumableUpload
from tests.factories import make_customer
from tests.media.conftest import phone_jpeg

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}


def metadata(**fields: str) -> str:
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in fields.items()
    )


def create(client, account, visit_id: int, length: int, **fields: str):
    fields.setdefault("phase", "before")
    fields.setdefault("area", "客厅")
    return client.post(
        f"/v1/visits/{visit_id}/uploads",
        headers={
            **account.headers,
            **TUS,
            "Upload-Length": str(length),
            "Upload-Metadata": metadata(**fields),
        },
    )


def opened(client, account, visit_id: int, data: bytes, **fields: str) -> str:
    response = create(client, account, visit_id, len(data), **fields)
    assert response.status_code == 201, response.text
    return response.headers["location"]


def patch(client, account, location: str, offset: int, data: bytes):
    return client.patch(
        location,
        content=data,
        headers={**account.headers, **TUS, **OCTETS, "Upload-Offset": str(offset)},
    )


def head(client, account, location: str):
    return client.head(location, headers={**account.headers, **TUS})


def offset_of(client, account, location: str) -> int:
    response = head(client, account, location)
    assert response.status_code == 200, response.status_code
    return int(response.headers["upload-offset"])


def media_count(session, visit_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Media).where(Media.visit_id == visit_id))


def token(location: str) -> str:
    return location.rsplit("/", 1)[-1]


def test_options_says_what_the_server_speaks(client, account):
    response = client.options("/v1/uploads", headers=account.headers)
    assert response.status_code == 204
    assert response.headers["tus-version"] == "1.0.0"
    assert set(response.headers["tus-extension"].split(",")) == {
        "creation",
        "expiration",
        "termination",
    }
    assert int(response.headers["tus-max-size"]) == get_settings().clip_max_bytes


def test_a_photo_sent_in_pieces_becomes_one_media(client, session, account, visit):
    data = phone_jpeg(size=(1200, 900))
    response = create(
        client,
        account,
        visit.id,
        len(data),
        phase="after",
        area="厨房",
        note="油污已清",
        filename="IMG_0042.jpg",
    )
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith("/v1/uploads/")
    assert response.headers["tus-resumable"] == "1.0.0"
    assert "GMT" in response.headers["upload-expires"]
    assert response.json()["received"] == 0 and response.json()["length"] == len(data)
    assert offset_of(client, account, location) == 0

    cuts = [0, 100, len(data) // 2, len(data)]
    for start, end in itertools.pairwise(cuts):
        answer = patch(client, account, location, start, data[start:end])
        assert answer.status_code == 204, answer.text
        assert int(answer.headers["upload-offset"]) == end
        if end < len(data):
            assert offset_of(client, account, location) == end
    media_id = int(answer.headers["upload-media-id"])

    media = client.get(f"/v1/media/{media_id}", headers=account.headers).json()
    assert media["status"] == "processing" and media["kind"] == "photo"
    assert (media["phase"], media["area"], media["note"]) == ("after", "厨房", "油污已清")
    assert media["bytes"] == len(data)
    upload = client.get(location, headers=account.headers).json()
    assert upload["status"] == "done" and upload["media_id"] == media_id
    assert not resumable.files_of(token(location)).exists()  # the pieces are gone
    assert offset_of(client, account, location) == len(data)  # a late HEAD: complete


def test_a_piece_at_the_wrong_offset_is_409_and_changes_nothing(client, account, visit):
    data = phone_jpeg(size=(400, 300))
    location = opened(client, account, visit.id, data)
    assert patch(client, account, location, 0, data[:200]).status_code == 204
    for wrong in (0, 100, 300):
        response = patch(client, account, location, wrong, data[wrong : wrong + 50])
        assert response.status_code == 409, response.text
        assert "holds 200 bytes" in response.json()["detail"]
    assert offset_of(client, account, location) == 200
    assert patch(client, account, location, 200, data[200:]).status_code == 204


def test_a_piece_past_the_announced_length_is_413_and_not_kept(client, account, visit):
    data = phone_jpeg(size=(400, 300))
    location = opened(client, account, visit.id, data)
    assert patch(client, account, location, 0, data[:100]).status_code == 204
    response = patch(client, account, location, 100, data[100:] + b"extra bytes")
    assert response.status_code == 413, response.text
    assert "announced" in response.json()["detail"]
    assert offset_of(client, account, location) == 100
    pieces = [p.name for p in resumable.files_of(token(location)).iterdir()]
    assert pieces == [f"{0:012d}"]  # the refused piece left nothing behind
    assert patch(client, account, location, 100, data[100:]).status_code == 204


def test_a_photo_over_the_photo_cap_is_413_at_its_first_bytes_and_nothing_kept(
    client, session, account, visit
):
    cap = get_settings().photo_max_bytes
    response = create(client, account, visit.id, cap + 1)
    assert response.status_code == 201  # under the clip cap: the type is not known yet
    location = response.headers["location"]
    refused = patch(client, account, location, 0, phone_jpeg(size=(64, 64)))
    assert refused.status_code == 413, refused.text
    assert "25 MB" in refused.json()["detail"] and "photos" in refused.json()["detail"]
    assert head(client, account, location).status_code == 410
    upload = client.get(location, headers=account.headers).json()
    assert upload["status"] == "refused" and "25 MB" in upload["failure_reason"]
    assert not resumable.files_of(token(location)).exists()
    assert media_count(session, visit.id) == 0


def test_a_file_over_every_cap_is_refused_at_creation(client, account, visit):
    response = create(client, account, visit.id, get_settings().clip_max_bytes + 1)
    assert response.status_code == 413, response.text
    assert "200 MB" in response.json()["detail"]


def test_a_page_named_jpg_is_415_at_its_first_bytes(client, account, visit):
    page = b"<!doctype html><html><body>" + b"x" * 200 + b"</body></html>"
    location = opened(client, account, visit.id, page)
    response = patch(client, account, location, 0, page[:100])
    assert response.status_code == 415, response.text
    assert "JPEG" in response.json()["detail"]
    assert head(client, account, location).status_code == 410


def test_a_damaged_photo_is_422_once_complete(client, session, account, visit):
    data = phone_jpeg(size=(800, 600))
    broken = data[: len(data) // 2]
    location = opened(client, account, visit.id, broken)
    response = patch(client, account, location, 0, broken)
    assert response.status_code == 422, response.text
    upload = client.get(location, headers=account.headers).json()
    assert upload["status"] == "refused" and upload["failure_reason"]
    assert media_count(session, visit.id) == 0


@pytest.mark.parametrize(
    ("headers", "status", "phrase"),
    [
        ({"Upload-Metadata": metadata(area="客厅")}, 422, "phase"),
        ({"Upload-Metadata": "phase !!notbase64"}, 422, "Base64"),
        ({"Upload-Metadata": metadata(phase="before", area="客" * 21)}, 422, "too long"),
        ({"Upload-Length": "0"}, 422, "empty"),
        ({"Upload-Length": None}, 422, "Upload-Length"),
        ({"Tus-Resumable": "0.2.2"}, 412, "1.0.0"),
    ],
)
def test_creation_refusals_say_what_to_send(client, account, visit, headers, status, phrase):
    sent = {
        **account.headers,
        **TUS,
        "Upload-Length": "1000",
        "Upload-Metadata": metadata(phase="before"),
    }
    sent.update(headers)
    response = client.post(
        f"/v1/visits/{visit.id}/uploads", headers={k: v for k, v in sent.items() if v is not None}
    )
    assert response.status_code == status, response.text
    assert phrase in response.json()["detail"]


def test_a_piece_without_the_tus_content_type_is_415(client, account, visit):
    data = phone_jpeg(size=(200, 100))
    location = opened(client, account, visit.id, data)
    response = client.patch(
        location,
        content=data,
        headers={**account.headers, **TUS, "Content-Type": "image/jpeg", "Upload-Offset": "0"},
    )
    assert response.status_code == 415
    assert offset_of(client, account, location) == 0


def test_an_expired_upload_is_410_then_swept_away(client, session, account, visit):
    data = phone_jpeg(size=(400, 300))
    location = opened(client, account, visit.id, data)
    assert patch(client, account, location, 0, data[:100]).status_code == 204
    upload = session.scalars(
        select(ResumableUpload).where(ResumableUpload.token == token(location))
    ).one()
    upload.expires_at = utcnow() - dt.timedelta(seconds=1)
    session.flush()
    assert head(client, account, location).status_code == 410
    response = patch(client, account, location, 100, data[100:])
    assert response.status_code == 410 and "expired" in response.json()["detail"]

    now = utcnow()
    swept = resumable.sweepable(session=session, now=now)
    assert upload.id in swept
    resumable.remove(session=session, upload_id=upload.id, now=now)
    session.commit()  # the bytes go once the removal commits
    assert not resumable.files_of(token(location)).exists()
    assert head(client, account, location).status_code == 404


def test_a_live_upload_is_not_swept(session, client, account, visit):
    location = opened(client, account, visit.id, phone_jpeg(size=(200, 100)))
    upload = session.scalars(
        select(ResumableUpload).where(ResumableUpload.token == token(location))
    ).one()
    assert upload.id not in resumable.sweepable(session=session, now=utcnow())
    later = utcnow() + resumable.UPLOAD_TTL + dt.timedelta(minutes=1)
    assert upload.id in resumable.sweepable(session=session, now=later)


def test_two_clients_resuming_one_upload_make_one_file(client, session, account, visit):
    data = phone_jpeg(size=(1000, 800))
    location = opened(client, account, visit.id, data)
    assert patch(client, account, location, 0, data[:500]).status_code == 204
    # Both clients (a reloaded page and the request it left behind) ask where to go on.
    first_offset = offset_of(client, account, location)
    second_offset = offset_of(client, account, location)
    assert first_offset == second_offset == 500
    won = patch(client, account, location, first_offset, data[500:])
    lost = patch(client, account, location, second_offset, data[500:])
    assert won.status_code == 204 and lost.status_code == 409
    assert offset_of(client, account, location) == len(data)
    assert media_count(session, visit.id) == 1

    # The same file through a second upload of the visit is the same media.
    again = opened(client, account, visit.id, data)
    answer = patch(client, account, again, 0, data)
    assert answer.status_code == 204
    assert answer.headers["upload-media-id"] == won.headers["upload-media-id"]
    assert media_count(session, visit.id) == 1


def test_two_pieces_at_one_offset_at_once_one_is_recorded(client, session, account, visit):
    """Both clients' bytes arrive before either is recorded: the first recording wins."""
    data = phone_jpeg(size=(600, 400))
    location = opened(client, account, visit.id, data)
    settings = get_settings()
    now = utcnow()
    receivers = []
    for _ in range(2):
        opening = resumable.open_piece(
            session=session, tenant_id=account.tenant.id, token=token(location), offset=0, now=now
        )
        receiver = resumable.Receiver(
            opening=opening, photo_max=settings.photo_max_bytes, clip_max=settings.clip_max_bytes
        )
        receiver.begin()
        receiver.feed(data[:300])
        receiver.end()
        receivers.append(receiver)
    upload = resumable.record_piece(session=session, receiver=receivers[0], now=now)
    assert upload.received == 300
    with pytest.raises(Conflict):
        resumable.record_piece(session=session, receiver=receivers[1], now=now)
    receivers[1].discard()
    names = sorted(p.name for p in resumable.files_of(token(location)).iterdir())
    assert names == [f"{0:012d}"]


def _patch_then_drop(app, account, location: str, offset: int, sent: bytes) -> int:
    """A PATCH whose connection drops after ``sent`` of a longer body: the ASGI app sees
    the bytes, then the client going away. Returns the status the app answered."""
    messages = [
        {"type": "http.request", "body": sent, "more_body": True},
        {"type": "http.disconnect"},
    ]
    headers = {
        **account.headers,
        **TUS,
        **OCTETS,
        "Upload-Offset": str(offset),
        "Content-Length": str(len(sent) * 4),
    }
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PATCH",
        "scheme": "http",
        "path": location,
        "raw_path": location.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    answered: list[int] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            answered.append(message["status"])

    asyncio.run(app(scope, receive, send))
    return answered[0]


def test_an_upload_resumes_after_a_connection_dropped_mid_piece(
    app, client, session, account, visit
):
    data = phone_jpeg(size=(1600, 1200))
    location = opened(client, account, visit.id, data)
    assert patch(client, account, location, 0, data[:1000]).status_code == 204
    assert _patch_then_drop(app, account, location, 1000, data[1000:3000]) == 204
    # The server kept exactly the bytes that arrived before the drop.
    assert offset_of(client, account, location) == 3000
    assert client.get(location, headers=account.headers).json()["received"] == 3000
    answer = patch(client, account, location, 3000, data[3000:])
    assert answer.status_code == 204
    media = client.get(
        f"/v1/media/{answer.headers['upload-media-id']}", headers=account.headers
    ).json()
    assert media["bytes"] == len(data)
    assert media_count(session, visit.id) == 1


def test_a_complete_upload_whose_handover_was_lost_is_finished_by_the_sweep(
    client, session, account, visit
):
    data = phone_jpeg(size=(500, 400))
    location = opened(client, account, visit.id, data)
    settings = get_settings()
    now = utcnow()
    opening = resumable.open_piece(
        session=session, tenant_id=account.tenant.id, token=token(location), offset=0, now=now
    )
    receiver = resumable.Receiver(
        opening=opening, photo_max=settings.photo_max_bytes, clip_max=settings.clip_max_bytes
    )
    receiver.begin()
    receiver.feed(data)
    receiver.end()
    upload = resumable.record_piece(session=session, receiver=receiver, now=now)
    # ... and the request died here, before the handover.
    assert resumable.stalled(session=session, now=now) == []  # it may still be running
    later = now + resumable.HANDOVER_STALLED_AFTER + dt.timedelta(seconds=1)
    assert resumable.stalled(session=session, now=later) == [upload.id]
    queued: list[int] = []
    done = resumable.finish_stalled(
        session=session,
        upload_id=upload.id,
        now=later,
        on_media=lambda media: queued.append(media.id),
    )
    assert done is not None and done.media is not None and queued == [done.media.id]
    assert upload.status == "done" and media_count(session, visit.id) == 1
    assert resumable.stalled(session=session, now=later) == []


def test_termination_removes_the_upload(client, account, visit):
    data = phone_jpeg(size=(200, 100))
    location = opened(client, account, visit.id, data)
    assert patch(client, account, location, 0, data[:50]).status_code == 204
    response = client.delete(location, headers={**account.headers, **TUS})
    assert response.status_code == 204
    assert head(client, account, location).status_code == 404


def test_another_company_cannot_touch_an_upload(client, account, other_account, visit):
    data = phone_jpeg(size=(200, 100))
    location = opened(client, account, visit.id, data)
    assert head(client, other_account, location).status_code == 404
    assert patch(client, other_account, location, 0, data).status_code == 404
    assert create(client, other_account, visit.id, len(data)).status_code == 404
    assert offset_of(client, account, location) == 0


def test_the_sweep_task_takes_each_upload_on_its_own(committed_db, monkeypatch):
    """The periodic task commits each removal; one that fails leaves the others done."""
    from media import tasks
    from tenancy import service as tenancy
    from tenancy.models import Tenant
    from visits import service as visits

    past = utcnow() - dt.timedelta(days=2)
    with committed_db.session() as session:
        tenant = tenancy.create_tenant(session=session, name="清扫家政", signature="清扫家政")
        customer = make_customer(session, tenant, name="王女士", phone="13800138000")
        visit = visits.create_visit(
            session=session, tenant=tenant, customer_id=customer.id, service_type="ac_cleaning"
        )
        made = [
            resumable.create_upload(
                session=session,
                tenant=tenant,
                visit_id=visit.id,
                length=100,
                metadata={"phase": "before"},
                photo_max=1000,
                clip_max=1000,
                now=past,
            )
            for _ in range(3)
        ]
        ids = [u.id for u in made]
        tokens = [u.token for u in made]
        tenant_id = tenant.id
    remove = resumable.remove

    def fails_on_the_second(**kwargs):
        if kwargs["upload_id"] == ids[1]:
            raise RuntimeError("a disk that will not let go")
        remove(**kwargs)

    monkeypatch.setattr(resumable, "remove", fails_on_the_second)
    try:
        tasks.sweep_uploads()
        with committed_db.session() as session:
            left = session.scalars(
                select(ResumableUpload.id).where(ResumableUpload.id.in_(ids))
            ).all()
        assert left == [ids[1]]
        assert not resumable.files_of(tokens[0]).exists()
        assert resumable.files_of(tokens[1]).exists()
        assert not resumable.files_of(tokens[2]).exists()
    finally:
        with committed_db.session() as session:
            session.execute(sa_delete(Tenant).where(Tenant.id == tenant_id))


def test_pieces_no_upload_owns_are_found_once_a_day_old(client, session, account, visit):
    import os

    location = opened(client, account, visit.id, phone_jpeg(size=(200, 100)))
    owned = resumable.files_of(token(location))
    stray = resumable.files_of("RolledBackCreation0000000")
    stray.mkdir()
    (stray / f"{0:012d}").write_bytes(b"x" * 10)
    now = utcnow()
    assert "RolledBackCreation0000000" not in resumable.orphans(session=session, now=now)
    old = (now - dt.timedelta(days=2)).timestamp()
    for path in (owned, stray):
        os.utime(path, (old, old))
    found = resumable.orphans(session=session, now=now)
    assert "RolledBackCreation0000000" in found and token(location) not in found
    resumable.remove_orphan("RolledBackCreation0000000")
    assert not stray.exists() and owned.exists()
