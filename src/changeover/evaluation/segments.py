"""The gate by segment (`--segment COLUMN`, ``gate.segment``): every metric of every task for
each value of one column, with its own paired bootstrap interval.

A unit belongs to the segment of its row (classification, regression) or of its query's rows
(ranking: the column must not vary within a query). Latency is not broken down: batches mix
segments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from changeover.evaluation import bootstrap
from changeover.evaluation.data import DataError
from changeover.evaluation.list_ranking import Judgements
from changeover.evaluation.rules import MetricComparison, compare_metrics
from changeover.evaluation.scoring import Scorer

__all__ = ["MAX_SEGMENTS", "SegmentResult", "first_rows", "score_segments", "segment_codes", "unit_segments"]

MAX_SEGMENTS = 50


@dataclass(frozen=True)
class SegmentResult:
    value: str
    n_units: int  # rows, or queries for ranking
    metrics: dict[str, MetricComparison]

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "n_units": int(self.n_units),
                "metrics": {name: m.to_dict() for name, m in self.metrics.items()}}


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value.item() if hasattr(value, "item") else value)


def segment_codes(values: Any, column: str) -> tuple[list[str], np.ndarray]:
    """The segments (as text, in sorted order where the values sort) and each unit's code;
    ValueError for missing values or more than `MAX_SEGMENTS` segments."""
    series = pd.Series(np.asarray(values, dtype=object))
    missing = int(series.isna().sum())
    if missing:
        raise ValueError(f"segment column {column!r} has {missing} missing values")
    try:
        codes, uniques = pd.factorize(series, sort=True)
    except TypeError:  # values of mixed types: the order of first appearance
        codes, uniques = pd.factorize(series, sort=False)
    if len(uniques) > MAX_SEGMENTS:
        raise ValueError(f"segment column {column!r} has {len(uniques)} values; a gate breaks down by at most "
                         f"{MAX_SEGMENTS} segments (a column such as a region, not an id)")
    labels = [_label(u) for u in uniques]
    if len(set(labels)) != len(labels):
        raise ValueError(f"segment column {column!r} has values that read the same as text ({labels})")
    return labels, np.asarray(codes)


def unit_segments(data: pd.DataFrame, task: str, query_column: str | None, segment_column: str | None,
                  judged: Judgements | None) -> tuple[list[str], np.ndarray] | None:
    """Each unit's segment (rows; queries for ranking, in the order the metrics list them)."""
    if segment_column is None:
        return None
    values = data[segment_column]
    if task == "ranking" and (judged is None or query_column is not None):
        assert query_column is not None
        per_query = data.groupby(query_column, sort=False)[segment_column].nunique(dropna=False)
        if (per_query > 1).any():
            q = per_query.index[int(np.argmax(per_query.to_numpy() > 1))]
            q = q.item() if isinstance(q, np.generic) else q
            raise DataError(f"segment column {segment_column!r} varies within query {q!r}: a query is one unit")
        first = judged.first_rows if judged is not None else first_rows(data[query_column].to_numpy())
        values = values.iloc[first]
    try:
        return segment_codes(values.to_numpy(), segment_column)
    except ValueError as exc:
        raise DataError(str(exc)) from None


def first_rows(query: np.ndarray) -> np.ndarray:
    """The position of each query's first row, queries in order of first appearance."""
    codes, uniques = pd.factorize(query, sort=False)
    first = np.full(len(uniques), len(codes), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes)))
    return first


def score_segments(segments_of: tuple[list[str], np.ndarray] | None, scorers: Mapping[str, Scorer], versions: list[str],
                   task: str, ks: Sequence[int], *, n_boot: int, confidence: float, seed: int
                   ) -> dict[str, SegmentResult]:
    """Every metric per segment, with the paired bootstrap within the segment."""
    if segments_of is None:
        return {}
    labels, codes = segments_of
    out: dict[str, SegmentResult] = {}
    for i, label in enumerate(labels):
        mask = codes == i
        scored = {v: scorers[v](mask) for v in versions}
        intervals = {}
        if "champion" in scored:
            intervals = bootstrap.paired_bootstrap(scored["champion"][1], scored["candidate"][1], int(mask.sum()),
                                                   n_boot=n_boot, confidence=confidence, seed=seed)
        point = {v: dict(scored[v][0]) for v in versions}
        out[label] = SegmentResult(label, int(mask.sum()), compare_metrics(point, intervals, task, ks))
    return out
