"""Customers: create, read, update, delete, and bulk upsert from imported lists."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, cast

import phonenumbers
from sqlalchemy import ColumnElement, Select, Table, or_, select
from sqlalchemy.orm import Session

from customers.importer import ImportedRow, collector_paused, read_customer_file
from customers.models import Customer, CustomerTag
from customers.phones import normalize_phone, timezone_for
from customers.schemas import CustomerUpdate
from huifang.db import Base, utcnow
from huifang.errors import Conflict, Invalid, NotFound
from huifang.pagination import PageParams, paginate
from huifang.sql import insert_rows, one_of
from tenancy import service as tenancy
from tenancy.models import Tenant

MAX_TAG_LENGTH = 50


def clean_tags(raw: Iterable[str]) -> list[str]:
    """Tags stripped, blanks dropped, duplicates removed, order kept."""
    seen: dict[str, None] = {}
    for tag in raw:
        tag = tag.strip()
        if not tag:
            continue
        if len(tag) > MAX_TAG_LENGTH:
            raise Invalid(f"The tag {tag[:20]!r}… is longer than {MAX_TAG_LENGTH} characters.")
        seen.setdefault(tag, None)
    return list(seen)


def _set_tags(customer: Customer, tags: Sequence[str]) -> None:
    wanted = clean_tags(tags)
    if wanted == customer.tags:
        return
    keep = {row.tag: row for row in customer.tag_rows}
    customer.tag_rows = [
        keep.get(tag) or CustomerTag(tenant_id=customer.tenant_id, tag=tag) for tag in wanted
    ]


def _resolve_timezone(tenant: Tenant, phone: str, timezone: str | None) -> str:
    if timezone:
        return tenancy.check_timezone(timezone)
    # A customer abroad keeps their own clock for quiet hours; otherwise the company's.
    if not phone.startswith(_country_prefix(tenant.phone_region)):
        return timezone_for(phone) or tenant.timezone
    return tenant.timezone


@functools.cache
def _country_prefix(region: str) -> str:
    """``+86`` for ``CN``: how the E.164 numbers of a company's own country begin."""
    return "+" + str(phonenumbers.country_code_for_region(region))


def _phone_taken(session: Session, tenant_id: int, phone: str, exclude: int | None) -> None:
    stmt = select(Customer.id).where(Customer.tenant_id == tenant_id, Customer.phone == phone)
    if exclude is not None:
        stmt = stmt.where(Customer.id != exclude)
    other = session.scalar(stmt)
    if other is not None:
        raise Conflict(f"Customer {other} already has the phone number {phone}.")


MAX_ADDRESS = 200


def clean_address(text: str | None) -> str | None:
    """An address as kept: one line, spaces collapsed; None for an empty one."""
    if text is None:
        return None
    if "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise Invalid("地址里有无法保存的字符，请删掉后重新输入。")
    line = " ".join(text.split())
    if len(line) > MAX_ADDRESS:
        raise Invalid(f"地址请控制在{MAX_ADDRESS}字以内。")
    return line or None


def create_customer(
    *,
    session: Session,
    tenant: Tenant,
    name: str,
    phone: str,
    region: str | None = None,
    city: str | None = None,
    address: str | None = None,
    timezone: str | None = None,
    tags: Sequence[str] = (),
    notes: str | None = None,
    language: str | None = None,
) -> Customer:
    """Create a customer; the phone is normalised to E.164 and must be unique in the company."""
    e164 = normalize_phone(phone, region=tenant.phone_region)
    _phone_taken(session, tenant.id, e164, exclude=None)
    customer = Customer(
        tenant_id=tenant.id,
        name=name.strip(),
        phone=e164,
        region=region,
        city=city,
        address=clean_address(address),
        timezone=_resolve_timezone(tenant, e164, timezone),
        notes=notes,
        language=tenancy.check_language(language) if language is not None else None,
    )
    _set_tags(customer, tags)
    session.add(customer)
    session.flush()
    return customer


def get_customer(*, session: Session, tenant_id: int, customer_id: int) -> Customer:
    """The customer, or NotFound when it does not exist in this tenant."""
    customer = session.get(Customer, customer_id)
    if customer is None or customer.tenant_id != tenant_id:
        raise NotFound(f"There is no customer {customer_id} in this company.")
    return customer


def customer_query(
    *,
    tenant_id: int,
    q: str | None = None,
    tag: str | None = None,
    region: str | None = None,
    city: str | None = None,
) -> Select[Any]:
    """Customers of a tenant matching the filters, newest first."""
    stmt = select(Customer).where(Customer.tenant_id == tenant_id)
    if q:
        pattern = f"%{q.strip()}%"
        digits = "".join(ch for ch in q if ch.isdigit())
        conditions: list[ColumnElement[bool]] = [Customer.name.ilike(pattern)]
        if digits:
            conditions.append(Customer.phone.contains(digits))
        stmt = stmt.where(or_(*conditions))
    if tag:
        stmt = stmt.where(
            Customer.id.in_(
                select(CustomerTag.customer_id).where(
                    CustomerTag.tenant_id == tenant_id, CustomerTag.tag == tag
                )
            )
        )
    if region:
        stmt = stmt.where(Customer.region == region)
    if city:
        stmt = stmt.where(Customer.city == city)
    return stmt.order_by(Customer.id.desc())


