"""`changeover serve --workers 2`: two processes on one port share the store, follow the same
policy within milliseconds of a change, and /metrics adds up what both served."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess

OUTPUTS = "[{name: y, datatype: FP64, shape: [-1]}]"
BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("workers")
    srv = ServerProcess(root / "home", args=("--workers", "2"), env={"CHANGEOVER_POLICY_POLL_S": "60"})
    srv.start(timeout=90)
    try:
        pusher = Client(url=srv.url, token=TOKEN)
        for number in (1, 2):
            folder = python_model(root / f"v{number}", f"return {{'y': inputs['x'][:, 0] * 0 + {number}.0}}",
                                  outputs=OUTPUTS)
            assert pusher.push(folder, name="m", labels={}, runtime=None, trust=True)["version"] == number
        pusher.close()
        yield srv
    finally:
        srv.stop()


def served_by(srv: ServerProcess, n: int) -> list[float | None]:
    """What n requests, each on a new connection (so both workers take some), were answered with."""
    out: list[float | None] = []
    for _ in range(n):
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            r = http.post("/v2/models/m/infer", json=BODY)
            out.append(r.json()["outputs"][0]["data"][0] if r.status_code == 200 else None)
    return out


def pids_serving(srv: ServerProcess) -> set[str]:
    seen = set()
    for _ in range(40):
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            seen.add(http.get("/api/status", headers={"authorization": f"Bearer {TOKEN}"}).json()["gateway"]["replica"])
    return seen


def test_both_workers_answer_and_follow_a_champion_move_at_once(server: ServerProcess) -> None:
    assert len(pids_serving(server)) == 2  # two gateways behind one port
    with server.client() as api:
        api.put("/api/models/m/aliases/champion", json={"version": 1}).raise_for_status()
        deadline = time.monotonic() + 20
        while served_by(server, 10) != [1.0] * 10:
            assert time.monotonic() < deadline, "v1 never served by both workers"
        moved = time.monotonic()
        api.put("/api/models/m/aliases/champion", json={"version": 2}).raise_for_status()
        # the policy poll is 60 s here: only the signal between processes can make this fast
        while served_by(server, 10) != [2.0] * 10:
            assert time.monotonic() - moved < 5, "the other worker did not follow the move"


def test_metrics_add_up_both_workers(server: ServerProcess) -> None:
    def served() -> float:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "changeover_requests_total" and s.labels.get("model") == "m")

    before = served()
    answers = served_by(server, 40)
    assert all(a is not None for a in answers)
    assert served() - before == 40  # whichever worker answered the scrape
    assert served() - before == 40
