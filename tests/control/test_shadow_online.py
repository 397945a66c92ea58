"""Both versions scored on the same labelled pairs, outputs read by role (`online_metrics`)."""

from __future__ import annotations

from typing import Any

import pytest

from changeover.control.shadow_analysis import online_metrics

ONNX = {"variable": "prediction"}  # an ONNX regressor: one output "variable", shape [-1, 1]
SKOPS = {"prediction": "prediction"}  # a skops regressor: "prediction", shape [-1]


def row(champion: dict[str, Any], shadow: dict[str, Any] | None, label: Any) -> dict[str, Any]:
    return {"champion_version": 1, "shadow_version": 2, "champion_output": champion, "shadow_output": shadow,
            "label": label}


def test_online_mae_across_names_and_shapes() -> None:
    rows = [row({"variable": [1.0]}, {"prediction": 1.5}, 2.0), row({"variable": [3.0]}, {"prediction": 3.0}, "3")]
    online = online_metrics(rows, {1: ONNX, 2: SKOPS}.get)
    assert online == {"labelled": 2, "metric": "mae", "scored": 2, "champion": 0.5, "shadow": 0.25,
                      "difference": -0.25}
    # without the signatures: the roles are inferred from the answers (each a single numeric output)
    assert online_metrics(rows)["metric"] == "mae"


def test_online_accuracy_by_role() -> None:
    rows = [row({"label": 1}, {"cls": [1.0]}, 1), row({"label": 0}, {"cls": [1]}, "0")]
    online = online_metrics(rows, {1: {"label": "label"}, 2: {"cls": "label"}}.get)
    assert (online["metric"], online["champion"], online["shadow"]) == ("accuracy", 1.0, 0.5)


@pytest.mark.parametrize(("rows", "reason"), [
    ([], "no labelled pair yet"),
    ([row({"prediction": 1.0}, None, 1.0)], "no labelled pair yet"),
    ([row({"prediction": 1.0}, {"prediction": 1.0}, "high")], "no labelled pair with a numeric label"),
    ([row({"items": [1, 2]}, {"items": [2, 1]}, [1])], "ranking feedback is not scored in the shadow report"),
    ([row({"answer": "x"}, {"answer": "y"}, "x")], "no output of role label, probabilities or prediction"),
])
def test_online_says_why_it_has_no_figure(rows: list[dict[str, Any]], reason: str) -> None:
    online = online_metrics(rows)
    assert "metric" not in online and reason in online["reason"]
