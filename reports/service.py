"""Visit reports: what the customer receives after a visit.

``build_report`` gathers the visit's before/after pairs, its photos, the staff member's work
report and card, the company's care advice for the service and the offer of the season, and
keeps them as a snapshot on the ``Report`` row: the public page (``/r/{token}``) renders from
it, so it is fast and stays as it was sent. The same build makes the report's own files, all
served under its token while it is valid (``/r/{token}/{name}``):

- ``long-….jpg``: the long image (``reports.longimage``), 750 px wide, under 1.5 MB;
- ``pair-….jpg``: each before/after composite under the MMS photo budget, for MMS and the page;
- ``work-….jpg``: the staff member's work-report photo, the same way;
- ``recap-….mp4`` and ``poster-….jpg``: the recap video, once ``attach_recap`` has kept one;
- ``staff-….jpg``: the staff member's current card photo.

MMS parts for a provider come from ``mms_payload`` (``reports.mms`` does the fitting).
Care advice (per service type) and offers (per month) have built-in Chinese defaults that a
company can override (``ReportText`` rows).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from PIL import Image
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access import audit
from access.actors import Actor
from bookings import links
from bookings.models import ShortLink
from customers.models import Customer
from huifang import rls, storage
from huifang.db import on_commit, utcnow
from huifang.errors import Conflict, Invalid, NotFound
from huifang.settings import get_settings
from media import renditions
from media import service as media_service
from media.models import PROCESSING, READY, Media, Rendition
from reports import expiry, longimage, mms
from reports.models import CARE_ADVICE, OFFER, Report, ReportText
from tenancy.models import Tenant
from visits import service as visits
from visits.models import Staff, Visit
from visits.service_types import SERVICE_TYPES, label, normalize_service_type

log = structlog.get_logger(__name__)

SNAPSHOT_VERSION = 1
MAX_CARE_ADVICE_CHARS = 300
MAX_OFFER_TITLE_CHARS = 20
MAX_OFFER_TEXT_CHARS = 120
MAX_SERVICE_TYPE_CHARS = 64
MAX_GALLERY = 24  # photos of the work on the page; the long image shows fewer
ASSET_NAME = re.compile(r"^(long|pair|work|recap|poster|staff)-[A-Za-z0-9_-]{4,40}\.(jpg|mp4)$")

# --- care advice and offers ------------------------------------------------------------------

CARE_ADVICE_DEFAULTS: dict[str, str] = {
    "basic_cleaning": "建议每周做一次日常保洁。平时随手擦干台面和水池的水渍，垃圾当天清理，"
    "家里能清爽更久。",
    "deep_cleaning": "深度保洁建议每 3–6 个月做一次，平时配合每周一次日常保洁。厨房油污趁热"
    "擦拭，卫生间用后开窗或开排风扇，能少积水垢和霉斑。",
    "move_in_cleaning": "开荒后建议开窗通风 7 天以上再入住。入住后每周做一次日常保洁，"
    "3 个月后再做一次深度保洁，清理装修残留的细灰。",
    "ac_cleaning": "空调滤网建议每 3 个月清洗一次，每年换季前做一次深度清洗。长时间不用前，"
    "先开送风模式 1–2 小时吹干内部，能减少异味和霉菌。",
    "range_hood_cleaning": "油烟机建议每 3–6 个月深度清洗一次。做完饭后多开 3–5 分钟排净余烟，"
    "油杯快满时及时倒掉，吸力会更持久。",
    "washing_machine_cleaning": "洗衣机内桶建议每 3 个月清洗一次。洗完衣服后打开机门和洗涤剂盒"
    "通风晾干，湿衣服及时取出，防止滋生霉菌和异味。",
    "fridge_cleaning": "冰箱建议每 3 个月清洁除味一次。生熟分开存放，剩菜加盖或覆保鲜膜；"
    "冷冻室结霜超过 5 毫米时及时除霜，更省电。",
    "curtain_washing": "窗帘建议每 6 个月清洗一次，家里有过敏体质的可缩短到 3 个月。"
    "平时用吸尘器低档吸除表面浮尘，能延长清洗间隔。",
    "sofa_care": "真皮沙发建议每 3–6 个月清洁护理一次，布艺沙发每 6 个月深度清洁一次。"
    "避免阳光直晒和靠近暖气，日常用干软布擦拭，洒上液体及时吸干，不要用酒精擦拭皮面。",
    "mould_prevention": "梅雨季建议关窗开除湿机，室内湿度保持在 60% 以下；衣柜放置除湿包"
    "并每月更换。发现墙角或柜内有霉点，尽早处理，避免扩散。",
    "nanny": "家里的作息、饮食偏好或注意事项有变化时，请随时告诉阿姨或我们，服务会更贴心。"
    "对服务有任何建议，也欢迎直接回复短信。",
    "elder_care": "建议定期为老人测量血压、血糖并记录。居家保持地面干燥、通道无杂物，"
    "卫生间加装扶手和防滑垫，能明显降低跌倒风险。",
}
GENERIC_CARE_ADVICE = (
    "定期清洁和保养能让家里更干净、家电用得更久。对这次服务有任何问题，欢迎直接回复短信告诉我们。"
)
CARE_TITLES = {"nanny": "温馨提示", "elder_care": "照护建议"}

# The next seasonal service to suggest, by the month of the visit.
OFFER_DEFAULTS: dict[int, tuple[str, str]] = {
    1: ("春节前深度保洁", "年前保洁预约紧张，提前约好深度保洁，干干净净过大年。"),
    2: ("节后焕新大扫除", "节日里客人多、油烟重，约一次深度保洁，轻松回到日常。"),
    3: ("春季床垫沙发除螨", "天气回暖螨虫活跃，床垫、沙发深层除螨，让家人呼吸更清爽。"),
    4: ("夏季前空调清洗", "入夏前清洗空调，开机不吹灰尘和异味，高峰期前预约不用排队。"),
    5: ("入梅前除湿防霉", "梅雨季快到了，提前做除湿防霉处理，衣柜、墙角不发霉。"),
    6: ("空调深度清洗", "高温天空调天天开，深度清洗滤网和蒸发器，制冷更快更省电。"),
    7: ("洗衣机清洗", "夏天衣服天天洗，洗衣机内桶容易藏污垢，清洗一次更卫生。"),
    8: ("中秋前油烟机清洗", "节前家宴多，提前清洗油烟机，吸力足、厨房清爽。"),
    9: ("换季空调清洗收纳", "空调用了一夏，收起来之前清洗一次，明年开机没有异味。"),
    10: ("秋季沙发护理", "天气转凉，给沙发做一次清洁护理，换季用着更舒心。"),
    11: ("入冬前窗帘清洗", "入冬前清洗窗帘，去掉一年的灰尘，家里更亮堂。"),
    12: ("春节前深度保洁", "年底预约多，提前约好年前深度保洁，安心迎新春。"),
}


@dataclass(frozen=True)
class CareAdvice:
    service_type: str
    label: str
    title: str
    text: str
    customized: bool


@dataclass(frozen=True)
class Offer:
    month: int
    title: str
    text: str
    customized: bool


def _service_type(value: str) -> str:
    code = normalize_service_type(value)
    if not code:
        raise Invalid("Name the service type, e.g. ac_cleaning or 空调清洗.")
    if len(code) > MAX_SERVICE_TYPE_CHARS:
        raise Invalid(
            f"The service type {code[:20]!r}… is longer than "
            f"{MAX_SERVICE_TYPE_CHARS} characters; use a short code."
        )
    return code


def _clean_text(text: str, *, what: str, limit: int) -> str:
    cleaned = text.strip()
    if not cleaned:
        raise Invalid(f"The {what} is empty; write a sentence or two for customers.")
    if len(cleaned) > limit:
        raise Invalid(
            f"The {what} is {len(cleaned)} characters; keep it to {limit} so it fits "
            "the report's card and long image."
        )
    return cleaned


def _month(month: int) -> int:
    if not 1 <= month <= 12:
        raise Invalid(f"There is no month {month}; use 1 to 12.")
    return month


def _texts(session: Session, tenant_id: int, kind: str) -> dict[str, ReportText]:
    rows = session.scalars(
        select(ReportText).where(ReportText.tenant_id == tenant_id, ReportText.kind == kind)
    )
    return {row.key: row for row in rows}


def _care(code: str, row: ReportText | None) -> CareAdvice:
    text = row.text if row else CARE_ADVICE_DEFAULTS.get(code, GENERIC_CARE_ADVICE)
    return CareAdvice(
        service_type=code,
        label=label(code),
        title=CARE_TITLES.get(code, "保养建议"),
        text=text,
        customized=row is not None,
    )


def list_care_advice(*, session: Session, tenant_id: int) -> list[CareAdvice]:
    """Every known service type with the advice in force, then the company's own codes."""
    rows = _texts(session, tenant_id, CARE_ADVICE)
    own = sorted(code for code in rows if code not in SERVICE_TYPES)
    return [_care(code, rows.get(code)) for code in [*SERVICE_TYPES, *own]]


