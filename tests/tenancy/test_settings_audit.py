"""Settings changes (company, watermark, keyword rules) are in the audit log with who made
them, and only an owner's key may make them."""

from __future__ import annotations

import io

from PIL import Image
from sqlalchemy import select

from access.models import AuditEntry
from tenancy import service as tenancy


def _log(session, tenant_id: int) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.tenant_id == tenant_id).order_by(AuditEntry.id)
        )
    )


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (64, 64), (200, 30, 30, 255)).save(out, "PNG")
    return out.getvalue()


def test_settings_changes_are_audited_with_the_key(session, client, account) -> None:
    h = account.headers
    assert (
        client.patch(
            "/v1/tenant", headers=h, json={"signature": "洁家到家", "work_start_minute": 540}
        ).status_code
        == 200
    )
    assert (
        client.patch("/v1/tenant", headers=h, json={"work_start_minute": 540}).status_code == 200
    )  # no change: no entry
    assert client.put("/v1/watermark", headers=h, json={"position": "top-right"}).status_code == 200
    assert (
        client.put(
            "/v1/watermark/logo", headers=h, files={"file": ("logo.png", _png(), "image/png")}
        ).status_code
        == 200
    )
    rule = client.post(
        "/v1/keyword-rules", headers=h, json={"route": "opt_out", "value": "别发了"}
    ).json()
    assert client.delete(f"/v1/keyword-rules/{rule['id']}", headers=h).status_code == 204
    entries = _log(session, account.tenant.id)
    assert [e.action for e in entries] == [
        "tenant.updated",
        "watermark.updated",
        "watermark.logo_set",
        "keyword_rule.added",
        "keyword_rule.deleted",
    ]
    assert entries[0].detail == {
        "signature": {"from": "测试家政", "to": "洁家到家"},
        "work_start_minute": {"from": 480, "to": 540},
    }
    assert entries[1].detail == {"position": {"from": "bottom-left", "to": "top-right"}}
    assert entries[3].detail == {"route": "opt_out", "kind": "exact", "value": "别发了"}
    assert {e.actor_kind for e in entries} == {"api_key"}
    assert {e.actor_id for e in entries} == {account.tenant.api_keys[0].id}


def test_an_office_key_may_not_change_settings(session, client, account) -> None:
    _, key = tenancy.create_api_key(session=session, tenant=account.tenant, role="office")
    office = {"Authorization": f"Bearer {key}"}
    for method, path, kwargs in [
        ("PATCH", "/v1/tenant", {"json": {"signature": "别家"}}),
        ("PUT", "/v1/watermark", {"json": {"scale": 2}}),
        ("PUT", "/v1/watermark/logo", {"files": {"file": ("l.png", _png(), "image/png")}}),
        ("POST", "/v1/keyword-rules", {"json": {"route": "opt_out", "value": "退"}}),
        ("GET", "/v1/provider", {}),
    ]:
        answer = client.request(method, path, headers=office, **kwargs)
        assert answer.status_code == 403, (method, path, answer.text)
    # What the office does every day stays open to it: reading settings, trying replies,
    # previewing the watermark, linting a campaign.
    assert client.get("/v1/tenant", headers=office).status_code == 200
    assert (
        client.post("/v1/keyword-rules/test", headers=office, json={"text": "T"}).json()["route"]
        == "opt_out"
    )
    assert client.get("/v1/watermark/preview", headers=office).status_code == 200
    assert (
        client.post("/v1/campaigns/lint", headers=office, json={"template": "您好"}).status_code
        == 200
    )
    assert _log(session, account.tenant.id) == []
