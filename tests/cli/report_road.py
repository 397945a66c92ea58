"""A short, whole rollout on a real `changeover serve`, for the rollout report's tests: push two
python-runtime classifiers, then `changeover apply` through compatibility → offline gate →
shadow → canary steps (20%, 50%) → promotion → watch, under traffic whose labels come back as
feedback, so every section of the report has real data (gate intervals, shadow comparison,
online accuracy, the judge's intervals at each look)."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from types import TracebackType

import httpx
import numpy as np
import pandas as pd

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess

OUTPUTS = "[{name: label, datatype: INT64, shape: [-1]}]"
VERSIONS = {
    1: "return {'label': (inputs['x'][:, 0] > 0).astype(np.int64)}",
    2: "x = inputs['x']\nreturn {'label': (x[:, 0] > 0).astype(np.int64)}",  # the same answers, other bytes
}
SPEC = """model: m
candidate: "2"
gate:
  data: holdout.csv
  task: classification
  require:
    accuracy: {not_worse_than: champion, margin: 0.05}
shadow:
  sample: 1.0
  until: {requests: 40, or_after: 30s}
  require: {agreement: {min: 0.9}, candidate_error_rate: {max: 0.05}}
canary:
  steps: [20, 50]
  bake: 2s
  max_extensions: 4
  judge:
    error_rate: {max_increase: 0.05}
    latency_p99_ms: null  # off: a p99 ratio needs ~2,000 canary requests to conclude
    label_accuracy: {max_decrease: 0.2}
    min_requests: 20
    min_labels: 10
watch: 2s
"""


class LabelledTraffic:
    """Clients calling the model with random sticky keys, and posting each answer's true label
    (x0 > 0, wrong 5% of the time) as feedback, until stopped."""

    def __init__(self, url: str, clients: int = 2) -> None:
        self.url = url
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> LabelledTraffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                x0 = rng.uniform(-1, 1)
                body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [x0, rng.uniform(-1, 1)]}]}
                try:
                    r = http.post("/v2/models/m/infer", json=body,
                                  headers={"x-changeover-key": f"user-{rng.randrange(100_000)}"})
                    self.statuses.append(r.status_code)
                    if r.status_code == 200:
                        label = int(x0 > 0) if rng.random() > 0.05 else int(x0 <= 0)
                        http.post("/v1/feedback", json={"request_id": r.headers["x-request-id"], "label": label})
                except httpx.HTTPError:
                    self.statuses.append(0)
                self._stop.wait(0.004)


def prepare(server: ServerProcess, folder: Path) -> Path:
    """Push v1 and v2, make v1 champion, and write the spec and its holdout: the spec's path."""
    pusher = Client(url=server.url, token=TOKEN)
    try:
        for number, body in VERSIONS.items():
            model = python_model(folder / f"v{number}", body, outputs=OUTPUTS)
            assert pusher.push(model, name="m", labels={}, runtime=None, trust=True)["version"] == number
    finally:
        pusher.close()
    with server.client() as api:
        assert api.put("/api/models/m/aliases/champion", json={"version": 1}).status_code == 200
    x = np.random.default_rng(1).uniform(-1, 1, size=(120, 2))
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": (x[:, 0] > 0).astype(int)}).to_csv(folder / "holdout.csv",
                                                                                             index=False)
    spec = folder / "spec.yaml"
    spec.write_text(SPEC)
    return spec


def walk_the_road(server: ServerProcess, folder: Path) -> None:
    """The whole rollout, under labelled traffic, to its end (asserted promoted)."""
    spec = prepare(server, folder)
    with LabelledTraffic(server.url):
        result = server.cli("apply", str(spec), "--timeout", "120")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "m: promoted" in result.stdout, result.stdout
