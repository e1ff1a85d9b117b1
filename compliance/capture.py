"""Permission to photograph and film a customer's home (media-capture consent).

Recorded like message consent: a source, the evidence, when; withdrawn, never edited. A
signature drawn on the staff phone is kept as a PNG (checked: a real, small PNG) beside the
record. ``require_capture`` is the one check the upload routes and the staff page make;
``check_marketing_use`` is the one a campaign makes before a customer's photo goes out.
"""

from __future__ import annotations

import datetime as dt
import io

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session

from access.actors import Actor
from compliance import audit_log
from compliance.models import CAPTURE_SCOPES, CAPTURE_SOURCES, CaptureConsent
from customers.models import Customer
from huifang import storage
from huifang.dates import check_plausible
from huifang.errors import Conflict, Invalid
from tenancy.models import Tenant

SIGNATURE_MAX_BYTES = 512 * 1024
SIGNATURE_MAX_SIDE = 2000
SCOPE_WORDS = {"photos": "拍照", "clips": "录像", "marketing": "用于宣传"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def active_capture_consent(
    *, session: Session, tenant_id: int, customer_id: int
) -> CaptureConsent | None:
    return session.scalars(
        select(CaptureConsent)
        .where(
            CaptureConsent.tenant_id == tenant_id,
            CaptureConsent.customer_id == customer_id,
            CaptureConsent.withdrawn_at.is_(None),
        )
        .order_by(CaptureConsent.granted_at.desc(), CaptureConsent.id.desc())
    ).first()


def capture_consents(*, session: Session, tenant_id: int, customer_id: int) -> list[CaptureConsent]:
    return list(
        session.scalars(
            select(CaptureConsent)
            .where(CaptureConsent.tenant_id == tenant_id, CaptureConsent.customer_id == customer_id)
            .order_by(CaptureConsent.id)
        )
    )


def _check_signature(data: bytes) -> tuple[int, int]:
    if len(data) > SIGNATURE_MAX_BYTES:
        raise Invalid("The signature image is too large; sign again on the phone's screen.")
    if not data.startswith(PNG_MAGIC):
        raise Invalid("The signature must be a PNG image drawn on the phone.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if max(width, height) > SIGNATURE_MAX_SIDE:
                raise Invalid("The signature image is too large; sign again on the phone.")
            image.load()
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise Invalid("The signature image could not be read; sign again.") from exc
    return width, height


def record_capture_consent(
    *,
    session: Session,
    tenant: Tenant,
    customer: Customer,
    source: str,
    evidence: str,
    scopes: list[str],
    now: dt.datetime,
    granted_at: dt.datetime | None = None,
    signature_png: bytes | None = None,
    actor: Actor | None = None,
) -> CaptureConsent:
    """Record the customer's permission for ``scopes``; one active record per customer
    (withdraw it to record another)."""
    if source not in CAPTURE_SOURCES:
        raise Invalid(
            f"Say how permission was given: source is one of {', '.join(CAPTURE_SOURCES)}."
        )
    wanted = [s for s in CAPTURE_SCOPES if s in set(scopes)]
    unknown = sorted(set(scopes) - set(CAPTURE_SCOPES))
    if unknown:
        raise Invalid(
            f"Unknown scope {', '.join(unknown)}; scopes are {', '.join(CAPTURE_SCOPES)}."
        )
    if not {"photos", "clips"} & set(wanted):
        raise Invalid("Permission must cover photos, clips or both.")
    if not evidence.strip():
        raise Invalid(
            "Permission needs evidence: the signed sheet, the form id, or a note of who "
            "agreed and how, so it can be shown later."
        )
    if source == "signature" and signature_png is None:
        raise Invalid("A signed permission needs the customer's signature image.")
    granted = granted_at or now
    if granted > now + dt.timedelta(minutes=5):
        raise Invalid("Permission cannot be given in the future; check the date and time.")
    check_plausible(granted, what="The date permission was given", now=now)
    existing = active_capture_consent(session=session, tenant_id=tenant.id, customer_id=customer.id)
    if existing is not None:
        raise Conflict(
            f"This customer already gave permission on {existing.granted_at:%Y-%m-%d}; "
            f"withdraw it first to record a new one."
        )
    signature_path = None
    if signature_png is not None:
        _check_signature(signature_png)
        signature_path = storage.new_relative_path("originals", tenant.id, ".png", now=now)
        storage.write_bytes(signature_path, signature_png)
    record = CaptureConsent(
        tenant_id=tenant.id,
        customer_id=customer.id,
        source=source,
        evidence=evidence.strip()[:2000],
        scopes=",".join(wanted),
        signature_path=signature_path,
        recorded_by=actor.label[:100] if actor else None,
        granted_at=granted,
        recorded_at=now,
    )
    session.add(record)
    session.flush()
    audit_log.record(
        session,
        actor,
        "capture_consent.recorded",
        f"customer:{customer.id}",
        {"capture_consent_id": record.id, "source": source, "scopes": wanted},
    )
    return record


def withdraw_capture_consent(
    *,
    session: Session,
    tenant_id: int,
    customer_id: int,
    evidence: str | None,
    now: dt.datetime,
    actor: Actor | None = None,
) -> CaptureConsent | None:
    """Withdraw the active permission (kept as evidence); None when there was none."""
    record = active_capture_consent(session=session, tenant_id=tenant_id, customer_id=customer_id)
    if record is None:
        return None
    record.withdrawn_at = now
    record.withdraw_evidence = (evidence or "").strip()[:2000] or None
    session.flush()
    audit_log.record(
        session,
        actor,
        "capture_consent.withdrawn",
        f"customer:{customer_id}",
        {"capture_consent_id": record.id},
    )
    return record


def require_capture(
    *, session: Session, tenant: Tenant, customer_id: int, kind: str | None = None
) -> None:
    """Refuse media of a customer's visit without their permission (when the company asks
    for it): a photo needs the photos scope, a clip the clips scope."""
    if not tenant.capture_consent_required:
        return
    record = active_capture_consent(session=session, tenant_id=tenant.id, customer_id=customer_id)
    if record is None:
        raise Invalid(
            "The customer has not given permission to photograph or film their home; "
            "record their capture consent first (the staff phone can take it on the spot)."
        )
    needed = {"photo": "photos", "clip": "clips"}.get(kind or "")
    if needed and needed not in record.scope_list:
        what = "photographed" if needed == "photos" else "filmed"
        raise Invalid(
            f"The customer's permission does not cover being {what}; record a new capture "
            f"consent that includes {needed}."
        )


def marketing_allowed(*, session: Session, tenant_id: int, customer_id: int) -> bool:
    record = active_capture_consent(session=session, tenant_id=tenant_id, customer_id=customer_id)
    return record is not None and "marketing" in record.scope_list


def check_marketing_use(*, session: Session, tenant_id: int, customer_id: int) -> None:
    """Refuse a customer's photo in marketing (a campaign's picture) without that scope."""
    if not marketing_allowed(session=session, tenant_id=tenant_id, customer_id=customer_id):
        raise Invalid(
            "This photo's customer has not allowed their photos to be used in marketing; "
            "choose another photo, or record a capture consent that includes marketing."
        )
