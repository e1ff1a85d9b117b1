"""Template lint: each rule providers or our gate enforce, caught with a message to act on."""

from __future__ import annotations

import pytest

from campaigns.lint import REFUSED_TOPICS, Finding, errors, lint

DOMAINS = ["hf.example.cn", "jiejia.com.cn"]
CLEAN = "{{ customer_name }}您好，空调滤网建议每三个月清洗一次。预约上门：{{ booking_link }}"


def run(body: str, **options: object) -> list[Finding]:
    settings: dict[str, object] = {
        "signature": "洁家到家",
        "category": "marketing",
        "tenant_domains": DOMAINS,
    }
    settings.update(options)
    return lint(body, **settings)  # type: ignore[arg-type]


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def only(findings: list[Finding], code: str) -> Finding:
    matching = [f for f in findings if f.code == code]
    assert len(matching) == 1, findings
    return matching[0]


def test_clean_template_has_no_findings() -> None:
    assert run(CLEAN) == []
    assert run(CLEAN, category="service") == []
    assert run(CLEAN, channel="mms") == []


def test_every_finding_has_a_message_and_a_hint() -> None:
    findings = run("【促销】问卷 t.cn/x 13800138000 ¥9 {{ nme }}", channel="mms", signature="洁")
    assert len(findings) >= 6
    for finding in findings:
        assert finding.severity in ("error", "warning")
        assert len(finding.message) > 30 and finding.hint


# --- signature ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature", "code", "words"),
    [
        ("", "signature_missing", "no SMS signature"),
        ("   ", "signature_missing", "no SMS signature"),
        ("洁", "signature_length", "has 1 character; providers accept 2 to 16"),
        ("洁" * 17, "signature_length", "has 17 characters"),
        ("【洁家】", "signature_brackets", "contains 【 or 】"),
    ],
)
def test_signature_rules(signature: str, code: str, words: str) -> None:
    finding = only(run(CLEAN, signature=signature), code)
    assert finding.severity == "error" and words in finding.message


@pytest.mark.parametrize("signature", ["洁家", "洁" * 16])
def test_signature_lengths_at_the_limits_pass(signature: str) -> None:
    assert run(CLEAN, signature=signature) == []


def test_signature_written_into_the_body_is_caught() -> None:
    finding = only(run("【洁家到家】" + CLEAN), "signature_in_body")
    assert "appear twice" in finding.message
    assert "Delete 「【洁家到家】」" in finding.hint


def test_other_brackets_are_caught_with_the_line() -> None:
    finding = only(run("您好\n【限时】" + CLEAN), "extra_brackets")
    assert finding.message.startswith("Line 2:")
    assert "「」" in finding.hint


def test_brackets_arriving_in_a_value_are_caught() -> None:
    samples = [{"customer_name": "王【VIP】", "booking_link": "https://hf.example.cn/b/1"}]
    finding = only(run(CLEAN, rendered_samples=samples), "extra_brackets")
    assert finding.message.startswith("Sample 1 (王【VIP】)")


# --- length -------------------------------------------------------------------------------


def test_length_counts_signature_footer_and_long_values_and_names_the_culprit() -> None:
    # 6 (【洁家到家】) + 470 + 6 (" 回复T退订") = 482: fits.
    assert run("好" * 470) == []
    # With a name of up to 20 characters, 30 names make it long.
    finding = only(run("您好" + "{{ customer_name }}" * 30), "too_long")
    assert "'customer_name' adds the most: 600 characters" in finding.message
    assert "the provider takes 500" in finding.message
    assert "truncate" in finding.hint
    # Over the limit on the fixed text alone: no variable to blame.
    finding = only(run("好" * 495), "too_long")
    assert "reaches 507 characters" in finding.message and "adds the most" not in finding.message
    assert "Cut at least 7 characters" in finding.hint


def test_length_limit_is_the_provider_s() -> None:
    assert codes(run(CLEAN, provider_limit=70)) == ["too_long"]
    assert run(CLEAN, provider_limit=1600) == []


def test_real_samples_are_measured_and_rendered() -> None:
    samples = [
        {"customer_name": "张" * 480, "booking_link": "https://hf.example.cn/b/1"},
        {"customer_name": "李"},
    ]
    findings = run(CLEAN, rendered_samples=samples)
    assert codes(findings) == ["too_long", "sample"]
    assert findings[0].message.startswith("Sample 1 (" + "张" * 480 + "): the message is")
    assert "no value for 'booking_link'" in findings[1].message


# --- opt-out footer ---------------------------------------------------------------------------


def test_marketing_without_any_opt_out_is_an_error() -> None:
    finding = only(run(CLEAN, footer=""), "footer_missing")
    assert finding.severity == "error"
    assert "回复T退订" in finding.hint and "拒收请回复R" in finding.hint
    # A service message does not need one.
    assert run(CLEAN, footer="", category="service") == []


@pytest.mark.parametrize("ending", ["拒收请回复R", "回复T退订", "回复TD退订。"])
def test_accepted_footers_at_the_end_pass(ending: str) -> None:
    # Accepted in the text even when the company configured no footer of its own.
    assert run(CLEAN + " " + ending, footer="") == []
    assert run(CLEAN + " " + ending) == []


def test_configured_footer_is_accepted() -> None:
    assert run(CLEAN + "回复TD退订", footer="回复TD退订") == []


def test_footer_in_the_middle_is_a_warning() -> None:
    finding = only(run("回复T退订。" + CLEAN), "footer_position")
    assert finding.severity == "warning" and "回复T退订" in finding.hint


# --- links --------------------------------------------------------------------------------


