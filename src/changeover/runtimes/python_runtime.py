"""A folder with a predictor class (``module:Class`` with ``load(folder)`` and ``predict(inputs)``).

The predictor is code that runs inside the server: a folder loads only when its version is
trusted (pushed with ``--trust``, or from a folder in ``CHANGEOVER_TRUSTED_FOLDERS``)."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from typing import Any

import numpy as np

from changeover.domain.signature import Signature
from changeover.errors import ArtifactError, UntrustedArtifact
from changeover.runtimes.base import LoadedModel, LoadRequest, Tensors, as_outputs


class PythonModel:
    def __init__(self, predictor: Any, signature: Signature, module_name: str | None = None) -> None:
        self.predictor = predictor
        self.signature = signature
        self.module_name = module_name

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        return as_outputs(self.predictor.predict(dict(inputs)), self.signature)

    def close(self) -> None:
        close = getattr(self.predictor, "close", None)
        if callable(close):
            close()
        if self.module_name is not None:  # an unloaded version leaves no module behind
            sys.modules.pop(self.module_name, None)


class PythonRuntime:
    name = "python"

    def load(self, request: LoadRequest) -> LoadedModel:
        if not request.trusted:  # before anything of the folder is imported
            raise UntrustedArtifact(
                f"{request.path.name} is a python-runtime folder whose version is not trusted: its predictor is "
                "code. Push it with --trust only if you trust its author, or from a folder in "
                "CHANGEOVER_TRUSTED_FOLDERS"
            )
        folder = request.path
        target = request.manifest.predictor
        if not folder.is_dir() or not target or ":" not in target:
            raise ArtifactError("the python runtime needs a folder whose model.yaml names predictor: module:Class")
        signature = request.signature or request.manifest.signature
        if signature is None:
            raise ArtifactError("the python runtime needs inputs and outputs declared in model.yaml")
        module_name, class_name = target.split(":", 1)
        file = folder / (module_name.replace(".", "/") + ".py")
        if not file.is_file():
            raise ArtifactError(f"predictor module {module_name!r} not found in the folder ({file.name})")
        # a unique module name per load: two versions of one model never share module state
        unique = f"changeover_predictor_{uuid.uuid4().hex}"
        spec = importlib.util.spec_from_file_location(unique, file)
        if spec is None or spec.loader is None:
            raise ArtifactError(f"cannot import {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
        cls = getattr(module, class_name, None)
        if cls is None:
            raise ArtifactError(f"{module_name} has no class {class_name!r}")
        predictor = cls()
        predictor.load(str(folder))
        return PythonModel(predictor, signature, unique)
