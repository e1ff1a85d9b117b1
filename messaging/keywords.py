"""Keyword routing of customers' replies: opt-out, opt-in, help, book or other.

Pure and fast: it runs inside the inbound webhook, which must answer in well under 50 ms,
and it decides whether a person stops receiving messages, so every choice here leans one
way. **A reply that a reasonable person would read as "stop sending me messages" is an
opt-out** (MIIT Order 31: stop once refused; the FCC's 2024 rule: revocation by any
reasonable means, and the seven words stop, quit, end, revoke, opt out, cancel, unsubscribe
in a reply). A look-alike (``T恤可以洗吗``, ``Tomorrow works``, ``Stop by at 3?``) must never
opt anyone out, so the bare letters and short words count only as the whole message, or
with nothing beside them but courtesy (``stop please``, ``T，谢谢``, ``回复TD``).

How a reply is routed, first match wins:

1. Opt-out, before anything a company adds can claim the reply: the company's own opt-out
   rules, then ours (whole-message keywords, a keyword with courtesy words, opt-out
   sentences such as ``请帮我退订`` or ``please stop texting me``).
2. The company's other rules, then ours: whole-message keywords (``START``, ``HELP``,
   ``1``), a cancelled booking (routed ``other``, with the rule naming it), booking
   sentences, help sentences.
3. ``other``.

Replies routed ``book`` or ``other`` are also checked for complaints (没擦干净, 迟到, "not
clean", …), negations handled, so that service recovery sees them.

Where the line is drawn:

- ``CANCEL`` / ``取消`` alone, or with nothing but courtesy (``cancel please``, ``I want to
  cancel``, ``取消吧``), opts out, as Twilio and the FCC read it. Once the reply names what
  is cancelled (``cancel my appointment tomorrow``, ``取消明天的预约``) or why (``I need to
  cancel, something came up``), it is about a visit: ``other``, under the rule
  ``cancel_booking`` when the booking or a day is named. A wrong opt-out costs the customer
  one reply (``START``/``订阅``); an ignored one costs a fine.
- ``YES`` is **not** opt-in, although Twilio treats it so: our messages ask questions
  ("明天上门可以吗?") and "yes" answers them far more often than it asks to subscribe
  again. Opting in is only ``START``, ``UNSTOP``, ``(RE)SUBSCRIBE``, ``订阅``, ``重新订阅``,
  ``恢复订阅`` as the whole message, and a company cannot add pattern opt-in rules (consent
  must be unmistakable, not a word found inside a sentence).
- ``不需要`` / ``no thanks`` decline an offer: ``other``, not opt-outs. ``wrong number`` /
  ``发错人了`` are opt-outs: that person never agreed to our messages.

Patterns (ours and the companies') are a restricted form, not regular expressions, so that
no rule can make matching slow (a catastrophic pattern in a webhook is an outage):

- literal text, matched as typed after the same normalisation as replies (case, full-width);
  English words at a pattern's edges match whole words only (``stop`` is not in ``nonstop``);
- ``[a|b|c]`` one of these phrases (the longest that fits is taken; ``[再|]`` is optional);
- ``#`` a number in digits; ``{when}`` a day or time (明天, 下周三, 3号, tomorrow, 3pm, …);
- `` * `` anything in between; the parts are found in order, each at its first place.

Each part compiles to a regular expression made only of literals, atomic groups and
possessive digit runs, so matching never backtracks: its cost grows with the length of the
reply, never exponentially.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from huifang.errors import Invalid

OPT_OUT = "opt_out"
OPT_IN = "opt_in"
HELP = "help"
BOOK = "book"
OTHER = "other"
ROUTES: tuple[str, ...] = (OPT_OUT, OPT_IN, HELP, BOOK, OTHER)

EXACT = "exact"
PATTERN = "pattern"
KINDS: tuple[str, ...] = (EXACT, PATTERN)

# Long enough for any concatenated SMS (Twilio's limit is 1,600 characters); beyond it a
# body is not a reply, and routing it on its first part keeps the webhook fast.
MAX_TEXT = 2000
MAX_NAME = 64
# A company's rule as typed (messaging.models.KeywordRule.value holds 100 characters).
MAX_VALUE = 100
MAX_PARTS = 4
MAX_OPTIONS = 40
# The courtesy check ("stop please") is for short replies only: a long message that merely
# contains "stop" is read by the sentence patterns instead.
MAX_COURTESY_TEXT = 40


@dataclass(frozen=True, slots=True)
class Rule:
    """A routing rule: ``exact`` (the whole normalised reply) or ``pattern`` (see above)."""

    name: str
    route: str
    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class Routing:
    """What a reply was routed to and why: recorded with the reply as evidence."""

    route: str
    rule: str | None  # None: nothing matched (route is "other")
    normalized: str
    complaint: bool
    complaint_rule: str | None


# --- normalisation -----------------------------------------------------------------------

# Traditional characters of the words we look for, each followed by its simplified form, so
# that customers in Hong Kong, Taiwan and abroad (退訂, 預約, 沒擦乾淨) are read the same.
_TRADITIONAL = (
    "訂订 閱阅 幫帮 約约 預预 發发 們们 擾扰 騷骚 謝谢 請请 號号 週周 點点 沒没 乾干 "
    "淨净 遲迟 訴诉 滿满 壞坏 損损 髒脏 評评 聯联 繫系 係系 門门 時时 後后 這这 個个 "
    "嗎吗 來来 給给 說说 錯错 態态 專专 業业 費费 錢钱 還还 幾几 禮礼 麼么 麽么 誰谁 "
    "務务 潔洁 掃扫 廣广 傳传 銷销 簡简 訊讯 讓让 擔担 隊队"
)
# And curly quotes (iPhones type don’t).
_FOLD: dict[int, str] = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2033": '"',
        **{pair[0]: pair[1] for pair in _TRADITIONAL.split()},
    }
)
_FOLD_CHARS = re.compile("[" + re.escape("".join(map(chr, _FOLD))) + "]")
# Invisible format characters (zero-width spaces and joiners, direction marks, BOM, soft
# hyphen): "S\u200bTOP" is STOP.
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
# Unicode categories dropped at both ends: punctuation, symbols (emoji), separators, control
# and format characters, marks (emoji variation selectors, the keycap of 1️⃣).
_EDGE_CATEGORIES = frozenset("PSZCM")


def _nfkc(text: str) -> str:
    # The quick check is far cheaper than normalising text that is already normal.
    if unicodedata.is_normalized("NFKC", text):
        return text
    return unicodedata.normalize("NFKC", text)


def _fold(text: str) -> str:
    """NFKC (full-width → ASCII), case-folded, traditional → simplified, invisibles gone."""
    folded = _nfkc(_nfkc(text).casefold())
    # str.translate looks every character up; a search finds the few that need it.
    folded = _FOLD_CHARS.sub(lambda found: _FOLD[ord(found.group())], folded)
    return _INVISIBLE.sub("", folded)


def normalize(text: str) -> str:
    """The reply as rules see it: folded, trimmed of punctuation and emoji at both ends,
    inner spaces collapsed. ``" Ｔ。"`` → ``"t"``, ``"STOP!!! 🛑"`` → ``"stop"``."""
    folded = _fold(text[:MAX_TEXT])
    start, end = 0, len(folded)
    category = unicodedata.category
    while start < end and category(folded[start])[0] in _EDGE_CATEGORIES:
        start += 1
    while end > start and category(folded[end - 1])[0] in _EDGE_CATEGORIES:
        end -= 1
    return " ".join(folded[start:end].split())


# --- the restricted pattern form ----------------------------------------------------------

_ASCII_WORD = frozenset("abcdefghijklmnopqrstuvwxyz0123456789#")
_CN_DIGITS = "一二三四五六七八九"


def _cn_number(n: int) -> str:
    """1..31 in Chinese numerals (十五, 二十一)."""
    tens, ones = divmod(n, 10)
    head = "" if tens == 0 else ("十" if tens == 1 else _CN_DIGITS[tens - 1] + "十")
    return head + (_CN_DIGITS[ones - 1] if ones else "")


def _days(prefixes: Sequence[str], days: str) -> list[str]:
    return [p + d for p in prefixes for d in days]


# A day or a time the customer proposes. Only the future and clock times: "今天" and "下午"
# describe the visit that just happened as often as the next one ("今天上门的阿姨很好").
# "一点" is left out of the clock times: it is also "a little" (便宜一点可以吗).
_WHEN_ZH = [
    "明天",
    "明早",
    "明晚",
    "后天",
    "大后天",
    "周末",
    "这周末",
    "下周",
    "下下周",
    "下个星期",
    "下星期",
    "下礼拜",
    "下个礼拜",
    "下个月",
    "月底",
    "月初",
    "月中",
    "节前",
    "节后",
    "年前",
    "年后",
    "几点",
    "什么时候",
    "哪天",
    "哪一天",
    "改天",
    "#号",
    "#日",
    "#点",
    "#月",
    "#:#",
    *_days(["周", "星期", "礼拜"], "一二三四五六日天"),
    *[_cn_number(n) + "号" for n in range(1, 32)],
    *[_cn_number(n) + "点" for n in range(2, 13)],
    "两点",
]
_WHEN_EN = [
    "tomorrow",
    "tmr",
    "tmrw",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "weekend",
    "this weekend",
    "next week",
    "next month",
    "end of the month",
    "end of month",
    "#am",
    "#pm",
    "# am",
    "# pm",
    "at #",
    "#:#",
    "o'clock",
    "noon",
]
_MACROS: dict[str, tuple[str, ...]] = {"when": tuple(_WHEN_ZH + _WHEN_EN)}


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    exact: str | None
    parts: tuple[re.Pattern[str], ...]

    def matches(self, normalized: str, searched: str) -> bool:
        """Exact rules compare the normalised reply; patterns search ``searched``."""
        if self.exact is not None:
            return normalized == self.exact
        position = 0
        for part in self.parts:
            found = part.search(searched, position)
            if found is None:
                return False
            position = found.end()
        return True


# Right after the first character of a match: the character before it is not a letter or
# digit. Placed here rather than in front, so that the regular expression engine can still
# skip ahead to the characters a match can start with.
_WORD_START = "(?<![a-z0-9].)"
_WORD_END = "(?![a-z0-9])"
_Tree = dict[str, "_Tree"]


def _item_regex(options: Sequence[str], *, first: bool, last: bool) -> str:
    """One item's options as a prefix tree (明天|明早 → 明(?:天|早)), fast to search.

    ``first``/``last``: the item begins/ends its part, where English words must be whole.
    Inside the tree every node tries longer continuations before stopping, so the longest
    option that fits is found first.
    """
    tree: _Tree = {}
    for option in options:
        node = tree
        for char in option:
            node = node.setdefault(char, {})
        node[""] = {}  # an option ends here

    def emit(node: _Tree, depth: int, previous: str) -> str:
        alternatives = []
        for char in sorted(c for c in node if c):
            token = "[0-9]" if char == "#" else re.escape(char)
            if first and depth == 0 and char in _ASCII_WORD:
                token += _WORD_START
            if char == "#":
                token += "[0-9]*+"
            alternatives.append(token + emit(node[char], depth + 1, char))
        if "" in node:
            alternatives.append(_WORD_END if last and previous in _ASCII_WORD else "")
        if len(alternatives) == 1:
            return alternatives[0]
        return "(?:" + "|".join(alternatives) + ")"

    return emit(tree, 0, "")


def _parse_part(part: str, *, limits: bool) -> list[list[str]]:
    """One part between ``*``s as items, each a list of options (``#`` marks a number)."""
    items: list[list[str]] = []
    literal: list[str] = []

    def flush_literal() -> None:
        if literal:
            items.append(["".join(literal)])
            literal.clear()

    index = 0
    while index < len(part):
        char = part[index]
        if char in "[{":
            close = "]" if char == "[" else "}"
            end = part.find(close, index + 1)
            inner = part[index + 1 : end] if end != -1 else ""
            if end == -1 or "[" in inner or "{" in inner:
                raise Invalid(
                    f"The pattern part {part!r} opens {char!r} without closing it "
                    f"with {close!r} (brackets cannot be nested)."
                )
            flush_literal()
            if char == "{":
                name = inner.strip()
                if name not in _MACROS:
                    known = ", ".join("{" + m + "}" for m in _MACROS)
                    raise Invalid(f"{{{name}}} is not a known placeholder; use {known}.")
                items.append(list(_MACROS[name]))
            else:
                options = [" ".join(o.split()) for o in inner.split("|")]
                if not any(options):
                    raise Invalid(
                        f"The brackets in {part!r} are empty; "
                        "write the phrases to choose from, as in [不要再发|别再发]."
                    )
                if limits and len(options) > MAX_OPTIONS:
                    raise Invalid(
                        f"The brackets in {part!r} hold {len(options)} phrases; "
                        f"keep them to {MAX_OPTIONS} or split the rule in two."
                    )
                items.append(options)
            index = end + 1
            continue
        if char in "]}":
            raise Invalid(f"The pattern part {part!r} closes {char!r} that was never opened.")
        if char == "|":
            raise Invalid(f"Put alternatives in brackets: [{part}] rather than {part}.")
        literal.append(char)
        index += 1
    flush_literal()
    if "" in items[0] or "" in items[-1]:
        raise Invalid(
            f"The pattern part {part!r} starts or ends with an optional phrase; "
            "a part must begin and end with something that is always there."
        )
    return items


def _compile_pattern(value: str, *, limits: bool) -> tuple[re.Pattern[str], ...]:
    folded = _fold(value)
    parts = [" ".join(p.split()) for p in folded.split("*")]
    if any(not p for p in parts):
        raise Invalid(
            f"The pattern {value!r} has an empty part around '*'; a pattern "
            "already matches anywhere in the reply, so write '*' only between words."
        )
    if limits and len(parts) > MAX_PARTS:
        raise Invalid(
            f"The pattern {value!r} has {len(parts)} parts; "
            f"keep it to {MAX_PARTS} (three '*' at most)."
        )
    compiled = []
    for part in parts:
        items = _parse_part(part, limits=limits)
        last = len(items) - 1
        # Items after the first are atomic: once one has matched, the engine never comes
        # back to try it shorter, which is what keeps a part's cost linear.
        source = "".join(
            _item_regex(options, first=True, last=last == 0)
            if i == 0
            else "(?>" + _item_regex(options, first=False, last=i == last) + ")"
            for i, options in enumerate(items)
        )
        try:
            compiled.append(re.compile(source))
        except re.error:  # pragma: no cover - literals are escaped; kept as a last guard
            raise Invalid(
                f"The pattern {value!r} cannot be read; use words, [a|b], #, {{when}} and *."
            ) from None
    return tuple(compiled)


def _check(rule: Rule, *, limits: bool) -> _Compiled:
    name = rule.name.strip()
    if not name:
        raise Invalid(
            "The rule has no name; give it one people will recognise in the reply "
            "log, such as 'tui_opt_out'."
        )
    if len(name) > MAX_NAME:
        raise Invalid(
            f"The rule name {rule.name[:20]!r}… is {len(name)} characters; keep it to {MAX_NAME}."
        )
    if rule.route not in ROUTES:
        raise Invalid(f"{rule.route!r} is not a route; use one of {', '.join(ROUTES)}.")
    if rule.kind not in KINDS:
        raise Invalid(
            f"{rule.kind!r} is not a kind of rule; use 'exact' (the whole reply) "
            "or 'pattern' (words found inside the reply)."
        )
    if not rule.value.strip():
        raise Invalid(f"The rule {name!r} has no value; write the keyword or words to match.")
    if limits and len(rule.value) > MAX_VALUE:
        raise Invalid(
            f"The rule value {rule.value[:20]!r}… is {len(rule.value)} characters; "
            f"keep it to {MAX_VALUE}: for a sentence, match the few words that "
            "matter, or split it into several rules."
        )
    if rule.kind == EXACT:
        exact = normalize(rule.value)
        if not exact:
            raise Invalid(
                f"The keyword {rule.value!r} has no letters or digits once spaces, "
                "punctuation and emoji are removed, so no reply could match it."
            )
        return _Compiled(rule=rule, exact=exact, parts=())
    if rule.route == OPT_IN:
        raise Invalid(
            "Opt-in rules must be exact keywords (such as 订阅): consent has to be "
            "the whole reply, not a word found inside a sentence."
        )
    return _Compiled(rule=rule, exact=None, parts=_compile_pattern(rule.value, limits=limits))


@lru_cache(maxsize=4096)
def _compiled(rule: Rule) -> _Compiled:
    compiled = _check(rule, limits=True)
    if compiled.exact is not None and rule.route != OPT_OUT:
        # Routing tries opt-out first, so such a rule would silently never apply: say so.
        default = route(compiled.exact)
        if default.route == OPT_OUT:
            raise Invalid(
                f"{rule.value!r} is an opt-out reply ({default.rule}); customers who "
                f"send it must stop receiving messages, so it cannot route to "
                f"{rule.route}."
            )
    return compiled


def validate_rule(rule: Rule) -> Rule:
    """``rule`` when a company may use it, else Invalid with a sentence saying what to fix.

    Besides its form, a whole-message rule may not send one of our opt-out replies elsewhere.
    """
    _compiled(rule)
    return rule


# --- our rules ------------------------------------------------------------------------------


def _exact(route_: str, *values: str) -> list[Rule]:
    return [Rule(name=f"{route_}:{v}", route=route_, kind=EXACT, value=v) for v in values]


def _any(*options: str) -> str:
    return "[" + "|".join(options) + "]"


# China's conventions (回复T退订, 拒收请回复R, the operators' old 0000) and Twilio's keywords.
# Matched only as the whole reply, or with courtesy words (see _courtesy_opt_out).
_OPT_OUT_KEYWORDS = (
    "t",
    "td",
    "r",
    "0000",
    "退订",
    "拒收",
    "取消",
    "取消订阅",
    "stop",
    "stopall",
    "stop all",
    "unsubscribe",
    "unsub",
    "cancel",
    "end",
    "quit",
    "optout",
    "opt out",
    "opt-out",
    "revoke",
    "别发",
    "别再发",
    "不要发",
    "不要再发",
    "不用发",
    "不用再发",
    "别发了",
    "勿扰",
)
# Twilio also takes YES; we do not (see the module docstring).
_OPT_IN_KEYWORDS = ("start", "unstop", "subscribe", "resubscribe", "订阅", "重新订阅", "恢复订阅")
_HELP_KEYWORDS = ("help", "info", "帮助", "客服", "人工", "人工客服", "help me")
# "1" is our call to action (回复1预约); the days alone answer "when would suit you?".
_BOOK_KEYWORDS = (
    "1",
    "预约",
    "我要预约",
    "预定",
    "预订",
    "约",
    "book",
    "book now",
    "booking",
    "明天",
    "后天",
    "周末",
    "这周末",
    "下周",
    "tomorrow",
    "weekend",
    "this weekend",
    *_days(["周", "星期"], "一二三四五六日天"),
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)

_STOP_ZH_WHO = _any(
    "别",
    "别再",
    "不要",
    "不要再",
    "请不要",
    "请不要再",
    "不用",
    "不用再",
    "不需要",
    "不需要再",
    "不想",
    "不想再",
    "请勿",
    "勿",
    "以后别",
    "以后不要",
    "以后不用",
    "以后别再",
    "以后不要再",
    "麻烦不要",
    "麻烦别",
)
_STOP_ZH_WHAT = _any(
    "发了",
    "发啦",
    "发短信",
    "发信息",
    "发消息",
    "发这种",
    "发这些",
    "发这个",
    "发广告",
    "发过来",
    "发给我",
    "发我",
    "发简讯",
    "发讯息",
    "推送",
    "联系我",
    "联系了",
    "收到短信",
    "收到信息",
    "收到消息",
    "收到你们",
    "收到这种",
    "收到广告",
    "收你们",
    "收这种",
    "给我发",
    "给我们发",
)
# 打扰 only after a refusal: "不想打扰你" is a courtesy, "别打扰我" is not.
_DISTURB_ZH = _any(
    "别", "别再", "不要", "不要再", "请不要", "请勿", "勿", "以后别", "以后不要"
) + _any("打扰", "骚扰")
_OPT_OUT_PATTERNS = [
    # 退订/拒收 anywhere, as the customer's card asks; negated forms and 退订金 (a refund
    # of the deposit, 订金) are masked out first (_NOT_OPT_OUT).
    Rule(
        "opt_out:zh_unsubscribe",
        OPT_OUT,
        PATTERN,
        _any(
            "退订",
            "拒收",
            "取消订阅",
            "取消短信",
            "取消推送",
            "取消通知",
            "取消消息",
            "免打扰",
            "请勿打扰",
            "垃圾短信",
            "骚扰",
            "黑名单",
            "拉黑",
            "屏蔽",
        ),
    ),
    Rule(
        "opt_out:zh_stop_sending",
        OPT_OUT,
        PATTERN,
        _STOP_ZH_WHO + _any("给我", "给我们", "") + _STOP_ZH_WHAT,
    ),
    Rule("opt_out:zh_do_not_disturb", OPT_OUT, PATTERN, _DISTURB_ZH),
    # "我回T了怎么还发": a T inside a sentence, after 回/回复.
    Rule(
        "opt_out:zh_replied_t",
        OPT_OUT,
        PATTERN,
        _any("回", "回复", "回了", "回复了", "已回", "已回复", "发了") + _any("t", "td", "r"),
    ),
    Rule(
        "opt_out:zh_wrong_person",
        OPT_OUT,
        PATTERN,
        _any("发错人", "发错号", "发错了人", "不是你们的客户", "不是你们客户", "不认识你们"),
    ),
    Rule(
        "opt_out:en_unsubscribe",
        OPT_OUT,
        PATTERN,
        _any(
            "unsubscribe",
            "unsub",
            "opt out",
            "opt-out",
            "optout",
            "opt me out",
            "stopall",
            "revoke",
            "spam",
            "leave me alone",
            "wrong number",
            "wrong person",
            "who gave you my number",
        ),
    ),
    Rule(
        "opt_out:en_stop_sending",
        OPT_OUT,
        PATTERN,
        _any("stop", "quit", "cease", "please stop", "pls stop")
        + " "
        + _any(
            "sending",
            "texting",
            "messaging",
            "contacting",
            "spamming",
            "bothering",
            "emailing",
            "calling",
            "receiving",
            "text",
            "message",
            "txting",
        ),
    ),
    Rule(
        "opt_out:en_do_not_contact",
        OPT_OUT,
        PATTERN,
        _any("don't", "dont", "do not", "never", "stop")
        + " "
        + _any("text", "message", "contact", "sms", "email", "bother", "spam", "txt")
        + " me",
    ),
    Rule(
        "opt_out:en_no_more_messages",
        OPT_OUT,
        PATTERN,
        _any(
            "no more",
            "stop the",
            "stop these",
            "stop your",
            "stop all",
            "end the",
            "end these",
            "cancel the",
            "cancel these",
            "cancel my",
            "cancel all",
            "cancel",
        )
        + " "
        + _any(
            "texts",
            "messages",
            "msgs",
            "sms",
            "text messages",
            "marketing",
            "ads",
            "promos",
            "promotions",
            "spam",
            "notifications",
            "reminders",
            "alerts",
            "subscription",
            "subscriptions",
        ),
    ),
    Rule(
        "opt_out:en_remove_me",
        OPT_OUT,
        PATTERN,
        _any(
            "remove me",
            "take me off",
            "delete me",
            "remove my number",
            "delete my number",
            "take my number off",
            "remove this number",
            "take this number off",
            "unlist me",
            "delete my info",
            "remove my info",
        ),
    ),
]

# Phrases that look like opt-outs and are not. Blanked out before the opt-out patterns (ours
# and the companies') are searched; exact keywords are compared before, on the whole reply.
_NOT_OPT_OUT = [
    "退订金",
    "退订的钱",
    _any(
        "不",
        "没",
        "没有",
        "不要",
        "不想",
        "别",
        "并没有",
        "并没",
        "未",
        "从未",
        "从没",
        "无需",
        "不用",
        "不必",
        "还没",
        "还没有",
    )
    + _any("退订", "拒收"),
    "[don't|dont|do not|never|won't|not|didn't|can't] stop",
    "[stop by|stop in|stop over|stop at|bus stop|last stop|next stop|one stop|non-stop]",
    "t恤",
    "t-shirt",
    "td银行",
    "td bank",
]

_OTHER_PATTERNS = [
    # A booking cancelled or called off: routed "other" so a person handles it, and named so
    # the booking screen can offer it. After opt-out, so "取消预约，以后别发了" still opts out.
    Rule(
        "cancel_booking",
        OTHER,
        PATTERN,
        "取消 * "
        + _any(
            "预约",
            "上门",
            "订单",
            "服务",
            "保洁",
            "清洗",
            "打扫",
            "安排",
            "这次",
            "下次",
            "今天",
            "阿姨",
        ),
    ),
    Rule("cancel_booking", OTHER, PATTERN, "取消 * {when}"),
    Rule(
        "cancel_booking",
        OTHER,
        PATTERN,
        _any("不用", "不要", "不需要", "别", "先不", "先不用", "暂时不", "暂时不用", "不想")
        + _any("再", "")
        + _any("来", "上门", "过来", "安排", "预约", "约", "打扫", "清洗", "做了", "服务"),
    ),
    Rule(
        "cancel_booking",
        OTHER,
        PATTERN,
        _any("cancel", "call off", "can't make", "cannot make")
        + " * "
        + _any(
            "appointment",
            "appt",
            "booking",
            "visit",
            "cleaning",
            "clean",
            "service",
            "session",
            "reservation",
            "order",
            "today",
        ),
    ),
    Rule(
        "cancel_booking",
        OTHER,
        PATTERN,
        _any("cancel", "call off", "can't make", "cannot make") + " * {when}",
    ),
    Rule(
        "book:zh_book_when",
        BOOK,
        PATTERN,
        _any(
            "预约",
            "约一下",
            "约下",
            "约个",
            "帮我约",
            "想约",
            "要约",
            "再约",
            "上门",
            "安排",
            "来一趟",
            "过来",
            "来家里",
            "来我家",
            "来打扫",
            "来清洗",
            "来做",
            "来一次",
        )
        + " * {when}",
    ),
    Rule(
        "book:zh_when_book",
        BOOK,
        PATTERN,
        "{when} * "
        + _any(
            "预约",
            "约",
            "上门",
            "安排",
            "来",
            "过来",
            "打扫",
            "清洗",
            "保洁",
            "可以",
            "行",
            "方便",
            "有空",
            "有时间",
            "ok",
            "没问题",
            "在家",
            "合适",
        ),
    ),
    # Not 再约: "下次再约" puts the booking off.
    Rule(
        "book:zh_want_booking",
        BOOK,
        PATTERN,
        _any("想", "要", "帮我", "给我", "麻烦", "可以", "能", "怎么", "如何", "需要", "我来")
        + _any("预约", "约一下", "约个", "约下", "约"),
    ),
    Rule(
        "book:zh_booking",
        BOOK,
        PATTERN,
        _any(
            "预约一下",
            "预约个",
            "预约下",
            "预约服务",
            "预约保洁",
            "预约清洗",
            "预订",
            "预定",
            "能上门",
            "可以上门",
            "能来",
            "可以来",
            "能不能来",
            "能不能上门",
            "可不可以来",
        ),
    ),
    Rule(
        "book:en_booking",
        BOOK,
        PATTERN,
        _any(
            "book",
            "booking",
            "schedule",
            "appointment",
            "appt",
            "reschedule",
            "reserve",
            "availability",
            "available slots",
        ),
    ),
    Rule(
        "book:en_visit_when",
        BOOK,
        PATTERN,
        _any(
            "come",
            "come by",
            "come over",
            "come round",
            "stop by",
            "drop by",
            "swing by",
            "pop by",
            "come back",
        )
        + " * {when}",
    ),
    # Two times together propose one: "明天下午两点", "tomorrow at 3pm".
    Rule("book:when_and_time", BOOK, PATTERN, "{when} * {when}"),
    Rule(
        "book:en_when_works",
        BOOK,
        PATTERN,
        "{when} * "
        + _any(
            "works",
            "work",
            "ok",
            "okay",
            "fine",
            "good",
            "available",
            "free",
            "suits",
            "possible",
            "is good",
            "would be great",
        ),
    ),
    Rule(
        "help:zh_who",
        HELP,
        PATTERN,
        _any(
            "你们是谁",
            "你是谁",
            "你们是哪",
            "哪家公司",
            "什么公司",
            "哪个公司",
            "谁发的",
            "人工客服",
            "转人工",
            "联系客服",
            "客服电话",
            "怎么联系你们",
            "什么意思",
            "怎么回事",
        ),
    ),
    Rule(
        "help:en_who",
        HELP,
        PATTERN,
        _any(
            "who is this",
            "who's this",
            "who are you",
            "what is this",
            "what's this",
            "how does this work",
            "need help",
            "help me",
            "help please",
            "help pls",
            "what company",
            "customer service",
            "speak to a person",
            "talk to a person",
            "speak to someone",
            "talk to someone",
            "real person",
            "human",
        ),
    ),
]

DEFAULT_RULES: tuple[Rule, ...] = (
    *_exact(OPT_OUT, *_OPT_OUT_KEYWORDS),
    *_OPT_OUT_PATTERNS,
    *_exact(OPT_IN, *_OPT_IN_KEYWORDS),
    *_exact(HELP, *_HELP_KEYWORDS),
    *_exact(BOOK, *_BOOK_KEYWORDS),
    *_OTHER_PATTERNS,
)
"""Ours, in order. Opt-out rules are tried before any company's non-opt-out rule."""

_DEFAULTS = [_check(rule, limits=False) for rule in DEFAULT_RULES]
_DEFAULT_EXACT_OPT_OUT = {
    c.exact: c.rule for c in _DEFAULTS if c.exact is not None and c.rule.route == OPT_OUT
}
_DEFAULT_EXACT_OTHER = {
    c.exact: c.rule for c in _DEFAULTS if c.exact is not None and c.rule.route != OPT_OUT
}
_DEFAULT_PATTERN_OPT_OUT = [c for c in _DEFAULTS if c.exact is None and c.rule.route == OPT_OUT]
_DEFAULT_PATTERN_OTHER = [c for c in _DEFAULTS if c.exact is None and c.rule.route != OPT_OUT]
_MASK = re.compile(
    "|".join(
        f"(?:{p.pattern})" for value in _NOT_OPT_OUT for p in _compile_pattern(value, limits=False)
    )
)


# --- a keyword with courtesy ------------------------------------------------------------------

_COURTESY_RULE = "opt_out:keyword_with_courtesy"
_KEYWORD_TOKENS = frozenset(k for k in _OPT_OUT_KEYWORDS if k.isascii() and " " not in k)
_COURTESY_EN = frozenset(
    {
        "please",
        "pls",
        "plz",
        "now",
        "thanks",
        "thank",
        "you",
        "thx",
        "ty",
        "ok",
        "okay",
        "it",
        "all",
        "this",
        "these",
        "them",
        "msgs",
        "messages",
        "msg",
        "texts",
        "text",
        "sms",
        "already",
        "just",
        "asap",
        "me",
        "my",
        "number",
        "right",
        "away",
        "the",
        "again",
        "seriously",
        "and",
        "yes",
        "no",
        "i",
        "i'd",
        "want",
        "wanna",
        "would",
        "like",
        "to",
    }
)
_KEYWORDS_ZH = "退订|拒收|取消"
_COURTESY_ZH = (
    "请|麻烦你们|麻烦你|麻烦|谢谢你们|谢谢你|谢谢|谢了|多谢|好的|好|回复|回|"
    "我要|我想|要|帮我|给我|了|吧|啊|呀|哦|噢|嗯|哈|呢|你们|已经|已|马上|"
    "立即|立刻|一下|全部|都|我|直接|掉"
)
_ZH_TOKEN = re.compile(f"(?:{_KEYWORDS_ZH}|{_COURTESY_ZH})+")
_ZH_KEYWORD = re.compile(_KEYWORDS_ZH)
# ASCII words (with apostrophes), or runs of other letters (Chinese): "回复td" → 回复, td.
_TOKEN = re.compile(r"[a-z0-9']+|[^\W\x00-\x7f]+")


def _courtesy_opt_out(normalized: str) -> bool:
    """An opt-out keyword with nothing beside it but courtesy: "stop please", "T，谢谢"."""
    if len(normalized) > MAX_COURTESY_TEXT:
        return False
    keyword = False
    for token in _TOKEN.findall(normalized):
        if token in _KEYWORD_TOKENS:
            keyword = True
        elif token.isascii():
            if token not in _COURTESY_EN:
                return False
        elif _ZH_TOKEN.fullmatch(token):
            keyword = keyword or _ZH_KEYWORD.search(token) is not None
        else:
            return False
    return keyword


# --- complaints ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Term:
    text: str
    # A complaint word that also describes the job to be done ("油烟机太脏了，能上门吗"): it
    # counts in a reply routed "other", not in a booking.
    describes_need: bool = False
    # What may not follow it: "没来得及" is not "没来", "late afternoon" is not "late".
    not_followed_by: str | None = None


_COMPLAINTS_ZH = [
    _Term("没擦干净"),
    _Term("没打扫干净"),
    _Term("没弄干净"),
    _Term("没洗干净"),
    _Term("没清洗干净"),
    _Term("没搞干净"),
    _Term("不干净"),
    _Term("没擦"),
    _Term("没打扫"),
    _Term("迟到"),
    _Term("晚到"),
    _Term("没来", not_followed_by="得及|过|得"),
    _Term("放鸽子"),
    _Term("爽约"),
    _Term("投诉"),
    _Term("不满意"),
    _Term("不太满意"),
    _Term("不是很满意"),
    _Term("不怎么满意"),
    _Term("态度差"),
    _Term("态度不好"),
    _Term("态度很差"),
    _Term("态度恶劣"),
    _Term("弄坏"),
    _Term("损坏"),
    _Term("打碎"),
    _Term("摔坏"),
    _Term("碰坏"),
    _Term("坏了"),
    _Term("划伤"),
    _Term("划花"),
    _Term("刮花"),
    _Term("刮坏"),
    _Term("弄脏"),
    _Term("还是脏"),
    _Term("还很脏"),
    _Term("还有点脏"),
    _Term("太脏", describes_need=True),
    _Term("很脏", describes_need=True),
    _Term("好脏", describes_need=True),
    _Term("脏死了", describes_need=True),
    _Term("退款"),
    _Term("退钱"),
    _Term("退订金"),
    _Term("退定金"),
    _Term("赔偿"),
    _Term("赔钱"),
    _Term("差评"),
    _Term("太差"),
    _Term("很差"),
    _Term("真差"),
    _Term("好差"),
    _Term("差劲"),
    _Term("不专业"),
    _Term("敷衍"),
    _Term("糊弄"),
    _Term("马虎"),
    _Term("偷懒"),
    _Term("漏了"),
    _Term("漏掉"),
    _Term("漏水"),
    _Term("不见了"),
    _Term("丢失"),
    _Term("失望"),
    _Term("生气"),
    _Term("气死"),
    _Term("坑人"),
    _Term("被坑"),
    _Term("骗子"),
    _Term("欺骗"),
    _Term("12315"),
    _Term("消协"),
    _Term("曝光"),
    _Term("不制冷"),
    _Term("不工作"),
]
_LATE_NOT_BEFORE = (
    r"\s(?:afternoon|morning|evening|night|tonight|lunch|notice|reply|response"
    r"|to (?:book|change|cancel|reschedule|add|ask))"
)
_COMPLAINTS_EN = [
    _Term("not clean"),
    _Term("not cleaned"),
    _Term("isn't clean"),
    _Term("wasn't clean"),
    _Term("weren't clean"),
    _Term("not properly cleaned"),
    _Term("didn't clean"),
    _Term("did not clean"),
    _Term("still dirty"),
    _Term("dirty", describes_need=True),
    _Term("filthy", describes_need=True),
    _Term("left a mess"),
    _Term("late", not_followed_by=_LATE_NOT_BEFORE),
    _Term("no-show"),
    _Term("no show"),
    _Term("didn't show"),
    _Term("did not show"),
    _Term("never showed"),
    _Term("never came"),
    _Term("didn't come"),
    _Term("did not come"),
    _Term("didn't turn up"),
    _Term("complain"),
    _Term("complaint"),
    _Term("complaints"),
    _Term("complaining"),
    _Term("broke"),
    _Term("broken"),
    _Term("damaged"),
    _Term("damage"),
    _Term("scratched"),
    _Term("scratches"),
    _Term("stained"),
    _Term("left a stain"),
    _Term("left stains"),
    _Term("refund"),
    _Term("money back"),
    _Term("terrible"),
    _Term("awful"),
    _Term("horrible"),
    _Term("worst"),
    _Term("disappointed"),
    _Term("disappointing"),
    _Term("unhappy"),
    _Term("not happy"),
    _Term("unsatisfied"),
    _Term("dissatisfied"),
    _Term("not satisfied"),
    _Term("rude"),
    _Term("unprofessional"),
    _Term("poor service"),
    _Term("missing"),
    _Term("stolen"),
    _Term("stole"),
    _Term("stopped working"),
    _Term("leaking"),
    _Term("leaks"),
]


_ZH_TERMS = {t.text: t for t in _COMPLAINTS_ZH}
_EN_TERMS = {t.text: t for t in _COMPLAINTS_EN}
# Two searches rather than one alternation of both: each can then skip ahead to the
# characters its words start with.
_COMPLAINT_ZH = re.compile(_item_regex(list(_ZH_TERMS), first=False, last=False))
_COMPLAINT_EN = re.compile(_item_regex(list(_EN_TERMS), first=True, last=True))
_FOLLOWERS = {
    t.text: re.compile(t.not_followed_by)
    for t in (*_COMPLAINTS_ZH, *_COMPLAINTS_EN)
    if t.not_followed_by
}
# A negation just before a Chinese complaint word, allowing a filler between (没有任何损坏,
# 一点都没迟到, 从来不迟到).
_ZH_NEGATION = re.compile(
    "(?:没有|没|不|未|别|不要|不会|无|从不|从没有|从没|从来没有|"
    "从来没|从来不|并没有|并没|并不|不用|毫无|绝对不|一点都没|一点也没|"
    "一点都不|差点|差一点|险些)"
    "(?:任何|一点|一点儿|有|再|是|都|也|会)?$"
)
_A_NOT_A = re.compile(r"(\w)[不没]\1$")
_EN_NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "nothing",
        "none",
        "without",
        "wasn't",
        "weren't",
        "isn't",
        "aren't",
        "didn't",
        "don't",
        "doesn't",
        "hasn't",
        "haven't",
        "won't",
        "cannot",
        "can't",
        "nor",
        "zero",
        "wasnt",
        "werent",
        "isnt",
        "didnt",
        "dont",
        "doesnt",
        "hasnt",
        "havent",
        "wont",
        "cant",
        "hardly",
    }
)
_CLAUSE_BREAK = re.compile(r".*(?:[,.;!?:，。；！？、\n]|\bbut\b|但是|但|不过|可是)", re.DOTALL)
_EN_WORD = re.compile(r"[a-z']+")


