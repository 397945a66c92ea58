from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from changeover.domain.evidence import ArmEvidence, StageEvidence
from changeover.domain.judge import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Analysis,
    Check,
    Criterion,
    Guard,
    JudgeConfig,
    combine,
    judge,
)

CONFIG = JudgeConfig(criteria=(
    Criterion("error_rate", 0.002),
    Criterion("latency_p99_ms", 1.2),
    Criterion("label_accuracy", 0.01),
))


def latencies(rng: np.random.Generator, n: int, scale: float = 1.0, tail: float = 1.0) -> np.ndarray:
    """Lognormal (median 80 ms) with a 2% slow mixture; `tail` scales the slow part only."""
    x = rng.lognormal(np.log(80.0), 0.5, n)
    slow = rng.random(n) < 0.02
    x[slow] *= rng.lognormal(np.log(4.0), 0.3, int(slow.sum())) * tail
    return scale * x


def arm(rng: np.random.Generator, *, requests: int = 20_000, error_rate: float = 0.01,
        scale: float = 1.0, tail: float = 1.0, samples: int | None = None, labelled: int = 10_000,
        accuracy: float = 0.85, sort: bool = False) -> ArmEvidence:
    out = ArmEvidence()
    lat = latencies(rng, samples if samples is not None else requests, scale, tail)
    errors = int(rng.binomial(requests, error_rate))
    out.add_window(requests, errors, np.sort(lat) if sort else lat)
    out.add_labels(labelled, int(rng.binomial(labelled, accuracy)))
    return out


def by_name(analysis: Analysis) -> dict[str, Check]:
    return {c.name: c for c in analysis.checks}


def test_equal_candidate_with_ample_evidence_passes() -> None:
    rng = np.random.default_rng(0)
    big = {"requests": 400_000, "labelled": 200_000}
    got = judge(arm(rng, **big), arm(rng, **big), CONFIG)
    assert got.outcome == PASS, got.to_dict()
    assert [c.name for c in got.checks] == ["error_rate", "latency_p99_ms", "label_accuracy"]


def test_not_significantly_worse_is_no_pass() -> None:
    """A small equal sample is inconclusive and says how many samples a pass needs."""
    rng = np.random.default_rng(1)
    small = {"requests": 300, "labelled": 200}
    got = judge(arm(rng, **small), arm(rng, **small), CONFIG)
    assert got.outcome == INCONCLUSIVE and not got.enough
    error = by_name(got)["error_rate"]
    assert error.outcome == INCONCLUSIVE and error.required is not None and error.required > 300
    assert "a pass needs" in error.reason and got.waiting


@pytest.mark.parametrize(
    ("canary_kwargs", "failing"),
    [
        ({"error_rate": 0.03}, "error_rate"),
        ({"scale": 1.6}, "latency_p99_ms"),
        ({"accuracy": 0.80}, "label_accuracy"),
    ],
)
def test_bad_candidate_fails_on_the_right_check(canary_kwargs: dict[str, Any], failing: str) -> None:
    rng = np.random.default_rng(1)
    got = judge(arm(rng, requests=200_000), arm(rng, **canary_kwargs), CONFIG)
    assert got.outcome == FAIL
    checks = by_name(got)
    assert checks[failing].outcome == FAIL, checks[failing].reason
    assert all(c.outcome != FAIL for name, c in checks.items() if name != failing)


def test_sorted_large_arms_give_the_same_latency_verdict_as_shuffled() -> None:
    """The old shift estimate sampled diagonals of sorted arms: A/A failed or passed by the
    order of the data. An equal candidate at 100k samples per arm must not fail, sorted or not."""
    rng = np.random.default_rng(2)
    checks = []
    for sort in (False, True):
        r = np.random.default_rng(3)
        base = arm(r, requests=100_000, sort=sort)
        cand = arm(r, requests=100_000, sort=sort)
        checks.append(by_name(judge(base, cand, CONFIG))["latency_p99_ms"])
    assert checks[0].outcome == checks[1].outcome != FAIL
    assert checks[0].estimate == checks[1].estimate
    assert checks[0].low is not None and checks[0].low < 1.0 < (checks[0].high or math.inf)
    del rng


