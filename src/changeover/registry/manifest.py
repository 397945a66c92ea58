"""``model.yaml``: what an artifact that carries no signature (or the python runtime) declares."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from changeover.domain.roles import TASKS
from changeover.domain.signature import Signature, TensorSpec
from changeover.errors import ArtifactError

MANIFEST = "model.yaml"
KNOWN_KEYS = {"runtime", "predictor", "artifact", "inputs", "outputs", "features", "task", "url", "remote_model",
              "deployment", "inner_runtime"}


@dataclass(frozen=True)
class Manifest:
    runtime: str | None = None
    predictor: str | None = None
    artifact: str | None = None
    signature: Signature | None = None
    task: str | None = None  # also when the signature comes from the artifact (no inputs here)
    extra: dict[str, Any] = field(default_factory=dict)  # runtime-specific: url, remote_model, deployment


def manifest_path(artifact: Path) -> Path | None:
    """``model.yaml`` inside a folder; for a file, ``NAME.yaml`` or ``model.yaml`` beside it."""
    candidates = [artifact / MANIFEST] if artifact.is_dir() else [
        artifact.with_name(artifact.name + ".yaml"),
        artifact.with_name(MANIFEST),
    ]
    return next((p for p in candidates if p.is_file()), None)


def read_manifest(artifact: Path) -> Manifest:
    path = manifest_path(artifact)
    if path is None:
        return Manifest()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ArtifactError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a mapping at the top level")
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise ArtifactError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(KNOWN_KEYS)}")
    signature = None
    task = data.get("task")
    if task is not None and task not in TASKS:
        raise ArtifactError(f"{path}: task {task!r} is not one of {', '.join(TASKS)}")
    if "inputs" in data:
        try:
            signature = Signature(
                inputs=tuple(TensorSpec.from_dict(x) for x in data["inputs"]),
                outputs=tuple(TensorSpec.from_dict(x) for x in data.get("outputs", [])),
                features=tuple(str(f) for f in data.get("features", ())),
                task=task,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{path}: bad inputs/outputs ({exc})") from exc
    extra = {k: data[k] for k in ("url", "remote_model", "deployment", "inner_runtime") if k in data}
    return Manifest(
        runtime=data.get("runtime"),
        predictor=data.get("predictor"),
        artifact=data.get("artifact"),
        signature=signature,
        task=task,
        extra=extra,
    )


def bundle_sidecar(path: Path, workdir: Path) -> Path:
    """A file with a model.yaml beside it becomes a folder holding both, so the signature
    travels with the artifact and is covered by its checksum."""
    sidecar = manifest_path(path) if path.is_file() else None
    if sidecar is None:
        return path
    import yaml

    folder = workdir / "bundle"
    folder.mkdir()
    shutil.copyfile(path, folder / path.name)
    data = yaml.safe_load(sidecar.read_text()) or {}
    data.setdefault("artifact", path.name)
    (folder / MANIFEST).write_text(yaml.safe_dump(data))
    return folder
