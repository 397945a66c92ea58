"""A runtime for unit tests of pure logic: answers from a function, no artifact."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from changeover.domain.signature import Signature, TensorSpec
from changeover.runtimes.base import LoadedModel, LoadRequest, Tensors

SIGNATURE = Signature(
    inputs=(TensorSpec("input", "FP64", (-1, 2)),),
    outputs=(TensorSpec("prediction", "FP64", (-1,)),),
)


class FakeModel:
    def __init__(self, fn: Callable[[Tensors], dict[str, np.ndarray]], signature: Signature = SIGNATURE) -> None:
        self.fn = fn
        self.signature = signature
        self.closed = False

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        return self.fn(inputs)

    def close(self) -> None:
        self.closed = True


class FakeRuntime:
    name = "fake"

    def __init__(self, fn: Callable[[Tensors], dict[str, np.ndarray]] | None = None) -> None:
        self.fn = fn or (lambda inputs: {"prediction": np.asarray(inputs["input"]).sum(axis=1)})

    def load(self, request: LoadRequest) -> LoadedModel:
        return FakeModel(self.fn, request.signature or SIGNATURE)
