from __future__ import annotations

import math

import numpy as np

from changeover.domain.plan import Traffic, describe, needs, rough
from changeover.domain.sequential import required_samples
from changeover.domain.spec import parse_spec


def test_the_first_step_needs_follow_from_tolerance_alpha_and_power() -> None:
    spec = parse_spec({"model": "m", "candidate": "2", "canary": {"judge": {"latency_p99_ms": None}}})
    (error,) = needs(spec, Traffic(rate=1.0, error_rate=0.01))
    # alpha 0.05 spent over four steps and the watch: 0.01; 1:99 arms at the 1% step
    expected = required_samples(0.0099, 0.0099, 99.0, 0.002, 0.01, 0.8)
    assert error.criterion == "error_rate" and error.samples == expected
    assert error.seconds == expected / 0.01  # 1 req/s, 1% of it on the candidate
    text = "\n".join(describe(spec, Traffic(rate=1.0, error_rate=0.01)))
    assert "at 1 req/s, step 1 (1%)" in text and f"~{expected:,.0f} canary samples" in text
    assert "widen a tolerance or start at a larger step" in text


def test_a_wider_tolerance_needs_fewer_samples_and_latency_is_estimated_from_the_champion() -> None:
    rng = np.random.default_rng(0)
    lat = rng.lognormal(np.log(80.0), 0.5, 20_000)
    tight = parse_spec({"model": "m", "candidate": "2", "canary": {}})
    wide = parse_spec({"model": "m", "candidate": "2", "canary": {"judge": {
        "error_rate": {"max_increase": 0.02}, "latency_p99_ms": {"max_ratio": 2.0}}}})
    a = {n.criterion: n.samples for n in needs(tight, Traffic(500.0, 0.01, lat))}
    b = {n.criterion: n.samples for n in needs(wide, Traffic(500.0, 0.01, lat))}
    assert set(a) == {"error_rate", "latency_p99_ms"}
    assert b["error_rate"] < a["error_rate"] / 50 and b["latency_p99_ms"] < a["latency_p99_ms"] / 2


def test_the_latency_figure_is_what_the_judge_needs_for_a_pass() -> None:
    """The plan's p99 count against the judge's own always-valid bound on an equal candidate:
    at the planned count the bound mostly lies below the tolerance, at a third of it never
    (the bound of a p99 stays open above for the first thousand or so samples)."""
    from changeover.domain.judge import LATENCY_QUANTILE
    from changeover.domain.quantiles import LatencyHistogram, quantile_bounds

    rng = np.random.default_rng(3)
    lat = rng.lognormal(np.log(8.0), 0.4, 20_000)
    spec = parse_spec({"model": "m", "candidate": "2", "canary": {"steps": [20, 50], "judge": {
        "error_rate": None, "latency_p99_ms": {"max_ratio": 5.0}}}})
    (need,) = needs(spec, Traffic(100.0, 0.0, lat))
    alpha = 0.05 / 3  # two steps and the watch

    def passes(n: int) -> bool:
        canary, baseline = LatencyHistogram(), LatencyHistogram()
        canary.add(rng.lognormal(np.log(8.0), 0.4, n))
        baseline.add(rng.lognormal(np.log(8.0), 0.4, 4 * n))
        high = quantile_bounds(canary, LATENCY_QUANTILE, alpha / 2).high
        low = quantile_bounds(baseline, LATENCY_QUANTILE, alpha / 2).low
        return high / low < 5.0

    n = int(need.samples)
    assert n > 500  # not the ~50 the normal approximation alone said
    assert sum(passes(n) for _ in range(20)) >= 10
    assert not any(passes(n // 3) for _ in range(20))


def test_no_traffic_is_said() -> None:
    spec = parse_spec({"model": "m", "candidate": "2", "canary": {"judge": {"latency_p99_ms": None}}})
    (need,) = needs(spec, Traffic(rate=0.0, error_rate=0.0))
    assert not math.isfinite(need.seconds) and "never at this rate" in str(need)
    assert any("no traffic" in line for line in describe(spec, Traffic(rate=0.0, error_rate=0.0)))


def test_rough_durations() -> None:
    assert rough(42.4) == "42s" and rough(3 * 3600 + 125) == "3h2m" and rough(2 * 86400 + 5000) == "2d1h"


def test_the_plan_says_what_an_interleaving_stage_needs() -> None:
    spec = parse_spec({"model": "m", "candidate": "2",
                       "interleave": {"sample": 0.2, "until": {"requests": 3000, "or_after": "2h"}}})
    (line,) = describe(spec, Traffic(rate=5.0, error_rate=0.0))
    assert line.startswith("interleave: 20% of 5 req/s interleaved, top 10; a pass needs ~1,888 decided requests")
    assert line.endswith("judged at 3,000 clicked requests or 2h")
    zero = parse_spec({"model": "m", "candidate": "2", "interleave": {"tolerance": 0, "until": {"requests": 10}},
                       "canary": {}})
    lines = describe(zero, Traffic(rate=5.0, error_rate=0.0))
    assert "a candidate confidently preferred (tolerance 0)" in lines[0] and lines[1].startswith("at 5 req/s")
