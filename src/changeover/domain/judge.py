"""The canary judge: the candidate (canary) against the champion (baseline) over the same time.

Each criterion is an always-valid interval of the *harm* (oriented so that larger is worse),
valid however often it is looked at, so the controller consults it after every metric window:

- error_rate: canary − baseline error rate; tolerance `max_increase`.
- latency_p99_ms: the ratio of p99s, canary / baseline; tolerance `max_ratio`. Each arm's p99
  has a confidence sequence (`quantiles`, Howard & Ramdas) at alpha/2, so the ratio lies in
  [low_c / high_b, high_c / low_b] at level alpha.
- label_accuracy: baseline − canary accuracy on labelled requests; tolerance `max_decrease`.
- mae: canary − baseline mean absolute error; rmse: canary − baseline mean squared error,
  with the tolerance `max_increase` of the RMSE turned into MSE at the baseline's RMSE
  ((rmse_b + δ)² − rmse_b²). Either may give `max_ratio` instead (a relative tolerance at the
  baseline's figure).
- ranking: baseline − canary mean of an online ranking metric (`ranking_feedback`: NDCG@k,
  P@k, R@k, CTR@k, hit@k, MRR of the served list against the clicked or relevant items);
  tolerance `max_decrease` or `max_relative_decrease` × the baseline's figure.
- reward: baseline − canary mean reward per rewarded request; tolerance `max_decrease`, or
  `max_relative_decrease` × |baseline mean|; rewards above `cap` are winsorised at it as
  they are counted (`evidence.StageEvidence.reward_cap`), and the evidence says so.

Means use `sequential.difference_interval` (the mixture SPRT, two mixtures intersected:
tight near the tolerance and quick on gross harm). Each criterion:

- fail when the whole interval lies above the tolerance: harm beyond it, with confidence;
- pass when the whole interval lies below it and the canary has at least the minimum
  samples: the evidence excludes harm beyond the tolerance (never "not significantly worse");
- otherwise inconclusive, with the canary samples a pass would need (`required`) at the
  spec's power: the bake lasts until they are reached.

The analysis fails when any criterion fails, passes when all pass, and is otherwise
inconclusive. Guards are absolute: the canary's own error rate or p99 confidently above a
ceiling fails whatever the baseline does (the watch without holdback has only these).
The prediction-distribution check is advisory (a new model is expected to predict
differently): its shift is reported, it never fails or holds a step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import ks_2samp, norm

from changeover.domain.evidence import ArmEvidence, Moments
from changeover.domain.quantiles import QuantileBounds, quantile_bounds
from changeover.domain.sequential import (
    Interval,
    difference_interval,
    mean_interval,
    proportion_variances,
    required_samples,
)

__all__ = [
    "CRITERIA",
    "FAIL",
    "INCONCLUSIVE",
    "PASS",
    "Analysis",
    "Check",
    "Criterion",
    "Guard",
    "JudgeConfig",
    "combine",
    "judge",
]

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
LATENCY_QUANTILE = 0.99
KS_MIN_STATISTIC = 0.1  # smallest KS distance reported as a shift
MIN_PREDICTIONS = 50
CRITERIA = ("error_rate", "latency_p99_ms", "label_accuracy", "mae", "rmse", "reward", "ranking")


@dataclass(frozen=True)
class Criterion:
    """One comparison of the canary with the baseline.

    `tolerance` is the harm allowed, in the criterion's own terms: points of error rate or
    accuracy, a ratio for latency (max_ratio), label units for mae/rmse, reward units; or,
    where `relative` is set, a share of the baseline's figure. `named` is False for a reward
    check the judge added because rewards arrived (it is then left out while none have)."""

    name: str
    tolerance: float | None = None
    relative: float | None = None
    alpha: float = 0.05
    sequential: bool = True
    cap: float | None = None
    named: bool = True
    metric: str | None = None  # ranking: which online ranking metric (ndcg_at_10, ...)

    def __post_init__(self) -> None:
        if self.name not in CRITERIA:
            raise ValueError(f"unknown criterion {self.name!r}; known: {', '.join(CRITERIA)}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}")


@dataclass(frozen=True)
class Guard:
    """An absolute ceiling on the canary alone: `error_rate` (a share) or `latency_p99_ms`."""

    name: str
    max: float
    alpha: float = 0.05


@dataclass(frozen=True)
class JudgeConfig:
    criteria: tuple[Criterion, ...] = (
        Criterion("error_rate", 0.002),
        Criterion("latency_p99_ms", 1.2),
    )
    guards: tuple[Guard, ...] = ()
    power: float = 0.8
    min_requests: int = 100
    min_labels: int = 100
    prediction_distribution: bool = True
    # an extended bake needs this many times the samples a pass needs before it is "enough"
    # again (1 + extensions): a tie at the planned sample gets more data, not a coin flip
    need_factor: float = 1.0


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
    required: float | None = None  # canary samples a pass needs (None: not estimated)
    enough: bool = True  # the canary has the samples a conclusion needs (or has concluded)
    tolerance: float | None = None
    alpha: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: non-finite figures become None."""
        out = dict(self.__dict__)
        for key in ("estimate", "low", "high", "required", "tolerance"):
            out[key] = _finite(out[key])
        return out


