"""The campaign editor's lint: a draft's texts checked as the person types, nothing saved.

The draft is linted exactly as activation lints a campaign (``lifecycle.lint_campaign`` on
an unsaved ``Campaign``: the company's signature, its opt-out footer, its link domains),
and each finding comes back with a Chinese sentence and, where the text can be corrected,
a fix (``campaigns.fixes``). A rule in the draft is read as creating the campaign would
read it; a rule that cannot be used is one more finding. ``audience_counts`` counts who a
draft's audience and rule reach, as the saved campaign's preview counts them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from campaigns import facts, fixes, lifecycle, lint, rules, wording
from campaigns.audiences import Audience, AudiencePreview
from campaigns.audiences import preview as audience_preview
from campaigns.models import Campaign
from campaigns.presets import get_preset
from huifang.errors import Invalid
from tenancy.models import Tenant

CATEGORIES = ("marketing", "service")


@dataclass(frozen=True)
class DraftLint:
    findings: list[fixes.Explained]
    errors: int
    warnings: int
    can_activate: bool  # no errors: activation would not be refused for the texts
    rule_text: str | None  # the rule in one line, Chinese, when the draft has a usable one


def lint_draft(
    *,
    session: Session,
    tenant: Tenant,
    template: str,
    mms: Mapping[str, Any] | None = None,
    category: str | None = None,
    rule: Mapping[str, Any] | None = None,
    preset: str | None = None,
) -> DraftLint:
    """Lint a campaign's texts before they are saved; ``preset`` gives the category (and
    the rule when none is given), ``category`` overrides it."""
    chosen = get_preset(preset) if preset is not None else None
    kind = category or (chosen.category if chosen else "marketing")
    if kind not in CATEGORIES:
        raise Invalid(f"The category must be 'marketing' or 'service', not {kind!r}.")
    found: list[fixes.Explained] = []
    rule_text = None
    if rule is not None:
        try:
            rule_text = wording.describe(rules.rule_from_dict(rule))
        except Invalid as error:
            found.append(
                fixes.Explained(
                    "rule",
                    "rule",
                    "error",
                    error.detail,
                    "Correct the rule; the presets show rules that work.",
                    "规则无法使用：" + error.detail,
                    None,
                )
            )
    elif chosen is not None:
        rule_text = wording.describe(chosen.rule)
    variant = dict(mms) if mms else None
    if variant is not None and not str(variant.get("body") or "").strip():
        variant = None
    draft = Campaign(tenant_id=tenant.id, template=template, mms=variant, category=kind)
    texts = {"sms": template, "mms": str(variant["body"]) if variant else ""}
    for f in lifecycle.lint_campaign(session=session, tenant=tenant, campaign=draft):
        plain = lint.Finding(f.code, f.severity, f.message, f.hint)  # type: ignore[arg-type]
        found.append(
            fixes.explain(plain, text=texts[f.part], signature=tenant.signature, part=f.part)
        )
    errors = sum(f.severity == "error" for f in found)
    return DraftLint(
        findings=found,
        errors=errors,
        warnings=sum(f.severity == "warning" for f in found),
        can_activate=errors == 0,
        rule_text=rule_text,
    )


def audience_counts(
    *,
    session: Session,
    tenant: Tenant,
    now: dt.datetime,
    audience: Mapping[str, Any] | None = None,
    rule: Mapping[str, Any] | None = None,
    preset: str | None = None,
) -> AudiencePreview:
    """Who a draft reaches: the audience's filters and what the rule needs (the service a
    cadence follows), counted as ``preview.preview`` counts a saved campaign."""
    if rule is not None:
        parsed = rules.rule_from_dict(rule)
    elif preset is not None:
        parsed = get_preset(preset).rule
    else:
        raise Invalid(
            "Give the draft's rule or its preset: who a campaign reaches depends on "
            "it (a cadence reaches customers who had that service)."
        )
    return audience_preview(
        session=session,
        tenant=tenant,
        spec=Audience.from_dict(audience),
        now=now,
        extra=facts.rule_applies(parsed, tenant.id),
    )
