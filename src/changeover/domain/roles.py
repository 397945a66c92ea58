"""Output roles and the task of a version: what each output of an answer *is*, so that every
stage (gateway log, gate, shadow, feedback) reads an answer the same way, whatever its name. Pure.

A signature may declare ``task`` (``ranking``, ``classification`` or ``regression``) and a
``role`` per output tensor:

| role | holds | datatypes | shape |
| --- | --- | --- | --- |
| ``ranking`` | item ids per request row, best first | INT64, INT32, BYTES | ``[-1, k]`` |
| ``scores`` | one score per item of the ``ranking`` output, aligned with it | FP32, FP64 | ``[-1, k]`` |
| ``label`` | the predicted class | any | ``[-1]`` or ``[-1, 1]`` |
| ``probabilities`` | one probability per class | FP16, FP32, FP64 | ``[-1, n_classes]`` |
| ``prediction`` | one number per row | a number (not BOOL, not BYTES) | ``[-1]`` or ``[-1, 1]`` |

``[-1]`` and ``[-1, 1]`` are the same answer for ``label`` and ``prediction``: one value per row
(`per_row` flattens either). A declared role that its tensor cannot hold is an error
(`role_problems`). An output that declares none gets one by this rule (`output_roles`), first
match wins, and none when its tensor does not fit the role:

1. named ``label`` → label; ``probabilities`` or ``probability`` → probabilities;
   ``ranking``, ``items`` or ``item_ids`` → ranking; ``prediction`` → prediction;
2. named ``scores``, beside an output whose role is ranking → scores;
3. the only output of the signature, numeric, one value per row → prediction.

Each role is held by at most one output (declared twice is an error; inferred twice, the first
output keeps it). The task, when not declared, follows the roles (`task_of`): a ranking output
makes a ranker, a label or probabilities a classifier, a prediction a regressor. A ranker that
scores one (query, item) row at a time declares ``task: ranking`` over a ``prediction`` output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

__all__ = [
    "ITEM_DATATYPES",
    "RANKING_NAMES",
    "ROLES",
    "TASKS",
    "Tensor",
    "output_roles",
    "per_row",
    "role_problems",
    "roles_by_name",
    "task_of",
    "tensor_with_role",
]

TASKS = ("classification", "regression", "ranking")
ROLES = ("ranking", "scores", "label", "probabilities", "prediction")
ITEM_DATATYPES = frozenset({"INT64", "INT32", "BYTES"})
FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})
NOT_NUMBERS = frozenset({"BOOL", "BYTES"})
RANKING_NAMES = ("ranking", "items", "item_ids")

_BY_NAME = {
    "label": "label",
    "probabilities": "probabilities",
    "probability": "probabilities",
    "prediction": "prediction",
    **{name: "ranking" for name in RANKING_NAMES},
}


class Tensor(Protocol):
    """What a role is judged on: an output's name, datatype, shape and declared role."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def role(self) -> str | None: ...


def _one_per_row(shape: Sequence[int]) -> bool:
    return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)


def _misfit(role: str, datatype: str, shape: Sequence[int]) -> str | None:
    """Why a tensor of this datatype and shape cannot hold ``role``; None when it can."""
    shape = tuple(shape)
    if role in ("ranking", "scores"):
        allowed = ITEM_DATATYPES if role == "ranking" else frozenset({"FP32", "FP64"})
        if datatype not in allowed:
            what = "item ids" if role == "ranking" else "scores"
            return f"role {role} holds {what}: datatype {' or '.join(sorted(allowed))}, not {datatype}"
        if len(shape) != 2:
            return f"role {role} has shape [-1, k] (a list per request row), not {list(shape)}"
        return None
    if role == "probabilities":
        if datatype not in FLOAT_DATATYPES:
            return f"role probabilities holds floats (FP16, FP32, FP64), not {datatype}"
        if len(shape) != 2:
            return f"role probabilities has shape [-1, n_classes], not {list(shape)}"
        return None
    if role == "prediction" and datatype in NOT_NUMBERS:
        return f"role prediction holds a number per row, not {datatype}"
    if not _one_per_row(shape):
        return f"role {role} has one value per row: shape [-1] or [-1, 1], not {list(shape)}"
    return None


