"""Latency and throughput of predict callables, measured on the very same batches.

The predictors run interleaved in one pass: for each batch every predictor is called once,
and the order rotates from batch to batch (A then B, then B then A), so neither version
always meets a warm cache or a noisy neighbour first. Each call is timed with
`time.perf_counter`; per-row latency is a batch's time divided by its rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Generic, TypeVar

import numpy as np
import pandas as pd

from changeover.evaluation.bootstrap import Interval, percentile_interval

__all__ = [
    "LatencySummary",
    "Timing",
    "latency_intervals",
    "split_batches",
    "summarise_latency",
    "time_interleaved",
]

T = TypeVar("T")
_QUANTILES = (0.50, 0.95, 0.99)


@dataclass(frozen=True)
class LatencySummary:
    """One version's latency: per row and per batch percentiles (ms), and throughput."""

    p50_ms: float
    p95_ms: float
    p99_ms: float
    batch_p50_ms: float
    batch_p95_ms: float
    batch_p99_ms: float
    rows_per_second: float
    n_batches: int
    n_rows: int

    def as_metrics(self) -> dict[str, float]:
        """The figures under the metric names that rules reference."""
        return {
            "latency_p50_ms": self.p50_ms,
            "latency_p95_ms": self.p95_ms,
            "latency_p99_ms": self.p99_ms,
            "batch_latency_p50_ms": self.batch_p50_ms,
            "batch_latency_p95_ms": self.batch_p95_ms,
            "batch_latency_p99_ms": self.batch_p99_ms,
            "throughput_rows_per_s": self.rows_per_second,
        }

    def to_dict(self) -> dict[str, float | int]:
        return {k: (int(v) if isinstance(v, int) else float(v)) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Timing(Generic[T]):
    outputs: list[list[T]]  # per predictor, per batch
    seconds: np.ndarray  # (n_predictors, n_batches)
    rows: np.ndarray  # (n_batches,)


def split_batches(df: pd.DataFrame, batch_size: int) -> list[pd.DataFrame]:
    """Consecutive slices of at most `batch_size` rows, in file order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [df.iloc[i : i + batch_size] for i in range(0, len(df), batch_size)]


def time_interleaved(
    predictors: Sequence[Callable[[pd.DataFrame], T]],
    batches: Sequence[pd.DataFrame],
    *,
    warmup: bool = True,
    progress: Callable[[float], None] | None = None,
) -> Timing[T]:
    """Call every predictor on every batch, rotating the order per batch, and time each call.

    With `warmup`, each predictor first sees the first batch once, untimed, so one-off
    costs (lazy imports, JIT, caches) are not charged to the first measured batch.
    """
    m, nb = len(predictors), len(batches)
    if m == 0 or nb == 0:
        raise ValueError("need at least one predictor and one batch")
    if warmup:
        for predict in predictors:
            predict(batches[0])
    outputs: list[list[T]] = [[] for _ in range(m)]
    seconds = np.zeros((m, nb))
    for i, batch in enumerate(batches):
        for j in range(m):
            p = (i + j) % m
            start = time.perf_counter()
            out = predictors[p](batch)
            seconds[p, i] = time.perf_counter() - start
            outputs[p].append(out)
        if progress is not None:
            progress((i + 1) / nb)
    rows = np.array([len(b) for b in batches], dtype=np.float64)
    return Timing(outputs=outputs, seconds=seconds, rows=rows)


def _latency_figures(seconds: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Figures for each resample; `seconds` and `rows` are (resamples, batches)."""
    per_row = np.quantile(seconds / rows * 1e3, _QUANTILES, axis=1)
    per_batch = np.quantile(seconds * 1e3, _QUANTILES, axis=1)
    total = seconds.sum(axis=1)
    throughput = np.divide(
        rows.sum(axis=1), total, out=np.full(total.shape, np.inf), where=total > 0
    )
    return {
        "latency_p50_ms": per_row[0],
        "latency_p95_ms": per_row[1],
        "latency_p99_ms": per_row[2],
        "batch_latency_p50_ms": per_batch[0],
        "batch_latency_p95_ms": per_batch[1],
        "batch_latency_p99_ms": per_batch[2],
        "throughput_rows_per_s": throughput,
    }


def summarise_latency(seconds: np.ndarray, rows: np.ndarray) -> LatencySummary:
    """Percentiles over batches (numpy's linear interpolation) and rows / total seconds."""
    s = np.asarray(seconds, dtype=np.float64)
    r = np.asarray(rows, dtype=np.float64)
    f = {k: float(v[0]) for k, v in _latency_figures(s[None, :], r[None, :]).items()}
    return LatencySummary(
        p50_ms=f["latency_p50_ms"],
        p95_ms=f["latency_p95_ms"],
        p99_ms=f["latency_p99_ms"],
        batch_p50_ms=f["batch_latency_p50_ms"],
        batch_p95_ms=f["batch_latency_p95_ms"],
        batch_p99_ms=f["batch_latency_p99_ms"],
        rows_per_second=f["throughput_rows_per_s"],
        n_batches=len(s),
        n_rows=int(r.sum()),
    )


def latency_intervals(
    champion_seconds: np.ndarray,
    candidate_seconds: np.ndarray,
    rows: np.ndarray,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Paired bootstrap over batches of candidate - champion for every latency figure.

    Batches are the unit: both versions ran on the same batch, so a resample keeps the
    pair. With few batches the upper percentiles are close to the maximum, and wide.
    """
    a = np.asarray(champion_seconds, dtype=np.float64)
    b = np.asarray(candidate_seconds, dtype=np.float64)
    r = np.asarray(rows, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(r), size=(n_boot, len(r)))
    fa = _latency_figures(a[idx], r[idx])
    fb = _latency_figures(b[idx], r[idx])
    return {name: percentile_interval(fb[name] - fa[name], confidence) for name in fa}
