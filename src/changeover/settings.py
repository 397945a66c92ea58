"""All of changeover's settings, in one place (environment prefix ``CHANGEOVER_``)."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _list(value: Any, separator: str) -> Any:
    """A list setting from the environment: a JSON list, or items joined by ``separator``."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [item.strip() for item in text.split(separator) if item.strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHANGEOVER_", extra="ignore")

    home: Path = Field(default=Path(".changeover"))
    """Where the store (SQLite by default), the artifacts and the token live."""

    store: str | None = None
    """SQLAlchemy URL of the store; default: SQLite in the home (``sqlite:///HOME/store.db``)."""

    token: str | None = None
    """The management token. When unset, one is generated on first start and kept in the home."""

    url: str = "http://127.0.0.1:8080"
    """Where the CLI finds the server."""

    grpc_port: int | None = None
    """Port of the Open Inference Protocol's gRPC service (``serve --grpc-port``); unset: none."""

    max_body_bytes: int = 8 * 1024 * 1024
    """Inference requests with a larger body are refused with 413 (gRPC: RESOURCE_EXHAUSTED)."""

    max_json_bytes: int = Field(default=1024 * 1024, ge=0)
    """Management requests (JSON under ``/api/``) with a larger body are refused with 413 before
    they are read, token or not: a body is read whole before it is parsed."""

    max_artifact_bytes: int = Field(default=4 * 1024**3, ge=0)
    """A push's artifact (``POST /api/models/NAME/versions``) larger than this is refused with 413."""

    max_data_bytes: int = Field(default=1024**3, ge=0)
    """Held-out data (``validate``, ``POST /api/data``) larger than this is refused with 413."""

    require_token_for_inference: bool = False
    """When true, inference and feedback also need the management token."""

    feedback_token: str | None = None
    """When set, ``POST /v1/feedback`` needs ``Authorization: Bearer <this token>`` (or the
    management token): only the services that know the truth can label requests."""

    record_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    """Share of live requests recorded with their inputs, for compatibility replay."""

    record_retention_days: float = 7.0
    """Recorded requests older than this are pruned."""

    record_max_rows: int = 100_000
    """At most this many recorded requests (with inputs) are kept per model."""

    request_log_max_rows: int = 1_000_000
    """At most this many served-request rows (for feedback joins) are kept."""

    segment: str | None = "header:x-changeover-segment"
    """Where a request's segment is read (``header:NAME`` or ``input:NAME``), kept in the request
    log for per-segment online metrics; empty: none."""

    shadow_queue_size: int = 256
    """Mirrored calls waiting for a shadow; past this a mirror is dropped and counted."""

    shadow_concurrency: int = 4
    """Shadow calls running at once, per gateway."""

    worker_threads_per_version: int = Field(default=8, ge=1)
    """Worker threads predicting at once, per loaded version (each version has its own: a slow
    backend fills only its own); more requests to that version wait their turn."""

    shadow_timeout_s: float = 1.0
    """A shadow call that takes longer is abandoned and counted as a timeout."""

    window_seconds: float = 5.0
    """Metric windows are flushed to the store this often."""

    controller_tick_s: float = 1.0
    """The controller reconciles at least this often (and at once on every change)."""

    policy_poll_s: float = 2.0
    """Gateways poll for a new traffic policy generation this often (fallback to notifications)."""

    alert_rules: Path | None = None
    """A YAML/JSON file of alert rules (see docs/monitoring.md); none by default."""

    alert_interval_s: float = 10.0
    """Alert rules and monitoring gauges are evaluated this often."""

    artifacts: str | None = None
    """Where artifacts live. Unset: the home's ``artifacts/`` folder (one replica, or homes on one
    shared file system). ``db``: content-addressed blobs in the store's database (table
    ``artifact_blobs``), so every replica on one PostgreSQL sees every push. A URL
    (``s3://bucket/prefix``, or any fsspec URL): objects there (``pip install 'changeover[s3]'``).
    The shared ones keep a checked local copy of what was loaded in the home's ``artifacts/``."""

    artifacts_options: dict[str, Any] = Field(default_factory=dict)
    """JSON options for the URL's fsspec file system (s3fs: ``{"endpoint_url": "http://…",
    "key": "…", "secret": "…"}``); unset: its defaults (AWS_* variables, FSSPEC_S3_* settings)."""

    trust_pickle: bool = False
    """Allow pickle artifacts whose version was not pushed with --trust (never recommended)."""

    trusted_folders: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    """Folders on the server's disk whose python-runtime models the operator trusts: a python
    folder pushed from inside one (and holding the same bytes there) needs no ``--trust``; its
    predictor is code that runs in the server. A JSON list, or paths joined by ``:``."""

    data_folders: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    """Folders on the server's disk a rollout spec's ``gate.data`` may name, beside the home's
    ``data/`` folder (where ``POST /api/data`` keeps uploads, as ``changeover apply`` sends a local
    file): a path outside them, once symlinks and ``..`` are resolved, is refused (422), so a
    token cannot make the server read any file it can. A JSON list, or paths joined by ``:``."""

    skops_trusted_types: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Types trusted in every skops push, beside skops' own trusted set (e.g.
    ``sklearn.tree._tree.Tree`` for tree models); a push records the ones its file needed, and
    every later load of that version trusts exactly those. A JSON list, or names joined by ``,``."""

    @field_validator("trusted_folders", "data_folders", mode="before")
    @classmethod
    def _folders(cls, value: Any) -> Any:
        return _list(value, os.pathsep)

    @field_validator("skops_trusted_types", mode="before")
    @classmethod
    def _types(cls, value: Any) -> Any:
        return _list(value, ",")

    @cached_property
    def store_url(self) -> str:
        if self.store:
            return self.store
        return f"sqlite:///{(self.home / 'store.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def data_dir(self) -> Path:
        """Held-out data sent to the server (``POST /api/data``), content-addressed; always readable
        by a spec's ``gate.data``."""
        return self.home / "data"

    @property
    def token_file(self) -> Path:
        return self.home / "token"
