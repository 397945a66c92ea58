"""Remote backends on a real `changeover serve` (issue 12): a hung backend fills only its own
version's worker threads (a local model keeps answering fast), a failing one answers 502/503
(not 500) with its breaker's events, and a canary on a remote backend that dies is rolled
back while the champion's users see no failure."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from changeover.cli.client import Client
from fakebackend import YAML, FakeBackend
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, running_server

SUM = "return {'y': inputs['x'].sum(axis=1)}"


def body(rows: int = 1) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [rows, 2], "datatype": "FP64", "data": [0.5] * (2 * rows)}]}


def wait_until(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def push(srv: ServerProcess, folder: Path, name: str, labels: dict[str, str] | None = None) -> int:
    client = Client(url=srv.url, token=TOKEN)
    try:  # trusted: the python folders are code (the remote ones need no trust)
        return int(client.push(folder, name=name, labels=labels or {}, runtime=None, trust=True)["version"])
    finally:
        client.close()


def champion(srv: ServerProcess, name: str, version: int) -> None:
    with srv.client() as api:
        api.put(f"/api/models/{name}/aliases/champion", json={"version": version}).raise_for_status()
    wait_until(lambda: httpx.post(f"{srv.url}/v2/models/{name}/infer", json=body(), timeout=10).status_code == 200,
               f"{name} to serve")


def remote_folder(root: Path, name: str, url: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model.yaml").write_text(YAML.format(url=url))
    return folder


def events(srv: ServerProcess, model: str) -> list[dict[str, Any]]:
    with srv.client() as api:
        return list(api.get("/api/events", params={"model": model, "limit": 200}).json())


def test_a_hung_backend_fills_only_its_own_threads_and_a_dead_one_answers_502_then_503(tmp_path: Path) -> None:
    with FakeBackend(hang_max_s=40) as backend, running_server(tmp_path / "home") as srv:
        push(srv, python_model(tmp_path / "local", SUM), "local")
        champion(srv, "local", 1)
        push(srv, remote_folder(tmp_path, "slow", backend.url), "slow",
             {"timeout_s": "30", "breaker_failures": "3", "breaker_cooldown_s": "30"})
        champion(srv, "slow", 1)

        backend.mode = "hang"
        hung: list[int] = []

        def call_slow() -> None:
            try:
                hung.append(httpx.post(f"{srv.url}/v2/models/slow/infer", json=body(), timeout=45).status_code)
            except httpx.HTTPError:
                hung.append(0)

        threads = [threading.Thread(target=call_slow, daemon=True) for _ in range(30)]
        for t in threads:
            t.start()
        # its 8 worker threads all wait on the backend; the 22 other calls queue for them
        wait_until(lambda: backend.hanging == 8, "the slow version's threads to fill")
        latencies = []
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            for _ in range(30):
                started = time.perf_counter()
                r = http.post("/v2/models/local/infer", json=body(20))
                latencies.append(time.perf_counter() - started)
                assert r.status_code == 200, r.text
        assert not hung and backend.hanging == 8  # all 30 still in flight meanwhile
        assert float(np.percentile(latencies, 95)) < 1.0, latencies
        backend.release.set()
        for t in threads:
            t.join(timeout=30)
        assert hung == [200] * 30

        # the backend answers 500: 502 naming it, three times, then the breaker opens: 503, not sent
        backend.mode = "fail"
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            answers = [http.post("/v2/models/slow/infer", json=body()) for _ in range(5)]
        assert [a.status_code for a in answers] == [502, 502, 502, 503, 503]
        assert backend.url in answers[0].json()["error"] and answers[0].json()["backend"] == backend.url
        assert "circuit breaker open" in answers[3].json()["error"]
        assert int(answers[3].headers["retry-after"]) >= 1
        opened = wait_until(lambda: [e for e in events(srv, "slow") if e["kind"] == "backend.open"],
                            "the backend.open event")
        assert opened[0]["evidence"]["url"] == backend.url and opened[0]["evidence"]["failures"] == 3
        log = srv.log.read_text()
        assert "prediction failed in slow v1" in log and "answered 500" in log
        assert "Traceback" not in log  # one warning line each, no traceback
        with srv.client() as api:
            metrics = api.get("/metrics").text
        assert 'changeover_requests_total{code="502",model="slow",version="1"} 3.0' in metrics


def test_a_canary_on_a_remote_backend_that_dies_is_rolled_back(tmp_path: Path) -> None:
    backend = ServerProcess(tmp_path / "backend-home")  # another changeover serving m: it speaks the protocol
    starting = threading.Thread(target=backend.start)  # both servers start at once
    starting.start()
    try:
        with running_server(tmp_path / "home", env={"CHANGEOVER_RECORD_RATE": "0"}) as srv:
            starting.join(timeout=60)
            push(backend, python_model(tmp_path / "b1", SUM), "m")
            champion(backend, "m", 1)
            assert push(srv, python_model(tmp_path / "v1", SUM), "m") == 1
            champion(srv, "m", 1)
            assert push(srv, remote_folder(tmp_path, "v2", backend.url), "m",
                        {"timeout_s": "2", "breaker_failures": "3", "breaker_cooldown_s": "2"}) == 2
            spec = {"model": "m", "candidate": "2",
                    "canary": {"steps": [50], "bake": "10m",
                               "judge": {"error_rate": {"max_increase": 0.02}, "min_requests": 10}}}
            answers: list[tuple[int, str]] = []
            stop = threading.Event()

            def traffic(seed: int) -> None:
                with httpx.Client(base_url=srv.url, timeout=10) as http:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        try:
                            r = http.post("/v2/models/m/infer", json=body(),
                                          headers={"x-changeover-key": f"user-{seed}-{n}"})
                            answers.append((r.status_code, r.headers.get("x-changeover-version", "-")))
                        except httpx.HTTPError:
                            answers.append((0, "-"))
                        time.sleep(0.01)

            threads = [threading.Thread(target=traffic, args=(i,), daemon=True) for i in range(3)]
            for t in threads:
                t.start()
            try:
                with srv.client() as api:
                    r = api.post("/api/rollouts", json={"spec": spec})
                    assert r.status_code in (200, 201), r.text
                    rid = r.json()["id"]
                    wait_until(lambda: sum(1 for s, v in answers if v == "2" and s == 200) >= 20,
                               "the candidate to serve")
                    backend.kill()  # mid-canary
                    killed_at = len(answers)
                    rollout = wait_until(lambda: (x := api.get(f"/api/rollouts/{rid}").json())["status"]["phase"]
                                         in ("rolled_back", "promoted", "aborted", "failed") and x,
                                         "the rollout to end", timeout=45)
                    tail = len(answers)
                    wait_until(lambda: len(answers) > tail + 30, "traffic after the rollback")
                    assert int(api.get("/api/models/m").json()["aliases"]["champion"]) == 1
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=15)
            assert rollout["status"]["phase"] == "rolled_back", rollout["status"]
            canary = [a for a in rollout["analyses"] if a["kind"] == "canary" and a["outcome"] != "inconclusive"]
            assert canary and canary[-1]["outcome"] == "fail", rollout["analyses"]
            champion_answers = [s for s, v in answers if v == "1"]
            assert champion_answers and set(champion_answers) == {200}  # the champion's users saw no failure
            after = answers[killed_at:]
            failed = [(s, v) for s, v in after if s != 200]
            assert failed and {v for _, v in failed} == {"2"}
            assert {s for s, _ in failed} <= {502, 503}, failed  # never a 500
            late = answers[tail + 3:]  # calls in flight when the rollback committed may still end on v2
            assert late and all(v == "1" for _, v in late), late
            kinds = [e["kind"] for e in events(srv, "m")]
            assert "backend.open" in kinds
            assert "Traceback" not in srv.log.read_text()
    finally:
        starting.join(timeout=60)
        backend.stop()
