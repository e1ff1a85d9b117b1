"""Tenants and API keys: shown once, stored hashed, revocable."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from huifang.errors import Invalid
from tenancy import service as tenancy
from tenancy.models import ApiKey


def test_key_is_stored_only_as_its_hash(session, account):
    rows = session.scalars(select(ApiKey).where(ApiKey.tenant_id == account.tenant.id)).all()
    assert len(rows) == 1
    assert rows[0].key_hash == hashlib.sha256(account.key.encode()).hexdigest()
    assert account.key not in {rows[0].key_hash, rows[0].prefix, rows[0].name}
    assert account.key.startswith(rows[0].prefix)


def test_requests_need_a_valid_key(client, account):
    assert client.get("/v1/customers").status_code == 401
    wrong = client.get("/v1/customers", headers={"Authorization": "Bearer hf_not-a-key"})
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.json()["detail"]
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/customers", headers=account.headers).status_code == 200


def test_a_new_key_is_shown_once_and_listed_without_the_secret(client, account):
    created = client.post("/v1/api-keys", headers=account.headers, json={"name": "前台电脑"})
    assert created.status_code == 201
    key = created.json()["key"]
    listed = client.get("/v1/api-keys", headers=account.headers).json()
    assert {k["name"] for k in listed} == {"api", "前台电脑"}
    assert all("key" not in k for k in listed)
    assert client.get("/v1/tenant", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_a_revoked_key_stops_working_at_once(client, account):
    created = client.post("/v1/api-keys", headers=account.headers, json={"name": "lost phone"})
    key_id, key = created.json()["id"], created.json()["key"]
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/tenant", headers=headers).status_code == 200
    revoked = client.delete(f"/v1/api-keys/{key_id}", headers=account.headers)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert client.get("/v1/tenant", headers=headers).status_code == 401
    assert client.get("/v1/tenant", headers=account.headers).status_code == 200


def test_tenant_reads_back_with_its_signature(client, account):
    body = client.get("/v1/tenant", headers=account.headers).json()
    assert body["signature"] == "测试家政"
    assert body["sms_signature"] == "【测试家政】"
    assert body["timezone"] == "Asia/Shanghai"
    assert body["phone_region"] == "CN"


@pytest.mark.parametrize("raw", ["【洁家家政】", "[洁家家政]", "洁家家政", " 【洁家家政】 "])
def test_signature_spellings(raw):
    assert tenancy.normalize_signature(raw) == "洁家家政"


@pytest.mark.parametrize(
    "raw", ["", "【】", "洁", "【洁家】家政【】", "一二三四五六七八九十一二三四五六七"]
)
def test_bad_signatures_are_refused_with_the_rule(raw):
    with pytest.raises(Invalid, match="2–16 characters"):
        tenancy.normalize_signature(raw)


def test_unknown_region_and_zone_are_refused(session):
    with pytest.raises(Invalid, match="phone region"):
        tenancy.create_tenant(session=session, name="x", signature="洁家家政", phone_region="XX")
    with pytest.raises(Invalid, match="time zone"):
        tenancy.create_tenant(session=session, name="x", signature="洁家家政", timezone="China")
