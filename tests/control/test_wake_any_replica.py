"""A command given to any replica wakes the leader at once: two real `changeover serve` replicas
on one real PostgreSQL, with a controller tick of 60 s, so only the LISTEN/NOTIFY ring between
their controllers can make the leader act within a second on a write through the other."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess

pytestmark = pytest.mark.postgres
Y = "[{name: y, datatype: FP64, shape: [-1]}]"
TICK = {"CHANGEOVER_CONTROLLER_TICK_S": "60", "CHANGEOVER_POLICY_POLL_S": "60", "CHANGEOVER_ARTIFACTS": "db"}
PROMPT_S = 3.0  # "within ~1 s" (median 0.5 s), with room for a loaded test machine; the tick is 60 s


def within(check: Callable[[], Any], what: str, seconds: float) -> float:
    """How long ``check`` took to become true; fails past ``seconds``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"{what}: not within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
def replicas(fresh_postgres_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    servers = [ServerProcess(tmp_path / f"home-{n}", store=fresh_postgres_url, env=TICK) for n in "ab"]
    try:
        with ThreadPoolExecutor(2) as pool:  # at once: a loaded machine takes long to start each
            list(pool.map(lambda s: s.start(timeout=120), servers))
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def infer(server: ServerProcess) -> str:
    r = httpx.post(f"{server.url}/v2/models/m/infer", timeout=30,
                   json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]})
    return r.headers.get("x-changeover-version", "") if r.status_code == 200 else ""


def status(server: ServerProcess) -> dict[str, Any]:
    with server.client() as api:
        return api.get("/api/status").json()  # type: ignore[no-any-return]


def test_a_write_through_the_replica_that_does_not_lead_is_acted_on_at_once(
        replicas: tuple[ServerProcess, ServerProcess], tmp_path: Path) -> None:
    first, second = replicas
    within(lambda: status(first)["controller"]["leading"] or status(second)["controller"]["leading"],
           "a leader", 30)
    leader, other = (first, second) if status(first)["controller"]["leading"] else (second, first)
    assert not status(other)["controller"]["leading"]
    pusher = Client(url=other.url, token=TOKEN)
    for n in (1, 2):
        pusher.push(python_model(tmp_path / f"v{n}", f"return {{'y': inputs['x'].sum(axis=1) * {n}}}", outputs=Y),
                    name="m", labels={}, runtime=None, trust=True)
    pusher.close()
    def generation(server: ServerProcess) -> int:
        return int(status(server)["gateway"]["generations"].get("m", 0))

    with leader.client() as api:  # both versions loaded on both replicas: what is timed is the wake
        for version in (1, 2):
            r = api.put("/api/models/m/aliases/champion", json={"version": version})
            assert r.status_code == 200, r.text
            within(lambda v=version: {infer(leader), infer(other)} == {str(v)}, f"v{version} served", 60)  # type: ignore[misc]

    with other.client() as api:
        took = []
        for version in (1, 2, 1):  # alias moves: the leader writes each policy, both replicas adopt it
            before = generation(leader)
            r = api.put("/api/models/m/aliases/champion", json={"version": version})
            assert r.status_code == 200, r.text
            took.append(within(lambda b=before: generation(leader) > b and generation(other) > b,  # type: ignore[misc]
                               f"champion v{version} through the replica that does not lead", PROMPT_S))

        spec = {"model": "m", "candidate": "2",
                "canary": {"steps": [50], "bake": "10m", "judge": {"min_requests": 10}}, "watch": "1s"}
        r = api.post("/api/rollouts", json={"spec": spec}, timeout=120)  # replays recorded traffic first
        assert r.status_code == 201, r.text
        rid = r.json()["id"]

        def phase() -> str:
            return str(api.get(f"/api/rollouts/{rid}").json()["status"]["phase"])

        took.append(within(lambda: phase() == "progressing", "the new rollout's first step", PROMPT_S))
        for command, wanted in (("pause", "paused"), ("resume", "progressing"), ("abort", "aborted")):
            api.post(f"/api/models/m/rollout/{command}").raise_for_status()
            took.append(within(lambda w=wanted: phase() == w, command, PROMPT_S))  # type: ignore[misc]
    # the other replica's own controller never acted: its tick is 60 s and it does not lead
    assert not status(other)["controller"]["leading"]
    events = httpx.get(f"{leader.url}/api/events", params={"model": "m", "limit": 1000},
                       headers={"authorization": f"Bearer {TOKEN}"}).json()
    assert {e["actor"] for e in events if e["kind"] == "rollout.aborted"} == {status(leader)["controller"]["holder"]}
    print("acted on after", [f"{t * 1000:.0f} ms" for t in took])
