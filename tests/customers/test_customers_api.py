"""Customers through the HTTP API: phone numbers, CRUD, pagination and filters."""

from __future__ import annotations

import pytest

PHONES_ACCEPTED = [
    ("138 0013 8000", "+8613800138000"),
    ("138-0013-8000", "+8613800138000"),
    ("+86 138 0013 8000", "+8613800138000"),
    ("0086 13800138000", "+8613800138000"),
    ("8613800138000", "+8613800138000"),
    ("86 138 0013 8000", "+8613800138000"),
    ("１３８００１３８０００", "+8613800138000"),  # full-width digits from a Chinese IME
    ("＋８６ １３８-００１３-８０００", "+8613800138000"),
    ("+1 415 555 2671", "+14155552671"),
]

PHONES_REFUSED = [
    ("010 6552 9988", "fixed-line"),
    ("01065529988", "fixed-line"),
    ("400 810 8888", "cannot receive text messages"),
    ("12345", "not a valid phone number"),
    ("13800138", "not a valid phone number"),
    ("phone", "not a phone number"),
    ("1.38001E+10", "scientific notation"),  # a phone column Excel formatted as General
    ("", "at least 1 character"),
]


@pytest.mark.parametrize(("raw", "e164"), PHONES_ACCEPTED)
def test_phone_spellings_are_normalized_to_e164(client, account, raw, e164):
    response = client.post(
        "/v1/customers", headers=account.headers, json={"name": "王女士", "phone": raw}
    )
    assert response.status_code == 201, response.text
    assert response.json()["phone"] == e164


@pytest.mark.parametrize(("raw", "phrase"), PHONES_REFUSED)
def test_numbers_that_cannot_get_sms_are_refused_with_a_sentence(client, account, raw, phrase):
    response = client.post(
        "/v1/customers", headers=account.headers, json={"name": "王女士", "phone": raw}
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert phrase in detail


def test_customer_abroad_gets_their_own_time_zone(client, account):
    body = client.post(
        "/v1/customers",
        headers=account.headers,
        json={"name": "Ms Chen", "phone": "+1 415 555 2671"},
    ).json()
    assert body["timezone"] == "America/Los_Angeles"
    body = client.post(
        "/v1/customers", headers=account.headers, json={"name": "陈女士", "phone": "13900012345"}
    ).json()
    assert body["timezone"] == "Asia/Shanghai"


def test_unknown_time_zone_is_refused(client, account):
    response = client.post(
        "/v1/customers",
        headers=account.headers,
        json={"name": "王女士", "phone": "13800138000", "timezone": "Mars/Base"},
    )
    assert response.status_code == 422
    assert "Asia/Shanghai" in response.json()["detail"]


def test_same_phone_twice_is_a_conflict(client, account):
    first = client.post(
        "/v1/customers", headers=account.headers, json={"name": "王女士", "phone": "13800138000"}
    )
    again = client.post(
        "/v1/customers",
        headers=account.headers,
        json={"name": "王女士", "phone": "+86 138 0013 8000"},
    )
    assert first.status_code == 201
    assert again.status_code == 409
    assert str(first.json()["id"]) in again.json()["detail"]


def test_the_same_phone_may_belong_to_customers_of_two_companies(client, account, other_account):
    for acc in (account, other_account):
        response = client.post(
            "/v1/customers", headers=acc.headers, json={"name": "王女士", "phone": "13800138000"}
        )
        assert response.status_code == 201


def test_crud_round_trip(client, account):
    created = client.post(
        "/v1/customers",
        headers=account.headers,
        json={
            "name": "王女士",
            "phone": "13800138000",
            "region": "上海",
            "city": "浦东新区",
            "tags": ["老客户", " 有宠物 ", "老客户", ""],
            "notes": "门禁 1203",
        },
    )
    assert created.status_code == 201
    customer = created.json()
    assert customer["tags"] == ["有宠物", "老客户"] or customer["tags"] == ["老客户", "有宠物"]
    cid = customer["id"]

    fetched = client.get(f"/v1/customers/{cid}", headers=account.headers).json()
    assert fetched["notes"] == "门禁 1203"

    patched = client.patch(
        f"/v1/customers/{cid}",
        headers=account.headers,
        json={"tags": ["VIP"], "phone": "139 0001 2345", "city": None},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["tags"] == ["VIP"]
    assert patched.json()["phone"] == "+8613900012345"
    assert patched.json()["city"] is None
    assert patched.json()["region"] == "上海"

    bad = client.patch(
        f"/v1/customers/{cid}", headers=account.headers, json={"phone": "010 6552 9988"}
    )
    assert bad.status_code == 422
    assert client.get(f"/v1/customers/{cid}", headers=account.headers).json()["phone"] == (
        "+8613900012345"
    )

    assert client.delete(f"/v1/customers/{cid}", headers=account.headers).status_code == 204
    gone = client.get(f"/v1/customers/{cid}", headers=account.headers)
    assert gone.status_code == 404
    assert "no customer" in gone.json()["detail"]


def test_list_pages_and_filters(client, account):
    for i in range(7):
        client.post(
            "/v1/customers",
            headers=account.headers,
            json={
                "name": f"客户{i}",
                "phone": f"1390001{2340 + i}",
                "region": "上海" if i % 2 else "浙江",
                "tags": ["老客户"] if i < 3 else [],
            },
        )
    page = client.get("/v1/customers?limit=3&offset=0", headers=account.headers).json()
    assert page["total"] == 7
    assert len(page["items"]) == 3
    second = client.get("/v1/customers?limit=3&offset=3", headers=account.headers).json()
    assert {c["id"] for c in page["items"]}.isdisjoint({c["id"] for c in second["items"]})

    assert client.get("/v1/customers?tag=老客户", headers=account.headers).json()["total"] == 3
    assert client.get("/v1/customers?region=上海", headers=account.headers).json()["total"] == 3
    found = client.get("/v1/customers?q=2343", headers=account.headers).json()
    assert [c["name"] for c in found["items"]] == ["客户3"]
    assert client.get("/v1/customers?q=客户5", headers=account.headers).json()["total"] == 1
    assert client.get("/v1/customers?limit=0", headers=account.headers).status_code == 422


def test_validation_errors_read_as_a_sentence(client, account):
    response = client.post("/v1/customers", headers=account.headers, json={"name": ""})
    assert response.status_code == 422
    body = response.json()
    assert "phone: Field required" in body["detail"]
    assert {tuple(e["loc"]) for e in body["errors"]} >= {("body", "phone")}


@pytest.mark.parametrize("zone", ["A" * 300, "Europe/" + "x" * 300])
def test_a_long_time_zone_is_a_422_on_create_and_on_update(client, account, zone):
    created = client.post(
        "/v1/customers",
        headers=account.headers,
        json={"name": "王女士", "phone": "13800138000", "timezone": zone},
    )
    assert created.status_code == 422, created.text[:300]
    assert created.json()["detail"].startswith("timezone: ")
    own = client.post(
        "/v1/customers", headers=account.headers, json={"name": "王女士", "phone": "13800138000"}
    ).json()
    updated = client.patch(
        f"/v1/customers/{own['id']}", headers=account.headers, json={"timezone": zone}
    )
    assert updated.status_code == 422, updated.text[:300]
    assert (
        client.get(f"/v1/customers/{own['id']}", headers=account.headers).json()["timezone"]
        == "Asia/Shanghai"
    )