@dataclass(frozen=True)
class Analysis:
    outcome: str
    checks: tuple[Check, ...]
    enough: bool = True  # every check has its samples (an inconclusive one is then a real tie)
    waiting: tuple[str, ...] = field(default=())  # what the step waits for, in words

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "checks": [c.to_dict() for c in self.checks],
                "enough": self.enough, "waiting": list(self.waiting)}


def combine(checks: tuple[Check, ...] | list[Check]) -> str:
    outcomes = {c.outcome for c in checks}
    if FAIL in outcomes:
        return FAIL
    if INCONCLUSIVE in outcomes:
        return INCONCLUSIVE
    return PASS


def _pts(x: float) -> str:
    return f"{100 * x:+.2f} pts"


def _fixed_interval(estimate: float, v: float, alpha: float) -> Interval:
    half = float(norm.ppf(1.0 - alpha / 2.0)) * math.sqrt(max(v, 0.0))
    return Interval(estimate, estimate - half, estimate + half)


def _verdict(harm: Interval, tolerance: float, n: int, minimum: int, required: float,
             final: bool, sequential: bool) -> tuple[str, str, bool]:
    """(outcome, words, enough) for an interval of harm against its tolerance."""
    enough = n >= max(minimum, required)
    if not sequential and not final:
        return INCONCLUSIVE, "fixed-horizon test: read once the bake is over", enough
    if harm.above(tolerance):
        return FAIL, "worse beyond tolerance", True
    if harm.below(tolerance) and n >= minimum:
        return PASS, "harm beyond tolerance excluded", True
    if n < minimum:
        return INCONCLUSIVE, f"too few samples yet ({n} of at least {minimum})", False
    return INCONCLUSIVE, "not yet shown within tolerance", enough


def _need(required: float) -> str:
    return f"~{required:,.0f}" if math.isfinite(required) else "an unbounded number of"


@dataclass(frozen=True)
class _Mean:
    """A per-request mean of one arm: its estimate, variance and count."""

    mean: float
    var: float
    n: int


def _mean(m: Moments) -> _Mean:
    return _Mean(m.mean, m.var, m.n)


def _compare(name: str, c: _Mean, b: _Mean, harm_sign: float, tolerance: float,
             criterion: Criterion, config: JudgeConfig, minimum: int, stages: int, final: bool,
             unit: Callable[[float], str], what: str, share: bool = False) -> Check:
    """The shared rule for means: harm = harm_sign × (canary − baseline). For a difference of
    two shares (`share`) the interval is cut to [−1, 1], where the difference lies anyway."""
    alpha = criterion.alpha / stages
    ratio = b.n / c.n if c.n else 1.0
    var_c, var_b = max(c.var, 1e-12), max(b.var, 1e-12)
    required = required_samples(var_c, var_b, ratio, tolerance, alpha, config.power)
    if criterion.sequential:
        diff = difference_interval(c.mean, var_c, c.n, b.mean, var_b, b.n, alpha, required)
    else:
        diff = _fixed_interval(c.mean - b.mean, var_c / c.n + var_b / b.n, alpha)
    harm = diff if harm_sign > 0 else Interval(-diff.estimate, -diff.high, -diff.low)
    if share:
        harm = Interval(harm.estimate, max(harm.low, -1.0), min(harm.high, 1.0))
    outcome, verdict, enough = _verdict(harm, tolerance, c.n, minimum, required * config.need_factor,
                                        final, criterion.sequential)
    kind = "always-valid" if criterion.sequential else "fixed-horizon"
    reason = (f"{verdict}: {what} {unit(c.mean)} (canary, n={c.n}) vs {unit(b.mean)} "
              f"(baseline, n={b.n}); harm {harm.estimate:+.4g} in [{harm.low:+.4g}, "
              f"{harm.high:+.4g}] ({kind}, alpha {alpha:.3g}), tolerance {tolerance:.4g}; "
              f"a pass needs {_need(required)} canary samples")
    return Check(name, outcome, harm.estimate, harm.low, harm.high, c.n, b.n, reason,
                 required, enough, tolerance, alpha)


