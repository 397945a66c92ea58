"""PostgreSQL goes away under a real server: inference goes on, management calls answer 503
naming the store, and when the database is back the writer catches up — the requests served
during the outage are in the request log (feedback joins them) and one event says so."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from changeover.cli.client import Client
from modelfiles import python_model
from postgres_fixture import PostgresServer, find_pg_bin
from serverproc import TOKEN, ServerProcess

pytestmark = pytest.mark.postgres
Y = "[{name: y, datatype: FP64, shape: [-1]}]"
BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    bindir = find_pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries")
    pg = PostgresServer(bindir)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


def test_an_outage_of_the_store(own_postgres: PostgresServer, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home", store=own_postgres.url(), env={"CHANGEOVER_POLICY_POLL_S": "0.5"})
    server.start()
    try:
        pusher = Client(url=server.url, token=TOKEN)
        pusher.push(python_model(tmp_path / "v1", "return {'y': inputs['x'].sum(axis=1)}", outputs=Y), name="m",
                    labels={}, runtime=None, trust=True)
        pusher.close()
        with server.client() as api:
            api.put("/api/models/m/aliases/champion", json={"version": 1}).raise_for_status()
            deadline = time.monotonic() + 20
            while httpx.post(f"{server.url}/v2/models/m/infer", json=BODY, timeout=10).status_code != 200:
                assert time.monotonic() < deadline

            own_postgres.pause()
            served = []
            for _ in range(30):
                r = httpx.post(f"{server.url}/v2/models/m/infer", json=BODY, timeout=10)
                assert r.status_code == 200, r.text  # users see nothing
                served.append(r.headers["x-request-id"])
            down = api.get("/api/models")
            assert down.status_code == 503, down.text
            assert "store is unavailable" in down.json()["error"] and down.headers["retry-after"]
            time.sleep(1.0)

            own_postgres.resume()
            deadline = time.monotonic() + 30
            while True:
                kinds = [e["kind"] for e in api.get("/api/events", params={"limit": 1000}).json()] \
                    if api.get("/api/models").status_code == 200 else []
                if "recorder.recovered" in kinds:
                    break
                assert time.monotonic() < deadline, "the writer did not say it caught up"
                time.sleep(0.3)
            # a request served while the store was away is in the request log
            fb = httpx.post(f"{server.url}/v1/feedback", json={"request_id": served[0], "label": 3.0}, timeout=10)
            assert fb.status_code == 201, fb.text
            status = api.get("/api/status").json()
            assert status["gateway"]["recorder"]["stalled_since"] is None
    finally:
        server.stop()
