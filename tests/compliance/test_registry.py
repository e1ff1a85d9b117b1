"""The compliance screen's lists: suppressions (list, add, lift), the consent ledger with
filters and export, and the audit log with filters."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from access.actors import Actor
from access.models import AuditEntry
from access.roles import Role
from compliance import audit_log, registry
from compliance import service as compliance
from compliance.models import CompliancePolicy
from compliance.schemas import PolicyUpdate
from customers import service as customers
from huifang.db import utcnow
from huifang.errors import Conflict, Invalid, NotFound
from huifang.pagination import PageParams
from tenancy import service as tenancy

NOW = utcnow()
PAGE = PageParams(limit=50)


def test_suppressions_add_list_and_lift(session, account, other_account):
    tenant = account.tenant
    wang = customers.create_customer(
        session=session, tenant=tenant, name="王女士", phone="13800138000"
    )
    compliance.record_consent(
        session=session,
        tenant_id=tenant.id,
        customer=wang,
        source="in_person",
        evidence="纸质",
        granted_at=NOW,
        now=NOW,
    )
    added = registry.add_suppression(
        session=session, tenant=tenant, phone="138 0013 8000", detail="来电要求", now=NOW
    )
    assert (added.phone, added.reason) == ("+8613800138000", "manual")
    assert (
        compliance.active_consent(session=session, tenant_id=tenant.id, phone=wang.phone) is None
    )  # an opt-out revokes consent
    stranger = registry.add_suppression(
        session=session, tenant=tenant, phone="13900139000", detail=None, now=NOW
    )  # not a customer: still listed
    with pytest.raises(Conflict, match="already on the suppression list"):
        registry.add_suppression(
            session=session, tenant=tenant, phone="+8613800138000", detail=None, now=NOW
        )
    with pytest.raises(Invalid):
        registry.add_suppression(session=session, tenant=tenant, phone="12", detail=None, now=NOW)

    rows, total = registry.list_suppressions(session=session, tenant=tenant, page=PAGE)
    assert total == 2
    assert [(r.suppression.id, r.customer_name) for r in rows] == [
        (stranger.id, None),
        (added.id, "王女士"),
    ]
    assert (
        registry.list_suppressions(session=session, tenant=tenant, page=PAGE, phone="13800138000")[
            1
        ]
        == 1
    )
    assert (
        registry.list_suppressions(session=session, tenant=other_account.tenant, page=PAGE)[1] == 0
    )

    registry.lift_suppression(session=session, tenant=tenant, suppression_id=added.id, now=NOW)
    assert compliance.active_suppression(session=session, tenant=tenant, phone=wang.phone) is None
    with pytest.raises(Conflict, match="already lifted"):
        registry.lift_suppression(session=session, tenant=tenant, suppression_id=added.id, now=NOW)
    with pytest.raises(NotFound):
        registry.lift_suppression(
            session=session, tenant=other_account.tenant, suppression_id=stranger.id, now=NOW
        )
    assert [
        r.suppression.id
        for r in registry.list_suppressions(
            session=session, tenant=tenant, page=PAGE, state="lifted"
        )[0]
    ] == [added.id]
    assert (
        registry.list_suppressions(session=session, tenant=tenant, page=PAGE, state="all")[1] == 2
    )


def test_suppression_routes(client, account):
    made = client.post(
        "/v1/suppressions", headers=account.headers, json={"phone": "13800138000", "detail": "来电"}
    )
    assert made.status_code == 201, made.text
    again = client.post("/v1/suppressions", headers=account.headers, json={"phone": "13800138000"})
    assert again.status_code == 409
    listed = client.get("/v1/suppressions?reason=manual", headers=account.headers).json()
    assert [s["phone"] for s in listed["items"]] == ["+8613800138000"]
    lifted = client.delete(f"/v1/suppressions/{made.json()['id']}", headers=account.headers)
    assert lifted.status_code == 200 and lifted.json()["lifted_at"] is not None
    assert client.get("/v1/suppressions", headers=account.headers).json()["total"] == 0
    assert client.get("/v1/suppressions?state=gone", headers=account.headers).status_code == 422


def test_ledger_filters_and_export(session, account, client):
    tenant = account.tenant
    people = [
        customers.create_customer(
            session=session, tenant=tenant, name=f"客户{i}", phone=f"1390000{1000 + i}"
        )
        for i in range(4)
    ]
    for i, person in enumerate(people):
        compliance.record_consent(
            session=session,
            tenant_id=tenant.id,
            customer=person,
            source="in_person" if i % 2 else "web_form",
            evidence=f"合同 100%-{i}",
            granted_at=NOW - dt.timedelta(days=10 * i),
            now=NOW,
        )
    compliance.revoke_consent(
        session=session,
        tenant_id=tenant.id,
        phone=people[0].phone,
        source="reply",
        evidence="T",
        now=NOW,
    )

    def find(**kw: object) -> list[int | None]:
        records, total = registry.list_ledger(
            session=session, tenant=tenant, page=PAGE, where=registry.LedgerFilter(**kw)
        )  # type: ignore[arg-type]
        assert total == len(records)
        return [r.customer_id for r in records]

    ids = [p.id for p in people]
    assert find() == ids[::-1]  # newest first
    assert find(state="revoked") == [ids[0]]
    assert find(state="active") == ids[:0:-1]
    assert find(source="web_form") == [ids[2], ids[0]]
    assert find(phone="139 0000 1001") == [ids[1]]
    assert find(customer_id=ids[3]) == [ids[3]]
    assert find(evidence="100%-2") == [ids[2]]  # % is text, not a wildcard
    assert find(granted_from=NOW - dt.timedelta(days=15)) == [ids[1], ids[0]]
    assert find(granted_until=NOW - dt.timedelta(days=15)) == [ids[3], ids[2]]
    with pytest.raises(Invalid):
        find(granted_from=NOW, granted_until=NOW - dt.timedelta(days=1))

    text = registry.export_ledger(
        session=session, tenant=tenant, where=registry.LedgerFilter(state="active")
    )
    assert text.startswith("\ufeff")
    table = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert [int(r["customer_id"]) for r in table] == ids[1:]  # oldest first
    assert table[0]["evidence"] == "合同 100%-1"

    page = client.get("/v1/consents?state=revoked", headers=account.headers).json()
    assert [r["customer_id"] for r in page["items"]] == [ids[0]]
    assert page["items"][0]["revoke_evidence"] == "T"
    whole = client.get("/v1/consents/export", headers=account.headers)
    assert whole.headers["content-type"].startswith("text/csv")
    assert len(whole.text.strip().splitlines()) == 5
    assert (
        client.get("/v1/consents?granted_from=2026-01-01", headers=account.headers).status_code
        == 422
    )  # no offset: ambiguous


def test_policy_lives_where_it_did(client, account, session):
    changed = client.put(
        "/v1/compliance/policy",
        headers=account.headers,
        json={"marketing_cap": 3, "window_start": "09:00"},
    )
    assert changed.status_code == 200 and changed.json()["window_start"] == "09:00"
    assert session.get(CompliancePolicy, account.tenant.id).marketing_cap == 3


def _entry(
    tenant_id: int,
    at: dt.datetime,
    name: str,
    action: str,
    target: str,
    kind: str = "user",
    actor_id: int = 1,
) -> AuditEntry:
    return AuditEntry(
        tenant_id=tenant_id,
        at=at,
        actor_kind=kind,
        actor_id=actor_id,
        actor_name=name,
        action=action,
        target=target,
        detail={"n": 1},
    )


def test_audit_log_filters(session, account, other_account, client):
    tenant_id = account.tenant.id
    session.add_all(
        [
            _entry(
                tenant_id, NOW - dt.timedelta(days=3), "前台小刘", "consent.recorded", "customer:12"
            ),
            _entry(
                tenant_id,
                NOW - dt.timedelta(days=2),
                "前台小刘",
                "consent.bulk_recorded",
                "customers:40",
            ),
            _entry(
                tenant_id,
                NOW - dt.timedelta(days=1),
                "老板",
                "policy.updated",
                "policy",
                actor_id=2,
            ),
            _entry(
                tenant_id,
                NOW,
                "默认密钥",
                "suppression.added",
                "customer:12",
                kind="api_key",
                actor_id=5,
            ),
            _entry(other_account.tenant.id, NOW, "别家", "policy.updated", "policy"),
        ]
    )
    session.flush()

    def find(**kw: object) -> list[str]:
        entries, total = audit_log.list_audit(
            session=session, tenant_id=tenant_id, page=PAGE, where=audit_log.AuditFilter(**kw)
        )  # type: ignore[arg-type]
        assert total == len(entries)
        return [e.action for e in entries]

    assert find() == [
        "suppression.added",
        "policy.updated",
        "consent.bulk_recorded",
        "consent.recorded",
    ]
    assert find(actor="小刘") == ["consent.bulk_recorded", "consent.recorded"]
    assert find(actor="api_key:5") == ["suppression.added"]
    assert find(action="consent.") == ["consent.bulk_recorded", "consent.recorded"]
    assert find(action="consent") == []  # exact unless it ends in a dot
    assert find(target="customer:12") == ["suppression.added", "consent.recorded"]
    assert find(target="customer") == ["suppression.added", "consent.recorded"]
    assert find(target="policy") == ["policy.updated"]
    assert find(since=NOW - dt.timedelta(days=2, hours=1), until=NOW - dt.timedelta(hours=1)) == [
        "policy.updated",
        "consent.bulk_recorded",
    ]
    with pytest.raises(Invalid):
        find(since=NOW, until=NOW)

    page = client.get(
        "/v1/audit-log", params={"action": "policy.updated"}, headers=account.headers
    ).json()
    assert page["total"] == 1 and page["items"][0]["actor_name"] == "老板"
    assert page["items"][0]["detail"] == {"n": 1}
    backwards = client.get(
        "/v1/audit-log",
        params={"since": "2026-12-06T00:00:00+08:00", "until": "2026-12-01T00:00:00+08:00"},
        headers=account.headers,
    )
    assert backwards.status_code == 422 and "before its end" in backwards.json()["detail"]


def test_recording_needs_an_actor(session, account):
    audit_log.record(session, None, "consent.recorded", "customer:1", {})
    assert audit_log.list_audit(session=session, tenant_id=account.tenant.id, page=PAGE)[1] == 0


def Person(tenant_id: int) -> Actor:
    return Actor(kind="user", id=3, name="前台小刘", tenant_id=tenant_id, role=Role.OFFICE)


def test_customer_page_state_opt_out_and_in_by_the_office_are_audited(
    session, account, other_account
):
    tenant = account.tenant
    person = Person(tenant_id=tenant.id)
    wang = customers.create_customer(
        session=session, tenant=tenant, name="王女士", phone="13800138000"
    )
    compliance.record_consent(
        session=session,
        tenant_id=tenant.id,
        customer=wang,
        source="in_person",
        evidence="上门签字 #7",
        granted_at=NOW,
        now=NOW,
        actor=person,
    )
    state = registry.customer_compliance(
        session=session, tenant=tenant, customer_id=wang.id, now=NOW
    )
    assert [c.evidence for c in state.consents] == ["上门签字 #7"]
    assert state.suppression is None and state.reach["service"]["can_receive"] is True

    later = NOW + dt.timedelta(minutes=1)
    assert registry.opt_out_customer(
        session=session,
        tenant=tenant,
        customer_id=wang.id,
        detail="来电要求停止",
        now=later,
        actor=person,
    )
    assert not registry.opt_out_customer(
        session=session,
        tenant=tenant,
        customer_id=wang.id,
        detail="又来电",
        now=later,
        actor=person,
    )
    state = registry.customer_compliance(
        session=session, tenant=tenant, customer_id=wang.id, now=later
    )
    assert state.suppression is not None and state.suppression.detail == "来电要求停止"
    assert state.consents[0].revoked_at == later  # kept, revoked, as evidence
    assert state.reach["marketing"]["can_receive"] is False

    assert registry.opt_in_customer(
        session=session, tenant=tenant, customer_id=wang.id, now=later, actor=person
    )
    assert not registry.opt_in_customer(
        session=session, tenant=tenant, customer_id=wang.id, now=later, actor=person
    )
    with pytest.raises(NotFound):
        registry.opt_out_customer(
            session=session,
            tenant=other_account.tenant,
            customer_id=wang.id,
            detail=None,
            now=later,
        )
    compliance.update_policy(
        session=session, tenant_id=tenant.id, changes=PolicyUpdate(marketing_cap=4), actor=person
    )

    entries, _ = audit_log.list_audit(session=session, tenant_id=tenant.id, page=PAGE)
    assert [(e.action, e.target) for e in entries][::-1] == [
        ("consent.recorded", f"customer:{wang.id}"),
        ("suppression.added", "phone:+8613800138000"),  # its consent revocation is part of it
        ("suppression.lifted", "phone:+8613800138000"),
        ("policy.updated", "policy"),
    ]
    assert all(e.actor_name == "前台小刘" for e in entries)


def test_api_changes_are_audited_with_their_key_and_roles_hold(client, session, account):
    wang = customers.create_customer(
        session=session, tenant=account.tenant, name="王女士", phone="13800138000"
    )
    session.commit()
    assert (
        client.post(
            f"/v1/customers/{wang.id}/opt-out", headers=account.headers, json={"detail": "来电"}
        ).status_code
        == 204
    )
    assert (
        client.post(
            "/v1/consents/bulk",
            headers=account.headers,
            json={"customer_ids": [wang.id], "evidence": "合同"},
        ).json()["refused_opted_out"]
        == 1
    )
    log = client.get("/v1/audit-log", headers=account.headers).json()
    assert [(e["action"], e["actor_kind"], e["actor_name"]) for e in log["items"]] == [
        ("consent.bulk_recorded", "api_key", "API key api"),
        ("suppression.added", "api_key", "API key api"),
    ]

    _, office_key = tenancy.create_api_key(
        session=session, tenant=account.tenant, name="前台", role="office"
    )
    session.commit()
    office = {"Authorization": f"Bearer {office_key}"}
    refused = client.get("/v1/audit-log", headers=office)
    assert refused.status_code == 403 and "owner" in refused.json()["detail"]
    assert client.get("/v1/consents", headers=office).status_code == 200
    assert client.get("/v1/suppressions", headers=office).json()["total"] == 1