def test_p99_doubled_with_the_median_unchanged_fails() -> None:
    rng = np.random.default_rng(4)
    got = judge(arm(rng, requests=200_000), arm(rng, requests=20_000, tail=2.0), CONFIG)
    latency = by_name(got)["latency_p99_ms"]
    assert latency.outcome == FAIL, latency.reason
    assert latency.estimate is not None and latency.estimate > 1.6


def test_latency_ratio_means_a_ratio_of_p99s() -> None:
    """An equal p99 passes max_ratio 1.2 with enough data, ×1.5 fails: the old check applied
    the ratio as a median shift."""
    rng = np.random.default_rng(5)
    config = JudgeConfig(criteria=(Criterion("latency_p99_ms", 1.2),))
    ok = by_name(judge(arm(rng, requests=1_000_000), arm(rng, requests=400_000, scale=1.0), config))
    assert ok["latency_p99_ms"].outcome == PASS, ok["latency_p99_ms"].reason
    bad = by_name(judge(arm(rng, requests=1_000_000), arm(rng, requests=200_000, scale=1.5), config))
    assert bad["latency_p99_ms"].outcome == FAIL, bad["latency_p99_ms"].reason


def test_all_errors_fail_after_one_window_at_one_percent() -> None:
    """100% errors at 1% of 500 req/s: 25 canary requests in a 5-s window are enough."""
    rng = np.random.default_rng(6)
    base = ArmEvidence()
    base.add_window(2475, int(rng.binomial(2475, 0.001)), latencies(rng, 2000))
    canary = ArmEvidence()
    canary.add_window(25, 25, [])
    got = judge(base, canary, CONFIG, stages=2)
    assert by_name(got)["error_rate"].outcome == FAIL and got.outcome == FAIL
    assert (by_name(got)["error_rate"].high or 0) <= 1.0  # a difference of two shares


def test_silent_baseline_and_erring_canary_fails() -> None:
    # kayenta issue 377: baseline error rate 0, no division by zero, no NaN passing
    rng = np.random.default_rng(7)
    base, cand = ArmEvidence(), ArmEvidence()
    base.add_window(1000, 0, latencies(rng, 500))
    cand.add_window(1000, 150, latencies(rng, 500))
    check = by_name(judge(base, cand, CONFIG))["error_rate"]
    assert check.outcome == FAIL
    assert check.low is not None and math.isfinite(check.low) and check.low > 0.002


def test_no_baseline_traffic_is_inconclusive_not_pass() -> None:
    rng = np.random.default_rng(8)
    cand = ArmEvidence()
    cand.add_window(500, 100, latencies(rng, 200))
    got = judge(ArmEvidence(), cand, CONFIG)
    assert got.outcome == INCONCLUSIVE and by_name(got)["error_rate"].outcome == INCONCLUSIVE


def test_alpha_is_per_criterion_and_spent_over_stages() -> None:
    rng = np.random.default_rng(9)
    base, cand = arm(rng), arm(rng)
    loose = JudgeConfig(criteria=(Criterion("error_rate", 0.002, alpha=0.2), Criterion("label_accuracy", 0.01, alpha=0.01)))
    checks = by_name(judge(base, cand, loose, stages=2))
    assert checks["error_rate"].alpha == pytest.approx(0.1)
    assert checks["label_accuracy"].alpha == pytest.approx(0.005)
    wide = by_name(judge(base, cand, loose, stages=4))["error_rate"]
    assert (wide.high or 0) - (wide.low or 0) > (checks["error_rate"].high or 0) - (checks["error_rate"].low or 0)


def _regression_arm(rng: np.random.Generator, n: int, scale: float) -> ArmEvidence:
    from changeover.domain.outcomes import Outcome

    out = ArmEvidence()
    out.add_window(n, 0, latencies(rng, 100))
    for e in np.abs(rng.normal(0, scale, n)):
        out.add_outcome(Outcome(error=float(e)))
    return out


def test_regressor_worse_on_mae_fails_and_equal_one_passes() -> None:
    rng = np.random.default_rng(10)
    config = JudgeConfig(criteria=(Criterion("mae", None, 0.05), Criterion("rmse", None, 0.05)))
    worse = by_name(judge(_regression_arm(rng, 20_000, 16.0), _regression_arm(rng, 2_000, 21.0), config))
    assert worse["mae"].outcome == FAIL and worse["rmse"].outcome == FAIL, worse["mae"].reason
    equal = judge(_regression_arm(rng, 200_000, 16.0), _regression_arm(rng, 100_000, 16.0), config)
    assert equal.outcome == PASS, equal.to_dict()


