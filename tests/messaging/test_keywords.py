"""Keyword routing of replies: the corpus of real-looking replies, company rules, refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huifang.errors import Invalid
from messaging.keywords import (
    DEFAULT_RULES,
    ROUTES,
    Routing,
    Rule,
    normalize,
    route,
    validate_rule,
)

CORPUS = Path(__file__).with_name("replies.tsv")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _corpus() -> list[tuple[int, str, str, bool, str]]:
    lines = []
    for number, line in enumerate(CORPUS.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        text, expected, complaint, note = line.split("\t")
        assert expected in ROUTES, line
        assert complaint in ("0", "1"), line
        text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
        lines.append((number, text, expected, complaint == "1", note))
    return lines


CASES = _corpus()


def test_the_corpus_is_large_and_covers_every_route():
    assert len(CASES) >= 120
    assert {expected for _, _, expected, _, _ in CASES} == set(ROUTES)
    assert sum(complaint for _, _, _, complaint, _ in CASES) >= 20
    assert any(not text.isascii() for _, text, *_ in CASES)
    assert len({text for _, text, *_ in CASES}) == len(CASES), "a reply is listed twice"


# The id is the corpus line: "replies.tsv:57 请帮我退订 -> opt_out".
@pytest.mark.parametrize(
    ("number", "text", "expected", "complaint", "note"),
    CASES,
    ids=[f"replies.tsv:{n} {text} -> {expected}" for n, text, expected, _, _ in CASES],
)
def test_corpus(number, text, expected, complaint, note):
    routing = route(text)
    assert (routing.route, routing.complaint) == (expected, complaint), (number, note, routing)
    # The decision carries its evidence: the rule that matched (none only for "other").
    if expected != "other":
        assert routing.rule
    assert (routing.complaint_rule is not None) == complaint
    assert routing.normalized == normalize(text)


def test_normalize_folds_width_case_punctuation_and_spaces():
    assert normalize(" Ｔ。") == "t"
    assert normalize("STOP!!! 🛑") == "stop"
    assert normalize("“请帮我  退订”～～") == "请帮我 退订"
    assert normalize("…Tomorrow\n\tworks?!") == "tomorrow works"
    assert normalize("1️⃣") == "1"
    assert normalize("S\u200bTOP") == "stop"
    assert normalize("退訂") == "退订"
    assert normalize("Don’t") == "don't"
    assert normalize("  ！！ ") == ""


def test_a_cancelled_booking_is_named_so_the_booking_screen_can_offer_it():
    assert route("cancel my appointment tomorrow").rule == "cancel_booking"
    assert route("取消明天的预约").rule == "cancel_booking"
    assert route("cancel").rule == "opt_out:cancel"


def test_complaints_name_the_word_that_matched():
    routing = route("阿姨迟到了一个小时")
    assert routing.complaint_rule == "complaint:迟到"
    assert route("They broke my vase").complaint_rule == "complaint:broke"


def test_opt_outs_help_and_opt_ins_are_not_searched_for_complaints():
    assert route("迟到太多次了，退订").complaint is False
    assert route("HELP").complaint is False


# --- company rules -----------------------------------------------------------------------


def test_company_rules_add_words_and_win_over_ours():
    tui = Rule(name="tui", route="opt_out", kind="exact", value="退")
    enough = Rule(name="enough", route="opt_out", kind="pattern", value="[烦死了|够了] * 发")
    yue = Rule(name="yue", route="book", kind="pattern", value="约")
    no_sms_booking = Rule(name="no_sms_booking", route="other", kind="exact", value="1")
    extra = [tui, enough, yue, no_sms_booking]

    # Without them these replies go elsewhere; with them, the company's rule decides.
    assert route("退").route == "other"
    assert route("退！", extra=extra) == Routing("opt_out", "tui", "退", False, None)
    assert route("烦死了天天发").route == "other"
    assert route("烦死了天天发", extra=extra).rule == "enough"
    assert route("大约几点到").route == "other"
    assert route("大约几点到", extra=extra).rule == "yue"
    assert route("1").route == "book"
    assert route("１", extra=extra) == Routing("other", "no_sms_booking", "1", False, None)
    # The company's book rule wins over our cancelled-booking rule too.
    assert route("约好的取消明天", extra=extra).rule == "yue"
    # The order of the company's rules is kept.
    assert route("约", extra=[Rule("a", "help", "exact", "约"), yue]).rule == "a"


def test_no_company_rule_takes_a_reply_away_from_opt_out():
    book_everything = Rule(name="everything", route="book", kind="pattern", value="发")
    assert route("别再发了", extra=[book_everything]).route == "opt_out"
    assert route("T", extra=[Rule("t", "book", "pattern", "t")]).route == "opt_out"


def test_company_opt_out_patterns_ignore_look_alikes():
    tui = Rule(name="tui_anywhere", route="opt_out", kind="pattern", value="退订")
    assert route("我想退订金", extra=[tui]).route == "other"
    assert route("没退订啊", extra=[tui]).route == "other"


def test_pattern_words_match_whole_english_words_and_numbers():
    stop_words = Rule(name="no_msgs", route="opt_out", kind="pattern", value="no msgs")
    assert route("no msgs pls", extra=[stop_words]).route == "opt_out"
    assert route("no msgsx", extra=[stop_words]).route == "other"
    building = Rule(name="floor", route="help", kind="pattern", value="# 楼")
    assert route("我住 12 楼", extra=[building]).rule == "floor"
    assert route("我住十二楼", extra=[building]).rule is None
    when = Rule(name="laundry", route="book", kind="pattern", value="洗衣机 * {when}")
    assert route("洗衣机清洗，下周三", extra=[when]).rule == "laundry"
    assert route("下周三洗衣机", extra=[when]).rule != "laundry"  # parts are found in order


FORTY_ONE_PHRASES = "[" + "|".join("abcdefghijklmnopqrstuvwxyz0123456789一二三四五") + "]"


@pytest.mark.parametrize(
    ("rule", "sentence"),
    [
        (Rule("", "opt_out", "exact", "退"), "has no name"),
        (Rule("x" * 65, "opt_out", "exact", "退"), "keep it to 64"),
        (Rule("r", "unsubscribe", "exact", "退"), "is not a route"),
        (Rule("r", "opt_out", "regex", "退"), "is not a kind of rule"),
        (Rule("r", "opt_out", "exact", "   "), "has no value"),
        (Rule("r", "opt_out", "exact", "！！🙂"), "no letters or digits"),
        (Rule("r", "opt_out", "exact", "退" * 101), "keep it to 100"),
        (Rule("r", "opt_out", "pattern", "退" * 101), "keep it to 100"),
        (Rule("r", "opt_out", "pattern", "[别再|不要再 发"), "without closing it"),
        (Rule("r", "opt_out", "pattern", "[别再|[不要]]发"), "cannot be nested"),
        (Rule("r", "opt_out", "pattern", "别再]发"), "never opened"),
        (Rule("r", "opt_out", "pattern", "不要再发|别再发"), "Put alternatives in brackets"),
        (Rule("r", "opt_out", "pattern", "[]"), "are empty"),
        (Rule("r", "opt_out", "pattern", "* 退"), "empty part"),
        (Rule("r", "opt_out", "pattern", "退 ** 订"), "empty part"),
        (Rule("r", "opt_out", "pattern", "a * b * c * d * e"), "keep it to 4"),
        (Rule("r", "opt_out", "pattern", FORTY_ONE_PHRASES), "keep them to 40"),
        (Rule("r", "opt_out", "pattern", "[再|]发"), "starts or ends with an optional phrase"),
        (Rule("r", "book", "pattern", "约 * {date}"), "not a known placeholder"),
        (Rule("r", "opt_in", "pattern", "订阅"), "must be exact keywords"),
        (Rule("r", "book", "exact", "Ｔ"), "is an opt-out reply"),
        (Rule("r", "help", "exact", "stop please"), "is an opt-out reply"),
    ],
)
def test_invalid_rules_are_refused_with_a_sentence(rule, sentence):
    with pytest.raises(Invalid, match=re.escape(sentence)):
        validate_rule(rule)
    # route() refuses the same rule rather than silently ignoring it.
    with pytest.raises(Invalid):
        route("hello", extra=[rule])


def test_valid_rules_are_returned_unchanged():
    rules = [
        Rule("tui", "opt_out", "exact", "退"),
        Rule("stop_sending", "opt_out", "pattern", "[不要再|别再] * 发"),
        Rule("laundry", "book", "pattern", "洗衣机 * {when}"),
        Rule("resub", "opt_in", "exact", "继续发"),
    ]
    assert [validate_rule(r) for r in rules] == rules


def test_our_own_rules_are_well_formed():
    names = [r.name for r in DEFAULT_RULES]
    assert all(r.route in ROUTES and r.kind in ("exact", "pattern") for r in DEFAULT_RULES)
    # One name per rule, except the forms of a cancelled booking, which share theirs.
    assert {name for name in names if names.count(name) > 1} == {"cancel_booking"}
    assert not [r for r in DEFAULT_RULES if r.route == "opt_in" and r.kind == "pattern"]
    assert "yes" not in {r.value for r in DEFAULT_RULES if r.route == "opt_in"}


# --- properties ------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(
    [
        *"tTdDrRsS1１ＴＳ 。！?!.,，~～…“”'’-#*[]|{}",
        "退订",
        "拒收",
        "别再",
        "发",
        "不要",
        "没",
        "迟到",
        "约",
        "stop",
        "cancel",
        "明天",
        "号",
        "🛑",
        "👍",
        "\u200b",
        "\u3000",
        "\ufe0f",
        "\u20e3",
    ]
)
_REPLIES = st.one_of(st.text(max_size=300), st.lists(_ALPHABET, max_size=40).map("".join))


@settings(max_examples=400, deadline=None)
@given(_REPLIES)
def test_route_never_raises_and_always_chooses_a_route(text):
    routing = route(text)
    assert routing.route in ROUTES
    assert routing.normalized == normalize(text)
    assert routing.complaint == (routing.complaint_rule is not None)
    if routing.complaint:
        assert routing.route in ("book", "other")
    if routing.rule is None:
        assert routing.route == "other"


@settings(max_examples=400, deadline=None)
@given(_REPLIES)
def test_normalize_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40), _REPLIES)
def test_any_accepted_company_rule_routes_any_reply(value, text):
    for kind in ("exact", "pattern"):
        try:
            rule = validate_rule(Rule("r", "book", kind, value))
        except Invalid:
            continue
        assert route(text, extra=[rule]).route in ROUTES


def test_a_long_hostile_reply_is_routed():
    # Many near-matches of a multi-part pattern: matching stays linear, so this returns.
    text = "别" * 1500 + "再" * 400
    extra = [Rule("r", "book", "pattern", "[别|别别] * [别|别别] * [别|别别] * 发")]
    assert route(text, extra=extra).route == "other"
    assert route("stop " * 1000).route in ROUTES
