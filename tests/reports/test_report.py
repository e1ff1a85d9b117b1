"""Visit reports through the HTTP API: assembly, the public page, the long image, MMS parts."""

from __future__ import annotations

import datetime as dt
import io
import re
import subprocess
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from sqlalchemy import select

from bookings.models import ShortLink
from huifang import storage
from media import ffmpeg, samples
from media import service as media_service
from reports import longimage, mms
from reports import service as reports
from reports.models import Report
from tests.media.conftest import phone_jpeg, upload
from visits.service_types import SERVICE_TYPES


def _ready(
    client, session, account, visit_id: int, data: bytes, *, phase: str, area: str | None = "客厅"
) -> int:
    """Upload a photo and run what the media task runs on it."""
    response = upload(client, account, visit_id, data, phase=phase, area=area)
    assert response.status_code == 202, response.text
    media_service.process_media(session=session, media_id=response.json()["id"])
    session.flush()
    return response.json()["id"]


def _room(*, clean: bool, seed: int, size: tuple[int, int] = (800, 600)) -> bytes:
    """A sample room; a clean room is marked by its seed (otherwise every clean one is alike)."""
    room = Image.open(io.BytesIO(samples.room_photo(clean=clean, seed=seed, size=size)))
    room = room.convert("RGB")
    room.paste((seed * 37 % 256, 90, 200 - seed * 11 % 200), (8, 8, 8 + 6 * (seed + 1), 14))
    out = io.BytesIO()
    room.save(out, "JPEG", quality=90)
    return out.getvalue()


def _grainy(seed: int, size: tuple[int, int] = (1600, 1200), *, clean: bool = False) -> bytes:
    """A room with sensor-like grain: detail a JPEG cannot squeeze away, like a real photo."""
    room = Image.open(io.BytesIO(samples.room_photo(clean=clean, seed=seed, size=size)))
    noise = Image.effect_noise(size, 48).convert("RGB")
    out = io.BytesIO()
    Image.blend(room.convert("RGB"), noise, 0.22).save(out, "JPEG", quality=92)
    return out.getvalue()


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def _get(client, url: str):
    return client.get(_path(url) if "://" in url else url)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(html: str, name: str) -> list[dict[str, str | None]]:
    parser = _Tags()
    parser.feed(html)
    return [attrs for tag, attrs in parser.tags if tag == name]


@pytest.fixture
def staffed(client, session, account, visit):
    """The visit's staff member with a card: photo, certificates, years of experience."""
    staff_id = visit.staff_id
    changed = client.patch(
        f"/v1/staff/{staff_id}",
        headers=account.headers,
        json={"certificates": ["家政服务员（高级）", "空调清洗技师"], "years_experience": 8},
    )
    assert changed.status_code == 200, changed.text
    portrait = phone_jpeg(size=(900, 1400), color=(200, 170, 150))
    photo = client.put(
        f"/v1/staff/{staff_id}/photo",
        headers=account.headers,
        files={"file": ("me.jpg", portrait, "image/jpeg")},
    )
    assert photo.status_code == 200, photo.text
    return visit


@pytest.fixture
def full_visit(client, session, account, staffed):
    """Before and after of two areas, a photo of the work, and the staff report photo."""
    visit = staffed
    for seed, area in enumerate(("客厅", "厨房")):
        _ready(
            client,
            session,
            account,
            visit.id,
            _room(clean=False, seed=seed),
            phase="before",
            area=area,
        )
        _ready(
            client,
            session,
            account,
            visit.id,
            _room(clean=True, seed=seed),
            phase="after",
            area=area,
        )
    _ready(
        client, session, account, visit.id, _room(clean=False, seed=7), phase="during", area="客厅"
    )
    _ready(
        client,
        session,
        account,
        visit.id,
        phone_jpeg(size=(900, 1200), color=(60, 160, 90)),
        phase="staff_report",
        area=None,
    )
    return visit


def _visit_month(account, visit) -> int:
    zone = ZoneInfo(account.tenant.timezone)
    return (visit.finished_at or dt.datetime.now(dt.UTC)).astimezone(zone).month


# --- assembly and the page -------------------------------------------------------------------


