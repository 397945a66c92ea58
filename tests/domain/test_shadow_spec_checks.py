"""At apply, a shadow's ranking requirements are accepted for a ranker that answers lists of
item ids, and refused, naming the field, for any other model."""

from __future__ import annotations

from typing import Any

import pytest

from changeover.domain.signature import Signature, TensorSpec
from changeover.domain.spec import parse_spec
from changeover.domain.spec_checks import shadow_task, spec_problems

USER = (TensorSpec("user_id", "INT64", (-1,)),)
LISTS = Signature(USER, (TensorSpec("items", "INT64", (-1, 10), role="ranking"),
                         TensorSpec("scores", "FP32", (-1, 10), role="scores")), task="ranking")
RENAMED = Signature(USER, (TensorSpec("recs", "BYTES", (-1, 10), role="ranking"),))
ROW_SCORER = Signature((TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("score", "FP32", (-1,), role="prediction"),),
                       task="ranking")  # a ranker that scores one (query, item) row at a time
REGRESSOR = Signature((TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("variable", "FP32", (-1, 1)),))
CLASSIFIER = Signature((TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("label", "INT64", (-1,)),))


def shadow(require: dict[str, Any]) -> Any:
    return parse_spec({"model": "m", "candidate": "2",
                       "shadow": {"sample": 1.0, "until": {"requests": 10}, "require": require}})


@pytest.mark.parametrize(("signature", "task"), [
    (LISTS, "ranking"), (RENAMED, "ranking"), (ROW_SCORER, "regression"), (REGRESSOR, "regression"),
    (CLASSIFIER, "classification"), (Signature(USER, ()), None),
])
def test_the_shadow_reads_the_kind_of_model_from_its_roles(signature: Signature, task: str | None) -> None:
    assert shadow_task(signature) == task


RANKING = {"overlap_at_10": {"min": 0.6}, "rbo": {"min": 0.7}, "kendall_tau": {"min": 0.5},
           "worst_segment_overlap_at_10": {"min": 0.4}}


@pytest.mark.parametrize("signature", [LISTS, RENAMED], ids=["items", "renamed"])
def test_ranking_figures_are_accepted_for_a_ranker(signature: Signature) -> None:
    assert spec_problems(shadow(RANKING), signature, candidate=2) == []
    assert spec_problems(shadow({"overlap_at_k": {"min": 0.5}, "rank_correlation": {"min": 0}}), signature) == []


@pytest.mark.parametrize("signature", [ROW_SCORER, REGRESSOR, CLASSIFIER], ids=["row-scorer", "regressor", "classifier"])
def test_ranking_figures_are_refused_for_a_non_ranker_naming_the_field(signature: Signature) -> None:
    problems = spec_problems(shadow(RANKING), signature, candidate=2)
    assert [field for field, _ in problems] == [f"shadow.require.{name}" for name in RANKING]
    for _, reason in problems:
        assert "measured for rankers that answer lists of item ids (an output of role ranking) only; v2 is a" in reason


def test_a_misspelt_ranking_figure_is_named() -> None:
    ((field, reason),) = spec_problems(shadow({"overlap_at_01": {"min": 0.5}}), LISTS)
    assert field == "shadow.require.overlap_at_01" and "did you mean 'overlap_at_10'?" in reason
