"""The shadow's verdict: never a pass on a minority of the mirrored calls. Table-driven."""

from __future__ import annotations

import json
from typing import Any

import pytest

from changeover.domain import comparison
from changeover.domain.comparison import Comparison, Pair
from changeover.domain.shadow_judgement import MIN_COMPARED_SHARE, coverage, judge_shadow


def regression(n: int, *, errors: int = 0, noise: float = 0.0) -> dict[str, Any]:
    c = Comparison()
    for i in range(n):
        c.add(Pair(f"r{i}", {"prediction": float(i)}, {"prediction": i + noise}, 5.0, 6.0))
    for i in range(errors):
        c.add(Pair(f"e{i}", {"prediction": 1.0}, None, 5.0, None, error="timeout"))
    return c.figures()


def with_mirror(figures: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    return figures | {"mirror": coverage(figures["overall"], counts)}


def test_coverage_of_the_field_report() -> None:
    figures = regression(262)
    cov = coverage(figures["overall"], {"ok": 262, "pool_busy": 300, "queue_full": 38})
    assert cov == {"mirrored": 600, "compared": 262, "dropped": 338, "compared_share": pytest.approx(262 / 600),
                   "dropped_by": {"queue_full": 38, "pool_busy": 300}, "counted_by_mirror": True}


def test_coverage_counts_every_cause_and_adds_up() -> None:
    c = Comparison()
    c.add(Pair("a", {"prediction": 1.0}, {"prediction": 1.0}, 1.0, 1.0))
    c.add(Pair("b", {"prediction": 1.0}, None, 1.0, None, error="timeout"))
    c.add(Pair("c", {"prediction": 1.0}, None, 1.0, 1.0, error="error: ValueError: boom"))
    c.add(Pair("d", {"prediction": 1.0}, {"prediction": float("nan")}, 1.0, 1.0, error="invalid: NaN or infinity"))
    c.add(Pair("e", {"answer": "text"}, {"prediction": 1.0}, 1.0, 1.0))  # the champion holds nothing to compare
    overall = c.figures()["overall"]
    counts = {"ok": 3, "timeout": 1, "error": 1, "invalid": 1, "queue_full": 2, "pool_busy": 3, "not_loaded": 1}
    cov = coverage(overall, counts)
    assert cov["dropped_by"] == {"queue_full": 2, "pool_busy": 3, "not_loaded": 1, "not_recorded": 1, "timeout": 1,
                                 "candidate_error": 1, "invalid_answer": 1, "champion_unusable": 1}
    assert cov["mirrored"] == cov["compared"] + cov["dropped"] == 12
    assert coverage(overall)["mirrored"] == overall["pairs"] == 5  # without the mirror's counts: the pairs
    assert not coverage(overall)["counted_by_mirror"]


CASES: list[tuple[str, dict[str, Any], dict[str, Any], str, str]] = [
    ("most calls dropped", with_mirror(regression(262), {"ok": 262, "pool_busy": 338}),
     {"abs_diff_mean": {"max": 0.1}}, "inconclusive",
     "only 262 of 600 mirrored calls compared (43.7%), 338 dropped (pool busy 338): a verdict needs at least 50%"),
    ("most calls dropped, no requirement", with_mirror(regression(262), {"ok": 262, "pool_busy": 338}), {},
     "inconclusive", "only 262 of 600"),
    ("most dropped, and what was seen fails", with_mirror(regression(262, noise=1.0), {"ok": 262, "pool_busy": 338}),
     {"abs_diff_mean": {"max": 0.1}}, "fail", "1 of 1 requirements failed (262 of 600 mirrored calls compared)"),
    ("half compared is enough", with_mirror(regression(300), {"ok": 300, "queue_full": 300}),
     {"abs_diff_mean": {"max": 0.1}}, "pass", "300 of 600 mirrored calls compared"),
    ("most pairs timed out", regression(10, errors=20), {"abs_diff_mean": {"max": 0.1}}, "inconclusive",
     "20 dropped (timeout 20)"),
    ("most timed out, and the error rate is judged", regression(10, errors=20), {"candidate_error_rate": {"max": 0.1}},
     "fail", "requirements failed"),
    ("every call dropped", with_mirror(regression(0), {"pool_busy": 30}), {"abs_diff_mean": {"max": 0.1}},
     "inconclusive", "no pairs yet: 30 dropped (pool busy 30)"),
    ("nothing yet", regression(0), {}, "inconclusive", "no pairs yet"),
    ("a figure not measured, on few calls", with_mirror(regression(5), {"ok": 5, "pool_busy": 20}),
     {"agreement": {"min": 0.9}}, "inconclusive", "only 5 of 25"),
    ("a figure not measured, on enough calls", regression(10), {"agreement": {"min": 0.9}}, "fail", "1 of 1"),
    ("all compared", regression(10), {"abs_diff_mean": {"max": 0.1}}, "pass", "10 of 10 mirrored calls compared"),
]


@pytest.mark.parametrize(("case", "figures", "require", "verdict", "reason"), CASES, ids=[c[0] for c in CASES])
def test_the_verdict_is_never_a_pass_on_a_minority_of_the_mirrored_calls(
        case: str, figures: dict[str, Any], require: dict[str, Any], verdict: str, reason: str) -> None:
    result = judge_shadow(figures, require)
    assert result["verdict"] == verdict, result["reason"]
    assert reason in result["reason"]
    json.dumps(result, allow_nan=False)


def test_the_threshold_is_half() -> None:
    assert MIN_COMPARED_SHARE == 0.5
    just = judge_shadow(with_mirror(regression(50), {"ok": 50, "pool_busy": 50}), {})
    below = judge_shadow(with_mirror(regression(49), {"ok": 49, "pool_busy": 51}), {})
    assert (just["verdict"], below["verdict"]) == ("pass", "inconclusive")


def test_ranking_requirements_and_their_old_names() -> None:
    c = Comparison()
    for i in range(10):
        c.add(Pair(f"r{i}", {"ranking": list(range(10))}, {"ranking": [*range(4), *range(20, 26)]}, 1.0, 1.0))
    figures = c.figures()
    result = judge_shadow(figures, {"overlap_at_10": {"min": 0.5}, "rbo": {"min": 0.5}, "kendall_tau": {"min": 0.9},
                                    "overlap_at_k": {"min": 0.3}, "worst_segment_rank_correlation": {"min": 0}})
    assert [(c["name"], c["passed"]) for c in result["checks"]] == [
        ("overlap_at_10", False), ("rbo", True), ("kendall_tau", True), ("overlap_at_k", True),
        ("worst_segment_rank_correlation", False)]  # no segments: nothing measured it
    assert result["checks"][0]["reason"] == "overlap_at_10 0.4 is below 0.5"  # says what the number is
    assert result["verdict"] == "fail"


def test_judge_shadow_is_still_importable_from_comparison() -> None:
    assert comparison.judge_shadow is judge_shadow
    with pytest.raises(AttributeError):
        _ = comparison.nothing_here
