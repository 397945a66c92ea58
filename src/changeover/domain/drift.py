"""Drift: a JSON-safe reference profile per column, and the tests that compare a window to it.

The test follows Evidently's defaults. With at most 1,000 reference rows: Kolmogorov-Smirnov
for numbers, chi-squared (homogeneity, reference counts against current counts) for
categories, a two-proportion z-test for binary columns; their p-values are corrected across
the columns of one report (Bonferroni, or Benjamini-Hochberg "fdr"). Above 1,000 rows, where a
p-value flags any difference however small: Wasserstein distance divided by the reference
standard deviation for numbers, Jensen-Shannon distance (natural log) for categories, each
against 0.1.

PSI is reported beside the test, never as the decision, and never against a fixed 0.1: with
no drift, PSI ≈ (1/n + 1/m)·χ²_{B−1} (n current, m reference rows, B bins), so its threshold
is (1/n + 1/m)·χ²_{B−1}(1 − alpha). Counts get +0.5 per bin so an empty bin stays finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2, chi2_contingency, ks_2samp, norm, wasserstein_distance

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DISTANCE_THRESHOLD",
    "PREDICTION",
    "SMALL_REFERENCE",
    "ColumnDrift",
    "DriftReport",
    "build_profile",
    "drift_report",
    "psi",
    "psi_threshold",
]

PROFILE_VERSION = 1
SMALL_REFERENCE = 1000  # at most this many reference rows: p-value tests
DISTANCE_THRESHOLD = 0.1  # Wasserstein / std and Jensen-Shannon distance, above SMALL_REFERENCE
BINS = 10
MAX_CATEGORIES = 50
OTHER = "__other__"
PREDICTION = "prediction"

Correction = Literal["bonferroni", "fdr"]


def _columns(frame: pd.DataFrame | Mapping[str, Any] | None) -> dict[str, NDArray[Any]]:
    if frame is None:
        return {}
    if isinstance(frame, Mapping):
        return {str(k): np.asarray(v) for k, v in frame.items()}
    return {str(c): frame[c].to_numpy() for c in frame.columns}


def _is_numeric(values: NDArray[Any]) -> bool:
    if values.dtype.kind == "b" or values.dtype.kind not in "iuf":
        return False
    finite = values[np.isfinite(values.astype(np.float64))]
    # an integer column with two values or fewer is a flag: treat it as categorical (binary)
    return not (values.dtype.kind in "iu" and np.unique(finite).size <= 2)


def _numeric(values: NDArray[Any]) -> NDArray[np.float64]:
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def _categories(values: NDArray[Any]) -> list[str]:
    out = []
    for v in np.asarray(values, dtype=object).ravel():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out.append(str(v.item() if isinstance(v, np.generic) else v))
    return out


def _profile_column(values: NDArray[Any], max_sample: int, rng: np.random.Generator) -> dict:
    values = np.asarray(values).ravel()
    if _is_numeric(values):
        x = _numeric(values)
        sample = x if x.size <= max_sample else rng.choice(x, max_sample, replace=False)
        edges: NDArray[np.float64] = (
            np.unique(np.quantile(x, np.linspace(0, 1, BINS + 1)[1:-1])) if x.size else np.empty(0)
        )
        counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
        return {
            "kind": "numeric",
            "n": int(x.size),
            "missing": int(values.size - x.size),
            "mean": float(np.mean(x)) if x.size else None,
            "std": float(np.std(x, ddof=1)) if x.size > 1 else None,
            "sample": [float(v) for v in sample],
            "bin_edges": [float(e) for e in edges],  # inner cut points; outer bins are open
            "counts": [int(c) for c in counts],
        }
    cats = _categories(values)
    uniq, counts = np.unique(np.asarray(cats, dtype=object).astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    kept = {str(uniq[i]): int(counts[i]) for i in order[:MAX_CATEGORIES]}
    rest = int(counts[order[MAX_CATEGORIES:]].sum())
    if rest:
        kept[OTHER] = kept.get(OTHER, 0) + rest
    return {
        "kind": "categorical",
        "n": len(cats),
        "missing": int(values.size - len(cats)),
        "frequencies": kept,
    }


def build_profile(
    frame: pd.DataFrame | Mapping[str, NDArray[Any]],
    predictions: NDArray[Any] | None = None,
    max_sample: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The reference profile of a frame (and of predictions): JSON-safe, bounded in size."""
    rng = np.random.default_rng(seed)
    columns = _columns(frame)
    return {
        "version": PROFILE_VERSION,
        "n_rows": max((len(v) for v in columns.values()), default=0),
        "columns": {name: _profile_column(v, max_sample, rng) for name, v in columns.items()},
        PREDICTION: None if predictions is None else _profile_column(
            np.asarray(predictions).ravel(), max_sample, rng
        ),
    }


