"""Paired bootstrap of metric differences.

A resample is a vector of multinomial counts over the n units (rows, or whole queries for
ranking): unit i appears w_i times. Both versions are scored with the same weights, so the
difference keeps the pairing. Each metric is written as a function of a weight matrix
(resamples x units), which turns 1000 resamples into a few matrix products.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from changeover.evaluation.metrics import ECE_BINS, ClassificationInputs, ece_bins

__all__ = [
    "MIN_VALID_RESAMPLES",
    "Interval",
    "WeightedMetrics",
    "classification_kernel",
    "combine_kernels",
    "coverage_kernel",
    "iter_weight_chunks",
    "paired_bootstrap",
    "percentile_interval",
    "ranking_kernel",
    "regression_kernel",
    "resample_weights",
    "weighted_auc",
]

WeightedMetrics = Callable[[np.ndarray], dict[str, np.ndarray]]
"""weights (b, n) -> metric name -> value per resample (b,); NaN where undefined."""

MIN_VALID_RESAMPLES = 0.5
"""Share of resamples where a metric must be defined for its interval to be reported."""

_MAX_CELLS = 2_000_000  # weight-matrix cells per chunk: bounds memory whatever n is


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high


def resample_weights(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n) counts: each row draws n units with replacement."""
    idx = rng.integers(0, n, size=(n_resamples, n))
    idx += (np.arange(n_resamples) * n)[:, None]
    counts = np.bincount(idx.ravel(), minlength=n_resamples * n)
    return counts.reshape(n_resamples, n).astype(np.float64)