def care_advice_for(*, session: Session, tenant_id: int, service_type: str) -> CareAdvice:
    code = normalize_service_type(service_type)
    row = session.get(ReportText, (tenant_id, CARE_ADVICE, code))
    return _care(code, row)


def set_care_advice(
    *, session: Session, tenant_id: int, service_type: str, text: str, actor: Actor | None = None
) -> CareAdvice:
    """The company's own care advice for a service type (its own codes are welcome); the
    change is in the audit log under ``actor`` (None: the system)."""
    code = _service_type(service_type)
    cleaned = _clean_text(text, what="care advice", limit=MAX_CARE_ADVICE_CHARS)
    row = session.get(ReportText, (tenant_id, CARE_ADVICE, code))
    if row is None:
        row = ReportText(tenant_id=tenant_id, kind=CARE_ADVICE, key=code, text=cleaned)
        session.add(row)
    row.text = cleaned
    session.flush()
    audit.record(
        session,
        actor,
        "care_advice.set",
        f"care_advice:{code}",
        {"text": cleaned},
        tenant_id=tenant_id,
    )
    return _care(code, row)


def reset_care_advice(
    *, session: Session, tenant_id: int, service_type: str, actor: Actor | None = None
) -> CareAdvice:
    """Back to the built-in advice; the advice now in force."""
    code = _service_type(service_type)
    row = session.get(ReportText, (tenant_id, CARE_ADVICE, code))
    if row is not None:
        session.delete(row)
        session.flush()
    audit.record(session, actor, "care_advice.reset", f"care_advice:{code}", tenant_id=tenant_id)
    return _care(code, None)