def test_report_of_a_visit_has_pairs_staff_card_advice_and_offer(
    client, session, account, full_visit
):
    visit = full_visit
    built = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers)
    assert built.status_code == 201, built.text
    body = built.json()
    token = body["url"].rsplit("/r/", 1)[1]
    assert len(token) >= 22 and body["book_url"].endswith(f"/b/{token}")
    assert [h["area"] for h in body["highlights"]] == ["厨房", "客厅"]
    assert body["staff"] == {
        "name": "李秀兰",
        "years_experience": 8,
        "certificates": ["家政服务员（高级）", "空调清洗技师"],
    }
    assert body["staff_report"] is not None
    assert body["care_advice"]["text"] == reports.CARE_ADVICE_DEFAULTS["ac_cleaning"]
    month = _visit_month(account, visit)
    assert body["offer"]["title"] == reports.OFFER_DEFAULTS[month][0]
    assert body["recap"] is None
    assert body["expired"] is False
    valid = dt.datetime.fromisoformat(body["expires_at"]) - dt.datetime.fromisoformat(
        body["built_at"]
    )
    assert valid == dt.timedelta(days=account.tenant.report_valid_days)

    # Every picture the API names is served, with the size it says.
    for image in [
        body["long_image"],
        body["staff_report"],
        *(h["image"] for h in body["highlights"]),
    ]:
        served = _get(client, image["url"])
        assert served.status_code == 200, image["url"]
        assert served.headers["content-type"] == "image/jpeg"
        assert len(served.content) == image["bytes"]
        assert Image.open(io.BytesIO(served.content)).size == (image["width"], image["height"])
    long = Image.open(io.BytesIO(_get(client, body["long_image"]["url"]).content))
    assert long.format == "JPEG" and long.width == 750 and long.height > 2000
    assert body["long_image"]["bytes"] <= longimage.DEFAULT_BUDGET

    page = client.get(f"/r/{token}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # Only the page's own counting script, no inline one.
    assert "script-src 'self';" in page.headers["content-security-policy"]
    html = page.text
    for text in (
        account.tenant.name,
        "李秀兰",
        "家政服务员（高级）",
        "从业 8 年",
        reports.CARE_ADVICE_DEFAULTS["ac_cleaning"],
        reports.OFFER_DEFAULTS[month][0],
        "回复1预约",
        "今日工作汇报",
        "服务前后对比",
    ):
        assert text in html, text
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/r/-/report.js" defer>']
    books = [a for a in _tags(html, "a") if "book" in (a.get("class") or "")]
    assert [a["href"] for a in books] == [f"/b/{token}"]
    images = _tags(html, "img")
    assert len(images) >= 2 + 1 + 1 + 5  # pairs, work report, staff photo, every photo
    for img in images:
        assert img["loading"] == "lazy" and int(img["width"]) > 0 and int(img["height"]) > 0
        served = client.get(img["src"])
        assert served.status_code == 200, img["src"]
        assert served.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(served.content)).size[0] > 0
    staff_photo = next(img for img in images if img["src"].split("/")[-1].startswith("staff-"))
    face = Image.open(io.BytesIO(client.get(staff_photo["src"]).content))
    assert face.size == (512, 512)

    again = client.get(f"/v1/visits/{visit.id}/report", headers=account.headers)
    assert again.status_code == 200 and again.json()["url"] == body["url"]


def test_rebuilding_keeps_the_link_and_takes_the_companys_new_words(
    client, session, account, visit
):
    _ready(client, session, account, visit.id, _room(clean=False, seed=1), phase="before")
    _ready(client, session, account, visit.id, _room(clean=True, seed=1), phase="after")
    first = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).json()
    old_long = session.scalars(select(Report).where(Report.visit_id == visit.id)).one().long_path

    month = _visit_month(account, visit)
    advice = "滤网每月冲洗一次，换季前请预约深度清洗。"
    assert (
        client.put(
            "/v1/care-advice/ac_cleaning", headers=account.headers, json={"text": advice}
        ).status_code
        == 200
    )
    assert (
        client.put(
            f"/v1/report-offers/{month}",
            headers=account.headers,
            json={"title": "老客户空调八折", "text": "本月预约空调清洗享八折优惠。"},
        ).status_code
        == 200
    )
    rebuilt = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers)
    assert rebuilt.status_code == 200, rebuilt.text
    second = rebuilt.json()
    assert second["url"] == first["url"] and second["id"] == first["id"]
    assert second["long_image"]["url"] != first["long_image"]["url"]
    assert second["care_advice"]["text"] == advice
    assert second["offer"] == {"title": "老客户空调八折", "text": "本月预约空调清洗享八折优惠。"}
    # The pair did not change: its MMS picture is the same file, not made again.
    assert second["highlights"][0]["image"]["url"] == first["highlights"][0]["image"]["url"]
    assert _get(client, first["long_image"]["url"]).status_code == 404
    assert not storage.resolve(old_long).exists()  # removed once the rebuild committed
    page = _get(client, first["url"])
    assert advice in page.text and "老客户空调八折" in page.text


