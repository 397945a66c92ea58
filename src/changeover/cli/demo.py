"""`changeover demo`: the main job on the embedded defaults, end to end on this machine.

It trains two small scikit-learn models on a data set scikit-learn ships, starts a real
server on loopback, pushes both versions and walks the road while traffic flows.
"""

from __future__ import annotations

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

from changeover.cli.client import Client

console = Console()


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
                body = {"inputs": [{"name": "input", "shape": [1, self.rows.shape[1]], "datatype": "FP64",
                                    "data": self.rows[i].tolist()}]}
                try:
                    r = http.post(f"/v2/models/{self.model}/infer", json=body,
                                  headers={"x-changeover-key": f"user-{rng.integers(10_000)}"})
                    code, version = r.status_code, r.headers.get("x-changeover-version", "-")
                    rid = r.headers.get("x-request-id", "")
                except httpx.HTTPError:
                    code, version, rid = 0, "-", ""
                with self._lock:
                    self.codes[code] += 1
                    self.versions[version] += 1
                    if code == 200:
                        self.request_ids.append((rid, i, version))
                time.sleep(0.002)

    @property
    def total(self) -> int:
        return sum(self.codes.values())

    @property
    def failed(self) -> int:
        return sum(n for code, n in self.codes.items() if code != 200)


def train_models(folder: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
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
    return p1, p2, x_test, y_test


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


def step(title: str) -> None:
    console.rule(f"[bold]{title}")


def run_demo(*, keep: bool = False, home: Path | None = None) -> int:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="changeover-demo-"))
    home = home or work / "home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    summary: dict[str, Any] = {}
    proc = None
    try:
        step("1. Train two models on scikit-learn's breast cancer data")
        p1, p2, x_test, y_test = train_models(work)
        console.print(f"v1: {p1.name}   v2: {p2.name}   held-out rows: {len(x_test)}")

        step("2. Start the server (SQLite store, models in-process)")
        proc = start_server(home, port)
        token = (home / "token").read_text().strip()
        client = Client(url=url, token=token)
        console.print(f"server on {url}  (home {home})")

        step("3. Push both versions and make v1 champion")
        for path in (p1, p2):
            r = client.push(path, name="cancer", labels={"data": "breast_cancer"}, runtime=None, trust=False)
            console.print(f"pushed cancer v{r['version']}  sha256 {r['sha256'][:12]}  runtime {r['runtime']}")
        client.request("PUT", "/api/models/cancer/aliases/champion", json={"version": 1, "reason": "first release"})
        wait_for_version(url, "cancer", 1, x_test)

        step("4. Move champion v1 → v2 → v1 while traffic flows")
        traffic = Traffic(url, x_test).start()
        time.sleep(2)
        for version in (2, 1):
            client.request("PUT", "/api/models/cancer/aliases/champion", json={"version": version, "reason": "demo swap"})
            wait_for_version(url, "cancer", version, x_test)
            console.print(f"champion is now v{version}  ({traffic.total} requests so far, {traffic.failed} failed)")
            time.sleep(2)
        traffic.stop()
        summary["swap"] = {"requests": traffic.total, "errors": traffic.failed, "served": dict(traffic.versions)}

        step("Summary")
        table = Table("what", "figure")
        table.add_row("requests during the swaps", str(traffic.total))
        table.add_row("failed requests", f"[{'green' if traffic.failed == 0 else 'red'}]{traffic.failed}")
        table.add_row("served by", ", ".join(f"v{v}: {n}" for v, n in sorted(traffic.versions.items())))
        table.add_row("audit events", str(len(client.get("/api/events", limit=1000))))
        table.add_row("elapsed", f"{time.monotonic() - started:.0f} s")
        console.print(table)
        if keep:
            console.print(f"[bold]server kept running on {url}[/bold] (token in {home / 'token'}); Ctrl-C to stop")
            try:
                proc.wait()
            except KeyboardInterrupt:
                pass
        return 0 if traffic.failed == 0 else 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
