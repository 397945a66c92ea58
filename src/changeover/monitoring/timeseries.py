"""Figures over time for charts: per version and per time bucket, from the metric windows
(requests, errors, latency, predictions), the shadow pairs (agreement) and feedback
(the online metric).

A window belongs to the bucket where it ends. Windows carry bounded samples of latencies and
predictions; pooled across windows and replicas each sample is weighted by the answered
requests it stands for, so a busy replica counts for what it served. Counts come from every
window; samples from a few windows per bucket, so a day's chart costs what an hour's does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import and_, select

from changeover.domain.outcomes import outcome
from changeover.domain.spec import parse_duration
from changeover.monitoring.online import predicted_label, predicted_number
from changeover.store import tables as t
from changeover.store.store import Store
from changeover.store.traffic import labelled_requests

__all__ = ["agrees", "choose_step", "parse_since", "timeseries", "weighted_quantile", "window_figures"]

NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
MAX_BUCKETS = 720
MAX_PAIRS = 50_000
SAMPLED_PER_BUCKET = 4  # windows per version and bucket whose samples are read
EPOCH_FLOOR = 1e9  # a `since` this large is a point in time, not a duration


def parse_since(value: str | float | None, now: float, default_s: float = 900.0) -> float:
    """A start time from ``since``: a duration ago (``15m``, ``3600``), or a Unix time."""
    if value is None or value == "":
        return now - default_s
    try:
        number = float(value)
    except (TypeError, ValueError):
        return now - parse_duration(value)
    return number if number >= EPOCH_FLOOR else now - parse_duration(number)


def choose_step(span_s: float, step: str | float | None = None, buckets: int = 60) -> float:
    """The bucket width: the one asked for (never so small that buckets exceed MAX_BUCKETS),
    else a round width giving about ``buckets`` buckets."""
    floor = span_s / MAX_BUCKETS
    if step not in (None, ""):
        return max(parse_duration(step), floor, 0.001)
    target = span_s / buckets
    return float(next((s for s in NICE_STEPS if s >= target), NICE_STEPS[-1]))


def weighted_quantile(values: Sequence[float], weights: Sequence[float], q: float) -> float | None:
    """The q-quantile of weighted samples (the first value whose cumulative weight reaches q)."""
    if not values:
        return None
    v, w = np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    cum = np.cumsum(w)
    if cum[-1] <= 0:
        return None
    return float(v[min(int(np.searchsorted(cum, q * cum[-1], side="left")), len(v) - 1)])


def agrees(champion: Mapping[str, Any] | None, shadow: Mapping[str, Any] | None) -> bool | None:
    """Whether a shadow answered as the champion did: the same label where there is one, else
    every shared output equal within 1e-6 + 1e-4·|champion| (None when nothing compares)."""
    if not champion or not shadow:
        return None
    if "label" in champion and "label" in shadow:
        return bool(champion["label"] == shadow["label"])
    shared = [k for k in champion if k in shadow]
    if not shared:
        return None
    for key in shared:
        a, b = champion[key], shadow[key]
        try:
            x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        except (TypeError, ValueError):
            if a != b:
                return False
            continue
        if x.shape != y.shape or not np.all(np.abs(x - y) <= 1e-6 + 1e-4 * np.abs(x)):
            return False
    return True


def _bucket(at: float, since: float, step: float, n: int) -> int | None:
    i = int((at - since) // step)
    return i if 0 <= i < n else None


def _windows(store: Store, model: str, since: float, until: float, step: float, n: int) -> list[dict[str, Any]]:
    """The windows that end in [since, until]: every window's counts, and the latency and
    prediction samples of at most SAMPLED_PER_BUCKET windows per version and bucket (evenly
    spread), so a long range costs what a short one does."""
    mw = t.metric_windows
    where = and_(mw.c.model == model, mw.c.end > since, mw.c.end <= until + 1e-6)
    with store.engine.connect() as conn:
        light = [dict(r._mapping) for r in conn.execute(
            select(mw.c.id, mw.c.version, mw.c.end, mw.c.requests, mw.c.errors).where(where).order_by(mw.c.end)).all()]
        groups: dict[tuple[int, int | None], list[dict[str, Any]]] = {}
        for w in light:
            w["latencies"], w["predictions"] = [], []
            groups.setdefault((int(w["version"]), _bucket(w["end"], since, step, n)), []).append(w)
        chosen: dict[int, dict[str, Any]] = {}
        for group in groups.values():
            k = min(len(group), SAMPLED_PER_BUCKET)
            for j in range(k):
                w = group[(j * len(group)) // k]
                chosen[int(w["id"])] = w
        ids = list(chosen)
        for start in range(0, len(ids), 500):
            for r in conn.execute(select(mw.c.id, mw.c.latencies, mw.c.predictions)
                                  .where(mw.c.id.in_(ids[start:start + 500]))).all():
                chosen[int(r.id)]["latencies"] = r.latencies or []
                chosen[int(r.id)]["predictions"] = r.predictions or []
    return light


def _pairs(store: Store, model: str, since: float, until: float) -> list[dict[str, Any]]:
    q = (select(t.shadow_pairs.c.shadow_version, t.shadow_pairs.c.at, t.shadow_pairs.c.champion_output,
                t.shadow_pairs.c.shadow_output, t.shadow_pairs.c.error)
         .where(and_(t.shadow_pairs.c.model == model, t.shadow_pairs.c.at >= since, t.shadow_pairs.c.at <= until))
         .order_by(t.shadow_pairs.c.at.desc()).limit(MAX_PAIRS))
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q).all()]


def window_figures(windows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Counts, error rate, latency quantiles and mean prediction of some metric windows."""
    requests = sum(int(w["requests"]) for w in windows)
    errors = sum(int(w["errors"]) for w in windows)
    lat: list[float] = []
    lat_w: list[float] = []
    pred: list[float] = []
    pred_w: list[float] = []
    for w in windows:
        answered = max(int(w["requests"]) - int(w["errors"]), 0)
        for sample, values, weights in ((w["latencies"] or [], lat, lat_w), (w["predictions"] or [], pred, pred_w)):
            if sample:
                values += sample
                weights += [answered / len(sample)] * len(sample)
    total = sum(pred_w)
    return {
        "requests": float(requests),
        "errors": float(errors),
        "error_rate": errors / requests if requests else None,
        "latency_p50_ms": weighted_quantile(lat, lat_w, 0.5),
        "latency_p99_ms": weighted_quantile(lat, lat_w, 0.99),
        "mean_prediction": float(np.dot(pred, pred_w) / total) if total > 0 else None,
    }


