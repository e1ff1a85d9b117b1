"""Uploads against a real server and a real embedded worker, with committed rows."""

from __future__ import annotations

import select
import socket
import threading
import time
from types import SimpleNamespace

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import delete

import huifang.db
from huifang import storage, worker
from huifang.app import create_app
from huifang.db import set_database
from tenancy import service as tenancy
from tenancy.models import Tenant
from tests.factories import make_customer
from tests.media.conftest import phone_jpeg, upload
from visits import service as visits


@pytest.fixture
def company(sqlite_database):
    """A committed company with a visit, removed afterwards."""
    with sqlite_database.session() as session:
        tenant = tenancy.create_tenant(session=session, name="端到端家政", signature="端到端家政")
        _, key = tenancy.create_api_key(session=session, tenant=tenant)
        customer = make_customer(session, tenant, name="王女士", phone="13800138000")
        visit = visits.create_visit(
            session=session,
            tenant=tenant,
            customer_id=customer.id,
            service_type="deep_cleaning",
            areas=["客厅"],
        )
        ids = (tenant.id, visit.id)

    account = SimpleNamespace(headers={"Authorization": f"Bearer {key}"})
    yield account, ids[1]
    with sqlite_database.session() as session:
        session.execute(delete(Tenant).where(Tenant.id == ids[0]))


@pytest.mark.serial
def test_embedded_mode_processes_an_upload_in_process(sqlite_database, company):
    account, visit_id = company
    set_database(sqlite_database)
    try:
        with (
            worker.EmbeddedWorker(beat=False),
            TestClient(create_app(database=sqlite_database)) as client,
        ):
            created = upload(client, account, visit_id, phone_jpeg(orientation=6))
            assert created.status_code == 202, created.text
            deadline = time.monotonic() + 90
            while True:
                media = client.get(
                    f"/v1/media/{created.json()['id']}", headers=account.headers
                ).json()
                if media["status"] != "processing" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert media["status"] == "ready", media
        assert media["height"] > media["width"]
    finally:
        huifang.db._database = None


@pytest.fixture
def server(sqlite_database):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(database=sqlite_database),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port
    running.should_exit = True
    thread.join(timeout=10)


def test_a_chunked_upload_over_the_cap_is_refused_before_it_is_all_read(server, company):
    account, visit_id = company
    staged_before = set(storage.staging_dir().iterdir())
    boundary = "----huifang"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="phase"\r\n\r\nbefore\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + phone_jpeg(size=(64, 64))[:600]
    total_planned = 60 * 1024 * 1024  # far beyond the 25 MB photo cap
    chunk = b"\x00" * (256 * 1024)
    sock = socket.create_connection(("127.0.0.1", server))
    sock.sendall(
        f"POST /v1/visits/{visit_id}/media HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {account.headers['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )

    def send_chunk(data: bytes) -> None:
        sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    sent = 0
    answer = b""
    try:
        send_chunk(head)
        while sent < total_planned:
            send_chunk(chunk)
            sent += len(chunk)
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answer = sock.recv(65536)
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    if not answer:
        sock.settimeout(10)
        answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"25 MB" in answer
    # ``sent`` counts what left the client, which includes what the two loopback socket
    # buffers hold (several MB when the machine is busy); the server refused at 25 MB.
    assert sent < 40 * 1024 * 1024, f"the server read {sent} bytes before refusing"
    time.sleep(0.2)
    assert set(storage.staging_dir().iterdir()) <= staged_before  # nothing left behind
