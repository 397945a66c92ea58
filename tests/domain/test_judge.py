from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from changeover.domain.judge import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Analysis,
    ArmSample,
    Check,
    JudgeConfig,
    combine,
    judge,
)

CONFIG = JudgeConfig()


def arm(
    rng: np.random.Generator,
    *,
    requests: int = 20_000,
    error_rate: float = 0.01,
    latency_scale: float = 1.0,
    latencies: int = 1000,
    labelled: int = 10_000,
    accuracy: float = 0.85,
    predictions: np.ndarray | None = None,
) -> ArmSample:
    return ArmSample(
        requests=requests,
        errors=int(rng.binomial(requests, error_rate)),
        latencies_ms=latency_scale * rng.lognormal(np.log(80.0), 0.5, latencies),
        labelled=labelled,
        correct=int(rng.binomial(labelled, accuracy)),
        predictions=predictions,
    )


def by_name(analysis: Analysis) -> dict[str, Check]:
    return {c.name: c for c in analysis.checks}


def test_good_candidate_passes() -> None:
    rng = np.random.default_rng(0)
    got = judge(arm(rng), arm(rng), CONFIG)
    assert got.outcome == PASS, got.to_dict()
    assert [c.name for c in got.checks] == ["error_rate", "latency", "label_accuracy"]


@pytest.mark.parametrize(
    ("canary_kwargs", "failing"),
    [
        ({"error_rate": 0.03}, "error_rate"),
        ({"latency_scale": 1.5}, "latency"),
        ({"accuracy": 0.80}, "label_accuracy"),
    ],
)
def test_bad_candidate_fails_on_the_right_check(
    canary_kwargs: dict[str, Any], failing: str
) -> None:
    rng = np.random.default_rng(1)
    got = judge(arm(rng), arm(rng, **canary_kwargs), CONFIG)
    assert got.outcome == FAIL
    checks = by_name(got)
    assert checks[failing].outcome == FAIL, checks[failing].reason
    assert all(c.outcome != FAIL for name, c in checks.items() if name != failing)


def test_silent_baseline_and_erring_canary_fails() -> None:
    # kayenta issue 377: baseline error rate 0, no division by zero, no NaN passing
    rng = np.random.default_rng(2)
    baseline = ArmSample(1000, 0, rng.lognormal(4.0, 0.5, 500))
    canary = ArmSample(1000, 150, rng.lognormal(4.0, 0.5, 500))
    check = by_name(judge(baseline, canary, CONFIG))["error_rate"]
    assert check.outcome == FAIL
    assert check.low is not None and math.isfinite(check.low) and check.low > 0.002


def test_gross_failure_fails_before_minimum_samples() -> None:
    rng = np.random.default_rng(3)
    config = JudgeConfig(min_requests=10_000)
    canary = ArmSample(2000, 1000, rng.lognormal(4.0, 0.5, 500))
    baseline = ArmSample(2000, 20, rng.lognormal(4.0, 0.5, 500))
    assert by_name(judge(baseline, canary, config))["error_rate"].outcome == FAIL


def test_too_few_requests_is_inconclusive() -> None:
    rng = np.random.default_rng(4)
    small: dict[str, Any] = {"requests": 50, "latencies": 30, "labelled": 40}
    got = judge(arm(rng, **small), arm(rng, **small), CONFIG)
    assert got.outcome == INCONCLUSIVE
    assert all(c.outcome == INCONCLUSIVE for c in got.checks), got.to_dict()


def test_no_baseline_traffic_is_inconclusive_not_pass() -> None:
    rng = np.random.default_rng(5)
    baseline = ArmSample(0, 0, np.empty(0))
    canary = ArmSample(500, 100, rng.lognormal(4.0, 0.5, 200))
    got = judge(baseline, canary, CONFIG)
    assert got.outcome == INCONCLUSIVE
    assert by_name(got)["error_rate"].outcome == INCONCLUSIVE


def test_nan_latencies_are_dropped_not_passed() -> None:
    rng = np.random.default_rng(6)
    base = arm(rng)
    canary = ArmSample(20_000, 200, np.full(1000, np.nan), 10_000, 8500)
    assert by_name(judge(base, canary, CONFIG))["latency"].outcome == INCONCLUSIVE


@pytest.mark.parametrize(
    ("canary_errors", "outcome"),
    [
        # 1.7% vs 1.0%: +0.70 pts, se 0.39 pts; 0.70 − 1.645·0.39 = 0.06 < 0.20: not significant
        (34, PASS),
        # 2.25% vs 1.0%: +1.25 pts, se 0.44 pts; 1.25 − 1.645·0.44 = 0.53 > 0.20 at one look,
        # but the always-valid low end is 1.25 − 3.37·0.44 = −0.22 < 0.20: hold
        (45, INCONCLUSIVE),
        (90, FAIL),
    ],
)
def test_suggestive_evidence_holds_and_conclusive_evidence_fails(
    canary_errors: int, outcome: str
) -> None:
    rng = np.random.default_rng(7)
    baseline = ArmSample(2000, 20, rng.lognormal(4.0, 0.5, 500))
    canary = ArmSample(2000, canary_errors, rng.lognormal(4.0, 0.5, 500))
    check = by_name(judge(baseline, canary, CONFIG))["error_rate"]
    assert check.outcome == outcome, check.reason


