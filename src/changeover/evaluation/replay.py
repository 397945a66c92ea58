"""Replay of recorded production requests through a candidate: does it read today's
traffic, are its answers valid, and how do they differ from what production answered?"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from changeover import oip
from changeover.runtimes.base import LoadedModel


@dataclass
class OutputDiff:
    compared: int = 0
    equal: int = 0
    abs_diffs: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = np.asarray(self.abs_diffs) if self.abs_diffs else None
        return {
            "compared": self.compared,
            "agreement": self.equal / self.compared if self.compared else None,
            "mean_abs_diff": float(d.mean()) if d is not None else None,
            "p99_abs_diff": float(np.percentile(d, 99)) if d is not None else None,
            "max_abs_diff": float(d.max()) if d is not None else None,
        }


@dataclass
class ReplayReport:
    requests: int = 0
    errors: int = 0
    invalid_outputs: int = 0
    error_examples: list[dict[str, str]] = field(default_factory=list)
    invalid_examples: list[dict[str, str]] = field(default_factory=list)
    error_kinds: Counter[str] = field(default_factory=Counter)
    diffs: dict[str, OutputDiff] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.invalid_outputs == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else None,
            "invalid_outputs": self.invalid_outputs,
            "error_kinds": dict(self.error_kinds),
            "error_examples": self.error_examples[:5],
            "invalid_examples": self.invalid_examples[:5],
            "differences": {name: d.to_dict() for name, d in self.diffs.items()},
        }


def _invalid(model: LoadedModel, outputs: dict[str, np.ndarray], batch: int) -> str | None:
    for spec in model.signature.outputs:
        if spec.name not in outputs:
            return f"output {spec.name!r} missing"
    for name, array in outputs.items():
        array = np.asarray(array)
        if array.ndim == 0 or array.shape[0] != batch:
            return f"output {name!r} has shape {list(array.shape)}, expected batch {batch}"
        declared = next((s for s in model.signature.outputs if s.name == name), None)
        if declared is not None and not declared.shape_matches(array.shape):
            return (
                f"output {name!r} has shape {list(array.shape)}, signature says {list(declared.shape)}"
            )
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            return f"output {name!r} has NaN or infinity"
    return None


def replay(model: LoadedModel, recorded: list[dict[str, Any]]) -> ReplayReport:
    """Send each recorded request (inputs as the gateway recorded them) through ``model``."""
    report = ReplayReport()
    for row in recorded:
        report.requests += 1
        rid = str(row.get("request_id"))
        try:
            decoded = {t["name"]: oip.decode_tensor(t) for t in row["inputs"]}
            inputs = model.signature.conform_inputs(decoded)  # what the gateway would hand the version
            batch = next(iter(inputs.values())).shape[0]
            outputs = {k: np.asarray(v) for k, v in model.predict(inputs).items()}
        except Exception as exc:
            report.errors += 1
            report.error_kinds[type(exc).__name__] += 1
            report.error_examples.append(
                {"request_id": rid, "error": f"{type(exc).__name__}: {exc}"[:300]}
            )
            continue
        problem = _invalid(model, outputs, batch)
        if problem:
            report.invalid_outputs += 1
            report.invalid_examples.append({"request_id": rid, "problem": problem})
            continue
        for answer in row.get("answer") or []:
            name = answer["name"]
            if name not in outputs:
                continue
            old = np.asarray(
                [np.nan if v is None else v for v in answer["data"]]
                if answer["datatype"] != "BYTES"
                else answer["data"]
            ).reshape(-1)
            new = outputs[name].reshape(-1)
            diff = report.diffs.setdefault(name, OutputDiff())
            if old.shape != new.shape:
                continue
            diff.compared += 1
            if old.dtype.kind in "fiub" and new.dtype.kind in "fiub":
                delta = np.abs(old.astype(np.float64) - new.astype(np.float64))
                diff.abs_diffs.append(float(np.nanmax(delta)) if delta.size else 0.0)
                diff.equal += int(
                    np.allclose(old.astype(np.float64), new.astype(np.float64), equal_nan=True)
                )
            else:
                diff.equal += int(np.array_equal(old.astype(str), new.astype(str)))
    return report