def test_constant_links_on_the_company_domains_pass() -> None:
    body = (
        "{{ customer_name }}您好，详情 https://hf.example.cn/p/ac?x=1 ，"
        "或 www.jiejia.com.cn/a 或 m.jiejia.com.cn 。报告：{{ report_link }}"
    )
    assert run(body) == []


def test_link_to_another_domain_is_an_error() -> None:
    finding = only(run(CLEAN + " 详见 https://evil.example.com/promo"), "link_domain")
    assert "'https://evil.example.com/promo'" in finding.message
    assert "hf.example.cn, jiejia.com.cn" in finding.message
    # A look-alike that only ends with the company's name is not its domain.
    only(run(CLEAN + " https://fakehf.example.cn/x"), "link_domain")


def test_shortener_is_an_error() -> None:
    finding = only(run(CLEAN + " 详见 t.cn/A6abcd"), "link_shortener")
    assert "short links" in finding.message


def test_link_built_from_a_variable_is_an_error() -> None:
    finding = only(run("https://hf.example.cn/u/{{ customer_name }} " + CLEAN), "link_variable")
    assert "'https://hf.example.cn/u/{{ customer_name }}'" in finding.message
    assert "built from customer_name" in finding.message
    only(run("{{ company }}.com " + CLEAN), "link_variable")


def test_our_links_must_be_used_as_issued() -> None:
    finding = only(run("预约 {{ booking_link }}?from=sms " + CLEAN), "link_modified")
    assert "changes our booking_link" in finding.message
    only(run("预约 https://hf.example.cn{{ report_link }} " + CLEAN), "link_modified")
    only(run("预约 {{ booking_link | upper }} " + CLEAN), "link_modified")
    # Punctuation next to the link is not part of it.
    assert run("{{ customer_name }}您好，预约:{{ booking_link }}.") == []
    assert run("{{ customer_name }}您好，预约（{{ booking_link }}）") == []


def test_ordinary_words_are_not_mistaken_for_links() -> None:
    assert (
        run("{{ customer_name }}您好，No.1 服务 3.5 小时 e.g. 示例。预约：{{ booking_link }}") == []
    )


# --- refused topics and contacts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("请填写问卷调查", "问卷调查"),
        ("服务满意请给个好评", "邀请好评"),
        ("好评返现5元", "邀请好评"),
        ("老客户召回活动", "用户召回"),
        ("邀请好友得奖励", "用户拉新"),
        ("参与抽奖", "抽奖"),
        ("领取优惠券", "优惠券"),
        ("积分兑换礼品", "积分"),
        ("加微信咨询", "加微信"),
        ("加qq群", "加QQ"),
        ("装修后保洁", "装修"),
        ("支持分期付款", "金融"),
    ],
)
def test_refused_topics_are_errors_with_what_to_write_instead(text: str, topic: str) -> None:
    findings = [f for f in run(CLEAN + text) if topic in f.message]
    assert len(findings) == 1
    finding = findings[0]
    assert finding.code == "refused_topic" and finding.severity == "error"
    assert topic in finding.message
    assert finding.hint


def test_refused_topic_inside_an_expression_is_found_too() -> None:
    finding = only(run("{{ customer_name | default('请给好评') }}\n" + CLEAN), "refused_topic")
    assert finding.message.startswith("Line 1:")


def test_sofa_refurbishing_is_a_warning() -> None:
    finding = only(run(CLEAN + "沙发翻新"), "refused_topic")
    assert finding.severity == "warning" and "沙发清洁护理" in finding.hint


def test_every_topic_has_a_hint() -> None:
    for topic in REFUSED_TOPICS:
        assert topic.words and topic.hint and topic.topic


def test_personal_mobile_numbers() -> None:
    for number in ("13800138000", "138-0013-8000", "+86 138 0013 8000"):
        assert (
            only(run(CLEAN + f"，电话{number}", channel="mms"), "personal_phone").severity
            == "error"
        )
        assert only(run(CLEAN + f"，电话{number}"), "personal_phone").severity == "warning"
    # Landlines and 400 numbers are what providers ask for.
    assert run(CLEAN + "，电话021-62345678 或 400-820-1234", channel="mms") == []


def test_qr_codes_in_mms() -> None:
    assert only(run(CLEAN + "，扫码预约", channel="mms"), "qr_code").severity == "error"
    only(run(CLEAN + "，见二维码", channel="mms"), "qr_code")
    assert run(CLEAN + "，扫码预约", channel="sms") == []


def test_special_symbols_warn() -> None:
    finding = only(run(CLEAN + "仅需¥99★"), "special_symbol")
    assert finding.severity == "warning" and "¥" in finding.message and "★" in finding.message


# --- templates ------------------------------------------------------------------------------


def test_template_errors_are_findings_not_exceptions() -> None:
    finding = only(run("{{ custmer_name }}您好"), "template")
    assert "Did you mean 'customer_name'?" in finding.message
    finding = only(run("{{ ''.__class__.__mro__ }}"), "template")
    assert "nothing in it was run" in finding.message
    # The other rules still run on the text.
    assert set(codes(run("{{ nme }}【x】请填写问卷"))) == {
        "template",
        "extra_brackets",
        "refused_topic",
    }


def test_errors_keeps_only_blocking_findings() -> None:
    findings = run(CLEAN + "沙发翻新 t.cn/x")
    assert codes(errors(findings)) == ["link_shortener"]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("category", "promo"),
        ("channel", "rcs"),
        ("provider_limit", 0),
    ],
)
def test_bad_options_are_refused(option: str, value: object) -> None:
    from huifang.errors import Invalid

    with pytest.raises(Invalid):
        run(CLEAN, **{option: value})
