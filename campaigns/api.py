from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from campaigns import calendar, rules, tasks
from campaigns import facts as campaign_facts
from campaigns import lifecycle as campaigns
from campaigns import preview as campaign_preview
from campaigns import results as figures
from campaigns.models import Campaign
from campaigns.presets import PRESETS
from campaigns.schemas import (
    CampaignCreate,
    CampaignPage,
    CampaignPreviewRead,
    CampaignRead,
    CampaignResultsRead,
    CampaignUpdate,
    LintFindingRead,
    LintRefusal,
    PlumRainRead,
    PlumRainTable,
    PresetRead,
    PreviewRequest,
    ReportConversionRead,
    RetentionRead,
)
from huifang.db import utcnow
from huifang.deps import KeyActorDep, SessionDep, TenantDep
from huifang.fields import Day, Id
from huifang.openapi import refusals
from huifang.pagination import PageParams, page_params
from huifang.worker import enqueue
from reports import attribution

router = APIRouter(tags=["campaigns"])
_LINT: dict[int | str, dict[str, Any]] = {
    422: {
        "model": LintRefusal,
        "description": "The texts have errors providers or the gate would refuse.",
    }
}
_ARCHIVED: dict[int | str, dict[str, Any]] = {409: {"description": "The campaign is archived."}}
_CSV: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {}},
        "description": "JSON, or CSV with ?format=csv or Accept: text/csv.",
    }
}


def _read(campaign: Campaign) -> CampaignRead:
    return CampaignRead.model_validate(
        {
            **{c: getattr(campaign, c) for c in CampaignRead.model_fields if c != "rule_text"},
            "rule_text": rules.describe(rules.rule_from_dict(campaign.rule)),
        }
    )


def _refusal(error: campaigns.LintFailed) -> JSONResponse:
    body = LintRefusal(
        detail=error.detail, findings=[LintFindingRead.model_validate(f) for f in error.findings]
    )
    return JSONResponse(body.model_dump(), status_code=422)


def _wants_csv(request: Request, format: str | None) -> bool:
    if format is not None:
        return format.lower() == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _csv(rows: Sequence[tuple[str, object]], filename: str) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["metric", "value"])
    writer.writerows(rows)
    # The BOM makes Excel read the Chinese names as UTF-8.
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post("/campaigns", response_model=CampaignRead, status_code=201)
def create_campaign(body: CampaignCreate, session: SessionDep, tenant: TenantDep) -> CampaignRead:
    """A draft campaign: from a preset in one call (``{"preset": "ac_filter_quarterly"}``),
    or from a rule and a template. Preview it, then activate it."""
    fields = body.model_dump(exclude_unset=True)
    if body.mms is not None:
        fields["mms"] = body.mms.model_dump()
    return _read(campaigns.create_campaign(session=session, tenant=tenant, **fields))


@router.get("/campaigns", response_model=CampaignPage)
def list_campaigns(
    session: SessionDep,
    tenant: TenantDep,
    page: Annotated[PageParams, Depends(page_params)],
    status: str | None = None,
) -> CampaignPage:
    items, total = campaigns.list_campaigns(
        session=session, tenant_id=tenant.id, page=page, status=status
    )
    return CampaignPage(
        items=[_read(c) for c in items], total=total, limit=page.limit, offset=page.offset
    )


@router.get("/campaign-presets", response_model=list[PresetRead])
def list_presets(tenant: TenantDep) -> list[PresetRead]:
    """The campaigns companies run every year, each started with ``{"preset": name}``."""
    return [
        PresetRead(
            name=p.name,
            title=p.title,
            description=p.description,
            rule=rules.to_dict(p.rule),
            rule_text=rules.describe(p.rule),
            service_types=list(p.service_types),
            regions=list(p.regions),
            audience=p.audience,
            category=p.category,
            sms_body=p.sms_body,
            mms={"subject": p.mms.subject, "body": p.mms.body, "image_hint": p.mms.image_hint},
        )
        for p in PRESETS.values()
    ]


@router.get("/campaigns/{campaign_id}", response_model=CampaignRead)
def read_campaign(campaign_id: Id, session: SessionDep, tenant: TenantDep) -> CampaignRead:
    return _read(
        campaigns.get_campaign(session=session, tenant_id=tenant.id, campaign_id=campaign_id)
    )


@router.patch(
    "/campaigns/{campaign_id}", response_model=CampaignRead, responses={**_LINT, **_ARCHIVED}
)
def update_campaign(
    campaign_id: Id, body: CampaignUpdate, session: SessionDep, tenant: TenantDep
) -> CampaignRead | JSONResponse:
    """Edit; a new rule, audience or text makes a new version and recomputes what is not
    yet due. An active campaign's new texts must lint clean."""
    try:
        campaign = campaigns.update_campaign(
            session=session, tenant=tenant, campaign_id=campaign_id, changes=body, now=utcnow()
        )
    except campaigns.LintFailed as error:
        return _refusal(error)
    if campaign.status == "active":
        enqueue(session, tasks.materialize_campaign, campaign_id=campaign.id)
    return _read(campaign)


@router.post("/campaigns/{campaign_id}/preview", response_model=CampaignPreviewRead)
def preview_campaign(
    campaign_id: Id, session: SessionDep, tenant: TenantDep, body: PreviewRequest | None = None
) -> CampaignPreviewRead:
    """Who it reaches (counts and a sample), the message each sample customer would get
    with their own booking link, the lint findings, and their next dates."""
    return campaign_preview.preview(
        session=session,
        tenant=tenant,
        campaign_id=campaign_id,
        now=utcnow(),
        customer_ids=body.customer_ids if body else (),
    )