def list_customers(
    *,
    session: Session,
    tenant_id: int,
    page: PageParams,
    q: str | None = None,
    tag: str | None = None,
    region: str | None = None,
    city: str | None = None,
) -> tuple[list[Customer], int]:
    """One page of customers and the total matching."""
    stmt = customer_query(tenant_id=tenant_id, q=q, tag=tag, region=region, city=city)
    return paginate(session, stmt, page)


def update_customer(
    *,
    session: Session,
    tenant: Tenant,
    customer_id: int,
    changes: CustomerUpdate,
) -> Customer:
    """Apply the fields set in ``changes``; a new phone is normalised and must stay unique.
    Name, phone, time zone and tags set to null keep their value; the others are cleared."""
    customer = get_customer(session=session, tenant_id=tenant.id, customer_id=customer_id)
    given = changes.model_fields_set
    if changes.phone is not None:
        e164 = normalize_phone(changes.phone, region=tenant.phone_region)
        _phone_taken(session, tenant.id, e164, exclude=customer.id)
        customer.phone = e164
    if changes.timezone is not None:
        customer.timezone = tenancy.check_timezone(changes.timezone)
    if changes.name is not None:
        customer.name = changes.name.strip()
    if "language" in given:
        language = changes.language
        customer.language = None if language is None else tenancy.check_language(language)
    for attr in ("region", "city", "notes"):
        if attr in given:
            setattr(customer, attr, getattr(changes, attr))
    if "address" in given:
        customer.address = clean_address(changes.address)
    if changes.tags is not None:
        _set_tags(customer, changes.tags)
    customer.updated_at = utcnow()
    session.flush()
    return customer


def delete_customer(*, session: Session, tenant_id: int, customer_id: int) -> None:
    """Delete a customer with their tags and visits."""
    customer = get_customer(session=session, tenant_id=tenant_id, customer_id=customer_id)
    session.delete(customer)
    session.flush()


# --- bulk import -------------------------------------------------------------------------


class RowOutcome(NamedTuple):
    """What became of one data row of an import."""

    line: int
    status: str  # imported | updated | unchanged | rejected
    customer_id: int | None = None
    phone: str | None = None
    reason: str | None = None


IMPORT_BATCH = 1000
OUTCOME_STATUSES = ("imported", "updated", "unchanged", "rejected")


def count_outcomes(outcomes: Sequence[RowOutcome]) -> dict[str, int]:
    """How many rows ended in each status, in a fixed order."""
    counts = dict.fromkeys(OUTCOME_STATUSES, 0)
    for outcome in outcomes:
        counts[outcome.status] += 1
    return counts


def import_file(
    *,
    session: Session,
    tenant: Tenant,
    data: bytes,
    max_rows: int,
    progress: Callable[[int], None] | None = None,
) -> list[RowOutcome]:
    """Read a CSV or XLSX customer list and upsert it; one outcome per data row."""
    rows = read_customer_file(data, max_rows=max_rows)
    return upsert_rows(session=session, tenant=tenant, rows=rows, progress=progress)


# A valid import row: its place among the outcomes, the row, its name, phone (E.164),
# time zone and tags, cleaned.
_Valid = tuple[int, ImportedRow, str, str, str, tuple[str, ...]]


def upsert_rows(
    *,
    session: Session,
    tenant: Tenant,
    rows: Sequence[ImportedRow],
    progress: Callable[[int], None] | None = None,
    first_line_of: dict[str, int] | None = None,
) -> list[RowOutcome]:
    """Insert new customers and update existing ones, matched on the normalised phone.

    Idempotent: importing the same file twice reports every row ``unchanged``. Rows are
    validated one by one (a bad row never stops the others) and written in batches.
    ``first_line_of`` (phone → line) carries the numbers seen so far across calls, when a
    file is written a chunk at a time; it is updated.
    """
    with collector_paused():
        return _upsert_rows(session, tenant, rows, progress, first_line_of)


