"""The company's SMS signature is changed on the settings screen (PATCH /v1/tenant)."""

from __future__ import annotations


def test_signature_is_changed_and_normalised(client, account) -> None:
    answer = client.patch("/v1/tenant", headers=account.headers, json={"signature": "【洁家到家】"})
    assert answer.status_code == 200
    assert (answer.json()["signature"], answer.json()["sms_signature"]) == (
        "洁家到家",
        "【洁家到家】",
    )
    # Drafts are linted with the new signature at once.
    lint = client.post(
        "/v1/campaigns/lint",
        headers=account.headers,
        json={"template": "【洁家到家】空调该清洗了 {{ booking_link }}"},
    ).json()
    assert any(f["code"] == "signature_in_body" for f in lint["findings"])


def test_a_signature_providers_refuse_is_refused_with_a_sentence(client, account) -> None:
    for bad in ("洁", "【洁家】【到家】", "一二三四五六七八九十一二三四五六七"):
        answer = client.patch("/v1/tenant", headers=account.headers, json={"signature": bad})
        assert answer.status_code == 422, bad
        assert "2–16 characters" in answer.json()["detail"]
    assert client.get("/v1/tenant", headers=account.headers).json()["signature"] == "测试家政"
