"""Backward compatibility of a candidate's signature with the champion's. Pure.

Today's requests are taken to be what the champion declares. Breaking: a new required input, a
removed input, an input datatype the candidate does not accept from today's requests, a changed
input shape, or a changed or removed output. Not breaking: a new optional input, a wider input
datatype within one kind of number (FP32 → FP64: the gateway casts today's data to it), a new
output.

Whether an input datatype change breaks is decided by `signature.accepts_datatype`, the very
rule the gateway applies to every request, and a shape change by `TensorSpec.shape_matches`,
the gateway's shape check: compat says "breaking" exactly when the gateway would refuse
today's requests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from changeover.domain.signature import Signature, TensorSpec, accepts_datatype


@dataclass(frozen=True)
class Change:
    kind: str  # e.g. "input_removed", "input_datatype_narrower", "output_shape_changed"
    tensor: str
    detail: str
    breaking: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_widening(old: str, new: str) -> bool:
    """True when an input that was ``old`` and is now ``new`` still takes today's ``old`` data
    (the gateway's rule, `accepts_datatype`)."""
    return accepts_datatype(new, old)


def _datatype_change(name: str, old: str, new: str) -> Change:
    if accepts_datatype(new, old):
        return Change("input_datatype_wider", name, f"{old} -> {new}: the gateway casts today's {old} data to {new}",
                      False)
    kind = "input_datatype_narrower" if accepts_datatype(old, new) else "input_datatype_changed"
    return Change(kind, name, f"{old} -> {new}: the gateway refuses today's {old} data for an input declared {new}", True)


def _shape_compatible(old: TensorSpec, new: TensorSpec) -> bool:
    """Every shape the old signature accepted is accepted by the new one: the gateway's own
    shape check (`TensorSpec.shape_matches`), with the old declared shape as the request's
    (a -1 there matches only a -1)."""
    return new.shape_matches(old.shape)


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
            changes.append(_datatype_change(name, old.datatype, new.datatype))
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
