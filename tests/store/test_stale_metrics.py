"""PostgreSQL stopped for a few seconds under a rollout whose bake ends meanwhile: when the
store is back but the recorder has not yet written what it held, the judge does not judge the
step on what is missing: it waits, saying "metrics stale since T (replica X's recorder cannot
write)", and the step passes once the held windows are in."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from changeover.cli.client import Client
from modelfiles import python_model
from postgres_fixture import PostgresServer, find_pg_bin
from serverproc import TOKEN, ServerProcess

pytestmark = pytest.mark.postgres
Y = "[{name: y, datatype: FP64, shape: [-1]}]"
BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}
OUTAGE_S = 7.0  # the recorder's back-off reaches a few seconds: it comes back after the controller
BAKE_S = 12.0  # the outage begins before the bake's end (on a loaded machine too) and ends after it


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


def events(api: httpx.Client) -> list[dict[str, Any]]:
    r = api.get("/api/events", params={"model": "m", "limit": 1000})
    return r.json() if r.status_code == 200 else []  # type: ignore[no-any-return]


def test_a_stalled_recorder_makes_the_step_wait_not_judge_nothing(own_postgres: PostgresServer,
                                                                   tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home", store=own_postgres.url()).start(timeout=120)
    stop = threading.Event()
    try:
        pusher = Client(url=server.url, token=TOKEN)
        for n in (1, 2):
            pusher.push(python_model(tmp_path / f"v{n}", f"return {{'y': inputs['x'].sum(axis=1) * {n}}}",
                                     outputs=Y), name="m", labels={}, runtime=None, trust=True)
        pusher.close()

        canary_served = threading.Event()

        def traffic() -> None:
            with httpx.Client(timeout=10) as http:
                while not stop.is_set():
                    with contextlib.suppress(httpx.HTTPError):  # a loaded machine: go on sending
                        r = http.post(f"{server.url}/v2/models/m/infer", json=BODY)
                        if r.headers.get("x-changeover-version") == "2":
                            canary_served.set()
                    time.sleep(0.01)

        with server.client() as api:
            api.timeout = httpx.Timeout(120)  # a rollout's start replays recorded traffic in a worker first
            api.put("/api/models/m/aliases/champion", json={"version": 1}).raise_for_status()
            sender = threading.Thread(target=traffic, daemon=True)
            sender.start()
            spec = {"model": "m", "candidate": "2", "watch": 0,
                    "canary": {"steps": [50], "bake": f"{BAKE_S:g}s", "max_extensions": 0,
                               "judge": {"min_requests": 5, "error_rate": {"max_increase": 0.5},
                                         "latency_p99_ms": None}}}
            r = api.post("/api/rollouts", json={"spec": spec})
            assert r.status_code == 201, r.text
            deadline = time.monotonic() + 60
            while not (started := [e for e in events(api) if e["kind"] == "step.started"]):
                assert time.monotonic() < deadline, "the step did not start"
                time.sleep(0.1)
            assert canary_served.wait(BAKE_S - 3), "the canary did not serve well before the bake's end"

            own_postgres.pause()  # the bake ends during the outage
            time.sleep(max(OUTAGE_S, started[0]["at"] + BAKE_S + 1.0 - time.time()))
            own_postgres.resume()

            deadline = time.monotonic() + 60
            while True:
                kinds = {e["kind"]: e for e in events(api)}
                if "step.passed" in kinds or "step.inconclusive" in kinds or "step.failed" in kinds:
                    break
                assert time.monotonic() < deadline, "the step was never judged after the outage"
                time.sleep(0.2)
        stop.set()
        sender.join(timeout=15)
        with server.client() as api:
            log = api.get("/api/events", params={"limit": 1000}).json()
        waiting = [e for e in log if e["kind"] == "step.waiting"]
        assert waiting, [(e["kind"], e["message"]) for e in log]
        message = waiting[0]["message"]
        assert "metrics stale since" in message and "recorder cannot write" in message, message
        stale = waiting[0]["evidence"]["analysis"]["stale"]
        with server.client() as api:
            replica = api.get("/api/status").json()["gateway"]["replica"]
        assert stale["replica"] == replica
        passed = [e for e in log if e["kind"] == "step.passed"]
        assert passed, [(e["kind"], e["message"]) for e in log]
        assert passed[0]["id"] > waiting[0]["id"]
        recovered = [e for e in log if e["kind"] == "recorder.recovered"]
        assert recovered and recovered[0]["id"] < passed[0]["id"]  # judged on the held windows
        assert "stale" not in passed[0]["evidence"]["analysis"]
    finally:
        stop.set()
        server.stop()
