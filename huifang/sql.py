"""SQL that PostgreSQL and SQLite spell differently, behind one object per session.

Set-based work (the campaign materializer) builds one statement for both databases:
date arithmetic in a time zone, constant tables to join, ``INSERT … ON CONFLICT`` and
statements whose plan must follow their bounds. ``Dialect(session)`` picks the spelling
from the session's connection; SQLite, which has no time zones, gets a small Python
function registered on its connection for the local date of a timestamp.

``Prepared`` runs a statement of a hot path by the driver, compiled once.

``insert_rows`` writes many plain rows (a customer import) as multi-row ``INSERT … VALUES``
handed to the driver as they are, for where SQLAlchemy's per-row work would cost more than
the database's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    ColumnElement,
    Date,
    FromClause,
    Integer,
    String,
    Table,
    any_,
    column,
    func,
    literal,
    select,
    values,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.types import TypeEngine

from huifang.db import READ_ONLY, ReadOnly

Column = ColumnElement[Any] | QueryableAttribute[Any]


def _local_date_text(value: str | None, zone: str | None) -> str | None:
    """SQLite has no time zones: the local date of a stored UTC timestamp, for SQL."""
    if value is None or zone is None:
        return None
    try:
        found = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    moment = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return moment.astimezone(found).date().isoformat()


class Dialect:
    """Date arithmetic, constant tables and inserts, spelled for the session's database."""

    def __init__(self, session: Session) -> None:
        connection = session.connection()
        self.session = session
        self.dialect = connection.dialect
        self.postgres = connection.dialect.name == "postgresql"
        if not self.postgres:
            raw = cast(Any, connection.connection).dbapi_connection
            raw.create_function("huifang_local_date", 2, _local_date_text, deterministic=True)

    def local_date(self, moment: Column, zone: Column) -> ColumnElement[dt.date]:
        """The date of a UTC timestamp on the wall calendar of ``zone``."""
        if self.postgres:
            return func.timezone(zone, moment).cast(Date)
        return func.huifang_local_date(moment, zone, type_=Date)

    def add_days(
        self, day: ColumnElement[Any], days: ColumnElement[Any] | int
    ) -> ColumnElement[dt.date]:
        if self.postgres:
            return cast(ColumnElement[dt.date], day + days)
        return func.date(day, func.printf("%+d days", days), type_=Date)

    def days_between(
        self, later: ColumnElement[Any], earlier: ColumnElement[Any]
    ) -> ColumnElement[int]:
        if self.postgres:
            return cast(ColumnElement[int], later - earlier)
        return (func.julianday(later) - func.julianday(earlier)).cast(Integer)

    def month_day(self, day: ColumnElement[Any]) -> ColumnElement[str]:
        if self.postgres:
            return func.to_char(day, "MM-DD")
        return func.strftime("%m-%d", day)

    @contextlib.contextmanager
    def custom_plans(self) -> Iterator[None]:
        """Plan every run of a repeated statement with its own bounds (PostgreSQL).

        A statement whose text repeats (one per chunk) is prepared by psycopg after a few
        runs, and PostgreSQL may then switch to a generic plan that ignores the bounds and
        picks a join far slower for some chunks (BENCHMARKS.md, the materializer). Not
        preparing it keeps one plan per run. ``plan_cache_mode = force_custom_plan`` would
        too, but it also re-plans the foreign-key triggers' checks for every row inserted.
        """
        if not self.postgres:
            yield
            return
        raw = cast(Any, self.session.connection().connection).dbapi_connection
        previous = raw.prepare_threshold
        raw.prepare_threshold = None
        try:
            yield
        finally:
            raw.prepare_threshold = previous

    def insert(self, table: Table) -> Any:
        """The dialect's ``INSERT`` (with ``on_conflict_do_nothing``) for a Core table."""
        return (postgresql.insert if self.postgres else sqlite.insert)(table)

    def table(
        self,
        name: str,
        columns: Sequence[tuple[str, TypeEngine[Any]]],
        rows: Sequence[Sequence[Any]],
    ) -> FromClause:
        """Constant rows for the database to join: a ``VALUES`` list on PostgreSQL; on
        SQLite (no column names on ``VALUES``, 500 terms at most in a compound select) one
        JSON parameter read with ``json_each``, each value as the column type stores it."""
        if self.postgres:
            return values(*(column(n, kind) for n, kind in columns), name=name).data(
                [tuple(row) for row in rows]
            )
        processors = [
            kind.dialect_impl(self.dialect).bind_processor(self.dialect) for _, kind in columns
        ]
        payload = json.dumps(
            [[p(v) if p else v for p, v in zip(processors, row, strict=True)] for row in rows],
            ensure_ascii=False,
        )
        each = func.json_each(literal(payload, String())).table_valued("value")
        return select(
            *(
                func.json_extract(each.c.value, f"$[{i}]", type_=kind).label(n)
                for i, (n, kind) in enumerate(columns)
            )
        ).subquery(name)