def test_staff_report_photo_alone_makes_a_report(client, session, account, visit):
    _ready(
        client,
        session,
        account,
        visit.id,
        phone_jpeg(size=(900, 1200)),
        phase="staff_report",
        area=None,
    )
    built = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers)
    assert built.status_code == 201, built.text
    assert built.json()["highlights"] == [] and built.json()["staff_report"] is not None
    token = built.json()["url"].rsplit("/", 1)[1]
    assert "今日工作汇报" in client.get(f"/r/{token}").text


def test_the_book_button_opens_the_booking_page_for_this_report(client, session, account, visit):
    _ready(
        client,
        session,
        account,
        visit.id,
        phone_jpeg(size=(900, 1200)),
        phase="staff_report",
        area=None,
    )
    built = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).json()
    token = built["url"].rsplit("/", 1)[1]
    booking_page = client.get(f"/b/{token}")
    assert booking_page.status_code == 200 and account.tenant.name in booking_page.text
    link = session.scalars(select(ShortLink).where(ShortLink.source_type == "visit_report")).one()
    assert (link.source_id, link.clicks) == (str(visit.id), 1)
    client.get(f"/b/{token}", headers={"User-Agent": "another phone"})
    session.refresh(link)
    assert link.clicks == 2  # the same link each time: bookings count for this report


# --- refusals --------------------------------------------------------------------------------


def test_no_photo_yet_or_still_processing_is_409_with_a_sentence(client, session, account, visit):
    empty = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers)
    assert empty.status_code == 409
    assert "no processed photo yet" in empty.json()["detail"]
    waiting = upload(client, account, visit.id, _room(clean=False, seed=3), phase="before")
    assert waiting.status_code == 202
    busy = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers)
    assert busy.status_code == 409
    assert "still being processed" in busy.json()["detail"]
    assert client.get(f"/v1/visits/{visit.id}/report", headers=account.headers).status_code == 404
    media_service.process_media(session=session, media_id=waiting.json()["id"])
    assert client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).status_code == 201


def test_another_companys_visit_is_404(client, session, account, other_account, visit):
    _ready(client, session, account, visit.id, _room(clean=True, seed=2), phase="after")
    assert client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).status_code == 201
    for method in ("POST", "GET"):
        response = client.request(
            method, f"/v1/visits/{visit.id}/report", headers=other_account.headers
        )
        assert response.status_code == 404
        assert "李秀兰" not in response.text


def test_expired_report_is_a_polite_410_and_its_files_close(client, session, account, visit):
    _ready(client, session, account, visit.id, _room(clean=True, seed=4), phase="after")
    body = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).json()
    token = body["url"].rsplit("/", 1)[1]
    report = session.scalars(select(Report).where(Report.visit_id == visit.id)).one()
    report.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    session.flush()
    page = client.get(f"/r/{token}")
    assert page.status_code == 410
    assert "已过期" in page.text and account.tenant.name in page.text
    assert "回复" in page.text and "【测试家政】" in page.text  # how to reach the company
    assert _get(client, body["long_image"]["url"]).status_code == 410
    api = client.get(f"/v1/visits/{visit.id}/report", headers=account.headers).json()
    assert api["expired"] is True


def test_unknown_report_links_are_a_404_page(client):
    for token in ("x" * 24, "short", "A" * 200):
        page = client.get(f"/r/{token}")
        assert page.status_code == 404
        assert "未找到这份服务报告" in page.text
    assert client.get(f"/r/{'x' * 24}/long-{'y' * 24}.jpg").status_code == 404


def test_report_files_need_their_exact_names(client, session, account, visit):
    _ready(client, session, account, visit.id, _room(clean=True, seed=5), phase="after")
    body = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).json()
    token = body["url"].rsplit("/", 1)[1]
    for name in (
        "long.jpg",
        "..%2F..%2Fetc%2Fpasswd",
        "staff-../../x.jpg",
        f"long-{'a' * 24}.jpg",
        "recap-abcdabcd.mp4",
    ):
        assert client.get(f"/r/{token}/{name}").status_code == 404, name


