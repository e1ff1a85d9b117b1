from __future__ import annotations

import pytest

from huifang.errors import Invalid
from tenancy import service as tenancy


def test_company_settings_change_and_refuse_nonsense(client, account):
    answer = client.patch(
        "/v1/tenant",
        headers=account.headers,
        json={"clip_max_seconds": 30, "report_valid_days": 90},
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["clip_max_seconds"], answer.json()["report_valid_days"]) == (30, 90)
    assert client.get("/v1/tenant", headers=account.headers).json()["clip_max_seconds"] == 30
    bad = client.patch("/v1/tenant", headers=account.headers, json={"timezone": "Mars/Olympus"})
    assert bad.status_code == 422 and "time zone" in bad.text
    assert (
        client.patch(
            "/v1/tenant", headers=account.headers, json={"clip_max_seconds": 0}
        ).status_code
        == 422
    )


@pytest.mark.parametrize(
    "zone",
    [
        "A" * 300,
        "Asia/" + "x" * 59,
        "../../../etc/passwd",
        "Asia/Shanghai\x00",
        "asia/shanghai",
        "",
    ],
)
def test_a_time_zone_not_in_the_tz_database_is_a_422_with_a_sentence(client, account, zone):
    answer = client.patch("/v1/tenant", headers=account.headers, json={"timezone": zone})
    assert answer.status_code == 422, answer.text[:300]
    assert answer.json()["detail"].startswith("timezone: ")
    assert client.get("/v1/tenant", headers=account.headers).json()["timezone"] == "Asia/Shanghai"


def test_every_zone_of_the_tz_database_is_taken(client, account):
    for zone in ("Asia/Urumqi", "America/Argentina/ComodRivadavia", "UTC", "Etc/GMT-14"):
        answer = client.patch("/v1/tenant", headers=account.headers, json={"timezone": zone})
        assert answer.status_code == 200, answer.text
        assert answer.json()["timezone"] == zone


def test_the_service_refuses_a_long_zone_as_invalid_not_an_os_error(session):
    with pytest.raises(Invalid, match="not a time zone we know"):
        tenancy.create_tenant(
            session=session, name="家政", signature="测试家政", timezone="Asia/" + "x" * 300
        )
