"""Crashes: `changeover serve` killed with SIGKILL at each phase of a rollout (the offline
gate, the shadow, a canary step's bake, the promotion, the watch), N times each, and started
again on the same home and store. Every rollout goes on to the end, and its audit log is the
one a rollout with no kill writes: the same events in the same order, none lost, none doubled."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from chaoslib import LONG, push_folder, record, scale, wait_until

from modelfiles import python_model
from serverproc import ServerProcess, free_port

OUTPUTS = "[{name: label, datatype: INT64, shape: [-1]}]"
CHAMPION = "return {'label': (inputs['x'][:, 0] > 0).astype(np.int64)}"
CANDIDATE = "x = inputs['x']\nreturn {'label': (x[:, 0] > 0).astype(np.int64) * 1}"
ROUNDS = scale(1, 10)  # rollouts killed at every phase: kills per phase
PHASES = ("gate", "shadow", "canary step", "promote", "watch")
STEPS = [30.0, 60.0]
# what a rollout may say a different number of times without anything being wrong: waiting for
# samples, extending a bake, an inconclusive look (how many depends on when traffic came)
NOISE = {"bake.extended", "step.waiting", "step.inconclusive", "shadow.waiting", "gate.waiting"}
# the log of this spec's rollout with no kill (`make chaos` runs one and compares with that;
# `make test` saves its time and compares with this, which such a run wrote)
UNKILLED = ["compat.passed", "rollout.created", "gate.started", "analysis", "gate.passed", "shadow.started", "policy",
            "analysis", "shadow.passed", "step.started", "policy", "step.passed", "step.started", "policy", "step.passed",
            "promote.waiting", "command", "promote.started", "promote.done", "policy", "watch.passed", "policy"]


def spec(model: str, data: Path) -> dict[str, Any]:
    return {
        "model": model, "candidate": "2",
        "gate": {"data": str(data), "task": "classification",
                 "require": {"accuracy": {"not_worse_than": "champion", "margin": 0.05}}},
        "shadow": {"sample": 1.0, "until": {"requests": 100_000, "or_after": "4s"}},
        "canary": {"steps": STEPS, "bake": "3s", "max_extensions": 6,
                   "judge": {"error_rate": {"max_increase": 0.3}, "latency_p99_ms": None, "min_requests": 10}},
        "promote": "manual", "watch": "3s",
    }


class Node:
    """`changeover serve` on one home and one port, started again after each kill -9."""

    def __init__(self, home: Path) -> None:
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: ServerProcess | None = None
        self.kills = 0

    def start(self) -> Node:
        # generous: two cores shared by many, a fresh interpreter imports everything again
        self.proc = ServerProcess(self.home, port=self.port).start(timeout=180)
        return self

    def kill_and_restart(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no shutdown, no flush
        self.kills += 1
        self.start()

    def api(self) -> httpx.Client:
        assert self.proc is not None
        client = self.proc.client()
        client.timeout = httpx.Timeout(120)
        return client

    def get(self, path: str, **params: Any) -> Any:
        with self.api() as api:
            r = api.get(path, params=params)
        r.raise_for_status()
        return r.json()


class Traffic:
    """Clients sending requests to every model across the restarts (a refused connection: 0)."""

    def __init__(self, url: str, models: list[str], clients: int = 2) -> None:
        self.url, self.models = url, models
        self.codes: Counter[int] = Counter()
        self._stop = threading.Event()
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
        while not self._stop.is_set():
            with httpx.Client(base_url=self.url, timeout=10) as http:
                while not self._stop.is_set():
                    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64",
                                        "data": [rng.uniform(-1, 1), rng.uniform(-1, 1)]}]}
                    try:
                        r = http.post(f"/v2/models/{rng.choice(self.models)}/infer", json=body,
                                      headers={"x-changeover-key": f"user-{rng.randrange(100_000)}"})
                        self.codes[r.status_code] += 1
                    except httpx.HTTPError:
                        self.codes[0] += 1
                        time.sleep(0.2)
                        break  # a new connection after a restart
                    time.sleep(0.01)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("kill-phases")
    node = Node(root / "home").start()
    models = ["base"] + [f"k{i}" for i in range(ROUNDS)]
    with node.api() as api:
        for number, body in ((1, CHAMPION), (2, CANDIDATE)):
            folder = python_model(root / f"v{number}", body, outputs=OUTPUTS)
            for model in models:
                assert push_folder(api, model, folder).status_code == 201
        for model in models:
            api.put(f"/api/models/{model}/aliases/champion", json={"version": 1}).raise_for_status()
    try:
        yield node
    finally:
        if node.proc is not None:
            node.proc.stop()


def holdout(node: Node, folder: Path) -> Path:
    """The gate's data, sent to the server's data folder where it has one (`POST /api/data`)."""
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, size=(80, 2))
    path = folder / "holdout.csv"
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": (x[:, 0] > 0).astype(int)}).to_csv(path, index=False)
    with node.api() as api:
        sent = api.post("/api/data", params={"filename": path.name}, content=path.read_bytes())
    if sent.status_code in (404, 405):  # a server that reads the spec's path itself
        return path
    assert sent.status_code == 201, sent.text
    return Path(sent.json()["data"])


def status(node: Node, rid: int) -> dict[str, Any]:
    return node.get(f"/api/rollouts/{rid}")["status"]


def story(node: Node, model: str, rid: int) -> list[str]:
    """The rollout's audit log as kinds in order (what may vary in number left out)."""
    events = [e for e in node.get("/api/events", model=model, limit=10000)
              if (e.get("evidence") or {}).get("rollout") == rid]
    return [e["kind"] for e in events if e["kind"] not in NOISE]


