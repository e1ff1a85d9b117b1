"""Uploading visit media through the HTTP API: checks at the door, processing, privacy."""

from __future__ import annotations

import csv
import io

import pytest
from PIL import Image

from huifang import storage
from media import service as media_service
from tests.media.conftest import CORPUS, phone_jpeg, upload


def _process(session, media_id: int) -> None:
    """What the media task does (tests run its body in the test's transaction)."""
    media_service.process_media(session=session, media_id=media_id)
    session.flush()


def _fetch(client, url: str) -> bytes:
    response = client.get("/" + url.split("://", 1)[1].split("/", 1)[1])
    assert response.status_code == 200, url
    return response.content


def test_photo_is_accepted_processed_and_described(client, session, account, visit):
    response = upload(client, account, visit.id, phone_jpeg(orientation=6, gps=True))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "processing" and body["kind"] == "photo"
    assert body["mime"] == "image/jpeg" and len(body["sha256"]) == 64

    _process(session, body["id"])
    media = client.get(f"/v1/media/{body['id']}", headers=account.headers).json()
    assert media["status"] == "ready"
    assert (media["width"], media["height"]) == (1200, 1600)  # Orientation 6: portrait
    assert media["captured_at"].startswith("2026-11-20")
    kinds = {r["kind"]: r for r in media["renditions"]}
    assert set(kinds) == {"display", "mms", "thumb"}
    assert kinds["mms"]["bytes"] <= 300_000
    assert max(kinds["thumb"]["width"], kinds["thumb"]["height"]) == 400

    display = Image.open(io.BytesIO(_fetch(client, kinds["display"]["url"])))
    assert display.height > display.width  # portrait out
    exif = display.getexif()
    assert exif.get(0x0112) in (None, 1)
    assert not exif.get_ifd(0x8825)  # GPS in, no GPS out
    for kind in ("display", "mms", "thumb"):
        data = _fetch(client, kinds[kind]["url"])
        assert b"GPS" not in data and b"http://ns.adobe.com/xap" not in data
        assert len(data) == kinds[kind]["bytes"]


def test_the_same_file_twice_gives_the_same_media(client, account, visit):
    data = phone_jpeg()
    first = upload(client, account, visit.id, data)
    again = upload(client, account, visit.id, data, filename="retry.jpg")
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    ("data", "name", "status", "phrase"),
    [
        (b"<!doctype html><html><body>hi</body></html>", "x.jpg", 415, "JPEG"),
        (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "x.jpg",
            415,
            "JPEG",
        ),
        (b"%PDF-1.7\n" + b"0" * 100, "scan.jpg", 415, "JPEG"),
        (b"", "empty.jpg", 422, "empty"),
    ],
)
def test_hostile_or_empty_files_are_refused(client, account, visit, data, name, status, phrase):
    response = upload(client, account, visit.id, data, filename=name)
    assert response.status_code == status, response.text
    assert phrase in response.json()["detail"]


