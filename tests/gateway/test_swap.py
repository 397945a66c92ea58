"""Moving `champion` under load: no failed request, every answer from the version it names."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from modelfiles import python_model
from serverproc import running_server

BODY = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}]}
EXPECTED = {"1": [3.0, 7.0], "2": [31.0, 71.0]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("swap")
    v1 = python_model(root / "m1", "return {'y': inputs['x'].sum(axis=1)}")
    v2 = python_model(root / "m2", "time.sleep(0.002)\nreturn {'y': inputs['x'].sum(axis=1) * 10 + 1}")
    broken = python_model(root / "broken", "raise RuntimeError('cannot predict')")
    with running_server(root / "home") as srv:
        for path in (v1, v2, broken):
            srv.cli("models", "push", str(path), "--name", "m", "--trust", check=True)
        srv.cli("alias", "set", "m", "champion", "1", check=True)
        yield srv


def wait_for_version(srv, version: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.post(f"{srv.url}/v2/models/m/infer", json=BODY)
        if r.status_code == 200 and r.headers["x-changeover-version"] == version:
            return
        time.sleep(0.02)
    raise AssertionError(f"traffic never moved to v{version}")


def test_champion_moves_back_and_forth_under_load_without_a_failed_request(server) -> None:
    wait_for_version(server, "1")
    stop = threading.Event()
    answers: list[tuple[int, str | None, list[float] | None]] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                try:
                    r = http.post("/v2/models/m/infer", json=BODY)
                    data = r.json()["outputs"][0]["data"] if r.status_code == 200 else None
                    item = (r.status_code, r.headers.get("x-changeover-version"), data)
                except httpx.HTTPError as exc:  # a refused connection is a failed request too
                    item = (0, repr(exc), None)
                with lock:
                    answers.append(item)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    moves = 0
    with server.client() as api:
        for i in range(24):
            target = 2 if i % 2 == 0 else 1
            r = api.put("/api/models/m/aliases/champion", json={"version": target, "reason": "swap test"})
            assert r.status_code == 200, r.text
            wait_for_version(server, str(target))
            moves += 1
            time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=30)

    assert moves >= 20
    assert len(answers) > 200
    failed = [a for a in answers if a[0] != 200]
    assert failed == [], f"{len(failed)} failed requests, e.g. {failed[:3]}"
    wrong = [a for a in answers if a[2] != EXPECTED[a[1]]]  # type: ignore[index]
    assert wrong == [], f"answers not matching the version in their header: {wrong[:3]}"
    served = {a[1] for a in answers}
    assert served == {"1", "2"}


def test_a_version_that_fails_to_warm_is_not_switched_to(server) -> None:
    with server.client() as api:
        current = api.get("/api/models/m").json()["aliases"]["champion"]
        r = api.put("/api/models/m/aliases/champion", json={"version": 3})
        assert r.status_code == 409
        assert "warm" in r.json()["error"] and "cannot predict" in r.json()["error"]
        assert api.get("/api/models/m").json()["aliases"]["champion"] == current
        events = api.get("/api/events", params={"model": "m"}).json()
        refused = [e for e in events if e["kind"] == "refused"]
        assert refused and refused[-1]["evidence"]["version"] == 3
    r = httpx.post(f"{server.url}/v2/models/m/infer", json=BODY)
    assert r.status_code == 200
    assert r.headers["x-changeover-version"] == str(current)
    assert r.json()["outputs"][0]["data"] == EXPECTED[str(current)]


def test_the_old_version_drains_before_it_is_unloaded(server) -> None:
    # the previous champion stays warm (alias `previous`); anything older is unloaded
    with server.client() as api:
        api.put("/api/models/m/aliases/champion", json={"version": 1})
        wait_for_version(server, "1")
        api.put("/api/models/m/aliases/champion", json={"version": 2})
        wait_for_version(server, "2")
        status = api.get("/api/status").json()
        loaded = sorted(x["version"] for x in status["gateway"]["loaded"] if x["model"] == "m")
        assert loaded == [1, 2]


def weight_series(srv) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{srv.url}/metrics").text
    return {s.labels["version"]: s.value for family in text_string_to_metric_families(text)
            if family.name == "changeover_traffic_weight" for s in family.samples if s.labels.get("model") == "m"}


def test_traffic_weight_series_are_those_of_the_versions_that_serve(server) -> None:
    """/metrics kept the series of versions that no longer served (v1=40, v2=50, v3=100 … for one
    model): the weights of the versions serving now, adding up to 100, and nothing else."""
    for version in ("2", "1"):
        server.cli("alias", "set", "m", "champion", version, check=True)
        wait_for_version(server, version)
        assert weight_series(server) == {version: 100.0}
