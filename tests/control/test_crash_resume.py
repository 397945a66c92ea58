"""kill -9 the server at several phases of a rollout, start a new one on the same home and
store: the rollout goes on to the end with no event lost or doubled, no step repeated or skipped."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess, free_port

OUTPUTS = "[{name: label, datatype: INT64, shape: [-1]}]"
CHAMPION = "return {'label': (inputs['x'][:, 0] > 0).astype(np.int64)}"
CANDIDATE = "x = inputs['x']\nreturn {'label': (x[:, 0] > 0).astype(np.int64) * 1}"
STEPS = [20.0, 50.0, 80.0]
SPEC = {
    "model": "m",
    "candidate": "2",
    "shadow": {"sample": 1.0, "until": {"requests": 100_000, "or_after": "5s"}},
    "canary": {"steps": STEPS, "bake": "4s", "max_extensions": 4,
               "judge": {"error_rate": {"max_increase": 0.02}, "latency_p99_ms": {"max_ratio": 5.0},
                         "min_requests": 20}},
    "watch": "4s",
}


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except httpx.HTTPError:  # a server starting or just killed
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


class Node:
    """`changeover serve` on one home and one port, started again after each kill -9."""

    def __init__(self, home: Path) -> None:
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: ServerProcess | None = None
        self.incarnations = 0

    def start(self) -> Node:
        # generous: a loaded machine compiles every import again (no bytecode cache here)
        self.proc = ServerProcess(self.home, port=self.port).start(timeout=120)
        self.incarnations += 1
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def api(self) -> httpx.Client:
        assert self.proc is not None
        client = self.proc.client()
        client.timeout = httpx.Timeout(120)  # an apply replays recorded traffic in a worker first
        return client

    def get(self, path: str, **params: Any) -> Any:
        with self.api() as api:
            r = api.get(path, params=params)
        r.raise_for_status()
        return r.json()


class Traffic:
    """Clients that keep sending requests across the restarts (a refused connection is status 0)."""

    def __init__(self, url: str, model: str = "m", clients: int = 4) -> None:
        self.url, self.model = url, model
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
                        r = http.post(f"/v2/models/{self.model}/infer", json=body,
                                      headers={"x-changeover-key": f"user-{rng.randrange(100_000)}"})
                        self.codes[r.status_code] += 1
                    except httpx.HTTPError:
                        self.codes[0] += 1
                        time.sleep(0.2)
                        break  # a new connection after a restart


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("crash")
    node = Node(root / "home").start()
    pusher = Client(url=node.url, token=TOKEN)
    for number, body in ((1, CHAMPION), (2, CANDIDATE)):
        folder = python_model(root / f"v{number}", body, outputs=OUTPUTS)
        for model in ("m", "n"):
            assert pusher.push(folder, name=model, labels={}, runtime=None, trust=True)["version"] == number
    pusher.close()
    with node.api() as api:
        for model in ("m", "n"):
            assert api.put(f"/api/models/{model}/aliases/champion", json={"version": 1}).status_code == 200
    try:
        yield node
    finally:
        if node.proc is not None:
            node.proc.stop()


def rollout(node: Node, rid: int) -> dict[str, Any]:
    return node.get(f"/api/rollouts/{rid}")


def status(node: Node, rid: int) -> dict[str, Any]:
    return rollout(node, rid)["status"]


def test_kill_9_during_shadow_bake_and_watch_loses_and_doubles_nothing(node: Node) -> None:
    wait_until(lambda: httpx.get(f"{node.url}/v2/models/m/ready").status_code == 200, "v1 to serve")
    with Traffic(node.url) as traffic:
        with node.api() as api:
            r = api.post("/api/rollouts", json={"spec": SPEC})
        assert r.status_code == 201, r.text
        rid = r.json()["id"]

        # 1. during the shadow, once it has pairs
        wait_until(lambda: status(node, rid)["phase"] == "shadowing", "the shadow")
        wait_until(lambda: node.get("/api/models/m/shadows/report", version="2")["figures"]["overall"].get("pairs", 0) >= 30,
                   "mirrored pairs")
        node.kill()
        node.start()

        # 2. in the middle of the second step's bake
        def mid_bake() -> bool:
            s = status(node, rid)
            return s["phase"] == "progressing" and s["step_index"] == 1 and time.time() - s["bake_started_at"] > 2.0
        wait_until(mid_bake, "the second step's bake", timeout=90)
        node.kill()
        node.start()

        # 3. during the watch, the candidate already champion
        wait_until(lambda: status(node, rid)["phase"] == "watching", "the watch", timeout=90)
        node.kill()
        node.start()

        final = wait_until(lambda: (s := status(node, rid))["phase"] in ("promoted", "rolled_back", "aborted", "failed", "paused") and s,
                           "the end of the rollout", timeout=90)
    assert node.incarnations == 4
    assert final["phase"] == "promoted", final["message"]
    assert sum(n for code, n in traffic.codes.items() if code not in (0, 200)) == 0, traffic.codes  # refused while down, never an error

    view = rollout(node, rid)
    events = [e for e in node.get("/api/events", model="m", limit=10000) if (e.get("evidence") or {}).get("rollout") == rid]
    kinds = Counter(e["kind"] for e in events)
    assert kinds["rollout.created"] == 1 and kinds["compat.passed"] == 1
    assert kinds["shadow.started"] == 1 and kinds["shadow.passed"] == 1
    assert kinds["step.started"] == len(STEPS) and kinds["step.passed"] == len(STEPS)
    assert kinds["promote.started"] == 1 and kinds["promote.done"] == 1 and kinds["watch.passed"] == 1
    assert not {"shadow.failed", "step.failed", "watch.failed", "rollout.rolled_back", "rollout.aborted"} & set(kinds)
    # nothing written twice: each event says something new
    said = Counter((e["kind"], e["message"]) for e in events)
    assert [k for k, n in said.items() if n > 1] == []
    steps = [e["message"] for e in events if e["kind"] == "step.started"]
    assert [f"step {i + 1} of {len(STEPS)} ({w:g}%)" in m for i, (w, m) in enumerate(zip(STEPS, steps, strict=True))] == [True] * len(STEPS)

    # the traffic policies the rollout wrote: generations strictly increasing, and the
    # candidate's weights exactly the spec's steps, each once, in order
    policies = [e["evidence"] for e in events if e["kind"] == "policy"]
    generations = [p["generation"] for p in policies]
    assert generations == sorted(set(generations)), generations
    weights = [p["policy"]["weights"].get("2", 0.0) for p in policies]
    assert [w for w in weights if w] == STEPS, weights
    assert policies[-1]["policy"]["champion"] == 2

    # verdicts: the compatibility step at apply, one shadow verdict, one passing canary verdict per
    # step, and no second promotion
    decided = [(a["kind"], a["outcome"]) for a in view["analyses"] if a["outcome"] != "inconclusive"]
    assert decided[:2 + len(STEPS)] == [("compat", "pass"), ("shadow", "pass")] + [("canary", "pass")] * len(STEPS), \
        decided
    moves = [h for h in node.get("/api/models/m")["alias_history"] if h["alias"] == "champion"]
    assert [h["version"] for h in moves] == [1, 2]
    assert node.get("/api/models/m")["aliases"] == {"champion": 2, "previous": 1}


def test_a_bake_that_outlived_a_restart_waits_for_its_samples(node: Node) -> None:
    """Down longer than bake * (1 + max_extensions) with no traffic, a controller must not spend
    every extension in consecutive ticks on the same (empty) data and end the rollout the moment
    it is back: with too few samples for a verdict the step waits for them, says so once, and
    passes once traffic brings the evidence."""
    bake, extensions = 2.0, 1
    spec = {"model": "n", "candidate": "2", "watch": 0,
            "canary": {"steps": [50], "bake": bake, "max_extensions": extensions,
                       "judge": {"error_rate": {"max_increase": 0.05}, "latency_p99_ms": None,
                                 "min_requests": 20}}}
    with node.api() as api:
        r = api.post("/api/rollouts", json={"spec": spec})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    started = wait_until(lambda: (s := status(node, rid))["phase"] == "progressing" and s["bake_started_at"],
                         "the bake", interval=0.05)
    node.kill()  # no request has come: the bake has no sample
    time.sleep(max(0.0, started + bake * (1 + extensions) + 1 - time.time()))  # down longer than every extension
    node.start()
    waiting = wait_until(lambda: (s := status(node, rid))["waiting"] and s, "the step to wait for samples", timeout=30)
    time.sleep(3 * bake)
    held = status(node, rid)
    assert (held["phase"], held["extensions"], waiting["extensions"]) == ("progressing", 0, 0), held
    kinds = [e["kind"] for e in rollout(node, rid)["events"]]
    assert kinds.count("step.waiting") == 1, kinds
    with Traffic(node.url, model="n"):
        wait_until(lambda: status(node, rid)["phase"] == "promoted", "the promotion", timeout=90)
    canary = [a for a in rollout(node, rid)["analyses"] if a["kind"] == "canary"]
    assert canary[-1]["outcome"] == "pass" and canary[-1]["evidence"]["canary"]["requests"] >= 20
