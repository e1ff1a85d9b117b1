"""Health, metrics, request ids and errors at the HTTP edge."""

from __future__ import annotations

from fastapi.testclient import TestClient

from huifang.app import create_app
from huifang.db import Database
from huifang.settings import get_settings


def test_healthz_reports_the_database_and_the_queues(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["mode"] == "embedded"
    assert set(body["queues"]) == {"default", "media", "messaging"}


def test_healthz_is_503_when_the_database_is_down():
    dead = Database("postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2")
    with TestClient(create_app(database=dead)) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"].startswith("unavailable")


def test_healthz_is_503_when_redis_is_down_in_distributed_mode(client, monkeypatch):
    monkeypatch.setattr(get_settings(), "redis_url", "redis://127.0.0.1:1/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["redis"].startswith("unavailable")
    assert response.json()["mode"] == "distributed"


def test_metrics_count_requests_by_route_template(client, account):
    client.get("/v1/customers/424242", headers=account.headers)
    text = client.get("/metrics").text
    assert "# TYPE huifang_http_requests_total counter" in text
    assert 'route="/v1/customers/{customer_id}",status="404"' in text
    assert "424242" not in text


def test_request_id_is_echoed_or_made(client):
    given = client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert given.headers["x-request-id"] == "abc123"
    made = client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32


def test_unknown_address_gets_a_sentence(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert "/docs" in response.json()["detail"]


def test_openapi_and_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/v1/customers/import" in spec["paths"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
