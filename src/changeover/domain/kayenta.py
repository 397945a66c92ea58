"""Kayenta-style metric classification: Mann-Whitney U with a Hodges-Lehmann shift interval.

After Spinnaker Kayenta's NetflixACAJudge / MannWhitneyClassifier: drop NaNs and outliers by
the interquartile rule (factor 3), compare canary to baseline by the Mann-Whitney U test, and
call the metric High (or Low) only when the whole confidence interval of the Hodges-Lehmann
shift (canary − baseline) lies beyond the tolerance band, and the mean ratio passes the
effect-size threshold. Fewer than 50 points in either arm is inconclusive, never Pass.

The shift interval is the distribution-free one (Hollander & Wolfe; what R's `wilcox.test`
approximates): with D_(1) ≤ … ≤ D_(nm) the sorted pairwise differences canary_i − baseline_j,
the interval is [D_(k), D_(nm+1−k)] with k = ⌊nm/2 − z_{(1−c)/2}·σ_U⌋, σ_U the tie-corrected
standard deviation of U. When n·m exceeds `max_pairs`, the order statistics are read as
quantiles of a random sample of about `max_pairs` pairs, drawn as whole diagonals of the
n×m table (seeded, so a call is deterministic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import mannwhitneyu, norm

__all__ = [
    "CONFIDENCE",
    "MIN_POINTS",
    "OUTLIER_FACTOR",
    "TOLERANCE",
    "Classification",
    "Direction",
    "MetricResult",
    "ShiftInterval",
    "classify",
    "clean",
    "hodges_lehmann",
    "mean_ratio",
    "remove_outliers",
]

CONFIDENCE = 0.98
OUTLIER_FACTOR = 3.0
MIN_POINTS = 50
TOLERANCE = 0.25
MAX_PAIRS = 250_000  # exact up to 500 × 500

Direction = Literal["increase", "decrease", "either"]


class Classification(StrEnum):
    HIGH = "high"
    LOW = "low"
    PASS = "pass"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class ShiftInterval:
    """Hodges-Lehmann shift canary − baseline with its distribution-free interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    pairs: int  # pairwise differences the figures were read from
    exact: bool  # False when `pairs` is a random sample of all n·m pairs


@dataclass(frozen=True)
class MetricResult:
    classification: Classification
    shift: ShiftInterval | None
    p_value: float | None  # two-sided Mann-Whitney U
    mean_ratio: float | None  # mean(canary)/mean(baseline), Kayenta's effect size
    bound: float | None  # the tolerance the shift interval was held against
    n_canary: int
    n_baseline: int
    reason: str


