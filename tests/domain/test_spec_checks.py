"""A spec checked against the model it rolls out, at apply: every metric name known, every
criterion one that can be judged for this model. Table-driven."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from changeover.domain.comparison import KNOWN_FIGURES
from changeover.domain.signature import Signature, TensorSpec
from changeover.domain.spec import parse_spec
from changeover.domain.spec_checks import model_task, spec_problems

X = (TensorSpec("x", "FP32", (-1, 4)),)
CLASSIFIER = Signature(X, (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP64", (-1, 2))))
PROBA_ONLY = Signature(X, (TensorSpec("probabilities", "FP64", (-1, 2)),))
REGRESSOR = Signature(X, (TensorSpec("prediction", "FP64", (-1,)),))
RANKER = Signature(X, (TensorSpec("scores", "FP32", (-1, 10)),))
TEXT = Signature(X, (TensorSpec("answer", "BYTES", (-1,)),))
UNDECLARED = Signature(X, ())
LIST_RANKER = Signature(X, (TensorSpec("items", "INT64", (-1, 10), role="ranking"),
                            TensorSpec("scores", "FP32", (-1, 10), role="scores")))

# the gate's names for classification (evaluation.metrics.metric_names), as the API passes them
CLASSIFICATION_GATE = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "ece", "latency_p99_ms"]


@pytest.mark.parametrize(("signature", "task"), [
    (CLASSIFIER, "classification"),
    (PROBA_ONLY, "classification"),
    (REGRESSOR, "regression"),
    (Signature(X, (TensorSpec("y", "INT64", (-1,)),)), "regression"),
    (RANKER, "ranking"),
    (Signature(X, (TensorSpec("scores", "FP32", (-1,)),)), "regression"),  # one score per request
    (TEXT, None),
    (UNDECLARED, None),
])
def test_the_kind_of_model_comes_from_its_outputs(signature: Signature, task: str | None) -> None:
    assert model_task(signature) == task


def spec(**parts: Any) -> Any:
    return parse_spec({"model": "m", "candidate": "2", **parts})


GATE = {"data": "holdout.csv", "task": "classification"}
CASES: list[tuple[str, Any, Signature, list[tuple[str, str]]]] = [
    ("nothing to check", spec(), CLASSIFIER, []),
    ("known gate and shadow metrics", spec(
        gate=GATE | {"require": {"accuracy": {"not_worse_than": "champion", "margin": 0.01},
                                 "latency_p99_ms": {"max": 20}}},
        shadow={"sample": 1.0, "until": {"requests": 10},
                "require": {"agreement": {"min": 0.9}, "candidate_error_rate": {"max": 0.01},
                            "worst_segment_agreement": {"min": 0.8}}},
        canary={"judge": {"label_accuracy": {}}}), CLASSIFIER, []),
    ("an unknown gate metric", spec(gate=GATE | {"require": {"acuracy": {"min": 0.9}}}), CLASSIFIER,
     [("gate.require.acuracy", "unknown metric for classification (did you mean 'accuracy'?); known: accuracy")]),
    ("a regression metric in a classification gate", spec(gate=GATE | {"require": {"mae": {"max": 1}}}), CLASSIFIER,
     [("gate.require.mae", "unknown metric for classification")]),
    ("a gate comparison with something else than the champion",
     spec(gate=GATE | {"require": {"accuracy": {"not_worse_than": "previous"}}}), CLASSIFIER,
     [("gate.require.accuracy.not_worse_than", "compares with 'champion' only, not 'previous'")]),
    ("the shadow metric from the field report", spec(
        shadow={"sample": 1.0, "until": {"requests": 10}, "require": {"mae": {"max": 0.5}}}), REGRESSOR,
     [("shadow.require.mae", "unknown shadow metric; known: pairs, compared")]),
    ("an unknown worst-segment metric", spec(
        shadow={"sample": 1.0, "until": {"requests": 10}, "require": {"worst_segment_agreemnt": {"min": 0.5}}}),
     CLASSIFIER, [("shadow.require.worst_segment_agreemnt", "(did you mean 'agreement'?)")]),
    ("agreement on a regressor", spec(
        shadow={"sample": 1.0, "until": {"requests": 10}, "require": {"agreement": {"min": 0.9}}}), REGRESSOR,
     [("shadow.require.agreement", "agreement is measured for classification models only; v2 is a regression "
                                   "model (outputs: prediction (FP64))")]),
    ("a relative difference on a classifier", spec(
        shadow={"sample": 1.0, "until": {"requests": 10}, "require": {"rel_diff_mean": {"max": 0.1}}}), CLASSIFIER,
     [("shadow.require.rel_diff_mean", "measured for regression models only")]),
    ("a ranking figure on a ranker", spec(
        shadow={"sample": 1.0, "until": {"requests": 10}, "require": {"overlap_at_k": {"min": 0.7}}}), RANKER, []),
    ("a figure of every kind of model", spec(
        shadow={"sample": 1.0, "until": {"requests": 10}, "require": {"latency_p99_ratio": {"max": 1.5}}}), RANKER, []),
    ("a shadow rule that compares", spec(
        shadow={"sample": 1.0, "until": {"requests": 10},
                "require": {"agreement": {"not_worse_than": "champion"}}}), CLASSIFIER,
     [("shadow.require.agreement", "takes min and/or max")]),
    ("label accuracy on a regressor", spec(canary={"judge": {"label_accuracy": {}}}), REGRESSOR,
     [("canary.judge.label_accuracy", "needs a classifier: an output named 'label'")]),
    ("label accuracy on a ranker", spec(canary={"judge": {"label_accuracy": {}}}), RANKER,
     [("canary.judge.label_accuracy", "v2 answers scores (FP32)")]),
    ("label accuracy with probabilities only", spec(canary={"judge": {"label_accuracy": {}}}), PROBA_ONLY,
     [("canary.judge.label_accuracy", "needs a classifier")]),
    ("label accuracy when the outputs are not declared", spec(canary={"judge": {"label_accuracy": {}}}),
     UNDECLARED, []),
    ("interleaving a ranker that answers item ids", spec(interleave={"until": {"requests": 10}}),
     LIST_RANKER, []),
    ("interleaving a model without a ranking output", spec(interleave={"until": {"requests": 10}}),
     REGRESSOR, [("interleave", "needs a ranker that answers lists of item ids (an output of role ranking, "
                                "docs/models.md) to merge into the list a user sees; v2 answers prediction (FP64)")]),
    ("interleaving a ranker that only scores", spec(interleave={"until": {"requests": 10}}), RANKER,
     [("interleave", "an output of role ranking")]),
    ("interleaving when the outputs are not declared", spec(interleave={"until": {"requests": 10}}),
     UNDECLARED, []),
    ("every problem at once", spec(
        gate=GATE | {"require": {"ndcg_at_10": {"min": 0.5}}},
        shadow={"sample": 1.0, "until": {"requests": 10}, "require": {"mae": {"max": 1}, "agreement": {"min": 0.9}}},
        canary={"judge": {"label_accuracy": {}}}), REGRESSOR,
     [("gate.require.ndcg_at_10", "unknown metric"), ("shadow.require.mae", "unknown shadow metric"),
      ("shadow.require.agreement", "regression model"), ("canary.judge.label_accuracy", "needs a classifier")]),
]


@pytest.mark.parametrize(("case", "rollout", "signature", "expected"), CASES, ids=[c[0] for c in CASES])
def test_spec_problems(case: str, rollout: Any, signature: Signature, expected: list[tuple[str, str]]) -> None:
    problems = spec_problems(rollout, signature, candidate=2, gate_metrics=CLASSIFICATION_GATE)
    assert [field for field, _ in problems] == [field for field, _ in expected], problems
    for (_, reason), (_, needle) in zip(problems, expected, strict=True):
        assert needle in reason


def test_an_unknown_shadow_metric_lists_every_known_one() -> None:
    rollout = spec(shadow={"sample": 1.0, "until": {"requests": 10}, "require": {"mae": {"max": 1}}})
    ((field, reason),) = spec_problems(rollout, REGRESSOR)
    assert field == "shadow.require.mae"
    assert all(name in reason for name in KNOWN_FIGURES)
    assert "worst_segment_<metric>" in reason


def test_gate_names_are_not_checked_when_the_caller_gives_none() -> None:
    rollout = spec(gate=GATE | {"require": {"anything": {"min": 1}}})
    assert spec_problems(rollout, CLASSIFIER, gate_metrics=None) == []


# The regression criteria are read by name (`canary.judge.mae`, `.rmse`), as any judge criterion.
def judge(**criteria: Any) -> Any:
    return SimpleNamespace(gate=None, shadow=None, canary=SimpleNamespace(judge=SimpleNamespace(**criteria)))


@pytest.mark.parametrize(("criterion", "signature", "reason"), [
    ("mae", REGRESSOR, None),
    ("rmse", REGRESSOR, None),
    ("mae", Signature(X, (TensorSpec("eta_minutes", "FP32", (-1,)),)), None),
    ("mae", CLASSIFIER, "needs a regressor: a numeric prediction to compare with the feedback labels; v2 is a "
                        "classification model (outputs: label (INT64), probabilities (FP64))"),
    ("rmse", PROBA_ONLY, "is a classification model"),
    ("mae", RANKER, "is a ranking model"),
    ("rmse", TEXT, "declares no numeric output (outputs: answer (BYTES))"),
    ("mae", UNDECLARED, None),
])
def test_regression_criteria_need_a_regressor(criterion: str, signature: Signature, reason: str | None) -> None:
    problems = spec_problems(judge(**{criterion: {"max_ratio": 1.1}}), signature, candidate=2)
    if reason is None:
        assert problems == []
    else:
        ((field, why),) = problems
        assert field == f"canary.judge.{criterion}" and reason in why


def test_a_criterion_left_out_is_not_checked() -> None:
    assert spec_problems(judge(mae=None, rmse=None, label_accuracy=None), CLASSIFIER) == []
