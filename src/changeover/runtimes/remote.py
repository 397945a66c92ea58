"""A version served by another server that speaks the Open Inference Protocol v2
(KServe, Triton, MLServer, or another changeover). All its HTTP goes through one client."""

from __future__ import annotations

import httpx
import numpy as np

from changeover import oip
from changeover.domain.signature import Signature
from changeover.errors import ArtifactError
from changeover.runtimes.base import LoadedModel, LoadRequest, Tensors


class RemoteModel:
    def __init__(self, url: str, model: str, signature: Signature, transport: httpx.BaseTransport | None = None) -> None:
        self.signature = signature
        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=10.0, transport=transport)
        self.model = model

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        body = {"inputs": [oip.encode_tensor(name, np.asarray(a)) for name, a in inputs.items()]}
        response = self.client.post(f"/v2/models/{self.model}/infer", json=body)
        response.raise_for_status()
        return {o["name"]: oip.decode_tensor(o)[0] for o in response.json()["outputs"]}

    def close(self) -> None:
        self.client.close()


class RemoteRuntime:
    name = "remote"

    def __init__(self, transport: httpx.BaseTransport | None = None) -> None:
        self.transport = transport

    def load(self, request: LoadRequest) -> LoadedModel:
        url = request.manifest.extra.get("url")
        remote_model = request.manifest.extra.get("remote_model")
        if not url or not remote_model:
            raise ArtifactError("the remote runtime needs url and remote_model in model.yaml")
        signature = request.signature or request.manifest.signature
        if signature is None:
            with httpx.Client(base_url=url, timeout=10.0, transport=self.transport) as client:
                meta = client.get(f"/v2/models/{remote_model}").raise_for_status().json()
            signature = Signature.from_dict(meta)
        return RemoteModel(url, remote_model, signature, self.transport)