def _offer(month: int, row: ReportText | None) -> Offer:
    if row is not None:
        return Offer(
            month=month, title=row.title or OFFER_DEFAULTS[month][0], text=row.text, customized=True
        )
    title, text = OFFER_DEFAULTS[month]
    return Offer(month=month, title=title, text=text, customized=False)


def list_offers(*, session: Session, tenant_id: int) -> list[Offer]:
    """The offer of each month, January to December."""
    rows = _texts(session, tenant_id, OFFER)
    return [_offer(month, rows.get(str(month))) for month in range(1, 13)]


def offer_for(*, session: Session, tenant_id: int, month: int) -> Offer:
    return _offer(_month(month), session.get(ReportText, (tenant_id, OFFER, str(month))))


def set_offer(
    *,
    session: Session,
    tenant_id: int,
    month: int,
    title: str,
    text: str,
    actor: Actor | None = None,
) -> Offer:
    """The company's own offer for reports of visits in ``month``."""
    month = _month(month)
    clean_title = _clean_text(title, what="offer title", limit=MAX_OFFER_TITLE_CHARS)
    clean_text = _clean_text(text, what="offer text", limit=MAX_OFFER_TEXT_CHARS)
    row = session.get(ReportText, (tenant_id, OFFER, str(month)))
    if row is None:
        row = ReportText(tenant_id=tenant_id, kind=OFFER, key=str(month), text=clean_text)
        session.add(row)
    row.title, row.text = clean_title, clean_text
    session.flush()
    audit.record(
        session,
        actor,
        "offer.set",
        f"offer:{month}",
        {"title": row.title, "text": row.text},
        tenant_id=tenant_id,
    )
    return _offer(month, row)


def reset_offer(
    *, session: Session, tenant_id: int, month: int, actor: Actor | None = None
) -> Offer:
    month = _month(month)
    row = session.get(ReportText, (tenant_id, OFFER, str(month)))
    if row is not None:
        session.delete(row)
        session.flush()
    audit.record(session, actor, "offer.reset", f"offer:{month}", tenant_id=tenant_id)
    return _offer(month, None)


# --- building --------------------------------------------------------------------------------


def _new_token() -> str:
    return secrets.token_urlsafe(18)  # 144 random bits, 24 characters


def _local(when: dt.datetime, timezone: str) -> dt.datetime:
    return when.astimezone(ZoneInfo(timezone))


def _open_image(relative: str, *, edge: int | None = None) -> Image.Image:
    """A stored JPEG, decoded at about ``edge`` px (libjpeg's fast reduced decode)."""
    with Image.open(io.BytesIO(storage.read_bytes(relative))) as image:
        if edge and image.format == "JPEG":
            scale = edge / max(image.size)
            if scale < 1:
                image.draft("RGB", (round(image.width * scale), round(image.height * scale)))
        return image.convert("RGB")


def _rendition(media: Media, kind: str) -> Rendition | None:
    return next((r for r in media.renditions if r.kind == kind), None)


@dataclass
class _Files:
    """The files a build writes, and the previous build's files it no longer needs."""

    tenant_id: int
    now: dt.datetime
    reused: dict[str, dict[str, Any]]  # the previous build's assets, by their source
    written: list[str]

    def write(self, data: bytes, ext: str) -> str:
        relative = storage.new_relative_path("renditions", self.tenant_id, ext, now=self.now)
        storage.write_bytes(relative, data)
        self.written.append(relative)
        return relative


