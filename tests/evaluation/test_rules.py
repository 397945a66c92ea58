from __future__ import annotations

import math
from typing import Any

import pytest

from changeover.evaluation.rules import (
    MetricComparison,
    RulesError,
    evaluate_rules,
    referenced_ks,
    validate_rules,
    verdict,
)


def comp(
    name: str,
    candidate: float,
    champion: float | None = None,
    ci: tuple[float, float] | None = None,
    higher: bool = True,
) -> MetricComparison:
    return MetricComparison(
        name=name,
        champion=champion,
        candidate=candidate,
        diff=None if champion is None else candidate - champion,
        ci_low=None if ci is None else ci[0],
        ci_high=None if ci is None else ci[1],
        higher_is_better=higher,
    )


@pytest.mark.parametrize(
    "require",
    [
        None,
        {},
        {"accuracy": {"min": 0.9}},
        {"accuracy": {"min": 0.5, "max": 1, "not_worse_than": "champion", "margin": 0.01}},
        {"log_loss": {"better_than": "champion"}, "latency_p99_ms": {"max": 20}},
        {"throughput_rows_per_s": {"min": 100}},
    ],
)
def test_valid_classification_rules(require: dict[str, Any] | None) -> None:
    validate_rules(require, "classification", (5, 10))


@pytest.mark.parametrize(
    ("require", "task", "match"),
    [
        ({"acuracy": {"min": 0.9}}, "classification", "acuracy: unknown metric"),
        ({"rmse": {"max": 1}}, "classification", "rmse: unknown metric"),
        ({"ndcg_at_0": {"min": 0.1}}, "ranking", "ndcg_at_0: unknown metric"),
        ({"ndcg_at_10": {"min": 0.1}}, "regression", "ndcg_at_10: unknown metric"),
        ({"accuracy": {"minimum": 0.9}}, "classification", "unknown rule key 'minimum'"),
        ({"accuracy": {"min": "high"}}, "classification", "min must be a number"),
        ({"accuracy": {"min": True}}, "classification", "min must be a number"),
        ({"accuracy": {"min": 0.9, "max": 0.8}}, "classification", "above max"),
        ({"accuracy": {"margin": 0.1}}, "classification", "margin only goes with"),
        (
            {"accuracy": {"not_worse_than": "champion", "margin": -1}},
            "classification",
            "margin must be a number >= 0",
        ),
        ({"accuracy": {"not_worse_than": "previous"}}, "classification", "compares with"),
        ({"accuracy": {}}, "classification", "non-empty mapping"),
        ({"accuracy": 0.9}, "classification", "non-empty mapping"),
        ({"accuracy": {"min": 0.9}}, "clustering", "unknown task"),
    ],
)
def test_invalid_rules_name_the_problem(require: Any, task: str, match: str) -> None:
    with pytest.raises(RulesError, match=match):
        validate_rules(require, task, (5, 10))


def test_ranking_rules_may_name_any_k() -> None:
    validate_rules({"ndcg_at_20": {"min": 0.1}, "map_at_1": {"min": 0}}, "ranking", (5, 10))


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(RulesError) as err:
        validate_rules({"foo": {"min": 1}, "r2": {"mni": 1}}, "regression", ())
    assert "foo" in str(err.value) and "'mni'" in str(err.value)


def test_referenced_ks() -> None:
    require = {"ndcg_at_10": {"min": 0.1}, "map_at_3": {"min": 0}, "mrr": {"min": 0}}
    assert referenced_ks(require) == {10, 3}
    assert referenced_ks(None) == set()