# --- care advice and offers ------------------------------------------------------------------


def test_care_advice_has_defaults_for_every_service_and_takes_the_companys_own(
    client, account, other_account
):
    listed = client.get("/v1/care-advice", headers=account.headers).json()
    by_code = {item["service_type"]: item for item in listed}
    assert set(SERVICE_TYPES) <= set(by_code)
    for code, item in by_code.items():
        assert item["text"] and not item["customized"], code
        assert item["label"] == SERVICE_TYPES[code]
    assert "3" in by_code["sofa_care"]["text"]  # how often, in months

    own = client.put(
        "/v1/care-advice/pet_hair_cleaning",
        headers=account.headers,
        json={"text": "  宠物掉毛季建议每两周除毛一次。  "},
    )
    assert own.status_code == 200, own.text
    assert own.json() == {
        "service_type": "pet_hair_cleaning",
        "label": "pet_hair_cleaning",
        "title": "保养建议",
        "text": "宠物掉毛季建议每两周除毛一次。",
        "customized": True,
    }
    by_label = client.put(
        "/v1/care-advice/沙发护理",
        headers=account.headers,
        json={"text": "真皮沙发每季度上一次护理油。"},
    )
    assert by_label.json()["service_type"] == "sofa_care"
    listed = {
        i["service_type"]: i for i in client.get("/v1/care-advice", headers=account.headers).json()
    }
    assert listed["pet_hair_cleaning"]["customized"] and listed["sofa_care"]["customized"]
    others = {
        i["service_type"]: i
        for i in client.get("/v1/care-advice", headers=other_account.headers).json()
    }
    assert "pet_hair_cleaning" not in others and not others["sofa_care"]["customized"]

    for text in ("", "   ", "长" * 301):
        refused = client.put(
            "/v1/care-advice/sofa_care", headers=account.headers, json={"text": text}
        )
        assert refused.status_code == 422, text
        assert refused.json()["detail"]
    assert (
        client.put(
            "/v1/care-advice/" + "x" * 65, headers=account.headers, json={"text": "好"}
        ).status_code
        == 422
    )

    back = client.delete("/v1/care-advice/sofa_care", headers=account.headers)
    assert back.status_code == 200
    assert back.json()["text"] == reports.CARE_ADVICE_DEFAULTS["sofa_care"]
    assert back.json()["customized"] is False


def test_offers_by_month_have_defaults_and_can_be_changed(client, account, other_account):
    listed = client.get("/v1/report-offers", headers=account.headers).json()
    assert [o["month"] for o in listed] == list(range(1, 13))
    assert listed[0]["title"] == "春节前深度保洁" and listed[11]["title"] == "春节前深度保洁"
    assert listed[4]["title"] == "入梅前除湿防霉"
    assert "空调" in listed[3]["title"]  # before summer

    changed = client.put(
        "/v1/report-offers/5",
        headers=account.headers,
        json={"title": "梅雨季防霉套餐", "text": "除湿、防霉、衣柜消毒一次做好。"},
    )
    assert changed.status_code == 200 and changed.json()["customized"] is True
    assert (
        client.get("/v1/report-offers", headers=other_account.headers).json()[4]["title"]
        == "入梅前除湿防霉"
    )
    for month, body in (
        (13, {"title": "x", "text": "y"}),
        (0, {"title": "x", "text": "y"}),
        (5, {"title": "", "text": "y"}),
        (5, {"title": "x" * 21, "text": "y"}),
        (5, {"title": "好", "text": " "}),
    ):
        refused = client.put(f"/v1/report-offers/{month}", headers=account.headers, json=body)
        assert refused.status_code == 422, (month, body)
    assert (
        client.delete("/v1/report-offers/5", headers=account.headers).json()["title"]
        == "入梅前除湿防霉"
    )


# --- staff photo -----------------------------------------------------------------------------