def _asset(
    files: _Files, *, prefix: str, source: str, make: Callable[[], renditions.Rendition]
) -> tuple[str, dict[str, Any]]:
    """A report file made from ``source`` (a rendition token), or the previous build's copy."""
    old = files.reused.get(source)
    if old is not None and old["name"].startswith(prefix + "-") and storage.exists(old["path"]):
        return old["name"], old
    made = make()
    name = f"{prefix}-{secrets.token_hex(6)}.jpg"
    entry = {
        "name": name,
        "source": source,
        "path": files.write(made.data, ".jpg"),
        "content_type": made.content_type,
        "bytes": len(made.data),
        "width": made.width,
        "height": made.height,
    }
    return name, entry


def _note(media: Media) -> str | None:
    """The staff member's note on a photo, as the customer reads it (None when there is none)."""
    return (media.note or "").strip() or None


def _page_photo(media: Media) -> dict[str, Any] | None:
    """One photo of a before/after pair for the page: its MMS-sized copy, the full one, note."""
    shown, full = _rendition(media, "mms"), _rendition(media, "display")
    if shown is None or full is None:
        return None
    return {
        "src": shown.token,
        "full": full.token,
        "width": shown.width,
        "height": shown.height,
        "phase": media.phase_label,
        "note": _note(media),
    }


def _summary(*, day: dt.datetime, staff: Staff | None, service: str, areas: Sequence[str]) -> str:
    who = staff.name if staff else "我们"
    # An SMS is read at a glance: three areas, then how many in all.
    shown = "、".join(areas[:3]) + (f"等{len(areas)}处" if len(areas) > 3 else "")
    where = f"（{shown}）" if areas else ""
    return f"{day.month}月{day.day}日，{who}为您完成了{service}{where}"


def build_report(
    *, session: Session, tenant: Tenant, visit_id: int, now: dt.datetime | None = None
) -> tuple[Report, bool]:
    """Assemble the visit's report, or rebuild it in place: the report and whether it is new.

    Refused (409) while any photo or clip of the visit is still being processed, since the
    report would go out without it, and when the visit has no ready photo at all. A rebuild
    keeps the token (links already sent keep working), renews the validity from now, and
    keeps the recap video (``attach_recap`` replaces it when the clips change).
    """
    now = now or utcnow()
    visit = visits.get_visit(session=session, tenant_id=tenant.id, visit_id=visit_id)
    all_media = session.scalars(
        select(Media)
        .where(Media.tenant_id == tenant.id, Media.visit_id == visit.id)
        .order_by(Media.received_at, Media.id)
    ).all()
    waiting = [m for m in all_media if m.status == PROCESSING]
    if waiting:
        raise Conflict(
            f"{len(waiting)} photo{'s' if len(waiting) > 1 else ''} or clip"
            f"{'s' if len(waiting) > 1 else ''} of this visit "
            f"{'are' if len(waiting) > 1 else 'is'} still being processed; build the report "
            "again in a minute, once they are ready."
        )
    photos = [m for m in all_media if m.kind == "photo" and m.status == READY]
    if not photos:
        raise Conflict(
            "This visit has no processed photo yet; upload at least one photo "
            "(best a before and an after of each area), then build the report."
        )

    report = session.scalars(select(Report).where(Report.visit_id == visit.id)).first()
    previous: dict[str, dict[str, Any]] = {}
    if report is not None:
        for entry in (report.snapshot or {}).get("assets", {}).values():
            previous[entry["source"]] = entry
    files = _Files(tenant_id=tenant.id, now=now, reused=previous, written=[])
    try:
        snapshot, content = _assemble(
            session, tenant=tenant, visit=visit, photos=photos, files=files, now=now
        )
        made = longimage.build(content, budget=longimage.DEFAULT_BUDGET)
        long_path = files.write(made.data, ".jpg")
        report, created = _save(
            session,
            tenant=tenant,
            visit=visit,
            report=report,
            snapshot=snapshot,
            made=made,
            long_path=long_path,
            now=now,
        )
    except BaseException:
        for relative in files.written:
            storage.remove(relative)
        raise
    return report, created


