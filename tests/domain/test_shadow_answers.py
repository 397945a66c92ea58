"""Answers read by output role, whatever the outputs are named or shaped. Table-driven."""

from __future__ import annotations

import math
from typing import Any

import pytest

from changeover.domain.shadow_answers import Answer, answer_roles, by_role, label_key, read, task_of_answer


@pytest.mark.parametrize(("answer", "roles"), [
    ({"variable": [2.5]}, {"variable": "prediction"}),  # ONNX: [-1, 1]
    ({"prediction": 2.5}, {"prediction": "prediction"}),  # skops: [-1]
    ({"label": 1, "probabilities": [0.2, 0.8]}, {"label": "label", "probabilities": "probabilities"}),
    ({"items": [3, 1], "scores": [0.9, 0.1], "ranking": [3, 1]}, {"items": "ranking", "scores": "scores",
                                                                  "ranking": None}),  # the gateway's copy
    ({"scores": [0.9, 0.1]}, {"scores": None}),  # scores with no ranking beside: no role
    ({"answer": "text"}, {"answer": None}),
    ({"a": 1.0, "b": 2.0}, {"a": None, "b": None}),  # two unnamed numbers: neither is *the* prediction
])
def test_roles_inferred_from_an_answer(answer: dict[str, Any], roles: dict[str, str | None]) -> None:
    assert answer_roles(answer) == roles


def test_declared_roles_win_over_names() -> None:
    answer = {"recs": [5, 4], "s": [0.5, 0.4], "prediction": 1.0}
    assert by_role(answer, {"recs": "ranking", "s": "scores", "prediction": None}) == {
        "ranking": [5, 4], "scores": [0.5, 0.4]}
    assert by_role(answer, {}) == by_role(answer) == {"prediction": 1.0}  # no roles given: inferred from names
    assert by_role(None) == {} and by_role({"x": None}, {"x": "prediction"}) == {}


@pytest.mark.parametrize(("task", "roles", "expected"), [
    ("regression", {"prediction": [2.5]}, Answer(2.5)),
    ("regression", {"prediction": [[2.5]]}, Answer(2.5)),
    ("regression", {"prediction": float("nan")}, "the prediction is not one finite number (nan)"),
    ("regression", {"label": 1}, "no output of role prediction"),
    ("classification", {"label": 1.0, "probabilities": [0.3, 0.7]}, Answer(0.7, "1")),
    ("classification", {"probabilities": [0.1, 0.2, 0.7]}, Answer(0.7, "2")),
    ("classification", {"probabilities": [0.1, float("nan")]}, "probabilities are not a list of finite numbers"),
    ("ranking", {"ranking": [3, "4", 5], "scores": [0.9, 0.5, 0.1]}, Answer(0.9, ranking=("3", "4", "5"))),
    ("ranking", {"ranking": [[3, 4]]}, Answer(math.nan, ranking=("3", "4"))),
    ("ranking", {"ranking": [3, 3]}, "ranking: item 3 appears twice (positions 1 and 2)"),
    ("ranking", {"ranking": [3.5, 2]}, "item ids must be ints or strings, got 3.5 (float)"),
    ("ranking", {"scores": [0.9, 0.1]}, "no output of role ranking (a list of item ids)"),
])
def test_read(task: str, roles: dict[str, Any], expected: Answer | str) -> None:
    got = read(task, roles)
    if isinstance(expected, str):
        assert got == expected
    else:
        assert isinstance(got, Answer)
        assert (got.label, got.ranking) == (expected.label, expected.ranking)
        assert got.score == pytest.approx(expected.score, nan_ok=True)


@pytest.mark.parametrize(("roles", "task"), [
    ({"ranking": [1], "prediction": 1.0}, "ranking"), ({"label": 1}, "classification"),
    ({"probabilities": [0.5, 0.5]}, "classification"), ({"prediction": 1.0}, "regression"), ({}, None),
])
def test_task_of_answer(roles: dict[str, Any], task: str | None) -> None:
    assert task_of_answer(roles) == task


def test_label_key() -> None:
    assert label_key(1) == label_key(1.0) == label_key([1]) == label_key("1") == "1"
    assert label_key("cat") == "cat" and label_key(1.5) == "1.5"
