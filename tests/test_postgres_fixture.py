"""The PostgreSQL fixtures give a real server, reachable through SQLAlchemy."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from postgres_fixture import PostgresServer


def test_postgres_url_is_a_real_postgresql(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            version = conn.execute(sa.text("select version()")).scalar_one()
            assert version.startswith("PostgreSQL ")
            database = conn.execute(sa.text("select current_database()")).scalar_one()
            assert database == "changeover_test"
            conn.execute(sa.text("create table fixture_probe (id serial primary key, note text)"))
            conn.execute(sa.text("insert into fixture_probe (note) values ('hello')"))
            assert conn.execute(sa.text("select note from fixture_probe")).scalar_one() == "hello"
            conn.execute(sa.text("drop table fixture_probe"))
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("fixture_probe")
    finally:
        engine.dispose()


@pytest.mark.parametrize("run", [1, 2])
def test_fresh_postgres_url_starts_empty(
    run: int, postgres_url: str, fresh_postgres_url: str
) -> None:
    assert fresh_postgres_url != postgres_url
    engine = sa.create_engine(fresh_postgres_url)
    try:
        with engine.begin() as conn:
            assert sa.inspect(conn).get_table_names() == []
            conn.execute(sa.text("create table leftover (x int)"))  # the next run must not see it
    finally:
        engine.dispose()


def test_drop_database_ignores_open_connections(postgres_server: PostgresServer) -> None:
    postgres_server.create_database("changeover_probe_drop")
    engine = sa.create_engine(postgres_server.url("changeover_probe_drop"))
    conn = engine.connect()
    try:
        conn.execute(sa.text("select 1"))
        postgres_server.drop_database("changeover_probe_drop")  # WITH (FORCE)
    finally:
        conn.invalidate()
        conn.close()
        engine.dispose()
    admin = sa.create_engine(postgres_server.url("postgres"))
    try:
        with admin.connect() as c:
            names = c.execute(sa.text("select datname from pg_database")).scalars().all()
        assert "changeover_probe_drop" not in names
    finally:
        admin.dispose()
