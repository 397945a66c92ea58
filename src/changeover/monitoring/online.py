"""Online performance from feedback: the offline gate's metrics, computed per version over
the served requests whose label had time to arrive.

The task of a version is read from its answers: an output named ``label`` makes it a
classification (the label is compared with the feedback label); otherwise a numeric output
(``prediction`` first, else the first number) against a numeric feedback label makes it a
regression. Rewards, when feedback carries them, are averaged apart from labels.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from changeover.domain.outcomes import number as _number
from changeover.domain.outcomes import predicted_label, predicted_number
from changeover.evaluation.metrics import classification_metrics, regression_metrics
from changeover.store.store import Store
from changeover.store.traffic import labelled_requests

__all__ = ["online_metrics", "online_report", "predicted_label", "predicted_number", "primary_metric", "wilson"]

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (95% by default)."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _same_kind(values: Sequence[Any]) -> list[Any]:
    """Labels as numbers when all are numbers, else as text (1 and "1" then compare equal)."""
    numbers = [_number(v) for v in values]
    if all(n is not None for n in numbers):
        return numbers
    return [str(v) for v in values]


def _classification(y_true: list[Any], y_pred: list[Any]) -> dict[str, Any]:
    both = _same_kind(y_true + y_pred)
    yt, yp = both[: len(y_true)], both[len(y_true):]
    out: dict[str, Any] = dict(classification_metrics(np.asarray(yt), np.asarray(yp)))
    correct = sum(1 for a, b in zip(yt, yp, strict=True) if a == b)
    interval = wilson(correct, len(yt))
    out["accuracy_ci"] = list(interval) if interval else None
    return out


def _regression(y_true: list[float], y_pred: list[float]) -> dict[str, Any]:
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    if len(yt) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # r2 of a constant target is undefined, not an error
            out: dict[str, Any] = dict(regression_metrics(yt, yp))
        if not math.isfinite(out["r2"]):
            out["r2"] = None
        return out
    err = np.abs(yt - yp)
    return {"mae": float(err.mean()), "rmse": float(np.sqrt((err**2).mean())), "r2": None, "mape": None}


def online_metrics(rows: Sequence[Mapping[str, Any]], task: str | None = None) -> dict[int, dict[str, Any]]:
    """Per version: counts, the gate's metrics over labelled requests, and the mean reward.

    ``rows`` are ``labelled_requests`` rows (version, output, label, reward). ``task`` forces
    "classification" or "regression"; by default it is read from the answers.
    """
    by_version: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_version.setdefault(int(row["version"]), []).append(row)
    out: dict[int, dict[str, Any]] = {}
    for version, vrows in sorted(by_version.items()):
        labelled = [r for r in vrows if r.get("label") is not None]
        rewards = [float(r["reward"]) for r in vrows if _number(r.get("reward")) is not None]
        figures: dict[str, Any] = {
            "requests": len(vrows),
            "labelled": len(labelled),
            "label_coverage": len(labelled) / len(vrows) if vrows else None,
            "rewards": len(rewards),
            "mean_reward": float(np.mean(rewards)) if rewards else None,
            "task": None,
            "metrics": {},
        }
        pairs_cls = [(r["label"], predicted_label(r.get("output"))) for r in labelled]
        pairs_cls = [(a, b) for a, b in pairs_cls if b is not None]
        pairs_reg = [(_number(r["label"]), predicted_number(r.get("output"))) for r in labelled]
        num_pairs = [(a, b) for a, b in pairs_reg if a is not None and b is not None]
        chosen = task or ("classification" if pairs_cls else "regression" if num_pairs else None)
        if chosen == "classification" and pairs_cls:
            figures["task"] = chosen
            figures["metrics"] = _classification([a for a, _ in pairs_cls], [b for _, b in pairs_cls])
            figures["compared"] = len(pairs_cls)
        elif chosen == "regression" and num_pairs:
            figures["task"] = chosen
            figures["metrics"] = _regression([a for a, _ in num_pairs], [b for _, b in num_pairs])
            figures["compared"] = len(num_pairs)
        else:
            figures["compared"] = 0
        out[version] = figures
    return out


def primary_metric(figures: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """The one number a chart shows: accuracy (classification), MAE (regression), else mean reward."""
    metrics = figures.get("metrics") or {}
    if figures.get("task") == "classification":
        return "accuracy", metrics.get("accuracy")
    if figures.get("task") == "regression":
        return "mae", metrics.get("mae")
    if figures.get("mean_reward") is not None:
        return "mean_reward", figures["mean_reward"]
    return None, None


def online_report(
    store: Store, model: str, *, window_s: float, label_delay_s: float = 0.0, now: float | None = None,
    task: str | None = None,
) -> dict[str, Any]:
    """Online metrics of every version of ``model`` over requests served in
    [now − window − label_delay, now − label_delay]: the window ends where labels had time to arrive."""
    now = time.time() if now is None else now
    until = now
    since = now - window_s - label_delay_s
    rows = labelled_requests(store, model, since=since, until=until, label_delay=label_delay_s)
    versions = online_metrics(rows, task)
    return {
        "model": model,
        "since": since,
        "until": until - label_delay_s,
        "window_s": window_s,
        "label_delay_s": label_delay_s,
        "versions": {str(v): f for v, f in versions.items()},
    }