@dataclass(frozen=True)
class ColumnDrift:
    name: str
    kind: str  # "numeric" | "categorical"
    test: str  # "ks" | "chi2" | "z" | "wasserstein" | "jensen_shannon" | "no_data"
    statistic: float | None
    p_value: float | None  # None for the distance tests
    threshold: float  # corrected alpha for p-value tests, distance limit otherwise
    drifted: bool
    psi: float | None
    psi_threshold: float | None
    psi_exceeds: bool
    n_reference: int
    n_current: int


def _safe(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


@dataclass(frozen=True)
class DriftReport:
    columns: tuple[ColumnDrift, ...]
    alpha: float
    correction: str

    @property
    def drifted_any(self) -> bool:
        return any(c.drifted for c in self.columns)

    def column(self, name: str) -> ColumnDrift:
        return next(c for c in self.columns if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted_any": self.drifted_any,
            "alpha": self.alpha,
            "correction": self.correction,
            "columns": [{k: _safe(v) for k, v in asdict(c).items()} for c in self.columns],
        }


def psi(reference_counts: ArrayLike, current_counts: ArrayLike) -> float:
    """Population stability index over matching bins, with +0.5 per bin."""
    ref = np.asarray(reference_counts, dtype=np.float64) + 0.5
    cur = np.asarray(current_counts, dtype=np.float64) + 0.5
    p, q = cur / cur.sum(), ref / ref.sum()
    return float(np.sum((p - q) * np.log(p / q)))


def psi_threshold(n_reference: int, n_current: int, bins: int, alpha: float = 0.05) -> float:
    """PSI's no-drift (1 − alpha) quantile: (1/n + 1/m)·χ²_{B−1}(1 − alpha)."""
    if bins < 2:
        return math.inf
    return (1.0 / n_reference + 1.0 / n_current) * float(chi2.ppf(1.0 - alpha, bins - 1))


@dataclass
class _Raw:  # one column's figures before the correction across columns
    name: str
    kind: str
    test: str
    statistic: float | None
    p_value: float | None
    distance_drift: bool | None  # decided already (distance tests); None for p-value tests
    psi: float | None
    psi_threshold: float | None
    n_reference: int
    n_current: int


def _binned(profile: dict, current: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    """Reference and current counts over the profile's bins (categories, unseen -> other)."""
    if profile["kind"] == "numeric":
        edges = np.asarray(profile["bin_edges"], dtype=np.float64)
        ref = np.asarray(profile["counts"])
        cur = np.bincount(np.searchsorted(edges, current, side="right"), minlength=ref.size)
        return ref, cur
    freqs: dict[str, int] = profile["frequencies"]
    names = list(freqs) + ([OTHER] if OTHER not in freqs else [])
    index = {name: i for i, name in enumerate(names)}
    cur = np.zeros(len(names), dtype=np.int64)
    for value in current:
        cur[index.get(value, index[OTHER])] += 1
    ref = np.asarray([freqs.get(name, 0) for name in names])
    return ref, cur


def _test_column(name: str, profile: dict, values: NDArray[Any], alpha: float) -> _Raw:
    kind = profile["kind"]
    current: NDArray[Any] = (
        _numeric(values) if kind == "numeric" else np.asarray(_categories(values), dtype=object)
    )
    n_ref, n_cur = int(profile["n"]), int(current.size)
    if n_ref == 0 or n_cur == 0:
        return _Raw(name, kind, "no_data", None, None, False, None, None, n_ref, n_cur)
    ref_counts, cur_counts = _binned(profile, current)
    used = (ref_counts + cur_counts) > 0
    bins = int(used.sum())
    psi_value = psi(ref_counts[used], cur_counts[used])
    psi_limit = psi_threshold(n_ref, n_cur, bins, alpha)
    small = n_ref <= SMALL_REFERENCE
    if kind == "numeric":
        sample = np.asarray(profile["sample"], dtype=np.float64)
        if small:
            res = ks_2samp(sample, current)
            return _Raw(name, kind, "ks", float(res.statistic), float(res.pvalue), None,
                        psi_value, psi_limit, n_ref, n_cur)
        std = profile["std"] or 0.0
        distance = wasserstein_distance(sample, current) / (std if std > 0 else 1.0)
        return _Raw(name, kind, "wasserstein", float(distance), None,
                    distance >= DISTANCE_THRESHOLD, psi_value, psi_limit, n_ref, n_cur)
    if not small:
        distance = float(jensenshannon(ref_counts / ref_counts.sum(), cur_counts / n_cur))
        return _Raw(name, kind, "jensen_shannon", distance, None,
                    distance >= DISTANCE_THRESHOLD, psi_value, psi_limit, n_ref, n_cur)
    if bins <= 1:  # a single category on both sides: nothing to test
        return _Raw(name, kind, "chi2", 0.0, 1.0, None, psi_value, psi_limit, n_ref, n_cur)
    if bins == 2:
        a, b = ref_counts[used][0], cur_counts[used][0]
        pooled = (a + b) / (n_ref + n_cur)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cur))
        z = (b / n_cur - a / n_ref) / se
        return _Raw(name, kind, "z", float(z), float(2 * norm.sf(abs(z))), None,
                    psi_value, psi_limit, n_ref, n_cur)
    table = np.vstack([ref_counts[used], cur_counts[used]])
    res = chi2_contingency(table, correction=False)
    return _Raw(name, kind, "chi2", float(res.statistic), float(res.pvalue), None,
                psi_value, psi_limit, n_ref, n_cur)


