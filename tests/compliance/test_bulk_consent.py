"""Consent for many customers on one piece of evidence: recorded per customer, refused for
those who opted out or withdrew after the evidence was signed, shown in the ledger."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from access.actors import Actor
from access.models import AuditEntry
from access.roles import Role
from compliance import bulk
from compliance import service as compliance
from compliance.models import ConsentRecord
from customers import import_jobs
from customers import service as customers
from huifang.db import utcnow
from huifang.errors import Invalid
from tests.customers.test_import import ZH_HEADER, csv_file

NOW = utcnow()
CONTRACT = "2026年服务合同第5条，纸质原件存于门店档案柜"


def Person(tenant_id: int) -> Actor:
    return Actor(kind="user", id=3, name="前台小刘", tenant_id=tenant_id, role=Role.OFFICE)


def make(session, tenant, name: str, phone: str):  # type: ignore[no-untyped-def]
    return customers.create_customer(session=session, tenant=tenant, name=name, phone=phone)


@pytest.fixture
def crowd(session, account):  # type: ignore[no-untyped-def]
    tenant = account.tenant
    c = {
        name: make(session, tenant, name, f"1390000{1000 + i}")
        for i, name in enumerate(
            ["新客", "已同意", "退订", "撤回后再签", "先撤回", "退订后恢复", "空号"]
        )
    }
    compliance.record_consent(
        session=session,
        tenant_id=tenant.id,
        customer=c["已同意"],
        source="web_form",
        evidence="表单 42",
        granted_at=NOW,
        now=NOW,
    )
    compliance.opt_out(
        session=session,
        tenant=tenant,
        phone=c["退订"].phone,
        reason="reply_opt_out",
        detail="T",
        now=NOW,
    )
    for name, when in (
        ("先撤回", NOW - dt.timedelta(days=3)),
        ("撤回后再签", NOW - dt.timedelta(days=30)),
    ):
        compliance.record_consent(
            session=session,
            tenant_id=tenant.id,
            customer=c[name],
            source="in_person",
            evidence="旧单",
            granted_at=when - dt.timedelta(days=1),
            now=when,
        )
        compliance.revoke_consent(
            session=session,
            tenant_id=tenant.id,
            phone=c[name].phone,
            source="api",
            evidence="电话",
            now=when,
        )
    compliance.opt_out(
        session=session,
        tenant=tenant,
        phone=c["退订后恢复"].phone,
        reason="manual",
        detail="来电",
        now=NOW - dt.timedelta(days=2),
    )
    compliance.opt_in(session=session, tenant=tenant, phone=c["退订后恢复"].phone, now=NOW)
    compliance.opt_out(
        session=session,
        tenant=tenant,
        phone=c["空号"].phone,
        reason="unreachable",
        detail="空号",
        now=NOW,
    )
    return c


def test_each_customer_gets_their_own_record_or_a_reason(session, account, crowd):
    tenant = account.tenant
    signed = NOW - dt.timedelta(days=10)
    ids = [c.id for c in crowd.values()] + [999_999, crowd["新客"].id]
    outcomes = bulk.record_bulk_consent(
        session=session,
        tenant=tenant,
        customer_ids=ids,
        source="in_person",
        evidence=f"  {CONTRACT} ",
        granted_at=signed,
        now=NOW,
        actor=Person(tenant_id=tenant.id),
    )
    by = {o.customer_id: o for o in outcomes}
    name = {c.id: n for n, c in crowd.items()}
    result = {name.get(cid, cid): o.outcome for cid, o in by.items()}
    assert result == {
        "新客": "recorded",
        "已同意": "already_consented",
        "退订": "refused_opted_out",
        "撤回后再签": "recorded",  # withdrew 30 days ago; this contract is 10 days old
        "先撤回": "refused_revoked_later",  # withdrew 3 days ago, after the contract
        "退订后恢复": "refused_revoked_later",  # the opt-out 2 days ago counts as withdrawal
        "空号": "recorded",  # a dead number is no choice of the customer's
        999_999: "not_found",
    }
    assert len(outcomes) == 8  # the repeated id counted once
    assert by[crowd["退订"].id].reason and "opt-out" in by[crowd["退订"].id].reason
    assert bulk.count(outcomes)["recorded"] == 3

    record = session.get(ConsentRecord, by[crowd["新客"].id].consent_id)
    assert record is not None
    assert (record.evidence, record.source, record.granted_at, record.customer_id) == (
        CONTRACT,
        "in_person",
        signed,
        crowd["新客"].id,
    )
    # Now the gate sees the consent as if it had been recorded on the customer's page.
    reach = compliance.explain(session=session, tenant=tenant, customer=crowd["新客"], now=NOW)
    assert "No recorded consent to marketing messages." not in reach["marketing"]["reasons"]
    entry = session.scalars(select(AuditEntry).where(AuditEntry.tenant_id == tenant.id)).one()
    assert (entry.actor_name, entry.action) == ("前台小刘", "consent.bulk_recorded")
    assert entry.detail["recorded"] == 3 and entry.detail["refused_opted_out"] == 1

    again = bulk.record_bulk_consent(
        session=session,
        tenant=tenant,
        customer_ids=[crowd["新客"].id],
        source="in_person",
        evidence=CONTRACT,
        granted_at=signed,
        now=NOW,
    )
    assert again[0].outcome == "already_consented"


def test_refusals_of_the_whole_request(session, account, crowd):
    tenant = account.tenant
    one = [crowd["新客"].id]
    for kwargs, phrase in (
        ({"evidence": "   "}, "evidence"),
        ({"source": "rumour"}, "source"),
        ({"granted_at": NOW + dt.timedelta(days=1)}, "future"),
        ({"customer_ids": []}, "at least one"),
        ({"customer_ids": list(range(1, bulk.MAX_CUSTOMERS + 2))}, "too many"),
    ):
        args = {
            "customer_ids": one,
            "source": "in_person",
            "evidence": CONTRACT,
            "granted_at": NOW,
            **kwargs,
        }
        with pytest.raises(Invalid, match=phrase):
            bulk.record_bulk_consent(session=session, tenant=tenant, now=NOW, **args)


def test_another_companys_customers_are_not_found(session, account, other_account):
    theirs = make(session, other_account.tenant, "别家", "13800138000")
    outcomes = bulk.record_bulk_consent(
        session=session,
        tenant=account.tenant,
        customer_ids=[theirs.id],
        source="in_person",
        evidence=CONTRACT,
        granted_at=NOW,
        now=NOW,
    )
    assert outcomes[0].outcome == "not_found"
    assert compliance.consents(session=session, tenant_id=other_account.tenant.id) == []


def test_route_by_import_job_and_the_ledger_shows_it(client, session, account, monkeypatch):
    monkeypatch.setattr(import_jobs, "_queue", lambda session, job_id: None)
    job = import_jobs.create_job(
        session=session,
        tenant=account.tenant,
        data=csv_file([ZH_HEADER, ["张三", "13900001111"], ["李四", "13900002222"], ["", "x"]]),
    )
    body = {"import_job_id": job.id, "evidence": CONTRACT, "source": "in_person"}
    early = client.post("/v1/consents/bulk", headers=account.headers, json=body)
    assert early.status_code == 409 and "not finished" in early.json()["detail"]
    import_jobs.run(session=session, job_id=job.id)
    session.commit()

    done = client.post("/v1/consents/bulk", headers=account.headers, json=body)
    assert done.status_code == 200, done.text
    report = done.json()
    assert (report["recorded"], len(report["rows"])) == (2, 2)
    ledger = client.get(
        "/v1/consents", params={"evidence": "服务合同第5条"}, headers=account.headers
    ).json()
    assert ledger["total"] == 2
    assert {r["customer_id"] for r in ledger["items"]} == {r["customer_id"] for r in report["rows"]}
    export = client.get(
        "/v1/consents/export", params={"evidence": "服务合同"}, headers=account.headers
    )
    assert export.status_code == 200 and export.text.count(CONTRACT) == 2

    for bad in (
        {"evidence": CONTRACT},
        {"evidence": CONTRACT, "customer_ids": [1], "import_job_id": job.id},
    ):
        refused = client.post("/v1/consents/bulk", headers=account.headers, json=bad)
        assert (
            refused.status_code == 422
            and "customer_ids or import_job_id" in (refused.json()["detail"])
        )
    missing = client.post(
        "/v1/consents/bulk",
        headers=account.headers,
        json={"import_job_id": 999_999, "evidence": CONTRACT},
    )
    assert missing.status_code == 404
