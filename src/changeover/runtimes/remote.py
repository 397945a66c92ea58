"""A version served by another server that speaks the Open Inference Protocol v2
(KServe, Triton, MLServer, or another changeover).

Each loaded remote version owns its backend's client: a bounded connection pool, its
timeout, and a circuit breaker (`domain.breaker`), all set from the version's labels
(`remote_config`, docs/models.md "Remote versions"). A failure raises a domain error that
says what failed: `BackendFailed` (502: the backend refused the connection or answered
badly) or `BackendUnavailable` (503 with Retry-After: it timed out, or its breaker is open
and the call was not sent). Only connection failures are retried (the request was never
sent); a timed-out infer never is. The breaker tells ``on_breaker(state, info)`` when it
opens and when it closes again (the gateway writes those as events)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from changeover import oip
from changeover.domain.breaker import Breaker, BreakerConfig, Transition, retry_after_header
from changeover.domain.signature import Signature
from changeover.errors import ArtifactError, BackendFailed, BackendUnavailable
from changeover.runtimes.base import LoadedModel, LoadRequest, Tensors

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 2.0  # connecting takes at most this (or the version's timeout, if shorter)
RETRY_BACKOFF_S = 0.05  # before the first retry of a failed connection; doubled for each next one

BreakerHook = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    timeout_s: float = 5.0
    max_connections: int = 8
    retries: int = 2
    breaker: BreakerConfig = field(default_factory=BreakerConfig)


def _number(labels: Mapping[str, str], key: str, default: float, low: float, high: float,
            integer: bool = False) -> Any:
    raw = labels.get(key)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ValueError(f"label {key}={raw!r}: expected {'an integer' if integer else 'a number'}") from None
    if not low <= value <= high:
        raise ValueError(f"label {key}={raw!r}: expected a value from {low:g} to {high:g}")
    return value


def remote_config(labels: Mapping[str, str]) -> RemoteConfig:
    """A remote version's settings from its labels; ValueError naming a bad one."""
    return RemoteConfig(
        timeout_s=_number(labels, "timeout_s", 5.0, 0.01, 600.0),
        max_connections=_number(labels, "max_connections", 8, 1, 1024, integer=True),
        retries=_number(labels, "retries", 2, 0, 10, integer=True),
        breaker=BreakerConfig(
            failures=_number(labels, "breaker_failures", 5, 1, 10_000, integer=True),
            cooldown_s=_number(labels, "breaker_cooldown_s", 5.0, 0.0, 3600.0),
        ),
    )


class RemoteModel:
    def __init__(self, url: str, model: str, signature: Signature, transport: httpx.BaseTransport | None = None,
                 config: RemoteConfig | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.signature = signature
        self.config = config = config or RemoteConfig()
        self.url = url.rstrip("/")
        self.model = model
        timeout = httpx.Timeout(config.timeout_s, connect=min(config.timeout_s, CONNECT_TIMEOUT_S))
        limits = httpx.Limits(max_connections=config.max_connections,
                              max_keepalive_connections=config.max_connections)
        self.client = httpx.Client(base_url=self.url, timeout=timeout, limits=limits, transport=transport)
        self.breaker = Breaker(config.breaker, clock)
        self._lock = threading.Lock()
        self.on_breaker: BreakerHook | None = None  # set by whoever loaded it (the gateway)

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        body = {"inputs": [oip.encode_tensor(name, np.asarray(a)) for name, a in inputs.items()]}
        with self._lock:
            allowed, moved = self.breaker.allow()
            wait = self.breaker.retry_after_s()
        if not allowed:
            raise BackendUnavailable(self.model, self.url, "circuit breaker open after repeated failures; "
                                     "not calling it", retry_after_header(wait))
        self._tell(moved, None)
        try:
            response = self._post(body)
        except httpx.PoolTimeout:
            with self._lock:
                self.breaker.release()  # never sent: says nothing of the backend
            raise BackendUnavailable(self.model, self.url, f"no free connection (of {self.config.max_connections}) "
                                     f"within {self.config.timeout_s:g}s") from None
        except httpx.TimeoutException as exc:
            self._failed(f"no answer within {self.config.timeout_s:g}s ({type(exc).__name__})")
            raise BackendUnavailable(self.model, self.url, f"no answer within {self.config.timeout_s:g}s "
                                     f"({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self._failed(reason)
            raise BackendFailed(self.model, self.url, reason) from None
        if response.status_code >= 500:
            reason = f"answered {response.status_code}: {response.text[:200]}"
            self._failed(reason)
            raise BackendFailed(self.model, self.url, reason)
        if response.status_code >= 400:  # it is up, and refuses this request
            self._succeeded()
            raise BackendFailed(self.model, self.url, f"refused the request: {response.status_code}: "
                                f"{response.text[:200]}")
        try:
            outputs = {o["name"]: oip.decode_tensor(o)[0] for o in response.json()["outputs"]}
        except Exception as exc:  # not the protocol: a body that is not JSON, no outputs, bad tensors
            reason = f"answered what is not an inference response: {type(exc).__name__}: {exc}"
            self._failed(reason)
            raise BackendFailed(self.model, self.url, reason) from None
        self._succeeded()
        return outputs

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        """POST the infer call; a connection that could not be made (so nothing was sent) is
        tried again, up to ``retries`` times."""
        attempt = 0
        while True:
            try:
                return self.client.post(f"/v2/models/{self.model}/infer", json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if attempt >= self.config.retries:
                    raise
                time.sleep(RETRY_BACKOFF_S * 2**attempt)
                attempt += 1

    def _failed(self, reason: str) -> None:
        with self._lock:
            moved = self.breaker.failure()
        self._tell(moved, reason)

    def _succeeded(self) -> None:
        with self._lock:
            moved = self.breaker.success()
        self._tell(moved, None)

    def _tell(self, moved: Transition | None, reason: str | None) -> None:
        """Log a transition; tell the hook when the breaker opens (from closed) and closes."""
        if moved is None:
            return
        info: dict[str, Any] = {"url": self.url, "remote_model": self.model, "from": moved.old,
                                "failures": moved.consecutive, "failure_rate": round(moved.rate, 3),
                                "cooldown_s": self.config.breaker.cooldown_s}
        if reason is not None:
            info["cause"] = reason
        if moved.new == "open":
            log.warning("backend %s (%s): circuit breaker %s → open after %d consecutive failures: %s",
                        self.url, self.model, moved.old, moved.consecutive, reason)
        else:
            log.info("backend %s (%s): circuit breaker %s → %s", self.url, self.model, moved.old, moved.new)
        notify = (moved.new == "open" and moved.old == "closed") or moved.new == "closed"
        if notify and self.on_breaker is not None:
            try:
                self.on_breaker(moved.new, info)
            except Exception:
                log.exception("the breaker hook of %s failed", self.url)

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
        try:
            config = remote_config(request.labels)
        except ValueError as exc:
            raise ArtifactError(str(exc)) from None
        signature = request.signature or request.manifest.signature
        if signature is None:
            with httpx.Client(base_url=url, timeout=config.timeout_s, transport=self.transport) as client:
                meta = client.get(f"/v2/models/{remote_model}").raise_for_status().json()
            signature = Signature.from_dict(meta)
        return RemoteModel(url, remote_model, signature, self.transport, config)