def test_truncated_photo_is_refused_with_what_to_do(client, account, visit):
    data = phone_jpeg(size=(800, 600))
    response = upload(client, account, visit.id, data[: len(data) // 2])
    assert response.status_code == 422
    assert "again" in response.json()["detail"]


def test_huge_dimensions_in_a_tiny_png_are_refused(client, account, visit):
    image = Image.new("1", (20000, 20000))
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    assert len(out.getvalue()) < 200_000
    response = upload(client, account, visit.id, out.getvalue(), filename="x.png")
    assert response.status_code == 413
    assert "pixels" in response.json()["detail"]


def test_missing_or_wrong_fields_are_explained(client, account, visit):
    no_phase = client.post(
        f"/v1/visits/{visit.id}/media",
        headers=account.headers,
        files={"file": ("a.jpg", phone_jpeg(), "image/jpeg")},
    )
    assert no_phase.status_code == 422 and "phase" in no_phase.json()["detail"]
    no_file = client.post(
        f"/v1/visits/{visit.id}/media",
        headers=account.headers,
        data={"phase": "before"},
        files={"other": ("a.txt", b"x", "text/plain")},
    )
    assert no_file.status_code == 422 and "'file'" in no_file.json()["detail"]
    raw = client.post(
        f"/v1/visits/{visit.id}/media",
        headers={**account.headers, "Content-Type": "image/jpeg"},
        content=phone_jpeg(),
    )
    assert raw.status_code == 415 and "multipart/form-data" in raw.json()["detail"]


def test_client_filenames_never_become_paths(client, session, account, visit):
    nasty = "../../../etc/passwd\x00" + "下" * 5000 + ".jpg"
    response = upload(client, account, visit.id, phone_jpeg(color=(10, 200, 10)), filename=nasty)
    assert response.status_code == 202, response.text
    media = media_service.get_media(
        session=session, tenant_id=account.tenant.id, media_id=response.json()["id"]
    )
    assert media.original_path.startswith("originals/")
    assert ".." not in media.original_path and "passwd" not in media.original_path
    path = storage.resolve(media.original_path)
    assert storage.root() in path.parents and path.exists()
    assert media.original_name is None or len(media.original_name) <= 100


def test_original_is_private_to_the_company(client, account, other_account, visit):
    data = phone_jpeg()
    created = upload(client, account, visit.id, data).json()
    own = client.get(f"/v1/media/{created['id']}/original", headers=account.headers)
    assert own.status_code == 200 and own.content == data
    assert own.headers["cache-control"] == "private, no-store"
    assert client.get(f"/v1/media/{created['id']}/original").status_code == 401
    other = client.get(f"/v1/media/{created['id']}/original", headers=other_account.headers)
    assert other.status_code == 404
    assert (
        client.get(f"/v1/media/{created['id']}", headers=other_account.headers).status_code == 404
    )


def test_verification_page_shows_the_facts(client, session, account, visit):
    created = upload(client, account, visit.id, phone_jpeg(), area="厨房").json()
    _process(session, created["id"])
    code = created["verification_code"]
    assert len(code.replace("-", "")) == 10
    for typed in (code, code.lower(), code.replace("-", "")):
        page = client.get(f"/v/{typed}")
        assert page.status_code == 200, typed
        assert account.tenant.name in page.text
        assert "李秀兰" in page.text and "厨房" in page.text and "空调清洗" in page.text
        assert created["sha256"] in page.text
    missing = client.get("/v/ZZZZZ-ZZZZZ")
    assert missing.status_code == 404
    assert "未找到" in missing.text


def test_verification_codes_are_unique_and_unguessable(client, account, visit):
    codes = {
        upload(client, account, visit.id, phone_jpeg(color=(30 * i, 50, 50))).json()[
            "verification_code"
        ]
        for i in range(8)
    }
    assert len(codes) == 8
    assert all(len(c.replace("-", "")) == 10 for c in codes)


def test_before_and_after_of_an_area_make_a_composite(client, session, account, visit):
    before = upload(
        client, account, visit.id, phone_jpeg(color=(120, 110, 90)), phase="before", area="客厅"
    ).json()
    after = upload(
        client, account, visit.id, phone_jpeg(color=(230, 230, 225)), phase="after", area="客厅"
    ).json()
    lonely = upload(
        client, account, visit.id, phone_jpeg(color=(20, 20, 20)), phase="before", area="厨房"
    ).json()
    for media in (before, after, lonely):
        _process(session, media["id"])
    pairs = client.get(f"/v1/visits/{visit.id}/before-after", headers=account.headers).json()
    assert [(p["area"], p["before_media_id"], p["after_media_id"]) for p in pairs] == [
        ("客厅", before["id"], after["id"])
    ]
    composite = Image.open(io.BytesIO(_fetch(client, pairs[0]["composite"]["url"])))
    assert composite.width > composite.height  # two landscape shots side by side


def test_watermark_layout_is_per_company(client, account, other_account):
    assert client.get("/v1/watermark", headers=account.headers).json()["position"] == (
        "bottom-left"
    )
    changed = client.put(
        "/v1/watermark", headers=account.headers, json={"position": "top-right", "scale": 1.4}
    )
    assert changed.status_code == 200 and changed.json()["position"] == "top-right"
    assert client.get("/v1/watermark", headers=other_account.headers).json()["position"] == (
        "bottom-left"
    )
    bad = client.put("/v1/watermark", headers=account.headers, json={"position": "middle"})
    assert bad.status_code == 422


def _corpus_rows():
    index = CORPUS / "INDEX.tsv"
    if not index.exists():
        return []
    with index.open(encoding="utf-8") as fh:
        return [(row["file"], row["verdict"]) for row in csv.DictReader(fh, delimiter="\t")]


@pytest.mark.skipif(
    not (CORPUS / "INDEX.tsv").exists(),
    reason="../shared/corpus/images is not beside this checkout (CI has it)",
)
@pytest.mark.parametrize(("name", "verdict"), _corpus_rows())
def test_corpus_conformance_through_the_api(client, session, account, visit, name, verdict):
    """Every accept file ends ready, every reject file gets a 4xx with a detail, never a 500."""
    data = (CORPUS / name).read_bytes()
    response = upload(
        client, account, visit.id, data, filename=name, content_type="application/octet-stream"
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert verdict in ("reject", "either"), f"{name}: {response.json()['detail']}"
        assert response.status_code in (413, 415, 422)
        assert len(response.json()["detail"]) > 20
        return
    assert verdict in ("accept", "either"), f"{name} was accepted"
    _process(session, response.json()["id"])
    media = client.get(f"/v1/media/{response.json()['id']}", headers=account.headers).json()
    if verdict == "accept":
        assert media["status"] == "ready", media["failure_reason"]
        assert {r["kind"] for r in media["renditions"]} == {"display", "mms", "thumb"}
    else:
        assert media["status"] in ("ready", "failed")


def test_company_logo_appears_on_the_watermark(client, session, account, visit):
    logo = Image.new("RGBA", (300, 120), (0, 0, 0, 0))
    logo.paste((230, 20, 20, 255), (20, 20, 280, 100))
    out = io.BytesIO()
    logo.save(out, "PNG")
    stored = client.put(
        "/v1/watermark/logo",
        headers=account.headers,
        files={"file": ("logo.png", out.getvalue(), "image/png")},
    )
    assert stored.status_code == 200, stored.text
    assert stored.json()["has_logo"] is True
    bad = client.put(
        "/v1/watermark/logo",
        headers=account.headers,
        files={"file": ("logo.png", b"<svg></svg>", "image/svg+xml")},
    )
    assert bad.status_code == 415

    created = upload(client, account, visit.id, phone_jpeg(color=(240, 240, 240)))
    _process(session, created.json()["id"])
    media = client.get(f"/v1/media/{created.json()['id']}", headers=account.headers).json()
    display = next(r for r in media["renditions"] if r["kind"] == "display")
    image = Image.open(io.BytesIO(_fetch(client, display["url"]))).convert("RGB")
    # Somewhere in the bottom-left watermark block the logo's red shows.
    block = image.crop((0, int(image.height * 0.7), int(image.width * 0.5), image.height))
    reds = [p for p in block.getdata() if p[0] > 180 and p[1] < 90 and p[2] < 90]
    assert len(reds) > 50


def test_a_photo_that_breaks_processing_ends_failed_with_a_reason(
    client, session, account, visit, monkeypatch
):
    created = upload(client, account, visit.id, phone_jpeg()).json()

    def explode(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(media_service.watermark, "apply", explode)
    media_service.process_media(session=session, media_id=created["id"])
    media = client.get(f"/v1/media/{created['id']}", headers=account.headers).json()
    assert media["status"] == "failed"
    assert "upload it again" in media["failure_reason"]
    assert media["renditions"] == []
    # A second delivery of the task leaves a finished media alone.
    media_service.process_media(session=session, media_id=created["id"])
    assert (
        client.get(f"/v1/media/{created['id']}", headers=account.headers).json()["status"]
        == "failed"
    )


def test_a_nul_in_a_form_field_is_a_422_not_a_database_error(client, account, visit):
    response = upload(client, account, visit.id, phone_jpeg(), area="客\x00厅")
    assert response.status_code == 422, response.text[:300]
    assert "NUL" in response.json()["detail"] and "'area'" in response.json()["detail"]
    assert client.get(f"/v1/visits/{visit.id}/media", headers=account.headers).json() == []
