"""What one labelled request says about the version that served it. Pure.

A served request's summary (the first row's outputs) and the label or reward its feedback
carried give one outcome: the served ranking scored against the clicked or relevant items
(an answer with a ``ranking``: a ranker; `ranking_feedback.score_ranking`), right or wrong
(an output named ``label``: a classification), an error |label − prediction| (a numeric
output, ``prediction`` first: a regression), and the reward. The judge and the online metrics read the same outcome, so they cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from changeover.domain.ranking_feedback import score_ranking

RANKING_KS = (5, 10)

__all__ = ["Outcome", "number", "outcome", "predicted_label", "predicted_number", "same_label"]


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def predicted_label(output: Mapping[str, Any] | None) -> Any:
    if not output or "label" not in output:
        return None
    value = output["label"]
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def predicted_number(output: Mapping[str, Any] | None) -> float | None:
    if not output:
        return None
    for key in ("prediction", *output):
        value = output.get(key)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        found = number(value)
        if found is not None:
            return found
    return None


def same_label(label: Any, predicted: Any) -> bool:
    """Labels compare as numbers when both are numbers, else as text (1 and "1" are equal)."""
    a, b = number(label), number(predicted)
    if a is not None and b is not None:
        return a == b
    return str(label) == str(predicted)


@dataclass(frozen=True)
class Outcome:
    correct: bool | None = None  # classification: the label was predicted
    error: float | None = None  # regression: |label − prediction|
    reward: float | None = None
    ranking: Mapping[str, float | None] | None = None  # a ranker: score_ranking's figures


def outcome(output: Mapping[str, Any] | None, label: Any, reward: Any) -> Outcome:
    """The outcome of one served request given its feedback (label and/or reward)."""
    correct: bool | None = None
    error: float | None = None
    served = (output or {}).get("ranking")
    if label is not None and isinstance(served, list) and isinstance(label, list | dict):
        try:
            scores = score_ranking(served, label, RANKING_KS)
        except (TypeError, ValueError):  # feedback that names no item ids: no outcome
            scores = None
        return Outcome(ranking=scores, reward=number(reward))
    if label is not None:
        predicted = predicted_label(output)
        if predicted is not None:
            correct = same_label(label, predicted)
        else:
            truth, guess = number(label), predicted_number(output)
            if truth is not None and guess is not None:
                error = abs(truth - guess)
    return Outcome(correct, error, number(reward))