def test_staff_photo_is_kept_as_a_small_clean_square(client, session, account, visit):
    png = io.BytesIO()
    Image.new("RGB", (2400, 1600), (30, 90, 160)).save(png, "PNG")
    done = client.put(
        f"/v1/staff/{visit.staff_id}/photo",
        headers=account.headers,
        files={"file": ("me.png", png.getvalue(), "image/png")},
    )
    assert done.status_code == 200, done.text
    first = done.json()["photo_path"]
    stored = storage.resolve(first)
    with Image.open(stored) as image:
        assert image.format == "JPEG" and image.size == (512, 512)
    again = client.put(
        f"/v1/staff/{visit.staff_id}/photo",
        headers=account.headers,
        files={"file": ("me.jpg", phone_jpeg(gps=True), "image/jpeg")},
    )
    assert again.status_code == 200
    assert b"GPS" not in storage.resolve(again.json()["photo_path"]).read_bytes()
    assert not stored.exists()  # the replaced photo is gone once the change committed
    bad = client.put(
        f"/v1/staff/{visit.staff_id}/photo",
        headers=account.headers,
        files={"file": ("me.jpg", b"<html>no</html>", "image/jpeg")},
    )
    assert bad.status_code == 415 and "photo" in bad.json()["detail"]


# --- the long image --------------------------------------------------------------------------


def test_long_image_stays_750_wide_and_under_budget_with_many_photos(
    client, session, account, visit
):
    areas = ["客厅", "厨房", "主卧", "次卧", "书房", "餐厅", "阳台", "卫生间"]
    for seed, area in enumerate(areas):
        _ready(client, session, account, visit.id, _grainy(seed), phase="before", area=area)
        _ready(
            client,
            session,
            account,
            visit.id,
            _grainy(seed + 50, clean=True),
            phase="after",
            area=area,
        )
    for seed in range(4):
        _ready(
            client,
            session,
            account,
            visit.id,
            _grainy(seed + 100, (1200, 1600)),
            phase="during",
            area="客厅",
        )
    body = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).json()
    assert len(body["highlights"]) == len(areas)  # the page shows every area
    data = _get(client, body["long_image"]["url"]).content
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.width == 750
    assert len(data) == body["long_image"]["bytes"] <= longimage.DEFAULT_BUDGET


