"""``huifang demo`` twice on one SQLite file, as ``scripts/run`` does on every start: the same
company and the same working key, counts of what is there, dates on the visit's day."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import select

from huifang.app import create_app
from huifang.db import Database
from huifang.demo import DEMO_NAME, KEY_FILE
from media.models import Media
from reports.models import Report
from tenancy.models import Tenant
from visits.models import Visit


def _demo(env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "huifang.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _key(output: str) -> str:
    return next(line.split()[-1] for line in output.splitlines() if line.startswith("API key:"))


def test_a_second_run_keeps_the_company_and_its_key_and_dates_follow_the_visit(tmp_path):
    url = f"sqlite:///{tmp_path / 'var' / 'hf.db'}"
    env = {
        **os.environ,
        "HUIFANG_DATABASE_URL": url,
        "HUIFANG_MEDIA_ROOT": str(tmp_path / "var" / "media"),
        "HUIFANG_PUBLIC_URL": "http://127.0.0.1:8000",
        # Wide enough for the printed links: rich wraps at 80 columns without a terminal.
        "COLUMNS": "400",
    }
    env.pop("HUIFANG_REDIS_URL", None)
    first = _demo(env, tmp_path)
    key_file = tmp_path / "var" / "media" / KEY_FILE
    assert key_file.stat().st_mode & 0o077 == 0  # the operator's alone
    second = _demo(env, tmp_path)
    assert _key(first) == _key(second)
    for output in (first, second):
        assert "20 customers, 3 staff, 5 visits" in output
        # A loopback public address is said to be one.
        assert "the recap's end card leaves the booking address out" in output

    database = Database(url)
    try:
        with TestClient(create_app(database=database)) as client:
            tenant = client.get("/v1/tenant", headers={"Authorization": f"Bearer {_key(second)}"})
            assert tenant.status_code == 200 and tenant.json()["name"] == DEMO_NAME
            assert (
                client.get("/v1/customers", headers={"Authorization": "Bearer hf_x"}).status_code
                == 401
            )
        with database.sessionmaker() as session:
            (company,) = session.scalars(select(Tenant).where(Tenant.name == DEMO_NAME))
            zone = ZoneInfo(company.timezone)
            visit = session.scalars(
                select(Visit).where(Visit.tenant_id == company.id).order_by(Visit.id)
            ).first()
            assert visit is not None and visit.finished_at is not None
            day = visit.finished_at.astimezone(zone).date()
            today = dt.datetime.now(zone).date()
            assert day == today - dt.timedelta(days=1)
            media = session.scalars(select(Media).where(Media.visit_id == visit.id)).all()
            assert len(media) == 6  # 4 photos, a work report, a clip: not doubled by the rerun
            for item in media:
                assert item.captured_at is not None, (item.phase, item.kind)
                assert item.captured_at.astimezone(zone).date() == day, (item.phase, item.kind)
            report = session.scalars(select(Report).where(Report.visit_id == visit.id)).one()
            assert report.snapshot["date"] == f"{day.year}年{day.month}月{day.day}日"
            # The clip was filmed upright: the recap is portrait.
            clip = next(m for m in media if m.kind == "clip")
            assert clip.height and clip.width and clip.height > clip.width
    finally:
        database.dispose()
