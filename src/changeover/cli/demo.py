"""`changeover demo`: the main job on the embedded defaults, end to end on this machine.

It trains two small scikit-learn models on a data set scikit-learn ships, starts a real
server on loopback, pushes both versions and walks the road while traffic flows. Its last
part (`demo_recs`) rolls out a ranker whose regression only the users' clicks show.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from changeover.cli.client import ApiError, Client

console = Console()

NEW_CLINIC_RADIUS = 30.0  # larger than any tumour in the data set: the holdout never has it

BAD_PREDICTOR = '''
import numpy as np
import skops.io as sio


class Model:
    """v3: better on paper, but it was never tested on radius > 28.5 and raises there."""

    def load(self, folder):
        self.model = sio.load(folder + "/inner.skops")

    def predict(self, inputs):
        x = inputs["input"]
        if (x[:, 0] > 28.5).any():
            raise ValueError("radius out of the training range")
        proba = self.model.predict_proba(x)
        return {"label": self.model.classes_[proba.argmax(axis=1)], "probabilities": proba}
'''

BAD_MANIFEST = """runtime: python
predictor: predictor:Model
inputs: [{name: input, datatype: FP64, shape: [-1, 30]}]
outputs: [{name: label, datatype: INT64, shape: [-1]}, {name: probabilities, datatype: FP64, shape: [-1, 2]}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Traffic:
    """Clients sending real requests on loopback until stopped; they count what came back."""

    url: str
    rows: np.ndarray
    clients: int = 4
    model: str = "cancer"
    slice_share: float = 0.0  # share of requests from a "new clinic" the holdout never saw
    labels: np.ndarray | None = None
    feedback: bool = False
    codes: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    request_ids: list[tuple[str, int, str]] = field(default_factory=list)  # (request id, row, version)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Traffic:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.clients)]
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
                i = int(rng.integers(len(self.rows)))
                row = self.rows[i].copy()
                clinic = "north"
                if self.slice_share and rng.random() < self.slice_share:
                    row[0] = NEW_CLINIC_RADIUS
                    clinic = "new"
                body = {"inputs": [{"name": "input", "shape": [1, self.rows.shape[1]], "datatype": "FP64",
                                    "data": row.tolist()}]}
                try:
                    r = http.post(f"/v2/models/{self.model}/infer", json=body,
                                  headers={"x-changeover-key": f"user-{rng.integers(10_000)}", "x-clinic": clinic})
                    code, version = r.status_code, r.headers.get("x-changeover-version", "-")
                    rid = r.headers.get("x-request-id", "")
                    if self.feedback and code == 200 and self.labels is not None:
                        http.post("/v1/feedback", json={"request_id": rid, "label": int(self.labels[i])})
                except httpx.HTTPError:
                    code, version, rid = 0, "-", ""
                with self._lock:
                    self.codes[code] += 1
                    self.versions[version] += 1
                    if code == 200:
                        self.request_ids.append((rid, i, version))

    @property
    def total(self) -> int:
        return sum(self.codes.values())

    @property
    def failed(self) -> int:
        return sum(n for code, n in self.codes.items() if code != 200)


def train_models(folder: Path) -> tuple[Path, Path, Path, np.ndarray, np.ndarray]:
    import skops.io as sio
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.4, random_state=0)
    v1 = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=1000)).fit(x_train[:, :], y_train)
    v2 = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(x_train, y_train)
    p1, p2 = folder / "cancer-v1.skops", folder / "cancer-v2.skops"
    sio.dump(v1, p1)
    sio.dump(v2, p2)
    v3 = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000)).fit(x_train, y_train)
    p3 = folder / "cancer-v3"
    p3.mkdir()
    sio.dump(v3, p3 / "inner.skops")
    (p3 / "predictor.py").write_text(BAD_PREDICTOR)
    (p3 / "model.yaml").write_text(BAD_MANIFEST)
    holdout = folder / "holdout.csv"
    import pandas as pd

    frame = pd.DataFrame(x_test, columns=[f"f{i}" for i in range(x_test.shape[1])])
    frame["label"] = y_test
    frame.to_csv(holdout, index=False)
    return p1, p2, p3, x_test, y_test


