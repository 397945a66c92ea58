"""Drift of served traffic: each version's reference profile, and the latest window of its
recorded requests (inputs) and metric windows (predictions) tested against it.

Tensors become profile columns by one rule, used both when a profile is built and when
traffic is tested: a tensor ``x`` of shape ``[n]`` or ``[n, 1]`` is the column ``x``; a tensor
of shape ``[n, k]`` (or more dimensions, flattened per row) is the columns ``x[0]`` … ``x[k-1]``,
at most ``MAX_TENSOR_COLUMNS`` of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import and_, select

from changeover.domain.drift import PREDICTION, build_profile, drift_report
from changeover.domain.signature import Signature
from changeover.store import tables as t
from changeover.store.store import Store, VersionRecord

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MAX_RECORDED_ROWS",
    "MAX_TENSOR_COLUMNS",
    "current_drift",
    "drift_history",
    "expected_columns",
    "recorded_columns",
    "set_reference_profile",
    "tensor_columns",
]

MAX_TENSOR_COLUMNS = 64
MAX_RECORDED_ROWS = 5000  # the newest recorded requests a drift report reads
MAX_WINDOWS = 200  # the newest metric windows whose prediction samples a drift report reads


def tensor_columns(name: str, array: Any) -> dict[str, NDArray[Any]]:
    """One tensor as profile columns (the rule in the module docstring)."""
    a = np.asarray(array)
    if a.ndim == 0:
        return {name: a.reshape(1)}
    if a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1):
        return {name: a.reshape(-1)}
    flat = a.reshape(a.shape[0], -1)
    return {f"{name}[{j}]": flat[:, j] for j in range(min(flat.shape[1], MAX_TENSOR_COLUMNS))}


def expected_columns(signature: Signature) -> list[str]:
    """The profile columns a version's inputs make, from its signature."""
    out: list[str] = []
    for spec in signature.inputs:
        inner = [d for d in spec.shape[1:]] if len(spec.shape) > 1 else []
        width = math.prod(inner) if inner and all(d > 0 for d in inner) else None
        if not inner or width == 1:
            out.append(spec.name)
        elif width is not None:
            out += [f"{spec.name}[{j}]" for j in range(min(width, MAX_TENSOR_COLUMNS))]
    return out


def _as_columns(data: pd.DataFrame | Mapping[str, Any], signature: Signature | None) -> tuple[dict[str, Any], dict[str, str]]:
    """Columns named by the tensor rule, and the original feature names when they were renamed."""
    if isinstance(data, Mapping):
        columns: dict[str, Any] = {}
        for name, values in data.items():
            columns.update(tensor_columns(str(name), values))
    else:
        columns = {str(c): data[c].to_numpy() for c in data.columns}
    if signature is None:
        return columns, {}
    wanted = expected_columns(signature)
    if not wanted or set(wanted) <= set(columns) or len(columns) != len(wanted):
        return columns, {}
    # a feature table (named columns) for a tensor input: the columns are the tensor's, in order
    renamed = dict(zip(wanted, columns.values(), strict=True))
    return renamed, dict(zip(wanted, columns.keys(), strict=True))


def set_reference_profile(
    store: Store,
    model: str,
    version: int | str,
    data: pd.DataFrame | Mapping[str, Any],
    predictions: Any = None,
    *,
    max_sample: int = 2000,
    source: str | None = None,
) -> dict[str, Any]:
    """Build the reference profile of ``data`` (a feature table, or tensors by input name) and
    ``predictions`` (one number per row, as the gateway summarises an answer: the positive-class
    probability of a binary classifier, else the first output), and keep it on the version.

    A mapping that is already a profile (``build_profile``'s shape) is stored as it is.
    Feature tables whose column names differ from the version's inputs are mapped onto them
    in order when the counts match (``feature_names`` keeps the original names).
    """
    record = store.resolve(model, version)
    if isinstance(data, Mapping) and "columns" in data and "version" in data:
        profile = dict(data)
    else:
        columns, names = _as_columns(data, record.signature)
        preds = None if predictions is None else np.asarray(predictions, dtype=np.float64).reshape(-1)
        profile = build_profile(columns, preds, max_sample=max_sample)
        if names:
            profile["feature_names"] = names
    profile["created_at"] = time.time()
    if source is not None:
        profile["source"] = source
    store.set_version_field(model, record.number, profile=profile)
    store.add_event("profile", f"reference profile of {model} v{record.number}: {len(profile['columns'])} columns"
                    + (", with predictions" if profile.get("prediction") else ""), model=model,
                    evidence={"version": record.number, "rows": profile.get("n_rows"), "source": source})
    return profile


def _decode(tensor: Mapping[str, Any]) -> NDArray[Any] | None:
    try:
        data = tensor["data"]
        shape = [int(d) for d in tensor.get("shape") or [len(data)]]
        if str(tensor.get("datatype", "")).upper() == "BYTES":
            return np.asarray(data, dtype=object).reshape(shape)
        return np.asarray([math.nan if v is None else v for v in data], dtype=np.float64).reshape(shape)
    except (KeyError, TypeError, ValueError):
        return None  # a row the gateway recorded oddly is left out, not a failure of the report


