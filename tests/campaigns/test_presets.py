"""Presets: every one lints clean, renders for a sample customer and schedules sensibly."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from campaigns import calendar
from campaigns.lint import lint
from campaigns.presets import PRESETS, Preset, get_preset
from campaigns.rules import (
    Anniversary,
    Cadence,
    CustomerFacts,
    LunarOffset,
    PlumRainOffset,
    next_occurrence,
    rule_from_dict,
)
from campaigns.templating import MessageFacts, check, preview
from huifang.errors import Invalid
from visits.service_types import SERVICE_TYPES

DOMAIN = "hf.example.cn"
CUSTOMER = MessageFacts(
    customer_name="王女士",
    company="洁家到家家政服务有限公司",
    last_service="ac_cleaning",
    last_service_date=dt.date(2026, 1, 10),
    staff_name="李阿姨",
    booking_link=f"https://{DOMAIN}/b/AbCdEfGhIjKlMnOpQrStUvWx",
    report_link=f"https://{DOMAIN}/r/AbCdEfGhIjKlMnOpQrStUvWx",
)
SPARSE = MessageFacts(
    customer_name="张先生", company="洁家到家", booking_link=f"https://{DOMAIN}/b/tok"
)


def test_the_five_presets() -> None:
    assert set(PRESETS) == {
        "ac_filter_quarterly",
        "plum_rain_mould",
        "spring_festival_deep_clean",
        "curtain_biennial",
        "yearly_checkin",
    }
    rules = {name: preset.rule for name, preset in PRESETS.items()}
    assert rules["ac_filter_quarterly"] == Cadence("ac_cleaning", 90, 14)
    assert rules["plum_rain_mould"] == PlumRainOffset(-7)
    assert rules["spring_festival_deep_clean"] == LunarOffset("春节", -20)
    assert rules["curtain_biennial"] == Cadence("curtain_washing", 730, 30)
    assert rules["yearly_checkin"] == Anniversary()


@pytest.mark.parametrize("preset", PRESETS.values(), ids=lambda p: p.name)
@pytest.mark.parametrize("footer", ["回复T退订", "拒收请回复R"])
def test_preset_lints_clean(preset: Preset, footer: str) -> None:
    for channel, body in (("sms", preset.sms_body), ("mms", preset.mms.body)):
        findings = lint(
            body,
            signature="洁家到家",
            category=preset.category,
            tenant_domains=[DOMAIN],
            footer=footer,
            channel=channel,
            rendered_samples=[CUSTOMER.variables(), SPARSE.variables()],
        )
        assert findings == [], (channel, findings)
    assert (
        lint(
            preset.mms.subject,
            signature="洁家到家",
            category="service",
            tenant_domains=[DOMAIN],
            channel="mms",
        )
        == []
    )


@pytest.mark.parametrize("preset", PRESETS.values(), ids=lambda p: p.name)
def test_preset_renders_for_a_sample_customer(preset: Preset) -> None:
    for body in (preset.sms_body, preset.mms.body):
        assert check(body) <= {"customer_name", "company", "staff_name", "booking_link"}
        shown = preview(body, facts=CUSTOMER, signature="洁家到家", category=preset.category)
        assert shown.text.startswith("【洁家到家】王女士您好")
        assert CUSTOMER.booking_link in shown.text
        assert shown.text.endswith(" 回复T退订")
        assert shown.text.count("回复T退订") == 1
        assert "{" not in shown.text and "}" not in shown.text
        assert shown.chars <= 500
        # A customer we know less about still gets a whole message.
        sparse = preview(
            body, facts=SPARSE, signature="洁家到家", category=preset.category, footer="拒收请回复R"
        )
        assert sparse.text.endswith(" 拒收请回复R") and "张先生" in sparse.text


def test_staff_greeting_only_when_the_staff_is_known() -> None:
    body = PRESETS["yearly_checkin"].sms_body
    known = preview(body, facts=CUSTOMER, signature="洁家到家", category="marketing")
    assert "李阿姨也向您问好" in known.text
    unknown = preview(body, facts=SPARSE, signature="洁家到家", category="marketing")
    assert "问好" not in unknown.text


@pytest.mark.parametrize("preset", PRESETS.values(), ids=lambda p: p.name)
def test_preset_metadata(preset: Preset) -> None:
    assert preset.title and preset.description and preset.audience and preset.mms.image_hint
    assert preset.category == "marketing"
    assert all(code in SERVICE_TYPES for code in preset.service_types)
    assert rule_from_dict(preset.rule.to_dict()) == preset.rule
    assert "二维码" not in preset.mms.image_hint


@pytest.mark.parametrize("preset", PRESETS.values(), ids=lambda p: p.name)
def test_preset_schedules_for_a_customer(preset: Preset) -> None:
    customer = CustomerFacts(
        last_services={"ac_cleaning": dt.date(2026, 1, 10), "curtain_washing": dt.date(2025, 3, 1)},
        first_service=dt.date(2024, 4, 2),
        region="上海",
    )
    after = dt.datetime(2026, 1, 12, tzinfo=dt.UTC)
    found = next_occurrence(
        preset.rule, customer=customer, after=after, tz=ZoneInfo("Asia/Shanghai")
    )
    assert found is not None and found.due_at > after
    expected = {
        "ac_filter_quarterly": dt.date(2026, 4, 10),
        "plum_rain_mould": calendar.traditional_plum_rain_onset(2026) - dt.timedelta(days=7),
        "spring_festival_deep_clean": dt.date(2026, 1, 28),  # 春节 2026-02-17 − 20
        "curtain_biennial": dt.date(2027, 3, 1),
        "yearly_checkin": dt.date(2026, 4, 2),
    }[preset.name]
    assert found.local_date == expected


def test_unknown_preset_lists_the_names() -> None:
    with pytest.raises(Invalid) as error:
        get_preset("ac_quarterly")
    assert "ac_filter_quarterly" in error.value.detail
    assert get_preset(" yearly_checkin ") is PRESETS["yearly_checkin"]