def start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CHANGEOVER_HOME": str(home), "CHANGEOVER_URL": f"http://127.0.0.1:{port}",
           "CHANGEOVER_WINDOW_SECONDS": "1", "CHANGEOVER_CONTROLLER_TICK_S": "0.5"}
    env.pop("CHANGEOVER_STORE", None)
    log = open(home / "server.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen([sys.executable, "-m", "changeover.cli.main", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: see {home / 'server.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the server did not become ready in 60 s")


def wait_for_version(url: str, model: str, version: int, rows: np.ndarray, timeout: float = 15.0) -> None:
    body = {"inputs": [{"name": "input", "shape": [1, rows.shape[1]], "datatype": "FP64", "data": rows[0].tolist()}]}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=10)
        if r.status_code == 200 and r.headers.get("x-changeover-version") == str(version):
            return
        time.sleep(0.05)
    raise RuntimeError(f"traffic did not move to v{version}")


def _relative(path: Path) -> str:
    """``./demo-reports`` when it is under the current folder, else the whole path."""
    try:
        return "./" + path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def step(title: str) -> None:
    console.rule(f"[bold]{title}")


GOOD_SPEC = """
model: cancer
candidate: "2"
gate:
  data: {holdout}
  task: classification
  target: label
  require:
    accuracy: {{not_worse_than: champion, margin: 0.03}}
    latency_p99_ms: {{max: 100}}
shadow:
  sample: 1.0
  segment: header:x-clinic
  until: {{requests: 200, or_after: 30s}}
  require: {{agreement: {{min: 0.8}}, candidate_error_rate: {{max: 0.01}}}}
canary:
  sticky_key: header:x-changeover-key
  steps: [25, 50]
  bake: 8s
  max_extensions: 4
  judge:
    # tolerances a demo's few thousand requests can show: a pass needs evidence that the
    # candidate is no worse than this (the plan printed at apply says how many samples)
    error_rate: {{max_increase: 0.05}}
    latency_p99_ms: {{max_ratio: 5.0}}
    min_requests: 50
promote: auto
watch: 5s
"""

BAD_SPEC = """
model: cancer
candidate: "3"
gate:
  data: {holdout}
  task: classification
  target: label
  require:
    accuracy: {{not_worse_than: champion, margin: 0.03}}
canary:
  steps: [20, 50]
  bake: 8s
  max_extensions: 4
  judge:
    error_rate: {{max_increase: 0.01}}
    latency_p99_ms: {{max_ratio: 5.0}}
    min_requests: 50
promote: auto
watch: 5s
"""


def follow_rollout(client: Client, rid: int, timeout: float = 240.0) -> dict[str, Any]:
    """The live view on a terminal; piped, a line each time the rollout moves (on stdout, in
    order with the rest of the demo's story), then the view once."""
    from changeover.cli.rollout import follow

    return follow(client, rid, timeout, lines_to=console)


REPORTS = Path("demo-reports")  # in the folder the demo was started from: kept after it ends


