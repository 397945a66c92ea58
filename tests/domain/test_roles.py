"""Output roles and the task: declared, inferred by the documented rule, and checked. Table-driven."""

from __future__ import annotations

import numpy as np
import pytest

from changeover.domain.roles import output_roles, per_row, role_problems, task_of, tensor_with_role
from changeover.domain.signature import Signature, TensorSpec


def out(name: str, datatype: str, shape: tuple[int, ...], role: str | None = None) -> TensorSpec:
    return TensorSpec(name, datatype, shape, role=role)


@pytest.mark.parametrize(
    ("outputs", "roles"),
    [
        # scikit-learn classifier and regressor (skops, pickle)
        ([out("label", "INT64", (-1,)), out("probabilities", "FP64", (-1, 2))],
         {"label": "label", "probabilities": "probabilities"}),
        ([out("prediction", "FP64", (-1,))], {"prediction": "prediction"}),
        # an ONNX regressor: one numeric output, [-1, 1], named by the converter
        ([out("variable", "FP32", (-1, 1))], {"variable": "prediction"}),
        # a ranker of item ids, with and without aligned scores; the three names of a ranking
        ([out("items", "INT64", (-1, 10)), out("scores", "FP32", (-1, 10))], {"items": "ranking", "scores": "scores"}),
        ([out("ranking", "BYTES", (-1, 5))], {"ranking": "ranking"}),
        ([out("item_ids", "INT32", (-1, -1))], {"item_ids": "ranking"}),
        # scores with no ranking beside them: one score per (query, item) row is a prediction
        ([out("scores", "FP32", (-1,))], {"scores": "prediction"}),
        # …and a score per item index is no role at all (not one value per row)
        ([out("scores", "FP32", (-1, 100))], {"scores": None}),
        # a single output that is not a number, or not one value per row
        ([out("answer", "BYTES", (-1,))], {"answer": None}),
        ([out("embedding", "FP32", (-1, 64))], {"embedding": None}),
        # two unnamed outputs (ONNX from skl2onnx): the rule does not guess
        ([out("output_label", "INT64", (-1,)), out("output_probability", "FP32", (-1, 2))],
         {"output_label": None, "output_probability": None}),
        # a name whose tensor cannot hold the role gets none (old signatures still load)
        ([out("ranking", "FP32", (-1, 10)), out("label", "INT64", (-1,))], {"ranking": None, "label": "label"}),
        ([out("probability", "INT64", (-1, 2))], {"probability": None}),
        # declared roles win over names, and take the role from any later name
        ([out("top", "INT64", (-1, 10), role="ranking"), out("items", "INT64", (-1, 10))],
         {"top": "ranking", "items": None}),
        ([out("y", "FP64", (-1,), role="prediction"), out("label", "INT64", (-1,))], {"y": "prediction", "label": "label"}),
        # one role per output: the first name keeps it
        ([out("items", "INT64", (-1, 3)), out("item_ids", "INT64", (-1, 3))], {"items": "ranking", "item_ids": None}),
    ],
)
def test_roles_are_declared_or_inferred_by_the_rule(outputs: list[TensorSpec], roles: dict[str, str | None]) -> None:
    assert output_roles(outputs) == roles


@pytest.mark.parametrize(
    ("outputs", "declared", "task"),
    [
        ([out("items", "INT64", (-1, 10)), out("scores", "FP32", (-1, 10))], None, "ranking"),
        ([out("label", "INT64", (-1,))], None, "classification"),
        ([out("probabilities", "FP64", (-1, 3))], None, "classification"),
        ([out("prediction", "FP64", (-1,))], None, "regression"),
        ([out("scores", "FP32", (-1,))], "ranking", "ranking"),  # a ranker scoring one row at a time
        ([out("embedding", "FP32", (-1, 64))], None, None),
        ([], None, None),
    ],
)
def test_the_task_is_declared_or_follows_the_roles(outputs: list[TensorSpec], declared: str | None,
                                                   task: str | None) -> None:
    assert task_of(outputs, declared) == task


@pytest.mark.parametrize(
    ("outputs", "task", "problem"),
    [
        ([out("x", "INT64", (-1, 10), role="rank")], None, "output 'x': unknown role 'rank'"),
        ([out("x", "FP32", (-1, 10), role="ranking")], None, "role ranking holds item ids: datatype BYTES or INT32 or INT64"),
        ([out("x", "INT64", (-1,), role="ranking")], None, "role ranking has shape [-1, k]"),
        ([out("x", "INT64", (-1, 10), role="ranking"), out("s", "INT64", (-1, 10), role="scores")], None,
         "role scores holds scores: datatype FP32 or FP64"),
        ([out("s", "FP32", (-1, 10), role="scores")], None, "role scores needs an output of role ranking"),
        ([out("items", "INT64", (-1, 10)), out("scores", "FP32", (-1, 5), role="scores")], None,
         "5 scores per row for 10 items"),
        ([out("p", "INT64", (-1, 2), role="probabilities")], None, "role probabilities holds floats"),
        ([out("y", "BYTES", (-1,), role="prediction")], None, "role prediction holds a number per row"),
        ([out("y", "FP32", (-1, 3), role="prediction")], None, "shape [-1] or [-1, 1]"),
        ([out("a", "INT64", (-1,), role="label"), out("b", "INT64", (-1,), role="label")], None,
         "outputs 'a' and 'b' both declare role label"),
        ([out("label", "INT64", (-1,))], "clustering", "task: 'clustering' is not one of"),
    ],
)
def test_a_declared_role_its_tensor_cannot_hold_is_named(outputs: list[TensorSpec], task: str | None,
                                                         problem: str) -> None:
    problems = role_problems(outputs, task)
    assert any(problem in p for p in problems), problems
    with pytest.raises(ValueError, match="output|task"):
        Signature(inputs=(TensorSpec("x", "FP32", (-1, 2)),), outputs=tuple(outputs), task=task)


@pytest.mark.parametrize(
    "outputs",
    [
        [out("items", "INT64", (-1, 10), role="ranking"), out("s", "FP64", (-1, 10), role="scores")],
        [out("items", "BYTES", (-1, -1)), out("scores", "FP32", (-1, 10))],  # k unknown on one side
        [out("label", "BOOL", (-1, 1), role="label")],
        [out("y", "FP16", (-1, 1), role="prediction")],
    ],
)
def test_roles_that_fit_have_no_problem(outputs: list[TensorSpec]) -> None:
    assert role_problems(outputs) == []


def test_an_input_cannot_declare_a_role() -> None:
    with pytest.raises(ValueError, match="input 'x': roles are for outputs"):
        Signature(inputs=(TensorSpec("x", "INT64", (-1,), role="ranking"),))


def test_tensor_with_role_and_per_row() -> None:
    outputs = [out("items", "INT64", (-1, 10)), out("scores", "FP32", (-1, 10))]
    assert tensor_with_role(outputs, "ranking") == "items"
    assert tensor_with_role(outputs, "label") is None
    # [-1, 1] and [-1] are the same answer
    assert per_row(np.array([[1.5], [2.5]])).tolist() == per_row(np.array([1.5, 2.5])).tolist() == [1.5, 2.5]
    assert per_row(np.zeros((2, 3))).shape == (2, 3)
