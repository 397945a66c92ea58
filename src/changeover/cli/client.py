"""The CLI's one seam to the outside: the public Python client (`changeover.client`), as the
CLI's actor, answering the server's JSON as it came (what ``--json`` prints)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from changeover.client import ChangeoverApiError
from changeover.client import Client as PythonClient
from changeover.domain.names import check_name
from changeover.errors import InvalidRequest
from changeover.registry.manifest import bundle_sidecar
from changeover.settings import Settings

ApiError = ChangeoverApiError  # what every command catches: status, message, body, field, conflict


class Client:
    def __init__(self, settings: Settings | None = None, *, url: str | None = None, token: str | None = None,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None) -> None:
        self.api = PythonClient(url, token, timeout=timeout, actor="cli", settings=settings, transport=transport)
        self.settings, self.url, self.http = self.api.settings, self.api.url, self.api.http

    def close(self) -> None:
        self.api.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The server's JSON answer (None for an empty one); a ChangeoverApiError of its kind,
        with the server's message, for anything else."""
        return self.api.request(method, path, **kwargs)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def push(self, path: Path, *, name: str, labels: dict[str, str], runtime: str | None, trust: bool,
             trust_types: Sequence[str] = ()) -> Any:
        """``trust``: the whole artifact (a pickle, a python folder, any skops type); ``trust_types``:
        skops types by name. A folder's absolute path goes along: the server trusts a python folder
        without ``trust`` when that path is in its CHANGEOVER_TRUSTED_FOLDERS and holds the same bytes."""
        import tempfile

        params: dict[str, Any] = {"filename": path.name, "trust": trust, "label": [f"{k}={v}" for k, v in labels.items()]}
        if runtime:
            params["runtime"] = runtime
        if trust_types:
            params["trust_type"] = list(trust_types)
        if path.is_dir():
            params["origin"] = str(path.resolve())
        with tempfile.TemporaryDirectory() as tmp:
            source = bundle_sidecar(path, Path(tmp))
            if source.is_dir():
                buffer = io.BytesIO()
                with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
                    for item in sorted(source.rglob("*")):
                        if "__pycache__" not in item.parts:
                            archive.add(item, arcname=item.relative_to(source).as_posix(), recursive=False)
                params["folder"] = True
                params["filename"] = path.name + ".tar.gz"
                content = buffer.getvalue()
            else:
                content = source.read_bytes()
        return self.request("POST", f"/api/models/{name}/versions", params=params, content=content)

    def rollout(self, model: str, rollout_id: int | None = None) -> dict[str, Any] | None:
        """A rollout of ``model`` with its analyses and events: ``rollout_id``, else the latest
        (None when the model has none). A rollout of another model is a 404."""
        if rollout_id is None:
            rows = self.get("/api/rollouts", model=model, limit=1)
            return rows[0] if rows else None
        found: dict[str, Any] = self.get(f"/api/rollouts/{rollout_id}")
        if found["model"] != model:
            raise ApiError(404, f"rollout {rollout_id} is of model {found['model']!r}, not {model!r}")
        return found

    def timeseries(self, model: str, *, since: float, until: float) -> dict[str, Any]:
        """Per version and time bucket between two Unix times: traffic, errors, latency, the
        online metric, shadow agreement (the dashboard's charts)."""
        result: dict[str, Any] = self.get(f"/api/models/{model}/timeseries", since=since, until=until)
        return result


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a model name (the rule the server applies), or None: the CLI checks
    it before any request."""
    try:
        check_name(name)
    except InvalidRequest as exc:
        return exc.reason
    return None