def _cutoff(p_values: list[float], alpha: float, correction: Correction) -> float:
    """p-values at or below the returned cutoff are rejected (drifted): alpha/k for
    Bonferroni; for Benjamini-Hochberg the largest p_(i) <= i·alpha/k (below all when none)."""
    k = len(p_values)
    if k == 0:
        return alpha
    if correction == "bonferroni":
        return alpha / k
    if correction == "fdr":  # Benjamini-Hochberg: largest p_(i) <= i·alpha/k
        ordered = sorted(p_values)
        passing = [p for i, p in enumerate(ordered, start=1) if p <= i * alpha / k]
        return max(passing) if passing else 0.0
    raise ValueError(f"unknown correction {correction!r}; use 'bonferroni' or 'fdr'")


def drift_report(
    profile: dict[str, Any],
    current: pd.DataFrame | Mapping[str, NDArray[Any]] | None,
    predictions: NDArray[Any] | None = None,
    alpha: float = 0.05,
    correction: Correction = "bonferroni",
) -> DriftReport:
    """Compare a current window with a reference profile, column by column."""
    if correction not in ("bonferroni", "fdr"):
        raise ValueError(f"unknown correction {correction!r}; use 'bonferroni' or 'fdr'")
    columns = _columns(current)
    raws: list[_Raw] = []
    for name, col_profile in profile["columns"].items():
        if name not in columns:
            raws.append(_Raw(name, col_profile["kind"], "no_data", None, None, False,
                             None, None, int(col_profile["n"]), 0))
            continue
        raws.append(_test_column(name, col_profile, columns[name], alpha))
    if profile.get(PREDICTION) is not None and predictions is not None:
        raws.append(_test_column(PREDICTION, profile[PREDICTION], np.asarray(predictions), alpha))
    p_values = [r.p_value for r in raws if r.p_value is not None and r.distance_drift is None]
    cutoff = _cutoff(p_values, alpha, correction)
    out = []
    for r in raws:
        if r.test == "no_data":
            drifted, threshold = False, math.nan
        elif r.distance_drift is not None:
            drifted, threshold = r.distance_drift, DISTANCE_THRESHOLD
        else:
            assert r.p_value is not None
            drifted, threshold = r.p_value <= cutoff, cutoff
        psi_exceeds = r.psi is not None and r.psi_threshold is not None and r.psi > r.psi_threshold
        out.append(ColumnDrift(
            r.name, r.kind, r.test, r.statistic, r.p_value, threshold, bool(drifted),
            r.psi, r.psi_threshold, bool(psi_exceeds), r.n_reference, r.n_current,
        ))
    return DriftReport(tuple(out), alpha, correction)
