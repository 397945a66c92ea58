"""The one Protocol every runtime implements, and what a loaded version looks like."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from changeover.domain.signature import Signature
from changeover.registry.manifest import Manifest

Tensors = Mapping[str, np.ndarray]


class LoadedModel(Protocol):
    signature: Signature

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        """Inputs and answers map tensor names to arrays, batched along the first axis."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class LoadRequest:
    path: Path  # the verified artifact (file or folder)
    manifest: Manifest
    signature: Signature | None  # the signature recorded at push (None while pushing)
    trusted: bool  # the whole artifact is trusted (--trust, or python from an allow-listed folder)
    labels: Mapping[str, str] = field(default_factory=dict)  # the version's labels (remote: its timeout…)
    trusted_types: tuple[str, ...] = ()  # skops: the types trusted at push (--trust-type), exactly these


class Runtime(Protocol):
    name: str

    def load(self, request: LoadRequest) -> LoadedModel: ...


def as_outputs(result: object, signature: Signature) -> dict[str, np.ndarray]:
    """A predictor may answer one array or a mapping; normalise to name -> array."""
    if isinstance(result, Mapping):
        return {str(k): np.asarray(v) for k, v in result.items()}
    name = signature.outputs[0].name if signature.outputs else "output"
    return {name: np.asarray(result)}


def artifact_file(request: LoadRequest) -> Path:
    """The file a runtime loads: the artifact itself, or the one model.yaml names in a folder."""
    if not request.path.is_dir():
        return request.path
    if not request.manifest.artifact:
        from changeover.errors import ArtifactError

        raise ArtifactError(f"{request.path.name}: a model folder must name its file in model.yaml (artifact: …)")
    return request.path / request.manifest.artifact