def role_problems(outputs: Sequence[Tensor], task: str | None = None) -> list[str]:
    """Every problem with the declared task and roles, each naming the output; [] when none."""
    problems: list[str] = []
    if task is not None and task not in TASKS:
        problems.append(f"task: {task!r} is not one of {', '.join(TASKS)}")
    holders: dict[str, str] = {}
    for t in outputs:
        if t.role is None:
            continue
        if t.role not in ROLES:
            problems.append(f"output {t.name!r}: unknown role {t.role!r}; known: {', '.join(ROLES)}")
            continue
        misfit = _misfit(t.role, t.datatype, t.shape)
        if misfit:
            problems.append(f"output {t.name!r}: {misfit}")
        if t.role in holders:
            problems.append(f"outputs {holders[t.role]!r} and {t.name!r} both declare role {t.role}")
        holders.setdefault(t.role, t.name)
    roles = output_roles(outputs) if not problems else {}
    by_role = {role: name for name, role in roles.items() if role}
    if "scores" in by_role and "ranking" not in by_role:
        problems.append(f"output {by_role['scores']!r}: role scores needs an output of role ranking beside it")
    if "scores" in by_role and "ranking" in by_role:
        shapes = {t.name: tuple(t.shape) for t in outputs}
        k_scores, k_ranking = shapes[by_role["scores"]][1], shapes[by_role["ranking"]][1]
        if -1 not in (k_scores, k_ranking) and k_scores != k_ranking:
            problems.append(f"output {by_role['scores']!r}: {k_scores} scores per row for "
                            f"{k_ranking} items in {by_role['ranking']!r}; scores align with the ranking")
    return problems


def output_roles(outputs: Sequence[Tensor]) -> dict[str, str | None]:
    """Output name → role (declared, else inferred by the rule in this module's docstring;
    None when no role applies), in the order of ``outputs``."""
    roles: dict[str, str | None] = {t.name: t.role if t.role in ROLES else None for t in outputs}
    taken = {role for role in roles.values() if role}

    def give(t: Tensor, role: str) -> None:
        if roles[t.name] is None and role not in taken and _misfit(role, t.datatype, t.shape) is None:
            roles[t.name] = role
            taken.add(role)

    for t in outputs:
        if t.name in _BY_NAME:
            give(t, _BY_NAME[t.name])
    if "ranking" in taken:
        for t in outputs:
            if t.name == "scores":
                give(t, "scores")
    if len(outputs) == 1:
        give(outputs[0], "prediction")
    return roles


def tensor_with_role(outputs: Sequence[Tensor], role: str) -> str | None:
    """The name of the output that holds ``role`` (declared or inferred), or None."""
    return next((name for name, r in output_roles(outputs).items() if r == role), None)


def task_of(outputs: Sequence[Tensor], declared: str | None = None) -> str | None:
    """The declared task, else the one the roles make (ranking, then classification, then
    regression); None when the outputs say nothing."""
    if declared is not None:
        return declared
    roles = set(output_roles(outputs).values())
    if "ranking" in roles:
        return "ranking"
    if roles & {"label", "probabilities"}:
        return "classification"
    if "prediction" in roles:
        return "regression"
    return None


def per_row(array: Any) -> np.ndarray:
    """A label or prediction as one value per row: ``[-1, 1]`` and ``[-1]`` are the same answer."""
    a = np.asarray(array)
    if a.ndim == 2 and a.shape[1] == 1:
        return a.reshape(-1)
    return a


def roles_by_name(outputs: Sequence[Tensor]) -> Mapping[str, str]:
    """Role → output name, for the roles some output holds."""
    return {role: name for name, role in output_roles(outputs).items() if role}
