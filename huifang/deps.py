"""Request dependencies: the session that owns the request's transaction, and the tenant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from huifang.db import Database, get_database
from tenancy import service as tenancy
from tenancy.models import Tenant


def database_for(request: Request) -> Database:
    """The app's database (tests give each app its own), else the process-wide one."""
    return getattr(request.app.state, "database", None) or get_database()


# SQLite has one writer, and every transaction here takes its lock at BEGIN (IMMEDIATE).
# A sync route's session is opened, used and committed in three worker-thread calls. If all
# 40 threads of the pool were waiting for the lock, the request holding it could not get a
# thread to commit in, and every one of them would fail after the busy timeout ("database
# is locked"). So on SQLite, requests that hold a session queue for one of fewer slots than
# there are threads, and they queue in the event loop, not in a thread.
SQLITE_SESSION_SLOTS = 16


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


def get_session(request: Request, _: Annotated[None, Depends(_session_slot, scope="function")]
                ) -> Iterator[Session]:
    """One session per request; committed before the response is sent, rolled back on error."""
    with database_for(request).session() as session:
        yield session


UnitOfWork = Callable[[], AbstractContextManager[Session]]


async def get_unit_of_work(request: Request) -> UnitOfWork:
    """How to open the request's transaction where the work runs (webhooks).

    ``async``, so that FastAPI resolves it without a worker-thread hop; the route opens,
    works and commits in one thread call (``messaging.webhooks.committed``).
    """
    return database_for(request).session


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work)]

# scope="function": the commit happens before the answer leaves, so a failed commit is
# reported to the caller instead of being lost after a 201 went out.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An API key from `huifang tenant create`.")
MISSING_KEY = "Send your API key as 'Authorization: Bearer hf_…'."


def current_tenant(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Tenant:
    """The tenant whose API key is in ``Authorization: Bearer``; 401 otherwise."""
    if credentials is None:
        raise HTTPException(401, MISSING_KEY, headers={"WWW-Authenticate": "Bearer"})
    tenant = tenancy.authenticate(session=session, key=credentials.credentials)
    if tenant is None:
        raise HTTPException(
            401, "This API key is unknown or revoked; create a new one with `huifang tenant create`"
            " or POST /v1/api-keys.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


TenantDep = Annotated[Tenant, Depends(current_tenant)]
