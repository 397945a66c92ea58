"""What one version scores on a set of units (rows, or queries for ranking): point estimates and
the weighted kernel the paired bootstrap resamples. The gate scores the whole data and each
segment with the same `Scorer`, so a segment's figures are defined exactly as the overall ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from changeover.evaluation import bootstrap
from changeover.evaluation.metrics import ClassificationInputs, classification_metrics_encoded, regression_metrics
from changeover.evaluation.ranking import mean_over_queries

__all__ = ["Scorer", "classification_scorer", "per_query_scorer", "regression_scorer"]

Score = tuple[dict[str, float], bootstrap.WeightedMetrics]


@dataclass(frozen=True)
class Scorer:
    """A version's metrics on any subset of the units (``mask`` over units; None: all)."""

    n_units: int
    score: Callable[[np.ndarray | None], Score]

    def __call__(self, mask: np.ndarray | None = None) -> Score:
        return self.score(mask)


def _quiet(compute: Callable[[], dict[str, float]]) -> dict[str, float]:
    # a small segment makes some figures undefined (R² of one row): NaN, not a warning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compute()


def _subset(enc: ClassificationInputs, mask: np.ndarray) -> ClassificationInputs:
    return ClassificationInputs(
        labels=enc.labels, y_true=enc.y_true[mask], y_pred=enc.y_pred[mask],
        proba=None if enc.proba is None else enc.proba[mask], proba_classes=enc.proba_classes,
    )


def classification_scorer(enc: ClassificationInputs) -> Scorer:
    def score(mask: np.ndarray | None) -> Score:
        sub = enc if mask is None else _subset(enc, mask)
        return _quiet(lambda: classification_metrics_encoded(sub)), bootstrap.classification_kernel(sub)

    return Scorer(len(enc.y_true), score)


def regression_scorer(y: np.ndarray, predictions: np.ndarray) -> Scorer:
    def score(mask: np.ndarray | None) -> Score:
        yt, yp = (y, predictions) if mask is None else (y[mask], predictions[mask])
        point = _quiet(lambda: regression_metrics(yt, yp))
        if len(yt) < 2:
            point["r2"] = float("nan")
        return point, bootstrap.regression_kernel(yt, yp)

    return Scorer(len(y), score)


def per_query_scorer(per_query: Mapping[str, np.ndarray],
                     incidence: Mapping[str, sparse.csr_matrix] | None = None, catalogue: int = 0) -> Scorer:
    """Means over queries of per-query figures; with ``incidence`` (coverage@k: queries × items),
    catalogue coverage too, over a catalogue of ``catalogue`` items."""
    n = len(next(iter(per_query.values())))

    def score(mask: np.ndarray | None) -> Score:
        pq = dict(per_query) if mask is None else {name: v[mask] for name, v in per_query.items()}
        point = {name: mean_over_queries(v) for name, v in pq.items()}
        kernel = bootstrap.ranking_kernel(pq)
        if incidence:
            inc = {name: m if mask is None else m[np.flatnonzero(mask)] for name, m in incidence.items()}
            for name, m in inc.items():
                covered = int(np.count_nonzero(np.asarray(m.sum(axis=0)).reshape(-1)))
                point[name] = covered / catalogue if catalogue else float("nan")
            kernel = bootstrap.combine_kernels(kernel, bootstrap.coverage_kernel(inc, catalogue))
        return point, kernel

    return Scorer(n, score)

