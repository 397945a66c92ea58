"""Offline metrics for the gate: names, directions and point estimates.

Point estimates come from scikit-learn wherever it has the metric; the expected
calibration error is written here. The vectorised, weighted versions that the bootstrap
needs live in `bootstrap.py` and are tested against these.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm

__all__ = [
    "CLASSIFICATION_LABEL_METRICS",
    "CLASSIFICATION_PROBA_METRICS",
    "ECE_BINS",
    "LATENCY_METRICS",
    "RANKING_METRICS_AT_K",
    "REGRESSION_METRICS",
    "TASKS",
    "ClassificationInputs",
    "classification_metrics",
    "classification_metrics_encoded",
    "ece_bins",
    "encode_classification",
    "expected_calibration_error",
    "higher_is_better",
    "is_known_metric",
    "metric_names",
    "regression_metrics",
]

TASKS = ("classification", "regression", "ranking")
CLASSIFICATION_LABEL_METRICS = ("accuracy", "precision", "recall", "f1")
CLASSIFICATION_PROBA_METRICS = ("roc_auc", "log_loss", "ece")
REGRESSION_METRICS = ("rmse", "mae", "r2", "mape")
RANKING_METRICS_AT_K = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
LATENCY_METRICS = (
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "batch_latency_p50_ms",
    "batch_latency_p95_ms",
    "batch_latency_p99_ms",
    "throughput_rows_per_s",
)
ECE_BINS = 10

_LOWER_IS_BETTER = {"log_loss", "ece", "rmse", "mae", "mape"} | {
    name for name in LATENCY_METRICS if name != "throughput_rows_per_s"
}
_AT_K = re.compile(r"^(precision|recall|ndcg|map|hit_rate|coverage)_at_([1-9][0-9]*)$")


def metric_names(
    task: str, ks: Sequence[int] = (5, 10), *, with_proba: bool = True, with_latency: bool = True
) -> list[str]:
    """Every metric the gate reports for `task`, in report order."""
    if task == "classification":
        names = list(CLASSIFICATION_LABEL_METRICS)
        if with_proba:
            names += CLASSIFICATION_PROBA_METRICS
    elif task == "regression":
        names = list(REGRESSION_METRICS)
    elif task == "ranking":
        names = [f"{base}_at_{k}" for k in ks for base in RANKING_METRICS_AT_K] + ["mrr"]
    else:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    if with_latency:
        names += LATENCY_METRICS
    return names


def is_known_metric(name: str) -> bool:
    """True for any metric name of any task (ranking names for any k)."""
    known = (
        set(CLASSIFICATION_LABEL_METRICS)
        | set(CLASSIFICATION_PROBA_METRICS)
        | set(REGRESSION_METRICS)
        | set(LATENCY_METRICS)
        | {"mrr"}
    )
    return name in known or _AT_K.match(name) is not None


def higher_is_better(metric_name: str) -> bool:
    """Direction of a metric: losses, errors and latencies are better when lower."""
    if not is_known_metric(metric_name):
        raise ValueError(f"unknown metric {metric_name!r}")
    return metric_name not in _LOWER_IS_BETTER


# --- classification -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassificationInputs:
    """Labels and probabilities of one version, encoded once for all metrics.

    `labels` are the classes present in the evaluation target, sorted; `y_true` and
    `y_pred` are codes into `labels` (`y_pred` is -1 for a label the target never has).
    `proba` has one column per entry of `proba_classes` (the target's labels and the
    model's classes together, sorted), zero where the model has no such class.
    """

    labels: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None = None
    proba_classes: np.ndarray | None = None

    @property
    def binary(self) -> bool:
        return len(self.labels) == 2

    def label_scores(self) -> np.ndarray:
        """(n, len(labels)): the probability of each target label."""
        assert self.proba is not None and self.proba_classes is not None
        cols = np.searchsorted(self.proba_classes, self.labels)
        return self.proba[:, cols]

    def p_true(self) -> np.ndarray:
        """Probability that the model gave to the true class of each row."""
        assert self.proba is not None and self.proba_classes is not None
        cols = np.searchsorted(self.proba_classes, self.labels)[self.y_true]
        return self.proba[np.arange(len(self.y_true)), cols]

    def confidence(self) -> tuple[np.ndarray, np.ndarray]:
        """Max probability per row, and whether its class (argmax, first on ties) is right."""
        assert self.proba is not None and self.proba_classes is not None
        top = np.argmax(self.proba, axis=1)
        correct = self.proba_classes[top] == self.labels[self.y_true]
        return self.proba[np.arange(len(top)), top], correct


def _codes(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(labels, values)
    pos = np.clip(pos, 0, len(labels) - 1)
    return np.where(labels[pos] == values, pos, -1)


def encode_classification(
    y_true: Any, y_pred: Any, proba: np.ndarray | None = None, classes: Any = None
) -> ClassificationInputs:
    """Encode targets, labels and probabilities against the target's sorted labels.

    `proba` columns follow `classes`; without `classes`, they follow the target's sorted
    labels (scikit-learn's convention). Rows are renormalised to sum to one.
    """
    yt = np.asarray(y_true)
    yp = np.asarray(y_pred)
    labels = np.unique(yt)
    true_codes = _codes(yt, labels)
    pred_codes = _codes(yp, labels)
    if proba is None:
        return ClassificationInputs(labels, true_codes, pred_codes)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim == 1:
        p = np.column_stack([1.0 - p, p])
    model_classes = labels if classes is None else np.asarray(classes)
    if p.shape[1] != len(model_classes):
        raise ValueError(
            f"proba has {p.shape[1]} columns but there are {len(model_classes)} classes"
        )
    all_classes = np.union1d(labels, model_classes)
    full = np.zeros((len(p), len(all_classes)))
    full[:, np.searchsorted(all_classes, model_classes)] = p
    sums = full.sum(axis=1, keepdims=True)
    full = np.divide(full, sums, out=np.full_like(full, 1.0 / full.shape[1]), where=sums > 0)
    return ClassificationInputs(labels, true_codes, pred_codes, full, all_classes)


def expected_calibration_error(
    y_true: Any, proba: np.ndarray, classes: Any = None, *, n_bins: int = ECE_BINS
) -> float:
    """ECE over `n_bins` equal-width bins of the max probability (top-label calibration).

    ECE = sum over bins of (rows in bin / rows) * |accuracy in bin - mean confidence in bin|,
    a row's bin being floor(confidence * n_bins), with confidence 1.0 in the last bin.
    """
    enc = encode_classification(y_true, np.asarray(y_true), proba, classes)
    conf, correct = enc.confidence()
    return _ece(conf, correct, n_bins)


def ece_bins(conf: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Bin index of each confidence: floor(conf * n_bins), 1.0 in the last bin."""
    return np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)


def _ece(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    bins = ece_bins(conf, n_bins)
    gap = np.bincount(bins, weights=correct.astype(float) - conf, minlength=n_bins)
    return float(np.abs(gap).sum() / len(conf))


def classification_metrics(
    y_true: Any, y_pred: Any, proba: np.ndarray | None = None, classes: Any = None
) -> dict[str, float]:
    """accuracy, precision, recall, f1 (+ roc_auc, log_loss, ece when `proba` is given).

    Binary targets: the positive class is the larger label. Otherwise macro averages over
    the labels present in the target.
    """
    return classification_metrics_encoded(encode_classification(y_true, y_pred, proba, classes))


def classification_metrics_encoded(enc: ClassificationInputs) -> dict[str, float]:
    yt, yp = enc.y_true, enc.y_pred
    out = {"accuracy": float(skm.accuracy_score(yt, yp))}
    if enc.binary:
        pos_t, pos_p = yt == 1, yp == 1
        out["precision"] = float(skm.precision_score(pos_t, pos_p, zero_division=0))
        out["recall"] = float(skm.recall_score(pos_t, pos_p, zero_division=0))
        out["f1"] = float(skm.f1_score(pos_t, pos_p, zero_division=0))
    else:
        kw: dict[str, Any] = {
            "labels": np.arange(len(enc.labels)),
            "average": "macro",
            "zero_division": 0,
        }
        out["precision"] = float(skm.precision_score(yt, yp, **kw))
        out["recall"] = float(skm.recall_score(yt, yp, **kw))
        out["f1"] = float(skm.f1_score(yt, yp, **kw))
    if enc.proba is None or enc.proba_classes is None:
        return out
    scores = enc.label_scores()
    # AUC needs both sides of a class: a segment (a subset of rows) may hold a single class
    both = [c for c in range(len(enc.labels)) if 0 < np.sum(yt == c) < len(yt)]
    if enc.binary:
        out["roc_auc"] = float(skm.roc_auc_score(yt == 1, scores[:, 1])) if both else float("nan")
    else:
        # one-vs-rest, macro: the mean of each target label's binary AUC
        aucs = [skm.roc_auc_score(yt == c, scores[:, c]) for c in both]
        out["roc_auc"] = float(np.mean(aucs)) if aucs else float("nan")
    true_labels = enc.labels[yt]
    out["log_loss"] = float(skm.log_loss(true_labels, enc.proba, labels=enc.proba_classes))
    conf, correct = enc.confidence()
    out["ece"] = _ece(conf, correct, ECE_BINS)
    return out


# --- regression -----------------------------------------------------------------------------


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """rmse, mae, r2 and mape (a fraction, |y| floored at machine epsilon, as scikit-learn)."""
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    return {
        "rmse": float(skm.root_mean_squared_error(yt, yp)),
        "mae": float(skm.mean_absolute_error(yt, yp)),
        "r2": float(skm.r2_score(yt, yp)),
        "mape": float(skm.mean_absolute_percentage_error(yt, yp)),
    }
