"""The canary judge: canary against baseline (the champion over the same windows).

Four checks, each "pass", "fail" or "inconclusive"; any fail fails the analysis, otherwise any
inconclusive makes it inconclusive, otherwise it passes (also when no check is configured).

- error_rate, label_accuracy: the always-valid mSPRT interval (see `sequential`) of the harm,
  canary − baseline error rate or baseline − canary accuracy, at level alpha:
  fail when it lies wholly above the allowed change (at any sample size; issue 377: a baseline
  with 0 errors has a floored variance, nothing divides by zero, nothing is NaN);
  pass when it lies wholly below it; below the minimum samples, inconclusive; otherwise
  inconclusive when a single fixed-horizon look would call it worse beyond tolerance
  (one-sided z at alpha: suggestive, not yet conclusive), and pass when it would not ("not
  significantly worse"). So a good candidate passes once samples suffice (held at a look only
  with probability <= alpha), a bad one is held while the evidence builds and fails once the
  always-valid interval clears the tolerance, and only the always-valid interval ever fails.
  The mixing variance τ is tuned at 2 × the minimum samples (a horizon fixed in advance, so
  the interval stays valid however often it is consulted).
- latency: Kayenta's Mann-Whitney / Hodges-Lehmann classification (98%, IQR factor 3) with an
  absolute tolerance of (max_ratio − 1) × the baseline median, AND a distribution-free interval
  on the p99 ratio (order statistics, 98% jointly). Either confident breach fails; otherwise
  it passes when the shift estimate is within the tolerance (a p99 point estimate from a few
  hundred samples is too noisy to hold a rollout on) and is inconclusive when it leans slower.
  Not always-valid: the tolerance keeps repeated looks from adding up (see the simulation).
- prediction_distribution: two-sample KS per prediction column at alpha / columns (Bonferroni).
  Advisory: a new model is expected to predict differently, so a significant shift of at least
  KS_MIN_STATISTIC is reported in the reason ("predictions shifted") for a person to read, and
  the check still passes; it is inconclusive only when its samples are too few or mismatched.
  Left out when either arm has no prediction sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import binom, ks_2samp, norm

from changeover.domain import kayenta
from changeover.domain.sequential import Interval, proportion_interval, proportion_variances

__all__ = [
    "FAIL",
    "INCONCLUSIVE",
    "PASS",
    "Analysis",
    "ArmSample",
    "Check",
    "JudgeConfig",
    "combine",
    "error_rate_check",
    "judge",
    "label_accuracy_check",
    "latency_check",
    "prediction_check",
]

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
LATENCY_QUANTILE = 0.99
HORIZON_FACTOR = 2  # τ is tuned at this many times the per-arm minimum, over both arms
KS_MIN_STATISTIC = 0.1  # smallest KS distance reported as a shift


@dataclass(frozen=True)
class ArmSample:
    """One arm (baseline = champion, or canary) over the same time window(s)."""

    requests: int
    errors: int
    latencies_ms: np.ndarray
    labelled: int = 0
    correct: int = 0
    predictions: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.errors <= self.requests:
            raise ValueError(f"need 0 <= errors <= requests, got {self.errors}/{self.requests}")
        if not 0 <= self.correct <= self.labelled:
            raise ValueError(f"need 0 <= correct <= labelled, got {self.correct}/{self.labelled}")


@dataclass(frozen=True)
class JudgeConfig:
    """The rollout spec's canary.judge; a None threshold turns its check off."""

    error_rate_max_increase: float | None = 0.002
    latency_p99_max_ratio: float | None = 1.2
    label_accuracy_max_decrease: float | None = 0.0
    prediction_distribution: bool = True
    alpha: float = 0.05
    min_requests: int = 100
    min_latency_samples: int = 50
    min_labels: int = 100


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class Check:
    name: str
    outcome: str
    estimate: float | None
    low: float | None
    high: float | None
    n_canary: int
    n_baseline: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: non-finite figures become None."""
        out = asdict(self)
        for key in ("estimate", "low", "high"):
            out[key] = _finite(out[key])
        return out


@dataclass(frozen=True)
class Analysis:
    outcome: str
    checks: tuple[Check, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "checks": [c.to_dict() for c in self.checks]}


def combine(checks: tuple[Check, ...] | list[Check]) -> str:
    outcomes = {c.outcome for c in checks}
    if FAIL in outcomes:
        return FAIL
    if INCONCLUSIVE in outcomes:
        return INCONCLUSIVE
    return PASS


def _pts(x: float) -> str:
    return f"{100 * x:+.2f} pts"


def _sequential_verdict(
    harm: Interval, se: float, tolerance: float, enough: bool, alpha: float
) -> tuple[str, str]:
    """Decide on an interval oriented so that larger is worse; `se` is the plain standard
    error of the estimate, for the single-look test that separates hold from pass."""
    if harm.above(tolerance):
        return FAIL, "worse beyond tolerance"
    if harm.below(tolerance):
        return PASS, "shown within tolerance"
    if not enough:
        return INCONCLUSIVE, "too few samples yet"
    if harm.estimate - float(norm.ppf(1.0 - alpha)) * se > tolerance:
        return INCONCLUSIVE, "worse at a single look's level, not yet conclusive"
    return PASS, "not significantly worse"


def _se(x_t: int, n_t: int, x_c: int, n_c: int) -> float:
    var_t, var_c = proportion_variances(x_t, n_t, x_c, n_c)
    return math.sqrt(var_t / n_t + var_c / n_c)


def error_rate_check(baseline: ArmSample, canary: ArmSample, config: JudgeConfig) -> Check:
    tolerance = config.error_rate_max_increase or 0.0
    n_c, n_b = canary.requests, baseline.requests
    if n_c == 0 or n_b == 0:
        return Check("error_rate", INCONCLUSIVE, None, None, None, n_c, n_b,
                     f"no requests yet (canary {n_c}, baseline {n_b})")
    harm = proportion_interval(
        canary.errors, n_c, baseline.errors, n_b, config.alpha,
        horizon=HORIZON_FACTOR * max(config.min_requests, 1),
    )
    enough = min(n_c, n_b) >= config.min_requests
    se = _se(canary.errors, n_c, baseline.errors, n_b)
    outcome, verdict = _sequential_verdict(harm, se, tolerance, enough, config.alpha)
    reason = (
        f"{verdict}: error rate {canary.errors / n_c:.2%} (canary, n={n_c}) vs "
        f"{baseline.errors / n_b:.2%} (baseline, n={n_b}), change {_pts(harm.estimate)} in "
        f"[{_pts(harm.low)}, {_pts(harm.high)}] (always-valid, alpha {config.alpha}), "
        f"allowed increase {_pts(tolerance)}"
    )
    return Check("error_rate", outcome, harm.estimate, harm.low, harm.high, n_c, n_b, reason)


def label_accuracy_check(baseline: ArmSample, canary: ArmSample, config: JudgeConfig) -> Check:
    tolerance = config.label_accuracy_max_decrease or 0.0
    n_c, n_b = canary.labelled, baseline.labelled
    if n_c == 0 or n_b == 0:
        return Check("label_accuracy", INCONCLUSIVE, None, None, None, n_c, n_b,
                     f"no labels yet (canary {n_c}, baseline {n_b})")
    diff = proportion_interval(
        canary.correct, n_c, baseline.correct, n_b, config.alpha,
        horizon=HORIZON_FACTOR * max(config.min_labels, 1),
    )
    harm = Interval(-diff.estimate, -diff.high, -diff.low)
    enough = min(n_c, n_b) >= config.min_labels
    se = _se(canary.correct, n_c, baseline.correct, n_b)
    outcome, verdict = _sequential_verdict(harm, se, tolerance, enough, config.alpha)
    reason = (
        f"{verdict}: accuracy {canary.correct / n_c:.2%} (canary, n={n_c}) vs "
        f"{baseline.correct / n_b:.2%} (baseline, n={n_b}), change {_pts(diff.estimate)} in "
        f"[{_pts(diff.low)}, {_pts(diff.high)}] (always-valid, alpha {config.alpha}), "
        f"allowed decrease {_pts(tolerance)}"
    )
    return Check("label_accuracy", outcome, diff.estimate, diff.low, diff.high, n_c, n_b, reason)


def _quantile_bounds(ordered: np.ndarray, q: float, alpha: float) -> tuple[float, float]:
    """Distribution-free interval [x_(l), x_(u)] for the q-quantile: P(l <= B < u) >= 1 − alpha
    with B ~ Binomial(n, q) the count below the quantile; unbounded where n is too small."""
    n = ordered.size
    lo_rank, hi_rank = (int(r) for r in binom.ppf([alpha / 2, 1 - alpha / 2], n, q))
    hi_rank += 1
    low = float(ordered[lo_rank - 1]) if lo_rank >= 1 else -math.inf
    high = float(ordered[hi_rank - 1]) if hi_rank <= n else math.inf
    return low, high


def _ratio(top: float, bottom: float) -> float:
    if bottom > 0:
        return top / bottom
    return math.inf if top > 0 else (1.0 if top == bottom else 0.0)


def latency_check(baseline: ArmSample, canary: ArmSample, config: JudgeConfig) -> Check:
    max_ratio = config.latency_p99_max_ratio or 1.0
    b = np.sort(kayenta.clean(baseline.latencies_ms))
    c = np.sort(kayenta.clean(canary.latencies_ms))
    minimum = config.min_latency_samples
    if c.size < minimum or b.size < minimum:
        return Check("latency", INCONCLUSIVE, None, None, None, c.size, b.size,
                     f"too few latency samples: canary {c.size}, baseline {b.size} "
                     f"(need {minimum} each)")
    # p99 ratio: each arm's quantile interval at 1 − (1 − 0.98)/2, so jointly >= 98%.
    arm_alpha = (1.0 - kayenta.CONFIDENCE) / 2.0
    lo_c, hi_c = _quantile_bounds(c, LATENCY_QUANTILE, arm_alpha)
    lo_b, hi_b = _quantile_bounds(b, LATENCY_QUANTILE, arm_alpha)
    p99_c = float(np.quantile(c, LATENCY_QUANTILE))
    p99_b = float(np.quantile(b, LATENCY_QUANTILE))
    ratio = _ratio(p99_c, p99_b)
    ratio_low, ratio_high = _ratio(lo_c, hi_b), _ratio(hi_c, lo_b)
    # Kayenta on the bulk: allowed shift is the ratio's tolerance at the baseline median.
    allowed = (max_ratio - 1.0) * float(np.median(kayenta.remove_outliers(b)))
    mw = kayenta.classify(b, c, direction="increase", allowed_shift=allowed, min_points=minimum)
    if mw.classification is kayenta.Classification.INCONCLUSIVE or mw.shift is None:
        return Check("latency", INCONCLUSIVE, ratio, ratio_low, ratio_high, c.size, b.size,
                     f"after outlier removal, {mw.reason}")
    if mw.classification is kayenta.Classification.HIGH or ratio_low > max_ratio:
        outcome, verdict = FAIL, "slower beyond tolerance"
    elif mw.shift.estimate <= allowed:  # a reservoir's p99 is too noisy to lean on
        outcome, verdict = PASS, "within tolerance"
    else:
        outcome, verdict = INCONCLUSIVE, "leans slower, not conclusive yet"
    reason = (
        f"{verdict}: p99 {p99_c:.1f} ms (canary) vs {p99_b:.1f} ms (baseline), ratio "
        f"{ratio:.3f} in [{ratio_low:.3f}, {ratio_high:.3f}] (98%), max {max_ratio}; "
        f"Mann-Whitney p={mw.p_value:.3g}, {mw.reason}"
    )
    return Check("latency", outcome, ratio, ratio_low, ratio_high, c.size, b.size, reason)


def _columns(predictions: np.ndarray) -> np.ndarray:
    arr = np.asarray(predictions, dtype=np.float64)
    return arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, 1)


def prediction_check(baseline: ArmSample, canary: ArmSample, config: JudgeConfig) -> Check:
    assert baseline.predictions is not None and canary.predictions is not None
    b, c = _columns(baseline.predictions), _columns(canary.predictions)
    if b.shape[1] != c.shape[1]:
        return Check("prediction_distribution", INCONCLUSIVE, None, None, None,
                     c.shape[0], b.shape[0],
                     f"prediction widths differ: canary {c.shape[1]}, baseline {b.shape[1]}")
    level = config.alpha / b.shape[1]  # Bonferroni over prediction columns
    results: list[tuple[float, float, int]] = []  # (KS distance, p-value, column)
    for j in range(b.shape[1]):
        cj, bj = kayenta.clean(c[:, j]), kayenta.clean(b[:, j])
        if cj.size < config.min_latency_samples or bj.size < config.min_latency_samples:
            return Check("prediction_distribution", INCONCLUSIVE, None, None, None,
                         cj.size, bj.size,
                         f"too few predictions in column {j}: canary {cj.size}, baseline "
                         f"{bj.size} (need {config.min_latency_samples} each)")
        method = "asymp" if cj.size * bj.size > 1_000_000 else "auto"
        res = ks_2samp(cj, bj, method=method)
        results.append((float(res.statistic), float(res.pvalue), j))
    shifted = [r for r in results if r[1] < level and r[0] >= KS_MIN_STATISTIC]
    d, p, j = max(shifted or results)
    # advisory: a new model is expected to predict differently; the shift is evidence for a
    # person, while errors, latency and labels decide
    outcome = PASS
    verdict = "predictions shifted (advisory)" if shifted else "no material shift"
    reason = (
        f"{verdict}: KS distance {d:.3f} in column {j}, p={p:.3g} against alpha {level:.3g} "
        f"(Bonferroni over {b.shape[1]}); a shift needs D >= {KS_MIN_STATISTIC}"
    )
    return Check("prediction_distribution", outcome, d, None, None, c.shape[0], b.shape[0],
                 reason)


_CheckFn = Callable[[ArmSample, ArmSample, JudgeConfig], Check]


def judge(baseline: ArmSample, canary: ArmSample, config: JudgeConfig) -> Analysis:
    """Judge the canary against the baseline over the same windows."""
    planned: list[_CheckFn] = []
    if config.error_rate_max_increase is not None:
        planned.append(error_rate_check)
    if config.latency_p99_max_ratio is not None:
        planned.append(latency_check)
    if config.label_accuracy_max_decrease is not None:
        planned.append(label_accuracy_check)
    if (
        config.prediction_distribution
        and baseline.predictions is not None
        and canary.predictions is not None
    ):
        planned.append(prediction_check)
    checks = tuple(check(baseline, canary, config) for check in planned)
    return Analysis(combine(checks), checks)
