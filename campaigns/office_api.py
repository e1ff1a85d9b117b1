"""Routes the campaign editor and its charts call: lint and audience counts as you type,
figures per week and month, the same figures as SVG charts (``?format=svg``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from campaigns import charts, drafts, figures
from campaigns.schemas import (
    AudienceCounts,
    CompanyTrendRead,
    DraftAudienceRequest,
    DraftLintRead,
    DraftLintRequest,
    WeeklyResultsRead,
)
from huifang.db import utcnow
from huifang.deps import SessionDep, TenantDep
from huifang.fields import Id

router = APIRouter(tags=["campaigns"])
_SVG: dict[int | str, dict[str, object]] = {
    200: {
        "content": {"image/svg+xml": {}},
        "description": "JSON, or an SVG chart with ?format=svg (Chinese labels, no script).",
    }
}
Format = Annotated[str | None, Query(pattern="^(json|svg)$")]


def _svg(text: str) -> Response:
    # An SVG opened on its own is a document: it may style itself, and nothing else.
    return Response(
        text,
        media_type="image/svg+xml; charset=utf-8",
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )


@router.post("/campaigns/lint", response_model=DraftLintRead)
def lint_draft(body: DraftLintRequest, session: SessionDep, tenant: TenantDep) -> DraftLintRead:
    """Lint texts being typed, as activation would: each finding with a Chinese sentence
    and, where the text can be corrected, the fix (edits and the corrected text)."""
    found = drafts.lint_draft(
        session=session,
        tenant=tenant,
        template=body.template,
        mms=body.mms.model_dump() if body.mms is not None else None,
        category=body.category,
        rule=body.rule,
        preset=body.preset,
    )
    return DraftLintRead.model_validate(found)


@router.post("/campaigns/audience", response_model=AudienceCounts)
def draft_audience(
    body: DraftAudienceRequest, session: SessionDep, tenant: TenantDep
) -> AudienceCounts:
    """Who a draft's audience and rule reach (matched, opted out, without consent,
    reachable) and a sample, as a saved campaign's preview counts them."""
    return AudienceCounts.model_validate(
        drafts.audience_counts(
            session=session,
            tenant=tenant,
            now=utcnow(),
            audience=body.audience,
            rule=body.rule,
            preset=body.preset,
        )
    )


@router.get("/campaigns/{campaign_id}/weekly", response_model=WeeklyResultsRead, responses=_SVG)
def weekly_results(
    campaign_id: Id,
    session: SessionDep,
    tenant: TenantDep,
    weeks: Annotated[int, Query(ge=1, le=figures.MAX_WEEKS)] = 12,
    format: Format = None,
) -> WeeklyResultsRead | Response:
    """Per week (company's time zone, from Monday): sent, delivered, clicked, booked,
    opted out."""
    found = figures.weekly_results(
        session=session, tenant=tenant, campaign_id=campaign_id, now=utcnow(), weeks=weeks
    )
    if format == "svg":
        return _svg(charts.weekly(found))
    return WeeklyResultsRead.model_validate(found)


@router.get("/reports/trend", response_model=CompanyTrendRead, responses=_SVG)
def company_trend(
    session: SessionDep,
    tenant: TenantDep,
    months: Annotated[int, Query(ge=1, le=figures.MAX_MONTHS)] = 12,
    window_days: Annotated[
        int,
        Query(
            ge=7,
            le=366,
            description=("Each month's figures are over this many days ending with the month."),
        ),
    ] = 90,
    lookback_days: Annotated[int, Query(ge=1, le=3660)] = 365,
    format: Format = None,
) -> CompanyTrendRead | Response:
    """Month by month: retention, repeat-purchase rate and second-service conversion (the
    definitions of ``/v1/reports/retention``)."""
    found = figures.company_trend(
        session=session,
        tenant=tenant,
        now=utcnow(),
        months=months,
        window_days=window_days,
        lookback_days=lookback_days,
    )
    if format == "svg":
        return _svg(charts.trend(found))
    return CompanyTrendRead.model_validate(found)
