"""Request dependencies: the session that owns the request's transaction, and the tenant."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from access.actors import Actor
from access.roles import Permission, Role
from huifang import rls
from huifang.db import READ_ONLY, Database, get_database, utcnow
from tenancy import service as tenancy
from tenancy.models import ApiKey, Tenant


def database_for(request: Request) -> Database:
    """The app's database (tests give each app its own), else the process-wide one."""
    return getattr(request.app.state, "database", None) or get_database()


# Requests that read (GET, HEAD) get a read-only session: on SQLite its transaction takes no
# write lock, so reads never queue behind writes. A GET route that writes (a click counted,
# a page open recorded) says so with ``@writes``; an unmarked one is refused its write
# (``huifang.db.ReadOnly``), so tests find it.
READ_METHODS = frozenset({"GET", "HEAD"})
_WRITES = "huifang_writes"

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def writes(endpoint: Endpoint) -> Endpoint:
    """Mark a GET route that writes: its session is a writer's, as a POST's is."""
    setattr(endpoint, _WRITES, True)
    return endpoint


def request_writes(request: Request) -> bool:
    """Whether the request's transaction may write (its method, or its route's mark)."""
    if request.method not in READ_METHODS:
        return True
    return bool(getattr(request.scope.get("endpoint"), _WRITES, False))


# On SQLite, requests that hold a session queue for one of a few slots, in the event loop
# and in the order they came. The process runs Python on one core at a time: more requests
# in progress than a few only take turns on it, so each holds its transaction (a writer: the
# one write lock) longer, writers queue behind a lock holder that waits for its share of the
# core, and some answers come seconds late. And a sync route's session is opened, used and
# committed in separate worker-thread calls: with fewer slots than the 40 threads, a request
# holding the write lock always finds a thread to commit in.
SQLITE_SESSION_SLOTS = 6


async def _session_slot(request: Request) -> AsyncIterator[None]:
    if database_for(request).engine.dialect.name != "sqlite":
        yield
        return
    loop = asyncio.get_running_loop()
    held = getattr(request.app.state, "sqlite_slots", None)
    if held is None or held[0] is not loop:  # a semaphore serves one event loop
        held = (loop, asyncio.Semaphore(SQLITE_SESSION_SLOTS))
        request.app.state.sqlite_slots = held
    async with held[1]:
        yield


def get_session(
    request: Request, _: Annotated[None, Depends(_session_slot, scope="function")]
) -> Iterator[Session]:
    """One session per request; committed before the response is sent, rolled back on error.
    Read-only for a request that reads (``request_writes``)."""
    with database_for(request).session(read_only=not request_writes(request)) as session:
        yield session


UnitOfWork = Callable[[], AbstractContextManager[Session]]


async def get_unit_of_work(request: Request) -> UnitOfWork:
    """How to open the request's transaction where the work runs (webhooks).

    ``async``, so that FastAPI resolves it without a worker-thread hop; the route opens,
    works and commits in one thread call (``messaging.webhooks.committed``).
    """
    return database_for(request).session


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work)]


def unit_of_work_for(app: Any) -> UnitOfWork:
    """What ``get_unit_of_work`` gives a request to ``app`` (or what a test put in its
    place), for a path that answers outside FastAPI's dependencies."""
    override = app.dependency_overrides.get(get_unit_of_work)
    if override is not None:
        return cast(UnitOfWork, override())
    return (getattr(app.state, "database", None) or get_database()).session


# scope="function": the commit happens before the answer leaves, so a failed commit is
# reported to the caller instead of being lost after a 201 went out.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An API key from `huifang tenant create`.")
MISSING_KEY = "Send your API key as 'Authorization: Bearer hf_…'."


