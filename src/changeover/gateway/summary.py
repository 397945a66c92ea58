"""What the request log and the shadow pairs keep of an answer: the first row of each output,
a ranking's item ids, and one number per request for the prediction distribution. One shape,
shared by the data plane and the mirror."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from changeover.domain.roles import output_roles
from changeover.domain.signature import Signature, TensorSpec, datatype_of

__all__ = ["MAX_LOGGED_IDS", "answer_roles", "summarize"]


MAX_LOGGED_IDS = 100  # a ranking in the request log: its first ids, enough to join feedback to


def answer_roles(outputs: Mapping[str, np.ndarray], signature: Signature | None) -> dict[str, str | None]:
    """Output name → role: the signature's, else inferred from the arrays' names and types."""
    if signature is not None and signature.outputs:
        return signature.roles[0]
    specs = []
    for name, array in outputs.items():
        a = np.asarray(array)
        try:
            specs.append(TensorSpec(name, datatype_of(a), tuple(-1 if i == 0 else d for i, d in enumerate(a.shape))))
        except ValueError:
            return {}
    return output_roles(specs)


def _first_row(array: np.ndarray) -> Any:
    first = array[0] if array.ndim and array.shape[0] else array
    value = first.tolist() if isinstance(first, np.ndarray) else (first.item() if hasattr(first, "item") else first)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    elif isinstance(value, list) and array.dtype.kind in "OS":  # only these hold bytes
        value = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in value]
    return value


def summarize(outputs: Mapping[str, np.ndarray], signature: Signature | None = None) -> tuple[dict[str, Any], float | None]:
    """The first row of each output (kept in the request log for feedback joins), and one
    number per request for the prediction distribution.

    A ranking (the output whose role is ``ranking``, `domain.roles`) is also kept under the key
    ``ranking``: the first row's item ids, at most `MAX_LOGGED_IDS` of them, as are its scores
    under the output's own name. The number is the positive-class probability (probabilities
    of two classes), the top item's score (a ranking with scores; none for a ranking without),
    the prediction, or else the first number of the first output."""
    if signature is not None and signature.outputs:  # the common case: worked out once per signature
        roles, by_role = signature.roles
        if not all(name in outputs for name in by_role.values()):
            by_role = {role: name for role, name in by_role.items() if name in outputs}
    else:
        roles = answer_roles(outputs, signature)
        by_role = {role: name for name, role in roles.items() if role and name in outputs}
    row: dict[str, Any] = {}
    for name, array in outputs.items():
        value = _first_row(array if isinstance(array, np.ndarray) else np.asarray(array))
        if isinstance(value, list) and roles.get(name) in ("ranking", "scores"):
            value = value[:MAX_LOGGED_IDS]
        row[name] = value
    if "ranking" in by_role:
        ids = row[by_role["ranking"]]
        row["ranking"] = ids if isinstance(ids, list) else [ids]
    number: float | None = None
    proba = outputs.get(by_role.get("probabilities", "probabilities"))
    if proba is not None and not isinstance(proba, np.ndarray):
        proba = np.asarray(proba)
    if proba is not None and proba.ndim == 2 and proba.shape[1] == 2:
        number = float(proba[0, 1])
    elif "ranking" in by_role:
        scores = outputs.get(by_role["scores"]) if "scores" in by_role else None
        if scores is not None and np.asarray(scores).size:
            number = float(np.asarray(scores).reshape(-1)[0])
    else:
        first = outputs.get(by_role["prediction"]) if "prediction" in by_role else next(iter(outputs.values()), None)
        if first is not None:
            first = np.asarray(first)
            if first.size and first.dtype.kind in "fiub":
                number = float(first.reshape(-1)[0])
    if number is not None and not math.isfinite(number):
        number = None
    return row, number
