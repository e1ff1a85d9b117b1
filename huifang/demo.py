"""Demo data: a company with staff, customers, visits and a seasonal campaign, built through
the services.

Dates are relative to the day it first runs: the visits happened on recent mornings in the
company's time zone, and the sample photos and clip say (in their EXIF and container tags)
that they were taken during the first visit, so watermarks and the report agree. Running it
again refreshes the same company: its API key is kept in a file only this machine's
operator can read (``KEY_FILE`` under the media root, mode 600) and printed again while it
still works; the database keeps only its hash, as for every key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from access.roles import Role
from accounts import service as accounts
from accounts.models import User
from campaigns import lifecycle as campaigns
from campaigns import materialize as materializer
from campaigns.models import ARCHIVED, PENDING, Campaign, CampaignOccurrence
from compliance import capture
from compliance import service as compliance
from customers import phones
from customers import service as customers
from customers.importer import ImportedRow
from customers.models import Customer
from huifang.db import utcnow
from huifang.settings import get_settings
from media import samples
from media import service as media
from media.models import Media
from media.upload import stage_bytes
from reports import recaps
from reports import service as reports
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
_PLACES = [
    ("上海", "浦东新区"),
    ("上海", "徐汇区"),
    ("浙江", "杭州"),
    ("江苏", "苏州"),
    ("江苏", "南京"),
]
_TAGS = [["老客户"], ["有宠物"], ["老客户", "有老人"], [], ["新客户"]]
_VISITS = [
    ("ac_cleaning", ["客厅", "主卧"], 0),
    ("deep_cleaning", ["厨房", "卫生间", "客厅"], 0),
    ("range_hood_cleaning", ["厨房"], 1),
    ("sofa_care", ["客厅"], 0),
    ("elder_care", ["主卧"], 2),
]
# 20 days before Spring Festival, for every customer whatever services they had: each demo
# customer with consent gets an occurrence.
DEMO_PRESET = "spring_festival_deep_clean"
# The last customers of the list never agreed to marketing messages, so the campaign's
# preview shows whom it leaves out and why.
WITHOUT_CONSENT = 2
# The periodic tick materializes a month ahead; a yearly date can be up to ~13 months away,
# and the demo should show the campaign's occurrences as soon as it is seeded.
_CAMPAIGN_HORIZON = dt.timedelta(days=400)
# The demo's key, in plain text for the person trying it: under the media root, which is
# served only by generated tokens, readable by its owner only.
KEY_FILE = ".demo-api-key.json"
# A visit's morning, local time: arrival, then the moments its photos and clip were taken.
_ARRIVAL = dt.time(9, 0)
_FINISH = dt.time(11, 30)


@dataclass
class DemoCampaign:
    id: int
    name: str
    scheduled: int  # pending occurrences: materialized, not yet handed to the outbox
    first_date: dt.date | None  # the earliest of them, in the customer's local date


@dataclass
class DemoResult:
    tenant: Tenant
    api_key: str
    customers: int
    staff: int
    visits: int
    photos: list[Media]
    report_url: str | None = None
    campaign: DemoCampaign | None = None
    owner_link: str = ""  # the owner's one-time sign-in link to the office console
    staff_link: str = ""  # the first staff member's, for the staff phone page


# 139 0013 9000: the demo owner (店长) signs in with this number; 139 0013 9001 is a staff
# member's phone.
DEMO_OWNER = ("张店长", "13900139000")
DEMO_STAFF_PHONE = "13900139001"


def _demo_users(*, session: Session, tenant: Tenant, staff: list[Staff]) -> tuple[str, str]:
    """Sign-in links for the demo's owner and first staff member (made once, new links on
    every run)."""
    links = []
    for role, name, phone, staff_id in (
        (Role.OWNER, DEMO_OWNER[0], DEMO_OWNER[1], None),
        (Role.STAFF, staff[0].name, DEMO_STAFF_PHONE, staff[0].id),
    ):
        user = session.scalars(
            select(User).where(
                User.tenant_id == tenant.id,
                User.phone == phones.normalize_phone(phone, region=tenant.phone_region),
            )
        ).first()
        if user is None:
            token = accounts.create_user(
                session=session, tenant=tenant, role=role, name=name, phone=phone, staff_id=staff_id
            ).link_token
        else:
            user.disabled_at = None
            token = accounts.issue_link(session=session, user=user)
        links.append(accounts.sign_in_url(token))
    return links[0], links[1]


def _key_file() -> Path:
    return get_settings().media_root / KEY_FILE


def _demo_key(*, session: Session, tenant: Tenant) -> str:
    """The key printed last time while it still opens this company; otherwise a new one,
    kept for the next run. Stored, not derived: a key derived from the development secret
    (the same on every checkout) would be a key anyone could compute."""
    path = _key_file()
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        key = str(kept["key"])
    except (OSError, ValueError, KeyError, TypeError):
        key = ""
    row = tenancy.find_api_key(session=session, key=key) if key else None
    if row is not None and row.tenant_id == tenant.id:
        return key
    _, key = tenancy.create_api_key(session=session, tenant=tenant, name="demo")
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"tenant_id": tenant.id, "key": key}, out)
    os.replace(scratch, path)
    return key


def _visit_day(visit: Visit, tenant: Tenant) -> dt.date:
    assert visit.finished_at is not None
    return visit.finished_at.astimezone(ZoneInfo(tenant.timezone)).date()


def _at(day: dt.date, moment: dt.time, tenant: Tenant, minutes: int = 0) -> dt.datetime:
    """``moment`` on ``day`` in the company's zone, ``minutes`` later, as an aware time."""
    local = dt.datetime.combine(day, moment, tzinfo=ZoneInfo(tenant.timezone))
    return local + dt.timedelta(minutes=minutes)


