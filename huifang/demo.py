"""Demo data: a company with staff, customers and visits, built through the services."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from customers import service as customers
from customers.importer import ImportedRow
from huifang.db import utcnow
from media import recaps, samples
from media import report as reports
from media import service as media
from media.models import Media
from media.upload import stage_bytes
from tenancy import service as tenancy
from tenancy.models import Tenant
from visits import service as visits
from visits.models import Staff, Visit

DEMO_NAME = "洁家家政（演示）"
DEMO_SIGNATURE = "洁家家政"

_STAFF = [
    ("李秀兰", ["家政服务员（高级）", "保洁员职业技能证书"], 8),
    ("王建国", ["家用电器清洗工（中级）"], 5),
    ("张美玲", ["养老护理员（四级）", "母婴护理师"], 11),
]
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_PLACES = [("上海", "浦东新区"), ("上海", "徐汇区"), ("浙江", "杭州"), ("江苏", "苏州"),
           ("江苏", "南京")]
_TAGS = [["老客户"], ["有宠物"], ["老客户", "有老人"], [], ["新客户"]]
_VISITS = [
    ("ac_cleaning", ["客厅", "主卧"], 0),
    ("deep_cleaning", ["厨房", "卫生间", "客厅"], 0),
    ("range_hood_cleaning", ["厨房"], 1),
    ("sofa_care", ["客厅"], 0),
    ("elder_care", ["主卧"], 2),
]


@dataclass
class DemoResult:
    tenant: Tenant
    api_key: str
    customers: int
    staff: int
    visits: int
    photos: list[Media]
    report_url: str | None = None


def seed(*, session: Session) -> DemoResult:
    """Create (or refresh) the demo company and return a new API key for it."""
    tenant = session.scalars(select(Tenant).where(Tenant.name == DEMO_NAME)).first()
    if tenant is None:
        tenant = tenancy.create_tenant(session=session, name=DEMO_NAME, signature=DEMO_SIGNATURE)
    _, key = tenancy.create_api_key(session=session, tenant=tenant, name="demo")

    rows = [
        ImportedRow(
            line=i + 2,
            name=f"{_SURNAMES[i]}{'女士' if i % 2 else '先生'}",
            # 138 0013 8000–8019: valid China Mobile numbers reserved for examples.
            phone=f"1380013{8000 + i}",
            region=_PLACES[i % len(_PLACES)][0],
            city=_PLACES[i % len(_PLACES)][1],
            tags=list(_TAGS[i % len(_TAGS)]),
        )
        for i in range(20)
    ]
    outcomes = customers.upsert_rows(session=session, tenant=tenant, rows=rows)
    customer_ids = [o.customer_id for o in outcomes if o.customer_id is not None]

    staff = list(session.scalars(select(Staff).where(Staff.tenant_id == tenant.id)))
    if not staff:
        staff = [
            visits.create_staff(session=session, tenant=tenant, name=name,
                                certificates=certs, years_experience=years)
            for name, certs, years in _STAFF
        ]
    existing_visits = session.scalars(select(Visit.id).where(Visit.tenant_id == tenant.id)).all()
    if not existing_visits:
        today = utcnow().replace(minute=0, second=0, microsecond=0)
        for i, (service_type, areas, staff_index) in enumerate(_VISITS):
            finished = today - dt.timedelta(days=3 * i + 1)
            visits.create_visit(
                session=session, tenant=tenant, customer_id=customer_ids[i],
                staff_id=staff[staff_index].id, service_type=service_type, areas=areas,
                scheduled_at=finished - dt.timedelta(hours=3), finished_at=finished,
                amount_cents=(200 + 80 * i) * 100,
            )
    count = len(session.scalars(select(Visit.id).where(Visit.tenant_id == tenant.id)).all())
    first_visit = session.scalars(
        select(Visit).where(Visit.tenant_id == tenant.id).order_by(Visit.id)).first()
    assert first_visit is not None
    photos = _sample_photos(session=session, tenant=tenant, visit=first_visit)
    report_url = _sample_report(session=session, tenant=tenant, visit=first_visit)
    return DemoResult(tenant=tenant, api_key=key, customers=len(customer_ids),
                      staff=len(staff), visits=count, photos=photos, report_url=report_url)


def _sample_report(*, session: Session, tenant: Tenant, visit: Visit) -> str:
    """A clip and a work-report photo for the first visit, then its report and recap video."""
    with tempfile.TemporaryDirectory(prefix="huifang-demo-") as work:
        clip = Path(work) / "during.mp4"
        samples.room_clip(clip, seconds=4, size=(960, 540), seed=1)
        for data, phase, name in ((clip.read_bytes(), "during", "demo-during.mp4"),
                                  (samples.room_photo(clean=True, seed=9, size=(900, 1200)),
                                   "staff_report", "demo-staff-report.jpg")):
            staged = stage_bytes(data, fields={"phase": phase, "area": "客厅"}, filename=name)
            made, _ = media.accept_upload(session=session, tenant=tenant, visit_id=visit.id,
                                          staged=staged)
            media.process_media(session=session, media_id=made.id)
        built, _ = reports.build_report(session=session, tenant=tenant, visit_id=visit.id)
        job = recaps.recap_job(session=session, report_id=built.id)
        if job is not None:
            recaps.record(session=session, job=job, made=recaps.make(job, workdir=Path(work)))
    return reports.page_url(built)


def _sample_photos(*, session: Session, tenant: Tenant, visit: Visit) -> list[Media]:
    """Before and after photos of the first visit, processed as the media queue would."""
    made = []
    for seed, (phase, area) in enumerate((("before", "客厅"), ("after", "客厅"),
                                          ("before", "主卧"), ("after", "主卧"))):
        data = samples.room_photo(clean=phase == "after", seed=seed)
        staged = stage_bytes(data, fields={"phase": phase, "area": area},
                             filename=f"demo-{phase}-{seed}.jpg")
        photo, _ = media.accept_upload(session=session, tenant=tenant, visit_id=visit.id,
                                       staged=staged)
        made.append(media.process_media(session=session, media_id=photo.id) or photo)
    return made