def test_reward_drop_fails_and_reward_is_judged_by_default_only_once_it_arrives() -> None:
    from changeover.domain.outcomes import Outcome

    rng = np.random.default_rng(11)
    config = JudgeConfig(criteria=(Criterion("reward", None, 0.05, named=False),))
    base, cand = ArmEvidence(), ArmEvidence()
    assert judge(base, cand, config).checks == ()  # no rewards yet: not judged, not held
    for r in rng.poisson(4.9, 20_000):
        base.add_outcome(Outcome(reward=float(r)))
    for r in rng.poisson(4.9 * 0.9, 5_000):
        cand.add_outcome(Outcome(reward=float(r)))
    check = by_name(judge(base, cand, config))["reward"]
    assert check.outcome == FAIL, check.reason


def test_named_reward_without_rewards_holds_with_a_reason() -> None:
    rng = np.random.default_rng(12)
    config = JudgeConfig(criteria=(Criterion("reward", None, 0.05),))
    got = judge(arm(rng), arm(rng), config, waited_s=1200)
    check = by_name(got)["reward"]
    assert check.outcome == INCONCLUSIVE and not got.enough
    assert "no rewards yet" in check.reason and "waited 20 min" in check.reason


def test_fixed_horizon_criterion_is_read_only_at_the_end_of_the_bake() -> None:
    rng = np.random.default_rng(13)
    config = JudgeConfig(criteria=(Criterion("label_accuracy", 0.01, sequential=False),))
    base, cand = arm(rng), arm(rng, accuracy=0.70)
    assert by_name(judge(base, cand, config, final=False))["label_accuracy"].outcome == INCONCLUSIVE
    assert by_name(judge(base, cand, config, final=True))["label_accuracy"].outcome == FAIL


def test_guards_judge_the_canary_alone() -> None:
    rng = np.random.default_rng(14)
    config = JudgeConfig(criteria=(), guards=(Guard("error_rate", 0.05), Guard("latency_p99_ms", 200.0)))
    bad = ArmEvidence()
    bad.add_window(4000, 1200, latencies(rng, 2800))
    got = by_name(judge(None, bad, config))
    assert got["guard.error_rate"].outcome == FAIL and got["guard.latency_p99_ms"].outcome == FAIL
    fine = ArmEvidence()
    fine.add_window(4000, 4, latencies(rng, 4000, scale=0.3))
    assert judge(None, fine, config).outcome == PASS


def test_windows_are_weighted_by_their_requests() -> None:
    """A busy window whose 100-value reservoir stands for 10,000 requests outweighs a quiet
    window with 100 values for 100 requests."""
    rng = np.random.default_rng(15)
    arm_ = ArmEvidence()
    arm_.add_window(10_000, 0, rng.normal(100.0, 1.0, 100))
    arm_.add_window(100, 0, rng.normal(400.0, 1.0, 100))
    assert arm_.latency.quantile(0.5) == pytest.approx(100.0, rel=0.03)
    assert arm_.latency.quantile(0.995) == pytest.approx(400.0, rel=0.03)


def test_nested_looks_count_each_window_once() -> None:
    stage = StageEvidence(baseline=1, canary=2, since=0.0)
    rows = [{"id": i, "version": 1 + i % 2, "requests": 10, "errors": 1, "latencies": [5.0] * 10}
            for i in range(6)]
    assert stage.add_windows(rows[:4]) == 4
    assert stage.add_windows(rows) == 2  # the first four again, and two new
    assert stage.arm(1).requests == 30 and stage.arm(2).requests == 30
    assert stage.add_windows([{"id": 99, "version": 7, "requests": 5, "errors": 0}]) == 0


def test_prediction_check_is_advisory() -> None:
    rng = np.random.default_rng(16)
    base, cand = ArmEvidence(), ArmEvidence()
    base.add_window(2000, 0, [], rng.normal(size=2000).tolist())
    cand.add_window(2000, 0, [], rng.normal(1.0, 1.0, size=2000).tolist())
    got = judge(base, cand, JudgeConfig(criteria=()))
    check = by_name(got)["prediction_distribution"]
    assert check.outcome == PASS and got.outcome == PASS and "predictions shifted" in check.reason


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [([], PASS), ([PASS, PASS], PASS), ([PASS, INCONCLUSIVE], INCONCLUSIVE),
     ([INCONCLUSIVE, FAIL], FAIL), ([PASS, FAIL, INCONCLUSIVE], FAIL)],
)
def test_combine(outcomes: list[str], expected: str) -> None:
    assert combine([Check("x", o, None, None, None, 0, 0, "") for o in outcomes]) == expected