def _assemble(
    session: Session,
    *,
    tenant: Tenant,
    visit: Visit,
    photos: Sequence[Media],
    files: _Files,
    now: dt.datetime,
) -> tuple[dict[str, Any], longimage.LongImageContent]:
    """The snapshot of what the report shows, and the long image's content."""
    budget = get_settings().mms_photo_budget
    staff = session.get(Staff, visit.staff_id) if visit.staff_id else None
    day = _local(visit.finished_at or now, tenant.timezone)
    assets: dict[str, dict[str, Any]] = {}

    media_service.refresh_pairs(session=session, visit_id=visit.id)
    highlights: list[dict[str, Any]] = []
    long_pairs: list[longimage.Photo] = []
    paired: set[int] = set()
    for area, before, after in media_service.pairs(session=session, visit_id=visit.id):
        made = _rendition(after, media_service.COMPOSITE)
        if made is None or made.source_media_id != before.id:
            continue
        paired.update((before.id, after.id))
        full = _open_image(made.path)
        name, entry = _asset(
            files,
            prefix="pair",
            source=made.token,
            make=functools.partial(renditions.mms, full, budget=budget),
        )
        assets[name] = entry
        highlights.append(
            {
                "area": area,
                "asset": name,
                "width": entry["width"],
                "height": entry["height"],
                "full": made.token,
                # The two photos apart, for the page: on a phone a pair of wide photos
                # stacks, where the composite would shrink each watermark to half a screen.
                "before": _page_photo(before),
                "after": _page_photo(after),
            }
        )
        if len(long_pairs) < longimage.MAX_HIGHLIGHTS:
            long_pairs.append(longimage.Photo(full, area or "服务前后"))

    work = [m for m in photos if m.phase == "staff_report"]
    staff_report: dict[str, Any] | None = None
    long_work: longimage.Photo | None = None
    work_caption = f"{staff.name} 今天的工作汇报" if staff else "今天的工作汇报"
    if work:
        latest = work[-1]
        display = _rendition(latest, "display")
        if display is not None:
            image = _open_image(display.path, edge=renditions.MMS_EDGE)
            name, entry = _asset(
                files,
                prefix="work",
                source=display.token,
                make=functools.partial(renditions.mms, image, budget=budget),
            )
            assets[name] = entry
            staff_report = {
                "asset": name,
                "width": entry["width"],
                "height": entry["height"],
                "caption": work_caption,
                "full": display.token,
                "note": _note(latest),
            }
            long_work = longimage.Photo(image, work_caption)

    gallery: list[dict[str, Any]] = []
    long_gallery: list[Image.Image] = []
    for media in photos:
        if media.phase == "staff_report":
            continue
        thumb, display = _rendition(media, "thumb"), _rendition(media, "display")
        if thumb is None or display is None or len(gallery) >= MAX_GALLERY:
            continue
        gallery.append(
            {
                "thumb": thumb.token,
                "width": thumb.width,
                "height": thumb.height,
                "full": display.token,
                "phase": media.phase_label,
                "area": media.area,
                # A paired photo's note is shown under it in the pair, not a second time.
                "note": None if media.id in paired else _note(media),
            }
        )
        if media.id not in paired and len(long_gallery) < longimage.MAX_GALLERY:
            long_gallery.append(_open_image(thumb.path))

    care = care_advice_for(session=session, tenant_id=tenant.id, service_type=visit.service_type)
    offer = offer_for(session=session, tenant_id=tenant.id, month=day.month)
    areas = list(visit.areas) or list(dict.fromkeys(m.area for m in photos if m.area))
    staff_card = None
    long_staff = None
    if staff is not None:
        certificates = list(staff.certificates or [])
        staff_card = {
            "id": staff.id,
            "name": staff.name,
            "years_experience": staff.years_experience,
            "certificates": certificates,
        }
        face = None
        if staff.photo_path:
            try:
                face = _open_image(staff.photo_path)
            except (OSError, ValueError):
                log.warning("staff photo unreadable", staff_id=staff.id)
        long_staff = longimage.StaffCard(
            name=staff.name,
            years_experience=staff.years_experience,
            certificates=certificates,
            photo=face,
        )

    date_text = f"{day.year}年{day.month}月{day.day}日"
    snapshot: dict[str, Any] = {
        "version": SNAPSHOT_VERSION,
        "company": tenant.name,
        "signature": tenant.signature,
        "service": visit.service_label,
        "service_type": visit.service_type,
        "date": date_text,
        "areas": areas,
        "summary": _summary(day=day, staff=staff, service=visit.service_label, areas=areas),
        "highlights": highlights,
        "staff_report": staff_report,
        "gallery": gallery,
        "staff": staff_card,
        "care_advice": {"title": care.title, "text": care.text},
        "offer": {"title": offer.title, "text": offer.text},
        "assets": assets,
    }
    subtitle = date_text + (f" · 服务人员 {staff.name}" if staff else "")
    content = longimage.LongImageContent(
        company=tenant.name,
        title=f"{visit.service_label} 服务报告",
        subtitle=subtitle,
        highlights=long_pairs,
        more_highlights=len(highlights) - len(long_pairs),
        staff_report=long_work,
        staff=long_staff,
        gallery=long_gallery,
        care_title=care.title,
        care_text=care.text,
        offer_title=offer.title,
        offer_text=offer.text,
        footer="回复1预约下次服务",
    )
    return snapshot, content


