"""Request dependencies: the session that owns the request's transaction, and the tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from huifang.db import get_database
from tenancy import service as tenancy
from tenancy.models import Tenant


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; committed before the response is sent, rolled back on error."""
    database = getattr(request.app.state, "database", None) or get_database()
    with database.session() as session:
        yield session


# scope="function": the commit happens before the answer leaves, so a failed commit is
# reported to the caller instead of being lost after a 201 went out.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An API key from `huifang tenant create`.")


def current_tenant(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Tenant:
    """The tenant whose API key is in ``Authorization: Bearer``; 401 otherwise."""
    if credentials is None:
        raise HTTPException(
            401, "Send your API key as 'Authorization: Bearer hf_…'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tenant = tenancy.authenticate(session=session, key=credentials.credentials)
    if tenant is None:
        raise HTTPException(
            401, "This API key is unknown or revoked; create a new one with `huifang tenant create`"
            " or POST /v1/api-keys.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


TenantDep = Annotated[Tenant, Depends(current_tenant)]
