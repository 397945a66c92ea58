"""Backward compatibility of a candidate's signature with the champion's. Pure.

Breaking: a new required input, a removed input, a narrower input datatype, a changed input
shape, or a changed or removed output. Not breaking: a new optional input, a wider input
datatype (the gateway casts safely), a new output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from changeover.domain.signature import NUMPY_BY_DATATYPE, Signature, TensorSpec


@dataclass(frozen=True)
class Change:
    kind: str  # e.g. "input_removed", "input_datatype_narrower", "output_shape_changed"
    tensor: str
    detail: str
    breaking: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_widening(old: str, new: str) -> bool:
    """True when every value of ``old`` fits ``new`` without loss, within one kind of number."""
    if old == new:
        return True
    if "BYTES" in (old, new) or "BOOL" in (old, new):
        return False
    a, b = np.dtype(NUMPY_BY_DATATYPE[old]), np.dtype(NUMPY_BY_DATATYPE[new])
    same_family = (a.kind == "f") == (b.kind == "f")
    return same_family and bool(np.can_cast(a, b, casting="safe"))


def _shape_compatible(old: TensorSpec, new: TensorSpec) -> bool:
    """Every shape the old signature accepted is accepted by the new one."""
    if len(old.shape) != len(new.shape):
        return False
    return all(n == -1 or o == n for o, n in zip(old.shape, new.shape, strict=True))


def compare_signatures(champion: Signature, candidate: Signature) -> list[Change]:
    changes: list[Change] = []
    old_inputs = {t.name: t for t in champion.inputs}
    new_inputs = {t.name: t for t in candidate.inputs}
    for name, old in old_inputs.items():
        new = new_inputs.get(name)
        if new is None:
            changes.append(Change("input_removed", name, f"today's requests send {name!r}; the candidate has no such input", True))
            continue
        if old.datatype != new.datatype:
            widening = is_widening(old.datatype, new.datatype)
            kind = "input_datatype_wider" if widening else "input_datatype_narrower"
            changes.append(Change(kind, name, f"{old.datatype} -> {new.datatype}", not widening))
        if not _shape_compatible(old, new):
            changes.append(Change("input_shape_changed", name, f"{list(old.shape)} -> {list(new.shape)}", True))
    for name, new in new_inputs.items():
        if name in old_inputs:
            continue
        if new.optional:
            changes.append(Change("input_added_optional", name, "a new optional input", False))
        else:
            changes.append(Change("input_added_required", name, "a new required input that today's requests lack", True))
    if champion.features and candidate.features and champion.features != candidate.features:
        changes.append(Change("features_changed", "features", "the feature columns differ (names or order)", True))
    old_outputs = {t.name: t for t in champion.outputs}
    new_outputs = {t.name: t for t in candidate.outputs}
    for name, old in old_outputs.items():
        new = new_outputs.get(name)
        if new is None:
            changes.append(Change("output_removed", name, f"clients read {name!r}; the candidate no longer answers it", True))
            continue
        if old.datatype != new.datatype:
            changes.append(Change("output_datatype_changed", name, f"{old.datatype} -> {new.datatype}", True))
        if old.shape != new.shape:
            changes.append(Change("output_shape_changed", name, f"{list(old.shape)} -> {list(new.shape)}", True))
    for name in new_outputs.keys() - old_outputs.keys():
        changes.append(Change("output_added", name, "a new output", False))
    return changes