def run_rollout(node: Node, model: str, data: Path, kill_at: tuple[str, ...]) -> tuple[int, dict[str, Any]]:
    """One rollout from apply to its end, killing the server at each phase in ``kill_at``."""
    with node.api() as api:  # the data sent first, as `changeover apply` does: a server reads only its data folders
        kept = api.post("/api/data", params={"filename": data.name}, content=data.read_bytes())
        assert kept.status_code == 201, kept.text
        r = api.post("/api/rollouts", json={"spec": spec(model, Path(kept.json()["data"]))})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]

    def phase_is(*phases: str, step: int | None = None) -> bool:
        s = status(node, rid)
        return s["phase"] in phases and (step is None or s["step_index"] == step)

    def reached(name: str) -> None:
        if name == "gate":
            wait_until(lambda: phase_is("gating"), f"{model}: the gate", timeout=120, interval=0.02)
        elif name == "shadow":
            wait_until(lambda: phase_is("shadowing"), f"{model}: the shadow", timeout=180)
            time.sleep(1.0)  # with pairs recorded
        elif name == "canary step":
            wait_until(lambda: phase_is("progressing", step=0), f"{model}: the first step", timeout=180)
            time.sleep(1.0)  # in the middle of its bake
        elif name == "watch":
            wait_until(lambda: phase_is("watching"), f"{model}: the watch", timeout=180, interval=0.05)

    for name in ("gate", "shadow", "canary step"):
        reached(name)
        if name in kill_at:
            node.kill_and_restart()
    wait_until(lambda: status(node, rid)["pause_reason"] == "awaiting_promotion", f"{model}: promotion to be asked",
               timeout=240)
    with node.api() as api:
        api.post(f"/api/models/{model}/rollout/promote").raise_for_status()
    if "promote" in kill_at:
        node.kill_and_restart()  # the promotion asked, and being carried out
    reached("watch")
    if "watch" in kill_at:
        node.kill_and_restart()
    final = wait_until(lambda: (s := status(node, rid))["phase"] in ("promoted", "rolled_back", "aborted", "failed")
                       and s, f"{model}: the end of the rollout", timeout=240)
    return rid, final


@pytest.mark.timeout(3600)
def test_kill_9_at_every_phase_loses_and_doubles_nothing(node: Node, tmp_path: Path) -> None:
    data = holdout(node, tmp_path)
    with Traffic(node.url, ["base"] + [f"k{i}" for i in range(ROUNDS)]) as traffic:
        expected = UNKILLED
        if LONG:
            base_id, base_final = run_rollout(node, "base", data, kill_at=())
            assert base_final["phase"] == "promoted", base_final["message"]
            expected = story(node, "base", base_id)
            assert expected.count("rollout.created") == 1 and expected.count("promote.done") == 1
        survived: Counter[str] = Counter()
        problems: list[str] = []
        for i in range(ROUNDS):
            model = f"k{i}"
            rid, final = run_rollout(node, model, data, kill_at=PHASES)
            told = story(node, model, rid)
            ok = final["phase"] == "promoted" and told == expected
            if not ok:
                problems.append(f"{model}: {final['phase']} ({final['message']}); events {told} != {expected}")
            aliases = node.get(f"/api/models/{model}")["aliases"]
            if aliases != {"champion": 2, "previous": 1}:
                problems.append(f"{model}: aliases {aliases}")
                ok = False
            for phase in PHASES:
                survived[phase] += ok
    assert node.kills == ROUNDS * len(PHASES)
    failed = sum(n for code, n in traffic.codes.items() if code not in (0, 200))
    for phase in PHASES:
        record(f"kill -9 during {phase}", ROUNDS, survived[phase], "resumed, events as with no kill")
    record("inference across the kills", sum(traffic.codes.values()), sum(traffic.codes.values()) - failed,
           f"answers {dict(sorted(traffic.codes.items()))} (0: refused while down)")
    assert not problems, "\n".join(problems)
    assert failed == 0, traffic.codes  # refused while down, never an error