def current_tenant(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    unit_of_work: UnitOfWorkDep,
) -> Tenant:
    """The tenant whose API key is in ``Authorization: Bearer``; 401 otherwise."""
    if credentials is None:
        raise HTTPException(401, MISSING_KEY, headers={"WWW-Authenticate": "Bearer"})
    api_key = tenancy.find_api_key(session=session, key=credentials.credentials)
    tenant = session.get(Tenant, api_key.tenant_id) if api_key else None
    if api_key is None or tenant is None:
        raise HTTPException(
            401,
            "This API key is unknown or revoked; create a new one with `huifang tenant create`"
            " or POST /v1/api-keys.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # From here on this transaction sees only this company's rows (row-level security).
    rls.scope_to_tenant(session, tenant.id)
    now = utcnow()
    if tenancy.key_use_due(api_key, now=now):
        if session.info.get(READ_ONLY):
            _record_key_use_apart(unit_of_work, api_key.id, now)
        else:
            tenancy.record_key_use(session=session, api_key_id=api_key.id, now=now)
    request.state.api_key = api_key
    return tenant


# Keys whose use a reading request of this process is recording right now.
_recording: set[int] = set()
_recording_lock = threading.Lock()


def _record_key_use_apart(unit_of_work: UnitOfWork, api_key_id: int, now: dt.datetime) -> None:
    """A reading request records its key's use in a small write transaction of its own; one
    at a time per key, so that a burst of reads after a quiet minute is not a burst of
    writers."""
    with _recording_lock:
        if api_key_id in _recording:
            return
        _recording.add(api_key_id)
    try:
        with unit_of_work() as session:
            tenancy.record_key_use(session=session, api_key_id=api_key_id, now=now)
    finally:
        with _recording_lock:
            _recording.discard(api_key_id)


TenantDep = Annotated[Tenant, Depends(current_tenant)]


def key_actor(request: Request, tenant: TenantDep) -> Actor:
    """The API key of the request as the actor the audit log names."""
    api_key: ApiKey = request.state.api_key
    return Actor(
        kind="api_key",
        id=api_key.id,
        name=api_key.name,
        tenant_id=tenant.id,
        role=Role(api_key.role),
    )


KeyActorDep = Annotated[Actor, Depends(key_actor)]
KEY_ROLE_REFUSED = (
    "This API key's role ('{role}') may not do this; use a key with the "
    "'owner' role (huifang tenant new-key, or POST /v1/api-keys with an "
    "owner key)."
)


def key_may(permission: Permission) -> Any:
    """For a route's ``dependencies=[…]``: the request's key must have ``permission``."""

    def check(actor: KeyActorDep) -> None:
        if not actor.may(permission):
            raise HTTPException(403, KEY_ROLE_REFUSED.format(role=actor.role.value))

    check.__name__ = f"key_may_{permission.value}"
    check.huifang_key_permission = permission  # type: ignore[attr-defined]  # for the document
    return Depends(check)


# Text no database column can hold: NUL (PostgreSQL refuses it in text and JSON) and lone
# UTF-16 surrogates, which have no UTF-8 form (a JSON body may spell one as "\ud800").
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_TEXT = (
    "Text must be valid Unicode with no NUL character and no unpaired surrogate such as \\ud800"
)
Location = tuple[str | int, ...]


def unstorable_text(value: Any, where: Location) -> list[Location]:
    """Where, in decoded JSON, a string (or an object's key) sits that no column can store."""
    found: list[Location] = []
    stack: list[tuple[Location, Any]] = [(where, value)]
    while stack:  # a loop, not recursion: the body's depth is the client's choice
        loc, item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                found.append(loc)
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    found.append((*loc, key))
                stack.append(((*loc, key), child))
        elif isinstance(item, list):
            stack.extend(((*loc, index), child) for index, child in enumerate(item))
    return sorted(found, key=str)


def _query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters a route reads (others it never sees, so they cannot harm)."""
    names: frozenset[str] | None = getattr(route, "_huifang_query_names", None)
    if names is None:
        found: set[str] = set()
        stack = [route.dependant]
        while stack:
            dependant = stack.pop()
            found.update(param.alias for param in dependant.query_params)
            stack.extend(dependant.dependencies)
        names = frozenset(found)
        route._huifang_query_names = names  # type: ignore[attr-defined]  # kept with the route
    return names


def _json_body_read(route: APIRoute | None, request: Request) -> bool:
    """Whether FastAPI decoded this request's body as JSON for a body model."""
    if route is None or route.body_field is None:
        return False
    content_type = request.headers.get("content-type", "application/json").split(";")[0]
    subtype = content_type.strip().lower().removeprefix("application/")
    return subtype == "json" or subtype.endswith("+json")


async def refuse_unstorable_text(request: Request) -> None:
    """A 422 naming each path, query or JSON body string that holds NUL or a lone surrogate.

    Pydantic lets such a string through a plain ``str`` field (and any ``dict[str, Any]``),
    and the database then fails on it; one check here covers every route and field.
    """
    route = request.scope.get("route")
    route = route if isinstance(route, APIRoute) else None
    found: list[Location] = [
        ("path", name)
        for name, value in request.path_params.items()
        if isinstance(value, str) and _UNSTORABLE.search(value)
    ]
    if route is not None and request.query_params:
        names = _query_names(route)
        found += [
            ("query", name)
            for name, value in request.query_params.multi_items()
            if name in names and _UNSTORABLE.search(value)
        ]
    if _json_body_read(route, request):
        try:
            body = await request.json()  # already decoded, and kept, by FastAPI
        except (ValueError, RecursionError):
            body = None  # not JSON after all: the body's own validation says so
        found += unstorable_text(body, ("body",))
    refuse(found)


def refuse(found: list[Location]) -> None:
    """The 422 for strings that ``unstorable_text`` found, if it found any."""
    if found:
        raise RequestValidationError(
            [{"type": "string_unicode", "loc": loc, "msg": UNSTORABLE_TEXT} for loc in found]
        )
