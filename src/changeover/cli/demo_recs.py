"""The recommender part of `changeover demo`: a ranker whose regression only clicks can show.

v1 ranks 10 items for each user; v2 is the same model, but for about 30% of users (chosen by a
hash of the user id) it answers the same 10 items in reverse order. Offline nothing is broken
(same signature, same items, no error, same latency); online, the users it reverses click their
item at rank 8-10 instead of 1-3, and the canary judge reads that in the online NDCG@10 of the
clicks sent back as feedback, and rolls v2 back.
"""

from __future__ import annotations

import importlib.util
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console

from changeover.cli.client import Client

MODEL = "recs"
USERS = 2000
REVERSED_SHARE = 0.3

RANKER_PREDICTOR = '''
"""A tiny deterministic ranker: the top 10 of 300 items for each user id, from seeded vectors.

With ``reversed_share`` > 0 in config.json, the users whose id hashes below that share get the
same 10 items in reverse order (the regression the demo's canary catches)."""

import json
import zlib
from pathlib import Path

import numpy as np


def reversed_user(user_id, share):
    return zlib.crc32(f"reverse:{int(user_id)}".encode()) % 1000 < share * 1000


class Ranker:
    def load(self, folder):
        config = json.loads((Path(folder) / "config.json").read_text())
        self.share = float(config["reversed_share"])
        rng = np.random.default_rng(7)
        self.item_ids = np.arange(1000, 1300, dtype=np.int64)
        self.items = rng.normal(size=(len(self.item_ids), 8))

    def top(self, user_id):
        user = np.random.default_rng([7, int(user_id) & 0x7FFFFFFF]).normal(size=8)
        scores = self.items @ user
        order = np.lexsort((self.item_ids, -scores))[:10]
        return self.item_ids[order], scores[order].astype(np.float32)

    def predict(self, inputs):
        items, scores = [], []
        for u in np.asarray(inputs["user_id"]).reshape(-1):
            ids, s = self.top(u)
            if self.share and reversed_user(u, self.share):
                ids, s = ids[::-1], s[::-1]
            items.append(ids)
            scores.append(s)
        return {"items": np.stack(items).reshape(-1, 10), "scores": np.stack(scores).reshape(-1, 10)}
'''

RANKER_MANIFEST = """runtime: python
predictor: predictor:Ranker
task: ranking
inputs: [{name: user_id, datatype: INT64, shape: [-1]}]
outputs:
  - {name: items, datatype: INT64, shape: [-1, 10], role: ranking}
  - {name: scores, datatype: FP32, shape: [-1, 10], role: scores}
"""

RANKER_SPEC = {
    "model": MODEL,
    "candidate": "2",
    "canary": {
        "sticky_key": "header:x-changeover-key",
        "steps": [50],
        "bake": "20s",
        "max_extensions": 3,
        "judge": {
            # loose for a demo: only the ranking check should decide
            "error_rate": {"max_increase": 0.05},
            "latency_p99_ms": {"max_ratio": 5.0},
            "ranking": {"metric": "ndcg_at_10", "max_relative_decrease": 0.05},
            "min_requests": 50,
            "min_labels": 50,
        },
    },
    "promote": "auto",
    "watch": "5s",
}


def write_rankers(folder: Path) -> tuple[Path, Path]:
    """Two python-runtime folders: v1, and v2 that reverses the list for ~30% of users."""
    out = []
    for name, share in (("recs-v1", 0.0), ("recs-v2", REVERSED_SHARE)):
        path = folder / name
        path.mkdir()
        (path / "predictor.py").write_text(RANKER_PREDICTOR)
        (path / "model.yaml").write_text(RANKER_MANIFEST)
        (path / "config.json").write_text(f'{{"reversed_share": {share}}}\n')
        out.append(path)
    return out[0], out[1]