def _missing(name: str, n_c: int, n_b: int, what: str, criterion: Criterion | None = None,
             waited_s: float | None = None) -> Check:
    waited = f", waited {waited_s / 60:.0f} min" if waited_s is not None else ""
    return Check(name, INCONCLUSIVE, None, None, None, n_c, n_b,
                 f"no {what} yet (canary {n_c}, baseline {n_b}{waited})", None, False,
                 criterion.tolerance if criterion else None, criterion.alpha if criterion else None)


def _error_rate(b: ArmEvidence, c: ArmEvidence, crit: Criterion, config: JudgeConfig,
                stages: int, final: bool, waited_s: float) -> Check:
    if c.requests == 0 or b.requests == 0:
        return _missing("error_rate", c.requests, b.requests, "requests", crit, waited_s)
    var_c, var_b = proportion_variances(c.errors, c.requests, b.errors, b.requests)
    tolerance = crit.tolerance if crit.tolerance is not None else 0.0
    return _compare("error_rate", _Mean(c.errors / c.requests, var_c, c.requests),
                    _Mean(b.errors / b.requests, var_b, b.requests), 1.0, tolerance, crit,
                    config, config.min_requests, stages, final, lambda x: f"{x:.3%}",
                    "error rate", share=True)


def _label_accuracy(b: ArmEvidence, c: ArmEvidence, crit: Criterion, config: JudgeConfig,
                    stages: int, final: bool, waited_s: float) -> Check:
    if c.labelled == 0 or b.labelled == 0:
        return _missing("label_accuracy", c.labelled, b.labelled, "labels", crit, waited_s)
    var_c, var_b = proportion_variances(c.correct, c.labelled, b.correct, b.labelled)
    tolerance = crit.tolerance if crit.tolerance is not None else 0.0
    return _compare("label_accuracy", _Mean(c.correct / c.labelled, var_c, c.labelled),
                    _Mean(b.correct / b.labelled, var_b, b.labelled), -1.0, tolerance, crit,
                    config, config.min_labels, stages, final, lambda x: f"{x:.2%}", "accuracy",
                    share=True)


def _regression(name: str, b: ArmEvidence, c: ArmEvidence, crit: Criterion,
                config: JudgeConfig, stages: int, final: bool, waited_s: float) -> Check:
    mc, mb = (c.abs_error, b.abs_error) if name == "mae" else (c.sq_error, b.sq_error)
    if mc.n == 0 or mb.n == 0:
        return _missing(name, mc.n, mb.n, "numeric labels", crit, waited_s)
    if name == "mae":
        base = mb.mean
        tolerance = crit.tolerance if crit.tolerance is not None else (crit.relative or 0.0) * base
        unit: Callable[[float], str] = lambda x: f"MAE {x:.4g}"  # noqa: E731
    else:
        rmse_b = math.sqrt(mb.mean)
        delta = crit.tolerance if crit.tolerance is not None else (crit.relative or 0.0) * rmse_b
        tolerance = (rmse_b + delta) ** 2 - rmse_b**2
        unit = lambda x: f"RMSE {math.sqrt(max(x, 0.0)):.4g}"  # noqa: E731
    return _compare(name, _mean(mc), _mean(mb), 1.0, tolerance, crit, config,
                    config.min_labels, stages, final, unit, "error")