def test_to_dict_is_strict_json() -> None:
    rng = np.random.default_rng(17)
    got = judge(arm(rng, requests=300), arm(rng, requests=300), CONFIG)
    text = json.dumps(got.to_dict(), allow_nan=False)
    latency = next(c for c in json.loads(text)["checks"] if c["name"] == "latency_p99_ms")
    assert latency["high"] is None  # 300 values do not bound a p99 from above yet


@pytest.mark.parametrize(("requests", "errors"), [(10, 11), (10, -1)])
def test_impossible_counts_are_refused(requests: int, errors: int) -> None:
    with pytest.raises(ValueError):
        ArmEvidence().add_window(requests, errors, [])


def test_unknown_criterion_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown criterion"):
        Criterion("accuracy", 0.01)


def test_aa_looked_at_every_window_rarely_fails() -> None:
    """A/A through the judge, 40 nested looks per run at 1:99 arms: false fails under alpha/2."""
    rng = np.random.default_rng(18)
    runs, fails = 100, 0
    for _ in range(runs):
        base, cand = ArmEvidence(), ArmEvidence()
        for _ in range(40):
            base.add_window(2475, int(rng.binomial(2475, 0.01)), latencies(rng, 500))
            cand.add_window(25, int(rng.binomial(25, 0.01)), latencies(rng, 25))
            base.add_labels(1000, int(rng.binomial(1000, 0.85)))
            cand.add_labels(10, int(rng.binomial(10, 0.85)))
            if judge(base, cand, CONFIG).outcome == FAIL:
                fails += 1
                break
    assert fails / runs <= 0.05


def test_public_names_exist() -> None:
    from changeover.domain import evidence, kayenta, quantiles, sequential
    from changeover.domain import judge as judge_module

    for module in (sequential, kayenta, judge_module, quantiles, evidence):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def _ranker_arm(rng: np.random.Generator, n: int, good: float) -> ArmEvidence:
    """Each request: a served top-10 list; the user clicks item 0 with probability `good`."""
    from changeover.domain.outcomes import outcome

    out = ArmEvidence()
    out.add_window(n, 0, latencies(rng, min(n, 2000)))
    for _ in range(n):
        clicked = [0] if rng.random() < good else [int(rng.integers(20, 30))]
        out.add_outcome(outcome({"ranking": list(range(10))}, clicked, None))
    return out


def test_a_ranker_is_judged_on_online_ndcg_once_ranking_feedback_arrives() -> None:
    rng = np.random.default_rng(19)
    config = JudgeConfig(criteria=(Criterion("ranking", None, 0.05, named=False, metric="ndcg_at_10"),))
    assert judge(ArmEvidence(), ArmEvidence(), config).checks == ()  # no ranking feedback yet
    worse = by_name(judge(_ranker_arm(rng, 20_000, 0.6), _ranker_arm(rng, 5_000, 0.45), config))["ranking"]
    assert worse.outcome == FAIL and "online ndcg_at_10" in worse.reason, worse.reason
    same = judge(_ranker_arm(rng, 40_000, 0.6), _ranker_arm(rng, 40_000, 0.6), config)
    assert same.outcome == PASS, same.to_dict()


def test_an_extended_bake_needs_more_samples_before_a_tie_is_final() -> None:
    """After k extensions a tie is "enough" only at (1 + k) times the planned samples."""
    from dataclasses import replace

    rng = np.random.default_rng(20)
    config = JudgeConfig(criteria=(Criterion("error_rate", 0.002),))
    base, cand = arm(rng, requests=400_000), arm(rng, requests=40_000, error_rate=0.0115)
    first = by_name(judge(base, cand, config))["error_rate"]
    assert first.outcome == INCONCLUSIVE and first.required is not None
    needed = first.required
    assert first.enough == (needed <= 40_000)
    later = by_name(judge(base, cand, replace(config, need_factor=40_000 / needed + 1)))["error_rate"]
    assert later.outcome == INCONCLUSIVE and not later.enough
