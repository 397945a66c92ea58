"""``model.yaml``: what an artifact that carries no signature (or the python runtime) declares."""

from __future__ import annotations

import math
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
              "deployment", "inner_runtime", "ray"}
# ``ray:`` (runtime ray): Ray Serve's replicas and each replica's resources, for this version
RAY_OPTIONS: dict[str, tuple[type | tuple[type, ...], float, str]] = {
    "num_replicas": (int, 1, "an integer ≥ 1"),
    "num_cpus": ((int, float), 0, "a number ≥ 0"),
    "num_gpus": ((int, float), 0, "a number ≥ 0"),
    "memory": (int, 0, "an integer ≥ 0 (bytes)"),
    "max_ongoing_requests": (int, 1, "an integer ≥ 1"),
}


@dataclass(frozen=True)
class Manifest:
    runtime: str | None = None
    predictor: str | None = None
    artifact: str | None = None
    signature: Signature | None = None
    task: str | None = None  # also when the signature comes from the artifact (no inputs here)
    extra: dict[str, Any] = field(default_factory=dict)  # runtime-specific: url, remote_model, deployment, ray


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
    if "ray" in data:
        extra["ray"] = ray_options(data["ray"], data.get("runtime"), path)
    return Manifest(
        runtime=data.get("runtime"),
        predictor=data.get("predictor"),
        artifact=data.get("artifact"),
        signature=signature,
        task=task,
        extra=extra,
    )


def ray_options(value: Any, runtime: Any, path: Path) -> dict[str, Any]:
    """The ``ray:`` section, checked at push so that a bad value is refused naming its field
    (``ray.num_replicas``) rather than failing inside Ray Serve on a later load."""
    if runtime is not None and runtime != "ray":
        raise ArtifactError(f"{path}: ray: only for runtime: ray (this folder says runtime: {runtime})")
    if not isinstance(value, dict):
        raise ArtifactError(f"{path}: ray: expected a mapping such as {{num_replicas: 2, num_cpus: 0.5}}")
    unknown = set(value) - set(RAY_OPTIONS)
    if unknown:
        raise ArtifactError(f"{path}: ray: unknown keys {sorted(map(str, unknown))}; known: {sorted(RAY_OPTIONS)}")
    for key, item in value.items():
        kinds, least, expected = RAY_OPTIONS[key]
        number: Any = item  # checked as a number below (a bool is an int to Python, not here)
        if isinstance(number, bool) or not isinstance(item, kinds) or not math.isfinite(number) or number < least:
            raise ArtifactError(f"{path}: ray.{key}: expected {expected}, got {item!r}")
    return dict(value)


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
