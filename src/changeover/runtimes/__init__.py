"""Runtimes: what loads an artifact and predicts. One module per runtime, one Protocol."""

from __future__ import annotations

from pathlib import Path

from changeover.errors import ArtifactError
from changeover.registry.manifest import Manifest
from changeover.runtimes.base import LoadedModel, LoadRequest, Runtime

__all__ = ["LoadRequest", "LoadedModel", "Runtime", "get_runtime", "infer_runtime", "RUNTIME_NAMES"]

RUNTIME_NAMES = ("skops", "onnx", "python", "pickle", "remote", "ray", "mlflow")
SUFFIXES = {".skops": "skops", ".onnx": "onnx", ".pkl": "pickle", ".pickle": "pickle", ".joblib": "pickle"}


def infer_runtime(path: Path, manifest: Manifest) -> str:
    """The runtime an artifact asks for: model.yaml's word first, then the file's suffix."""
    if manifest.runtime:
        if manifest.runtime not in RUNTIME_NAMES:
            raise ArtifactError(f"unknown runtime {manifest.runtime!r}; known: {', '.join(RUNTIME_NAMES)}")
        return manifest.runtime
    target = path / manifest.artifact if path.is_dir() and manifest.artifact else path
    if target.suffix in SUFFIXES:
        return SUFFIXES[target.suffix]
    if path.is_dir() and manifest.predictor:
        return "python"
    raise ArtifactError(
        f"cannot tell the runtime of {path.name}: use a .skops, .onnx, .pkl/.joblib file, "
        "a folder whose model.yaml names a predictor, or --runtime"
    )


def get_runtime(name: str) -> Runtime:
    if name == "skops":
        from changeover.runtimes.skops_runtime import SkopsRuntime

        return SkopsRuntime()
    if name == "onnx":
        from changeover.runtimes.onnx_runtime import OnnxRuntime

        return OnnxRuntime()
    if name == "python":
        from changeover.runtimes.python_runtime import PythonRuntime

        return PythonRuntime()
    if name == "pickle":
        from changeover.runtimes.pickle_runtime import PickleRuntime

        return PickleRuntime()
    if name == "remote":
        from changeover.runtimes.remote import RemoteRuntime

        return RemoteRuntime()
    if name == "ray":
        from changeover.runtimes.ray_runtime import RayRuntime

        return RayRuntime()
    if name == "mlflow":  # MLflow pyfunc folders (registry/mlflow_source.py chooses it); imports mlflow on load
        from changeover.runtimes.mlflow_runtime import MlflowRuntime

        return MlflowRuntime()
    raise ArtifactError(f"unknown runtime {name!r}; known: {', '.join(RUNTIME_NAMES)}")