def _reward(b: ArmEvidence, c: ArmEvidence, crit: Criterion, config: JudgeConfig, stages: int,
            final: bool, waited_s: float) -> Check:
    if c.reward.n == 0 or b.reward.n == 0:
        return _missing("reward", c.reward.n, b.reward.n, "rewards", crit, waited_s)
    base = _mean(b.reward)
    tolerance = crit.tolerance if crit.tolerance is not None else (crit.relative or 0.0) * abs(base.mean)
    return _compare("reward", _mean(c.reward), base, -1.0, tolerance, crit, config,
                    config.min_labels, stages, final, lambda x: f"{x:.4g}", "mean reward")


def _ranking(b: ArmEvidence, c: ArmEvidence, crit: Criterion, config: JudgeConfig, stages: int,
             final: bool, waited_s: float) -> Check:
    metric = crit.metric or "ndcg_at_10"
    mc, mb = c.ranking.moments(metric), b.ranking.moments(metric)
    if mc.n == 0 or mb.n == 0:
        return _missing("ranking", mc.n, mb.n, f"ranking feedback for {metric}", crit, waited_s)
    base = _mean(mb)
    tolerance = crit.tolerance if crit.tolerance is not None else (crit.relative or 0.0) * abs(base.mean)
    return _compare("ranking", _mean(mc), base, -1.0, tolerance, crit, config, config.min_labels,
                    stages, final, lambda x: f"{x:.4g}", f"online {metric}")


def _ratio(top: float, bottom: float) -> float:
    if bottom > 0:
        return top / bottom
    return math.inf if top > 0 else 1.0


def _latency(b: ArmEvidence, c: ArmEvidence, crit: Criterion, config: JudgeConfig, stages: int,
             final: bool, waited_s: float) -> Check:
    max_ratio = crit.tolerance if crit.tolerance is not None else 1.2
    alpha = crit.alpha / stages
    n_c, n_b = c.latency.values, b.latency.values
    if n_c == 0 or n_b == 0:
        return _missing("latency_p99_ms", n_c, n_b, "latency samples", crit, waited_s)
    qc = quantile_bounds(c.latency, LATENCY_QUANTILE, alpha / 2.0)
    qb = quantile_bounds(b.latency, LATENCY_QUANTILE, alpha / 2.0)
    ratio = _ratio(qc.estimate, qb.estimate)
    low, high = _ratio(qc.low, qb.high), _ratio(qc.high, qb.low)
    required = _latency_required(qc, qb, max_ratio, ratio)
    enough = qc.effective_n >= required * config.need_factor
    if low > max_ratio:
        outcome, verdict, enough = FAIL, "slower beyond tolerance", True
    elif high < max_ratio and n_c >= MIN_PREDICTIONS:
        outcome, verdict, enough = PASS, "a slowdown beyond tolerance excluded", True
    else:
        outcome, verdict = INCONCLUSIVE, "not yet shown within tolerance"
    reason = (f"{verdict}: p99 {qc.estimate:.1f} ms (canary, n={n_c}) vs {qb.estimate:.1f} ms "
              f"(baseline, n={n_b}), ratio {ratio:.3f} in [{low:.3f}, {high:.3f}] "
              f"(always-valid, alpha {alpha:.3g}), max {max_ratio:g}; a pass needs "
              f"{_need(required)} canary samples")
    return Check("latency_p99_ms", outcome, ratio, low, high, n_c, n_b, reason, required, enough,
                 max_ratio, alpha)


def _latency_required(qc: QuantileBounds, qb: QuantileBounds, max_ratio: float,
                      ratio: float) -> float:
    """A rough count: the upper bound's relative excess shrinks as 1/sqrt(n)."""
    if not math.isfinite(qc.high) or qc.effective_n <= 0 or qb.low <= 0:
        return max(2000.0, 2 * qc.effective_n) if max_ratio > 1 else math.inf
    room = max_ratio / max(ratio, 1e-9) - 1.0
    excess = _ratio(qc.high, qb.low) / max(ratio, 1e-9) - 1.0
    if room <= 0:
        return math.inf
    return qc.effective_n * (excess / room) ** 2 * 1.3


