"""Offset pagination shared by list endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from huifang.fields import Offset


class PageParams(BaseModel):
    limit: int = 50
    offset: int = 0


def page_params(
    limit: Annotated[int, Query(ge=1, le=500, description="Items per page.")] = 50,
    offset: Annotated[Offset, Query(description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


def paginate(session: Session, stmt: Select[Any], page: PageParams) -> tuple[list[Any], int]:
    """One page of ``stmt``'s rows and the count of all of them."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    items = list(session.scalars(stmt.limit(page.limit).offset(page.offset)))
    return items, int(total or 0)
