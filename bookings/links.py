"""Short links (``/b/{token}``): one per customer and cause, clicks counted once an hour.

A ``ShortLink`` is made for each (customer, cause) a message is sent for — a visit report,
a campaign — and its token is the only thing in the URL. Clicks count each visitor (client
address and user agent, hashed) once an hour.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bookings.models import LinkVisitor, ShortLink
from customers.models import Customer
from huifang import rls
from huifang.db import dialect_of, insert_or_skip
from huifang.settings import get_settings
from tenancy.models import Tenant

CLICK_EVERY = dt.timedelta(hours=1)  # a visitor's openings within it are one click


def _token() -> str:
    return secrets.token_urlsafe(12)  # 96 bits: unguessable, short enough for an SMS


def link_for(
    *,
    session: Session,
    tenant: Tenant,
    customer: Customer,
    source_type: str,
    source_id: str,
    now: dt.datetime,
    service_type: str | None = None,
    message_id: int | None = None,
) -> ShortLink:
    """The customer's booking link for this cause, made once."""
    link = session.scalars(
        select(ShortLink).where(
            ShortLink.tenant_id == tenant.id,
            ShortLink.customer_id == customer.id,
            ShortLink.source_type == source_type,
            ShortLink.source_id == source_id,
        )
    ).first()
    if link is None:
        link = ShortLink(
            tenant_id=tenant.id,
            token=_token(),
            customer_id=customer.id,
            source_type=source_type,
            source_id=source_id,
            service_type=service_type,
            message_id=message_id,
            created_at=now,
        )
        session.add(link)
        session.flush()
    elif message_id is not None and link.message_id is None:
        link.message_id = message_id
    return link


def url(link: ShortLink) -> str:
    return f"{get_settings().public_url}/b/{link.token}"


def resolve(*, session: Session, token: str) -> ShortLink | None:
    """The short link behind ``/b/{token}``; None for a token that is none of ours.

    A report page's Book button carries the report's own token instead: the booking pages
    ask ``reports.service.booking_link`` for that one (reports build on bookings).
    """
    if not (8 <= len(token) <= 32) or not token.replace("-", "").replace("_", "").isalnum():
        return None
    link = session.scalars(select(ShortLink).where(ShortLink.token == token)).first()
    if link is not None:  # the rest of the transaction: that company's rows only
        rls.scope_to_tenant(session, link.tenant_id)
    return link


def visitor_of(*, address: str, user_agent: str) -> str:
    """Who opened a link, as far as a click count needs: keyed by the secret, so the stored
    value gives back neither the address nor the device (no cookie to ask consent for)."""
    key = get_settings().secret_key.encode()
    digest = hmac.new(key, f"{address}\n{user_agent}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def click(*, session: Session, link: ShortLink, visitor: str, now: dt.datetime) -> bool:
    """Count an opening of the link, once per visitor an hour; True when it counted.

    One ``INSERT … ON CONFLICT DO UPDATE … WHERE`` decides, so two openings at once by one
    visitor count once.
    """
    table = LinkVisitor.__table__
    statement = insert_or_skip(dialect_of(session), table).values(
        link_id=link.id, visitor=visitor, tenant_id=link.tenant_id, counted_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=["link_id", "visitor"],
        set_={"counted_at": now},
        where=table.c.counted_at <= now - CLICK_EVERY,
    ).returning(table.c.link_id)
    if session.execute(statement).first() is None:
        return False
    session.execute(
        update(ShortLink)
        .where(ShortLink.id == link.id)
        .values(
            clicks=ShortLink.clicks + 1,
            first_clicked_at=func.coalesce(ShortLink.first_clicked_at, now),
            last_clicked_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.expire(link, ["clicks", "first_clicked_at", "last_clicked_at"])
    return True
