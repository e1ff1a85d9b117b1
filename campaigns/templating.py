"""Message templates written by companies: Jinja2 in a sandbox, checked before anything runs.

A template is text a tenant types into a form, so it is hostile until proven otherwise.
Two fences stand between it and the server:

1. ``check()`` reads the template's syntax tree and refuses, before anything is executed,
   whatever a message does not need: attribute and item access, calls, loops, assignments,
   imports, arithmetic, and any name outside ``VARIABLES``. What is left is text, the
   variables, ``{% if %}`` and a few string filters.
2. What passes is rendered in an ``ImmutableSandboxedEnvironment`` with no globals
   (``range``, ``cycler``, ``lipsum``, … are gone), only the allowed filters, string
   values, and a cap on the output size.

SMS and MMS text is plain text, so there is no autoescaping; a missing value is an error
(``StrictUndefined``), never a blank in front of a customer.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from huifang.errors import Invalid
from visits.service_types import label

Category = Literal["marketing", "service"]

# What a template may refer to, with what each means (shown in the editor's help).
VARIABLES: dict[str, str] = {
    "customer_name": "the customer's name as the company keeps it",
    "last_service": "the customer's last service, in the words customers read (空调清洗)",
    "last_service_date": "the date of that service (2025年3月8日)",
    "staff_name": "the staff member who served the customer last",
    "booking_link": "the customer's own booking page on our site",
    "report_link": "the report page of the customer's last visit",
    "company": "the company's name",
}
# Links we build (our domain, one token per customer); any other link must be constant.
LINK_VARIABLES = frozenset({"booking_link", "report_link"})
# Names people reach for, and what they mean here (difflib alone would not suggest these).
_ALIASES = {
    "name": "customer_name",
    "customer": "customer_name",
    "client": "customer_name",
    "staff": "staff_name",
    "worker": "staff_name",
    "service": "last_service",
    "date": "last_service_date",
    "link": "booking_link",
    "url": "booking_link",
    "booking": "booking_link",
    "report": "report_link",
    "tenant": "company",
    "company_name": "company",
    "signature": "company",
}
FILTERS = ("default", "d", "trim", "truncate", "upper", "lower", "replace")
TESTS = ("defined", "undefined", "none")
_TAGS = ("if", "elif", "else", "endif")

MAX_TEMPLATE_CHARS = 4000
MAX_OUTPUT_CHARS = 4000  # far above any provider's limit; it only stops runaway output

_ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.Name,
    nodes.Filter,
    nodes.Test,
    nodes.Keyword,
    nodes.If,
    nodes.CondExpr,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Compare,
    nodes.Operand,
    nodes.Concat,
    nodes.Add,
)
_ALLOWED_COMPARISONS = frozenset({"eq", "ne", "in", "notin"})
_TAG_NAMES: dict[type[nodes.Node], str] = {
    nodes.For: "for",
    nodes.Macro: "macro",
    nodes.Assign: "set",
    nodes.AssignBlock: "set",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from … import",
    nodes.Extends: "extends",
    nodes.Block: "block",
    nodes.With: "with",
    nodes.CallBlock: "call",
    nodes.FilterBlock: "filter",
}


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with arithmetic refused at run time as well (``'x' * 10**9`` eats memory)."""

    intercepted_binops = frozenset({"*", "**", "/", "//", "%", "-"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        raise SecurityError(f"the operator {operator!r} is not available in message templates")


@functools.cache
def _environment() -> _Environment:
    env = _Environment(
        undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
    )
    env.globals.clear()
    env.filters = {name: env.filters[name] for name in FILTERS}
    env.tests = {name: env.tests[name] for name in TESTS}
    return env


# --- checking -------------------------------------------------------------------------------


def _suggest(word: str, choices: list[str], aliases: Mapping[str, str] | None = None) -> str:
    alias = (aliases or {}).get(word.lower())
    close = [alias] if alias else difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


_HELP_VARIABLES = "The variables are: " + ", ".join(VARIABLES) + "."
_SANDBOX = (
    "It reaches into Python's internals, which message templates cannot do; the "
    "template was refused and nothing in it was run."
)


def _line(node: nodes.Node) -> str:
    return f"Line {node.lineno}: " if getattr(node, "lineno", None) else ""


def _refusal(node: nodes.Node) -> str | None:
    """Why ``node`` has no place in a message template, or None when it may stay."""
    where = _line(node)
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        key = (
            node.attr
            if isinstance(node, nodes.Getattr)
            else (node.arg.value if isinstance(node.arg, nodes.Const) else None)
        )
        if isinstance(key, str) and key.startswith("_"):
            return f"{where}'{key}' is refused. {_SANDBOX}"
        return (
            f"{where}templates use each variable as it is: '.name' and '[…]' are not "
            f"available. {_HELP_VARIABLES}"
        )
    if isinstance(node, nodes.Call):
        return (
            f"{where}calling functions (name(…)) is not available in message templates; "
            f"use text, the variables, {{% if %}} and the filters "
            f"{', '.join(FILTERS)}."
        )
    if isinstance(node, nodes.Name):
        if node.ctx != "load":
            return f"{where}setting variables is not available in message templates."
        if node.name not in VARIABLES:
            if node.name.startswith("_"):
                return f"{where}'{node.name}' is refused. {_SANDBOX}"
            hint = _suggest(node.name, list(VARIABLES), _ALIASES)
            return f"{where}unknown variable '{node.name}'.{hint} {_HELP_VARIABLES}"
        return None
    if isinstance(node, nodes.Filter) and node.name not in FILTERS:
        return (
            f"{where}the filter '{node.name}' is not available."
            f"{_suggest(node.name, list(FILTERS))} Filters: {', '.join(FILTERS)}."
        )
    if isinstance(node, nodes.Test) and node.name not in TESTS:
        return (
            f"{where}the test 'is {node.name}' is not available; use "
            f"{', '.join('is ' + t for t in TESTS)}."
        )
    if isinstance(node, nodes.Operand) and node.op not in _ALLOWED_COMPARISONS:
        return f"{where}only ==, != and 'in' comparisons are available in message templates."
    if (
        isinstance(node, nodes.Const)
        and isinstance(node.value, str)
        and node.value.startswith("__")
    ):
        return f"{where}'{node.value}' is refused. {_SANDBOX}"
    if isinstance(node, nodes.BinExpr | nodes.UnaryExpr) and not isinstance(
        node, nodes.Add | nodes.And | nodes.Or | nodes.Not
    ):
        return (
            f"{where}arithmetic is not available in message templates; write the "
            f"number in the text."
        )
    if not isinstance(node, _ALLOWED_NODES):
        tag = _TAG_NAMES.get(type(node))
        what = f"the {{% {tag} %}} tag" if tag else f"'{type(node).__name__}'"
        return (
            f"{where}{what} is not available in message templates; use text, the "
            f"variables, {{% if %}} … {{% else %}} … {{% endif %}} and filters."
        )
    return None


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _syntax_message(error: TemplateSyntaxError) -> str:
    message = (error.message or "the template cannot be read").rstrip(".")
    hint = ""
    if "unknown tag" in message:
        word = message.split("'")[1] if message.count("'") >= 2 else ""
        hint = _suggest(word, list(_TAGS)) or " Available tags: if, elif, else, endif."
    elif "end of template" in message or "expected token" in message:
        hint = (
            " Check that every {{ has its }}, every {% if %} its {% endif %}, and that "
            "quotes are closed."
        )
    return f"Line {error.lineno}: {message}.{hint}"


def check(template: str) -> frozenset[str]:
    """The variables ``template`` uses; Invalid with the line and a hint when it is refused.

    Nothing in the template runs here: it is parsed and its syntax tree inspected.
    """
    if not isinstance(template, str):
        raise Invalid("The template must be text.")
    return _check(template)


@functools.lru_cache(maxsize=512)
def _check(template: str) -> frozenset[str]:
    if len(template) > MAX_TEMPLATE_CHARS:
        raise Invalid(
            f"The template is {len(template)} characters; keep it under "
            f"{MAX_TEMPLATE_CHARS} (an SMS takes 500 at most)."
        )
    if not template.strip():
        raise Invalid("The template is empty; write the message text.")
    try:
        tree = _environment().parse(template)
    except TemplateSyntaxError as error:
        raise Invalid(_syntax_message(error)) from None
    used: set[str] = set()
    for node in _walk(tree):
        problem = _refusal(node)
        if problem:
            raise Invalid(problem[0].upper() + problem[1:])
        if isinstance(node, nodes.Name):
            used.add(node.name)
    return frozenset(used)


# --- rendering ------------------------------------------------------------------------------


def _text(value: object) -> str:
    if isinstance(value, dt.datetime):
        raise Invalid("Give dates as dates (or text), not datetimes.")
    if isinstance(value, dt.date):
        return format_date(value)
    return str(value)


def format_date(day: dt.date) -> str:
    """A date as customers read it: 2025年3月8日."""
    return f"{day.year}年{day.month}月{day.day}日"


def render(template: str, variables: Mapping[str, object]) -> str:
    """The message text: ``template`` checked, then rendered in the sandbox with ``variables``.

    Values are turned into text first (dates as 2025年3月8日), so no object reaches the
    template; a value of None counts as missing.
    """
    check(template)
    unknown = sorted(set(variables) - set(VARIABLES))
    if unknown:
        raise Invalid(
            f"No template variable is called {', '.join(map(repr, unknown))}. {_HELP_VARIABLES}"
        )
    values = {name: _text(value) for name, value in variables.items() if value is not None}
    try:
        compiled = _environment().from_string(template)
        out: list[str] = []
        size = 0
        for chunk in compiled.generate(values):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise Invalid(
                    f"The template renders to more than {MAX_OUTPUT_CHARS} "
                    f"characters; a message is at most 500."
                )
            out.append(chunk)
    except UndefinedError as error:
        name = _undefined_name(str(error.message or ""))
        raise Invalid(
            f"There is no value for '{name}' for this customer; write "
            f"{{{{ {name} | default('…') }}}} to say something else instead, or "
            f"put it inside {{% if {name} is defined %}} … {{% endif %}}."
        ) from None
    except SecurityError:
        raise Invalid(f"The template was refused while rendering. {_SANDBOX}") from None
    except TemplateError as error:
        raise Invalid(f"The template could not be rendered: {error}.") from None
    return "".join(out).strip()


def _undefined_name(message: str) -> str:
    # "'staff_name' is undefined"
    return message.split("'")[1] if message.count("'") >= 2 else "a variable"


def compose(body: str, *, signature: str, category: Category, footer: str) -> str:
    """The text as the customer receives it: 【signature】 first, the opt-out footer on marketing.

    Mirrors ``compliance.service.compose`` (which the gate applies at send time; a test
    keeps the two in step), so previews and lint count what is really sent.
    """
    text = f"【{signature}】{body.strip()}"
    footer = footer.strip()
    if category == "marketing" and footer and footer not in body:
        text = f"{text} {footer}"
    return text


# --- previews -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageFacts:
    """What a message may say about one customer; None where the company does not know it."""

    customer_name: str
    company: str
    last_service: str | None = None  # a service code (ac_cleaning) or the words themselves
    last_service_date: dt.date | None = None
    staff_name: str | None = None
    booking_link: str | None = None
    report_link: str | None = None

    def variables(self) -> dict[str, object]:
        return {
            "customer_name": self.customer_name,
            "company": self.company,
            "last_service": label(self.last_service) if self.last_service else None,
            "last_service_date": self.last_service_date,
            "staff_name": self.staff_name,
            "booking_link": self.booking_link,
            "report_link": self.report_link,
        }


@dataclass(frozen=True)
class Preview:
    body: str  # the rendered template
    text: str  # what the customer receives: signature, body, footer
    chars: int  # len(text), as Chinese providers count (each character is one)


def preview(
    template: str,
    *,
    facts: MessageFacts,
    signature: str,
    category: Category,
    footer: str = "回复T退订",
) -> Preview:
    """The message one customer would receive from ``template``, and its length."""
    body = render(template, facts.variables())
    text = compose(body, signature=signature, category=category, footer=footer)
    return Preview(body=body, text=text, chars=len(text))


# --- approved templates (Aliyun) ------------------------------------------------------------


def as_approved_template(template: str, *, links: Mapping[str, str]) -> str | None:
    """The campaign text with its merge fields as ``${name}`` template variables (a link
    field becomes its fixed address followed by ``${name}``, ``links`` giving the address),
    or None when the text has conditions or filters, which an approved template cannot."""
    tree = _environment().parse(template)
    out: list[str] = []
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return None
        for part in node.nodes:
            if isinstance(part, nodes.TemplateData):
                out.append(part.data)
            elif isinstance(part, nodes.Name):
                out.append(f"{links.get(part.name, '')}${{{part.name}}}")
            else:
                return None
    return "".join(out)
