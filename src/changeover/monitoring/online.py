"""Online performance from feedback: the offline gate's metrics, computed per version over
the served requests whose label had time to arrive.

The task of a version is read from its answers: a served list of item ids (``ranking`` in the
request log's summary) makes it a ranker, scored per request against the feedback's clicked
or relevant items (`domain.outcomes.outcome`, `domain.ranking_feedback`) and averaged, overall
and per segment; an output named ``label`` makes it a classification (the label is compared
with the feedback label); otherwise a numeric output (``prediction`` first, else the first
number) against a numeric feedback label makes it a regression. Rewards, when feedback carries
them, are averaged apart from labels. docs/metrics.md ("Online metrics of a ranker") gives the
counting rules.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from changeover.domain.outcomes import RANKING_KS, outcome, predicted_label, predicted_number
from changeover.domain.outcomes import number as _number
from changeover.domain.ranking_feedback import RankingMoments, metric_names
from changeover.evaluation.metrics import classification_metrics, regression_metrics
from changeover.store.store import Store
from changeover.store.traffic import labelled_requests

__all__ = [
    "MAX_SEGMENTS",
    "OTHER_SEGMENT",
    "RANKING_METRICS",
    "online_metrics",
    "online_report",
    "predicted_label",
    "predicted_number",
    "primary_metric",
    "wilson",
]

Z95 = 1.959963984540054

# a ranker's online metrics: means over requests of score_ranking's per-request figures
RANKING_METRICS = tuple(n for n in metric_names(RANKING_KS) if n not in ("relevant_items", "relevant_not_served"))
MAX_SEGMENTS = 20  # segments shown by name (most requests first); the rest are pooled under OTHER_SEGMENT
OTHER_SEGMENT = "(other)"


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


def _served_ranking(row: Mapping[str, Any]) -> list[Any] | None:
    served = (row.get("output") or {}).get("ranking")
    return served if isinstance(served, list) else None


def _mean_interval(moments: RankingMoments, name: str) -> list[float] | None:
    """A normal 95% interval on the mean of a per-request figure (None below two values)."""
    m = moments.moments(name)
    if m.n < 2:
        return None
    half = Z95 * math.sqrt(m.var / m.n)
    hi = m.mean + half if name.startswith("ctr_") else min(1.0, m.mean + half)  # CTR@k counts clicks: not ≤ 1
    return [max(0.0, m.mean - half), hi]


def _ranking_figures(moments: RankingMoments) -> dict[str, Any]:
    return {"compared": moments.requests, "metrics": {name: moments.mean(name) for name in RANKING_METRICS}}


def _segments(vrows: Sequence[Mapping[str, Any]], scored: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
              max_segments: int) -> tuple[dict[str, dict[str, Any]], int]:
    """Per segment of the request log: requests, labelled, compared and the ranking means. The
    ``max_segments`` with the most requests keep their name, the rest are pooled under
    OTHER_SEGMENT (returned: how many were pooled). Requests without a segment are in none."""
    requests: dict[str, int] = {}
    labelled: dict[str, int] = {}
    for r in vrows:
        if r.get("segment") is not None:
            key = str(r["segment"])
            requests[key] = requests.get(key, 0) + 1
            labelled[key] = labelled.get(key, 0) + (r.get("label") is not None)
    named = sorted(requests, key=lambda k: (-requests[k], k))[:max_segments]
    kept = set(named)

    def bucket(segment: Any) -> str:
        return str(segment) if str(segment) in kept else OTHER_SEGMENT

    moments: dict[str, RankingMoments] = {}
    for r, scores in scored:
        if r.get("segment") is not None:
            moments.setdefault(bucket(r["segment"]), RankingMoments()).add(scores)
    out: dict[str, dict[str, Any]] = {}
    for key in [*named, *([OTHER_SEGMENT] if len(requests) > len(named) else [])]:
        members = [k for k in requests if bucket(k) == key]
        out[key] = {"requests": sum(requests[k] for k in members), "labelled": sum(labelled[k] for k in members),
                    **_ranking_figures(moments.get(key, RankingMoments()))}
    return out, len(requests) - len(named)


def _ranking(vrows: Sequence[Mapping[str, Any]], labelled: Sequence[Mapping[str, Any]],
             max_segments: int) -> dict[str, Any]:
    """A ranker's figures: each labelled request's served list scored against its feedback."""
    ranked = [r for r in labelled if _served_ranking(r) is not None]
    scored: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    for r in ranked:
        scores = outcome(r.get("output"), r["label"], None).ranking
        if scores is not None:  # a label that names no items (a number, text) cannot score a list
            scored.append((r, scores))
    overall = RankingMoments()
    for _, scores in scored:
        overall.add(scores)
    segments, pooled = _segments(vrows, scored, max_segments)
    return {
        "task": "ranking",
        **_ranking_figures(overall),
        "ranking": {
            "ks": list(RANKING_KS),
            "unscored": len(ranked) - len(scored),
            "with_relevant": overall.moments(f"ndcg_at_{RANKING_KS[0]}").n,
            "relevant_items": int(overall.moments("relevant_items").total),
            "relevant_not_served": int(overall.moments("relevant_not_served").total),
            "intervals": {name: _mean_interval(overall, name) for name in RANKING_METRICS},
            "segments_pooled": pooled,
        },
        "segments": segments,
    }


def online_metrics(rows: Sequence[Mapping[str, Any]], task: str | None = None, *,
                   max_segments: int = MAX_SEGMENTS) -> dict[int, dict[str, Any]]:
    """Per version: counts, the gate's metrics over labelled requests, and the mean reward.

    ``rows`` are ``labelled_requests`` rows (version, output, label, reward, segment). ``task``
    forces "classification", "regression" or "ranking"; by default it is read from the answers
    (a served ``ranking`` list first). A ranker's figures add ``ranking`` (counts, intervals)
    and ``segments`` (the same means per segment of the request log).
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
        ranker = any(_served_ranking(r) is not None for r in labelled)
        chosen = task or ("ranking" if ranker else "classification" if pairs_cls else "regression" if num_pairs else None)
        if chosen == "ranking" and ranker:
            figures.update(_ranking(vrows, labelled, max_segments))
        elif chosen == "classification" and pairs_cls:
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
    """The one number a chart shows: accuracy (classification), MAE (regression), NDCG@10
    (ranking), else mean reward."""
    metrics = figures.get("metrics") or {}
    if figures.get("task") == "ranking":
        return "ndcg_at_10", metrics.get("ndcg_at_10")
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