def _guard(guard: Guard, c: ArmEvidence, stages: int) -> Check:
    alpha = guard.alpha / stages
    if guard.name == "error_rate":
        if c.requests == 0:
            return _missing("guard.error_rate", 0, 0, "requests")
        p = c.errors / c.requests
        var = max(p * (1 - p), (c.errors + 1) / (c.requests + 2) * (1 - (c.errors + 1) / (c.requests + 2)))
        interval = mean_interval(p, var, c.requests, alpha, n_plan=100.0)
        fail = interval.low > guard.max
        reason = (f"error rate {p:.2%} (n={c.requests}) in [{interval.low:.2%}, "
                  f"{interval.high:.2%}] (always-valid, alpha {alpha:.3g}), ceiling {guard.max:.2%}")
        return Check("guard.error_rate", FAIL if fail else PASS, p, interval.low, interval.high,
                     c.requests, 0, ("above the ceiling: " if fail else "within the ceiling: ") + reason,
                     None, True, guard.max, alpha)
    q = quantile_bounds(c.latency, LATENCY_QUANTILE, alpha)
    fail = q.low > guard.max
    reason = (f"p99 {q.estimate:.1f} ms (n={c.latency.values}) in [{q.low:.1f}, {q.high:.1f}] ms "
              f"(always-valid, alpha {alpha:.3g}), SLO {guard.max:g} ms")
    return Check("guard.latency_p99_ms", FAIL if fail else PASS, _finite(q.estimate), q.low, q.high,
                 c.latency.values, 0, ("above the SLO: " if fail else "within the SLO: ") + reason,
                 None, True, guard.max, alpha)


def _predictions(b: ArmEvidence, c: ArmEvidence, alpha: float) -> Check:
    cp, bp = np.asarray(c.predictions, dtype=np.float64), np.asarray(b.predictions, dtype=np.float64)
    cp, bp = cp[np.isfinite(cp)], bp[np.isfinite(bp)]
    if cp.size < MIN_PREDICTIONS or bp.size < MIN_PREDICTIONS:
        return Check("prediction_distribution", PASS, None, None, None, int(cp.size), int(bp.size),
                     f"advisory, too few predictions to compare (canary {cp.size}, baseline {bp.size})")
    res = ks_2samp(cp, bp, method="asymp" if cp.size * bp.size > 1_000_000 else "auto")
    d, p = float(res.statistic), float(res.pvalue)
    shifted = p < alpha and d >= KS_MIN_STATISTIC
    verdict = "predictions shifted (advisory)" if shifted else "no material shift (advisory)"
    return Check("prediction_distribution", PASS, d, None, None, int(cp.size), int(bp.size),
                 f"{verdict}: KS distance {d:.3f}, p={p:.3g}; a shift needs D >= {KS_MIN_STATISTIC}")


_CHECKS: dict[str, Callable[..., Check]] = {
    "error_rate": _error_rate,
    "latency_p99_ms": _latency,
    "label_accuracy": _label_accuracy,
    "reward": _reward,
    "ranking": _ranking,
}


def judge(baseline: ArmEvidence | None, canary: ArmEvidence, config: JudgeConfig, *,
          stages: int = 1, final: bool = True, waited_s: float = 0.0) -> Analysis:
    """Judge the canary against the baseline over the same time.

    `stages` spends each criterion's alpha over the rollout's comparative stages (alpha /
    stages each, so the whole rollout's false-fail chance stays within the criterion's alpha);
    `final` says the bake is over (a fixed-horizon criterion is read only then); `waited_s`
    is how long the stage has run, for the reasons of what is still missing. With no
    baseline (a watch without holdback) only the guards judge."""
    checks: list[Check] = []
    if baseline is not None:
        for crit in config.criteria:
            if not crit.named and crit.name == "reward" and canary.reward.n == 0 and baseline.reward.n == 0:
                continue  # rewards are judged by default only once feedback carries them
            if not crit.named and crit.name == "ranking" and not (canary.ranking.requests or baseline.ranking.requests):
                continue  # so is a ranker's online quality, once ranking feedback arrives
            if crit.name in ("mae", "rmse"):
                check = _regression(crit.name, baseline, canary, crit, config, stages, final, waited_s)
            else:
                check = _CHECKS[crit.name](baseline, canary, crit, config, stages, final, waited_s)
            checks.append(check)
    checks += [_guard(g, canary, stages) for g in config.guards]
    if baseline is not None and config.prediction_distribution and canary.predictions and baseline.predictions:
        checks.append(_predictions(baseline, canary, 0.05))
    outcome = combine(checks)
    waiting = tuple(f"{c.name}: {c.reason}" for c in checks if c.outcome == INCONCLUSIVE and not c.enough)
    enough = not waiting
    return Analysis(outcome, tuple(checks), enough, waiting)
