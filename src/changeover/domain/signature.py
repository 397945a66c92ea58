"""Signatures: the input and output contract of a version (names, datatypes, shapes).

Datatypes are the Open Inference Protocol's names. A shape uses -1 for "any size";
the first dimension is the batch.

What an input accepts is decided here, once, by `accepts_datatype`: the gateway (and the
compatibility replay) apply it to every request, and `domain.compat` applies it to the
champion's declared datatypes to say whether today's requests still go through. An input
accepts its own datatype and data of a narrower datatype of the same kind of number, a *safe
widening*: floats (FP16 → FP32 → FP64), signed integers (INT8 → … → INT64), unsigned integers
(UINT8 → … → UINT64), and an unsigned integer into a wider signed one (UINT8 → INT16). Those
values are cast to the declared datatype without loss before the version sees them, so a candidate
that widens an input (FP32 → FP64) takes today's FP32 requests unchanged: clients need not
change. Everything else is refused with a 422: a narrowing (FP64 data for an FP32 input: values
would be rounded), a change of kind (integers for a float input, floats for an integer one: a
cast is lossy for some values, and may change what a number means, a category code read as a
magnitude), and any change to or from BOOL or BYTES.

A signature may also say what its answer is: a ``task`` and a ``role`` per output (a ranking
of item ids, its scores, a label, probabilities, a prediction). `domain.roles` holds the roles,
the rule that infers them when they are not declared, and the checks; a signature that declares
a role its tensor cannot hold is refused when it is built. Both are optional, and left out of
`Signature.to_dict` when absent: signatures stored before they existed load unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from changeover.domain import roles as _roles
from changeover.errors import InvalidInput

NUMPY_BY_DATATYPE: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}

DATATYPES = frozenset(NUMPY_BY_DATATYPE)


def accepts_datatype(declared: str, sent: str) -> bool:
    """Whether an input declared ``declared`` takes data sent as ``sent`` (then cast to
    ``declared``): the same datatype, or a safe widening within one kind of number.

    The one rule for what a version accepts: the gateway checks requests with it and
    `domain.compat` judges a signature change with it."""
    if declared == sent:
        return True
    if declared not in NUMPY_BY_DATATYPE or sent not in NUMPY_BY_DATATYPE:
        return False
    if "BYTES" in (declared, sent) or "BOOL" in (declared, sent):
        return False
    to, came = np.dtype(NUMPY_BY_DATATYPE[declared]), np.dtype(NUMPY_BY_DATATYPE[sent])
    if (to.kind == "f") != (came.kind == "f"):
        return False
    return bool(np.can_cast(came, to, casting="safe"))


_DATATYPE_BY_DTYPE: dict[np.dtype[Any], str] = {
    np.dtype(np_type): name for name, np_type in NUMPY_BY_DATATYPE.items() if np_type is not np.object_}


def datatype_of(array: np.ndarray) -> str:
    """The protocol datatype of a NumPy array (strings and objects are BYTES)."""
    kind = array.dtype
    found = _DATATYPE_BY_DTYPE.get(kind)
    if found is not None:
        return found
    if kind.kind in "OUS":
        return "BYTES"
    for dtype, name in _DATATYPE_BY_DTYPE.items():  # an equal dtype of another byte order
        if kind == dtype:
            return name
    raise ValueError(f"no protocol datatype for NumPy dtype {kind}")


def _role_of(data: Mapping[str, Any]) -> str | None:
    """A tensor's declared role: ``role`` (model.yaml, stored signatures), or the ``role``
    parameter of protocol metadata (another server's, read by the remote runtime)."""
    if data.get("role") is not None:
        return str(data["role"])
    params = data.get("parameters")
    role = params.get("role") if isinstance(params, Mapping) else None
    return role if role in _roles.ROLES else None


def _task_of(data: Mapping[str, Any]) -> str | None:
    if data.get("task") is not None:
        return str(data["task"])
    params = data.get("parameters")
    task = params.get("task") if isinstance(params, Mapping) else None
    return task if task in _roles.TASKS else None


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = False
    role: str | None = None
    """Outputs only: what the tensor holds (`domain.roles.ROLES`); None: inferred."""

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise ValueError(f"{self.name}: unknown datatype {self.datatype!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}
        if self.optional:
            out["optional"] = True
        if self.role is not None:
            out["role"] = self.role
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(
            name=str(data["name"]),
            datatype=str(data["datatype"]).upper(),
            shape=tuple(int(d) for d in data.get("shape", [-1])),
            optional=bool(data.get("optional", False)),
            role=_role_of(data),
        )

    def shape_matches(self, shape: Iterable[int]) -> bool:
        shape = tuple(shape)
        if len(shape) != len(self.shape):
            return False
        return all(want in (-1, got) for want, got in zip(self.shape, shape, strict=True))

    def check(self, array: np.ndarray, datatype: str) -> None:
        """Raise InvalidInput when this tensor's datatype or shape does not match."""
        self.conform(array, datatype)

    def conform(self, array: np.ndarray, datatype: str) -> np.ndarray:
        """The array as this input takes it (a safe widening cast to the declared datatype);
        InvalidInput when its datatype is not accepted (`accepts_datatype`) or its shape does
        not match."""
        if not accepts_datatype(self.datatype, datatype):
            raise InvalidInput(self.name, f"datatype {self.datatype}", f"datatype {datatype}")
        if not self.shape_matches(array.shape):
            raise InvalidInput(self.name, f"shape {list(self.shape)}", f"shape {list(array.shape)}")
        if datatype != self.datatype:
            return array.astype(NUMPY_BY_DATATYPE[self.datatype])
        return array


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = field(default_factory=tuple)
    features: tuple[str, ...] = ()
    """Column names of a single 2-D input's second axis, when the model knows them."""
    task: str | None = None
    """ranking, classification or regression, when declared; `task_of` infers it otherwise."""

    def __post_init__(self) -> None:
        problems = [f"input {t.name!r}: roles are for outputs" for t in self.inputs if t.role is not None]
        problems += _roles.role_problems(self.outputs, self.task)
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }
        if self.features:
            out["features"] = list(self.features)
        if self.task is not None:
            out["task"] = self.task
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in data.get("inputs", [])),
            outputs=tuple(TensorSpec.from_dict(t) for t in data.get("outputs", [])),
            features=tuple(str(f) for f in data.get("features", ())),
            task=_task_of(data),
        )

    def output_roles(self) -> dict[str, str | None]:
        """Output name → role, declared or inferred (`domain.roles.output_roles`)."""
        return _roles.output_roles(self.outputs)

    @functools.cached_property
    def roles(self) -> tuple[dict[str, str | None], dict[str, str]]:
        """`output_roles` worked out once (a signature does not change): output name → role,
        and role → the output that holds it. Read them, never change them."""
        by_name = self.output_roles()
        return by_name, {role: name for name, role in by_name.items() if role}

    def output_with_role(self, role: str) -> TensorSpec | None:
        """The output that holds ``role``, declared or inferred; None when none does."""
        name = _roles.tensor_with_role(self.outputs, role)
        return next((t for t in self.outputs if t.name == name), None) if name else None

    def inferred_task(self) -> str | None:
        """The declared task, else the one the output roles make (`domain.roles.task_of`)."""
        return _roles.task_of(self.outputs, self.task)

    def input(self, name: str) -> TensorSpec | None:
        return self._inputs_by_name.get(name)

    @functools.cached_property
    def _inputs_by_name(self) -> dict[str, TensorSpec]:
        by_name: dict[str, TensorSpec] = {}
        for t in self.inputs:
            by_name.setdefault(t.name, t)
        return by_name

    def check_inputs(self, tensors: Mapping[str, tuple[np.ndarray, str]]) -> None:
        """Check decoded request tensors (name -> (array, datatype)) against the inputs."""
        self.conform_inputs(tensors)

    def conform_inputs(self, tensors: Mapping[str, tuple[np.ndarray, str]]) -> dict[str, np.ndarray]:
        """Decoded request tensors (name -> (array, datatype)) as this version takes them:
        checked against the inputs, safe widenings cast to the declared datatypes. InvalidInput
        names the first input that does not fit."""
        conformed: dict[str, np.ndarray] = {}
        for name, (array, datatype) in tensors.items():
            spec = self.input(name)
            if spec is None:
                expected = ", ".join(t.name for t in self.inputs) or "no inputs"
                raise InvalidInput(name, f"one of the inputs [{expected}]", f"unknown input {name!r}")
            conformed[name] = spec.conform(array, datatype)
        for spec in self.inputs:
            if not spec.optional and spec.name not in tensors:
                raise InvalidInput(spec.name, "this input (required)", "no such input in the request")
        for name, (array, _) in tensors.items():
            if array.ndim and array.shape[0] == 0:
                raise InvalidInput(name, "a batch of at least one row", "an empty batch")
        batch_sizes = {array.shape[0] for array, _ in tensors.values() if array.ndim}
        if len(batch_sizes) > 1:
            raise InvalidInput(
                next(iter(tensors)), "the same batch size for every input", f"sizes {sorted(batch_sizes)}"
            )
        return conformed

    def sample_inputs(self, batch: int = 1) -> dict[str, np.ndarray]:
        """A small request built from the signature, to warm a version before it takes traffic."""
        out: dict[str, np.ndarray] = {}
        for spec in self.inputs:
            if spec.optional:
                continue
            shape = tuple(batch if i == 0 else (d if d > 0 else 1) for i, d in enumerate(spec.shape))
            if spec.datatype == "BYTES":
                out[spec.name] = np.full(shape, "", dtype=object)
            else:
                out[spec.name] = np.zeros(shape, dtype=NUMPY_BY_DATATYPE[spec.datatype])
        return out
