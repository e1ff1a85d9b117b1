"""The ``huifang`` command as an office user runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import delete, select
from typer.testing import CliRunner

from campaigns import rules
from campaigns.models import PENDING, Campaign, CampaignOccurrence
from campaigns.presets import PRESETS
from compliance.models import ConsentRecord
from customers.models import Customer
from huifang.cli import app
from huifang.db import Database, utcnow
from huifang.demo import DEMO_NAME, DEMO_PRESET
from huifang.settings import get_settings
from reports.models import Report
from tenancy.models import Tenant

runner = CliRunner()


@pytest.fixture
def cli_db(committed_db, monkeypatch):
    """The CLI pointed at the test database; companies it creates are removed afterwards."""
    monkeypatch.setenv("HUIFANG_DATABASE_URL", committed_db.url)
    get_settings.cache_clear()
    with committed_db.sessionmaker() as session:
        before = set(session.scalars(select(Tenant.id)))
    yield committed_db
    get_settings.cache_clear()
    with committed_db.session() as session:
        session.execute(delete(Tenant).where(Tenant.id.not_in(before)))


def test_tenant_create_prints_a_working_key(cli_db):
    result = runner.invoke(
        app, ["tenant", "create", "--name", "洁家家政", "--signature", "【洁家家政】"]
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("hf_")
    from fastapi.testclient import TestClient

    from huifang.app import create_app

    with TestClient(create_app(database=cli_db)) as client:
        tenant = client.get("/v1/tenant", headers={"Authorization": f"Bearer {key}"}).json()
    assert tenant["sms_signature"] == "【洁家家政】"


def test_tenant_create_refuses_a_bad_signature_with_the_rule(cli_db):
    result = runner.invoke(app, ["tenant", "create", "--name", "x", "--signature", "【洁】"])
    assert result.exit_code == 1
    assert "2–16 characters" in result.output


def test_demo_seeds_and_can_run_again(cli_db):
    first = runner.invoke(app, ["demo"])
    assert first.exit_code == 0, first.output
    assert "20 customers, 3 staff, 5 visits" in first.output
    assert "/r/" in first.output  # the first visit's report, with its recap video
    with cli_db.sessionmaker() as session:
        demo = select(Tenant.id).where(Tenant.name == DEMO_NAME).scalar_subquery()
        report = session.scalars(select(Report).where(Report.tenant_id == demo)).one()
        assert report.recap_bytes and report.recap_duration <= 30
    again = runner.invoke(app, ["demo"])
    assert again.exit_code == 0, again.output
    assert "20 customers, 3 staff, 5 visits" in again.output  # refreshed, not doubled
    with cli_db.sessionmaker() as session:
        assert len(session.scalars(select(Tenant).where(Tenant.name == DEMO_NAME)).all()) == 1
    _check_demo_campaign(cli_db, first.output, again.output)


def _check_demo_campaign(db: Database, *outputs: str) -> None:
    """One active Spring Festival campaign after both runs, its occurrences for the customers
    with marketing consent only (all but two), on the date the rule names; printed alike."""
    with db.sessionmaker() as session:
        tenant = session.scalars(select(Tenant).where(Tenant.name == DEMO_NAME)).one()
        (campaign,) = session.scalars(select(Campaign).where(Campaign.tenant_id == tenant.id))
        assert (campaign.preset, campaign.status) == (DEMO_PRESET, "active")
        people = {
            c.id: c.phone
            for c in session.scalars(select(Customer).where(Customer.tenant_id == tenant.id))
        }
        consenting = set(
            session.scalars(
                select(ConsentRecord.customer_id).where(
                    ConsentRecord.tenant_id == tenant.id, ConsentRecord.revoked_at.is_(None)
                )
            )
        )
        occurrences = session.scalars(
            select(CampaignOccurrence).where(CampaignOccurrence.campaign_id == campaign.id)
        ).all()
    assert len(people) == 20 and len(consenting) == 18 and consenting <= set(people)
    assert {people[c] for c in set(people) - consenting} == {"+8613800138018", "+8613800138019"}
    assert sorted(o.customer_id for o in occurrences) == sorted(consenting)  # once each
    assert {o.status for o in occurrences} == {PENDING}
    expected = rules.next_occurrence(
        PRESETS[DEMO_PRESET].rule,
        customer=rules.CustomerFacts(),
        after=utcnow(),
        tz=ZoneInfo("Asia/Shanghai"),
    )
    assert expected is not None
    assert {(o.local_date, o.due_at) for o in occurrences} == {
        (expected.local_date, expected.due_at)
    }
    line = (
        f"Campaign: {campaign.name} (id {campaign.id}): 18 occurrences scheduled, first on "
        f"{expected.local_date.isoformat()}; results at "
    )
    for output in outputs:
        assert line in output and f"/v1/campaigns/{campaign.id}/results" in output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_runs_the_embedded_service_from_an_empty_directory(tmp_path: Path):
    port = _free_port()
    env = {
        **os.environ,
        "HUIFANG_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'hf.db'}",
        "HUIFANG_MEDIA_ROOT": str(tmp_path / "media"),
    }
    env.pop("HUIFANG_REDIS_URL", None)
    demo = subprocess.run(
        [sys.executable, "-m", "huifang.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert demo.returncode == 0, demo.stderr
    key = next(line.split()[-1] for line in demo.stdout.splitlines() if line.startswith("API key:"))
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "huifang.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                time.sleep(0.3)
        assert health.status_code == 200
        assert health.json()["mode"] == "embedded"
        assert httpx.get(f"{base}/docs").status_code == 200
        customers = httpx.get(
            f"{base}/v1/customers", headers={"Authorization": f"Bearer {key}"}
        ).json()
        assert customers["total"] == 20
        log_text = (tmp_path / "serve.log").read_text()
        assert "embedded worker started" in log_text
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