@router.post(
    "/campaigns/{campaign_id}/activate",
    response_model=CampaignRead,
    responses={**_LINT, **_ARCHIVED},
)
def activate_campaign(
    campaign_id: Id, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> CampaignRead | JSONResponse:
    """Start it: the texts must lint clean (422 lists the findings otherwise)."""
    try:
        campaign = campaigns.activate(
            session=session, tenant=tenant, campaign_id=campaign_id, now=utcnow(), actor=actor
        )
    except campaigns.LintFailed as error:
        return _refusal(error)
    enqueue(session, tasks.materialize_campaign, campaign_id=campaign.id)
    return _read(campaign)


@router.post("/campaigns/{campaign_id}/pause", response_model=CampaignRead, responses=refusals(409))
def pause_campaign(
    campaign_id: Id, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> CampaignRead:
    """Stop at once: nothing more is handed off; messages not yet sent are suppressed."""
    return _read(
        campaigns.pause(
            session=session, tenant=tenant, campaign_id=campaign_id, now=utcnow(), actor=actor
        )
    )


@router.post(
    "/campaigns/{campaign_id}/resume",
    response_model=CampaignRead,
    responses={**_LINT, **refusals(409)},
)
def resume_campaign(
    campaign_id: Id, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> CampaignRead | JSONResponse:
    try:
        campaign = campaigns.resume(
            session=session, tenant=tenant, campaign_id=campaign_id, now=utcnow(), actor=actor
        )
    except campaigns.LintFailed as error:
        return _refusal(error)
    enqueue(session, tasks.materialize_campaign, campaign_id=campaign.id)
    return _read(campaign)


@router.post("/campaigns/{campaign_id}/archive", response_model=CampaignRead)
def archive_campaign(
    campaign_id: Id, session: SessionDep, tenant: TenantDep, actor: KeyActorDep
) -> CampaignRead:
    """End it for good: what waits is cancelled, messages not yet sent are suppressed."""
    return _read(
        campaigns.archive(
            session=session, tenant=tenant, campaign_id=campaign_id, now=utcnow(), actor=actor
        )
    )


@router.get("/campaigns/{campaign_id}/results", response_model=CampaignResultsRead, responses=_CSV)
def campaign_results(
    campaign_id: Id,
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    format: Annotated[str | None, Query(pattern="^(json|csv)$")] = None,
) -> CampaignResultsRead | Response:
    """Scheduled, sent, delivered, failed, suppressed by reason, deferred, clicked, booked,
    conversion."""
    found = figures.results(session=session, tenant=tenant, campaign_id=campaign_id)
    if _wants_csv(request, format):
        return _csv(figures.result_rows(found), f"campaign-{campaign_id}-results.csv")
    return found


@router.get("/reports/retention", response_model=RetentionRead, responses=_CSV)
def retention_report(
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    since: Annotated[Day, Query(description="First day (company's local date).")],
    until: Annotated[Day, Query(description="Last day, included.")],
    lookback_days: Annotated[
        int,
        Query(
            ge=1,
            le=3660,
            description=(
                "A customer is active at the start with a visit this many days before it."
            ),
        ),
    ] = 365,
    format: Annotated[str | None, Query(pattern="^(json|csv)$")] = None,
) -> RetentionRead | Response:
    """Retention rate, repeat-purchase rate and second-service conversion over a period."""
    found = figures.retention(
        session=session, tenant=tenant, since=since, until=until, lookback_days=lookback_days
    )
    if _wants_csv(request, format):
        return _csv(figures.retention_rows(found), f"retention-{since}-{until}.csv")
    return found


def _conversion_csv(found: attribution.ReportConversion, timezone: str) -> Response:
    """The totals as metric/value lines (as the other figures), a blank line, then the
    table of reports: both read at a glance in a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["metric", "value"])
    writer.writerows(found.totals())
    writer.writerow([])
    writer.writerows(found.table(timezone))
    filename = f"report-conversion-{found.since}-{found.until}.csv"
    # The BOM makes Excel read the Chinese names as UTF-8.
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/reports/conversion", response_model=ReportConversionRead, responses=_CSV)
def report_conversion(
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    since: Annotated[
        Day | None,
        Query(description=("First day (company's local date); by default 89 days before until.")),
    ] = None,
    until: Annotated[
        Day | None, Query(description=("Last day, included; by default today."))
    ] = None,
    format: Annotated[str | None, Query(pattern="^(json|csv)$")] = None,
) -> ReportConversionRead | Response:
    """Visit reports sent in the period: each with its clicks and first booking, and the
    totals (sent, clicked, booked, conversion = reports booked per report sent)."""
    found = attribution.report_conversion(
        session=session, tenant=tenant, now=utcnow(), since=since, until=until
    )
    if _wants_csv(request, format):
        return _conversion_csv(found, tenant.timezone)
    return ReportConversionRead.model_validate(found)


def _plum(table: dict[str, dict[int, dt.date]]) -> PlumRainRead:
    year = utcnow().year
    return PlumRainRead(
        table=table,
        fallback=calendar.PLUM_SOURCE_RULE,
        traditional={y: calendar.traditional_plum_rain_onset(y) for y in (year, year + 1)},
    )


@router.get("/plum-rain", response_model=PlumRainRead)
def read_plum_rain(session: SessionDep, tenant: TenantDep) -> PlumRainRead:
    """The company's 入梅 dates by region and year; elsewhere the almanac rule applies."""
    return _plum(campaign_facts.plum_table(session=session, tenant_id=tenant.id))


@router.put("/plum-rain", response_model=PlumRainRead)
def replace_plum_rain(body: PlumRainTable, session: SessionDep, tenant: TenantDep) -> PlumRainRead:
    """Replace the whole table (each region once, dates in late May to early July)."""
    return _plum(
        campaign_facts.set_plum_table(session=session, tenant_id=tenant.id, table=body.table)
    )
