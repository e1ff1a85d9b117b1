

def test_company_settings_change_and_refuse_nonsense(client, account):
    answer = client.patch("/v1/tenant", headers=account.headers,
                          json={"clip_max_seconds": 30, "report_valid_days": 90})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["clip_max_seconds"], answer.json()["report_valid_days"]) == (30, 90)
    assert client.get("/v1/tenant", headers=account.headers).json()["clip_max_seconds"] == 30
    bad = client.patch("/v1/tenant", headers=account.headers, json={"timezone": "Mars/Olympus"})
    assert bad.status_code == 422 and "time zone" in bad.text
    assert client.patch("/v1/tenant", headers=account.headers,
                        json={"clip_max_seconds": 0}).status_code == 422
