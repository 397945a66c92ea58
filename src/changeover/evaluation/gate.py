"""The offline gate: the candidate against the champion, on the same data, judged by rules.

`run_gate` checks the rules and the data first, then runs both predictors interleaved on the
same batches (timing them), computes every metric for both, a paired bootstrap interval of
each difference, and evaluates the rules. Pure computation: no server, no store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from changeover.evaluation import bootstrap
from changeover.evaluation.data import check_task_data, feature_columns_for
from changeover.evaluation.metrics import (
    ClassificationInputs,
    classification_metrics_encoded,
    encode_classification,
    higher_is_better,
    metric_names,
    regression_metrics,
)
from changeover.evaluation.perf import (
    LatencySummary,
    latency_intervals,
    split_batches,
    summarise_latency,
    time_interleaved,
)
from changeover.evaluation.ranking import mean_over_queries, per_query_metrics
from changeover.evaluation.rules import (
    MetricComparison,
    RuleResult,
    evaluate_rules,
    referenced_ks,
    validate_rules,
    verdict,
)

__all__ = [
    "GateResult",
    "MetricComparison",
    "PredictionBatch",
    "PredictionError",
    "Predictor",
    "RuleResult",
    "run_gate",
    "prediction_differences",
    "summarise_differences",
]

_DIFF_QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
_DIFF_BINS = 20
_PROBA_TOLERANCE = 1e-3


@dataclass(frozen=True)
class PredictionBatch:
    """What a predictor returns for a batch of feature rows."""

    values: np.ndarray  # labels (classification), predictions (regression), scores (ranking)
    proba: np.ndarray | None = None  # classification: (n, n_classes), columns follow `classes`
    classes: np.ndarray | None = None


Predictor = Callable[[pd.DataFrame], PredictionBatch]


class PredictionError(ValueError):
    """A predictor returned something the gate cannot score; the message names the version."""


@dataclass
class GateResult:
    task: str
    verdict: str  # "pass" | "fail"
    rules: list[RuleResult]
    metrics: dict[str, MetricComparison]
    latency: dict[str, LatencySummary]  # "champion" (when there is one) and "candidate"
    n_rows: int
    confidence: float
    n_boot: int
    seed: int
    ks: tuple[int, ...]
    y_true: np.ndarray
    candidate_predictions: PredictionBatch
    champion_predictions: PredictionBatch | None
    batch_seconds: dict[str, np.ndarray]  # per version, one entry per batch
    batch_rows: np.ndarray
    n_queries: int | None = None
    per_query: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # ranking

    @property
    def has_champion(self) -> bool:
        return self.champion_predictions is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary: plain types, NaN as None, no per-row arrays."""
        return {
            "task": self.task,
            "verdict": self.verdict,
            "has_champion": self.has_champion,
            "n_rows": int(self.n_rows),
            "n_queries": None if self.n_queries is None else int(self.n_queries),
            "confidence": float(self.confidence),
            "n_boot": int(self.n_boot),
            "seed": int(self.seed),
            "ks": [int(k) for k in self.ks],
            "rules": [r.to_dict() for r in self.rules],
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
            "latency": {v: s.to_dict() for v, s in self.latency.items()},
            "prediction_differences": summarise_differences(self),
        }