def _upsert_rows(
    session: Session,
    tenant: Tenant,
    rows: Sequence[ImportedRow],
    progress: Callable[[int], None] | None,
    first_line_of: dict[str, int] | None,
) -> list[RowOutcome]:
    # Each row's outcome at its place; a valid row's once it is written.
    outcomes: list[RowOutcome | None] = []
    valid: list[_Valid] = []
    first_line_of = {} if first_line_of is None else first_line_of
    region = tenant.phone_region
    for row in rows:
        try:
            name = row.name.strip()
            if not name:
                raise Invalid("The name is empty.")
            if len(name) > 100:
                raise Invalid("The name is longer than 100 characters.")
            # the columns are 50 wide, as in CustomerCreate
            if row.region and len(row.region) > 50:
                raise Invalid("The region is longer than 50 characters.")
            if row.city and len(row.city) > 50:
                raise Invalid("The city is longer than 50 characters.")
            e164 = normalize_phone(row.phone, region=region)
            zone = _resolve_timezone(tenant, e164, row.timezone)
            tags = tuple(clean_tags(row.tags)) if row.tags else ()
        except Invalid as exc:
            outcomes.append(RowOutcome(row.line, "rejected", reason=exc.detail))
            continue
        if e164 in first_line_of:
            outcomes.append(
                RowOutcome(
                    row.line,
                    "rejected",
                    phone=e164,
                    reason=f"Same phone number as line {first_line_of[e164]}; that line was used.",
                )
            )
            continue
        first_line_of[e164] = row.line
        valid.append((len(outcomes), row, name, e164, zone, tags))
        outcomes.append(None)
    if progress:
        progress(len(rows) - len(valid))

    for start in range(0, len(valid), IMPORT_BATCH):
        batch = valid[start : start + IMPORT_BATCH]
        existing = {
            c.phone: c
            for c in session.scalars(
                select(Customer).where(
                    Customer.tenant_id == tenant.id,
                    one_of(session, Customer.phone, [item[3] for item in batch]),
                )
            )
        }
        created: list[_Valid] = []
        for item in batch:
            at, row, _, e164, zone, tags = item
            customer = existing.get(e164)
            if customer is None:
                created.append(item)
                continue
            status = "updated" if _merge(customer, row, zone, tags) else "unchanged"
            outcomes[at] = RowOutcome(row.line, status, customer.id, e164)
        session.flush()
        if created:
            ids = _insert_new(session, tenant.id, created)
            for at, row, _, e164, _, _ in created:
                outcomes[at] = RowOutcome(row.line, "imported", ids[e164], e164)
        if progress:
            progress(len(batch))
    if None in outcomes:
        raise AssertionError("an import row was left without an outcome")
    return cast(list[RowOutcome], outcomes)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


_NEW_CUSTOMER = ("name", "phone", "region", "city", "timezone", "notes")


def _insert_new(
    session: Session,
    tenant_id: int,
    created: Sequence[_Valid],
) -> dict[str, int]:
    """Insert new customers and their tags, each in one statement; their ids by phone.

    Plain rows to the driver (``huifang.sql.insert_rows``), not one ORM object or one
    parameter dict per row: for a 10,000-row list that per-row work cost more than the
    database's. The ids come back with RETURNING, for the tags.
    """
    now = utcnow()
    ids: dict[str, int] = {
        phone: customer_id
        for customer_id, phone in insert_rows(
            session,
            _table(Customer),
            _NEW_CUSTOMER,
            [
                (name, e164, row.region, row.city, zone, row.notes)
                for _, row, name, e164, zone, _ in created
            ],
            same={"tenant_id": tenant_id, "created_at": now, "updated_at": now},
            returning=("id", "phone"),
        )
    }
    tags = [(ids[e164], tag) for _, _, _, e164, _, cleaned in created for tag in cleaned]
    insert_rows(
        session, _table(CustomerTag), ("customer_id", "tag"), tags, same={"tenant_id": tenant_id}
    )
    return ids


def _merge(customer: Customer, row: ImportedRow, zone: str, tags: Sequence[str]) -> bool:
    """Fill an existing customer from an import row; True when anything changed.

    Blank cells never erase what is stored, and tags are added, never removed:
    an import adds to what the office already knows.
    """
    changed = False
    for attr, value in (
        ("name", row.name.strip()),
        ("region", row.region),
        ("city", row.city),
        ("notes", row.notes),
    ):
        if value and getattr(customer, attr) != value:
            setattr(customer, attr, value)
            changed = True
    if row.timezone and customer.timezone != zone:
        customer.timezone = zone
        changed = True
    new_tags = [t for t in tags if t not in customer.tags]
    if new_tags:
        _set_tags(customer, customer.tags + new_tags)
        changed = True
    if changed:
        customer.updated_at = utcnow()
    return changed


def names_of(*, session: Session, tenant_id: int, customer_ids: Sequence[int]) -> dict[int, str]:
    """The names of the company's customers among ``customer_ids`` (a page's worth)."""
    if not customer_ids:
        return {}
    return {
        cid: name
        for cid, name in session.execute(
            select(Customer.id, Customer.name).where(
                Customer.tenant_id == tenant_id, Customer.id.in_(list(customer_ids))
            )
        )
    }
