"""The OpenAPI document, made to say what the API really answers.

FastAPI documents each route's success, and a 422 shaped like its own default handler's
answer, which ours replaces (a sentence in ``detail``, the list in ``errors``). ``document``
takes FastAPI's document and corrects it from facts about each route, so a new route is
documented right without a line here:

- 422 is ``ValidationProblem`` wherever the route reads anything from the request;
- 400 wherever it takes a body (one that is not UTF-8 JSON, or not a form, cannot be read);
- 401 wherever the route needs the API key (``huifang.deps.current_tenant``);
- 404 wherever the path names an object by id (a ``…_id`` parameter);
- 413 and 415 wherever it takes an upload (a ``multipart/form-data`` body);
- any other refusal a route declares in ``responses`` (``refusals(404, 409)``, or with its
  own description) gets the ``Problem`` body, ``{"detail": sentence}``, unless it has a body
  of its own;
- an integer's bounds are written as integers (FastAPI's models hold them as floats).

``tests/test_api_fuzz.py`` holds the document to the answers: every status, content type and
body the fuzzer sees must be in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from huifang import deps

PROBLEM = "Problem"
VALIDATION_PROBLEM = "ValidationProblem"
_SCHEMAS: dict[str, dict[str, Any]] = {
    PROBLEM: {
        "title": PROBLEM,
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {
                "type": "string",
                "description": "What is wrong, in a sentence a person can act on.",
            }
        },
    },
    VALIDATION_PROBLEM: {
        "title": VALIDATION_PROBLEM,
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {
                "type": "string",
                "description": "What is wrong, in a sentence a person can act on.",
            },
            "errors": {
                "type": "array",
                "description": "Each field that did not match the schema (absent when the "
                "request matched it but its content cannot be accepted).",
                "items": {
                    "type": "object",
                    "required": ["loc", "msg", "type"],
                    "properties": {
                        "loc": {
                            "type": "array",
                            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                            "description": "Where: body, query or path, then the field.",
                        },
                        "msg": {"type": "string"},
                        "type": {"type": "string"},
                    },
                },
            },
        },
    },
}
# FastAPI's own 422 schemas, which describe an answer this API never gives.
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")

DESCRIPTIONS = {
    400: "The request body cannot be read.",
    401: "No API key, or one that is unknown or revoked.",
    403: "Refused: the request does not prove where it comes from.",
    404: "Nothing with that id or address here (another company's objects look the same).",
    409: "The request clashes with the current state of the record.",
    410: "It has expired.",
    413: "Too large.",
    415: "Not a type we take.",
    422: "The request does not match the schema, or its content cannot be accepted.",
}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that may refuse with these statuses (documented bodies)."""
    return {status: {"description": DESCRIPTIONS[status]} for status in statuses}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _calls(dependant: Dependant) -> Iterator[Any]:
    stack = [dependant]
    while stack:
        current = stack.pop()
        yield current.call
        stack.extend(current.dependencies)


def _needs_key(route: RouteContext) -> bool:
    return any(call is deps.current_tenant for call in _calls(route.dependant))


def _checks_key_role(route: RouteContext) -> bool:
    return any(hasattr(call, "huifang_key_permission") for call in _calls(route.dependant))


KEY_ROLE = "This API key's role may not do this (an owner key may)."


def _reads_request(operation: dict[str, Any]) -> bool:
    return bool(operation.get("parameters") or operation.get("requestBody"))


def _names_object(route: RouteContext) -> bool:
    return any(param.name.endswith("_id") for param in route.dependant.path_params)


def _problem_content(status: str, content: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON body of a refusal: ours, or ours beside one the route declared."""
    ours = _ref(VALIDATION_PROBLEM if status == "422" else PROBLEM)
    declared = (content or {}).get("application/json", {}).get("schema")
    if declared and declared.get("$ref", "").rsplit("/", 1)[-1] in _FASTAPI_VALIDATION:
        declared = None
    if declared and declared != ours:
        return {**(content or {}), "application/json": {"schema": {"anyOf": [ours, declared]}}}
    if content and "application/json" not in content:
        return content  # a page (HTML) or a file: the route says what it sends
    return {"application/json": {"schema": ours}}


def _correct(route: RouteContext, operation: dict[str, Any]) -> None:
    responses: dict[str, dict[str, Any]] = operation.setdefault("responses", {})
    wanted = set()
    if _reads_request(operation):
        wanted.add(422)
    if operation.get("requestBody"):
        wanted.add(400)
    if _needs_key(route):
        wanted.add(401)
    if _names_object(route):
        wanted.add(404)
    if _checks_key_role(route):
        responses.setdefault("403", {"description": KEY_ROLE})
    if "multipart/form-data" in operation.get("requestBody", {}).get("content", {}):
        wanted |= {413, 415}
    for code in sorted(wanted):
        responses.setdefault(str(code), {"description": DESCRIPTIONS[code]})
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400:
            ours = DESCRIPTIONS.get(int(status), "Refused.")
            given = response.get("description")
            if given in (None, "", "Validation Error"):
                response["description"] = ours
            elif status == "422" and given != ours:
                response["description"] = f"{ours} {given}"
            response["content"] = _problem_content(status, response.get("content"))
    operation["responses"] = dict(sorted(responses.items()))


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _integer_bounds(node: Any) -> None:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            if current.get("type") == "integer":
                for key in _BOUNDS:
                    if isinstance(current.get(key), float) and current[key].is_integer():
                        current[key] = int(current[key])
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, corrected to match its answers."""
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = doc["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                _correct(route, operation)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    schemas.update(_SCHEMAS)
    _integer_bounds(doc)
    return doc