def run_gate(
    *,
    task: str,
    data: pd.DataFrame,
    target: str,
    champion: Predictor | None,
    candidate: Predictor,
    require: Mapping[str, Any] | None,
    ks: Sequence[int] = (5, 10),
    query_column: str | None = None,
    feature_columns: list[str] | None = None,
    batch_size: int = 256,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    progress: Callable[[str, float], None] | None = None,
) -> GateResult:
    """Judge `candidate` against `champion` (None for a first version) on `data`."""
    say = progress or (lambda stage, fraction: None)
    ks = (
        tuple(sorted({int(k) for k in ks} | referenced_ks(require)))
        if task == "ranking"
        else tuple(ks)
    )
    validate_rules(require, task, ks)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1 or batch_size < 1:
        raise ValueError("n_boot and batch_size must be >= 1")
    check_task_data(
        data, task=task, target=target, feature_columns=feature_columns, query_column=query_column
    )
    features = feature_columns_for(
        data, target=target, feature_columns=feature_columns, query_column=query_column
    )
    y = data[target].to_numpy()
    n = len(data)

    versions = ["candidate"] if champion is None else ["champion", "candidate"]
    predictors = [candidate] if champion is None else [champion, candidate]
    batches = split_batches(data[features], batch_size)
    say("predict", 0.0)
    timing = time_interleaved(predictors, batches, progress=lambda f: say("predict", f))
    preds = {v: _concat(outs, v, n, task) for v, outs in zip(versions, timing.outputs, strict=True)}

    say("metrics", 0.0)
    point: dict[str, dict[str, float]] = {}
    kernels: dict[str, bootstrap.WeightedMetrics] = {}
    per_query: dict[str, dict[str, np.ndarray]] = {}
    n_units, n_queries = n, None
    for v, p in preds.items():
        if task == "classification":
            enc = _encode(y, p, v)
            point[v] = classification_metrics_encoded(enc)
            kernels[v] = bootstrap.classification_kernel(enc)
        elif task == "regression":
            point[v] = regression_metrics(y, p.values)
            kernels[v] = bootstrap.regression_kernel(y, p.values)
        else:
            assert query_column is not None
            qids, per_query[v] = per_query_metrics(y, p.values, data[query_column].to_numpy(), ks)
            point[v] = {name: mean_over_queries(vals) for name, vals in per_query[v].items()}
            kernels[v] = bootstrap.ranking_kernel(per_query[v])
            n_units = n_queries = len(qids)
    latency = {v: summarise_latency(timing.seconds[i], timing.rows) for i, v in enumerate(versions)}
    for v in versions:
        point[v].update(latency[v].as_metrics())
    say("metrics", 1.0)

    intervals: dict[str, bootstrap.Interval] = {}
    if champion is not None:
        say("bootstrap", 0.0)
        intervals = bootstrap.paired_bootstrap(
            kernels["champion"],
            kernels["candidate"],
            n_units,
            n_boot=n_boot,
            confidence=confidence,
            seed=seed,
            progress=lambda f: say("bootstrap", 0.9 * f),
        )
        intervals.update(
            latency_intervals(
                timing.seconds[0],
                timing.seconds[1],
                timing.rows,
                n_boot=n_boot,
                confidence=confidence,
                seed=seed + 1,
            )
        )
        say("bootstrap", 1.0)

    comparisons = _compare(point, intervals, task, ks)
    rules = evaluate_rules(
        require, comparisons, has_champion=champion is not None, confidence=confidence
    )
    say("done", 1.0)
    return GateResult(
        task=task,
        verdict=verdict(rules),
        rules=rules,
        metrics=comparisons,
        latency=latency,
        n_rows=n,
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        ks=ks,
        y_true=y,
        candidate_predictions=preds["candidate"],
        champion_predictions=preds.get("champion"),
        batch_seconds={v: timing.seconds[i] for i, v in enumerate(versions)},
        batch_rows=timing.rows,
        n_queries=n_queries,
        per_query=per_query,
    )


def _compare(
    point: dict[str, dict[str, float]],
    intervals: Mapping[str, bootstrap.Interval],
    task: str,
    ks: Sequence[int],
) -> dict[str, MetricComparison]:
    cand, champ = point["candidate"], point.get("champion")
    out: dict[str, MetricComparison] = {}
    for name in metric_names(task, ks):
        if name not in cand:
            continue
        ch = None if champ is None else champ.get(name)
        ci = intervals.get(name)
        out[name] = MetricComparison(
            name=name,
            champion=ch,
            candidate=cand[name],
            diff=None if ch is None else cand[name] - ch,
            ci_low=None if ci is None else ci.low,
            ci_high=None if ci is None else ci.high,
            higher_is_better=higher_is_better(name),
        )
    return out


def _is_numeric(a: np.ndarray) -> bool:
    return bool(np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_)


def _encode(y: np.ndarray, p: PredictionBatch, version: str) -> ClassificationInputs:
    for what, arr in (("labels", p.values), ("classes", p.classes)):
        if arr is not None and _is_numeric(np.asarray(arr)) != _is_numeric(y):
            raise PredictionError(
                f"{version}: labels or classes do not match the target: predicted {what} are "
                f"{np.asarray(arr).dtype}, the target is {y.dtype}"
            )
    try:
        return encode_classification(y, p.values, p.proba, p.classes)
    except (TypeError, ValueError) as exc:
        raise PredictionError(
            f"{version}: labels or classes do not match the target: {exc}"
        ) from exc