def _save(
    session: Session,
    *,
    tenant: Tenant,
    visit: Visit,
    report: Report | None,
    snapshot: dict[str, Any],
    made: longimage.LongImage,
    long_path: str,
    now: dt.datetime,
) -> tuple[Report, bool]:
    expires_at = now + dt.timedelta(days=tenant.report_valid_days)
    fields: dict[str, Any] = {
        "snapshot": snapshot,
        "built_at": now,
        "expires_at": expires_at,
        "long_path": long_path,
        "long_bytes": len(made.data),
        "long_width": made.width,
        "long_height": made.height,
        "long_token": _new_token(),
    }
    created = report is None
    if report is None:
        candidate = Report(tenant_id=tenant.id, visit_id=visit.id, token=_new_token(), **fields)
        expiry.apply_company_rules(candidate, tenant, now=now)
        try:
            with session.begin_nested():  # two builds of one visit at once: one row wins
                session.add(candidate)
                session.flush()
            return candidate, True
        except IntegrityError:
            report = session.scalars(select(Report).where(Report.visit_id == visit.id)).first()
            if report is None:
                raise
            created = False
    kept = {entry["path"] for entry in snapshot["assets"].values()}
    stale = [
        entry["path"]
        for entry in (report.snapshot or {}).get("assets", {}).values()
        if entry["path"] not in kept
    ]
    stale.append(report.long_path)
    for attr, value in fields.items():
        setattr(report, attr, value)
    session.flush()
    # Removed only once the new build is committed: a rollback leaves the old one whole.
    _remove_after_commit(session, stale)
    return report, created


def _remove_after_commit(session: Session, paths: Sequence[str]) -> None:
    """Remove files once the change that stopped using them is committed; a rollback keeps
    them, so the report on record always has its files."""

    def remove() -> None:
        for path in paths:
            storage.remove(path)

    if paths:
        on_commit(session, remove)


# --- the recap video -------------------------------------------------------------------------


def attach_recap(
    *, session: Session, report: Report, video: Path, duration: float, poster: Path | None = None
) -> Report:
    """Keep a rendered recap video (and its poster frame) as the report's.

    ``video`` is an H.264 MP4 made by ``reports.recap_video.render`` (in a scratch directory the
    caller removes afterwards; the file is copied in). The page shows it, and MMS parts
    include it when it fits the provider. Replaces any earlier recap of the report.
    """
    size = video.stat().st_size
    if not size:
        raise Invalid("The recap video is empty; render it again.")
    now = utcnow()
    stale = [p for p in (report.recap_path, report.recap_poster_path) if p]
    relative = storage.new_relative_path("renditions", report.tenant_id, ".mp4", now=now)
    storage.put_file(video, relative)
    poster_relative = None
    if poster is not None:
        poster_relative = storage.new_relative_path("renditions", report.tenant_id, ".jpg", now=now)
        storage.put_file(poster, poster_relative)
    report.recap_path, report.recap_bytes = relative, size
    report.recap_duration = round(float(duration), 2)
    report.recap_token, report.recap_poster_path = _new_token(), poster_relative
    session.flush()
    _remove_after_commit(session, stale)
    return report


def clear_recap(*, session: Session, report: Report) -> Report:
    """Forget the recap video (the visit's clips were removed)."""
    stale = [p for p in (report.recap_path, report.recap_poster_path) if p]
    report.recap_path = report.recap_bytes = report.recap_duration = None
    report.recap_token = report.recap_poster_path = None
    session.flush()
    _remove_after_commit(session, stale)
    return report


# --- reading ---------------------------------------------------------------------------------


def get_report(*, session: Session, tenant_id: int, visit_id: int) -> Report:
    """The visit's report, or NotFound (for another company's visit too)."""
    visits.get_visit(session=session, tenant_id=tenant_id, visit_id=visit_id)
    report = session.scalars(
        select(Report).where(Report.visit_id == visit_id, Report.tenant_id == tenant_id)
    ).first()
    if report is None:
        raise NotFound(
            f"Visit {visit_id} has no report yet; build it with POST /v1/visits/{visit_id}/report."
        )
    return report


def by_token(*, session: Session, token: str) -> Report | None:
    """The report behind a public link, expired or not; None for anything else. Found, it
    names the company: the rest of the transaction sees that company's rows only."""
    if not 16 <= len(token) <= 32:
        return None
    report = session.scalars(select(Report).where(Report.token == token)).first()
    if report is not None:
        rls.scope_to_tenant(session, report.tenant_id)
    return report


