"""客户: the customer list (search, filters, badges), one customer (facts, compliance state,
consents with evidence, opt-out / opt-in, timeline), and imports (upload, a job page with
its progress and per-row report, bulk consent from a finished job).

Thin handlers over the services the ``/v1`` routes call (``office.customer_search``,
``office.customer_timeline``, ``compliance.registry``, ``compliance.bulk``,
``customers.import_jobs``); changes carry the signed-in person for the audit log.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.datastructures import FormData, UploadFile

from access.roles import Permission
from compliance import bulk, registry
from customers import import_jobs
from customers import service as customers
from customers.models import DONE, FAILED, INTERRUPTED
from customers.schemas import CustomerUpdate
from huifang.db import utcnow
from huifang.deps import SessionDep
from huifang.errors import HuifangError, Invalid, TooLarge, UnsupportedType
from huifang.fields import Id
from huifang.i18n import _
from huifang.pagination import PageParams
from huifang.settings import get_settings
from office import customer_search as search
from office import customer_timeline as timeline
from office import privacy as privacy_pages
from office import web

router = APIRouter()
PAGE = 30
ROWS_PAGE = 100
OUTCOMES_SHOWN = 200
FILTERS = (
    ("", "全部"),
    ("reachable", "可营销"),
    ("opted_out", "已退订"),
    ("no_consent", "无同意"),
    ("churn", "流失风险"),
)
KIND_NAMES = {
    "visit": "上门服务",
    "report": "服务报告",
    "message": "短信",
    "reply": "客户回复",
    "booking": "预约",
}
SOURCE_NAMES = {
    "in_person": "当面",
    "web_form": "网页表单",
    "reply": "短信回复",
    "import": "导入",
    "api": "接口",
}
JOB_STATES = {
    "queued": "排队中",
    "running": "导入中",
    "done": "已完成",
    "failed": "失败",
    "interrupted": "已中断",
}
ROW_STATES = {"imported": "新增", "updated": "已更新", "unchanged": "无变化", "rejected": "未导入"}
OUTCOME_NAMES = {
    bulk.RECORDED: "已记录",
    bulk.ALREADY: "已有同意",
    bulk.OPTED_OUT: "已退订，未记录",
    bulk.REVOKED_LATER: "之后撤回过同意，未记录",
    bulk.UNKNOWN: "找不到这位客户",
}


def _text(form: FormData, key: str, limit: int) -> str:
    value = form.get(key)
    if not isinstance(value, str):
        return ""
    if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise Invalid(_("内容里有无法识别的字符，请删掉后重新输入。"))
    return value.strip()[:limit]


def _not_found(request: Request, person: web.SignedIn, what: str) -> Response:
    return web.message_page(
        request,
        _("找不到"),
        what,
        status=404,
        person=person,
        link=("/office/customers", _("回到客户列表")),
    )


# --- the list --------------------------------------------------------------------------------


@router.get("/customers")
def customer_list(
    request: Request,
    session: SessionDep,
    person: web.OfficeUser,
    q: Annotated[str, Query(max_length=search.MAX_QUERY)] = "",
    tag: Annotated[str, Query(max_length=50)] = "",
    area: Annotated[str, Query(max_length=50)] = "",
    show: Literal["", "reachable", "opted_out", "no_consent", "churn"] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    rows, total = search.search_customers(
        session=session,
        tenant=person.tenant,
        page=PageParams(limit=PAGE, offset=(page - 1) * PAGE),
        now=utcnow(),
        q=q or None,
        tag=tag or None,
        area=area or None,
        reach=None if show in ("", "churn") else show,  # type: ignore[arg-type]
        churn_risk=show == "churn",
    )
    return web.render(
        request,
        "office/customers.html",
        {
            "rows": rows,
            "total": total,
            "q": q,
            "tag": tag,
            "area": area,
            "show": show,
            "page": page,
            "pages": max(1, -(-total // PAGE)),
            "FILTERS": FILTERS,
        },
        person=person,
    )


# --- one customer ----------------------------------------------------------------------------


def _reach_words(state: registry.CustomerCompliance) -> dict[str, list[str]]:
    """Why the customer cannot be reached, in Chinese (from the state the service gives)."""
    active = [c for c in state.consents if c.revoked_at is None]
    marketing: list[str] = []
    service: list[str] = []
    if state.suppression is not None:
        why = _("已退订（{date}）").format(date=f"{state.suppression.created_at:%Y-%m-%d}")
        marketing.append(why)
        service.append(why)
    if not active:
        marketing.append(_("没有营销同意记录"))
    elif not state.reach["marketing"]["can_receive"] and state.suppression is None:
        marketing.append(_("近期营销短信已达到上限"))
    later = _("现在是免打扰时段，短信会稍后发出") if state.reach["marketing"]["later"] else ""
    return {"marketing": marketing, "service": service, "later": [later] if later else []}


def _import_refusal(problem: HuifangError) -> str:
    """Why a file was not taken, in Chinese (the service's sentence is for /v1)."""
    if isinstance(problem, TooLarge):
        return _("文件超过 {mb} MB，请拆成几个文件再导入。").format(
            mb=get_settings().import_max_bytes // (1024 * 1024)
        )
    if isinstance(problem, UnsupportedType):
        return _("只能导入 CSV 或 XLSX 文件；旧的 .xls 文件请在 Excel 里另存为 .xlsx。")
    if problem.detail.startswith("The file is empty"):
        return _("文件是空的：第一行写表头，下面每行一位客户。")
    return problem.detail


@router.get("/customers/import")
def import_page(request: Request, session: SessionDep, person: web.OfficeUser) -> Response:
    jobs, _total = import_jobs.list_jobs(
        session=session, tenant_id=person.tenant.id, page=PageParams(limit=10)
    )
    return web.render(
        request,
        "office/customers_import.html",
        {"jobs": jobs, "JOB_STATES": JOB_STATES, "error": None},
        person=person,
    )


@router.post("/customers/import")
async def start_import(request: Request, session: SessionDep, person: web.OfficeUser) -> Response:
    form = await request.form()
    upload = form.get("file")
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise Invalid(_("请选择一个 CSV 或 XLSX 文件。"))
        data = await upload.read(get_settings().import_max_bytes + 1)
        job = import_jobs.create_job(
            session=session,
            tenant=person.tenant,
            data=data,
            filename=upload.filename,
            actor=person.actor,
        )
    except HuifangError as problem:
        session.rollback()
        return web.render(
            request,
            "office/customers_import.html",
            {
                "jobs": [],
                "JOB_STATES": JOB_STATES,
                "error": _("没有导入：{detail}").format(detail=_import_refusal(problem)),
            },
            person=person,
            status=problem.status_code,
        )
    return web.redirect(f"/office/customers/import/{job.id}")


def _job_context(session: SessionDep, person: web.SignedIn, job_id: int) -> dict[str, Any]:
    job = import_jobs.get_job(session=session, tenant_id=person.tenant.id, job_id=job_id)
    finished = job.status in (DONE, FAILED, INTERRUPTED)
    rows: list[Any] = []
    if finished:
        rows, _total = import_jobs.job_rows(
            session=session,
            tenant_id=person.tenant.id,
            job_id=job.id,
            page=PageParams(limit=ROWS_PAGE),
        )
    total = job.rows_total or 0
    return {
        "job": job,
        "finished": finished,
        "rows": rows,
        "JOB_STATES": JOB_STATES,
        "ROW_STATES": ROW_STATES,
        "done": job.status == DONE,
        "percent": 100
        if job.status == DONE
        else (int(job.rows_done * 100 / total) if total else 0),
    }


@router.get("/customers/import/{job_id}")
def job_page(job_id: Id, request: Request, session: SessionDep, person: web.OfficeUser) -> Response:
    try:
        context = _job_context(session, person, job_id)
    except HuifangError:
        return _not_found(request, person, _("没有这次导入。"))
    return web.render(
        request,
        "office/customers_job.html",
        {
            **context,
            "fragment": False,
            "SOURCE_NAMES": SOURCE_NAMES,
            "outcomes": None,
            "names": {},
            "counts": None,
            "OUTCOME_NAMES": OUTCOME_NAMES,
            "error": None,
        },
        person=person,
    )


@router.get("/customers/import/{job_id}/progress")
def job_progress(
    job_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
) -> Response:
    """The fragment ``data-poll`` refreshes: the progress bar and, when done, the report."""
    try:
        context = _job_context(session, person, job_id)
    except HuifangError:
        return _not_found(request, person, _("没有这次导入。"))
    return web.render(
        request, "office/customers_job_progress.html", {**context, "fragment": True}, person=person
    )


@router.post("/customers/import/{job_id}/consent")
async def job_consent(
    job_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
) -> Response:
    form = await request.form()
    try:
        context = _job_context(session, person, job_id)
    except HuifangError:
        return _not_found(request, person, _("没有这次导入。"))
    status = 200
    outcomes: list[bulk.BulkOutcome] | None = None
    error = None
    try:
        evidence = _text(form, "evidence", 2000)
        source = _text(form, "source", 16)
        if not evidence:
            raise Invalid(_("请写明同意的凭据，例如签字的登记表编号。"))
        if source not in SOURCE_NAMES:
            raise Invalid(_("请选择客户是怎样同意的。"))
        if not context["done"]:
            raise Invalid(_("导入完成后才能批量记录同意。"))
        ids = import_jobs.job_customer_ids(
            session=session, tenant_id=person.tenant.id, job_id=job_id
        )
        now = utcnow()
        outcomes = bulk.record_bulk_consent(
            session=session,
            tenant=person.tenant,
            customer_ids=ids,
            source=source,
            evidence=evidence,
            granted_at=now,
            now=now,
            actor=person.actor,
        )
    except HuifangError as problem:
        session.rollback()
        error, status = _("没有记录：{detail}").format(detail=problem.detail), problem.status_code
    shown = (outcomes or [])[:OUTCOMES_SHOWN]
    return web.render(
        request,
        "office/customers_job.html",
        {
            **context,
            "fragment": False,
            "SOURCE_NAMES": SOURCE_NAMES,
            "outcomes": shown,
            "names": customers.names_of(
                session=session,
                tenant_id=person.tenant.id,
                customer_ids=[o.customer_id for o in shown],
            ),
            "counts": bulk.count(outcomes) if outcomes is not None else None,
            "OUTCOME_NAMES": OUTCOME_NAMES,
            "error": error,
        },
        person=person,
        status=status,
    )


@router.get("/customers/{customer_id}")
def customer_page(
    customer_id: Id,
    request: Request,
    session: SessionDep,
    person: web.OfficeUser,
    before: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    try:
        state = registry.customer_compliance(
            session=session, tenant=person.tenant, customer_id=customer_id, now=utcnow()
        )
        entries, next_before = timeline.timeline(
            session=session, tenant_id=person.tenant.id, customer_id=customer_id, before=before
        )
    except HuifangError:
        return _not_found(request, person, _("没有这位客户。"))
    customer = session.get(search.Customer, customer_id)
    return web.render(
        request,
        "office/customer.html",
        {
            "customer": customer,
            "state": state,
            "reach": _reach_words(state),
            "entries": entries,
            "next_before": next_before,
            "KIND_NAMES": KIND_NAMES,
            "SOURCE_NAMES": SOURCE_NAMES,
            "notice": {
                "out": _("已记录退订。"),
                "in": _("已恢复接收短信。"),
                "address": _("地址已保存。"),
                "capture": _("已记录拍照录像授权。"),
                "capture-withdrawn": _("已撤回拍照录像授权。"),
                "erased": _("已删除这位客户的个人信息；统计数字保留。"),
            }.get(request.query_params.get("done", "")),
            "may_own": person.may(Permission.POLICY),
            **privacy_pages.capture_view(session, person.tenant.id, customer_id),
        },
        person=person,
    )


@router.post("/customers/{customer_id}/opt-out")
async def opt_out(
    customer_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
) -> Response:
    form = await request.form()
    try:
        registry.opt_out_customer(
            session=session,
            tenant=person.tenant,
            customer_id=customer_id,
            detail=_text(form, "detail", 500) or None,
            now=utcnow(),
            actor=person.actor,
        )
    except HuifangError:
        session.rollback()
        return _not_found(request, person, _("没有这位客户。"))
    return web.redirect(f"/office/customers/{customer_id}?done=out")


@router.post("/customers/{customer_id}/address")
async def save_address(
    customer_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
) -> Response:
    """The customer's address, where visits go (the booking page shows it prefilled)."""
    form = await request.form()
    try:
        address = customers.clean_address(_text(form, "address", 1000))
        customers.update_customer(
            session=session,
            tenant=person.tenant,
            customer_id=customer_id,
            changes=CustomerUpdate(address=address),
        )
    except Invalid as problem:
        session.rollback()
        return web.message_page(
            request,
            _("地址没有保存"),
            problem.detail,
            status=422,
            person=person,
            link=(f"/office/customers/{customer_id}", _("返回客户")),
        )
    except HuifangError:
        session.rollback()
        return _not_found(request, person, _("没有这位客户。"))
    return web.redirect(f"/office/customers/{customer_id}?done=address")


@router.post("/customers/{customer_id}/opt-in")
async def opt_in(
    customer_id: Id, request: Request, session: SessionDep, person: web.OfficeUser
) -> Response:
    try:
        registry.opt_in_customer(
            session=session,
            tenant=person.tenant,
            customer_id=customer_id,
            now=utcnow(),
            actor=person.actor,
        )
    except HuifangError:
        session.rollback()
        return _not_found(request, person, _("没有这位客户。"))
    return web.redirect(f"/office/customers/{customer_id}?done=in")
