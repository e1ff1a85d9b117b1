"""Message templates: rendered in a sandbox, refused before running when they reach further."""

from __future__ import annotations

import datetime as dt

import pytest
from jinja2.exceptions import SecurityError

from campaigns import templating
from campaigns.templating import MessageFacts, check, compose, preview, render
from compliance.models import CompliancePolicy
from compliance.service import compose as gate_compose
from huifang.errors import Invalid
from tenancy.models import Tenant

FACTS = MessageFacts(
    customer_name="王女士",
    company="洁家到家",
    last_service="ac_cleaning",
    last_service_date=dt.date(2026, 3, 8),
    staff_name="李师傅",
    booking_link="https://hf.example.cn/b/tok",
    report_link=None,
)


def test_render_plain_text_with_variables_and_no_escaping() -> None:
    text = render(
        '{{ customer_name }}您好，上次{{ last_service }}是{{ last_service_date }}。<a> & "引号"',
        FACTS.variables(),
    )
    assert text == '王女士您好，上次空调清洗是2026年3月8日。<a> & "引号"'


def test_if_and_filters_work() -> None:
    template = (
        "{% if staff_name is defined %}{{ staff_name }}{% else %}师傅{% endif %}"
        "{{ report_link | default('（无报告）') }}{{ company | upper }}"
    )
    assert render(template, FACTS.variables()) == "李师傅（无报告）洁家到家"
    assert render(template, {"company": "abc"}) == "师傅（无报告）ABC"


def test_check_returns_the_variables_used() -> None:
    assert check("{{ customer_name }}{% if staff_name is defined %}x{% endif %}") == frozenset(
        {"customer_name", "staff_name"}
    )


def test_unknown_variable_has_line_and_suggestion() -> None:
    with pytest.raises(Invalid) as error:
        check("第一行\n第二行 {{ custmer_name }}")
    assert error.value.detail.startswith("Line 2: unknown variable 'custmer_name'.")
    assert "Did you mean 'customer_name'?" in error.value.detail
    with pytest.raises(Invalid, match="Did you mean 'staff_name'"):
        check("{{ staff }}")


def test_syntax_error_has_line_and_hint() -> None:
    with pytest.raises(Invalid) as error:
        check("你好\n{{ customer_name ")
    assert error.value.detail.startswith("Line 2:")
    assert "every {{ has its }}" in error.value.detail
    with pytest.raises(Invalid, match=r"Line 1: .*unknown tag 'endfi'.* Did you mean 'endif'"):
        check("{% if customer_name %}x{% endfi %}")


def test_missing_value_says_how_to_fall_back() -> None:
    with pytest.raises(Invalid) as error:
        render("{{ report_link }}", FACTS.variables())
    assert "no value for 'report_link'" in error.value.detail
    assert "default" in error.value.detail


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ customer_name.__class__ }}",
        "{{ customer_name['__class__'] }}",
        "{{ customer_name | attr('__class__') }}",
        "{{ range(10**9) | list }}",
        "{{ 'x' * 1000000000 }}",
        "{{ 9 ** 9 ** 9 }}",
        "{{ lipsum(10**6) }}",
        "{{ customer_name.format }}",
        "{{ '{0.__class__}'.format(customer_name) }}",
        "{% for x in customer_name %}{{ x }}{% endfor %}",
        "{% set x = customer_name %}{{ x }}",
        "{% include '/etc/passwd' %}",
        "{% extends 'base.html' %}",
        "{% import 'x' as y %}",
        "{% macro m() %}{% endmacro %}",
        "{{ self }}",
        "{{ config }}",
        "{{ _ }}",
    ],
)
def test_sandbox_escapes_are_refused_before_running(template: str) -> None:
    with pytest.raises(Invalid) as error:
        render(template, FACTS.variables())
    detail = error.value.detail
    assert detail.startswith("Line 1:"), detail
    assert any(
        words in detail for words in ("nothing in it was run", "not available", "unknown variable")
    ), detail


def test_escape_message_names_the_refused_attribute() -> None:
    with pytest.raises(Invalid) as error:
        check("{{ cycler.__init__.__globals__ }}")
    assert "'__globals__' is refused" in error.value.detail
    assert "nothing in it was run" in error.value.detail


def test_the_sandbox_behind_the_check_refuses_too() -> None:
    # The second fence on its own: the environment has no globals and guards attributes.
    env = templating._environment()
    assert env.globals == {}
    with pytest.raises(SecurityError):
        env.from_string("{{ ''.__class__.__mro__ }}").render()
    with pytest.raises(SecurityError):
        env.from_string("{{ 'x' * 1000000000 }}").render()
    assert set(env.filters) == set(templating.FILTERS)


def test_runaway_output_is_capped() -> None:
    # Within the rules (no loops, no arithmetic), replace() is the only multiplier.
    template = "{{ customer_name | replace('', '" + "长" * 200 + "') }}"
    with pytest.raises(Invalid, match="renders to more than"):
        render(template, {"customer_name": "名" * 100})


def test_oversized_or_empty_templates_are_refused() -> None:
    with pytest.raises(Invalid, match="keep it under"):
        check("字" * (templating.MAX_TEMPLATE_CHARS + 1))
    with pytest.raises(Invalid, match="empty"):
        check("  \n ")


def test_unknown_variable_passed_by_a_caller_is_refused() -> None:
    with pytest.raises(Invalid, match="No template variable is called 'phone'"):
        render("{{ customer_name }}", {"customer_name": "王", "phone": "138"})


def test_values_are_text_not_objects() -> None:
    class Sneaky:
        def __str__(self) -> str:
            return "只是文字"

    assert render("{{ customer_name }}", {"customer_name": Sneaky()}) == "只是文字"


def test_preview_composes_signature_and_footer() -> None:
    shown = preview(
        "{{ customer_name }}您好，预约：{{ booking_link }}",
        facts=FACTS,
        signature="洁家到家",
        category="marketing",
    )
    assert shown.body == "王女士您好，预约：https://hf.example.cn/b/tok"
    assert shown.text == "【洁家到家】王女士您好，预约：https://hf.example.cn/b/tok 回复T退订"
    assert shown.chars == len(shown.text)
    service = preview(
        "{{ customer_name }}您好", facts=FACTS, signature="洁家到家", category="service"
    )
    assert service.text == "【洁家到家】王女士您好"


@pytest.mark.parametrize(
    ("body", "category", "footer"),
    [
        ("您好", "marketing", "回复T退订"),
        ("您好 回复T退订", "marketing", "回复T退订"),
        ("  您好  ", "marketing", "拒收请回复R"),
        ("您好", "service", "回复T退订"),
        ("您好", "marketing", ""),
    ],
)
def test_compose_matches_the_gate(body: str, category: str, footer: str) -> None:
    tenant = Tenant(name="洁家到家", signature="洁家到家")
    policy = CompliancePolicy(opt_out_footer=footer)
    assert compose(
        body,
        signature="洁家到家",
        category=category,  # type: ignore[arg-type]
        footer=footer,
    ) == gate_compose(tenant=tenant, policy=policy, body=body, category=category)  # type: ignore[arg-type]