def seed(*, session: Session) -> DemoResult:
    """Create (or refresh) the demo company; its API key is the one printed last time while
    that still works."""
    tenant = session.scalars(select(Tenant).where(Tenant.name == DEMO_NAME)).first()
    if tenant is None:
        tenant = tenancy.create_tenant(session=session, name=DEMO_NAME, signature=DEMO_SIGNATURE)
    key = _demo_key(session=session, tenant=tenant)

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
            visits.create_staff(
                session=session,
                tenant=tenant,
                name=name,
                certificates=certs,
                years_experience=years,
            )
            for name, certs, years in _STAFF
        ]
    existing_visits = session.scalars(select(Visit.id).where(Visit.tenant_id == tenant.id)).all()
    if not existing_visits:
        today = utcnow().astimezone(ZoneInfo(tenant.timezone)).date()
        for i, (service_type, areas, staff_index) in enumerate(_VISITS):
            day = today - dt.timedelta(days=3 * i + 1)
            visits.create_visit(
                session=session,
                tenant=tenant,
                customer_id=customer_ids[i],
                staff_id=staff[staff_index].id,
                service_type=service_type,
                areas=areas,
                scheduled_at=_at(day, _ARRIVAL, tenant),
                finished_at=_at(day, _FINISH, tenant),
                amount_cents=(200 + 80 * i) * 100,
            )
    first_visit = session.scalars(
        select(Visit).where(Visit.tenant_id == tenant.id).order_by(Visit.id)
    ).first()
    assert first_visit is not None
    _record_capture_consents(session=session, tenant=tenant, now=utcnow())
    photos = _sample_photos(session=session, tenant=tenant, visit=first_visit)
    report_url = _sample_report(session=session, tenant=tenant, visit=first_visit)
    now = utcnow()
    _record_consents(
        session=session, tenant=tenant, customer_ids=customer_ids[:-WITHOUT_CONSENT], now=now
    )
    campaign = _seasonal_campaign(session=session, tenant=tenant, now=now)
    owner_link, staff_link = _demo_users(session=session, tenant=tenant, staff=staff)

    def count(column: InstrumentedAttribute[int], tenant_column: InstrumentedAttribute[int]) -> int:
        # What the company has now, whatever was added since the last run.
        return session.scalar(select(func.count(column)).where(tenant_column == tenant.id)) or 0

    return DemoResult(
        tenant=tenant,
        api_key=key,
        customers=count(Customer.id, Customer.tenant_id),
        staff=count(Staff.id, Staff.tenant_id),
        visits=count(Visit.id, Visit.tenant_id),
        photos=photos,
        report_url=report_url,
        campaign=campaign,
        owner_link=owner_link,
        staff_link=staff_link,
    )


def _record_capture_consents(*, session: Session, tenant: Tenant, now: dt.datetime) -> None:
    """Permission to photograph and film the home (and use the photos in marketing) for the
    customers who have visits, unless one is on record: the demo company asks for it."""
    visited = session.scalars(
        select(Customer)
        .where(Customer.id.in_(select(Visit.customer_id).where(Visit.tenant_id == tenant.id)))
        .order_by(Customer.id)
    )
    for person in visited:
        if capture.active_capture_consent(
            session=session, tenant_id=tenant.id, customer_id=person.id
        ):
            continue
        capture.record_capture_consent(
            session=session,
            tenant=tenant,
            customer=person,
            source="in_person",
            evidence="演示数据：客户当面同意拍照录像",
            scopes=["photos", "clips", "marketing"],
            now=now,
        )