def run_demo(*, keep: bool = False, home: Path | None = None, reports: Path = REPORTS) -> int:
    from changeover.cli.evaluation import print_shadow, print_verdict

    started = time.monotonic()
    reports = reports.resolve()
    reports.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    work = Path(tempfile.mkdtemp(prefix="changeover-demo-"))
    home = home or work / "home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = None
    failures: list[str] = []
    try:
        step("1. Train three models on scikit-learn's breast cancer data")
        p1, p2, p3, x_test, y_test = train_models(work)
        console.print(f"v1: {p1.name}   v2: {p2.name}   v3: {p3.name} (python runtime)   held-out rows: {len(x_test)}")

        step("2. Start the server (SQLite store, models in-process)")
        proc = start_server(home, port)
        token = (home / "token").read_text().strip()
        client = Client(url=url, token=token, timeout=900)  # a gate or a replay on a busy machine takes minutes
        console.print(f"server on {url}  (home {home})")
        console.print(f"[bold]dashboard: {url}/[/bold]  (token in {home / 'token'})")

        step("3. Push the versions and make v1 champion")
        for path in (p1, p2, p3):  # v3's predictor is code the demo wrote itself: pushed with --trust
            r = client.push(path, name="cancer", labels={"data": "breast_cancer"}, runtime=None, trust=path == p3)
            console.print(f"pushed cancer v{r['version']}  sha256 {r['sha256'][:12]}  runtime {r['runtime']}")
        client.request("PUT", "/api/models/cancer/aliases/champion", json={"version": 1, "reason": "first release"})
        wait_for_version(url, "cancer", 1, x_test)

        traffic = Traffic(url, x_test, clients=4, labels=y_test, feedback=True).start()
        time.sleep(3)

        step("4. Swap champion v1 → v2 → v1 under traffic: no failed request")
        before = traffic.failed
        for version in (2, 1):
            client.request("PUT", "/api/models/cancer/aliases/champion", json={"version": version, "reason": "demo swap"})
            wait_for_version(url, "cancer", version, x_test)
            console.print(f"champion is now v{version}  ({traffic.total} requests so far, {traffic.failed} failed)")
            time.sleep(1.5)
        swap = {"requests": traffic.total, "errors": traffic.failed - before, "served": dict(traffic.versions)}

        step("5. Compatibility and offline gate: v2 against v1")
        compat = client.request("POST", "/api/models/cancer/versions/2/compat", params={"against": "champion"})
        changes = len(compat["changes"])
        console.print(f"Compatibility of v2 with v1: {compat['verdict']} — "
                      + ("the signatures are the same" if not changes else f"{changes} signature change(s)")
                      + f"; {compat['replay']['requests']} recorded production requests replayed through v2, "
                      f"{compat['replay']['errors']} of them raised.")
        policy = "require:\n  accuracy: {not_worse_than: champion, margin: 0.03}\n  latency_p99_ms: {max: 100}\n"
        holdout = work / "holdout.csv"
        gate = client.request("POST", "/api/models/cancer/versions/2/validate", content=holdout.read_bytes(),
                              params={"task": "classification", "target": "label", "filename": holdout.name,
                                      "policy": policy, "report": True})
        print_verdict(gate["result"])
        report = reports / "gate-report.html"
        report.write_text(gate["html"])
        written.append(report)
        console.print(f"The offline gate's report (every metric with its interval): {report}")

        step("6. Shadow v2: a copy of live traffic, compared request by request, with labels arriving late")
        client.request("POST", "/api/models/cancer/shadows", json={
            "version": "2", "sample": 1.0, "segment": "header:x-clinic",
            "require": {"agreement": {"min": 0.8}, "candidate_error_rate": {"max": 0.01}}})
        traffic.slice_share = 0.1
        time.sleep(6)
        client.request("DELETE", "/api/models/cancer/shadows")
        shadow = client.get("/api/models/cancer/shadows/report", version="2", html=True)
        html = shadow.pop("html", None)
        print_shadow(shadow)
        figures = shadow["figures"]
        if html:
            report = reports / "shadow-report.html"
            report.write_text(html)
            written.append(report)
            console.print(f"The shadow's report (who said what, per segment): {report}")

        step("7. Rollout of v2: gate → shadow → canary 25% → 50% → promotion → watch")
        spec_file = work / "good.yaml"
        spec_file.write_text(GOOD_SPEC.format(holdout=holdout))
        from changeover.cli.rollout import load_spec_file

        created = client.request("POST", "/api/rollouts", json={"spec": client.api.upload_gate_data(load_spec_file(spec_file))})
        for line in created.get("plan") or []:
            console.print(f"plan: {line}")
        good = follow_rollout(client, created["id"])
        console.print(f"rollout {good['id']}: [bold]{good['status']['phase']}[/bold] — {good['status'].get('message')}")
        if good["status"]["phase"] != "promoted":
            failures.append(f"the good candidate ended {good['status']['phase']}")
            if good["status"]["phase"] not in ("rolled_back", "aborted", "failed"):
                client.request("POST", "/api/models/cancer/rollout/abort")
                time.sleep(2)

        step("8. Rollout of v3: passes the offline gate, but errs on a clinic the holdout lacks")
        traffic.slice_share = 0.15
        spec_file = work / "bad.yaml"
        spec_file.write_text(BAD_SPEC.format(holdout=holdout))
        try:
            created = client.request("POST", "/api/rollouts", json={"spec": client.api.upload_gate_data(load_spec_file(spec_file))})
        except ApiError as exc:
            # the clinic's requests may be among the recorded ones: then the compatibility step's replay
            # sees v3 raise on them, and apply refuses it before any live traffic
            if exc.status != 409 or not isinstance(exc.body, dict) or "compat" not in exc.body:
                raise
            bad_outcome = "refused at the compatibility step"
            console.print(f"v3 {bad_outcome}, before any traffic: {'; '.join(exc.body['compat']['causes'])}")
        else:
            bad = follow_rollout(client, created["id"])
            bad_outcome = bad["status"]["phase"]
            console.print(f"rollout {bad['id']}: [bold]{bad_outcome}[/bold] — {bad['status'].get('message')}")
            if bad_outcome != "rolled_back":
                failures.append(f"the bad candidate ended {bad_outcome}")
        time.sleep(1)
        traffic.stop()

        step("9. A recommender: v2 reverses the top 10 for ~30% of users")
        from changeover.cli.demo_recs import run_recs

        recs = run_recs(client, url, work, console, follow_rollout)
        if recs.phase != "rolled_back" or not recs.reason:
            failures.append(f"the reversed recommender ended {recs.phase}"
                            + ("" if recs.reason else " (not by the ranking check)"))

        step("Summary")
        table = Table("what", "figure")
        table.add_row("requests during the swaps", f"{swap['requests']} ({swap['errors']} failed)")
        table.add_row("offline gate v2 vs v1", gate["result"]["verdict"])
        table.add_row("shadow agreement", f"{(figures.get('overall') or {}).get('agreement') or 0:.1%}")
        online = figures.get("online") or {}
        if online.get("metric"):
            table.add_row(f"online {online['metric']} v1 / v2 (same {online['labelled']} requests)",
                          f"{online['champion']:.3f} / {online['shadow']:.3f}")
        table.add_row("rollout of v2", good["status"]["phase"])
        table.add_row("rollout of v3", bad_outcome)
        table.add_row("champion now", f"v{client.get('/api/models/cancer')['aliases'].get('champion')}")
        ndcg = " / ".join(f"{v:.3f}" if v is not None else "-" for v, _ in (recs.ndcg.get("1", (None, 0)),
                                                                             recs.ndcg.get("2", (None, 0))))
        table.add_row("rollout of recs v2 (reversed for ~30% of users)",
                      f"{recs.phase}{' by the ranking check' if recs.reason else ''}; online NDCG@10 v1 / v2 {ndcg}"
                      f" ({recs.requests} requests, {recs.failed} failed, {recs.seconds:.0f} s)")
        table.add_row("requests in all", f"{traffic.total} ({traffic.failed} failed"
                      + (", most from v3's canary slice)" if bad_outcome == "rolled_back" else ")"))
        table.add_row("served by", ", ".join(f"v{v}: {n}" for v, n in sorted(traffic.versions.items())))
        table.add_row("audit events", str(len(client.get("/api/events", limit=10000))))
        table.add_row("elapsed", f"{time.monotonic() - started:.0f} s")
        console.print(table)
        if written:
            shown = _relative(reports)
            console.print(f"[bold]The reports are kept in {shown}/[/bold]: " + ", ".join(p.name for p in written))
        for f in failures:
            console.print(f"[red]✗ {f}[/red]")
        if swap["errors"]:
            failures.append("requests failed during the swaps")
        if keep:
            console.print(f"[bold]server kept running: dashboard {url}/[/bold] (token in {home / 'token'}); Ctrl-C to stop")
            with contextlib.suppress(KeyboardInterrupt):
                proc.wait()
        return 0 if not failures else 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