def iter_weight_chunks(
    n: int, n_boot: int, rng: np.random.Generator, max_cells: int = _MAX_CELLS
) -> Iterator[np.ndarray]:
    chunk = max(1, min(n_boot, max_cells // max(n, 1)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        yield resample_weights(n, b, rng)
        done += b


def percentile_interval(samples: np.ndarray, confidence: float) -> Interval:
    """Percentile interval over the defined (non-NaN) resamples; NaN if too few."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[~np.isnan(s)]
    if len(s) == 0 or len(s) < MIN_VALID_RESAMPLES * len(samples):
        return Interval(float("nan"), float("nan"))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(s, [alpha, 1.0 - alpha])
    return Interval(float(low), float(high))


def paired_bootstrap(
    champion: WeightedMetrics,
    candidate: WeightedMetrics,
    n: int,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Interval]:
    """Interval of candidate - champion for every metric both kernels return."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n < 1 or n_boot < 1:
        raise ValueError("need at least one unit and one resample")
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[np.ndarray]] = {}
    done = 0
    for w in iter_weight_chunks(n, n_boot, rng):
        a, b = champion(w), candidate(w)
        for name in a.keys() & b.keys():
            diffs.setdefault(name, []).append(b[name] - a[name])
        done += len(w)
        if progress is not None:
            progress(done / n_boot)
    return {
        name: percentile_interval(np.concatenate(parts), confidence)
        for name, parts in diffs.items()
    }


# --- weighted metric kernels ----------------------------------------------------------------


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    return np.divide(num, den, out=np.full(np.shape(num), empty), where=den > 0)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row means over masked-in columns; NaN for a row with none."""
    count = mask.sum(axis=1)
    total = np.where(mask, values, 0.0).sum(axis=1)
    return _ratio(total, count, np.nan)


def weighted_auc(scores: np.ndarray, positive: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC AUC per resample: P(score+ > score-) + P(tie) / 2, weighting each row by w."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    pos = positive[order]
    ws = w[:, order]
    distinct = np.concatenate([[True], s[1:] != s[:-1]])
    if distinct.all():  # no ties: each group is one row, positive or negative
        neg_w = ws * ~pos
        below = np.cumsum(neg_w, axis=1)  # at a positive row: negatives strictly below it
        num = np.einsum("ij,ij->i", below[:, pos], ws[:, pos])
        return _ratio(num, ws[:, pos].sum(axis=1) * neg_w.sum(axis=1), np.nan)
    starts = np.flatnonzero(distinct)
    gp = np.add.reduceat(ws * pos, starts, axis=1)
    gn = np.add.reduceat(ws * ~pos, starts, axis=1)
    below = np.cumsum(gn, axis=1) - gn
    num = np.einsum("ij,ij->i", gp, below + 0.5 * gn)
    return _ratio(num, gp.sum(axis=1) * gn.sum(axis=1), np.nan)


def classification_kernel(enc: ClassificationInputs) -> WeightedMetrics:
    """Weighted versions of `metrics.classification_metrics_encoded`."""
    yt, yp = enc.y_true, enc.y_pred
    n_labels = len(enc.labels)
    correct = (yt == yp).astype(np.float64)
    true_1h = (yt[:, None] == np.arange(n_labels)).astype(np.float64)
    pred_1h = (yp[:, None] == np.arange(n_labels)).astype(np.float64)
    hit_1h = true_1h * pred_1h
    if enc.proba is not None:
        scores = enc.label_scores()
        eps = np.finfo(np.float64).eps
        row_loss = -np.log(np.clip(enc.p_true(), eps, 1 - eps))  # clipped as sklearn does
        conf, top_correct = enc.confidence()
        bins_1h = (ece_bins(conf)[:, None] == np.arange(ECE_BINS)).astype(np.float64)
        gap_1h = bins_1h * (top_correct.astype(np.float64) - conf)[:, None]

    def kernel(w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(axis=1)
        out = {"accuracy": w @ correct / total}
        tp, pp, ap = w @ hit_1h, w @ pred_1h, w @ true_1h
        precision = _ratio(tp, pp, 0.0)
        recall = _ratio(tp, ap, np.nan)
        f1 = _ratio(2 * tp, pp + ap, 0.0)
        if enc.binary:
            out["precision"], out["recall"], out["f1"] = precision[:, 1], recall[:, 1], f1[:, 1]
            # recall is undefined on a resample without positives; so is f1 there
            out["f1"] = np.where(ap[:, 1] > 0, out["f1"], np.nan)
        else:
            present = ap > 0  # macro over the target labels present in this resample
            out["precision"] = _masked_mean(precision, present)
            out["recall"] = _masked_mean(recall, present)
            out["f1"] = _masked_mean(f1, present)
        if enc.proba is None:
            return out
        if enc.binary:
            out["roc_auc"] = weighted_auc(scores[:, 1], yt == 1, w)
        else:
            aucs = np.column_stack(
                [weighted_auc(scores[:, c], yt == c, w) for c in range(n_labels)]
            )
            out["roc_auc"] = _masked_mean(aucs, ~np.isnan(aucs))
        out["log_loss"] = w @ row_loss / total
        out["ece"] = np.abs(w @ gap_1h).sum(axis=1) / total
        return out

    return kernel


def regression_kernel(y_true: np.ndarray, y_pred: np.ndarray) -> WeightedMetrics:
    """Weighted versions of `metrics.regression_metrics`."""
    yt = np.asarray(y_true, dtype=np.float64)
    err = np.asarray(y_pred, dtype=np.float64) - yt
    sq, ab = err**2, np.abs(err)
    pct = ab / np.maximum(np.abs(yt), np.finfo(np.float64).eps)
    centred = yt - yt.mean()  # keeps the weighted variance free of cancellation

    def kernel(w: np.ndarray) -> dict[str, np.ndarray]:
        total = w.sum(axis=1)
        ss_res = w @ sq
        ss_tot = w @ centred**2 - (w @ centred) ** 2 / total
        return {
            "rmse": np.sqrt(ss_res / total),
            "mae": w @ ab / total,
            "r2": 1.0 - _ratio(ss_res, ss_tot, np.nan),
            "mape": w @ pct / total,
        }

    return kernel


def ranking_kernel(per_query: dict[str, np.ndarray]) -> WeightedMetrics:
    """Weighted means over whole queries; a query where a metric is NaN carries no weight."""
    prepared = {
        name: (np.nan_to_num(v, nan=0.0), (~np.isnan(v)).astype(np.float64))
        for name, v in per_query.items()
    }

    def kernel(w: np.ndarray) -> dict[str, np.ndarray]:
        return {name: _ratio(w @ v, w @ d, np.nan) for name, (v, d) in prepared.items()}

    return kernel


def coverage_kernel(incidence: dict[str, sparse.csr_matrix], catalogue: int) -> WeightedMetrics:
    """Catalogue coverage per resample: the share of the catalogue found in the top k of some
    query drawn (weight > 0). ``incidence`` maps a metric name to its (queries × items) 0/1
    matrix; the product is taken in blocks of items to bound memory."""
    transposed = {}
    for name, m in incidence.items():
        mt = sparse.csr_matrix(m.T)
        transposed[name] = mt[np.flatnonzero(np.diff(mt.indptr) > 0)]  # only items some query holds

    def kernel(w: np.ndarray) -> dict[str, np.ndarray]:
        drawn = (w > 0).astype(np.float64).T  # (queries, resamples)
        block = max(1, _MAX_CELLS // max(w.shape[0], 1))
        out: dict[str, np.ndarray] = {}
        for name, mt in transposed.items():
            covered = np.zeros(w.shape[0])
            for start in range(0, mt.shape[0], block):
                covered += (np.asarray(mt[start:start + block] @ drawn) > 0).sum(axis=0)
            out[name] = covered / catalogue if catalogue else np.full(w.shape[0], np.nan)
        return out

    return kernel


def combine_kernels(*kernels: WeightedMetrics) -> WeightedMetrics:
    """One kernel that returns the metrics of all of them."""

    def kernel(w: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for k in kernels:
            out.update(k(w))
        return out

    return kernel
