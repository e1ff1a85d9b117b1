"""What every route does with input out of range, and what the OpenAPI document promises.

The walks read the routes from the document the app serves, so a new route or field is
covered without a line here: every integer a request can carry is bounded; one past the
bound, in any path, query or body, is a 422 naming the field, never a 500; text no column
can hold (NUL, a lone surrogate) is a 422 wherever it appears; and the refusals are
documented as they are sent. ``tests/test_api_fuzz.py`` fuzzes the same document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from huifang.fields import MAX_ID

HUGE = 2**63  # one past what SQLite's driver (and BIGINT) holds


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = doc["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _integers(
    doc: dict[str, Any], node: dict[str, Any], where: str, seen: frozenset[str] = frozenset()
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every integer schema reachable from ``node``, with where it sits."""
    if "$ref" in node:
        if node["$ref"] in seen:
            return
        seen = seen | {node["$ref"]}
    node = _resolve(doc, node)
    if node.get("type") == "integer":
        yield where, node
    for key in ("anyOf", "oneOf", "allOf"):
        for choice in node.get(key, []):
            yield from _integers(doc, choice, where, seen)
    for name, child in node.get("properties", {}).items():
        yield from _integers(doc, child, f"{where}.{name}", seen)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _integers(doc, node[key], f"{where}[]", seen)


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def _json_body(doc: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return _resolve(doc, schema) if schema else None


def _is_integer(doc: dict[str, Any], node: dict[str, Any]) -> bool:
    node = _resolve(doc, node)
    return node.get("type") == "integer" or any(
        _resolve(doc, choice).get("type") == "integer" for choice in node.get("anyOf", [])
    )


def _fill(path: str, value: object) -> str:
    return re.sub(r"{\w+}", str(value), path)


def test_every_integer_a_request_can_carry_is_bounded(app):
    doc = app.openapi()
    found = []
    for method, path, operation in _operations(doc):
        for parameter in operation.get("parameters", []):
            found += _integers(
                doc, parameter["schema"], f"{method} {path} {parameter['in']} {parameter['name']}"
            )
        for media in operation.get("requestBody", {}).get("content", {}).values():
            if "schema" in media:
                found += _integers(doc, media["schema"], f"{method} {path} body")
    assert len(found) >= 40  # ids in paths, queries and bodies
    unbounded = [
        where
        for where, node in found
        if not (node.get("minimum", -HUGE) >= 0 and node.get("maximum", HUGE) <= MAX_ID)
    ]
    assert unbounded == []
    written_as_floats = [
        where
        for where, node in found
        if any(isinstance(node.get(k), float) for k in ("minimum", "maximum"))
    ]
    assert written_as_floats == []  # 9007199254740991.0 would read as a float to a client


def test_an_oversized_integer_in_any_path_is_a_422_naming_it(client, account):
    doc = client.app.openapi()
    walked = 0
    for method, path, operation in _operations(doc):
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "path" or not _is_integer(doc, parameter["schema"]):
                continue
            url = path.replace("{" + parameter["name"] + "}", str(HUGE))
            answer = client.request(method, _fill(url, 1), headers=account.headers, json={})
            assert answer.status_code == 422, f"{method} {url}: {answer.status_code}"
            assert ["path", parameter["name"]] in [e["loc"] for e in answer.json()["errors"]]
            walked += 1
    assert walked >= 35  # every id route


def test_an_oversized_integer_in_any_query_is_a_422_naming_it(client, account):
    doc = client.app.openapi()
    walked = 0
    for method, path, operation in _operations(doc):
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query" or not _is_integer(doc, parameter["schema"]):
                continue
            answer = client.request(
                method,
                _fill(path, 1),
                headers=account.headers,
                params={parameter["name"]: HUGE},
                json={},
            )
            assert answer.status_code == 422, f"{method} {path} {parameter['name']}"
            assert ["query", parameter["name"]] in [e["loc"] for e in answer.json()["errors"]]
            walked += 1
    assert walked >= 8  # offset and limit of each page, the id filters, days


def test_an_oversized_integer_in_any_body_field_is_a_422_naming_it(client, account):
    doc = client.app.openapi()
    walked = 0
    for method, path, operation in _operations(doc):
        body = _json_body(doc, operation)
        if body is None:
            continue
        for name, field in body.get("properties", {}).items():
            field = _resolve(doc, field)
            if _is_integer(doc, field):
                value: object = HUGE
            elif field.get("type") == "array" and _is_integer(doc, field["items"]):
                value = [HUGE]
            else:
                continue
            answer = client.request(
                method, _fill(path, 1), headers=account.headers, json={name: value}
            )
            assert answer.status_code == 422, f"{method} {path} {name}: {answer.status_code}"
            where = [e["loc"][:2] for e in answer.json()["errors"]]
            assert ["body", name] in where, (method, path, where)
            walked += 1
    assert walked >= 4  # a visit's customer, staff and amount, a preview's customers


def test_the_amount_of_a_visit_fits_its_column(client, account):
    customer = client.post(
        "/v1/customers", headers=account.headers, json={"name": "王女士", "phone": "13800138000"}
    ).json()
    visit = {"customer_id": customer["id"], "service_type": "ac_cleaning"}
    for amount in (2**31, 2**63 - 1, 2**64):
        answer = client.post(
            "/v1/visits", headers=account.headers, json={**visit, "amount_cents": amount}
        )
        assert answer.status_code == 422, answer.text[:200]
        assert "amount_cents" in answer.json()["detail"]
    answer = client.post(
        "/v1/visits", headers=account.headers, json={**visit, "amount_cents": 2**31 - 1}
    )
    assert answer.status_code == 201 and answer.json()["amount_cents"] == 2**31 - 1


# --- text no column can hold -----------------------------------------------------------------

SURROGATE = '"\\ud800"'  # as JSON spells it: a lone high surrogate


def _post_raw(client, account, method: str, path: str, body: str):  # type: ignore[no-untyped-def]
    return client.request(
        method,
        path,
        content=body.encode(),
        headers={**account.headers, "Content-Type": "application/json"},
    )


@pytest.mark.parametrize("bad", [SURROGATE, '"\\udfff tail"', '"a\\u0000b"'])
def test_unstorable_text_anywhere_in_a_body_is_a_422_naming_where(client, account, bad):
    customer = client.post(
        "/v1/customers", headers=account.headers, json={"name": "王女士", "phone": "13800138000"}
    ).json()
    cases = [
        (
            "POST",
            "/v1/customers",
            f'{{"name": "李", "phone": "13900139000", "tags": [{bad}]}}',
            ["body", "tags", 0],
        ),
        (
            "PATCH",
            f"/v1/customers/{customer['id']}",
            f'{{"tags": ["ok", {bad}]}}',
            ["body", "tags", 1],
        ),
        ("POST", "/v1/customers", f'{{"name": {bad}, "phone": "13900139000"}}', ["body", "name"]),
        (
            "POST",
            "/v1/visits",
            f'{{"customer_id": {customer["id"]}, '
            f'"service_type": "ac_cleaning", "areas": ["客厅", {bad}]}}',
            ["body", "areas", 1],
        ),
        (
            "POST",
            "/v1/staff",
            f'{{"name": "李阿姨", "certificates": [{bad}]}}',
            ["body", "certificates", 0],
        ),
        (
            "POST",
            "/v1/campaigns",
            f'{{"preset": "ac_filter_quarterly", "audience": {{"regions": [{bad}]}}}}',
            ["body", "audience", "regions", 0],
        ),
        ("PUT", "/v1/plum-rain", f'{{"table": {{{bad}: {{"2026": "2026-06-15"}}}}}}', None),
    ]
    for method, path, body, where in cases:
        answer = _post_raw(client, account, method, path, body)
        assert answer.status_code == 422, (path, body, answer.status_code)
        errors = answer.json()["errors"]
        assert {e["type"] for e in errors} == {"string_unicode"}, errors
        if where is not None:
            assert [e["loc"] for e in errors] == [where]
        assert "no unpaired surrogate" in answer.json()["detail"]
    after = client.get(f"/v1/customers/{customer['id']}", headers=account.headers).json()
    assert after["tags"] == [] and after["name"] == "王女士"
    assert client.get("/v1/customers", headers=account.headers).json()["total"] == 1
    assert client.get("/v1/visits", headers=account.headers).json()["total"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers?q=a%00b",
        "/v1/customers?tag=%00",
        "/v1/campaigns?status=%00",
        "/r/abc%00def",
        "/v/%00",
    ],
)
def test_a_nul_in_a_path_or_query_is_a_422_not_a_database_error(client, account, path):
    answer = client.get(path, headers=account.headers)
    assert answer.status_code == 422, answer.text[:300]
    assert answer.json()["errors"][0]["type"] == "string_unicode"