SERIES = ("requests", "errors", "error_rate", "latency_p50_ms", "latency_p99_ms", "mean_prediction")


def _window_series(windows: list[dict[str, Any]], since: float, step: float, n: int) -> dict[str, dict[str, list[Any]]]:
    grouped: dict[int, list[list[dict[str, Any]]]] = {}
    for w in windows:
        i = _bucket(w["end"], since, step, n)
        if i is not None:
            grouped.setdefault(int(w["version"]), [[] for _ in range(n)])[i].append(w)
    out: dict[str, dict[str, list[Any]]] = {}
    for version, buckets in sorted(grouped.items()):
        series: dict[str, list[Any]] = {k: [] for k in (*SERIES, "rps")}
        for ws in buckets:
            figures = window_figures(ws)
            for key in SERIES:
                series[key].append(figures[key])
            series["requests"][-1] = int(figures["requests"] or 0)
            series["errors"][-1] = int(figures["errors"] or 0)
            series["rps"].append((figures["requests"] or 0) / step)
        out[str(version)] = series
    return out


def _online_series(rows: list[dict[str, Any]], since: float, step: float, n: int) -> tuple[str | None, dict[str, dict[str, list[Any]]]]:
    """Per version and bucket: NDCG@10 (a ranker's answers, a list of its items, scored against
    the clicked or relevant items of the feedback; requests with none leave it undefined),
    accuracy (labels), MAE (numbers) or mean reward; and the labelled count."""
    labelled = [r for r in rows if r.get("label") is not None or r.get("reward") is not None]
    if not labelled:
        return None, {}
    is_ranker = any(isinstance((r.get("output") or {}).get("ranking"), list) for r in labelled
                    if r.get("label") is not None)
    is_cls = any(predicted_label(r.get("output")) is not None for r in labelled if r.get("label") is not None)
    has_labels = any(r.get("label") is not None for r in labelled)
    metric = ("ndcg_at_10" if is_ranker else "accuracy" if is_cls else "mae") if has_labels else "mean_reward"
    acc: dict[int, list[list[float]]] = {}
    for r in labelled:
        i = _bucket(r["at"], since, step, n)
        if i is None:
            continue
        value: float | None = None
        if metric == "ndcg_at_10":
            if r.get("label") is not None:
                scores = outcome(r.get("output"), r["label"], None).ranking
                value = scores.get("ndcg_at_10") if scores is not None else None
        elif metric == "accuracy":
            pred = predicted_label(r.get("output"))
            if pred is not None and r.get("label") is not None:
                value = float(str(pred) == str(r["label"]) or pred == r["label"])
        elif metric == "mae":
            pred_n = predicted_number(r.get("output"))
            try:
                value = abs(float(r["label"]) - pred_n) if pred_n is not None and r.get("label") is not None else None
            except (TypeError, ValueError):
                value = None
        elif r.get("reward") is not None:
            value = float(r["reward"])
        if value is not None:
            acc.setdefault(int(r["version"]), [[] for _ in range(n)])[i].append(value)
    out: dict[str, dict[str, list[Any]]] = {
        str(v): {"online": [float(np.mean(b)) if b else None for b in buckets], "labelled": [len(b) for b in buckets]}
        for v, buckets in sorted(acc.items())}
    return metric, out


