"""Campaigns through the API: each preset in one call, preview, lint, activate; refusals as
sentences; what the preview counts is what activation schedules; the 入梅 table."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from campaigns import materialize as materializer
from campaigns.models import PENDING, CampaignOccurrence
from campaigns.presets import PRESETS
from compliance import service as compliance
from tests.factories import make_consent, make_customer, make_staff, make_visit

UTC = dt.UTC
NOW = dt.datetime.now(UTC)


@pytest.fixture
def people(session, account):
    """Customers of every kind a preset looks for, all with marketing consent."""
    made = []
    for i, (code, days, region) in enumerate(
        (
            ("ac_cleaning", 80, "上海"),
            ("ac_cleaning", 300, "浙江省"),
            ("curtain_washing", 720, "上海市"),
            ("deep_cleaning", 200, None),
            ("basic_cleaning", 364, "江苏"),
        )
    ):
        person = make_customer(
            session, account.tenant, name=f"王{i}", phone=f"1380000{i:04d}", region=region
        )
        staff = make_staff(session, account.tenant, name=f"张师傅{i}")
        make_visit(
            session,
            account.tenant,
            customer=person,
            staff=staff,
            service_type=code,
            finished_at=NOW - dt.timedelta(days=days),
        )
        make_consent(
            session, account.tenant, person, now=NOW, granted_at=NOW - dt.timedelta(days=400)
        )
        made.append(person)
    return made


@pytest.mark.parametrize("preset", list(PRESETS))
def test_each_preset_starts_in_one_call_previews_and_activates(
    client, account, people, preset
) -> None:
    created = client.post("/v1/campaigns", headers=account.headers, json={"preset": preset})
    assert created.status_code == 201, created.text
    campaign = created.json()
    assert (campaign["status"], campaign["preset"], campaign["version"]) == ("draft", preset, 1)
    assert campaign["name"] == PRESETS[preset].title and campaign["rule_text"]

    preview = client.post(f"/v1/campaigns/{campaign['id']}/preview", headers=account.headers)
    assert preview.status_code == 200, preview.text
    found = preview.json()
    assert found["can_activate"] is True
    assert [f for f in found["lint"] if f["severity"] == "error"] == []
    assert found["audience"]["reachable"] >= 1
    for message in found["messages"]:
        assert message["problem"] is None
        text = message["sms"]["text"]
        assert text.startswith("【测试家政】") and text.endswith("回复T退订")
        assert re.search(r"https?://[^/]+/b/[A-Za-z0-9_-]{16}", text), text
        assert message["mms"]["chars"] == len(message["mms"]["text"])
    assert found["schedules"] and all(s["occurrences"] for s in found["schedules"])

    activated = client.post(f"/v1/campaigns/{campaign['id']}/activate", headers=account.headers)
    assert activated.status_code == 200, activated.text
    assert activated.json()["status"] == "active" and activated.json()["activated_at"]
    listed = client.get("/v1/campaigns?status=active", headers=account.headers).json()
    assert [c["id"] for c in listed["items"]] == [campaign["id"]]


def test_preview_counts_match_what_activation_schedules(client, session, account, people) -> None:
    tenant = account.tenant
    extra = []
    for i, consent in enumerate((False, False, True)):
        person = make_customer(session, tenant, name=f"李{i}", phone=f"1390000{i:04d}")
        make_visit(session, tenant, customer=person, finished_at=NOW - dt.timedelta(days=85))
        if consent:
            make_consent(session, tenant, person, now=NOW, source="web_form", evidence="表单 17")
        extra.append(person)
    compliance.opt_out(
        session=session,
        tenant=tenant,
        phone=extra[2].phone,
        reason="reply_opt_out",
        detail="T",
        now=NOW,
    )
    campaign = client.post(
        "/v1/campaigns", headers=account.headers, json={"preset": "ac_filter_quarterly"}
    ).json()
    counts = client.post(f"/v1/campaigns/{campaign['id']}/preview", headers=account.headers).json()[
        "audience"
    ]
    # Had 空调清洗: two of the fixture's customers and the three above.
    assert (
        counts["matched"],
        counts["opted_out"],
        counts["without_consent"],
        counts["reachable"],
    ) == (5, 1, 2, 2)
    sample = {s["id"]: s for s in counts["sample"]}
    assert sample[extra[2].id]["why_not"] == "opted out"
    assert sample[extra[0].id]["why_not"] == "no marketing consent"
    assert (
        client.post(f"/v1/campaigns/{campaign['id']}/activate", headers=account.headers).status_code
        == 200
    )

    made = materializer.materialize(
        session=session, now=dt.datetime.now(UTC), horizon=dt.timedelta(days=400)
    )
    pending = session.scalars(
        select(CampaignOccurrence.customer_id).where(
            CampaignOccurrence.campaign_id == campaign["id"], CampaignOccurrence.status == PENDING
        )
    ).all()
    assert made[campaign["id"]] >= len(pending) == counts["reachable"]
    assert set(pending) == {s["id"] for s in counts["sample"] if s["reachable"]}


def test_a_template_with_lint_errors_cannot_be_activated(client, account, people) -> None:
    body = {
        "name": "好评有礼",
        "rule": {"kind": "fixed_date", "month": 6, "day": 1},
        "template": "{{ customer_name }}您好，【限时】邀请好评，返现 10 元：https://t.cn/abc",
    }
    campaign = client.post("/v1/campaigns", headers=account.headers, json=body).json()
    refused = client.post(f"/v1/campaigns/{campaign['id']}/activate", headers=account.headers)
    assert refused.status_code == 422
    answer = refused.json()
    assert answer["detail"].startswith("The campaign cannot be activated")
    codes = {f["code"] for f in answer["findings"] if f["severity"] == "error"}
    assert {"extra_brackets", "refused_topic", "link_shortener"} <= codes
    assert all(f["hint"] and f["part"] == "sms" for f in answer["findings"])
    again = client.get(f"/v1/campaigns/{campaign['id']}", headers=account.headers).json()
    assert again["status"] == "draft"

    fixed = client.patch(
        f"/v1/campaigns/{campaign['id']}",
        headers=account.headers,
        json={"template": "{{ customer_name }}您好，夏季空调清洗现可预约：{{ booking_link }}"},
    )
    assert fixed.status_code == 200 and fixed.json()["version"] == 2
    assert (
        client.post(f"/v1/campaigns/{campaign['id']}/activate", headers=account.headers).status_code
        == 200
    )
    # An active campaign's texts stay clean: a bad edit is refused and changes nothing.
    bad = client.patch(
        f"/v1/campaigns/{campaign['id']}",
        headers=account.headers,
        json={"template": "【活动】{{ customer_name }}，抽奖：{{ booking_link }}"},
    )
    assert bad.status_code == 422 and bad.json()["findings"]
    kept = client.get(f"/v1/campaigns/{campaign['id']}", headers=account.headers).json()
    assert kept["version"] == 2 and "夏季空调清洗" in kept["template"]


ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ customer_name.__class__.__init__.__globals__ }}",
    "{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum }}{% set x = 1 %}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_a_sandbox_escape_attempt_in_a_template_is_refused(client, account, template) -> None:
    answer = client.post(
        "/v1/campaigns",
        headers=account.headers,
        json={"rule": {"kind": "anniversary"}, "template": template},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0].isupper() and len(answer.json()["detail"]) > 20
    campaign = client.post(
        "/v1/campaigns", headers=account.headers, json={"preset": "yearly_checkin"}
    ).json()
    for change in ({"template": template}, {"mms": {"body": template}}):
        patched = client.patch(
            f"/v1/campaigns/{campaign['id']}", headers=account.headers, json=change
        )
        assert patched.status_code == 422, patched.text
    assert (
        client.get(f"/v1/campaigns/{campaign['id']}", headers=account.headers).json()["version"]
        == 1
    )


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"rule": {"kind": "weekly"}, "template": "x"}, "Unknown rule kind"),
        (
            {
                "rule": {
                    "kind": "cadence",
                    "service_type": "ac_cleaning",
                    "every_days": 30,
                    "catch_up_days": 40,
                },
                "template": "x",
            },
            "catch-up window",
        ),
        ({"preset": "ac_filter_quarterly", "audience": {"cities": ["上海"]}}, "no filter 'cities'"),
        ({"preset": "ac_filter_quarterly", "audience": {"min_visits": -1}}, "min_visits"),
        ({"preset": "no_such_preset"}, "There is no preset"),
        ({"template": "{{ customer_name }}"}, "needs a rule"),
        (
            {"preset": "yearly_checkin", "mms": {"body": "x", "image_url": "http://a.cn/p.jpg"}},
            "https://",
        ),
        (
            {"preset": "yearly_checkin", "mms": {"body": "x", "image_media_id": 999999}},
            "no media 999999",
        ),
        (
            {"rule": {"kind": "anniversary"}, "template": "{{ name }}"},
            "Did you mean 'customer_name'",
        ),
    ],
)
def test_bad_campaigns_are_refused_with_a_sentence(client, account, body, words) -> None:
    answer = client.post("/v1/campaigns", headers=account.headers, json=body)
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["detail"]


def test_state_changes_refused_with_409(client, account, people) -> None:
    campaign = client.post(
        "/v1/campaigns", headers=account.headers, json={"preset": "spring_festival_deep_clean"}
    ).json()
    path = f"/v1/campaigns/{campaign['id']}"
    assert client.post(f"{path}/pause", headers=account.headers).status_code == 409
    assert client.post(f"{path}/resume", headers=account.headers).status_code == 409
    assert client.post(f"{path}/activate", headers=account.headers).status_code == 200
    assert client.post(f"{path}/pause", headers=account.headers).json()["status"] == "paused"
    assert client.post(f"{path}/resume", headers=account.headers).json()["status"] == "active"
    assert client.post(f"{path}/archive", headers=account.headers).json()["status"] == "archived"
    refused = client.post(f"{path}/activate", headers=account.headers)
    assert refused.status_code == 409 and "archived" in refused.json()["detail"]
    assert client.patch(path, headers=account.headers, json={"name": "再来"}).status_code == 409


def test_presets_are_listed_with_their_rules(client, account) -> None:
    listed = client.get("/v1/campaign-presets", headers=account.headers).json()
    assert [p["name"] for p in listed] == list(PRESETS)
    plum = next(p for p in listed if p["name"] == "plum_rain_mould")
    assert plum["rule"] == {
        "kind": "plum_rain",
        "offset_days": -7,
        "region": None,
        "send_time": "10:00",
    }
    assert "上海" in plum["regions"] and plum["mms"]["image_hint"]


def test_the_plum_rain_table_is_checked_and_used(client, session, account, people) -> None:
    empty = client.get("/v1/plum-rain", headers=account.headers).json()
    assert empty["table"] == {} and empty["fallback"] == "first 丙 day after 芒种"
    assert len(empty["traditional"]) == 2
    wrong = client.put(
        "/v1/plum-rain", headers=account.headers, json={"table": {"上海": {"2026": "2026-09-15"}}}
    )
    assert wrong.status_code == 422 and "check the month" in wrong.json()["detail"]
    twice = client.put(
        "/v1/plum-rain",
        headers=account.headers,
        json={"table": {"上海": {"2026": "2026-06-15"}, "上海市": {"2027": "2027-06-10"}}},
    )
    assert twice.status_code == 422 and "twice" in twice.json()["detail"]
    saved = client.put(
        "/v1/plum-rain",
        headers=account.headers,
        json={"table": {"上海市": {"2026": "2026-06-15", "2027": "2027-06-10"}}},
    )
    assert saved.status_code == 200
    assert saved.json()["table"] == {"上海": {"2026": "2026-06-15", "2027": "2027-06-10"}}

    # A customer in 上海 gets 入梅 from the table; one in 江苏 from the almanac rule.
    campaign = client.post(
        "/v1/campaigns", headers=account.headers, json={"preset": "plum_rain_mould"}
    ).json()
    schedules = client.post(
        f"/v1/campaigns/{campaign['id']}/preview",
        headers=account.headers,
        json={"customer_ids": [people[0].id, people[4].id]},
    ).json()["schedules"]
    first = {s["customer_id"]: s["occurrences"][0] for s in schedules}
    year = dt.date.fromisoformat(first[people[0].id]["local_date"]).year
    assert first[people[0].id]["local_date"] == {2026: "2026-06-08", 2027: "2027-06-03"}[year]
    assert "company table" in first[people[0].id]["basis"]
    assert "first 丙 day after 芒种" in first[people[4].id]["basis"]
    assert (
        client.get("/v1/plum-rain", headers=account.headers).json()["table"]
        == (saved.json()["table"])
    )