def _concat(outs: Sequence[Any], version: str, n: int, task: str) -> PredictionBatch:
    if not all(isinstance(o, PredictionBatch) for o in outs):
        raise PredictionError(f"{version}: the predictor must return a PredictionBatch")
    values = np.concatenate([np.asarray(o.values).reshape(-1) for o in outs])
    if len(values) != n:
        raise PredictionError(f"{version}: {len(values)} predictions for {n} rows")
    with_proba = [o.proba is not None for o in outs]
    if any(with_proba) and not all(with_proba):
        raise PredictionError(f"{version}: some batches came with probabilities, some without")
    if task != "classification":
        if not np.issubdtype(values.dtype, np.number):
            raise PredictionError(f"{version}: predictions must be numbers, not {values.dtype}")
        bad = int(np.sum(~np.isfinite(values.astype(np.float64))))
        if bad:
            raise PredictionError(f"{version}: {bad} predictions are NaN or infinite")
        return PredictionBatch(values=values.astype(np.float64))
    if not all(with_proba):
        return PredictionBatch(values=values)
    classes = outs[0].classes
    for o in outs[1:]:
        if (o.classes is None) != (classes is None) or (
            classes is not None and not np.array_equal(o.classes, classes)
        ):
            raise PredictionError(f"{version}: classes differ from batch to batch")
    proba = np.concatenate([np.asarray(o.proba, dtype=np.float64) for o in outs])
    if proba.ndim != 2 or len(proba) != n:
        raise PredictionError(f"{version}: proba must be (rows, classes), got {proba.shape}")
    if classes is not None and proba.shape[1] != len(classes):
        raise PredictionError(
            f"{version}: proba has {proba.shape[1]} columns for {len(classes)} classes"
        )
    tol = _PROBA_TOLERANCE
    if (
        not np.all(np.isfinite(proba))
        or proba.min() < -tol
        or proba.max() > 1 + tol
        or np.max(np.abs(proba.sum(axis=1) - 1.0)) > tol
    ):
        raise PredictionError(f"{version}: proba rows must be probabilities that sum to 1")
    return PredictionBatch(
        values=values,
        proba=np.clip(proba, 0.0, 1.0),
        classes=None if classes is None else np.asarray(classes),
    )


def prediction_differences(result: GateResult) -> tuple[np.ndarray | None, str]:
    """Per-row differences between the versions, and what they measure."""
    champ, cand = result.champion_predictions, result.candidate_predictions
    if champ is None:
        return None, ""
    if result.task != "classification":
        return cand.values - champ.values, "candidate - champion prediction"
    if champ.proba is None or cand.proba is None:
        return None, ""
    a = encode_classification(result.y_true, champ.values, champ.proba, champ.classes)
    b = encode_classification(result.y_true, cand.values, cand.proba, cand.classes)
    if a.binary:
        diff = b.label_scores()[:, 1] - a.label_scores()[:, 1]
        return diff, "candidate - champion probability of the positive class"
    assert a.proba_classes is not None and b.proba_classes is not None
    classes = np.union1d(a.proba_classes, b.proba_classes)
    pa = np.zeros((len(result.y_true), len(classes)))
    pb = np.zeros_like(pa)
    pa[:, np.searchsorted(classes, a.proba_classes)] = a.proba
    pb[:, np.searchsorted(classes, b.proba_classes)] = b.proba
    return 0.5 * np.abs(pb - pa).sum(axis=1), "total variation between class probabilities"


def summarise_differences(result: GateResult) -> dict[str, Any] | None:
    """Quantiles and a histogram of per-row differences (plus label agreement)."""
    champ, cand = result.champion_predictions, result.candidate_predictions
    if champ is None:
        return None
    out: dict[str, Any] = {}
    if result.task == "classification":
        out["label_agreement"] = float(np.mean(champ.values == cand.values))
    diff, what = prediction_differences(result)
    if diff is None:
        return out
    counts, edges = np.histogram(diff, bins=_DIFF_BINS)
    out.update(
        {
            "measure": what,
            "mean": float(np.mean(diff)),
            "mean_abs": float(np.mean(np.abs(diff))),
            "quantiles": {
                f"{q:g}": float(v)
                for q, v in zip(_DIFF_QUANTILES, np.quantile(diff, _DIFF_QUANTILES), strict=True)
            },
            "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        }
    )
    return out
