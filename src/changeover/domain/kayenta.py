"""Kayenta-style metric classification: Mann-Whitney U with a Hodges-Lehmann shift interval.

After Spinnaker Kayenta's NetflixACAJudge / MannWhitneyClassifier: drop NaNs and outliers by
the interquartile rule (factor 3), compare canary to baseline by the Mann-Whitney U test, and
call the metric High (or Low) only when the whole confidence interval of the Hodges-Lehmann
shift (canary − baseline) lies beyond the tolerance band, and the mean ratio passes the
effect-size threshold. Fewer than 50 points in either arm is inconclusive, never Pass.

The shift interval is the distribution-free one (Hollander & Wolfe; what R's `wilcox.test`
approximates): with D_(1) ≤ … ≤ D_(nm) the sorted pairwise differences canary_i − baseline_j,
the interval is [D_(k), D_(nm+1−k)] with k = ⌊nm/2 − z_{(1−c)/2}·σ_U⌋, σ_U the tie-corrected
standard deviation of U.

The estimate (the median: the mean of the middle two when n·m is even) and both bounds are
exact order statistics of the n·m differences, for any input order and any size, found
without forming the n×m table (selection in a sorted matrix, after Johnson & Mizoguchi 1978
and Monahan 1984). With x = sorted(canary) and yd = sorted(−baseline), the table x_i + yd_j
(the same floats as canary_i − baseline_j) is sorted along every row and column, so the
number of differences below a value is one `searchsorted` per row. Each selection round
samples the remaining candidate pairs, takes two sample quantiles either side of the wanted
rank as pivots, counts the table against them and keeps each row's columns in between; once
at most `max_pairs` candidates remain they are formed and partitioned. O((n + m) log(n + m))
per round and, expected, a handful of rounds per order statistic: about 0.3 s for
n = m = 100,000. The random pivots (seeded) affect only the running time, never the result.
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
MAX_PAIRS = 250_000  # most pairwise differences held in memory at once (all up to 500 × 500)

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
    pairs: int  # pairwise differences the figures are order statistics of: n·m
    exact: bool  # always True: exact order statistics, never a sample of the pairs


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


_SAMPLE = 32_768  # candidate pairs sampled per selection round to place the two pivots


def _count(
    x: NDArray[np.float64], yd: NDArray[np.float64], p: float, *, strict: bool
) -> NDArray[np.int64]:
    """Per row i, the number of j with x_i + yd_j < p (strict) or <= p, as computed in floats.

    Row i of the implicit table x_i + yd_j is sorted (yd is), so the count is the length of a
    prefix. `searchsorted` on the rounded `p − x_i` finds it in O(n log m); rows where the
    rounding put the boundary off by some places are then settled by bisection on the
    differences themselves, so the count agrees exactly with the table `x[:, None] + yd`.
    """
    m = yd.size

    def inside(d: NDArray[np.float64]) -> NDArray[np.bool_]:
        return d < p if strict else d <= p

    c = np.searchsorted(yd, p - x, side="left" if strict else "right").astype(np.int64)
    last_in = x + yd[np.maximum(c - 1, 0)]
    first_out = x + yd[np.minimum(c, m - 1)]
    bad = ((c > 0) & ~inside(last_in)) | ((c < m) & inside(first_out))
    rows = np.flatnonzero(bad)
    if rows.size:
        lo, hi, xr = np.zeros(rows.size, np.int64), np.full(rows.size, m, np.int64), x[rows]
        while np.any(lo < hi):  # count in [lo, hi]; at most ⌈log2(m + 1)⌉ rounds
            mid = (lo + hi) // 2
            step = (mid < hi) & inside(xr + yd[np.minimum(mid, m - 1)])
            lo = np.where(step, mid + 1, lo)
            hi = np.where(step | (mid >= hi), hi, mid)
        c[rows] = lo
    return c


def _select(
    x: NDArray[np.float64],
    yd: NDArray[np.float64],
    rank: int,
    budget: int,
    rng: np.random.Generator,
) -> float:
    """The value at 0-based `rank` among all n·m sums x_i + yd_j (x, yd sorted ascending).

    Selection on the implicit sorted table: row i keeps the candidate columns [lo_i, hi_i).
    Each round samples candidates uniformly, takes two sample quantiles just either side of
    the target as pivots (Floyd & Rivest), counts the table below and at each pivot (exact,
    O(n log m)), and keeps only the columns between them; every round drops at least the
    pivots' own values, so ties cannot stall it. When at most `budget` candidates remain
    they are formed and partitioned.
    """
    n, m = x.size, yd.size
    lo, hi = np.zeros(n, np.int64), np.full(n, m, np.int64)
    while True:
        width = hi - lo
        cum = np.cumsum(width)
        total = int(cum[-1])
        target = rank - int(lo.sum())  # rank among the candidates
        if total <= budget:
            rows = np.repeat(np.arange(n), width)
            cols = np.arange(total) - np.repeat(cum - width, width) + lo[rows]
            values = x[rows] + yd[cols]
            return float(np.partition(values, target)[target])
        s = min(_SAMPLE, total)
        u = rng.integers(0, total, size=s)
        rows = np.searchsorted(cum, u, side="right")
        sample = x[rows] + yd[lo[rows] + u - (cum[rows] - width[rows])]
        q = target / total
        centre, spread = q * s, 3.0 * math.sqrt(s * q * (1.0 - q)) + 1.0
        picks = sorted({i for i in (math.floor(centre - spread), math.ceil(centre + spread))
                        if 0 <= i < s}) or [min(max(round(centre), 0), s - 1)]
        sample.partition(picks)
        pivots = dict.fromkeys(float(sample[i]) for i in picks)  # ascending, no repeats
        new_lo = lo
        for p in pivots:
            below = np.clip(_count(x, yd, p, strict=True), lo, hi)
            if rank < int(below.sum()):
                hi = below
                break
            upto = below.copy()  # more only in rows whose next candidate equals p
            tied = np.flatnonzero(below < hi)
            tied = tied[x[tied] + yd[below[tied]] == p]
            upto[tied] = np.clip(_count(x[tied], yd, p, strict=False), lo[tied], hi[tied])
            if rank < int(upto.sum()):
                return p
            new_lo = upto
        lo = new_lo


def hodges_lehmann(
    canary: ArrayLike,
    baseline: ArrayLike,
    confidence: float = CONFIDENCE,
    *,
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> ShiftInterval:
    """Median of pairwise differences canary − baseline, and its order-statistic interval.

    Exact for any input order and size: the order statistics are selected from the implicit
    sorted n×m table of differences, never sampled. `max_pairs` bounds how many differences
    are held in memory at once (all of them when n·m <= max_pairs); `seed` only drives the
    pivot sampling inside the selection, which changes the running time, never the result.
    """
    x, y = clean(canary), clean(baseline)
    n, m = x.size, y.size
    if n == 0 or m == 0:
        raise ValueError("both samples need finite values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    nm = n * m
    z = _z(confidence)
    k = math.floor(nm / 2.0 - z * _sigma_u(x, y))  # 1-based rank of the lower bound
    # canary_i − baseline_j = x_i + yd_j with yd = sorted(−y): the same floats as x_i − y_j,
    # and a table sorted along both rows and columns.
    x, yd = np.sort(x), np.sort(-y)
    budget = max(int(max_pairs), 1)
    rng = np.random.default_rng(seed)

    def at(rank: int) -> float:
        return _select(x, yd, rank, budget, rng)

    mid = (nm - 1) // 2
    lower_median = at(mid)
    if nm % 2:
        estimate = lower_median
    else:  # the next value up: the same if tied, else the least difference above it
        upto = _count(x, yd, lower_median, strict=False)
        if int(upto.sum()) > mid + 1:
            upper_median = lower_median
        else:
            open_rows = upto < m
            upper_median = float(np.min(x[open_rows] + yd[upto[open_rows]]))
        estimate = (lower_median + upper_median) / 2.0
    if k < 1:  # too few points for this confidence: the interval is unbounded
        return ShiftInterval(estimate, -math.inf, math.inf, confidence, nm, True)
    return ShiftInterval(estimate, at(k - 1), at(nm - k), confidence, nm, True)


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
