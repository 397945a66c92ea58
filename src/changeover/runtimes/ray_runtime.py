"""Versions served by Ray Serve: changeover deploys the artifact as a Ray Serve application
(one per version) and calls it through a deployment handle. Every Ray call is in this module.

``model.yaml``: ``runtime: ray``, ``artifact:`` (or ``predictor:`` for python models), and
optionally ``inner_runtime:`` (skops, onnx, python, pickle; inferred from the artifact when
absent), and optionally ``ray:`` — ``num_replicas`` and each replica's ``num_cpus``,
``num_gpus``, ``memory`` (bytes) and ``max_ongoing_requests`` (checked at push by
`changeover.registry.manifest.ray_options`; default one replica, no CPU reserved).
``CHANGEOVER_RAY_ADDRESS`` joins an existing cluster; without it a local Ray starts.
On a multi-machine cluster the artifacts folder must be on storage every node can read.

Each process that loads a version (a gateway worker, an evaluation job) deploys its own
application, named for the version's artifact and the process (`app_name`): closing one
deletes only that process's, never one that another gateway is still serving from.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from changeover.domain.signature import Signature
from changeover.errors import ArtifactError
from changeover.registry.manifest import Manifest
from changeover.runtimes.base import LoadedModel, LoadRequest, Tensors

_init_lock = threading.Lock()
CALL_TIMEOUT_S = 60.0


class VersionDeployment:
    """The Ray Serve deployment: loads one version with its inner runtime, in a Ray replica."""

    def __init__(self, path: str, inner: str, manifest: dict[str, Any], signature: dict[str, Any] | None,
                 trusted: bool, trusted_types: tuple[str, ...] = ()) -> None:
        from changeover.runtimes import get_runtime

        request = LoadRequest(
            path=Path(path),
            manifest=Manifest(runtime=inner, predictor=manifest.get("predictor"), artifact=manifest.get("artifact"),
                              signature=Signature.from_dict(signature) if signature else None),
            signature=Signature.from_dict(signature) if signature else None,
            trusted=trusted,
            trusted_types=tuple(trusted_types),
        )
        self.model = get_runtime(inner).load(request)

    def signature(self) -> dict[str, Any]:
        return self.model.signature.to_dict()

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.model.predict(inputs).items()}


def deployment_options(ray: Mapping[str, Any]) -> dict[str, Any]:
    """``serve.deployment``'s keyword arguments for one version, from its ``model.yaml``'s
    ``ray:`` section: the replicas and what each reserves. No CPU by default, so a version
    never waits for a CPU that the gateway's own Ray work holds."""
    actor: dict[str, Any] = {"num_cpus": ray.get("num_cpus", 0)}
    for key in ("num_gpus", "memory"):
        if key in ray:
            actor[key] = ray[key]
    options: dict[str, Any] = {"num_replicas": ray.get("num_replicas", 1), "ray_actor_options": actor}
    if "max_ongoing_requests" in ray:
        options["max_ongoing_requests"] = ray["max_ongoing_requests"]
    return options


def app_name(path: Path) -> str:
    """The Ray Serve application of one version in this process: the artifact's path and the
    process (host and pid), so an operator reading ``serve status`` sees whose it is."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return f"changeover-{digest}-{socket.gethostname()[:40]}-{os.getpid()}"


def _ensure_ray() -> None:
    import ray
    from ray import serve

    with _init_lock:
        if not ray.is_initialized():
            address = os.environ.get("CHANGEOVER_RAY_ADDRESS")
            if address:
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
            else:
                ray.init(include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
                         num_cpus=max(2, os.cpu_count() or 2))
            # changeover is the front door: Ray Serve's own HTTP proxy stays off
            serve.start(proxy_location="Disabled")


class RayModel:
    def __init__(self, handle: Any, app_name: str, signature: Signature) -> None:
        self.handle = handle
        self.app_name = app_name
        self.signature = signature

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        return dict(self.handle.predict.remote(dict(inputs)).result(timeout_s=CALL_TIMEOUT_S))

    def close(self) -> None:
        from ray import serve

        with contextlib.suppress(Exception):  # Ray may already be shutting down with the process
            serve.delete(self.app_name)


class RayRuntime:
    name = "ray"

    def load(self, request: LoadRequest) -> LoadedModel:
        from changeover.runtimes import infer_runtime

        if not request.path.is_dir():
            raise ArtifactError("the ray runtime needs a model folder whose model.yaml says runtime: ray")
        manifest = request.manifest
        inner = manifest.extra.get("inner_runtime") or infer_runtime(
            request.path, Manifest(predictor=manifest.predictor, artifact=manifest.artifact))
        if inner == "ray":
            raise ArtifactError("inner_runtime cannot be ray")
        try:
            from ray import serve
        except ImportError:
            raise ArtifactError("the ray runtime needs ray[serve]: pip install 'changeover[ray]'") from None
        _ensure_ray()
        signature = request.signature or manifest.signature
        name = app_name(request.path)
        deployment: Any = serve.deployment(VersionDeployment, name="version",
                                           **deployment_options(manifest.extra.get("ray") or {}))
        app = deployment.bind(str(request.path), inner,
                              {"predictor": manifest.predictor, "artifact": manifest.artifact},
                              signature.to_dict() if signature else None, request.trusted,
                              request.trusted_types)
        handle = serve.run(app, name=name, route_prefix=None)
        if signature is None:
            signature = Signature.from_dict(handle.signature.remote().result(timeout_s=CALL_TIMEOUT_S))
        return RayModel(handle, name, signature)