def is_expired(report: Report, *, now: dt.datetime | None = None) -> bool:
    return (now or utcnow()) >= report.expires_at


def page_path(report: Report) -> str:
    return f"/r/{report.token}"


def page_url(report: Report) -> str:
    return get_settings().public_url + page_path(report)


def book_path(report: Report) -> str:
    return f"/b/{report.token}"


def long_name(report: Report) -> str:
    return f"long-{report.long_token}.jpg"


def recap_name(report: Report) -> str | None:
    return f"recap-{report.recap_token}.mp4" if report.recap_path else None


def poster_name(report: Report) -> str | None:
    return f"poster-{report.recap_token}.jpg" if report.recap_poster_path else None


def asset_path(report: Report, name: str) -> str:
    """The path of one of the report's files under its token: ``/r/{token}/{name}``."""
    return f"{page_path(report)}/{name}"


def _staff_photo_name(staff: Staff | None) -> str | None:
    if staff is None or not staff.photo_path:
        return None
    return f"staff-{Path(staff.photo_path).stem}.jpg"


def asset_file(*, session: Session, report: Report, name: str) -> tuple[str, str] | None:
    """The stored file's name and content type behind ``/r/{token}/{name}``, or None."""
    if not ASSET_NAME.match(name):
        return None
    relative: str | None = None
    content_type = "image/jpeg"
    if name == long_name(report):
        relative = report.long_path
    elif report.recap_path and name == recap_name(report):
        relative, content_type = report.recap_path, "video/mp4"
    elif report.recap_poster_path and name == poster_name(report):
        relative = report.recap_poster_path
    elif name.startswith("staff-"):
        visit = session.get(Visit, report.visit_id)
        staff = session.get(Staff, visit.staff_id) if visit and visit.staff_id else None
        if staff is not None and name == _staff_photo_name(staff):
            relative = staff.photo_path
    else:
        entry = (report.snapshot or {}).get("assets", {}).get(name)
        if entry is not None:
            relative, content_type = entry["path"], entry["content_type"]
    if relative is None or not storage.exists(relative):
        return None
    return relative, content_type


def _live_tokens(session: Session, tokens: Sequence[str]) -> set[str]:
    """Which rendition tokens still exist (a photo processed again gets new renditions)."""
    if not tokens:
        return set()
    return set(session.scalars(select(Rendition.token).where(Rendition.token.in_(tokens))))


def page_context(*, session: Session, report: Report) -> dict[str, Any]:
    """What the public page shows, from the snapshot; links relative to the page's host."""
    snap = report.snapshot
    tenant = session.get(Tenant, report.tenant_id)
    assert tenant is not None
    rendition_tokens = [h["full"] for h in snap["highlights"]]
    for h in snap["highlights"]:
        for half in ("before", "after"):
            if h.get(half):  # reports built before the page showed pairs apart have none
                rendition_tokens += [h[half]["src"], h[half]["full"]]
    rendition_tokens += [g["thumb"] for g in snap["gallery"]] + [g["full"] for g in snap["gallery"]]
    if snap["staff_report"]:
        rendition_tokens.append(snap["staff_report"]["full"])
    live = _live_tokens(session, rendition_tokens)

    def full(token: str) -> str | None:
        return f"/m/{token}.jpg" if token in live else None

    def side(photo: dict[str, Any] | None) -> dict[str, Any] | None:
        if not photo or photo["src"] not in live:
            return None
        return {
            "src": f"/m/{photo['src']}.jpg",
            "full": full(photo["full"]),
            "width": photo["width"],
            "height": photo["height"],
            "phase": photo["phase"],
            "note": photo.get("note"),
        }

    highlights = []
    for h in snap["highlights"]:
        before, after = side(h.get("before")), side(h.get("after"))
        pair = [before, after] if before and after else None
        highlights.append(
            {
                "area": h["area"],
                "src": asset_path(report, h["asset"]),
                "width": h["width"],
                "height": h["height"],
                "full": full(h["full"]),
                "pair": pair,
                # Both wider than tall: on a narrow screen they go one above the other.
                "wide": bool(pair) and all(p["width"] > p["height"] for p in pair or []),
            }
        )
    gallery = [
        {
            "src": f"/m/{g['thumb']}.jpg",
            "width": g["width"],
            "height": g["height"],
            "full": full(g["full"]),
            "label": " · ".join(x for x in (g["area"], g["phase"]) if x),
            "note": g.get("note"),
        }
        for g in snap["gallery"]
        if g["thumb"] in live
    ]
    work = None
    if snap["staff_report"]:
        item = snap["staff_report"]
        work = {
            "src": asset_path(report, item["asset"]),
            "width": item["width"],
            "height": item["height"],
            "caption": item["caption"],
            "full": full(item["full"]),
            "note": item.get("note"),
        }
    staff = None
    if snap["staff"]:
        visit = session.get(Visit, report.visit_id)
        current = session.get(Staff, visit.staff_id) if visit and visit.staff_id else None
        same = current is not None and current.id == snap["staff"]["id"]
        photo = _staff_photo_name(current) if same else None
        staff = {**snap["staff"], "photo": asset_path(report, photo) if photo else None}
    recap = None
    if report.recap_path:
        poster = poster_name(report)
        first = highlights[0]["src"] if highlights else None
        recap = {
            "src": asset_path(report, recap_name(report) or ""),
            "poster": asset_path(report, poster) if poster else first,
            "duration": round(report.recap_duration or 0),
        }
    expires = _local(report.expires_at, tenant.timezone)
    return {
        "company": snap["company"],
        "service": snap["service"],
        "date": snap["date"],
        "summary": snap["summary"],
        "highlights": highlights,
        "gallery": gallery,
        "staff_report": work,
        "staff": staff,
        "care": snap["care_advice"],
        "offer": snap["offer"],
        "recap": recap,
        "book_url": book_path(report),
        "long_image": {"src": asset_path(report, long_name(report)), "bytes": report.long_bytes},
        "expires_on": f"{expires.year}年{expires.month}月{expires.day}日",
    }


