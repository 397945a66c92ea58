"""Replicas started at the same instant on an empty database all come up: migrations run one
process at a time (an advisory lock on PostgreSQL, a file lock beside SQLite), and the first
start's token is the one every process uses."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from changeover.web.auth import ensure_token
from serverproc import ServerProcess


def start_together(servers: list[ServerProcess]) -> list[BaseException | None]:
    errors: list[BaseException | None] = [None] * len(servers)
    barrier = threading.Barrier(len(servers))

    def start(i: int) -> None:
        barrier.wait()
        try:
            servers[i].start(timeout=90)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors[i] = exc

    threads = [threading.Thread(target=start, args=(i,)) for i in range(len(servers))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return errors


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_replicas_started_at_once_on_an_empty_database_all_come_up(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if backend == "postgres":
        url = str(request.getfixturevalue("fresh_postgres_url"))
    else:
        url = f"sqlite:///{tmp_path / 'shared' / 'store.db'}"
        (tmp_path / "shared").mkdir()
    servers = [ServerProcess(tmp_path / f"home-{i}", store=url) for i in range(3)]
    try:
        errors = start_together(servers)
        assert errors == [None, None, None], [s.log.read_text()[-2000:] for s in servers if s.log.exists()]
        for server in servers:
            assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
            with server.client() as api:
                assert api.get("/api/models").status_code == 200
    finally:
        for server in servers:
            server.stop()


def _open_store(url: str, barrier: Any, out: Any) -> None:
    from changeover.store.store import Store

    barrier.wait()  # every process imported and ready: they migrate at the same instant
    try:
        Store(url).close()
        out.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported by the test
        out.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_raced_by_six_processes_all_succeed(backend: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    url = (str(request.getfixturevalue("fresh_postgres_url")) if backend == "postgres"
           else f"sqlite:///{tmp_path / 'store.db'}")
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_open_store, args=(url, barrier, out)) for _ in range(6)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert results == ["ok"] * 6


def test_one_token_for_every_process_that_starts_on_a_home_at_once(tmp_path: Path) -> None:
    path = tmp_path / "home" / "token"
    got: list[tuple[str, bool]] = []
    barrier = threading.Barrier(8)

    def make() -> None:
        barrier.wait()
        got.append(ensure_token(None, path))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len({token for token, _ in got}) == 1
    assert sum(generated for _, generated in got) == 1
    assert path.stat().st_mode & 0o777 == 0o600
