"""A recommender walks the whole road of the README against a real `changeover serve`, over real
HTTP: push v1 and v2 with the CLI, v1 champion, the offline gate on a ranking holdout, then one
`changeover apply` through gate → shadow → interleave → canary → promote → watch while users ask
for their top 10 and post their clicks to /v1/feedback.

The rankers are the demo's (`changeover.cli.demo_recs`): v2 answers v1's ten items in reverse
order for ~30% of users. Here the click model makes that the *better* list: those users want
v1's last item (v1 buries it at rank 10, v2 shows it first); every other user wants one of v1's
first three items, which both versions show alike. A user clicks their item when it is shown in
the top 5 (position bias). So v2 is better offline (NDCG@10), wins every decided interleaved
request, and has the higher online NDCG@10 and CTR in the canary: it must be promoted."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml

from changeover.cli.demo_recs import MODEL, REVERSED_SHARE, relevant_items, write_rankers
from serverproc import running_server

USERS = 400
CLICK_DEPTH = 5  # a user looks at the first 5 items only
MAX_REQUESTS = 20_000  # the load loop's bounds, whatever happens to the rollout
MAX_SECONDS = 120.0


def rollout_spec(holdout: Path) -> dict[str, Any]:
    """The whole road, with small samples and short bakes so it runs in seconds."""
    return {
        "model": MODEL,
        "candidate": "2",
        "gate": {"data": str(holdout), "task": "ranking", "target": "relevant",
                 "require": {"ndcg_at_10": {"better_than": "champion"}}},
        "shadow": {"sample": 1.0, "until": {"requests": 100, "or_after": "1m"},
                   "require": {"overlap_at_10": {"min": 0.9}, "candidate_error_rate": {"max": 0.01}}},
        # every request is interleaved; v2 wins those of the ~30% users it reverses, the others tie
        "interleave": {"sample": 1.0, "k": 10, "timeout": "5s", "until": {"requests": 300, "or_after": "1m"},
                       "tolerance": 0.05, "min_decided": 40},
        "canary": {
            "sticky_key": "header:x-changeover-key",
            "steps": [20, 50],
            "bake": "3s",
            "max_extensions": 3,
            "judge": {  # loose on errors, no latency: the ranking check is the one that matters here
                "error_rate": {"max_increase": 0.05},
                "latency_p99_ms": None,  # off: the judge shows a p99 ratio only after ~2,000 canary requests
                "ranking": {"metric": "ndcg_at_10", "max_relative_decrease": 0.1},
                "min_requests": 50,
                "min_labels": 50,
            },
        },
        "promote": "auto",
        "watch": {"duration": "4s", "holdback": 5},
    }


def predictor(folder: Path) -> Any:
    """A ranker folder's predictor module, imported here (the server runs the same file)."""
    spec = importlib.util.spec_from_file_location(f"road_{folder.name.replace('-', '_')}", folder / "predictor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ranker(folder: Path) -> Any:
    model = predictor(folder).Ranker()
    model.load(str(folder))
    return model


def reversed_users(v2: Path) -> np.ndarray:
    """Which users v2 answers the reversed list, by the predictor's own rule."""
    module = predictor(v2)
    return np.array([module.reversed_user(u, REVERSED_SHARE) for u in range(USERS)])


def truth(v1: Path, v2: Path) -> np.ndarray:
    """Each user's one wanted item: v1's 10th for the users v2 reverses, else v1's 1st-3rd."""
    wanted = relevant_items(v1, USERS)
    first = ranker(v1)
    for u in np.flatnonzero(reversed_users(v2)):
        wanted[u] = first.top(int(u))[0][9]
    return wanted


class Users:
    """Users asking for their top 10 (sticky by user) and posting what they clicked, in a thread,
    until stopped or the bounds are reached."""

    def __init__(self, url: str, wanted: np.ndarray) -> None:
        self.url, self.wanted = url, wanted
        self.codes: Counter[int] = Counter()
        self.served: Counter[str] = Counter()
        self.clicked: Counter[str] = Counter()
        self.feedback: Counter[int] = Counter()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Users:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.error is not None:
            raise AssertionError(f"the users' thread failed: {self.error!r}") from self.error

    def _run(self) -> None:
        try:
            self._ask_and_click()
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def _ask_and_click(self) -> None:
        rng = np.random.default_rng(11)
        deadline = time.monotonic() + MAX_SECONDS
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for _ in range(MAX_REQUESTS):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                user = int(rng.integers(USERS))
                body = {"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [user]}]}
                try:
                    r = http.post(f"/v2/models/{MODEL}/infer", json=body, headers={"x-changeover-key": f"user-{user}"})
                    self.codes[r.status_code] += 1
                    if r.status_code != 200:
                        continue
                    version = r.headers["x-changeover-version"]
                    items = next(o["data"] for o in r.json()["outputs"] if o["name"] == "items")
                    want = int(self.wanted[user])
                    clicks = [want] if want in items[:CLICK_DEPTH] else []
                    self.served[version] += 1
                    self.clicked[version] += bool(clicks)
                    f = http.post("/v1/feedback", json={"request_id": r.headers["x-request-id"], "label": clicks})
                    self.feedback[f.status_code] += 1
                except httpx.HTTPError:
                    self.codes[0] += 1


def test_a_better_ranker_walks_the_whole_road_over_http(tmp_path: Path) -> None:
    started = time.monotonic()
    v1, v2 = write_rankers(tmp_path)
    wanted = truth(v1, v2)
    reversed_ = reversed_users(v2)
    assert 0.2 < reversed_.mean() < 0.4
    holdout = tmp_path / "holdout.csv"
    pd.DataFrame({"user_id": np.arange(USERS), "relevant": [f"[{w}]" for w in wanted]}).to_csv(holdout, index=False)
    spec_file = tmp_path / "rollout.yaml"
    spec_file.write_text(yaml.safe_dump(rollout_spec(holdout)))

    with running_server(tmp_path / "home", env={"COLUMNS": "250", "CHANGEOVER_RECORD_RATE": "0.2"}) as srv:
        # push (the CLI is an HTTP client of the management API), v1 champion
        for number, path in ((1, v1), (2, v2)):
            pushed = json.loads(srv.cli("models", "push", str(path), "--name", MODEL, "--trust", "--json", check=True).stdout)
            assert pushed["version"] == number
        srv.cli("alias", "set", MODEL, "champion", "1", check=True)

        # the offline gate: v2 against the champion on the ranking holdout
        gate = json.loads(srv.cli("validate", f"{MODEL}@2", "--data", str(holdout), "--task", "ranking",
                                  "--target", "relevant", "--json", check=True).stdout)
        assert gate["verdict"] == "pass" and gate["answers"] == "lists" and gate["n_queries"] == USERS
        metrics = gate["metrics"]
        for name in ("precision_at_5", "precision_at_10", "ndcg_at_5", "ndcg_at_10"):
            assert name in metrics, sorted(metrics)
        assert metrics["ndcg_at_10"]["candidate"] > metrics["ndcg_at_10"]["champion"]
        assert metrics["ndcg_at_5"]["candidate"] > metrics["ndcg_at_5"]["champion"]

        users = Users(srv.url, wanted)
        with srv.client() as api:
            wait_until(lambda: api.get(f"/api/models/{MODEL}").json()["aliases"].get("champion") == 1, "v1 champion")
        users.start()
        try:
            time.sleep(1)  # some traffic recorded for compat's replay
            applied = srv.cli("apply", str(spec_file), "--timeout", "150")
        finally:
            users.stop()
        assert applied.returncode == 0, applied.stdout + applied.stderr

        with srv.client() as api:
            (rollout,) = api.get("/api/rollouts", params={"model": MODEL}).json()
            rollout = api.get(f"/api/rollouts/{rollout['id']}").json()
            assert rollout["status"]["phase"] == "promoted", rollout["status"]
            assert api.get(f"/api/models/{MODEL}").json()["aliases"]["champion"] == 2
            shadow = api.get(f"/api/models/{MODEL}/shadows/report", params={"version": 2}).json()
            events = api.get("/api/events", params={"model": MODEL, "limit": 500}).json()
        # the watch over, v2 serves everyone (the gateway adopts the last policy a moment later)
        body = {"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]}]}
        wait_until(lambda: all(httpx.post(f"{srv.url}/v2/models/{MODEL}/infer", json=body, timeout=10,
                                          headers={"x-changeover-key": f"user-{u}"}).headers["x-changeover-version"]
                               == "2" for u in range(40)), "v2 to serve every user", timeout=10)

    # every request answered; v2 was clicked more often than v1 when it served
    assert set(users.codes) == {200} and set(users.feedback) == {201}, (users.codes, users.feedback)
    assert users.served["2"] > 0 and users.clicked["2"] / users.served["2"] > users.clicked["1"] / users.served["1"]

    analyses = {a["kind"]: a for a in rollout["analyses"]}
    # the shadow compared the rankings by their item ids: the same ten items, reordered
    figures = shadow["figures"]
    assert figures["task"] == "ranking" and figures["overall"]["pairs"] > 0
    assert figures["overall"]["overlap_at_10"] == 1.0
    assert analyses["shadow"]["outcome"] == "pass"
    # interleaving: every decided request a win of v2 (the others see the same list: ties)
    pref = analyses["interleave"]["evidence"]["preference"]
    assert analyses["interleave"]["outcome"] == "pass"
    assert pref["wins_candidate"] >= 40 and pref["wins_champion"] == 0, pref

    # the canary: both steps passed, the online NDCG@10 of the clicks among the checks
    canary = [a for a in rollout["analyses"] if a["kind"] == "canary"]
    assert [a["outcome"] for a in canary] == ["pass", "pass"], canary
    for a in canary:
        ev = a["evidence"]
        checks = ev.get("checks") or (ev.get("verdict") or {}).get("checks") or []
        assert {c["name"]: c["outcome"] for c in checks}.get("ranking") == "pass", checks
    assert analyses["gate"]["outcome"] == "pass"

    ordered = sorted(events, key=lambda e: e["id"])
    kinds = [e["kind"] for e in ordered]
    road = ["gate.passed", "shadow.started", "shadow.passed", "interleave.started", "interleave.passed",
            "step.started", "step.passed", "promote.done", "watch.passed"]
    positions = [kinds.index(kind) for kind in road]
    assert positions == sorted(positions), kinds
    # promoted into a watch of 4 s with 5% held back on v1, then the watch passed
    done, watched = (next(e for e in ordered if e["kind"] == kind) for kind in ("promote.done", "watch.passed"))
    assert "watching for 4s" in done["message"] and "5% held back" in done["message"], done
    assert watched["at"] - done["at"] >= 3.9
    assert kinds.count("step.passed") == 2 and not {"rollout.rolled_back", "step.failed"} & set(kinds), kinds
    print(f"road walked in {time.monotonic() - started:.1f}s; served {dict(users.served)}, "
          f"clicked {dict(users.clicked)}; events {kinds}")


def wait_until(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return value


def test_the_click_model_makes_v2_the_better_list(tmp_path: Path) -> None:
    """Offline, by the rankers' own code: v2 shows the wanted item in the top 5 at least as often
    as v1 for every user, and more often overall."""
    v1, v2 = write_rankers(tmp_path)
    wanted = truth(v1, v2)
    rankers = [ranker(v1), ranker(v2)]
    lists = [r.predict({"user_id": np.arange(USERS)})["items"] for r in rankers]
    hits = [np.array([wanted[u] in lst[u][:CLICK_DEPTH] for u in range(USERS)]) for lst in lists]
    assert (hits[1] >= hits[0]).all() and hits[1].mean() > hits[0].mean() + 0.2
