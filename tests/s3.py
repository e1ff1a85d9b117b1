"""A real S3-speaking server on loopback (moto's standalone server) for the S3 backend.

``s3_server`` starts one server for the run on a free 127.0.0.1 port; ``s3_storage`` points
this process's settings at a fresh bucket on it (``HUIFANG_STORAGE=s3``) for one test and
puts the settings back afterwards. Import both into a test module to use them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from huifang import storage
from huifang.db import Database
from huifang.settings import get_settings

ACCESS_KEY = "huifang-test"
SECRET_KEY = "huifang-test-secret"  # moto accepts any pair


@dataclass(frozen=True)
class Bucket:
    endpoint: str
    name: str
    client: Any  # a boto3 S3 client of the test's own, to look behind the backend

    def env(self) -> dict[str, str]:
        """The settings a process needs to use this bucket."""
        return {
            "HUIFANG_STORAGE": "s3",
            "HUIFANG_S3_ENDPOINT_URL": self.endpoint,
            "HUIFANG_S3_BUCKET": self.name,
            "HUIFANG_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "HUIFANG_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "HUIFANG_S3_REGION": "us-east-1",
            "HUIFANG_S3_ADDRESSING_STYLE": "path",
        }

    def objects(self) -> set[str]:
        """Every key in the bucket."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def read(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server in a process of its own (it keeps objects in its memory, not ours)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the moto server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
    yield endpoint
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def s3_bucket(s3_server: str) -> Bucket:
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    name = f"huifang-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return Bucket(endpoint=s3_server, name=name, client=client)


@pytest.fixture
def s3_storage(
    s3_bucket: Bucket, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> Iterator[Bucket]:
    """This process stores files in a fresh bucket, with a media root (scratch) of its own."""
    for key, value in s3_bucket.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HUIFANG_MEDIA_ROOT", str(tmp_path / "api-scratch"))
    get_settings.cache_clear()
    storage.reset()
    try:
        assert storage.backend().name == "s3"
        yield s3_bucket
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        storage.reset()


# --- another host: a process that shares only PostgreSQL, Redis and the bucket ---------------


@contextlib.contextmanager
def host_process(
    argv: Sequence[str],
    *,
    database: Database,
    redis_url: str,
    bucket: Bucket,
    scratch: Path,
    log: Path,
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m huifang.cli *argv`` with a media root (scratch) of its own, on the same
    PostgreSQL (as the app role, under row-level security, when the run uses it), Redis
    and bucket; stopped when the block ends."""
    env = {
        **os.environ,
        **bucket.env(),
        "HUIFANG_MEDIA_ROOT": str(scratch),
        "HUIFANG_REDIS_URL": redis_url,
        "HUIFANG_DATABASE_URL": database.url,
        "HUIFANG_ENVIRONMENT": "test",
    }
    if database.rls:
        env["HUIFANG_DATABASE_APP_URL"] = database.engine.url.render_as_string(hide_password=False)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "huifang.cli", *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def company_with_visit(
    database: Database, *, name: str, customer: str, phone: str
) -> Iterator[SimpleNamespace]:
    """A committed company with an API key and a visit to a consenting customer (``headers``,
    ``visit_id``); deleted afterwards."""
    from tenancy import service as tenancy
    from tenancy.models import Tenant
    from tests.factories import create_consenting_customer
    from visits import service as visits

    with database.session() as session:
        tenant = tenancy.create_tenant(session=session, name=name, signature=name)
        _, key = tenancy.create_api_key(session=session, tenant=tenant)
        made = create_consenting_customer(
            session=session, tenant=tenant, name=customer, phone=phone
        )
        visit = visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=made.id,
            service_type="deep_cleaning",
            areas=["客厅"],
        )
        tenant_id, visit_id = tenant.id, visit.id
    try:
        yield SimpleNamespace(headers={"Authorization": f"Bearer {key}"}, visit_id=visit_id)
    finally:
        with database.session() as session:
            session.execute(Tenant.__table__.delete().where(Tenant.id == tenant_id))
