"""The keyword tester of the settings screen: type a reply, see where it would go.

It routes the text with the code a real reply goes through (``keywords.route`` with the
company's own rules read by ``inbound._rules_for``, as ``inbound.receive`` does), and says
in Chinese what would happen: the route, the rule that decided it, whether it reads as a
complaint, and the automatic answer the customer would get. A rule being written can be
tried before it is saved (``proposed``, checked after the company's saved rules, as it
would be once added). Nothing is recorded and nothing is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from messaging import inbound, keywords
from tenancy.languages import language_for
from tenancy.models import Tenant

ROUTE_LABELS = {
    keywords.OPT_OUT: "退订",
    keywords.OPT_IN: "重新订阅",
    keywords.HELP: "帮助",
    keywords.BOOK: "预约",
    keywords.OTHER: "其他（进入收件箱，由人工处理）",
}
WHAT_HAPPENS = {
    keywords.OPT_OUT: "立即停止向该号码发送营销短信（撤回营销同意），并回复一条退订确认。",
    keywords.OPT_IN: "解除该号码的退订（没有营销同意记录时，以这条回复记为同意），并回复一条确认。",
    keywords.HELP: "自动回复预约和退订的方法。",
    keywords.BOOK: "生成一条预约请求（在「回复与预约」里确认时间和人员），并回复已收到。",
    keywords.OTHER: "不自动回复；消息进入收件箱，等待同事处理。",
}


@dataclass(frozen=True)
class Tested:
    text: str
    normalized: str
    route: str
    route_label: str
    rule: str | None  # the deciding rule's name; "tenant:<id>" is one of the company's
    rule_label: str  # Chinese: which rule decided
    complaint: bool
    complaint_rule: str | None
    answer: str | None  # the automatic answer, in the company's language
    what_happens: str


def _rule_label(name: str | None, proposed: keywords.Rule | None) -> str:
    if name is None:
        return "没有规则匹配"
    if proposed is not None and name == proposed.name:
        return f"正在编辑的规则（{proposed.value}）"
    if name.startswith("tenant:"):
        return f"公司自定义规则 #{name.removeprefix('tenant:')}"
    # The built-in rules' names (book:zh_book_when …) are for the API; people read the route.
    route = name.partition(":")[0]
    return f"内置规则（{ROUTE_LABELS[route]}）" if route in ROUTE_LABELS else "内置规则"


def test_reply(
    *, session: Session, tenant: Tenant, text: str, proposed: keywords.Rule | None = None
) -> Tested:
    """Where ``text`` would be routed for this company, and what would happen."""
    rules = inbound._rules_for(session, [tenant.id]).get(tenant.id, ())
    if proposed is not None:
        proposed = keywords.validate_rule(
            keywords.Rule(
                name="proposed", route=proposed.route, kind=proposed.kind, value=proposed.value
            )
        )
        rules = (*rules, proposed)
    text = text[: keywords.MAX_TEXT]
    routing = keywords.route(text, extra=rules)
    english = language_for(None, tenant.language) == "en"
    return Tested(
        text=text,
        normalized=routing.normalized,
        route=routing.route,
        route_label=ROUTE_LABELS.get(routing.route, routing.route),
        rule=routing.rule,
        rule_label=_rule_label(routing.rule, proposed),
        complaint=routing.complaint,
        complaint_rule=routing.complaint_rule,
        answer=inbound._answer(tenant.name, routing.route, english),
        what_happens=WHAT_HAPPENS.get(routing.route, "")
        + ("这条回复读起来像投诉，会标记出来并开始计算响应时间。" if routing.complaint else ""),
    )


test_reply.__test__ = False  # type: ignore[attr-defined]  # not a pytest test by its name
