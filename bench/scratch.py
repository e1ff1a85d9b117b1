"""An empty database for a benchmark, gone afterwards: a temporary SQLite file, or a
scratch database of its own on the PostgreSQL server a URL names."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@contextmanager
def scratch_database(url: str | None, name: str) -> Iterator[str]:
    """The URL of an empty database called ``name`` (PostgreSQL), or a SQLite file."""
    if url is None:
        with tempfile.TemporaryDirectory(prefix="huifang-bench-") as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
        return
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise SystemExit("--database takes a PostgreSQL server URL; leave it out for SQLite")
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT")

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" (FORCE)'))

    drop()
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield parsed.set(database=name).render_as_string(hide_password=False)
    finally:
        drop()
        admin.dispose()