def _negated(text: str, start: int, *, chinese: bool) -> bool:
    """Whether the word at ``start`` is denied in its own clause ("没有迟到", "no damage")."""
    window = text[max(0, start - 40) : start]
    clause = _CLAUSE_BREAK.sub("", window, count=1)
    if chinese:
        clause = clause.replace(" ", "")
        # 是不是 / 有没有 ask a question (上次是不是漏了阳台); they deny nothing.
        return _ZH_NEGATION.search(clause) is not None and not _A_NOT_A.search(clause)
    return any(word in _EN_NEGATIONS for word in _EN_WORD.findall(clause)[-3:])


def _complaint(normalized: str, *, booking: bool) -> str | None:
    """The rule naming the first complaint word that is not negated, or None."""
    for pattern, terms, chinese in (
        (_COMPLAINT_ZH, _ZH_TERMS, True),
        (_COMPLAINT_EN, _EN_TERMS, False),
    ):
        for found in pattern.finditer(normalized):
            word = found.group()
            if booking and terms[word].describes_need:
                continue
            follower = _FOLLOWERS.get(word)
            if follower is not None and follower.match(normalized, found.end()):
                continue
            if _negated(normalized, found.start(), chinese=chinese):
                continue
            return f"complaint:{word}"
    return None


# --- routing ------------------------------------------------------------------------------------


