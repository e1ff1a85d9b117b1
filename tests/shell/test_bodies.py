"""Request bodies are capped, and refused before they are read where nothing may read them.

Requests go through httpx's ASGI transport, which pulls the body from the client's generator
one chunk at a time, only when the app asks for it: the bytes the generator gave up are the
bytes the server read.
"""

from __future__ import annotations

import asyncio
import io
import json

import httpx
from PIL import Image

from tenancy import service as tenancy
from tests.factories import create_consenting_customer
from tests.media.conftest import phone_jpeg
from visits import service as visits

CHUNK = 64 * 1024
HUGE = 200 * 1024 * 1024
JSON_MAX_BYTES = 1024 * 1024  # what the API takes in one JSON request
WEBHOOK_MAX_BYTES = 512 * 1024  # what a provider may post at once


class Sent:
    """A request body of ``total`` bytes, counting what the server took."""

    def __init__(self, total: int, *, fill: bytes = b" ") -> None:
        self.total, self.fill, self.taken = total, fill, 0

    async def __aiter__(self):
        while self.taken < self.total:
            piece = self.fill * min(CHUNK, self.total - self.taken)
            self.taken += len(piece)
            yield piece


def _post(
    app, path: str, body: Sent, *, headers: dict[str, str] | None = None, declared: bool = False
) -> httpx.Response:
    headers = {"Content-Type": "application/json", **(headers or {})}
    if declared:
        headers["Content-Length"] = str(body.total)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.post(path, content=body, headers=headers)

    return asyncio.run(run())


def test_a_body_without_a_key_is_refused_before_it_is_read(app):
    for declared in (False, True):
        body = Sent(HUGE)
        answer = _post(app, "/v1/customers", body, declared=declared)
        assert answer.status_code == 401
        assert "Authorization: Bearer" in answer.json()["detail"]
        assert answer.headers["www-authenticate"] == "Bearer"
        assert body.taken == 0, declared


def test_a_body_with_an_unknown_key_is_read_no_further_than_the_cap(app):
    body = Sent(HUGE)
    answer = _post(app, "/v1/customers", body, headers={"Authorization": "Bearer hf_nope"})
    assert answer.status_code == 413
    assert body.taken <= JSON_MAX_BYTES + CHUNK


def test_json_requests_over_a_megabyte_are_refused_with_a_sentence(app, account):
    declared = Sent(JSON_MAX_BYTES + 1)
    answer = _post(app, "/v1/customers", declared, headers=account.headers, declared=True)
    assert answer.status_code == 413
    assert answer.json()["detail"] == (
        "A request is over 1 MB, the most this address takes; send less at a time."
    )
    assert declared.taken == 0

    chunked = Sent(HUGE)
    answer = _post(app, "/v1/customers", chunked, headers=account.headers)
    assert answer.status_code == 413
    assert "over 1 MB" in answer.json()["detail"]
    assert chunked.taken <= JSON_MAX_BYTES + CHUNK


def test_a_json_request_under_the_cap_is_served(app, account):
    payload = json.dumps({"name": "王女士", "phone": "13800138000"}) + " " * (JSON_MAX_BYTES - 100)
    answer = _post(app, "/v1/customers", Sent(1, fill=payload.encode()), headers=account.headers)
    assert answer.status_code == 201, answer.text


def test_a_wrong_aliyun_path_is_not_found_before_its_body_is_read(app):
    for kind in ("reply", "report"):
        body = Sent(HUGE, fill=b"[")
        answer = _post(app, f"/hooks/aliyun/1.{'0' * 32}/{kind}", body)
        assert answer.status_code == 404
        assert body.taken == 0


def test_webhooks_take_a_few_hundred_kilobytes(app, account):
    path = f"/hooks/aliyun/{tenancy.hook_key(account.tenant.id)}/report"
    declared = Sent(WEBHOOK_MAX_BYTES + 1)
    answer = _post(app, path, declared, declared=True)
    assert answer.status_code == 413
    assert answer.json()["detail"].startswith("A webhook is over 512 KB")
    assert declared.taken == 0
    chunked = Sent(HUGE)
    answer = _post(app, path, chunked)
    assert answer.status_code == 413
    assert chunked.taken <= WEBHOOK_MAX_BYTES + CHUNK


def test_uploads_keep_their_own_larger_caps(client, session, account):
    customer = create_consenting_customer(
        session=session, tenant=account.tenant, name="王女士", phone="13800138000"
    )
    visit = visits.create_visit(
        session=session, tenant=account.tenant, customer_id=customer.id, service_type="ac_cleaning"
    )
    # A grainy 12 MP photo is several megabytes: over the JSON cap, under the photo cap.
    image = Image.effect_noise((4000, 3000), 60).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    data = out.getvalue()
    assert len(data) > 2 * JSON_MAX_BYTES
    answer = client.post(
        f"/v1/visits/{visit.id}/media",
        headers=account.headers,
        data={"phase": "after"},
        files={"file": ("a.jpg", data, "image/jpeg")},
    )
    assert answer.status_code == 202, answer.text
    logo = client.put(
        "/v1/watermark/logo",
        headers=account.headers,
        files={"file": ("logo.jpg", phone_jpeg(size=(64, 64)), "image/jpeg")},
    )
    assert logo.status_code == 200, logo.text
