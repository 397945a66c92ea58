"""One version's answer, read by output role: what the shadow compares. Pure.

A shadow pair keeps each version's answer as the gateway summarises it (`gateway.summary.summarize`):
output name → the first request row's value. The shadow never matches outputs by name or shape:
`by_role` turns an answer into role → value with the version's output roles (`domain.roles`:
declared in its signature, else inferred there), so an output ``variable`` of shape ``[-1, 1]``
and an output ``prediction`` of shape ``[-1]`` are both the *prediction*, and a ranking held in
``recs`` is compared with one held in ``items``. A version whose signature declares no outputs
has its roles inferred from the answer itself (`answer_roles`: the output names and what their
values hold, by the rule of `domain.roles`).

`read` turns a role-keyed answer into what the comparison needs for a task, or says why it cannot:

- classification: the label (role ``label``, else the arg-max of the probabilities) and a score,
  the positive-class probability (two classes) or the top probability (more classes);
- regression: the prediction (role ``prediction``), a finite number; ``[-1]`` and ``[-1, 1]``
  are the same answer;
- ranking: the item ids of role ``ranking``, best first, matched by their text
  (`ranking_comparison.ranked_keys`), and the score of the top item (role ``scores``, aligned
  with the ranking) when there are scores. Positions in a list of scores are never item ids.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from changeover.domain.ranking_comparison import ranked_keys
from changeover.domain.roles import output_roles

__all__ = ["CLASSIFICATION", "RANKING", "REGRESSION", "Answer", "answer_roles", "by_role", "label_key", "read",
           "task_of_answer"]

CLASSIFICATION, REGRESSION, RANKING = "classification", "regression", "ranking"


@dataclass(frozen=True)
class _Seen:
    """An output as its summarised first row shows it: enough for `roles.output_roles`."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    role: str | None = None


def _squeeze(value: Any) -> Any:
    """A list holding one list is that list: ``[[0.2, 0.8]]`` is the row ``[0.2, 0.8]``."""
    while isinstance(value, list | tuple) and len(value) == 1 and isinstance(value[0], list | tuple):
        value = value[0]
    return value


def _unwrap(value: Any) -> Any:
    """One value per row: ``x``, ``[x]`` and ``[[x]]`` are the same answer."""
    while isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    return value


def _datatype(value: Any) -> str | None:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FP64"
    if isinstance(value, str):
        return "BYTES"
    return None


def _seen(name: str, value: Any) -> _Seen | None:
    value = _squeeze(value)
    if isinstance(value, list | tuple):
        first = next(iter(value), None)
        datatype = _datatype(first) if first is not None else "FP64"
        if isinstance(first, list | tuple):
            return _Seen(name, _datatype(next(iter(first), 0.0)) or "FP64", (-1, len(value), len(first)))
        return None if datatype is None else _Seen(name, datatype, (-1, len(value)))
    datatype = _datatype(value)
    return None if datatype is None else _Seen(name, datatype, (-1,))


def answer_roles(answer: Mapping[str, Any]) -> dict[str, str | None]:
    """Output name → role, inferred from the answer alone (for a version that declares no outputs)."""
    seen = [s for name, value in answer.items() if value is not None and (s := _seen(name, value)) is not None]
    return output_roles(seen)


def by_role(answer: Mapping[str, Any] | None, roles: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """Role → value of one answer. ``roles``: the version's output name → role (its signature's);
    None or empty: inferred from the answer (`answer_roles`)."""
    if not answer:
        return {}
    roles = roles or answer_roles(answer)
    return {role: answer[name] for name, role in roles.items()
            if role and name in answer and answer[name] is not None}


def task_of_answer(roles: Mapping[str, Any]) -> str | None:
    """The task an answer can be compared as, from the roles it holds (as `roles.task_of`)."""
    if "ranking" in roles:
        return RANKING
    if "label" in roles or "probabilities" in roles:
        return CLASSIFICATION
    if "prediction" in roles:
        return REGRESSION
    return None


@dataclass(frozen=True)
class Answer:
    """What one version said, ready to compare."""

    score: float = math.nan  # the number whose distribution is compared (NaN: none)
    label: str | None = None  # classification
    ranking: tuple[str, ...] = ()  # ranking: item keys, best first


def label_key(value: Any) -> str:
    """A label as text, the same for both versions and for feedback: ``1``, ``1.0`` and ``[1]`` are "1"."""
    value = _unwrap(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a label 1 from one version and 1.0 from the other agree
    if isinstance(value, str) or type(value) is int:
        return str(value)
    return json.dumps(value, default=str)


def _number(value: Any) -> float | None:
    value = _unwrap(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _numbers(value: Any) -> list[float] | None:
    value = _squeeze(value)
    if not isinstance(value, list | tuple) or not value:
        return None
    out = [_number(v) for v in value]
    return None if any(x is None for x in out) else [x for x in out if x is not None]


def _classification(roles: Mapping[str, Any]) -> Answer | str:
    probs = None
    if "probabilities" in roles:
        probs = _numbers(roles["probabilities"])
        if probs is None or not all(map(math.isfinite, probs)):
            return "probabilities are not a list of finite numbers"
    score = math.nan
    if probs:
        score = probs[1] if len(probs) == 2 else max(probs)
    if "label" in roles:
        return Answer(score, label_key(roles["label"]))
    if probs:
        return Answer(score, str(max(range(len(probs)), key=probs.__getitem__)))
    return "no output of role label or probabilities"


def _regression(roles: Mapping[str, Any]) -> Answer | str:
    if "prediction" not in roles:
        return "no output of role prediction"
    x = _number(roles["prediction"])
    if x is None or not math.isfinite(x):
        return f"the prediction is not one finite number ({str(roles['prediction'])[:40]})"
    return Answer(x)


def _ranking(roles: Mapping[str, Any]) -> Answer | str:
    if "ranking" not in roles:
        return "no output of role ranking (a list of item ids)"
    items = _squeeze(roles["ranking"])
    items = items if isinstance(items, list | tuple) else [items]
    try:
        keys = tuple(ranked_keys(items))
    except ValueError as exc:
        return str(exc)[:120]
    score = math.nan
    if "scores" in roles:
        scores = _numbers(roles["scores"])
        if scores is None or not all(map(math.isfinite, scores)):
            return "scores are not a list of finite numbers"
        score = scores[0] if scores else math.nan  # aligned with the ranking: the top item's
    return Answer(score, ranking=keys)


_READERS = {CLASSIFICATION: _classification, REGRESSION: _regression, RANKING: _ranking}


def read(task: str, roles: Mapping[str, Any]) -> Answer | str:
    """The answer (role → value, `by_role`) as ``task`` compares it, or why it cannot be."""
    return _READERS[task](roles)
