"""The settings screen's provider panel: which provider, its settings present or not (never
their values), and the addresses to paste into its console, which are the routes we serve."""

from __future__ import annotations

import pytest

from huifang.settings import get_settings
from messaging import provider_setup
from tenancy import service as tenancy


@pytest.fixture
def aliyun(monkeypatch):
    monkeypatch.setenv("HUIFANG_SMS_PROVIDER", "aliyun")
    monkeypatch.setenv("HUIFANG_ALIYUN_ACCESS_KEY_ID", "LTAI-test")
    monkeypatch.setenv("HUIFANG_ALIYUN_ACCESS_KEY_SECRET", "s3cret-value-not-shown")
    monkeypatch.setenv("HUIFANG_PUBLIC_URL", "https://hf.example.cn")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_console_provider_is_named_and_warned_about(client, account) -> None:
    answer = client.get("/v1/provider", headers=account.headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["name"] == "console" and body["addresses"] == []
    assert any("控制台" in w for w in body["warnings"])
    assert any("HUIFANG_PUBLIC_URL" in w for w in body["warnings"])  # localhost by default


def test_aliyun_addresses_are_the_companys_webhooks(client, account, aliyun) -> None:
    body = client.get("/v1/provider", headers=account.headers).json()
    assert body["name"] == "aliyun" and body["label"] == "阿里云短信"
    assert body["warnings"] == []
    assert {c["variable"]: c["is_set"] for c in body["credentials"]} == {
        "HUIFANG_ALIYUN_ACCESS_KEY_ID": True,
        "HUIFANG_ALIYUN_ACCESS_KEY_SECRET": True,
    }
    assert "s3cret" not in client.get("/v1/provider", headers=account.headers).text
    urls = [a["url"] for a in body["addresses"]]
    tenant = client.get("/v1/tenant", headers=account.headers).json()
    assert sorted(urls) == sorted(tenant["webhooks"].values())
    assert all(
        a["secret"] and ("SmsUp" in a["where"] or "SmsReport" in a["where"])
        for a in body["addresses"]
    )
    # Each address is served: Aliyun's push is answered (an empty batch), not a 404.
    for url in urls:
        pushed = client.post(url.removeprefix("https://hf.example.cn"), json=[])
        assert pushed.status_code == 200, (url, pushed.text)


def test_twilio_addresses_are_served_routes(client) -> None:
    for address in provider_setup.twilio_addresses("https://hf.example.cn"):
        # Served, and unsigned posts refused: the signature is what protects them.
        posted = client.post(
            address.url.removeprefix("https://hf.example.cn"), data={"From": "+8613800138000"}
        )
        assert posted.status_code not in (404, 405), address.url
        assert 400 <= posted.status_code < 500
        assert not address.secret


def test_an_office_key_may_not_read_the_secret_addresses(session, client, account) -> None:
    _, key = tenancy.create_api_key(session=session, tenant=account.tenant, role="office")
    refused = client.get("/v1/provider", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 403 and "owner" in refused.json()["detail"]
