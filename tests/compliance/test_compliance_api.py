"""Consent ledger, opt-out and policy through the HTTP API; the customer's reachability."""

from __future__ import annotations

import csv
import io

import pytest


@pytest.fixture
def customer(client, account):
    return client.post(
        "/v1/customers", headers=account.headers, json={"name": "王女士", "phone": "13800138000"}
    ).json()


def _messaging(client, account, customer):
    return client.get(f"/v1/customers/{customer['id']}", headers=account.headers).json()[
        "messaging"
    ]


def test_customer_explains_why_marketing_is_not_allowed(client, account, customer):
    reach = _messaging(client, account, customer)
    assert reach["service"]["can_receive"] is True
    assert reach["marketing"]["can_receive"] is False
    assert any("consent" in r for r in reach["marketing"]["reasons"])


def test_consent_is_recorded_revoked_and_kept(client, account, customer):
    base = f"/v1/customers/{customer['id']}/consents"
    created = client.post(
        base, headers=account.headers, json={"source": "in_person", "evidence": "签字单 A-1023"}
    )
    assert created.status_code == 201, created.text
    assert _messaging(client, account, customer)["marketing"]["can_receive"] is True
    twice = client.post(
        base, headers=account.headers, json={"source": "web_form", "evidence": "表单 77"}
    )
    assert twice.status_code == 409
    no_evidence = client.post(
        base, headers=account.headers, json={"source": "in_person", "evidence": " "}
    )
    assert no_evidence.status_code == 422 and "evidence" in no_evidence.json()["detail"]
    bad_source = client.post(
        base, headers=account.headers, json={"source": "guess", "evidence": "x"}
    )
    assert bad_source.status_code == 422

    revoked = client.post(
        f"{base}/revoke", headers=account.headers, json={"source": "reply", "evidence": "退订"}
    )
    assert revoked.status_code == 200
    assert revoked.json()[0]["revoked_at"] is not None
    listed = client.get(base, headers=account.headers).json()
    assert len(listed) == 1 and listed[0]["evidence"] == "签字单 A-1023"
    assert _messaging(client, account, customer)["marketing"]["can_receive"] is False


def test_consents_export_as_csv(client, account, customer):
    client.post(
        f"/v1/customers/{customer['id']}/consents",
        headers=account.headers,
        json={"source": "import", "evidence": "2026 老客户名单，含勾选同意列"},
    )
    response = client.get("/v1/consents/export", headers=account.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [(r["phone"], r["source"]) for r in rows] == [("+8613800138000", "import")]
    assert rows[0]["evidence"] == "2026 老客户名单，含勾选同意列"


def test_opt_out_and_opt_in(client, account, customer):
    url = f"/v1/customers/{customer['id']}"
    assert (
        client.post(
            f"{url}/opt-out", headers=account.headers, json={"detail": "客户来电要求不再发送"}
        ).status_code
        == 204
    )
    reach = _messaging(client, account, customer)
    assert reach["service"]["can_receive"] is False
    assert any("Opted out" in r for r in reach["service"]["reasons"])
    assert client.post(f"{url}/opt-in", headers=account.headers).status_code == 204
    assert _messaging(client, account, customer)["service"]["can_receive"] is True


def test_policy_reads_and_updates_with_sentences_for_mistakes(client, account):
    policy = client.get("/v1/compliance/policy", headers=account.headers).json()
    assert policy == {
        "marketing_cap": 2,
        "cap_window_days": 90,
        "window_start": "08:00",
        "window_end": "21:00",
        "opt_out_footer": "回复T退订",
        "consent_retention_days": 183,
        "capture_consent_retention_days": 183,
        "original_media_days": 365,
        "message_text_days": 730,
        "reply_days": 730,
        "decision_log_days": 365,
    }
    changed = client.put(
        "/v1/compliance/policy",
        headers=account.headers,
        json={"window_end": "22:00", "opt_out_footer": "拒收请回复R"},
    )
    assert changed.status_code == 200
    assert changed.json()["window_end"] == "22:00"
    backwards = client.put(
        "/v1/compliance/policy", headers=account.headers, json={"window_start": "23:00"}
    )
    assert backwards.status_code == 422 and "window" in backwards.json()["detail"]
    too_short = client.put(
        "/v1/compliance/policy", headers=account.headers, json={"consent_retention_days": 30}
    )
    assert too_short.status_code == 422 and "5 months" in too_short.json()["detail"]
    assert (
        client.put(
            "/v1/compliance/policy", headers=account.headers, json={"window_start": "8am"}
        ).status_code
        == 422
    )
