"""Users, their sessions and one-time sign-in links."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huifang.db import Base, BigId, TimestampMixin


class User(TimestampMixin, Base):
    """A person of a company who signs in: owner, office or staff (``access.roles``)."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "phone"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(50))
    # E.164, the sign-in name: office people know their own mobile number by heart.
    phone: Mapped[str] = mapped_column(String(20), index=True)
    # A staff user is the staff card whose visits they see (visits.models.Staff).
    staff_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff.id", ondelete="SET NULL"), default=None
    )
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class SignInLink(Base):
    """A one-time link that signs a user in (and sets a password, for the office)."""

    __tablename__ = "sign_in_links"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column()
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class UserSession(Base):
    """A signed-in browser. The cookie holds a random token; only its hash is kept here, so
    revoking is deleting nothing the browser holds: ``revoked_at`` set, the next request is
    signed out."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The form token of this session's pages (double-submit, fastapi-csrf-protect's cookie).
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column()
    expires_at: Mapped[dt.datetime] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    user_agent: Mapped[str] = mapped_column(String(200), default="")