def _detailed(size: tuple[int, int], seed: int) -> Image.Image:
    noise = Image.effect_noise(size, 90 + seed)
    return Image.merge(
        "RGB",
        (noise, noise.rotate(90, expand=False), noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    )


def test_long_image_lowers_quality_first_then_scales():
    pairs = [longimage.Photo(_detailed((1400, 700), seed), f"区域{seed}") for seed in range(4)]
    content = longimage.LongImageContent(
        company="测试家政",
        title="深度保洁 服务报告",
        subtitle="2026年11月20日",
        highlights=pairs,
        care_text="定期保养。",
        offer_title="春节前深度保洁",
        offer_text="提前预约。",
    )
    canvas = longimage.render(content)
    roomy = longimage.encode(canvas, budget=50_000_000)
    assert roomy.quality == longimage.QUALITIES[0] and roomy.width == 750
    tighter = longimage.encode(canvas, budget=len(roomy.data) * 2 // 3)
    assert tighter.width == 750 and tighter.quality < roomy.quality
    assert len(tighter.data) <= len(roomy.data) * 2 // 3
    tiny = longimage.encode(canvas, budget=60_000)
    assert len(tiny.data) <= 60_000 and tiny.width < 750  # only now is it scaled
    assert Image.open(io.BytesIO(tiny.data)).size == (tiny.width, tiny.height)


def test_long_image_wraps_chinese_and_long_links_inside_the_width():
    font = longimage.load_font(25, bold=False)
    text = (
        "空调建议每3个月清洗一次滤网，长时间不用时先开送风模式吹干内部。详见 "
        "https://example.com/a/very/long/path/that/does/not/fit/on/one/line/at/all"
    )
    lines = longimage.wrap(text, font, 300)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert all(font.getlength(line) <= 300 for line in lines)
    assert not any(line[0] in longimage.NO_LINE_START for line in lines)


# --- MMS -------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["twilio", "console", "aliyun", "sms"])
def test_mms_parts_fit_each_provider(client, session, account, full_visit, profile):
    visit = full_visit
    assert client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).status_code == 201
    body = client.get(
        f"/v1/visits/{visit.id}/report?profile={profile}", headers=account.headers
    ).json()
    payload = body["mms"]
    limits = mms.profile_for(profile)
    token = body["url"].rsplit("/", 1)[1]
    assert payload["sms_text"].startswith("【测试家政】")
    assert f"/r/{token}" in payload["sms_text"] and "回复1预约" in payload["sms_text"]
    if profile == "sms":
        assert payload["mode"] == "sms" and [p["kind"] for p in payload["parts"]] == ["text"]
        assert {d["name"] for d in payload["dropped"]} >= {"long", "pair-1", "staff_report"}
        return
    assert payload["mode"] == "mms"
    media = [p for p in payload["parts"] if p["kind"] != "text"]
    assert 1 <= len(media) <= limits.max_media
    assert payload["total_bytes"] == sum(p["bytes"] for p in payload["parts"])
    assert payload["total_bytes"] <= limits.max_total_bytes
    for part in media:  # the sizes are those of the files the provider will fetch
        served = _get(client, part["url"])
        assert served.status_code == 200
        assert len(served.content) == part["bytes"]
        assert served.headers["content-type"] == part["content_type"]
    texts = [p for p in payload["parts"] if p["kind"] == "text"]
    assert texts[0]["text"].startswith("【测试家政】")
    assert sum(p["text"].count("【") for p in texts) == 1  # the signature only
    assert f"/r/{token}" in "".join(p["text"] for p in texts)
    if profile == "aliyun":
        assert {"image", "text"} <= {p["kind"] for p in payload["parts"]}
        frames = {p["frame"] for p in payload["parts"]}
        assert len(frames) == len(media) and None not in frames
        for frame in frames:  # each frame: one picture or video and its text
            kinds = sorted(p["kind"] for p in payload["parts"] if p["frame"] == frame)
            assert len(kinds) == 2 and kinds[1] == "text"
        assert payload["smil"].count("<par ") == len(frames)
    else:
        assert payload["parts"][0]["kind"] == "text"
        assert [p["name"] for p in media][:2] == ["pair-1", "pair-2"]


def _candidate(name: str, size: int, kind: str = "image") -> mms.MediaCandidate:
    return mms.MediaCandidate(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        content_type="video/mp4" if kind == "video" else "image/jpeg",
        bytes=size,
        url=f"https://example.com/{name}",
        caption=name,
    )


SOURCE = dict(
    signature="洁家",
    summary="11月20日，李秀兰为您完成了深度保洁【加急】",
    link="https://hf.example.com/r/abcdefghijklmnopqrstuvwx",
)


def test_mms_drops_the_least_important_parts_first_and_says_why():
    many = [_candidate("recap", 2_400_000, "video")] + [
        _candidate(f"pair-{n}", 450_000) for n in range(1, 13)
    ]
    twilio = mms.mms_parts(mms.MmsSource(**SOURCE, media=many), mms.TWILIO)
    kept = [p.name for p in twilio.parts if p.kind != "text"]
    assert kept[0] == "recap" and len(kept) <= 10
    assert twilio.total_bytes <= mms.TWILIO.max_total_bytes
    dropped = [d.name for d in twilio.dropped]
    assert dropped == [f"pair-{n}" for n in range(len(kept), 13)]  # the last ones went
    assert all("5,243 KB" in d.reason or "at most 10" in d.reason for d in twilio.dropped)

    aliyun = mms.mms_parts(mms.MmsSource(**SOURCE, media=many), mms.ALIYUN)
    assert "recap" in {d.name for d in aliyun.dropped}  # 2.4 MB never fits 1,900 KB
    assert aliyun.total_bytes <= mms.ALIYUN_MAX_TOTAL_BYTES
    assert "【加急】" not in "".join(p.text or "" for p in aliyun.parts)


def test_aliyun_always_mixes_a_picture_in_or_falls_back_to_sms():
    video_first = [
        _candidate("recap", 1_500_000, "video"),
        _candidate("pair-1", 600_000),
        _candidate("long", 300_000),
    ]
    payload = mms.mms_parts(mms.MmsSource(**SOURCE, media=video_first), mms.ALIYUN)
    kinds = [p.kind for p in payload.parts]
    assert "image" in kinds and "text" in kinds
    # pair-1 (the most important picture) is taken first; the recap then no longer fits.
    assert [p.name for p in payload.parts if p.kind != "text"] == ["pair-1", "long"]
    assert "recap" in {d.name for d in payload.dropped}

    only_video = [_candidate("recap", 800_000, "video")]
    fallback = mms.mms_parts(mms.MmsSource(**SOURCE, media=only_video), mms.ALIYUN)
    assert fallback.mode == "sms" and fallback.parts[0].text == fallback.sms_text
    assert "refused" in fallback.dropped[0].reason
    twilio = mms.mms_parts(mms.MmsSource(**SOURCE, media=only_video), mms.TWILIO)
    assert twilio.mode == "mms" and [p.kind for p in twilio.parts] == ["text", "video"]


def test_sms_fallback_puts_the_signature_first_and_stays_short():
    text = mms.sms_text(mms.MmsSource(**SOURCE))
    assert text.startswith("【洁家】") and text.count("【") == 1
    assert SOURCE["link"] in text and text.endswith("回复1预约")
    long_summary = dict(SOURCE, summary="很" * 1000)
    assert len(mms.sms_text(mms.MmsSource(**long_summary), max_chars=200)) <= 200
    with pytest.raises(ValueError, match="known"):
        mms.profile_for("carrier-pigeon")
    assert mms.profile_for(" Twilio ").max_media == 10


# --- the recap video -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recap_file(tmp_path_factory):
    """A real 2 s H.264 clip and a poster frame, as reports.recap_video renders them."""
    folder = tmp_path_factory.mktemp("recap")
    video, poster = folder / "recap.mp4", folder / "poster.jpg"
    try:
        ffmpeg.run(
            [
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=15:duration=2",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-movflags",
                "+faststart",
                str(video),
            ],
            timeout=60,
        )
    except (ffmpeg.FfmpegError, subprocess.SubprocessError, OSError) as exc:
        pytest.fail(f"ffmpeg could not make a test clip: {exc}")
    Image.new("RGB", (320, 240), (10, 120, 100)).save(poster, "JPEG")
    return video, poster


def test_recap_video_shows_on_the_page_and_goes_in_mms(client, session, account, visit, recap_file):
    video, poster = recap_file
    _ready(client, session, account, visit.id, _room(clean=True, seed=6), phase="after")
    body = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).json()
    report = session.scalars(select(Report).where(Report.visit_id == visit.id)).one()
    reports.attach_recap(session=session, report=report, video=video, duration=2.0, poster=poster)
    session.flush()
    body = client.get(
        f"/v1/visits/{visit.id}/report?profile=aliyun", headers=account.headers
    ).json()
    recap = body["recap"]
    assert recap["bytes"] == video.stat().st_size and recap["duration_seconds"] == 2.0
    served = _get(client, recap["url"])
    assert served.status_code == 200 and served.headers["content-type"] == "video/mp4"
    assert served.content == video.read_bytes()
    ranged = client.get(_path(recap["url"]), headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and len(ranged.content) == 100  # phones seek in videos
    parts = body["mms"]["parts"]
    assert [p["kind"] for p in parts if p["frame"] == 1] == ["video", "text"]
    assert "image" in {p["kind"] for p in parts}  # aliyun: never video alone

    token = body["url"].rsplit("/", 1)[1]
    html = client.get(f"/r/{token}").text
    (tag,) = _tags(html, "video")
    assert tag["preload"] == "none" and "playsinline" in tag and "controls" in tag
    assert client.get(tag["poster"]).status_code == 200
    assert tag["src"] == _path(recap["url"])
    old_video = report.recap_path
    reports.attach_recap(session=session, report=report, video=video, duration=2.0)
    session.commit()
    assert not storage.resolve(old_video).exists()


def test_the_page_escapes_what_companies_and_staff_typed(client, session, account, visit):
    client.patch(
        f"/v1/staff/{visit.staff_id}",
        headers=account.headers,
        json={"name": "<img src=x onerror=alert(1)>"},
    )
    client.put(
        "/v1/care-advice/ac_cleaning",
        headers=account.headers,
        json={"text": "<script>alert('x')</script>"},
    )
    _ready(client, session, account, visit.id, _room(clean=True, seed=8), phase="after")
    body = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).json()
    html = client.get(f"/r/{body['url'].rsplit('/', 1)[1]}").text
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html


def test_long_image_grows_with_longer_care_advice(client, session, account, visit):
    _ready(client, session, account, visit.id, _room(clean=True, seed=9), phase="after")
    first = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).json()
    client.put(
        "/v1/care-advice/ac_cleaning",
        headers=account.headers,
        json={"text": "这是一段完全不同的、更长的保养建议。" * 8},
    )
    second = client.post(f"/v1/visits/{visit.id}/report", headers=account.headers).json()
    assert re.fullmatch(r"http.*/r/[\w-]+/long-[\w-]+\.jpg", second["long_image"]["url"])
    two = Image.open(io.BytesIO(_get(client, second["long_image"]["url"]).content))
    assert two.size == (750, second["long_image"]["height"])
    assert two.height > first["long_image"]["height"]  # the longer advice takes more lines
