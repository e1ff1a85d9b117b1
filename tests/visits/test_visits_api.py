"""Staff and visits through the HTTP API."""

from __future__ import annotations

import pytest


@pytest.fixture
def customer(client, account):
    return client.post(
        "/v1/customers", headers=account.headers, json={"name": "王女士", "phone": "13800138000"}
    ).json()


@pytest.fixture
def staff(client, account):
    response = client.post(
        "/v1/staff",
        headers=account.headers,
        json={
            "name": "李秀兰",
            "phone": "139 0001 2345",
            "certificates": ["家政服务员（高级）", " ", "家政服务员（高级）"],
            "years_experience": 8,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_staff_card_fields(staff):
    assert staff["phone"] == "+8613900012345"
    assert staff["certificates"] == ["家政服务员（高级）"]
    assert staff["years_experience"] == 8
    assert staff["active"] is True


def test_staff_update_and_filter(client, account, staff):
    client.post("/v1/staff", headers=account.headers, json={"name": "王建国"})
    patched = client.patch(
        f"/v1/staff/{staff['id']}", headers=account.headers, json={"active": False, "phone": None}
    )
    assert patched.status_code == 200
    assert patched.json()["active"] is False and patched.json()["phone"] is None
    active = client.get("/v1/staff?active=true", headers=account.headers).json()
    assert [s["name"] for s in active["items"]] == ["王建国"]
    assert client.get("/v1/staff?q=秀兰", headers=account.headers).json()["total"] == 1


def test_staff_phone_is_checked(client, account):
    response = client.post(
        "/v1/staff", headers=account.headers, json={"name": "李秀兰", "phone": "010 6552 9988"}
    )
    assert response.status_code == 422
    assert "fixed-line" in response.json()["detail"]


def test_visit_round_trip(client, account, customer, staff):
    created = client.post(
        "/v1/visits",
        headers=account.headers,
        json={
            "customer_id": customer["id"],
            "staff_id": staff["id"],
            "service_type": "空调清洗",
            "areas": ["客厅", "主卧", "客厅", " "],
            "scheduled_at": "2026-11-20T09:00:00+08:00",
            "finished_at": "2026-11-20T11:30:00+08:00",
            "amount_cents": 19900,
        },
    )
    assert created.status_code == 201, created.text
    visit = created.json()
    assert visit["service_type"] == "ac_cleaning"  # a known label maps to its code
    assert visit["service_label"] == "空调清洗"
    assert visit["areas"] == ["客厅", "主卧"]
    assert visit["finished_at"].startswith("2026-11-20T03:30:00")  # stored in UTC

    patched = client.patch(
        f"/v1/visits/{visit['id']}",
        headers=account.headers,
        json={"areas": ["厨房"], "notes": "油烟机很脏"},
    )
    assert patched.json()["areas"] == ["厨房"]
    assert client.get(f"/v1/visits/{visit['id']}", headers=account.headers).json()["notes"] == (
        "油烟机很脏"
    )
    assert client.delete(f"/v1/visits/{visit['id']}", headers=account.headers).status_code == 204
    assert client.get(f"/v1/visits/{visit['id']}", headers=account.headers).status_code == 404


def test_visit_filters(client, account, customer, staff):
    other = client.post(
        "/v1/customers", headers=account.headers, json={"name": "陈先生", "phone": "13900012346"}
    ).json()
    for cid, service, finished in (
        (customer["id"], "ac_cleaning", "2026-10-01T10:00:00Z"),
        (customer["id"], "deep_cleaning", "2026-11-01T10:00:00Z"),
        (other["id"], "ac_cleaning", "2026-11-15T10:00:00Z"),
    ):
        client.post(
            "/v1/visits",
            headers=account.headers,
            json={
                "customer_id": cid,
                "staff_id": staff["id"],
                "service_type": service,
                "finished_at": finished,
            },
        )

    def total(query: str) -> int:
        return client.get(f"/v1/visits?{query}", headers=account.headers).json()["total"]

    assert total(f"customer_id={customer['id']}") == 2
    assert total("service_type=ac_cleaning") == 2
    assert total("service_type=空调清洗") == 2
    assert total(f"staff_id={staff['id']}") == 3
    assert total("finished_after=2026-10-15T00:00:00Z") == 2
    assert total("finished_after=2026-10-15T00:00:00Z&finished_before=2026-11-10T00:00:00Z") == 1
    naive = client.get("/v1/visits?finished_after=2026-10-15T00:00:00", headers=account.headers)
    assert naive.status_code == 422  # a time without a zone is ambiguous: refuse it


def test_visit_needs_an_existing_customer_and_an_active_staff_member(
    client, account, customer, staff
):
    missing = client.post(
        "/v1/visits",
        headers=account.headers,
        json={"customer_id": 999999, "service_type": "ac_cleaning"},
    )
    assert missing.status_code == 404
    assert "no customer 999999" in missing.json()["detail"]
    client.patch(f"/v1/staff/{staff['id']}", headers=account.headers, json={"active": False})
    inactive = client.post(
        "/v1/visits",
        headers=account.headers,
        json={
            "customer_id": customer["id"],
            "staff_id": staff["id"],
            "service_type": "ac_cleaning",
        },
    )
    assert inactive.status_code == 422
    assert "no longer active" in inactive.json()["detail"]


def test_finish_long_before_start_is_refused(client, account, customer):
    response = client.post(
        "/v1/visits",
        headers=account.headers,
        json={
            "customer_id": customer["id"],
            "service_type": "ac_cleaning",
            "scheduled_at": "2026-11-20T09:00:00Z",
            "finished_at": "2026-11-10T09:00:00Z",
        },
    )
    assert response.status_code == 422


def test_deleting_a_customer_deletes_their_visits_and_staff_deletion_keeps_visits(
    client, account, customer, staff
):
    visit = client.post(
        "/v1/visits",
        headers=account.headers,
        json={
            "customer_id": customer["id"],
            "staff_id": staff["id"],
            "service_type": "ac_cleaning",
        },
    ).json()
    assert client.delete(f"/v1/staff/{staff['id']}", headers=account.headers).status_code == 204
    kept = client.get(f"/v1/visits/{visit['id']}", headers=account.headers)
    assert kept.status_code == 200 and kept.json()["staff_id"] is None
    assert (
        client.delete(f"/v1/customers/{customer['id']}", headers=account.headers).status_code == 204
    )
    assert client.get(f"/v1/visits/{visit['id']}", headers=account.headers).status_code == 404


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("finished_at", "9999-12-31T23:59:59Z"),
        ("scheduled_at", "9999-12-31T23:59:59Z"),
        ("finished_at", "1999-12-31T23:00:00Z"),
        ("finished_at", "2046-01-01T00:00:00+08:00"),
    ],
)
def test_dates_people_enter_are_kept_to_a_sane_range(client, account, customer, field, value):
    made = client.post(
        "/v1/visits",
        headers=account.headers,
        json={"customer_id": customer["id"], "service_type": "ac_cleaning", field: value},
    )
    assert made.status_code == 422, made.text
    detail = made.json()["detail"]  # the schema's bounds (years), or the service's (dates)
    assert "between the years 1900 and 2199" in detail or (
        "out of range" in detail and "2000-01-01" in detail
    ), detail
    visit = client.post(
        "/v1/visits",
        headers=account.headers,
        json={
            "customer_id": customer["id"],
            "service_type": "ac_cleaning",
            "finished_at": "2026-11-10T09:00:00Z",
        },
    ).json()
    changed = client.patch(
        f"/v1/visits/{visit['id']}", headers=account.headers, json={field: value}
    )
    assert changed.status_code == 422 and "between" in changed.json()["detail"]
    kept = client.get(f"/v1/visits/{visit['id']}", headers=account.headers).json()
    assert kept["finished_at"].startswith("2026-11-10")


def test_a_consent_dated_before_2000_is_refused(client, account, customer):
    given = client.post(
        f"/v1/customers/{customer['id']}/consents",
        headers=account.headers,
        json={"source": "in_person", "evidence": "signed", "granted_at": "0001-01-01T00:00:00Z"},
    )
    assert given.status_code == 422 and "between" in given.json()["detail"]
