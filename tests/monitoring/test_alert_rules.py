"""Alert rules: parsing (YAML and JSON, every problem named) and the pure state machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from changeover.monitoring.alerts import (
    METRICS,
    AlertRule,
    AlertState,
    AlertStatus,
    RuleError,
    Transition,
    load_rules,
    parse_rules,
    step,
)

RULE = AlertRule(name="errors", metric="error_rate", condition=">", threshold=0.1, for_s=60)


@pytest.mark.parametrize(
    ("condition", "value", "holds"),
    [(">", 0.2, True), (">", 0.1, False), (">=", 0.1, True), ("<", 0.05, True), ("<", 0.1, False), ("<=", 0.1, True)],
)
def test_conditions(condition: str, value: float, holds: bool) -> None:
    assert AlertRule("r", "error_rate", condition, 0.1).holds(value) is holds


@pytest.mark.parametrize(
    ("state", "since", "value", "now", "expected", "transition"),
    [
        (AlertState.INACTIVE, None, 0.5, 100, AlertState.PENDING, Transition.PENDING),
        (AlertState.INACTIVE, None, 0.0, 100, AlertState.INACTIVE, None),
        (AlertState.PENDING, 100, 0.5, 159, AlertState.PENDING, None),
        (AlertState.PENDING, 100, 0.5, 160, AlertState.FIRING, Transition.FIRING),
        (AlertState.PENDING, 100, 0.0, 130, AlertState.INACTIVE, Transition.CLEARED),
        (AlertState.FIRING, 100, 0.5, 500, AlertState.FIRING, None),
        (AlertState.FIRING, 100, 0.0, 500, AlertState.RESOLVED, Transition.RESOLVED),
        (AlertState.RESOLVED, None, 0.0, 600, AlertState.RESOLVED, None),
        (AlertState.RESOLVED, None, 0.5, 600, AlertState.PENDING, Transition.PENDING),
        # a missing figure changes nothing: silence is not health
        (AlertState.FIRING, 100, None, 500, AlertState.FIRING, None),
        (AlertState.PENDING, 100, None, 500, AlertState.PENDING, None),
    ],
)
def test_step(state: AlertState, since: float | None, value: float | None, now: float, expected: AlertState,
              transition: Transition | None) -> None:
    status, change = step(RULE, AlertStatus(state, since=since), value, now)
    assert (status.state, change) == (expected, transition)


def test_fires_once_and_resolves_once_per_episode() -> None:
    status = AlertStatus()
    seen = []
    values = [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5, 0.5, 0.0]
    for i, value in enumerate(values):
        status, change = step(RULE, status, value, now=i * 30.0)
        seen.append(change)
    assert seen.count(Transition.FIRING) == 2 and seen.count(Transition.RESOLVED) == 2
    assert seen[2] is Transition.FIRING and seen[4] is Transition.RESOLVED
    assert status.episode == 2 and status.state is AlertState.RESOLVED


def test_for_zero_fires_at_once() -> None:
    rule = AlertRule("now", "error_rate", ">", 0.1)
    status, change = step(rule, AlertStatus(), 0.2, 10.0)
    assert change is Transition.FIRING and status.fired_at == 10.0 and status.episode == 1


def test_load_rules_yaml_and_json(tmp_path: Path) -> None:
    text = """
webhooks: [http://127.0.0.1:9/hook]
rules:
  - name: ranker-errors
    metric: error_rate
    condition: ">"
    threshold: 0.02
    for: 2m
    window: 5m
    model: ranker
    rollback: true
  - name: accuracy
    metric: accuracy
    condition: "<"
    threshold: 0.8
    label_delay: 10m
    webhook: https://hooks.example.com/x
"""
    (tmp_path / "rules.yaml").write_text(text)
    config = load_rules(tmp_path / "rules.yaml")
    first, second = config.rules
    assert (first.for_s, first.window_s, first.model, first.rollback, first.version) == (120, 300, "ranker", True, "champion")
    assert second.label_delay_s == 600 and second.webhooks == ("https://hooks.example.com/x",)
    assert config.webhooks == ("http://127.0.0.1:9/hook",)
    (tmp_path / "rules.json").write_text(json.dumps(
        {"rules": [{"name": "p99", "metric": "latency_p99_ms", "condition": ">=", "threshold": 250, "for": "2m"}]}))
    assert load_rules(tmp_path / "rules.json").rules[0].for_s == 120


def test_every_problem_is_named() -> None:
    with pytest.raises(RuleError) as err:
        parse_rules({"rules": [
            {"name": "a", "metric": "nope", "condition": "!=", "threshold": "x", "for": "soon", "colour": 1},
            {"name": "a", "metric": "accuracy", "condition": "<", "threshold": 0.9, "rollback": "yes"},
            {"metric": "accuracy", "condition": "<", "threshold": 0.9, "webhooks": ["ftp://x"]},
        ]})
    text = str(err.value)
    for needle in ("rules[0].metric", "rules[0].condition", "rules[0].threshold", "rules[0].for",
                   "unknown keys colour", "rules[1].rollback", "rules[2].name", "rules[2].webhooks"):
        assert needle in text, needle


def test_a_bare_list_of_rules_is_accepted() -> None:
    config = parse_rules([{"name": "drift", "metric": "drift_share", "condition": ">=", "threshold": 0.5}])
    assert config.rules[0].metric == "drift_share" and config.webhooks == ()


def test_duplicate_names_are_refused() -> None:
    rule = {"name": "x", "metric": "accuracy", "condition": "<", "threshold": 0.9}
    with pytest.raises(RuleError, match="used twice"):
        parse_rules({"rules": [rule, rule]})


@pytest.mark.parametrize("metric", ["ndcg_at_10", "ctr_at_10", "precision_at_10", "recall_at_10", "mrr",
                                    "ndcg_at_5", "hit_at_10"])
def test_a_rankers_online_metrics_are_rule_metrics(metric: str) -> None:
    config = parse_rules([{"name": "recs-quality", "metric": metric, "condition": "<", "threshold": 0.3,
                           "window": "10m", "label_delay": "1m"}])
    assert config.rules[0].metric == metric and config.rules[0].holds(0.2)
    assert "ranker" in METRICS[metric]


def test_an_unknown_ranking_metric_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(RuleError) as err:
        parse_rules([{"name": "r", "metric": "ndcg_at_20", "condition": "<", "threshold": 0.3}])
    assert "rules[0].metric" in str(err.value) and "ndcg_at_10" in str(err.value)