# --- dates too far out for date arithmetic ---------------------------------------------------


@pytest.mark.parametrize(
    "instant",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "1899-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
    ],
)
def test_an_instant_out_of_range_is_a_422_wherever_it_is_taken(client, account, instant):
    customer = client.post(
        "/v1/customers", headers=account.headers, json={"name": "王女士", "phone": "13800138000"}
    ).json()
    answers = {
        "visit": client.post(
            "/v1/visits",
            headers=account.headers,
            json={
                "customer_id": customer["id"],
                "service_type": "ac_cleaning",
                "finished_at": instant,
            },
        ),
        "consent": client.post(
            f"/v1/customers/{customer['id']}/consents",
            headers=account.headers,
            json={"source": "api", "evidence": "x", "granted_at": instant},
        ),
        "filter": client.get(
            "/v1/visits", headers=account.headers, params={"finished_after": instant}
        ),
    }
    for what, answer in answers.items():
        assert answer.status_code == 422, (what, answer.status_code)
        assert "between the years 1900 and 2199" in answer.json()["detail"]


@pytest.mark.parametrize(
    "query", ["since=0001-01-01&until=0001-01-02", "since=9999-12-30&until=9999-12-31"]
)
def test_report_periods_out_of_range_are_a_422(client, account, query):
    for path in ("/v1/reports/retention", "/v1/reports/conversion"):
        answer = client.get(f"{path}?{query}", headers=account.headers)
        assert answer.status_code == 422, (path, answer.status_code)
    answer = client.get("/v1/reports/conversion?until=0001-01-01", headers=account.headers)
    assert answer.status_code == 422