def expired_context(*, session: Session, report: Report) -> dict[str, Any]:
    """What the polite 410 page says: whose report it was and how to reach them."""
    snap = report.snapshot or {}
    tenant = session.get(Tenant, report.tenant_id)
    company = snap.get("company") or (tenant.name if tenant else "")
    return {
        "company": company,
        "service": snap.get("service", ""),
        "date": snap.get("date", ""),
        "signature": snap.get("signature", ""),
    }


# --- MMS -------------------------------------------------------------------------------------


def mms_source(report: Report) -> mms.MmsSource:
    """The report's text and media for ``reports.mms``, most important first: the recap video
    (what moves bookings most), the before/after pairs, the work report photo, the long image."""
    base = get_settings().public_url
    snap = report.snapshot
    assets = snap["assets"]
    media: list[mms.MediaCandidate] = []
    if report.recap_path and report.recap_bytes:
        media.append(
            mms.MediaCandidate(
                name="recap",
                kind="video",
                content_type="video/mp4",
                bytes=report.recap_bytes,
                url=base + asset_path(report, recap_name(report) or ""),
                caption="服务回顾视频",
            )
        )
    for number, item in enumerate(snap["highlights"], start=1):
        entry = assets[item["asset"]]
        media.append(
            mms.MediaCandidate(
                name=f"pair-{number}",
                kind="image",
                content_type=entry["content_type"],
                bytes=entry["bytes"],
                url=base + asset_path(report, item["asset"]),
                caption=f"{item['area'] or ''} 服务前后对比".strip(),
            )
        )
    if snap["staff_report"]:
        entry = assets[snap["staff_report"]["asset"]]
        media.append(
            mms.MediaCandidate(
                name="staff_report",
                kind="image",
                content_type=entry["content_type"],
                bytes=entry["bytes"],
                url=base + asset_path(report, snap["staff_report"]["asset"]),
                caption=snap["staff_report"]["caption"],
            )
        )
    media.append(
        mms.MediaCandidate(
            name="long",
            kind="image",
            content_type="image/jpeg",
            bytes=report.long_bytes,
            url=base + asset_path(report, long_name(report)),
            caption="服务报告长图",
        )
    )
    return mms.MmsSource(
        signature=snap["signature"], summary=snap["summary"], link=page_url(report), media=media
    )


def mms_payload(*, report: Report, profile: mms.MmsProfile) -> mms.MmsPayload:
    """The report as one message for ``profile``: ordered parts with their byte sizes."""
    return mms.mms_parts(mms_source(report), profile)


def booking_link(*, session: Session, token: str, now: dt.datetime) -> ShortLink | None:
    """The booking link a report page's Book button (``/b/{report token}``) stands for.

    It is the customer's link for that visit report (made on first use), so its bookings
    count for the report. An expired report's token books nothing.
    """
    report = by_token(session=session, token=token)
    if report is None or is_expired(report, now=now):
        return None
    visit = session.get(Visit, report.visit_id)
    tenant = session.get(Tenant, report.tenant_id)
    customer = session.get(Customer, visit.customer_id) if visit is not None else None
    if visit is None or tenant is None or customer is None:
        return None
    return links.link_for(
        session=session,
        tenant=tenant,
        customer=customer,
        source_type="visit_report",
        source_id=str(visit.id),
        service_type=visit.service_type,
        now=now,
    )
