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
from changeover.evaluation.data import DataError, check_list_ranking_data, check_task_data, feature_columns_for
from changeover.evaluation.list_ranking import (
    Judgements,
    answer_keys,
    coverage_incidence,
    holdout_judgements,
    list_metrics,
    overlap_at_k,
)
from changeover.evaluation.metrics import ClassificationInputs, encode_classification
from changeover.evaluation.perf import (
    LatencySummary,
    latency_intervals,
    split_batches,
    summarise_latency,
    time_interleaved,
)
from changeover.evaluation.ranking import per_query_metrics
from changeover.evaluation.rules import (
    MetricComparison,
    RuleResult,
    compare_metrics,
    evaluate_rules,
    referenced_ks,
    validate_rules,
    verdict,
)
from changeover.evaluation.scoring import Scorer, classification_scorer, per_query_scorer, regression_scorer
from changeover.evaluation.segments import SegmentResult, score_segments, unit_segments

__all__ = [
    "GateResult",
    "MetricComparison",
    "PredictionBatch",
    "PredictionError",
    "Predictor",
    "RuleResult",
    "SegmentResult",
    "item_column_for",
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

    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    """labels (classification), predictions (regression), scores (ranking, one per row)"""
    proba: np.ndarray | None = None  # classification: (n, n_classes), columns follow `classes`
    classes: np.ndarray | None = None
    ranking: np.ndarray | None = None
    """a ranker that answers lists: (rows, k) item ids, best first (`values` unused)"""


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
    lists: bool = False  # ranking: the versions answered a list of item ids per query
    input_rows: np.ndarray | None = None  # rows of the data the versions were called on (None: all)
    segment_column: str | None = None
    segments: dict[str, SegmentResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what a reader must know to read the figures

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
            **({"answers": "lists" if self.lists else "scores"} if self.task == "ranking" else {}),
            **({"segment_column": self.segment_column,
                "segments": {v: seg.to_dict() for v, seg in self.segments.items()}} if self.segment_column else {}),
            "notes": list(self.notes),
        }


def item_column_for(data: pd.DataFrame, target: str, item_column: str | None) -> str | None:
    """The item column of a (query, item, relevance) holdout for a ranker that answers lists:
    the one given, else ``item_id`` or ``item`` when the target holds numbers; None when the
    target holds lists of relevant items."""
    if item_column is not None or target not in data.columns or not pd.api.types.is_numeric_dtype(data[target]):
        return item_column
    return next((c for c in ("item_id", "item") if c in data.columns and c != target), None)


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
    lists: bool = False,
    item_column: str | None = None,
    segment_column: str | None = None,
    numeric_features: bool = True,
) -> GateResult:
    """Judge `candidate` against `champion` (None for a first version) on `data`.

    With ``lists`` (ranking only) the versions answer a list of item ids per query
    (`PredictionBatch.ranking`), called once per query on its first row, and judged on the
    holdout's (query, item, relevance) rows (``item_column``) or on a target column holding
    each query's relevant items. ``segment_column`` breaks every metric down by its values."""
    say = progress or (lambda stage, fraction: None)
    ks = (
        tuple(sorted({int(k) for k in ks} | referenced_ks(require)))
        if task == "ranking"
        else tuple(ks)
    )
    validate_rules(require, task, ks, segmented=segment_column is not None)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1 or batch_size < 1:
        raise ValueError("n_boot and batch_size must be >= 1")
    if lists and task != "ranking":
        raise DataError(f"only a ranker answers lists of item ids, not a {task} model")
    item_column = item_column_for(data, target, item_column) if lists else item_column
    exclude = [c for c in (item_column, segment_column) if c]
    if lists:
        check_list_ranking_data(data, target=target, feature_columns=feature_columns, query_column=query_column,
                                item_column=item_column, exclude=exclude, numeric_features=numeric_features)
    else:
        check_task_data(data, task=task, target=target, feature_columns=feature_columns, query_column=query_column,
                        numeric_features=numeric_features, exclude=exclude)
    if segment_column is not None and segment_column not in data.columns:
        raise DataError(f"segment column {segment_column!r} is missing")
    features = feature_columns_for(
        data, target=target, feature_columns=feature_columns, query_column=query_column, exclude=exclude
    )
    judged = holdout_judgements(data, target, query_column, item_column, features) if lists else None
    y = data[target].to_numpy()
    n = len(data)
    rows = None if judged is None else judged.first_rows
    frame = data if rows is None else data.iloc[rows]
    segments_of = unit_segments(data, task, query_column, segment_column, judged)

    versions = ["candidate"] if champion is None else ["champion", "candidate"]
    predictors = [candidate] if champion is None else [champion, candidate]
    batches = split_batches(frame[features], batch_size)
    say("predict", 0.0)
    timing = time_interleaved(predictors, batches, progress=lambda f: say("predict", f))
    preds = {
        v: _concat_lists(outs, v, len(frame)) if lists else _concat(outs, v, n, task)
        for v, outs in zip(versions, timing.outputs, strict=True)
    }

    say("metrics", 0.0)
    per_query: dict[str, dict[str, np.ndarray]] = {}
    scorers, n_queries, notes = _scorers(task, y, preds, ks, data, query_column, judged, per_query)
    overall = {v: scorers[v]() for v in versions}
    point = {v: dict(overall[v][0]) for v in versions}
    latency = {v: summarise_latency(timing.seconds[i], timing.rows) for i, v in enumerate(versions)}
    for v in versions:
        point[v].update(latency[v].as_metrics())
    say("metrics", 1.0)

    intervals: dict[str, bootstrap.Interval] = {}
    if champion is not None:
        say("bootstrap", 0.0)
        intervals = bootstrap.paired_bootstrap(
            overall["champion"][1],
            overall["candidate"][1],
            scorers["candidate"].n_units,
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

    comparisons = compare_metrics(point, intervals, task, ks)
    segments = score_segments(segments_of, scorers, versions, task, ks, n_boot=n_boot, confidence=confidence, seed=seed)
    rules = evaluate_rules(
        require, comparisons, has_champion=champion is not None, confidence=confidence,
        segments={v: s.metrics for v, s in segments.items()} if segment_column else None,
        segment_column=segment_column,
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
        lists=lists,
        input_rows=rows,
        segment_column=segment_column,
        segments=segments,
        notes=notes,
    )


def _scorers(task: str, y: np.ndarray, preds: Mapping[str, PredictionBatch], ks: Sequence[int], data: pd.DataFrame,
             query_column: str | None, judged: Judgements | None, per_query: dict[str, dict[str, np.ndarray]],
             ) -> tuple[dict[str, Scorer], int | None, list[str]]:
    """Each version's scorer (rows, or queries for ranking); fills ``per_query`` for ranking."""
    scorers: dict[str, Scorer] = {}
    notes: list[str] = []
    if task == "classification":
        return {v: classification_scorer(_encode(y, p, v)) for v, p in preds.items()}, None, notes
    if task == "regression":
        return {v: regression_scorer(y, p.values) for v, p in preds.items()}, None, notes
    if judged is None:
        assert query_column is not None
        for v, p in preds.items():
            qids, per_query[v] = per_query_metrics(y, p.values, data[query_column].to_numpy(), ks)
            scorers[v] = per_query_scorer(per_query[v])
        return scorers, len(qids), notes
    keys = {v: p.ranking for v, p in preds.items() if p.ranking is not None}
    longest = max(ks)
    answered = {str(k) for a in keys.values() for k in np.unique(a[:, :longest])}
    index = {key: i for i, key in enumerate(sorted(judged.catalogue | answered))}
    for v, a in keys.items():
        per_query[v] = list_metrics(a, judged, ks)
        incidence = {f"coverage_at_{k}": coverage_incidence(a, k, index) for k in ks}
        scorers[v] = per_query_scorer(per_query[v], incidence, len(index))
        length = a.shape[1]
        if length == 0:
            notes.append(f"{v}: answered empty lists; every figure counts them as finding nothing (0)")
        elif any(k > length for k in ks):
            over = ", ".join(str(k) for k in ks if k > length)
            notes.append(f"{v}: lists of {length} items; at k = {over} precision divides by the {length} items "
                         "answered, and the other figures count only those items")
    return scorers, judged.n_queries, notes


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


def _concat_lists(outs: Sequence[Any], version: str, n: int) -> PredictionBatch:
    """A list-answering ranker's batches as one (queries, k) array of item keys; PredictionError
    when they are not lists of ids."""
    if not all(isinstance(o, PredictionBatch) and o.ranking is not None for o in outs):
        raise PredictionError(f"{version}: the predictor must return lists of item ids (PredictionBatch.ranking)")
    parts = [np.asarray(o.ranking) for o in outs]
    shapes = {p.shape[1:] for p in parts}
    if any(p.ndim != 2 for p in parts) or len(shapes) > 1:
        raise PredictionError(f"{version}: a ranking is one list of item ids per row, of one length, shape (rows, k); "
                              f"got shapes {sorted({list(p.shape).__repr__() for p in parts})}")
    try:
        keys = answer_keys(np.concatenate(parts), version)
    except ValueError as exc:
        raise PredictionError(str(exc)) from None
    if len(keys) != n:
        raise PredictionError(f"{version}: {len(keys)} lists for {n} queries")
    return PredictionBatch(ranking=keys)


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
    if champ.ranking is not None and cand.ranking is not None:
        k = max(result.ks)
        return overlap_at_k(champ.ranking, cand.ranking, k), f"overlap@{k} of the two versions' lists (1: the same items)"
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
