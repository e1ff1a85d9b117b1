"""Consent for many customers at once, on one piece of evidence (a signed service contract,
the sign-up sheet of an event), e.g. every customer of one import.

Each customer gets a consent record of their own in the ledger, with the shared evidence,
so the ledger, the export and the gate see it exactly as if it had been recorded on the
customer's page. What compliance demands, and so what this refuses, customer by customer:

- **opted out** (an active suppression they chose: a "T" reply, a call): refused. A bulk
  action never overrides a person's own "stop"; the office lifts the opt-out on the
  customer's page (when the customer asks to hear from the company again) and records
  their new consent there, with evidence of its own.
- **revoked after the evidence** (they withdrew consent, or opted out and back in, after
  the date the evidence was signed): refused; the customer's later word stands over an
  older paper. Evidence signed after the withdrawal is accepted.
- **already consenting**: left as they are (their existing record stays the one shown).
- a number that merely cannot take SMS (``unreachable``) is no choice of the customer's:
  consent is recorded, and sending stays stopped until the number works.

Numbers are locked in one order (as the gate locks them), so an opt-out arriving meanwhile
is either seen here or comes after, and revokes what was recorded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from compliance import audit_log
from compliance.models import CONSENT_SOURCES, ConsentRecord, Suppression
from compliance.service import NOT_A_CHOICE, _lock_numbers
from customers.models import Customer
from huifang.dates import check_plausible
from huifang.errors import Invalid
from tenancy.models import Tenant

MAX_CUSTOMERS = 20_000
RECORDED = "recorded"
ALREADY = "already_consented"
OPTED_OUT = "refused_opted_out"
REVOKED_LATER = "refused_revoked_later"
UNKNOWN = "not_found"
OUTCOMES = (RECORDED, ALREADY, OPTED_OUT, REVOKED_LATER, UNKNOWN)


@dataclass(frozen=True)
class BulkOutcome:
    customer_id: int
    outcome: str
    consent_id: int | None = None
    reason: str | None = None


def record_bulk_consent(
    *,
    session: Session,
    tenant: Tenant,
    customer_ids: Sequence[int],
    source: str,
    evidence: str,
    granted_at: dt.datetime,
    now: dt.datetime,
    actor: audit_log.Actor | None = None,
) -> list[BulkOutcome]:
    """Record consent for each customer on the one piece of evidence; an outcome each."""
    if source not in CONSENT_SOURCES:
        raise Invalid(
            f"Say how consent was given: source must be one of {', '.join(CONSENT_SOURCES)}."
        )
    evidence = evidence.strip()
    if not evidence:
        raise Invalid(
            "Consent needs evidence: name the signed contract or sheet (its number, "
            "date, where it is kept), so it can be shown later."
        )
    if granted_at > now + dt.timedelta(minutes=5):
        raise Invalid("Consent cannot be given in the future; check the date and time.")
    check_plausible(granted_at, what="The date consent was given", now=now)
    wanted = list(dict.fromkeys(customer_ids))
    if not wanted:
        raise Invalid("Name at least one customer.")
    if len(wanted) > MAX_CUSTOMERS:
        raise Invalid(
            f"{len(wanted)} customers at once is too many; send at most "
            f"{MAX_CUSTOMERS} per request."
        )

    phone_of: dict[int, str] = {}
    for start in range(0, len(wanted), 1000):
        phone_of.update(
            (cid, phone)
            for cid, phone in session.execute(
                select(Customer.id, Customer.phone).where(
                    Customer.tenant_id == tenant.id, Customer.id.in_(wanted[start : start + 1000])
                )
            )
        )
    phones = sorted(set(phone_of.values()))
    _lock_numbers(session, [(tenant.id, phone) for phone in phones])

    consenting: set[str] = set()
    opted_out: set[str] = set()
    last_revoked: dict[str, dt.datetime] = {}
    for start in range(0, len(phones), 1000):
        part = phones[start : start + 1000]
        consenting.update(
            session.scalars(
                select(ConsentRecord.phone).where(
                    ConsentRecord.tenant_id == tenant.id,
                    ConsentRecord.phone.in_(part),
                    ConsentRecord.revoked_at.is_(None),
                )
            )
        )
        opted_out.update(
            session.scalars(
                select(Suppression.phone).where(
                    Suppression.tenant_id == tenant.id,
                    Suppression.phone.in_(part),
                    Suppression.signature == tenant.signature,
                    Suppression.lifted_at.is_(None),
                    Suppression.reason.not_in(NOT_A_CHOICE),
                )
            )
        )
        for phone, revoked in session.execute(
            select(ConsentRecord.phone, func.max(ConsentRecord.revoked_at))
            .where(
                ConsentRecord.tenant_id == tenant.id,
                ConsentRecord.phone.in_(part),
                ConsentRecord.revoked_at.is_not(None),
            )
            .group_by(ConsentRecord.phone)
        ):
            if revoked is not None:
                last_revoked[phone] = revoked
        # An opt-out that was lifted since counts as a withdrawal at the time it was made.
        for phone, created in session.execute(
            select(Suppression.phone, func.max(Suppression.created_at))
            .where(
                Suppression.tenant_id == tenant.id,
                Suppression.phone.in_(part),
                Suppression.signature == tenant.signature,
                Suppression.reason.not_in(NOT_A_CHOICE),
            )
            .group_by(Suppression.phone)
        ):
            if phone not in last_revoked or last_revoked[phone] < created:
                last_revoked[phone] = created

    outcomes: list[BulkOutcome] = []
    new: list[dict[str, object]] = []
    seen_phones: set[str] = set()
    for customer_id in wanted:
        found = phone_of.get(customer_id)
        if found is None:
            outcomes.append(
                BulkOutcome(
                    customer_id, UNKNOWN, reason="There is no such customer in this company."
                )
            )
            continue
        phone = found
        if phone in opted_out:
            outcomes.append(
                BulkOutcome(
                    customer_id,
                    OPTED_OUT,
                    reason=(
                        "The customer opted out; lift the opt-out on their page when they ask "
                        "to hear "
                        "from you again, and record their consent there."
                    ),
                )
            )
        elif phone in last_revoked and last_revoked[phone] > granted_at:
            outcomes.append(
                BulkOutcome(
                    customer_id,
                    REVOKED_LATER,
                    reason=(
                        f"The customer withdrew consent on {last_revoked[phone]:%Y-%m-%d}, "
                        "after this "
                        "evidence was signed; record newer evidence on their page."
                    ),
                )
            )
        elif phone in consenting or phone in seen_phones:
            outcomes.append(BulkOutcome(customer_id, ALREADY))
        else:
            seen_phones.add(phone)
            new.append(
                {
                    "tenant_id": tenant.id,
                    "customer_id": customer_id,
                    "phone": phone,
                    "source": source,
                    "evidence": evidence,
                    "granted_at": granted_at,
                    "recorded_at": now,
                }
            )
            outcomes.append(BulkOutcome(customer_id, RECORDED))
    if new:
        session.execute(insert(cast(Table, ConsentRecord.__table__)), new)
        ids: dict[int | None, int] = {}
        for start in range(0, len(new), 1000):
            ids.update(
                (cid, rid)
                for cid, rid in session.execute(
                    select(ConsentRecord.customer_id, ConsentRecord.id).where(
                        ConsentRecord.tenant_id == tenant.id,
                        ConsentRecord.recorded_at == now,
                        ConsentRecord.revoked_at.is_(None),
                        ConsentRecord.phone.in_(
                            [row["phone"] for row in new[start : start + 1000]]
                        ),
                    )
                )
            )
        outcomes = [
            BulkOutcome(o.customer_id, o.outcome, ids.get(o.customer_id), o.reason)
            if o.outcome == RECORDED
            else o
            for o in outcomes
        ]
    audit_log.record(
        session,
        actor,
        "consent.bulk_recorded",
        f"customers:{len(wanted)}",
        {
            "source": source,
            "evidence": evidence,
            "granted_at": granted_at.isoformat(),
            **count(outcomes),
        },
    )
    return outcomes


def count(outcomes: Sequence[BulkOutcome]) -> dict[str, int]:
    """How many customers ended in each outcome, in a fixed order."""
    counts = {name: 0 for name in OUTCOMES}
    for outcome in outcomes:
        counts[outcome.outcome] += 1
    return counts