def one_of(session: Session, column: Column, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(array)``, one parameter however
    many values (an IN list of a thousand is a thousand parameters for the driver to place
    and the server to parse)."""
    if session.connection().dialect.name == "postgresql":
        kind = cast(Any, column).type
        return cast(Any, column) == any_(literal(list(values), ARRAY(kind)))
    return cast(Any, column).in_(values)


def driver_sql(session: Session, statement: str, params: Mapping[str, Any]) -> Any:
    """PostgreSQL: ``statement`` written in psycopg's own placeholders, run on the session's
    connection (its transaction, its row-level security scope) after flushing the session,
    as ``session.execute`` would. ``%(name)b`` sends a parameter in binary: an array of a
    batch's values costs the driver a fraction of its text form, which quotes and escapes
    every element in Python. Values come back as the driver reads them (no column types:
    a timestamp is in the connection's time zone)."""
    session.flush()
    return session.connection().exec_driver_sql(statement, params)


# Positional placeholders by DBAPI paramstyle (sqlite3: qmark; psycopg: pyformat).
_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def insert_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    same: Mapping[str, Any] | None = None,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (values in the order of ``columns``) and ``same`` (column → a value
    for every row); the ``returning`` columns of the inserted rows, in no promised order.

    For many plain rows at once (a customer import): the values go to the driver as they
    are, without SQLAlchemy's per-row work (a parameter dict, type conversion, Python-side
    defaults), so they must be what the driver takes for the column (text, numbers; the
    ``same`` values do get their column type's conversion, once), and columns left out get
    only the database's defaults. PostgreSQL receives one array per column and inserts
    from ``unnest``: one short statement, whatever the number of rows (COPY would be
    faster, but it refuses tables under row-level security). SQLite receives multi-row
    ``INSERT … VALUES``, ``_SQLITE_BATCH`` rows a statement.
    """
    if session.info.get(READ_ONLY):
        raise ReadOnly("an INSERT in a session opened to read only")
    if not rows:
        return []
    connection = session.connection()
    dialect = connection.dialect
    mark = _PLACEHOLDER[dialect.paramstyle]
    constants = dict(same or {})
    for name, value in constants.items():
        kind = table.c[name].type
        process = kind.dialect_impl(dialect).bind_processor(dialect)
        constants[name] = process(value) if process else value
    # Names only from the table's own columns (KeyError otherwise), quoted by the dialect;
    # every value is a parameter.
    quote = dialect.identifier_preparer.format_column
    target = dialect.identifier_preparer.format_table(table)
    names = ", ".join(quote(table.c[name]) for name in [*columns, *constants])
    back = ", ".join(quote(table.c[name]) for name in returning)
    tail = f" RETURNING {back}" if returning else ""
    out: list[tuple[Any, ...]] = []
    if dialect.name == "postgresql":

        def cast_to(name: str, placeholder: str, suffix: str = "") -> str:
            return f"{placeholder}::{table.c[name].type.compile(dialect=dialect)}{suffix}"

        # The arrays go in binary (psycopg's %b): the text form quotes and escapes every
        # element in Python, several times the cost.
        arrays = ", ".join(cast_to(name, "%b", "[]") for name in columns)
        fixed = "".join(", " + cast_to(name, mark) for name in constants)
        statement = f"INSERT INTO {target} ({names}) SELECT *{fixed} FROM unnest({arrays}){tail}"  # noqa: S608
        by_column = [list(values) for values in zip(*rows, strict=True)]
        result = connection.exec_driver_sql(statement, (*constants.values(), *by_column))
        return [tuple(row) for row in result] if returning else out
    one = "(" + ", ".join([mark] * (len(columns) + len(constants))) + ")"
    fixed_values = tuple(constants.values())
    for start in range(0, len(rows), _SQLITE_BATCH):
        part = rows[start : start + _SQLITE_BATCH]
        params = tuple(value for row in part for value in (*row, *fixed_values))
        statement = f"INSERT INTO {target} ({names}) VALUES {', '.join([one] * len(part))}{tail}"  # noqa: S608
        result = connection.exec_driver_sql(statement, params)
        if returning:
            out.extend(tuple(row) for row in result)
    return out


_SQLITE_BATCH = 500


class Prepared:
    """A Core statement compiled once, run on a session's own connection by its driver.

    For the few statements of a hot path (the opt-out webhook), where SQLAlchemy's work per
    execution (the execution context, the result's set-up and processing) costs as much as
    the statement. ``values`` are the statement's binds by name, each converted by its
    type as SQLAlchemy would; the rows come back as the driver gives them, without result
    processing (a timestamp is the driver's aware datetime, not necessarily in UTC). A
    statement that needs Python-side column defaults is refused (they would be left out).
    Listeners of the engine's ``before_cursor_execute`` see the statement; a driver error
    is raised as SQLAlchemy's (``IntegrityError``, …).
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Any) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = _Compiled(self.statement, dialect)
        return found

    def rows(self, session: Session, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The statement's rows, run in the session's transaction."""
        if session.info.get(READ_ONLY) and self.statement.is_dml:
            raise ReadOnly("an INSERT, UPDATE or DELETE in a session opened to read only")
        session.flush()
        connection = session.connection()
        sql, params = self._for(connection.dialect).parameters(values)
        dispatch = connection.dispatch.before_cursor_execute
        cursor = connection.connection.cursor()
        try:
            for listener in dispatch:
                listener(connection, cursor, sql, params, None, False)
            cursor.execute(sql, params)
            return cast(list[tuple[Any, ...]], cursor.fetchall())
        except connection.dialect.loaded_dbapi.Error as error:
            dialect = connection.dialect
            if dialect.is_disconnect(error, connection.connection, cursor):
                connection.invalidate(error)
            raise DBAPIError.instance(
                sql, params, error, dialect.loaded_dbapi.Error, dialect=dialect
            ) from error
        finally:
            cursor.close()


class _Compiled:
    """A statement compiled for one dialect: its SQL, the values it holds itself (a
    ``LIMIT``'s), the binds the caller must give, and their types' conversions."""

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("Prepared takes no statement with Python-side defaults")
        if dialect.paramstyle != "pyformat":
            raise ValueError("Prepared takes a driver of named parameters (psycopg)")
        self.sql: str = compiled.string
        self.own: dict[str, Any] = {}
        self.required: set[str] = set()
        self.processors: list[tuple[str, Any]] = []
        for name, bind in compiled.binds.items():
            if bind.callable is not None or bind.expanding:
                raise ValueError("Prepared takes plain binds")
            key = compiled.escaped_bind_names.get(name, name)
            if f"%({key})s" not in self.sql:
                continue  # another name of a bind listed under the name it has in the SQL
            if bind.required:
                self.required.add(key)
            else:
                self.own[key] = bind.value
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self.processors.append((key, process))

    def parameters(self, values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The SQL and the driver's parameters for ``values`` (every required bind)."""
        missing = self.required.difference(values)
        if missing:
            raise ValueError(f"values missing for {', '.join(sorted(missing))}")
        params = {**self.own, **values}
        for key, process in self.processors:
            params[key] = process(params[key])
        return self.sql, params