def _record_consents(
    *, session: Session, tenant: Tenant, customer_ids: list[int], now: dt.datetime
) -> None:
    """Marketing consent for these customers, unless one is on record already: a consent
    revoked (or an opt-out) while trying the demo stays as it is when it runs again."""
    recorded = {r.phone for r in compliance.consents(session=session, tenant_id=tenant.id)}
    for person in session.scalars(
        select(Customer).where(Customer.id.in_(customer_ids)).order_by(Customer.id)
    ):
        if person.phone not in recorded:
            compliance.record_consent(
                session=session,
                tenant_id=tenant.id,
                customer=person,
                source="import",
                evidence="演示数据",
                granted_at=now,
                now=now,
            )


def _seasonal_campaign(*, session: Session, tenant: Tenant, now: dt.datetime) -> DemoCampaign:
    """The Spring Festival campaign, started from its preset as ``/v1/campaigns`` does
    (create, activate after a clean lint, materialize); found again when the demo runs
    again, and active again if it was paused meanwhile."""
    campaign = session.scalars(
        select(Campaign)
        .where(
            Campaign.tenant_id == tenant.id,
            Campaign.preset == DEMO_PRESET,
            Campaign.status != ARCHIVED,
        )
        .order_by(Campaign.id)
    ).first()
    if campaign is None:
        campaign = campaigns.create_campaign(session=session, tenant=tenant, preset=DEMO_PRESET)
    campaigns.activate(session=session, tenant=tenant, campaign_id=campaign.id, now=now)
    materializer.materialize(
        session=session, now=now, horizon=_CAMPAIGN_HORIZON, campaign_id=campaign.id
    )
    scheduled, first = session.execute(
        select(func.count(), func.min(CampaignOccurrence.local_date)).where(
            CampaignOccurrence.campaign_id == campaign.id, CampaignOccurrence.status == PENDING
        )
    ).one()
    return DemoCampaign(
        id=campaign.id, name=campaign.name, scheduled=int(scheduled), first_date=first
    )


def _sample_report(*, session: Session, tenant: Tenant, visit: Visit) -> str:
    """A clip and a work-report photo for the first visit, then its report and recap video."""
    day = _visit_day(visit, tenant)
    filmed = _at(day, _ARRIVAL, tenant, minutes=70).astimezone(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="huifang-demo-") as work:
        clip = Path(work) / "during.mp4"
        # Filmed upright, as phone clips mostly are: coded landscape with a display matrix.
        samples.room_clip(
            clip,
            seconds=4,
            size=(960, 540),
            rotation=90,
            seed=1,
            metadata={"creation_time": filmed.strftime("%Y-%m-%dT%H:%M:%SZ")},
        )
        for data, phase, name in (
            (clip.read_bytes(), "during", "demo-during.mp4"),
            (
                samples.room_photo(
                    clean=True,
                    seed=9,
                    size=(900, 1200),
                    captured_at=_at(day, _FINISH, tenant, minutes=-5),
                ),
                "staff_report",
                "demo-staff-report.jpg",
            ),
        ):
            staged = stage_bytes(data, fields={"phase": phase, "area": "客厅"}, filename=name)
            made, _ = media.accept_upload(
                session=session, tenant=tenant, visit_id=visit.id, staged=staged
            )
            media.process_media(session=session, media_id=made.id)
        built, _ = reports.build_report(session=session, tenant=tenant, visit_id=visit.id)
        job = recaps.recap_job(session=session, report_id=built.id)
        if job is not None:
            recaps.record(session=session, job=job, made=recaps.make(job, workdir=Path(work)))
    return reports.page_url(built)


def _sample_photos(*, session: Session, tenant: Tenant, visit: Visit) -> list[Media]:
    """Before and after photos of the first visit, processed as the media queue would."""
    made = []
    day = _visit_day(visit, tenant)
    for seed, (phase, area) in enumerate(
        (("before", "客厅"), ("after", "客厅"), ("before", "主卧"), ("after", "主卧"))
    ):
        # Before photos on arrival, after photos just before leaving: minutes apart by area.
        taken = (
            _at(day, _ARRIVAL, tenant, minutes=8 + seed)
            if phase == "before"
            else _at(day, _FINISH, tenant, minutes=-25 + seed)
        )
        data = samples.room_photo(clean=phase == "after", seed=seed, captured_at=taken)
        staged = stage_bytes(
            data, fields={"phase": phase, "area": area}, filename=f"demo-{phase}-{seed}.jpg"
        )
        photo, _ = media.accept_upload(
            session=session, tenant=tenant, visit_id=visit.id, staged=staged
        )
        made.append(media.process_media(session=session, media_id=photo.id) or photo)
    return made
