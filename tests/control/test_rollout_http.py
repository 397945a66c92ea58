"""Progressive rollouts through the CLI against a real server under real traffic:
`apply` to promotion or rollback, wrong specs, one rollout per model, operator commands,
and sticky canary routing."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, running_server

OUTPUTS = "[{name: label, datatype: INT64, shape: [-1]}]"
VERSIONS = {
    1: "return {'label': (inputs['x'][:, 0] > 0).astype(np.int64)}",
    2: "x = inputs['x']\nreturn {'label': (x[:, 0] > 0).astype(np.int64) * 1}",
    # passes on the rows the holdout has; raises on a slice of live traffic (x1 > 50)
    3: "x = inputs['x']\nif (x[:, 1] > 50).any():\n    raise ValueError('never trained on x1 > 50')\n"
       "return {'label': (x[:, 0] > 0).astype(np.int64)}",
}
CANARY = """canary:
  steps: [20, 50]
  bake: 3s
  max_extensions: 4
  judge:
    error_rate: {max_increase: 0.02}
    latency_p99_ms: {max_ratio: 5.0}
    min_requests: 20
watch: 2s
"""


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Traffic:
    """Clients sending requests with random sticky keys until stopped; a share of them from
    the slice (x1 = 60) the bad candidate cannot read."""

    def __init__(self, url: str, *, clients: int = 4, slice_share: float = 0.0) -> None:
        self.url, self.clients, self.slice_share = url, clients, slice_share
        self.answers: list[tuple[int, str, bool]] = []  # (status, version, from the slice)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                sliced = rng.random() < self.slice_share
                body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64",
                                    "data": [rng.uniform(-1, 1), 60.0 if sliced else rng.uniform(-1, 1)]}]}
                try:
                    r = http.post("/v2/models/m/infer", json=body,
                                  headers={"x-changeover-key": f"user-{rng.randrange(100_000)}"})
                    item = (r.status_code, r.headers.get("x-changeover-version", "-"), sliced)
                except httpx.HTTPError:
                    item = (0, "-", sliced)
                with self._lock:
                    self.answers.append(item)

    def since(self, start: int) -> list[tuple[int, str, bool]]:
        with self._lock:
            return self.answers[start:]

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.answers)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rollout")
    with running_server(root / "home", env={"COLUMNS": "200"}) as srv:
        pusher = Client(url=srv.url, token=TOKEN)
        for number, body in VERSIONS.items():
            folder = python_model(root / f"v{number}", body, outputs=OUTPUTS)
            assert pusher.push(folder, name="m", labels={}, runtime=None, trust=True)["version"] == number
        pusher.close()
        with srv.client() as api:
            assert api.put("/api/models/m/aliases/champion", json={"version": 1}).status_code == 200
        wait_for_version(srv, "1")
        yield srv


@pytest.fixture
def api(server: ServerProcess):
    with server.client() as client:
        yield client
        active = client.get("/api/rollouts", params={"model": "m", "active": True}).json()
        if active:  # leave no rollout running for the next test
            client.post("/api/models/m/rollout/abort")
            wait_until(lambda: not client.get("/api/rollouts", params={"model": "m", "active": True}).json(),
                       "the rollout to end")


def infer(srv: ServerProcess, key: str | None = None) -> httpx.Response:
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [0.5, 0.5]}]}
    return httpx.post(f"{srv.url}/v2/models/m/infer", json=body, headers={"x-changeover-key": key} if key else {},
                      timeout=10)


def wait_for_version(srv: ServerProcess, version: str) -> None:
    wait_until(lambda: (r := infer(srv)).status_code == 200 and r.headers["x-changeover-version"] == version,
               f"traffic to move to v{version}")


def write_spec(folder: Path, text: str) -> Path:
    path = folder / "spec.yaml"
    path.write_text(text)
    return path


def champion(api: httpx.Client) -> int:
    return int(api.get("/api/models/m").json()["aliases"]["champion"])


def rollout_events(srv: ServerProcess, rid: int) -> list[dict[str, Any]]:
    result = srv.cli("events", "m", "--json", "--limit", "1000")
    assert result.returncode == 0, result.stderr
    return [e for e in json.loads(result.stdout) if (e.get("evidence") or {}).get("rollout") == rid]


def latest(api: httpx.Client) -> dict[str, Any]:
    return api.get("/api/rollouts", params={"model": "m", "limit": 1}).json()[0]


def test_a_wrong_spec_is_refused_with_every_field_path(server: ServerProcess, api: httpx.Client, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, """model: m
candidate: "2"
gate: {task: guessing}
canary:
  steps: [50, 20]
  bake: soon
  judge: {error_rate: {max_increse: 0.01}}
