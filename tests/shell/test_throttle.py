"""Rate limits on the public pages: per client address on /v/, /r/ and /b/, per link on posts."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from bookings import links
from customers import service as customers
from huifang import throttle
from huifang.app import create_app
from huifang.settings import Settings

MONDAY_9_CN = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)
PAGES = ["/v/K7Q2A-9XMA3", "/r/Abcdefghijklmnopqrstuvwx", "/b/Abcdefghijklmnop"]


def _from(app, address: str) -> TestClient:
    return TestClient(app, client=(address, 40000), raise_server_exceptions=False)


def _refused(answer) -> int:
    """The 429's Retry-After, after checking it is the page a person can read."""
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert "访问太频繁了" in answer.text and "分钟后再试" in answer.text
    return int(answer.headers["Retry-After"])


@pytest.mark.parametrize("path", PAGES)
def test_a_public_page_answers_429_past_the_views_of_one_address(app, path):
    guesser, neighbour = _from(app, "203.0.113.7"), _from(app, "198.51.100.4")
    for _ in range(throttle.PAGE_VIEWS.amount):
        assert guesser.get(path).status_code == 404  # nothing there, but it counts
    wait = _refused(guesser.get(path))
    assert 1 <= wait <= 60
    assert neighbour.get(path).status_code == 404  # another address is not held back


def test_the_limit_of_one_address_covers_every_public_page(app):
    guesser = _from(app, "203.0.113.7")
    for i in range(throttle.PAGE_VIEWS.amount):
        assert guesser.get(PAGES[i % len(PAGES)]).status_code == 404
    for path in PAGES:
        _refused(guesser.get(path))
    _refused(guesser.post(PAGES[2], data={}))


def test_a_booking_link_takes_a_few_posts_an_hour_from_anywhere(app, session, account):
    person = customers.create_customer(
        session=session, tenant=account.tenant, name="王女士", phone="13800138000"
    )
    link = links.link_for(
        session=session,
        tenant=account.tenant,
        customer=person,
        source_type="campaign",
        source_id="1",
        now=MONDAY_9_CN,
    )
    other = links.link_for(
        session=session,
        tenant=account.tenant,
        customer=person,
        source_type="campaign",
        source_id="2",
        now=MONDAY_9_CN,
    )
    for i in range(throttle.LINK_POSTS.amount):  # each from an address of its own
        answer = _from(app, f"203.0.113.{i + 1}").post(f"/b/{link.token}", data={})
        assert answer.status_code == 422, answer.text  # no time picked; the post counts
    fresh = _from(app, "198.51.100.4")
    assert 3000 <= _refused(fresh.post(f"/b/{link.token}", data={})) <= 3600
    assert fresh.get(f"/b/{link.token}").status_code == 200  # the page itself still opens
    assert fresh.post(f"/b/{other.token}", data={}).status_code == 422  # other links post


def test_one_address_posts_a_few_dozen_times_an_hour(app):
    poster, neighbour = _from(app, "203.0.113.7"), _from(app, "198.51.100.4")
    for i in range(throttle.FORM_POSTS.amount):
        assert poster.post(f"/b/Abcdefghijkl{i:04d}", data={}).status_code == 404
    _refused(poster.post("/b/Abcdefghijklmnop", data={}))
    assert poster.get("/v/K7Q2A-9XMA3").status_code == 404  # reading is still allowed
    assert neighbour.post("/b/Abcdefghijklmnop", data={}).status_code == 404


@pytest.mark.services
def test_api_processes_share_the_counts_through_redis(database, redis_url, monkeypatch):
    monkeypatch.setattr(throttle, "get_settings", lambda: Settings(redis_url=redis_url))
    first, second = (_from(create_app(database=database), "203.0.113.7") for _ in range(2))
    half = throttle.PAGE_VIEWS.amount // 2
    for process in (first, second):
        for _ in range(half):
            assert process.get(PAGES[0]).status_code == 404
    _refused(second.get(PAGES[0]))
    _refused(first.get(PAGES[0]))
    assert _from(first.app, "198.51.100.4").get(PAGES[0]).status_code == 404


def test_a_redis_that_does_not_answer_leaves_the_pages_open():
    unreachable = throttle.Throttle("redis://127.0.0.1:9/0")
    for _ in range(throttle.PAGE_VIEWS.amount + 1):
        unreachable.hit(throttle.PAGE_VIEWS, "public-view", "203.0.113.7")


def _request(host: str) -> Request:
    return Request(
        {"type": "http", "method": "GET", "path": "/", "headers": [], "client": (host, 1234)}
    )


def test_an_ipv6_client_counts_by_its_64_prefix():
    one = throttle.client_address(_request("2001:db8:1:2::1"))
    assert one == throttle.client_address(_request("2001:db8:1:2:ffff::9")) == "2001:db8:1:2::/64"
    assert one != throttle.client_address(_request("2001:db8:1:3::1"))
    assert throttle.client_address(_request("203.0.113.7")) == "203.0.113.7"