def remove_outliers(values: ArrayLike, factor: float = OUTLIER_FACTOR) -> NDArray[np.float64]:
    """Keep values within [Q1 − factor·IQR, Q3 + factor·IQR]; NaN and ±inf are dropped."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return x
    q1, q3 = np.percentile(x, [25.0, 75.0])
    iqr = q3 - q1
    return x[(x >= q1 - factor * iqr) & (x <= q3 + factor * iqr)]


def clean(values: ArrayLike | None) -> NDArray[np.float64]:
    """Finite values only, as float64 (no outlier removal)."""
    if values is None:
        return np.empty(0)
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


@lru_cache(maxsize=16)
def _z(confidence: float) -> float:
    return float(norm.ppf(0.5 + confidence / 2.0))


def _sigma_u(canary: NDArray[np.float64], baseline: NDArray[np.float64]) -> float:
    n, m = canary.size, baseline.size
    total = n + m
    _, ties = np.unique(np.concatenate([canary, baseline]), return_counts=True)
    tie_term = float(np.sum(ties.astype(np.float64) ** 3 - ties)) / (total * (total - 1))
    return math.sqrt(n * m / 12.0 * ((total + 1) - tie_term))


def _order_stats(values: NDArray[np.float64], ranks: list[int]) -> dict[int, float]:
    """Values at the given 0-based ranks. Partitions `values` in place, nested around each
    rank (one multi-kth partition is several times slower in NumPy)."""
    if not ranks:
        return {}
    ranks = sorted(set(ranks))
    pivot = ranks[len(ranks) // 2]
    values.partition(pivot)
    out = {pivot: float(values[pivot])}
    out.update(_order_stats(values[:pivot], [r for r in ranks if r < pivot]))
    upper = _order_stats(values[pivot + 1 :], [r - pivot - 1 for r in ranks if r > pivot])
    out.update({r + pivot + 1: v for r, v in upper.items()})
    return out


def hodges_lehmann(
    canary: ArrayLike,
    baseline: ArrayLike,
    confidence: float = CONFIDENCE,
    *,
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> ShiftInterval:
    """Median of pairwise differences canary − baseline, and its order-statistic interval."""
    x, y = clean(canary), clean(baseline)
    n, m = x.size, y.size
    if n == 0 or m == 0:
        raise ValueError("both samples need finite values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    nm = n * m
    z = _z(confidence)
    k = math.floor(nm / 2.0 - z * _sigma_u(x, y))  # 1-based rank of the lower bound
    exact = nm <= max_pairs
    if exact:
        diffs = (x[:, None] - y[None, :]).ravel()
    else:
        # Whole "diagonals" {(i, (i + s) mod m)}: each pair is drawn with the same probability
        # (as in a uniform sample without replacement), every canary point is used equally
        # often, and only the offsets s need random numbers.
        offsets = np.random.default_rng(seed).choice(m, size=max(1, max_pairs // n), replace=False)
        cyclic = np.resize(y, n + m - 1)  # cyclic[s + i] = y[(s + i) mod m]
        table = np.empty((offsets.size, n))
        for row, s in enumerate(offsets):  # contiguous slices: faster than a fancy gather
            np.subtract(x, cyclic[s : s + n], out=table[row])
        diffs = table.ravel()
    size = diffs.size

    def at(rank: int) -> int:  # 0-based rank among all n·m pairs -> rank in `diffs`
        return rank if exact else round(rank / (nm - 1) * (size - 1))

    ranks = [at((nm - 1) // 2), at(nm // 2)]
    if k >= 1:
        ranks += [at(k - 1), at(nm - k)]
    stats = _order_stats(diffs, ranks)
    estimate = (stats[ranks[0]] + stats[ranks[1]]) / 2.0
    if k < 1:  # too few points for this confidence: the interval is unbounded
        return ShiftInterval(estimate, -math.inf, math.inf, confidence, size, exact)
    return ShiftInterval(estimate, stats[ranks[2]], stats[ranks[3]], confidence, size, exact)


def mean_ratio(canary: ArrayLike, baseline: ArrayLike) -> float:
    """mean(canary)/mean(baseline). A zero baseline gives inf (or 1.0 when both are zero),
    where Kayenta returns 1.0 and so never flags a canary against a silent baseline."""
    mc = float(np.mean(np.asarray(canary, dtype=np.float64)))
    mb = float(np.mean(np.asarray(baseline, dtype=np.float64)))
    if mb == 0.0:
        if mc == 0.0:
            return 1.0
        return math.copysign(math.inf, mc)
    return mc / mb


def classify(
    baseline: ArrayLike,
    canary: ArrayLike,
    *,
    direction: Direction = "either",
    tolerance: float = TOLERANCE,
    allowed_shift: float = 0.0,
    confidence: float = CONFIDENCE,
    effect_size: tuple[float, float] = (1.0, 1.0),
    min_points: int = MIN_POINTS,
    outlier_factor: float = OUTLIER_FACTOR,
    seed: int = 0,
) -> MetricResult:
    """Classify canary against baseline as High, Low, Pass or Inconclusive.

    High: the shift interval lies wholly above `bound` = max(tolerance·|estimate|,
    allowed_shift) and mean ratio >= effect_size[1]; Low: wholly below −bound and mean ratio
    <= effect_size[0]. `tolerance` relative to the estimate is Kayenta's own rule;
    `allowed_shift` is an absolute tolerance in the metric's unit (e.g. milliseconds).
    """
    y = remove_outliers(baseline, outlier_factor)
    x = remove_outliers(canary, outlier_factor)
    n, m = x.size, y.size
    if n < min_points or m < min_points:
        return MetricResult(
            Classification.INCONCLUSIVE, None, None, None, None, n, m,
            f"too few points: canary {n}, baseline {m} (need {min_points} each)",
        )
    ratio = mean_ratio(x, y)
    if np.array_equal(np.sort(x), np.sort(y)) or np.unique(np.concatenate([x, y])).size == 1:
        shift = ShiftInterval(0.0, 0.0, 0.0, confidence, n * m, True)
        return MetricResult(
            Classification.PASS, shift, 1.0, ratio, 0.0, n, m, "canary and baseline identical"
        )
    shift = hodges_lehmann(x, y, confidence, seed=seed)
    p_value = float(mannwhitneyu(x, y, alternative="two-sided").pvalue)
    bound = max(tolerance * abs(shift.estimate), allowed_shift)
    high = direction in ("increase", "either") and shift.low > bound and ratio >= effect_size[1]
    low = direction in ("decrease", "either") and shift.high < -bound and ratio <= effect_size[0]
    figures = (
        f"shift {shift.estimate:.4g} [{shift.low:.4g}, {shift.high:.4g}] at "
        f"{confidence:.0%}, tolerance ±{bound:.4g}, mean ratio {ratio:.3g}"
    )
    if high:
        label, verdict = Classification.HIGH, "canary high"
    elif low:
        label, verdict = Classification.LOW, "canary low"
    else:
        label, verdict = Classification.PASS, "within tolerance"
    return MetricResult(label, shift, p_value, ratio, bound, n, m, f"{verdict}: {figures}")