# name, rule, comparison, passes
CASES: list[tuple[str, dict[str, Any], MetricComparison, bool]] = [
    ("min met", {"min": 0.9}, comp("accuracy", 0.91), True),
    ("min at bound", {"min": 0.9}, comp("accuracy", 0.9), True),
    ("min missed", {"min": 0.9}, comp("accuracy", 0.89), False),
    ("max met", {"max": 20}, comp("latency_p99_ms", 12.0, higher=False), True),
    ("max missed", {"max": 20}, comp("latency_p99_ms", 25.0, higher=False), False),
    (
        "not worse, higher better, within margin",
        {"not_worse_than": "champion", "margin": 0.01},
        comp("accuracy", 0.90, 0.905, (-0.009, 0.004)),
        True,
    ),
    (
        "not worse, higher better, lower bound past margin",
        {"not_worse_than": "champion", "margin": 0.01},
        comp("accuracy", 0.90, 0.905, (-0.02, 0.01)),
        False,
    ),
    (
        "not worse, no margin, interval straddles zero",
        {"not_worse_than": "champion"},
        comp("accuracy", 0.90, 0.905, (-0.001, 0.004)),
        False,
    ),
    (
        "not worse, lower better, upper bound within margin",
        {"not_worse_than": "champion", "margin": 0.05},
        comp("log_loss", 0.30, 0.29, (-0.02, 0.04), higher=False),
        True,
    ),
    (
        "not worse, lower better, upper bound past margin",
        {"not_worse_than": "champion", "margin": 0.05},
        comp("log_loss", 0.30, 0.29, (-0.02, 0.06), higher=False),
        False,
    ),
    (
        "better, higher better, interval above zero",
        {"better_than": "champion"},
        comp("roc_auc", 0.95, 0.93, (0.005, 0.03)),
        True,
    ),
    (
        "better, higher better, interval touches zero",
        {"better_than": "champion"},
        comp("roc_auc", 0.95, 0.93, (0.0, 0.03)),
        False,
    ),
    (
        "better, lower better, interval below zero",
        {"better_than": "champion"},
        comp("rmse", 1.0, 1.2, (-0.3, -0.1), higher=False),
        True,
    ),
    (
        "better, lower better, interval above zero",
        {"better_than": "champion"},
        comp("rmse", 1.3, 1.2, (0.05, 0.2), higher=False),
        False,
    ),
]


@pytest.mark.parametrize(("case", "rule", "comparison", "passes"), CASES, ids=[c[0] for c in CASES])
def test_rule_table(
    case: str, rule: dict[str, Any], comparison: MetricComparison, passes: bool
) -> None:
    [result] = evaluate_rules(
        {comparison.name: rule}, {comparison.name: comparison}, has_champion=True
    )
    assert result.passed is passes, result.reason
    assert result.metric == comparison.name
    assert result.reason.endswith(".")
    if "min" in rule or "max" in rule:
        assert result.figure == comparison.candidate and result.interval is None
    else:
        assert result.figure == comparison.diff
        assert result.interval == (comparison.ci_low, comparison.ci_high)


def test_combined_keys_give_one_result_per_check() -> None:
    rule = {"min": 0.8, "max": 0.99, "not_worse_than": "champion", "margin": 0.01}
    c = comp("accuracy", 0.9, 0.9, (-0.005, 0.005))
    results = evaluate_rules({"accuracy": rule}, {"accuracy": c}, has_champion=True)
    assert [r.kind for r in results] == ["min", "max", "not_worse_than"]
    assert all(r.passed for r in results)
    assert results[2].threshold == 0.01
    assert verdict(results) == "pass"


def test_relative_rule_without_champion_fails_with_reason() -> None:
    c = comp("accuracy", 0.9)
    require = {"accuracy": {"min": 0.5, "not_worse_than": "champion"}}
    results = evaluate_rules(require, {"accuracy": c}, has_champion=False)
    assert [r.passed for r in results] == [True, False]
    assert "no champion" in results[1].reason
    assert verdict(results) == "fail"


def test_missing_metric_and_undefined_interval_fail() -> None:
    results = evaluate_rules({"roc_auc": {"min": 0.5}}, {}, has_champion=True)
    assert not results[0].passed and "probabilities" in results[0].reason
    nan_ci = comp("recall", 0.5, 0.5, (math.nan, math.nan))
    [r] = evaluate_rules(
        {"recall": {"better_than": "champion"}}, {"recall": nan_ci}, has_champion=True
    )
    assert not r.passed and "could not be computed" in r.reason
    nan_value = comp("r2", math.nan)
    [r] = evaluate_rules({"r2": {"min": 0}}, {"r2": nan_value}, has_champion=True)
    assert not r.passed


def test_champion_without_the_metric() -> None:
    c = comp("log_loss", 0.3, None, None, higher=False)
    [r] = evaluate_rules(
        {"log_loss": {"better_than": "champion"}}, {"log_loss": c}, has_champion=True
    )
    assert not r.passed and "champion has no log_loss" in r.reason


def test_no_rules_pass_and_to_dict_is_plain() -> None:
    assert verdict([]) == "pass"
    c = comp("accuracy", 0.9, 0.9, (math.nan, 0.01))
    d = c.to_dict()
    assert d["ci_low"] is None and d["ci_high"] == 0.01
    [r] = evaluate_rules({"accuracy": {"min": 0.5}}, {"accuracy": c}, has_champion=True)
    assert r.to_dict()["passed"] is True
