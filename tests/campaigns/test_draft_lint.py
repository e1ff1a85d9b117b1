"""The campaign editor's lint: a draft checked as activation checks it, each finding with a
Chinese sentence and a fix that, applied, makes the finding go away."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns import fixes, lint, rules, wording
from campaigns.presets import PRESETS
from compliance import service as compliance
from customers import service as customers
from visits import service as visits

SIG = "洁家到家"
DOMAINS = ["hf.example.cn"]
# One draft with most of what people get wrong, each on its own line.
BAD = (
    "【洁家到家】{{ customer_name }}您好，空调该清洗了★\n"
    "仅需¥99，详见 t.cn/abc 。\n"
    "回复T退订，加微信领优惠券。\n"
    "欢迎预约 {{ booking_link }}"
)


def _lint(text: str, **kw) -> list[lint.Finding]:
    return lint.lint(text, signature=SIG, category="marketing", tenant_domains=DOMAINS, **kw)


def test_each_fix_applied_removes_its_finding() -> None:
    found = _lint(BAD)
    codes = {f.code for f in found}
    assert {
        "signature_in_body",
        "link_shortener",
        "refused_topic",
        "special_symbol",
        "footer_position",
    } <= codes
    for finding in found:
        explained = fixes.explain(finding, text=BAD, signature=SIG)
        assert explained.sentence and not explained.sentence.isascii()
        assert explained.fix is not None, finding.code
        after = explained.fix.result
        # The edits say exactly what changes.
        rebuilt, at = [], 0
        for edit in explained.fix.edits:
            assert BAD[edit.start : edit.end] == edit.old
            rebuilt += [BAD[at : edit.start], edit.new]
            at = edit.end
        assert "".join([*rebuilt, BAD[at:]]) == after
        still = [f for f in _lint(after) if f.code == finding.code and f.message == finding.message]
        assert not still, (finding.code, after)


def test_fixes_applied_one_after_another_end_clean() -> None:
    text = BAD
    for _ in range(10):
        found = _lint(text)
        fixable = [
            e
            for e in (fixes.explain(f, text=text, signature=SIG) for f in found)
            if e.fix is not None
        ]
        if not fixable:
            break
        text = fixable[0].fix.result
    assert _lint(text) == []
    assert "{{ booking_link }}" in text and text.rstrip().endswith("回复T退订")


@pytest.mark.parametrize(
    ("text", "code", "expected"),
    [
        (
            "{{ customer_name }}您好，清洗滤网请点 https://hf.example.cn/b/{{ customer_name }}",
            "link_variable",
            "您好，清洗滤网请点 {{ booking_link }}",
        ),
        (
            "{{ customer_name }}您好，预约 {{ booking_link }}?from=sms 。",
            "link_modified",
            "预约 {{ booking_link }} 。",
        ),
        (
            "{{ customer_name }}您好，请致电13800138000预约",
            "personal_phone",
            "请致电{{ booking_link }}预约",
        ),
        (
            "{{ customer_name }}您好，沙发翻新季到了，预约 {{ booking_link }}",
            "refused_topic",
            "沙发清洁护理季到了",
        ),
        (
            "{{ customer_name }}您好【限时】空调清洗，预约 {{ booking_link }}",
            "extra_brackets",
            "您好「限时」空调清洗",
        ),
    ],
)
def test_single_fixes(text: str, code: str, expected: str) -> None:
    finding = next(f for f in _lint(text) if f.code == code)
    explained = fixes.explain(finding, text=text, signature=SIG)
    assert explained.fix is not None and expected in explained.fix.result


def test_findings_without_a_text_fix_still_say_what_to_do() -> None:
    found = lint.lint("您好", signature="", category="marketing", footer="")
    by_code = {f.code: fixes.explain(f, text="您好", signature="") for f in found}
    assert by_code["signature_missing"].fix is None
    assert "设置" in by_code["signature_missing"].sentence
    # A clause that is the whole message is not deleted: a person rewrites it.
    alone = next(f for f in _lint("扫码领优惠券") if f.code == "refused_topic")
    assert fixes.explain(alone, text="扫码领优惠券", signature=SIG).fix is None


def test_windows_line_ends_are_read_as_the_editor_sends_them() -> None:
    text = BAD.replace("\n", "\r\n")
    finding = next(f for f in _lint(text) if f.code == "link_shortener")
    explained = fixes.explain(finding, text=text, signature=SIG)
    assert explained.fix is not None and "\r" not in explained.fix.result
    assert "{{ booking_link }} 。" in explained.fix.result


# --- the route ---------------------------------------------------------------------------------


def test_draft_lint_by_api(client, account) -> None:
    answer = client.post(
        "/v1/campaigns/lint",
        headers=account.headers,
        json={"template": BAD.replace("洁家到家", "测试家政")},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["errors"] >= 2 and body["can_activate"] is False
    shortener = next(f for f in body["findings"] if f["code"] == "link_shortener")
    assert shortener["part"] == "sms" and "短链接" in shortener["sentence"]
    assert shortener["fix"]["label"] == "换成预约链接"
    assert shortener["fix"]["edits"][0]["old"] == "t.cn/abc"
    # Applying every fix, one after another, as the editor's button would.
    text = BAD.replace("洁家到家", "测试家政")
    for _ in range(10):
        found = client.post(
            "/v1/campaigns/lint", headers=account.headers, json={"template": text}
        ).json()
        fixable = [f for f in found["findings"] if f["fix"]]
        if not fixable:
            break
        text = fixable[0]["fix"]["result"]
    assert found["findings"] == [] and found["can_activate"] is True
    # Linting saves nothing.
    assert client.get("/v1/campaigns", headers=account.headers).json()["total"] == 0


def test_draft_lint_agrees_with_activation(client, account) -> None:
    text = "{{ customer_name }}您好，空调清洗看 t.cn/x 。"
    draft = client.post(
        "/v1/campaigns/lint",
        headers=account.headers,
        json={"template": text, "preset": "ac_filter_quarterly"},
    ).json()
    made = client.post(
        "/v1/campaigns",
        headers=account.headers,
        json={"preset": "ac_filter_quarterly", "template": text},
    ).json()
    refused = client.post(f"/v1/campaigns/{made['id']}/activate", headers=account.headers)
    assert refused.status_code == 422
    assert sorted((f["part"], f["code"]) for f in refused.json()["findings"]) == sorted(
        (f["part"], f["code"]) for f in draft["findings"]
    )
    assert draft["rule_text"].startswith("上次空调清洗后每90天提醒一次")


def test_presets_lint_clean_as_drafts(client, account) -> None:
    for preset in PRESETS.values():
        answer = client.post(
            "/v1/campaigns/lint",
            headers=account.headers,
            json={
                "template": preset.sms_body,
                "preset": preset.name,
                "mms": {"subject": preset.mms.subject, "body": preset.mms.body},
            },
        ).json()
        assert answer["errors"] == 0, (preset.name, answer["findings"])


def test_draft_lint_refusals(client, account) -> None:
    bad_rule = client.post(
        "/v1/campaigns/lint",
        headers=account.headers,
        json={"template": "您好 {{ booking_link }}", "rule": {"kind": "cadence", "every_days": -3}},
    )
    assert bad_rule.status_code == 200
    rule = next(f for f in bad_rule.json()["findings"] if f["part"] == "rule")
    assert rule["severity"] == "error" and rule["sentence"].startswith("规则无法使用")
    assert client.post("/v1/campaigns/lint", headers=account.headers, json={}).status_code == 422
    unknown = client.post(
        "/v1/campaigns/lint", headers=account.headers, json={"template": "x", "preset": "nope"}
    )
    assert unknown.status_code == 422 and "ac_filter_quarterly" in unknown.json()["detail"]
    broken = client.post(
        "/v1/campaigns/lint", headers=account.headers, json={"template": "您好 {{ customer_name "}
    ).json()
    assert broken["findings"][0]["code"] == "template" and broken["findings"][0]["fix"] is None
    assert client.post("/v1/campaigns/lint", json={"template": "x"}).status_code == 401


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            {"kind": "solar_term", "term": "立夏", "offset_days": -3},
            "每年立夏前3天，当地时间10:00发送",
        ),
        ({"kind": "lunar", "festival": "中秋", "offset_days": 0}, "每年中秋当天"),
        ({"kind": "plum_rain", "offset_days": 2, "region": "上海"}, "每年入梅后2天（上海）"),
        (
            {"kind": "fixed_date", "month": 5, "day": 1, "send_time": "09:30"},
            "每年5月1日，当地时间09:30发送",
        ),
        ({"kind": "anniversary"}, "每年首次服务的周年日"),
    ],
)
def test_rules_read_in_chinese(rule, expected) -> None:
    assert wording.describe(rules.rule_from_dict(rule)).startswith(expected)


def test_draft_audience_counts_as_the_saved_preview(session, client, account) -> None:
    now = dt.datetime.now(dt.UTC)
    tenant = account.tenant
    for i, (region, consent, service_type) in enumerate(
        [
            ("上海", True, "ac_cleaning"),
            ("上海", False, "ac_cleaning"),
            ("北京", True, "ac_cleaning"),
            ("上海", True, "deep_cleaning"),
        ]
    ):
        person = customers.create_customer(
            session=session, tenant=tenant, name=f"客{i}", phone=f"1390000{i:04d}", region=region
        )
        visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=person.id,
            service_type=service_type,
            finished_at=now - dt.timedelta(days=30),
        )
        if consent:
            compliance.record_consent(
                session=session,
                tenant_id=tenant.id,
                customer=person,
                source="in_person",
                evidence="合同",
                granted_at=now,
                now=now,
            )
    body = {"preset": "ac_filter_quarterly", "audience": {"regions": ["上海"]}}
    draft = client.post("/v1/campaigns/audience", headers=account.headers, json=body)
    assert draft.status_code == 200
    counts = draft.json()
    # 上海 and had an AC cleaning: 客0 (consent) and 客1 (none).
    assert (counts["matched"], counts["without_consent"], counts["reachable"]) == (2, 1, 1)
    made = client.post("/v1/campaigns", headers=account.headers, json=body).json()
    saved = client.post(f"/v1/campaigns/{made['id']}/preview", headers=account.headers).json()
    assert {
        k: saved["audience"][k] for k in ("matched", "opted_out", "without_consent", "reachable")
    } == {k: counts[k] for k in ("matched", "opted_out", "without_consent", "reachable")}
    refused = client.post(
        "/v1/campaigns/audience", headers=account.headers, json={"audience": {"regions": ["上海"]}}
    )
    assert refused.status_code == 422 and "rule" in refused.json()["detail"]
    typo = client.post(
        "/v1/campaigns/audience",
        headers=account.headers,
        json={"preset": "ac_filter_quarterly", "audience": {"regoins": ["上海"]}},
    )
    assert typo.status_code == 422


def test_mms_findings_fix_the_mms_body(client, account) -> None:
    body = client.post(
        "/v1/campaigns/lint",
        headers=account.headers,
        json={
            "template": "空调该清洗了，预约 {{ booking_link }}",
            "mms": {"subject": "清洗提醒", "body": "扫码预约更方便。详见 t.cn/x 。"},
        },
    ).json()
    mms = [f for f in body["findings"] if f["part"] == "mms"]
    assert {f["code"] for f in mms} >= {"qr_code", "link_shortener"}
    link = next(f for f in mms if f["code"] == "link_shortener")
    assert link["fix"]["result"] == "扫码预约更方便。详见 {{ booking_link }} 。"
    qr = next(f for f in mms if f["code"] == "qr_code")
    assert qr["fix"]["result"] == "详见 t.cn/x 。"
    assert not [f for f in body["findings"] if f["part"] == "sms"]