def relevant_items(v1: Path, users: int) -> np.ndarray:
    """The item each user truly wants: v1's 1st item for 70% of users, its 2nd for 20%, its
    3rd for 10% (by a hash of the user id). So v1 is good, not perfect."""
    spec = importlib.util.spec_from_file_location("changeover_demo_ranker", v1 / "predictor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ranker = module.Ranker()
    ranker.load(str(v1))
    out = np.empty(users, dtype=np.int64)
    for u in range(users):
        h = zlib.crc32(f"taste:{u}".encode()) % 10
        out[u] = ranker.top(u)[0][0 if h < 7 else 1 if h < 9 else 2]
    return out


@dataclass
class RankerTraffic:
    """Users asking for their top 10 (sticky by user) and clicking their item when it is shown."""

    url: str
    relevant: np.ndarray
    clients: int = 2
    codes: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    clicks: Counter[str] = field(default_factory=Counter)  # per version, requests with a click
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> RankerTraffic:
        self._threads = [threading.Thread(target=self._run, args=(100 + i,), daemon=True) for i in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _run(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                user = int(rng.integers(len(self.relevant)))
                body = {"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [user]}]}
                clicked = False
                try:
                    r = http.post(f"/v2/models/{MODEL}/infer", json=body, headers={"x-changeover-key": f"user-{user}"})
                    code, version = r.status_code, r.headers.get("x-changeover-version", "-")
                    if code == 200:
                        items = next(o["data"] for o in r.json()["outputs"] if o["name"] == "items")
                        want = int(self.relevant[user])
                        clicked = want in items[:10]
                        http.post("/v1/feedback", json={"request_id": r.headers.get("x-request-id", ""),
                                                        "label": [want] if clicked else []})
                except (httpx.HTTPError, ValueError, KeyError, StopIteration):
                    code, version = 0, "-"
                with self._lock:
                    self.codes[code] += 1
                    self.versions[version] += 1
                    self.clicks[version] += int(clicked)

    @property
    def total(self) -> int:
        return sum(self.codes.values())

    @property
    def failed(self) -> int:
        return sum(n for code, n in self.codes.items() if code != 200)


def wait_for_ranker(url: str, version: int, timeout: float = 15.0) -> None:
    body = {"inputs": [{"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]}]}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=body, timeout=10)
        if r.status_code == 200 and r.headers.get("x-changeover-version") == str(version):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{MODEL} traffic did not move to v{version}")


def ranking_evidence(rollout: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The last failed ranking check among the rollout's verdicts, and the verdict's other checks."""
    for a in reversed(rollout.get("analyses") or []):
        ev = a.get("evidence") or {}
        nested = ev["verdict"] if isinstance(ev.get("verdict"), dict) else {}
        checks = ev.get("checks") or nested.get("checks") or []
        for check in checks:
            if check.get("name") == "ranking" and check.get("outcome") == "fail":
                return check, [c for c in checks if c is not check]
    return None


def describe(check: dict[str, Any], others: list[dict[str, Any]]) -> str:
    """One line from the check's figures: the harm interval against the tolerance, and the rest."""
    def f(x: Any, sign: str = "+") -> str:
        return format(x, f"{sign}.3f") if isinstance(x, int | float) else "?"

    rest = ", ".join(f"{c.get('name')} {c.get('outcome')}" for c in others)
    return (f"NDCG@10 lower by {f(check.get('estimate'), '')} on the candidate, interval "
            f"[{f(check.get('low'))}, {f(check.get('high'))}] (always-valid, alpha {check.get('alpha')}) "
            f"all above the tolerance {f(check.get('tolerance'), '')} (5% of the champion's), over "
            f"{check.get('n_canary')} canary and {check.get('n_baseline')} champion requests with a click"
            + (f"; other checks: {rest}" if rest else ""))


def online_ndcg(client: Client) -> dict[str, tuple[float | None, int]]:
    """Per version: online NDCG@10 and the requests it is the mean of, over the last 10 minutes."""
    report = client.get(f"/api/models/{MODEL}/online", window="10m")
    out: dict[str, tuple[float | None, int]] = {}
    for version, figures in (report.get("versions") or {}).items():
        metrics = figures.get("metrics") or {}
        with_relevant = (figures.get("ranking") or {}).get("with_relevant") or 0
        out[version] = (metrics.get("ndcg_at_10"), int(with_relevant))
    return out


@dataclass
class RecsResult:
    phase: str
    reason: str | None
    requests: int
    failed: int
    ndcg: dict[str, tuple[float | None, int]]
    seconds: float


def run_recs(client: Client, url: str, work: Path, console: Console, follow: Any,
             timeout: float = 150.0) -> RecsResult:
    """Push v1 and v2 of the ranker, make v1 champion, roll v2 out under clicking users, and
    return how it ended (`follow(client, rollout_id, timeout)` shows the live view)."""
    started = time.monotonic()
    v1, v2 = write_rankers(work)
    for path in (v1, v2):  # python folders the demo wrote itself: pushed with --trust
        r = client.push(path, name=MODEL, labels={"demo": "recommender"}, runtime=None, trust=True)
        console.print(f"pushed {MODEL} v{r['version']}  sha256 {r['sha256'][:12]}  runtime {r['runtime']}"
                      + ("  (reverses the top 10 for ~30% of users)" if path == v2 else ""))
    client.request("PUT", f"/api/models/{MODEL}/aliases/champion", json={"version": 1, "reason": "first release"})
    wait_for_ranker(url, 1)
    relevant = relevant_items(v1, USERS)
    traffic = RankerTraffic(url, relevant).start()
    try:
        time.sleep(3)
        created = client.request("POST", "/api/rollouts", json={"spec": RANKER_SPEC})
        for line in created.get("plan") or []:
            console.print(f"plan: {line}")
        rollout = follow(client, created["id"], timeout)
        phase = rollout["status"]["phase"]
        console.print(f"rollout {rollout['id']}: [bold]{phase}[/bold] — {rollout['status'].get('message')}")
        found = ranking_evidence(rollout)
        reason = str(found[0].get("reason")) if found else None
        if found:
            console.print(f"evidence of the ranking check: {describe(*found)}")
        if phase not in ("rolled_back", "promoted", "aborted", "failed", "refused"):
            client.request("POST", f"/api/models/{MODEL}/rollout/abort")
            time.sleep(1)
    finally:
        traffic.stop()
    ndcg = online_ndcg(client)
    for version, (value, n) in sorted(ndcg.items()):
        shown = f"{value:.3f}" if value is not None else "-"
        console.print(f"online NDCG@10 of {MODEL} v{version}: {shown} over {n} clicked requests "
                      f"({traffic.versions.get(version, 0)} served)")
    return RecsResult(phase, reason, traffic.total, traffic.failed, ndcg, time.monotonic() - started)
