"""`better_than` with `margin` (docs/rollout-spec.md): "better than the champion by more than the
margin" — the whole interval of candidate − champion lies past the margin on the good side."""

from __future__ import annotations

import pytest

from changeover.domain.spec import parse_spec
from changeover.evaluation.rules import MetricComparison, evaluate_rules, validate_rules


def comp(name: str, ci: tuple[float, float], higher: bool = True) -> MetricComparison:
    return MetricComparison(name=name, champion=0.9, candidate=0.9 + sum(ci) / 2, diff=sum(ci) / 2,
                            ci_low=ci[0], ci_high=ci[1], higher_is_better=higher)


RULE = {"better_than": "champion", "margin": 0.01}


@pytest.mark.parametrize(("comparison", "passes"), [
    (comp("accuracy", (0.02, 0.05)), True),    # better by more than 0.01 for sure
    (comp("accuracy", (0.005, 0.05)), False),  # better, but perhaps by less than the margin
    (comp("accuracy", (0.01, 0.05)), False),   # touching the margin is not past it
    (comp("log_loss", (-0.05, -0.02), higher=False), True),
    (comp("log_loss", (-0.05, -0.005), higher=False), False),
])
def test_better_than_by_a_margin(comparison: MetricComparison, passes: bool) -> None:
    [result] = evaluate_rules({comparison.name: RULE}, {comparison.name: comparison}, has_champion=True)
    assert result.passed is passes, result.reason
    assert result.rule == f"{comparison.name} better than champion by more than 0.01"
    assert result.threshold == 0.01
    limit = "0.01" if comparison.higher_is_better else "-0.01"
    assert f"{limit} (the margin)" in result.reason
    if not passes:
        assert "no evidence of an improvement by more than 0.01" in result.reason


def test_without_a_margin_better_than_still_means_past_zero() -> None:
    [result] = evaluate_rules({"accuracy": {"better_than": "champion"}}, {"accuracy": comp("accuracy", (0.001, 0.02))},
                              has_champion=True)
    assert result.passed and result.reason.endswith("wholly above zero.") and result.threshold is None


def test_the_gate_and_the_spec_parser_both_accept_it() -> None:
    validate_rules({"accuracy": RULE}, "classification", [5, 10])  # raised "margin only goes with not_worse_than"
    spec = parse_spec({"model": "m", "candidate": "2",
                       "gate": {"data": "h.csv", "task": "classification", "require": {"accuracy": RULE}}})
    assert spec.gate is not None and spec.gate.require["accuracy"].margin == 0.01
