"""A customer is a household a company serves, reached by one mobile number."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from huifang.db import Base, BigId, TimestampMixin


class Customer(TimestampMixin, Base):
    __tablename__ = "customers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "phone"),
        # The list, newest first, a page at a time: read from the index, not sorted.
        Index("ix_customers_tenant_newest", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # E.164, normalised on the way in (customers.phones); the idempotency key of imports.
    phone: Mapped[str] = mapped_column(String(20))
    region: Mapped[str | None] = mapped_column(String(50), default=None)
    city: Mapped[str | None] = mapped_column(String(50), default=None)
    # Where visits go (street, building, flat), as the office or the booking page took it.
    address: Mapped[str | None] = mapped_column(String(200), default=None)
    # IANA zone used for quiet hours and local send times.
    timezone: Mapped[str] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    # The language of automatic messages (confirmations, answers); None: the company's.
    language: Mapped[str | None] = mapped_column(String(8), default=None)

    tag_rows: Mapped[list[CustomerTag]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        order_by="CustomerTag.tag",
    )

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]


class CustomerTag(Base):
    """One tag of one customer; a table rather than a JSON list so audiences can filter in SQL."""

    __tablename__ = "customer_tags"
    __table_args__ = (
        UniqueConstraint("customer_id", "tag"),
        Index("ix_customer_tags_tenant_tag", "tenant_id", "tag"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(50))


# --- import jobs (customers.import_jobs) ---------------------------------------------------

# ImportJob.status
QUEUED = "queued"  # stored, waiting for a worker
RUNNING = "running"  # a worker is reading or writing it (heartbeat_at says it is alive)
DONE = "done"  # every row has its outcome
FAILED = "failed"  # the file cannot be read at all (error says why); nothing was written
INTERRUPTED = "interrupted"  # the worker stopped too often; rows_done rows are in
IMPORT_JOB_STATES = (QUEUED, RUNNING, DONE, FAILED, INTERRUPTED)


class ImportJob(Base):
    """A customer list imported in the background, its progress and its outcome.

    The file is kept in the row until the job ends, so a job whose worker died (a restart,
    a lost task) is picked up again where it stopped: rows are committed a chunk at a time
    with their outcomes and ``rows_done``, and importing a row twice changes nothing.
    """

    __tablename__ = "import_jobs"
    __table_args__ = (
        Index("ix_import_jobs_tenant_newest", "tenant_id", "id"),
        Index("ix_import_jobs_status", "status", "heartbeat_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    filename: Mapped[str | None] = mapped_column(String(255), default=None)
    file_bytes: Mapped[int] = mapped_column(default=0)
    data: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    rows_total: Mapped[int | None] = mapped_column(default=None)
    rows_done: Mapped[int] = mapped_column(default=0)
    imported: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    # Who started it (the signed-in person or the API key), as shown in the audit log.
    created_by: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[dt.datetime] = mapped_column()
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class ImportJobRow(Base):
    """The outcome of one data row of an import job (the per-row report)."""

    __tablename__ = "import_job_rows"
    __table_args__ = (Index("ix_import_job_rows_job_line", "job_id", "line"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    job_id: Mapped[int] = mapped_column(ForeignKey("import_jobs.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column()
    status: Mapped[str] = mapped_column(String(16))  # imported | updated | unchanged | rejected
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), default=None
    )
    phone: Mapped[str | None] = mapped_column(String(20), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