def test_equal_candidate_passes_at_zero_tolerance_even_when_a_little_behind() -> None:
    # label accuracy, max decrease 0: 84.5% vs 85.0% on 1,000 labels is not significant
    latencies = np.random.default_rng(12).lognormal(4.0, 0.5, 500)
    baseline = ArmSample(2000, 20, latencies, labelled=1000, correct=850)
    canary = ArmSample(2000, 20, latencies, labelled=1000, correct=845)
    check = by_name(judge(baseline, canary, CONFIG))["label_accuracy"]
    assert check.outcome == PASS and "not significantly worse" in check.reason


def test_disabled_checks_are_left_out() -> None:
    rng = np.random.default_rng(8)
    config = JudgeConfig(
        error_rate_max_increase=None, latency_p99_max_ratio=None, label_accuracy_max_decrease=None
    )
    got = judge(arm(rng), arm(rng), config)
    assert got.checks == () and got.outcome == PASS


def test_prediction_check_is_advisory() -> None:
    rng = np.random.default_rng(9)
    only = JudgeConfig(
        error_rate_max_increase=None, latency_p99_max_ratio=None, label_accuracy_max_decrease=None
    )
    same = judge(arm(rng, predictions=rng.normal(size=2000)),
                 arm(rng, predictions=rng.normal(size=2000)), only)
    same_check = by_name(same)["prediction_distribution"]
    assert same_check.outcome == PASS and "no material shift" in same_check.reason
    shifted = judge(arm(rng, predictions=rng.normal(size=(2000, 2))),
                    arm(rng, predictions=rng.normal(0.5, 1.0, size=(2000, 2))), only)
    check = by_name(shifted)["prediction_distribution"]
    # a shift is reported as evidence, never holds or fails a rollout on its own
    assert check.outcome == PASS and shifted.outcome == PASS
    assert "predictions shifted" in check.reason and "Bonferroni over 2" in check.reason
    off = judge(arm(rng, predictions=rng.normal(size=2000)),
                arm(rng, predictions=rng.normal(1.0, 1.0, size=2000)),
                JudgeConfig(prediction_distribution=False))
    assert "prediction_distribution" not in by_name(off)


def _check(outcome: str) -> Check:
    return Check("x", outcome, None, None, None, 0, 0, "")


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([], PASS),
        ([PASS, PASS], PASS),
        ([PASS, INCONCLUSIVE], INCONCLUSIVE),
        ([INCONCLUSIVE, FAIL], FAIL),
        ([PASS, FAIL, INCONCLUSIVE], FAIL),
    ],
)
def test_combine(outcomes: list[str], expected: str) -> None:
    assert combine([_check(o) for o in outcomes]) == expected


def test_to_dict_is_strict_json() -> None:
    rng = np.random.default_rng(10)
    # 60 latency samples: the p99 interval is unbounded (inf), which must become None
    got = judge(arm(rng, latencies=60), arm(rng, latencies=60), CONFIG)
    text = json.dumps(got.to_dict(), allow_nan=False)
    latency = next(c for c in json.loads(text)["checks"] if c["name"] == "latency")
    assert latency["high"] is None


@pytest.mark.parametrize(
    ("kwargs"), [{"errors": 11}, {"errors": -1}, {"labelled": 5, "correct": 6}]
)
def test_arm_sample_rejects_impossible_counts(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"requests": 10, "errors": 0, "latencies_ms": np.ones(3)}
    args.update(kwargs)
    with pytest.raises(ValueError):
        ArmSample(**args)


def test_aa_runs_consulted_every_window_rarely_fail() -> None:
    """A/A through the whole judge, 10 looks per run: false fails well under alpha."""
    rng = np.random.default_rng(11)
    runs, looks, per_look = 100, 10, 400
    failed = 0
    for _ in range(runs):
        totals = np.zeros((2, 4), dtype=np.int64)  # requests, errors, labelled, correct
        latencies: list[list[np.ndarray]] = [[], []]
        for _ in range(looks):
            for a in range(2):
                labelled = per_look // 2
                totals[a] += (per_look, rng.binomial(per_look, 0.01), labelled,
                              rng.binomial(labelled, 0.85))
                latencies[a].append(rng.lognormal(np.log(80.0), 0.5, 40))
            arms = [ArmSample(int(t[0]), int(t[1]), np.concatenate(lat), int(t[2]), int(t[3]))
                    for t, lat in zip(totals, latencies, strict=True)]
            if judge(arms[0], arms[1], CONFIG).outcome == FAIL:
                failed += 1
                break
    assert failed / runs <= CONFIG.alpha


def test_public_names_exist() -> None:
    from changeover.domain import drift, kayenta, sequential
    from changeover.domain import judge as judge_module

    for module in (sequential, kayenta, judge_module, drift):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