def route(text: str, *, extra: Sequence[Rule] = ()) -> Routing:
    """Route one reply; ``extra`` are the company's rules (validated here as well).

    Never raises for any text; raises Invalid only for an ``extra`` rule that
    ``validate_rule`` would refuse.
    """
    normalized = normalize(text)
    tenant = [_compiled(rule) for rule in extra]
    if not normalized:
        return Routing(OTHER, None, normalized, False, None)
    masked = _MASK.sub("\x00", normalized)

    matched = _opt_out_rule(normalized, masked, tenant)
    if matched is not None:
        return Routing(OPT_OUT, matched, normalized, False, None)

    rule = _other_rule(normalized, tenant)
    route_ = rule.route if rule is not None else OTHER
    complaint_rule = (
        _complaint(normalized, booking=route_ == BOOK) if route_ in (OTHER, BOOK) else None
    )
    return Routing(
        route_,
        rule.name if rule is not None else None,
        normalized,
        complaint_rule is not None,
        complaint_rule,
    )


def _opt_out_rule(normalized: str, masked: str, tenant: Sequence[_Compiled]) -> str | None:
    for compiled in tenant:
        if compiled.rule.route == OPT_OUT and compiled.matches(normalized, masked):
            return compiled.rule.name
    keyword = _DEFAULT_EXACT_OPT_OUT.get(normalized)
    if keyword is not None:
        return keyword.name
    if _courtesy_opt_out(normalized):
        return _COURTESY_RULE
    for compiled in _DEFAULT_PATTERN_OPT_OUT:
        if compiled.matches(normalized, masked):
            return compiled.rule.name
    return None


def _other_rule(normalized: str, tenant: Sequence[_Compiled]) -> Rule | None:
    for compiled in tenant:
        if compiled.rule.route != OPT_OUT and compiled.matches(normalized, normalized):
            return compiled.rule
    keyword = _DEFAULT_EXACT_OTHER.get(normalized)
    if keyword is not None:
        return keyword
    for compiled in _DEFAULT_PATTERN_OTHER:
        if compiled.matches(normalized, normalized):
            return compiled.rule
    return None
