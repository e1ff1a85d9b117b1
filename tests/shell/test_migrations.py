"""Alembic: the migrations build exactly the models' schema, and go down and up again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from huifang.db import Base
from huifang.migrate import alembic_config, downgrade, upgrade


def test_models_and_migrations_agree(database):
    # Raises when autogenerate would find anything to add, drop or alter.
    command.check(alembic_config(database.url))


def test_every_business_table_carries_the_tenant(database):
    infrastructure = {"tenants", "worker_heartbeats", "alembic_version"}
    tables = set(inspect(database.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    for table in tables - infrastructure:
        columns = {c["name"] for c in inspect(database.engine).get_columns(table)}
        assert "tenant_id" in columns, table


def test_downgrade_to_nothing_and_up_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'scratch.db'}"
    upgrade(url)
    downgrade(url, "base")
    from huifang.db import make_engine

    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    assert "customers" in inspect(engine).get_table_names()
    engine.dispose()