def timeseries(store: Store, model: str, *, since: float, until: float, step: float,
               label_delay_s: float = 0.0) -> dict[str, Any]:
    """Every chart's figures for ``model`` between ``since`` and ``until``."""
    n = max(1, math.ceil((until - since) / step))
    versions = _window_series(_windows(store, model, since, until, step, n), since, step, n)
    metric, online = _online_series(
        labelled_requests(store, model, since=since, until=until, label_delay=label_delay_s), since, step, n)
    for version, series in online.items():
        base = versions.setdefault(version, {})
        base.update(series)
    shadows: dict[str, dict[str, list[Any]]] = {}
    counts: dict[int, list[list[int]]] = {}
    for pair in _pairs(store, model, since, until):
        i = _bucket(pair["at"], since, step, n)
        if i is None:
            continue
        c = counts.setdefault(int(pair["shadow_version"]), [[0, 0, 0] for _ in range(n)])[i]  # compared, agreed, errors
        if pair["error"] and not str(pair["error"]).startswith("invalid"):
            c[2] += 1
            continue
        same = agrees(pair["champion_output"], pair["shadow_output"])
        if same is not None:
            c[0] += 1
            c[1] += int(same)
    for shadow, buckets in sorted(counts.items()):
        shadows[str(shadow)] = {
            "agreement": [b[1] / b[0] if b[0] else None for b in buckets],
            "compared": [b[0] for b in buckets],
            "errors": [b[2] for b in buckets],
        }
    return {
        "model": model,
        "since": since,
        "until": until,
        "step": step,
        "buckets": [since + i * step for i in range(n)],
        "versions": versions,
        "online_metric": metric,
        "shadows": shadows,
        "generated_at": time.time(),
    }
