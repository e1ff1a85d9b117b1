"""The staff phone page without a browser, on SQLite and PostgreSQL: who may see what (a
staff member's own visits only, no console page; the office not here), uploads from the
phone signed in by the session cookie with the CSRF token in a header, the one-file form
without JavaScript, finishing the visit, and refusals in Chinese."""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select

from media import service as media_service
from media.models import Media, ResumableUpload
from office import web
from staff.words import chinese
from tests.factories import create_consenting_customer
from tests.media.conftest import phone_jpeg, upload
from tests.office.support import form_token, sign_in
from visits import service as visits

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}
CJK = re.compile(r"[\u4e00-\u9fff]")


def _meta(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


@pytest.fixture
def day(session, account):
    customer = create_consenting_customer(
        session=session,
        tenant=account.tenant,
        name="王女士",
        phone="13800138000",
        region="浦东新区",
    )
    mine = visits.create_staff(session=session, tenant=account.tenant, name="李秀兰")
    theirs = visits.create_staff(session=session, tenant=account.tenant, name="张师傅")
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    own = visits.create_visit(
        session=session,
        tenant=account.tenant,
        customer_id=customer.id,
        staff_id=mine.id,
        service_type="deep_cleaning",
        areas=["客厅", "厨房"],
        scheduled_at=soon,
    )
    other = visits.create_visit(
        session=session,
        tenant=account.tenant,
        customer_id=customer.id,
        staff_id=theirs.id,
        service_type="ac_cleaning",
        areas=["卧室"],
        scheduled_at=soon,
    )
    session.flush()
    return {"mine": mine, "theirs": theirs, "own": own, "other": other, "customer": customer}


@pytest.fixture
def staff_client(client, session, account, day):
    """The client signed in as the staff member 李秀兰 through her link; its CSRF token."""
    sign_in(
        client,
        session,
        account.tenant,
        role="staff",
        name="李秀兰",
        phone="13900139111",
        staff_id=day["mine"].id,
    )
    page = client.get("/staff/")
    assert page.status_code == 200, page.text
    return client, form_token(page.text)


def _create(client, token: str | None, visit_id: int, length: int, **fields: str):
    headers = {
        **TUS,
        "Upload-Length": str(length),
        "Upload-Metadata": _meta(phase="before", area="客厅", filename="a.jpg", **fields),
    }
    if token is not None:
        headers["X-CSRF-Token"] = token
    return client.post(f"/staff/visits/{visit_id}/uploads", headers=headers)


def test_the_day_and_a_visit_show_what_is_missing(staff_client, day):
    client, _token = staff_client
    today = client.get("/staff/")
    assert "今日任务" in today.text and "王女士" in today.text and "深度保洁" in today.text
    assert "浦东新区" in today.text and "客厅：缺服务前、服务后、视频" in today.text
    assert "张师傅" not in today.text and "空调" not in today.text  # another's visit
    assert 'href="/staff/static/manifest.webmanifest"' in today.text
    page = client.get(f"/staff/visits/{day['own'].id}")
    assert page.status_code == 200
    assert 'accept="image/*,video/*" capture="environment" multiple' in page.text
    assert page.text.count('enctype="multipart/form-data"') == 7  # 2 areas × 3 phases + 日报
    assert "完成并生成报告" in page.text and "还不能完成" in page.text
    manifest = client.get("/staff/static/manifest.webmanifest")
    assert manifest.status_code == 200 and manifest.json()["start_url"].startswith("/staff/")
    assert client.get("/staff/static/uploads.js").status_code == 200


def test_another_staff_members_visit_is_refused_everywhere(staff_client, session, account, day):
    client, token = staff_client
    other = day["other"].id
    page = client.get(f"/staff/visits/{other}")
    assert page.status_code == 403 and "不是分配给你的" in page.text
    assert client.get(f"/staff/visits/{other}/progress").status_code == 403
    assert client.get(f"/staff/visits/{other}/report").status_code == 403
    refused = _create(client, token, other, 1000)
    assert refused.status_code == 403 and "不是分配给你的" in refused.json()["detail"]
    # An upload of that visit opened by the office's program: not reachable from the phone.
    made = client.post(
        f"/v1/visits/{other}/uploads",
        headers={
            **account.headers,
            **TUS,
            "Upload-Length": "100",
            "Upload-Metadata": _meta(phase="before", area="卧室"),
        },
    )
    assert made.status_code == 201
    theirs = "/staff/uploads/" + made.headers["location"].rsplit("/", 1)[1]
    assert client.head(theirs, headers=TUS).status_code == 403
    assert client.get(theirs).status_code == 403
    assert (
        client.patch(
            theirs,
            content=b"x" * 10,
            headers={**TUS, **OCTETS, "Upload-Offset": "0", "X-CSRF-Token": token},
        ).status_code
        == 403
    )
    assert client.delete(theirs, headers={**TUS, "X-CSRF-Token": token}).status_code == 403
    held = session.scalars(select(ResumableUpload).where(ResumableUpload.visit_id == other)).one()
    assert held.received == 0
    for action in ("start", "finish"):
        answer = client.post(f"/staff/visits/{other}/{action}", data={"csrf_token": token})
        assert answer.status_code == 403, action
    session.refresh(day["other"])
    assert day["other"].started_at is None and day["other"].finished_at is None
    form = client.post(
        f"/staff/visits/{other}/upload",
        data={"csrf_token": token, "phase": "before", "area": "卧室"},
        files={"file": ("a.jpg", phone_jpeg(), "image/jpeg")},
    )
    assert form.status_code == 403 and "不是分配给你的" in form.text
    # Their media, even by its number.
    answer = upload(client, account, other, phone_jpeg(), area="卧室")
    assert client.get(f"/staff/media/{answer.json()['id']}").status_code == 403
    assert (
        session.scalar(select(func.count()).select_from(Media).where(Media.visit_id == other)) == 1
    )


def test_staff_reach_no_console_page(app, staff_client):
    client, token = staff_client
    pages = sorted(
        {
            re.sub(r"\{[^}]+\}", "1", route.path_format)
            for route in iter_route_contexts(app.routes)
            if route.path_format.startswith("/office/")
            and "GET" in (route.methods or ())
            and not route.path_format.startswith(("/office/login", "/office/welcome/"))
            and route.path_format != "/office/"
        }
    )
    assert "/office/today" in pages and len(pages) > 3
    for path in pages:
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 403, path
        assert "没有权限" in answer.text
    assert client.get("/office/", follow_redirects=False).headers["location"] == "/staff/"
    out = client.post("/office/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    gone = client.get("/staff/", follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"].startswith(
        "/office/login?next=/staff/"
    )
    unsigned = _create(client, token, 1, 10)
    assert unsigned.status_code == 401 and "登录" in unsigned.json()["detail"]
    form = client.post(
        "/staff/visits/1/upload",
        data={"csrf_token": token, "phase": "before"},
        files={"file": ("a.jpg", phone_jpeg(), "image/jpeg")},
    )
    assert form.status_code == 401 and "请先登录" in form.text


def test_the_office_is_refused_the_staff_pages(client, session, account, day):
    sign_in(client, session, account.tenant, role="owner")
    answer = client.get("/staff/")
    assert answer.status_code == 403 and "没有权限" in answer.text
    assert _create(client, None, day["own"].id, 10).status_code == 403


def test_writes_from_the_phone_need_the_csrf_header(staff_client, session, day):
    client, token = staff_client
    own = day["own"].id
    assert _create(client, None, own, 1000).status_code == 403
    wrong = _create(client, token[:-2] + "xx", own, 1000)
    assert wrong.status_code == 403 and "页面已过期" in wrong.json()["detail"]
    assert session.scalar(select(func.count()).select_from(ResumableUpload)) == 0
    made = _create(client, token, own, 1000)
    assert made.status_code == 201 and made.headers["location"].startswith("/staff/uploads/")
    location = made.headers["location"]
    bare = client.patch(
        location,
        content=b"\xff\xd8\xff" + b"x" * 61,
        headers={**TUS, **OCTETS, "Upload-Offset": "0"},
    )
    assert bare.status_code == 403
    assert int(client.head(location, headers=TUS).headers["upload-offset"]) == 0
    assert client.delete(location, headers=TUS).status_code == 403
    started = client.post(f"/staff/visits/{own}/start", data={})
    assert started.status_code == 403
    session.refresh(day["own"])
    assert day["own"].started_at is None


def test_a_photo_from_the_phone_in_pieces(staff_client, session, day):
    client, token = staff_client
    own = day["own"].id
    data = phone_jpeg(size=(1200, 900), orientation=6)
    made = _create(client, token, own, len(data), note="空调滤网很脏")
    location = made.headers["location"]
    headers = {**TUS, **OCTETS, "X-CSRF-Token": token}
    first = client.patch(location, content=data[:5000], headers={**headers, "Upload-Offset": "0"})
    assert first.status_code == 204 and first.headers["upload-offset"] == "5000"
    wrong = client.patch(location, content=data[5000:], headers={**headers, "Upload-Offset": "10"})
    assert wrong.status_code == 409 and "服务器已收到 5000 字节" in wrong.json()["detail"]
    last = client.patch(location, content=data[5000:], headers={**headers, "Upload-Offset": "5000"})
    assert last.status_code == 204, last.text
    media_id = int(last.headers["upload-media-id"])
    waiting = client.get(f"/staff/media/{media_id}").json()
    assert waiting["status"] == "processing" and waiting["thumb"] is None
    media_service.process_media(session=session, media_id=media_id)
    ready = client.get(f"/staff/media/{media_id}").json()
    assert ready["status"] == "ready" and ready["thumb"].startswith("/m/")
    assert client.get(ready["thumb"]).headers["content-type"] == "image/jpeg"
    page = client.get(f"/staff/visits/{own}").text
    assert ready["thumb"] in page and "空调滤网很脏" in page
    assert "客厅" in page and "缺服务后、视频" in page


def test_a_refused_file_says_why_in_chinese(staff_client, day):
    client, token = staff_client
    page = b"<!doctype html><html><body>" + b"x" * 200
    location = _create(client, token, day["own"].id, len(page)).headers["location"]
    refused = client.patch(
        location,
        content=page,
        headers={**TUS, **OCTETS, "X-CSRF-Token": token, "Upload-Offset": "0"},
    )
    assert refused.status_code == 415
    assert "不是能接收的照片或视频" in refused.json()["detail"]
    gone = client.head(location, headers=TUS)
    assert gone.status_code == 410
    assert CJK.search(client.get(location).json()["failure_reason"])


def test_without_javascript_the_form_uploads_one_file(staff_client, session, day):
    client, token = staff_client
    own = day["own"].id
    fields = {"phase": "after", "area": "厨房", "note": "灶台"}
    forged = client.post(
        f"/staff/visits/{own}/upload",
        data=fields,
        files={"file": ("a.jpg", phone_jpeg(), "image/jpeg")},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert session.scalar(select(func.count()).select_from(Media)) == 0
    done = client.post(
        f"/staff/visits/{own}/upload",
        data={"csrf_token": token, **fields},
        files={"file": ("a.jpg", phone_jpeg(), "image/jpeg")},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].endswith("?uploaded=1")
    stored = session.scalars(select(Media).where(Media.visit_id == own)).one()
    assert (stored.phase, stored.area, stored.note) == ("after", "厨房", "灶台")
    notice = client.get(done.headers["location"])
    assert "已上传，正在处理" in notice.text
    bad = client.post(
        f"/staff/visits/{own}/upload",
        data={"csrf_token": token, **fields},
        files={"file": ("a.jpg", b"%PDF-1.4 not a photo" * 10, "image/jpeg")},
    )
    assert bad.status_code == 415 and "不是能接收的照片或视频" in bad.text


def test_finish_from_the_phone_builds_the_report(staff_client, session, account, day):
    client, token = staff_client
    own = day["own"]
    client.post(f"/staff/visits/{own.id}/start", data={"csrf_token": token})
    session.refresh(own)
    assert own.started_at is not None
    early = client.post(f"/staff/visits/{own.id}/finish", data={"csrf_token": token})
    assert early.status_code == 409
    assert "客厅还缺服务前、服务后照片" in early.text
    for n, area in enumerate(own.areas):
        for phase in ("before", "after"):
            answer = upload(
                client,
                account,
                own.id,
                phone_jpeg(size=(640, 480), color=(30 * n, 90, 60 if phase == "before" else 160)),
                phase=phase,
                area=area,
            )
            media_service.process_media(session=session, media_id=answer.json()["id"])
    progress = client.get(f"/staff/visits/{own.id}/progress").json()
    assert progress["can_finish"] is True and progress["why"] == ""
    done = client.post(
        f"/staff/visits/{own.id}/finish", data={"csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"].endswith("/report")
    report = client.get(done.headers["location"])
    assert "服务报告已生成" in report.text and "店里会先审核" in report.text
    link = re.search(r'href="(/r/[^"]+)"', report.text)
    assert link and client.get(link.group(1)).status_code == 200
    again = client.post(f"/staff/visits/{own.id}/finish", data={"csrf_token": token})
    assert again.status_code == 409 and "已经完成" in again.text


@pytest.mark.parametrize(
    "sentence",
    [
        "The file is empty; please choose the photo again and upload it.",
        "This file is over 25 MB, the most we take for photos; send a smaller one.",
        "This photo is 80 megapixels, more than the 64 we accept; set the camera …",
        "This is a web page, not a photo or clip we can take; send JPEG …",
        "This photo is damaged and cannot be read; please take it again.",
        "The upload was cut off before the end; please upload the photo again.",
        "We could not process this photo; please upload it again.",
        "This clip could not be converted; it may be damaged or only partly uploaded.",
        "There is no such upload in this company (unfinished uploads are removed …",
        "This upload waited over a day for its next piece and has expired; start it again.",
        "The server holds 5 bytes of this file, not 0; ask for the offset (HEAD) …",
        "This visit is another staff member's; you can open and upload to your own …",
        "Send one file per upload, in the field named 'file'.",
    ],
)
def test_every_refusal_the_phone_meets_reads_in_chinese(sentence):
    words = chinese(sentence, 422)
    assert CJK.search(words) and not re.search(
        r"[A-Za-z]{5,}",
        words.replace("JPEG", "")
        .replace("WebP", "")
        .replace("AVIF", "")
        .replace("WebM", "")
        .replace("JavaScript", ""),
    )
    assert words != chinese("something unknown", 422)


def test_a_script_write_needs_the_session_token_in_the_header(app, client, session, account, day):
    probe = APIRouter()

    @probe.post("/probe-write")
    def write(person: Annotated[web.SignedIn, Depends(web.check_header)]) -> dict[str, str]:
        return {"name": person.user.name}

    app.include_router(probe)
    sign_in(
        client,
        session,
        account.tenant,
        role="staff",
        name="李秀兰",
        phone="13900139111",
        staff_id=day["mine"].id,
    )
    token = form_token(client.get("/staff/").text)
    assert client.post("/probe-write").status_code == 403
    assert client.post("/probe-write", headers={"X-CSRF-Token": "x" * 40}).status_code == 403
    done = client.post("/probe-write", headers={"X-CSRF-Token": token})
    assert done.status_code == 200 and done.json() == {"name": "李秀兰"}