def recorded_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, NDArray[Any]]:
    """Recorded requests' inputs (lists of v2 tensors) as profile columns, rows stacked."""
    parts: dict[str, list[NDArray[Any]]] = {}
    for row in rows:
        for tensor in row.get("inputs") or []:
            if not isinstance(tensor, Mapping) or not isinstance(tensor.get("name"), str):
                continue
            array = _decode(tensor)
            if array is None:
                continue
            for column, values in tensor_columns(tensor["name"], array).items():
                parts.setdefault(column, []).append(values)
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def _recorded_rows(store: Store, model: str, version: int, since: float, until: float) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(t.requests.c.inputs, t.requests.c.at)
            .where(and_(t.requests.c.model == model, t.requests.c.version == version,
                        t.requests.c.recorded.is_(True), t.requests.c.at >= since, t.requests.c.at <= until))
            .order_by(t.requests.c.at.desc())
            .limit(MAX_RECORDED_ROWS)
        ).all()
    return [dict(r._mapping) for r in rows]


def _prediction_windows(store: Store, model: str, version: int, since: float, until: float) -> list[dict[str, Any]]:
    """The newest MAX_WINDOWS windows' prediction samples (bounded: a window holds up to 2,000)."""
    mw = t.metric_windows
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(mw.c.end, mw.c.predictions)
            .where(and_(mw.c.model == model, mw.c.version == version, mw.c.end > since, mw.c.end <= until))
            .order_by(mw.c.end.desc()).limit(MAX_WINDOWS)
        ).all()
    return [dict(r._mapping) for r in rows]


def _predictions(store: Store, model: str, version: int, since: float, until: float) -> list[float]:
    return [p for w in _prediction_windows(store, model, version, since, until) for p in (w["predictions"] or [])]


def current_drift(
    store: Store,
    record: VersionRecord,
    *,
    window_s: float,
    now: float | None = None,
    alpha: float = 0.05,
    correction: str = "bonferroni",
) -> dict[str, Any]:
    """The drift report of one version over the last ``window_s`` seconds, JSON-safe.

    Without a reference profile the answer says so (``available`` false, and a ``reason``).
    """
    now = time.time() if now is None else now
    since = now - window_s
    base: dict[str, Any] = {"model": record.model, "version": record.number, "since": since, "until": now,
                            "window_s": window_s}
    profile = record.profile
    if not profile:
        return base | {"available": False, "columns": [], "drifted_any": False, "drift_share": None,
                       "reason": f"{record.model} v{record.number} has no reference profile: set one with "
                                 "set_reference_profile (from the data it was validated on)"}
    rows = _recorded_rows(store, record.model, record.number, since, now)
    current = recorded_columns(rows)
    predictions = _predictions(store, record.model, record.number, since, now)
    report = drift_report(dict(profile), current, np.asarray(predictions, dtype=np.float64) if predictions else None,
                          alpha=alpha, correction=correction)  # type: ignore[arg-type]
    out = report.to_dict()
    names = profile.get("feature_names") or {}
    tested = [c for c in out["columns"] if c["test"] != "no_data" and c["name"] != PREDICTION]
    prediction = next((c for c in out["columns"] if c["name"] == PREDICTION), None)
    for c in out["columns"]:
        c["feature"] = names.get(c["name"], c["name"])
    reason = None
    if not rows:
        reason = "no recorded requests in the window (the gateway records a sample of requests: record_rate)"
    elif not tested:
        reason = "the recorded requests carry none of the profile's columns"
    return base | out | {
        "available": True,
        "n_requests": len(rows),
        "n_predictions": len(predictions),
        "drifted_columns": sum(1 for c in tested if c["drifted"]),
        "drift_share": (sum(1 for c in tested if c["drifted"]) / len(tested)) if tested else None,
        "prediction": prediction,
        "reason": reason,
    }


def drift_history(
    store: Store, record: VersionRecord, *, since: float, until: float, step: float, alpha: float = 0.05
) -> dict[str, Any]:
    """Drift per time bucket (for charts): the share of drifted columns, and the prediction
    column's statistic, each bucket tested on its own against the reference."""
    starts = list(np.arange(since, until, step)) if step > 0 else []
    out: dict[str, Any] = {"model": record.model, "version": record.number, "since": since, "until": until,
                           "step": step, "buckets": [float(s) for s in starts], "drift_share": [],
                           "prediction_statistic": [], "prediction_drifted": []}
    if not record.profile:
        return out | {"available": False, "reason": f"{record.model} v{record.number} has no reference profile"}
    rows = _recorded_rows(store, record.model, record.number, since, until)
    windows = _prediction_windows(store, record.model, record.number, since, until)
    for start in starts:
        end = start + step
        bucket_rows = [r for r in rows if start <= r["at"] < end]
        preds = [p for w in windows if start <= w["end"] < end for p in (w["predictions"] or [])]
        if not bucket_rows and not preds:
            out["drift_share"].append(None)
            out["prediction_statistic"].append(None)
            out["prediction_drifted"].append(None)
            continue
        report = drift_report(dict(record.profile), recorded_columns(bucket_rows),
                              np.asarray(preds, dtype=np.float64) if preds else None, alpha=alpha)
        tested = [c for c in report.columns if c.test != "no_data" and c.name != PREDICTION]
        out["drift_share"].append(sum(c.drifted for c in tested) / len(tested) if tested else None)
        pred = next((c for c in report.columns if c.name == PREDICTION and c.test != "no_data"), None)
        out["prediction_statistic"].append(pred.statistic if pred else None)
        out["prediction_drifted"].append(pred.drifted if pred else None)
    return out | {"available": True}
