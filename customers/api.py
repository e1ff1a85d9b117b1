from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, UploadFile

from access.roles import Permission
from compliance import service as compliance
from customers import service
from customers.schemas import (
    CustomerCreate,
    CustomerDetail,
    CustomerListItem,
    CustomerListPage,
    CustomerRead,
    CustomerUpdate,
    ImportReport,
    ImportRow,
    Reachability,
)
from huifang.db import utcnow
from huifang.deps import SessionDep, TenantDep, key_may
from huifang.errors import TooLarge
from huifang.fields import Id
from huifang.openapi import refusals
from huifang.pagination import PageParams, page_params
from huifang.settings import get_settings
from office import customer_search as search
from office.customer_search import Reach
from privacy import erasure

router = APIRouter(prefix="/customers", tags=["customers"])


@router.post("", response_model=CustomerRead, status_code=201, responses=refusals(409))
def create_customer(body: CustomerCreate, session: SessionDep, tenant: TenantDep) -> CustomerRead:
    """Create a customer. The phone comes back in E.164; numbers that cannot get SMS are 422."""
    customer = service.create_customer(session=session, tenant=tenant, **body.model_dump())
    return CustomerRead.model_validate(customer)


@router.get("", response_model=CustomerListPage)
def list_customers(
    session: SessionDep,
    tenant: TenantDep,
    page: Annotated[PageParams, Depends(page_params)],
    q: Annotated[
        str | None,
        Query(
            max_length=100, description="Part of the name or the phone number, or a whole number."
        ),
    ] = None,
    tag: Annotated[str | None, Query(max_length=50)] = None,
    region: Annotated[str | None, Query(max_length=50)] = None,
    city: Annotated[str | None, Query(max_length=50)] = None,
    area: Annotated[
        str | None,
        Query(max_length=50, description="The start of the region or the city (上海, 浦东)."),
    ] = None,
    reach: Annotated[
        Reach | None,
        Query(
            description=(
                "reachable: marketing consent and no suppression; opted_out: they asked to stop; "
                "no_consent: neither."
            )
        ),
    ] = None,
    churn_risk: Annotated[
        bool,
        Query(
            description=(
                "Only customers overdue: last visit over 1.5 × the company's usual interval ago, "
                "nothing booked."
            )
        ),
    ] = False,
) -> CustomerListPage:
    """Customers, newest first, with reachability and churn badges."""
    now = utcnow()
    rows, total = search.search_customers(
        session=session,
        tenant=tenant,
        page=page,
        now=now,
        q=q,
        tag=tag,
        area=area,
        region=region,
        city=city,
        reach=reach,
        churn_risk=churn_risk,
    )
    return CustomerListPage(
        items=[
            CustomerListItem(
                **CustomerRead.model_validate(r.customer).model_dump(),
                reachable=r.reachable,
                consented=r.consented,
                opted_out=r.opted_out,
                suppressed=r.suppressed,
                last_visit_at=r.last_visit_at,
                churn_risk=r.churn_risk,
            )
            for r in rows
        ],
        total=total,
        limit=page.limit,
        offset=page.offset,
        usual_interval_days=search.usual_interval_days(
            session=session, tenant_id=tenant.id, now=now
        ),
    )


@router.post("/import", response_model=ImportReport)
def import_customers(
    file: UploadFile,
    session: SessionDep,
    tenant: TenantDep,
) -> ImportReport:
    """Import a CSV or XLSX list, matched on phone: one report line per data row."""
    # A plain function: FastAPI runs it in a worker thread, so a big import does not
    # hold up other requests on the event loop.
    limit = get_settings().import_max_bytes
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"The file is over {limit // (1024 * 1024)} MB; split it and retry.")
    outcomes = service.import_file(
        session=session,
        tenant=tenant,
        data=data,
        max_rows=get_settings().import_max_rows,
    )
    rows = [
        ImportRow(
            row=o.line, status=o.status, customer_id=o.customer_id, phone=o.phone, reason=o.reason
        )
        for o in outcomes
    ]
    return ImportReport(**service.count_outcomes(outcomes), rows=rows)


@router.get("/{customer_id}", response_model=CustomerDetail)
def read_customer(customer_id: Id, session: SessionDep, tenant: TenantDep) -> CustomerDetail:
    """The customer, and whether they can receive marketing and service messages and why not."""
    customer = service.get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    reach = compliance.explain(session=session, tenant=tenant, customer=customer, now=utcnow())
    return CustomerDetail(
        **CustomerRead.model_validate(customer).model_dump(),
        messaging={k: Reachability(**v) for k, v in reach.items()},
    )


@router.patch("/{customer_id}", response_model=CustomerRead, responses=refusals(409))
def update_customer(
    customer_id: Id,
    body: CustomerUpdate,
    session: SessionDep,
    tenant: TenantDep,
) -> CustomerRead:
    customer = service.update_customer(
        session=session,
        tenant=tenant,
        customer_id=customer_id,
        changes=body,
    )
    return CustomerRead.model_validate(customer)


@router.delete("/{customer_id}", status_code=204, dependencies=[key_may(Permission.POLICY)])
def delete_customer(customer_id: Id, session: SessionDep, tenant: TenantDep) -> Response:
    """Delete a customer and their visits, with the visits' files."""
    erasure.delete_customer(session=session, tenant=tenant, customer_id=customer_id, now=utcnow())
    return Response(status_code=204)
