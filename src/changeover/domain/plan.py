"""How long a rollout will take: the samples each criterion needs before a pass, at today's
traffic. Pure; `apply` prints it before any traffic moves, so an operator sees at once that,
say, a 0.2-point tolerance at 1 req/s means days at the first step.

The canary's evidence runs from its first step to its last (nested looks), so the first step
waits for the samples a pass needs, at the first step's weight; later steps mostly bake.
Each figure is the canary samples at which an equal candidate's always-valid interval falls
below the tolerance with the spec's power (`sequential.required_samples`), with the champion's
recent figures standing in for the variances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from changeover.domain.criteria import canary_config, stages
from changeover.domain.judge import LATENCY_QUANTILE
from changeover.domain.quantiles import LatencyHistogram, quantile_bounds
from changeover.domain.sequential import planned_boundary, required_samples
from changeover.domain.spec import RolloutSpec, format_duration

__all__ = ["Need", "Traffic", "describe", "interleave_plan", "needs", "rough"]


@dataclass(frozen=True)
class Traffic:
    """The champion's recent traffic: requests per second, error rate, a latency sample, the
    share of requests that get a label or a reward, and its accuracy (None: not known)."""

    rate: float
    error_rate: float
    latencies_ms: ArrayLike = ()
    label_share: float | None = None
    accuracy: float | None = None


@dataclass(frozen=True)
class Need:
    criterion: str
    samples: float  # canary samples (requests, labels or latencies) a pass needs
    seconds: float  # at the first step's weight and today's rate (inf: never at this rate)

    def __str__(self) -> str:
        when = "never at this rate" if not math.isfinite(self.seconds) else f"≈ {rough(self.seconds)}"
        return f"{self.criterion} needs ~{self.samples:,.0f} canary samples {when}"


def rough(seconds: float) -> str:
    """A duration to the minute (to the hour past a day): an estimate, not a timer."""
    unit = 3600.0 if seconds >= 86400 else 60.0 if seconds >= 3600 else 1.0
    return format_duration(max(unit, round(seconds / unit) * unit))


def _latency_samples(latencies: ArrayLike, max_ratio: float, alpha: float, power: float,
                     baseline_ratio: float = 1.0) -> float:
    """Canary latencies for the p99 ratio: the larger of two counts.

    - The normal approximation: var(log q̂) ≈ p(1 − p)/(n (f(q)·q)²), f read off the champion's
      sample; the arms' two intervals each take half the error.
    - The judge's own bound: the smallest n at which the always-valid interval of the ratio
      (`quantiles.quantile_bounds` of each arm, as `judge` computes it) lies below
      `max_ratio` on the champion's latencies scaled to n canary and ``baseline_ratio``·n
      baseline samples. The confidence sequence of a p99 stays unbounded above until a few
      thousand samples, whatever the spread: the approximation alone promised ~50 samples
      where a pass needed ~2,000."""
    x = np.asarray(latencies, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 200:
        return math.nan
    lo, q, hi = np.quantile(x, [0.985, 0.99, 0.995])
    if hi <= lo or q <= 0:
        return math.nan
    density = 0.01 / (hi - lo)
    z = planned_boundary(alpha / 2.0) + float(norm.ppf(power))
    approx = (z / math.log(max_ratio)) ** 2 * 0.99 * 0.01 / (density * q) ** 2
    return max(approx, _bounded_at(x, max_ratio, alpha, baseline_ratio))


def _bounded_at(x: np.ndarray, max_ratio: float, alpha: float, baseline_ratio: float) -> float:
    """The canary samples at which the judge's p99-ratio interval, on samples shaped as `x`,
    first lies below `max_ratio` (doubling, then bisection; inf past 10⁸)."""
    shape = LatencyHistogram()
    shape.add(x)
    share = shape.counts / shape.weight

    def below(n: float) -> bool:
        canary, baseline = LatencyHistogram(), LatencyHistogram()
        for hist, size in ((canary, n), (baseline, max(n * baseline_ratio, 1.0))):
            hist.counts, hist.weight, hist.weight_sq, hist.values = share * size, size, size, int(size)
        high_c = quantile_bounds(canary, LATENCY_QUANTILE, alpha / 2.0).high
        low_b = quantile_bounds(baseline, LATENCY_QUANTILE, alpha / 2.0).low
        return low_b > 0 and math.isfinite(high_c) and high_c / low_b < max_ratio

    low, high = 10.0, 10.0
    while not below(high):
        low, high = high, high * 2
        if high > 1e8:
            return math.inf
    while high - low > max(1.0, 0.02 * high):
        mid = (low + high) / 2
        low, high = (low, mid) if below(mid) else (mid, high)
    return high


def needs(spec: RolloutSpec, traffic: Traffic) -> list[Need]:
    """What each criterion needs before the first step can pass."""
    if spec.canary is None:
        return []
    config = canary_config(spec)
    weight = spec.canary.steps[0] / 100.0
    ratio = (1.0 - weight) / weight
    canary_rate = traffic.rate * weight
    out: list[Need] = []
    for crit in config.criteria:
        alpha = crit.alpha / stages(spec)
        if crit.name == "error_rate":
            p = min(max(traffic.error_rate, 0.001), 0.5)
            n = required_samples(p * (1 - p), p * (1 - p), ratio, crit.tolerance or 0.0, alpha, config.power)
            rate = canary_rate
        elif crit.name == "label_accuracy":
            a = traffic.accuracy if traffic.accuracy is not None else 0.5
            var = max(a * (1 - a), 0.01)
            n = required_samples(var, var, ratio, crit.tolerance or 0.0, alpha, config.power)
            rate = canary_rate * (traffic.label_share if traffic.label_share is not None else 1.0)
        elif crit.name == "latency_p99_ms":
            n = _latency_samples(traffic.latencies_ms, crit.tolerance or 1.2, alpha, config.power, ratio)
            rate = canary_rate
        else:
            continue  # mae, rmse, reward: their variances are known only once labels arrive
        if not math.isfinite(n):
            continue
        n = max(n, float(config.min_requests))
        seconds = n / rate if rate > 0 else math.inf
        out.append(Need(crit.name, n, max(seconds, spec.canary.bake)))
    return out


def interleave_plan(spec: RolloutSpec, traffic: Traffic) -> list[str]:
    """The interleaving stage in words: the decided (clicked, not tied) requests an equally good
    candidate needs to pass, and the interleaved requests per second at today's traffic (how
    many of them end decided depends on the users' clicks, which only the stage will see)."""
    il = spec.interleave
    if il is None:
        return []
    need = max(required_samples(0.25, 0.0, 1.0, il.tolerance, il.alpha, 0.8), float(il.min_decided))
    what = (f"~{need:,.0f} decided requests (a click credited to one side)" if math.isfinite(need)
            else "a candidate confidently preferred (tolerance 0)")
    ends = [f"{il.until.requests:,} clicked requests"] if il.until.requests else []
    ends += [format_duration(il.until.or_after)] if il.until.or_after else []
    return [f"interleave: {il.sample * 100:g}% of {traffic.rate:.3g} req/s interleaved, top {il.k}; "
            f"a pass needs {what} for an equally good candidate, fewer for a better one; "
            f"judged at {' or '.join(ends)}"]


def describe(spec: RolloutSpec, traffic: Traffic) -> list[str]:
    """The plan in words, one line per criterion, and the first step's expected length (and
    the interleaving stage's needs, when the spec has one)."""
    if spec.canary is None:
        return interleave_plan(spec, traffic)
    lines = interleave_plan(spec, traffic)
    return lines + _canary_lines(spec, traffic)


def _canary_lines(spec: RolloutSpec, traffic: Traffic) -> list[str]:
    assert spec.canary is not None
    found = needs(spec, traffic)
    head = (f"at {traffic.rate:.3g} req/s, step 1 ({spec.canary.steps[0]:g}%) sees "
            f"{traffic.rate * spec.canary.steps[0] / 100:.3g} req/s on the candidate")
    lines = [head] + [f"  {need}" for need in found]
    if found:
        longest = max(n.seconds for n in found)
        bake = spec.canary.bake
        if math.isfinite(longest) and longest > bake:
            lines.append(f"  step 1 bakes {format_duration(bake)} and then waits about "
                         f"{rough(longest - bake)} more for these samples; "
                         "widen a tolerance or start at a larger step to go faster")
        elif not math.isfinite(longest):
            lines.append("  no traffic: the first step will wait until requests come")
    return lines