# --- the document says what the answers are --------------------------------------------------


def _schema_of(doc: dict[str, Any], operation: dict[str, Any], status: str) -> dict[str, Any]:
    return operation["responses"][status]["content"]["application/json"]["schema"]


def test_every_422_is_documented_as_the_sentence_and_the_list(client, account):
    doc = client.app.openapi()
    problem = doc["components"]["schemas"]["ValidationProblem"]
    assert problem["properties"]["detail"]["type"] == "string"
    assert problem["properties"]["errors"]["type"] == "array"
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    with_422 = 0
    for method, path, operation in _operations(doc):
        if "422" in operation["responses"]:
            schema = _schema_of(doc, operation, "422")
            refs = [s["$ref"] for s in schema.get("anyOf", [schema])]
            assert "#/components/schemas/ValidationProblem" in refs, (method, path)
            with_422 += 1
    assert with_422 >= 60

    answer = client.post("/v1/customers", headers=account.headers, json={"name": ""})
    assert answer.status_code == 422
    assert isinstance(answer.json()["detail"], str)
    assert all(set(e) == {"loc", "msg", "type"} for e in answer.json()["errors"])
    refused = client.patch(
        "/v1/tenant",
        headers=account.headers,
        json={"work_start_minute": 1000, "work_end_minute": 900},
    )
    assert refused.status_code == 422 and set(refused.json()) == {"detail"}  # errors optional
    assert "errors" not in problem["required"]


def test_every_refusal_a_route_gives_is_documented_with_its_body(client, account):
    doc = client.app.openapi()
    for method, path, operation in _operations(doc):
        responses = operation["responses"]
        if path.startswith("/v1"):
            assert "401" in responses, (method, path)
            assert _schema_of(doc, operation, "401") == {"$ref": "#/components/schemas/Problem"}
        if re.search(r"{\w+_id}", path):
            assert "404" in responses, (method, path)
        if "requestBody" in operation:
            assert "400" in responses, (method, path)
        for status, response in responses.items():
            if int(status) >= 400:
                assert response.get("content"), (method, path, status)

    unauthorized = client.get("/v1/customers")
    assert unauthorized.status_code == 401 and isinstance(unauthorized.json()["detail"], str)
    missing = client.get("/v1/customers/12345", headers=account.headers)
    assert missing.status_code == 404 and set(missing.json()) == {"detail"}
    unreadable = client.post(
        "/v1/customers",
        headers={**account.headers, "Content-Type": "application/json"},
        content=b"\xff\xfe{",
    )
    assert unreadable.status_code == 400
    assert "UTF-8" in unreadable.json()["detail"]
    assert set(doc["paths"]["/v1/customers/import"]["post"]["responses"]) >= {"413", "415"}
    hooks = doc["paths"]["/hooks/twilio/inbound"]["post"]["responses"]
    assert set(hooks) >= {"200", "400", "403"} and "text/xml" in hooks["200"]["content"]


def test_metrics_are_documented_and_sent_as_text(client):
    doc = client.app.openapi()
    content = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")


def test_a_query_parameter_a_route_does_not_read_is_left_alone(client, account):
    answer = client.get("/v1/tenant?unused=a%00b", headers=account.headers)
    assert answer.status_code == 200  # the document promises no 422 here, and none comes
