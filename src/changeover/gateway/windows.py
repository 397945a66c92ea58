"""Metric windows: per version, per replica, per interval — counts, errors and bounded
samples of latencies and predictions (what the judge and the monitors read)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

SAMPLE = 2000


@dataclass
class _Window:
    start: float
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    _seen_lat: int = 0
    _seen_pred: int = 0


def _reservoir(values: list[float], seen: int, value: float, rng: random.Random) -> None:
    if len(values) < SAMPLE:
        values.append(value)
    else:
        j = int(rng.random() * seen)  # uniform on [0, seen): randrange's arithmetic, at half its cost
        if j < SAMPLE:
            values[j] = value


class WindowAggregator:
    def __init__(self, replica: str) -> None:
        self.replica = replica
        self._windows: dict[tuple[str, int], _Window] = {}
        self._rng = random.Random()

    def observe(self, model: str, version: int, latency_ms: float, error: bool, prediction: float | None) -> None:
        w = self._windows.get((model, version))
        if w is None:
            w = self._windows[(model, version)] = _Window(start=time.time())
        w.requests += 1
        if error:
            w.errors += 1
        else:
            w._seen_lat += 1
            if len(w.latencies) < SAMPLE:  # the reservoir's common case, inline
                w.latencies.append(round(latency_ms, 3))
            else:
                _reservoir(w.latencies, w._seen_lat, round(latency_ms, 3), self._rng)
        if prediction is not None:
            w._seen_pred += 1
            if len(w.predictions) < SAMPLE:
                w.predictions.append(prediction)
            else:
                _reservoir(w.predictions, w._seen_pred, float(prediction), self._rng)

    def drain(self) -> list[dict[str, Any]]:
        """Close every open window and return its row."""
        now = time.time()
        windows, self._windows = self._windows, {}
        return [
            {
                "model": model,
                "version": version,
                "replica": self.replica,
                "start": w.start,
                "end": now,
                "requests": w.requests,
                "errors": w.errors,
                "latencies": w.latencies,
                "predictions": w.predictions,
            }
            for (model, version), w in windows.items()
        ]