promote: sometimes
""")
    result = server.cli("apply", str(spec))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "invalid rollout spec" in result.stderr
    for path in ("gate.data", "gate.task", "canary.steps[1]", "canary.bake",
                 "canary.judge.error_rate.max_increse", "promote"):
        assert f"  {path}: " in result.stderr, f"{path} not listed in:\n{result.stderr}"
    assert "did you mean 'max_increase'" in result.stderr
    assert api.get("/api/rollouts", params={"model": "m"}).json() == []  # nothing started


def test_a_good_candidate_is_promoted_step_by_step(server: ServerProcess, api: httpx.Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(80, 2))
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": (x[:, 0] > 0).astype(int)}).to_csv(tmp_path / "small.csv", index=False)
    spec = write_spec(tmp_path, """model: m
candidate: "2"
gate:
  data: small.csv
  task: classification
  require:
    accuracy: {not_worse_than: champion, margin: 0.05}
""" + CANARY)
    with Traffic(server.url) as traffic:
        result = server.cli("apply", str(spec), "--timeout", "150")
        tail = traffic.count
        wait_until(lambda: traffic.count > tail + 20, "traffic after the promotion")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "m: promoted" in result.stdout

    assert api.get("/api/models/m").json()["aliases"] == {"champion": 2, "previous": 1}
    assert [a for a in traffic.answers if a[0] != 200] == [], "a user request failed during the rollout"
    assert {a[1] for a in traffic.since(tail)} == {"2"}
    assert {"1", "2"} <= {a[1] for a in traffic.answers}

    rid = latest(api)["id"]
    events = rollout_events(server, rid)
    # a bake with too few samples yet waits for them (or, with enough, is extended): allowed, and said
    kinds = [e["kind"] for e in events if "." in e["kind"] and e["kind"] not in ("bake.extended", "step.waiting")]
    assert kinds == ["compat.passed", "rollout.created", "gate.started", "gate.passed", "step.started", "step.passed",
                     "step.started", "step.passed", "promote.started", "promote.done", "watch.passed"]
    weights = [e["evidence"]["policy"]["weights"] for e in events if e["kind"] == "policy"]
    assert [w["2"] for w in weights if "2" in w] == [20.0, 50.0]
    # during the watch 2% of users stay on the old champion: the watch's concurrent baseline
    assert {"1": 2.0} in weights and weights[-1] == {}
    steps = [e["message"] for e in events if e["kind"] == "step.started"]
    assert "step 1 of 2 (20%)" in steps[0] and "step 2 of 2 (50%)" in steps[1]
    verdicts = [(a["kind"], a["outcome"]) for a in latest(api)["analyses"] if a["outcome"] != "inconclusive"]
    assert verdicts[:4] == [("compat", "pass"), ("gate", "pass"), ("canary", "pass"), ("canary", "pass")], verdicts
    assert [a["outcome"] for a in latest(api)["analyses"] if a["kind"] == "watch"] in (["pass"], ["inconclusive"])


def test_a_candidate_failing_on_a_slice_of_traffic_is_rolled_back(server: ServerProcess, api: httpx.Client,
                                                                  tmp_path: Path) -> None:
    before = champion(api)
    spec = write_spec(tmp_path, 'model: m\ncandidate: "3"\n' + CANARY)
    with Traffic(server.url) as traffic:
        applied: list[Any] = []
        applying = threading.Thread(target=lambda: applied.append(server.cli("apply", str(spec), "--timeout", "150")))
        applying.start()
        # the slice v3 cannot read comes once the rollout exists: recorded before, the compatibility
        # step's replay would have refused v3 at apply (test_apply_http.py), before any live traffic
        wait_until(lambda: api.get("/api/rollouts", params={"model": "m", "active": True}).json(), "the rollout")
        traffic.slice_share = 0.2
        applying.join(timeout=200)
        (result,) = applied
        tail = traffic.count
        wait_until(lambda: traffic.count > tail + 20, "traffic after the rollback")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "m: rolled_back" in result.stdout and "step 1 of 2 (20%) failed" in result.stdout

    assert champion(api) == before
    after = traffic.since(tail)
    assert {a[1] for a in after} == {str(before)}
    assert [a for a in after if a[0] != 200] == []
    failed = [a for a in traffic.answers if a[0] != 200]
    assert failed and {a[1] for a in failed} == {"3"} and all(a[2] for a in failed)  # only the slice, only on v3

    r = latest(api)
    assert r["status"]["phase"] == "rolled_back"
    canary = [a for a in r["analyses"] if a["kind"] == "canary"][-1]  # after any inconclusive looks
    assert canary["outcome"] == "fail"
    assert {c["name"]: c["outcome"] for c in canary["evidence"]["checks"]}["error_rate"] == "fail"
    kinds = [e["kind"] for e in r["events"] if "." in e["kind"] and e["kind"] not in ("bake.extended", "step.waiting")]
    assert kinds == ["compat.passed", "rollout.created", "step.started", "step.failed"]


def long_spec(folder: Path, candidate: int) -> Path:
    return write_spec(folder, f'model: m\ncandidate: "{candidate}"\ncanary:\n  steps: [30, 60]\n  bake: 10m\nwatch: 2s\n')


def phase(api: httpx.Client) -> str:
    return str(latest(api)["status"]["phase"])


def test_one_rollout_per_model_sticky_canary_and_operator_commands(server: ServerProcess, api: httpx.Client,
                                                                   tmp_path: Path) -> None:
    before = champion(api)
    candidate = 1 if before == 2 else 2
    spec = long_spec(tmp_path, candidate)
    started = server.cli("rollout", "start", str(spec))
    assert started.returncode == 0, started.stderr
    rid = latest(api)["id"]
    assert f"rollout {rid} started" in started.stdout
    wait_until(lambda: phase(api) == "progressing", "the first step")

    again = server.cli("rollout", "start", str(spec))
    assert again.returncode == 3  # a conflict, not a wrong spec
    assert f"already has rollout {rid} (progressing)" in again.stderr
    r = api.post("/api/rollouts", json={"spec": {"model": "m", "candidate": str(candidate)}})
    assert r.status_code == 409 and f"rollout {rid}" in r.json()["error"]

    # sticky: at 30% the same key always lands on the same version, and both versions serve
    wait_until(lambda: {infer(server, f"k{i}").headers["x-changeover-version"] for i in range(20)} == {"1", "2"},
               "the canary to take traffic")
    served = {f"key-{i}": {infer(server, f"key-{i}").headers["x-changeover-version"] for _ in range(5)} for i in range(40)}
    assert all(len(v) == 1 for v in served.values()), served
    on_candidate = sum(v == {str(candidate)} for v in served.values())
    assert 0 < on_candidate < 40

    assert server.cli("rollout", "pause", "m").returncode == 0
    wait_until(lambda: phase(api) == "paused", "the pause")
    status = server.cli("rollout", "status", "m", "--json")
    assert status.returncode == 0
    paused = json.loads(status.stdout)["status"]
    assert (paused["paused_from"], paused["pause_reason"], paused["weight"]) == ("progressing", "command", 30.0)

    assert server.cli("rollout", "resume", "m").returncode == 0
    wait_until(lambda: phase(api) == "progressing", "the resume")

    promoted = server.cli("rollout", "promote", "m")
    assert promoted.returncode == 0 and f"promote sent to rollout {rid}" in promoted.stdout
    wait_until(lambda: phase(api) == "promoted", "the promotion and its watch")
    assert champion(api) == candidate
    wait_for_version(server, str(candidate))

    back = server.cli("rollback", "m")  # no rollout runs now: champion back to the previous one
    assert back.returncode == 0, back.stderr
    assert f"champion v{candidate} → v{before}" in back.stdout
    assert champion(api) == before
    wait_for_version(server, str(before))

    kinds = [e["kind"] for e in latest(api)["events"] if "." in e["kind"]]
    assert kinds[:5] == ["compat.passed", "rollout.created", "step.started", "rollout.paused", "rollout.resumed"]
    assert kinds[5:] == ["promote.started", "promote.done", "watch.passed"]


@pytest.mark.parametrize(("command", "during"), [("abort", "progressing"), ("rollback", "progressing"),
                                                ("rollback", "watching")])
def test_a_running_rollout_ends_on_command_and_the_champion_serves_again(
        server: ServerProcess, api: httpx.Client, command: str, during: str) -> None:
    before = champion(api)
    candidate = 1 if before == 2 else 2
    spec = {"model": "m", "candidate": str(candidate), "canary": {"steps": [30], "bake": "10m"}, "watch": "10m"}
    assert api.post("/api/rollouts", json={"spec": spec}).status_code == 201
    wait_until(lambda: phase(api) == "progressing", "the first step")
    if during == "watching":  # promoted: the candidate is champion, the old one kept warm
        assert api.post("/api/models/m/rollout/promote").status_code == 200
        wait_until(lambda: phase(api) == "watching", "the watch")
        assert champion(api) == candidate
        wait_for_version(server, str(candidate))
    result = server.cli(*(("rollout", command, "m") if command == "abort" else ("rollback", "m")))
    assert result.returncode == 0, result.stderr
    ended = {"abort": "aborted", "rollback": "rolled_back"}[command]
    wait_until(lambda: phase(api) == ended, f"the rollout to be {ended}")
    assert champion(api) == before
    policy = api.get("/api/models/m").json()["policy"]
    assert policy["champion"] == before and policy["weights"] == {}
    wait_until(lambda: all(infer(server, f"key-{i}").headers["x-changeover-version"] == str(before) for i in range(30)),
               "every key back on the champion")
    if command == "abort":
        refused = server.cli("rollout", "pause", "m")
        assert refused.returncode == 2 and "no active rollout" in refused.stderr
    if command == "rollback" and during == "watching":
        # previous is now the candidate just rolled back: a rollback never moves traffic back to it
        again = server.cli("rollback", "m")
        assert again.returncode == 3, again.stdout + again.stderr
        assert "failed its last rollout" in again.stderr and "--to VERSION" in again.stderr
        assert champion(api) == before
        chosen = server.cli("rollback", "m", "--to", str(candidate))  # a person's explicit choice is carried out
        assert chosen.returncode == 0 and champion(api) == candidate, chosen.stderr
        moved = [e for e in api.get("/api/events", params={"model": "m", "limit": 10000}).json()
                 if e["kind"] == "alias"][-2]
        assert "chosen although" in moved["message"]
        assert server.cli("rollback", "m", "--to", str(before)).returncode == 0 and champion(api) == before
        wait_for_version(server, str(before))


def test_a_failing_gate_ends_the_rollout_before_any_traffic_moves(server: ServerProcess, api: httpx.Client,
                                                                   tmp_path: Path) -> None:
    before = champion(api)
    candidate = 1 if before == 2 else 2
    x = np.random.default_rng(2).uniform(-1, 1, size=(60, 2))
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": (x[:, 0] > 0).astype(int)}).to_csv(tmp_path / "small.csv", index=False)
    # the two versions answer alike: "better than the champion" cannot be shown
    spec = write_spec(tmp_path, f"""model: m
candidate: "{candidate}"
gate:
  data: small.csv
  task: classification
  require:
    accuracy: {{better_than: champion}}
""" + CANARY)
    result = server.cli("apply", str(spec), "--timeout", "120")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "m: failed" in result.stdout and "the offline gate failed: no traffic was moved" in result.stdout
    r = latest(api)
    assert [(a["kind"], a["outcome"]) for a in r["analyses"]] == [("compat", "pass"), ("gate", "fail")]
    assert [e["kind"] for e in r["events"] if "." in e["kind"]] == ["compat.passed", "rollout.created", "gate.started",
                                                                    "gate.failed"]
    assert not [e for e in r["events"] if e["kind"] == "policy"]
    assert champion(api) == before
