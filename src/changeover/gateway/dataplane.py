"""The data plane core, transport-agnostic: it takes decoded inference requests (`InferCall`)
and returns answers (`InferAnswer`) or raises `InferFailed` with a domain error; the REST and
gRPC endpoints only translate. It never waits on the store to answer a request.

For each request it asks the router which version serves it (`domain.policy.route`, on the
policy the follower adopted), conforms the inputs to that version's signature, predicts
(inline for a fast library model on a small batch, else in a worker thread), and then, off
the critical path, mirrors the request to shadows and records it (metric window, request log,
Prometheus). Two kinds of 4xx: before a version is chosen, the client's (a body that is not
the protocol, an unknown model), counted in ``changeover_rejected_total``; once a version is
chosen (routed or pinned), a request its signature refuses is that version's error, in its
metric window, the request log and ``/metrics``, as a 500 is: a candidate that refuses
today's traffic fails its canary."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import numpy as np
from anyio import CapacityLimiter

from changeover import oip
from changeover.domain.answers import allows_nonfinite, nonfinite
from changeover.domain.policy import Interleave, TrafficPolicy, route
from changeover.errors import (
    BackendError,
    ChangeoverError,
    InvalidInput,
    MalformedRequest,
    ModelNotFound,
    NotFound,
    PredictionFailed,
    RequestNotFound,
    Unavailable,
)
from changeover.gateway.batching import Batcher, version_batcher
from changeover.gateway.feedback import ranking_label
from changeover.gateway.follower import PolicyFollower
from changeover.gateway.interleave import NotARanking, merge_rankings
from changeover.gateway.metrics import GatewayMetrics
from changeover.gateway.pool import LoadedVersion, ModelPool
from changeover.gateway.recorder import StoreWriter
from changeover.gateway.shadow import Mirror
from changeover.gateway.summary import answer_roles, summarize
from changeover.gateway.windows import WindowAggregator
from changeover.settings import Settings
from changeover.store import traffic
from changeover.store.store import Store
from changeover.web.auth import AuthError, check_bearer
from changeover.web.errorlog import ErrorLog
from changeover.web.http import BodyTooLarge, status_of

log = logging.getLogger(__name__)

__all__ = ["DataPlane", "InferAnswer", "InferCall", "InferFailed", "output_names", "requested_outputs"]

INLINE_MS = 2.0  # versions whose one-row prediction takes at most this run on the event loop…
INLINE_ROWS = 8  # …for batches of at most this many rows; everything else runs in a worker thread
PINNED_RETRY_S = 2.0  # a pinned version found missing is looked up again after this long
MAX_SEGMENT_CHARS = 64  # a request's segment as logged: longer values are cut


def output_names(outputs: Any) -> list[str] | None:
    """The output names a v2 request asked for (None: all); 400 when ``outputs`` is not a list
    of objects with a name (the protocol's structure, whatever the version)."""
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise MalformedRequest("must be a list of objects with a name", "outputs")
    return [o["name"] for o in outputs] or None


def requested_outputs(outputs: Any, signature: Any) -> list[str] | None:
    """The output names a v2 request asked for (None: all); 422 for a name the version lacks."""
    names = output_names(outputs)
    if names is None:
        return None
    known = {t.name for t in signature.outputs}
    for name in names or ():
        if known and name not in known:
            raise InvalidInput(name, f"an output among {sorted(known)}", f"unknown output {name!r}")
    return names


def read_field(field: str, headers: Mapping[str, str], decoded: oip.Decoded) -> str | None:
    """A request's ``header:NAME`` (lower-case names) or ``input:NAME`` (its first value)."""
    kind, _, name = field.partition(":")
    if kind == "header":
        return headers.get(name.lower())
    if kind == "input" and name in decoded:
        array = decoded[name][0]
        return str(array.reshape(-1)[0]) if array.size else None
    return None


@dataclass(slots=True)
class InferCall:
    """One decoded inference request, whatever the transport.

    ``headers`` are the request's headers (REST) or metadata (gRPC), with lower-case names:
    the sticky key, overrides, the request id and the token are read from them. A v2 request
    carries ``decoded`` inputs and ``meta`` (its id, parameters, outputs); a KServe v1 request
    carries its body in ``instances`` (decoded with the chosen version's signature)."""

    model: str
    headers: Mapping[str, str]
    decoded: oip.Decoded | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    instances: Any = None
    pinned: str | None = None
    v1: bool = False
    started: float = 0.0


@dataclass(slots=True)
class InferAnswer:
    model: str
    version: int
    request_id: str
    outputs: Mapping[str, np.ndarray]  # the outputs asked for (all by default)


class InferFailed(Exception):
    """A request that got no prediction: ``cause`` is the error to answer (its status from
    `web.http.status_of`), ``version`` the version that refused or failed it (None when it
    was refused before one was chosen)."""

    def __init__(self, cause: Exception, request_id: str, version: int | None = None) -> None:
        self.cause, self.request_id, self.version = cause, request_id, version
        super().__init__(str(cause))


class NonFiniteAnswer(Exception):
    """A version answered NaN or infinity in a float output (`domain.answers`)."""


class _VersionMeters:
    """Prometheus children of one version, looked up once (a label lookup per request costs)."""

    __slots__ = ("ok", "latency", "errors")

    def __init__(self, metrics: GatewayMetrics, model: str, version: int) -> None:
        v = str(version)
        self.ok = metrics.requests.labels(model, v, "200")
        self.latency = metrics.latency.labels(model, v)
        self.errors = metrics.errors.labels(model, v)


class _Serving:
    """What serving one loaded version needs on every request, worked out on its first: its
    meters, whether its NaN is allowed, its batcher, whether it may run on the event loop."""

    __slots__ = ("lv", "meters", "nonfinite_ok", "batcher", "inline", "signature")

    def __init__(self, lv: LoadedVersion, meters: _VersionMeters, nonfinite_ok: bool, batcher: Batcher | None) -> None:
        self.lv, self.meters, self.nonfinite_ok, self.batcher = lv, meters, nonfinite_ok, batcher
        self.inline = lv.warm_ms <= INLINE_MS and getattr(lv.runtime, "inline_ok", False)
        self.signature = getattr(lv.runtime, "signature", None)


class DataPlane:
    def __init__(self, store: Store, settings: Settings, pool: ModelPool, follower: PolicyFollower,
                 metrics: GatewayMetrics, windows: WindowAggregator, writer: StoreWriter, mirror: Mirror) -> None:
        self.store = store
        self.settings = settings
        self.pool = pool
        self.follower = follower
        self.metrics = metrics
        self.windows = windows
        self.writer = writer
        self.mirror = mirror
        self._limiters: dict[tuple[str, int], CapacityLimiter] = {}  # worker threads per version: none starves another
        self.ready = False  # set once the gateway has started (GET /v2/health/ready)
        self._rng = random.Random()
        self._meters: dict[tuple[str, int], _VersionMeters] = {}
        self.errorlog = ErrorLog(log)
        self._pinned: dict[tuple[str, int], tuple[asyncio.Task[None], float]] = {}
        self._serving: dict[tuple[str, int], _Serving] = {}  # built on first use (and again for a reload)
        # request ids: a random prefix per process and a counter (unique without a uuid4 per request)
        self._id_prefix = os.urandom(8).hex()
        self._ids = itertools.count(1)

    # ---- what transports call -------------------------------------------------------

    def new_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):08x}"

    def check_token(self, headers: Mapping[str, str]) -> None:
        """AuthError unless inference is open or ``authorization`` carries the token; transports
        call it before decoding a body."""
        if self.settings.require_token_for_inference:
            check_bearer(headers.get("authorization"), self.settings.token or "")

    def check_feedback_token(self, headers: Mapping[str, str]) -> None:
        """AuthError unless feedback is open, or ``authorization`` carries the feedback token (or,
        where that is set or inference needs it, the management token)."""
        wanted = self.settings.feedback_token
        if wanted is None:
            self.check_token(headers)
            return
        try:
            check_bearer(headers.get("authorization"), wanted)
        except AuthError:
            check_bearer(headers.get("authorization"), self.settings.token or "")

    def rejected(self, model: str, exc: Exception, request_id: str) -> InferFailed:
        """Count a request refused before a version was chosen; the failure to raise."""
        if isinstance(exc, ChangeoverError | BodyTooLarge):
            # a fixed label for names that are not models: clients cannot grow the metrics without bound
            known = model in self.follower.policies or any(m == model for m, _ in self.pool.loaded())
            self.metrics.rejected.labels(model if known else "unknown", str(status_of(exc))).inc()
        return InferFailed(exc, request_id)

    def request_id_of(self, call: InferCall) -> str:
        """The client's ``x-request-id``, else a v2 request's own ``id``, else a new one."""
        given = call.headers.get("x-request-id")
        if given:
            return given
        body_id = call.meta.get("id")
        if isinstance(body_id, str) and body_id:
            return body_id
        return self.new_request_id()

    async def infer(self, call: InferCall, request_id: str | None = None) -> InferAnswer:
        started = call.started or time.perf_counter()
        request_id = request_id or self.request_id_of(call)
        model = call.model
        shadows: tuple[Any, ...] = ()
        interleave: Interleave | None = None
        policy = self.follower.policies.get(model)
        decoded = call.decoded
        signature_version: int | None = None
        try:
            lv: LoadedVersion | None = None
            if call.pinned is not None:
                lv = self._pinned_version(model, call.pinned)
            elif policy is None:
                raise ModelNotFound(model)
            if call.v1:
                # v1 instances carry no datatype: decoded here for routing (input: sticky keys), with
                # the champion's signature, and again below with the chosen version's
                signature_version = lv.version if lv is not None else (policy.champion if policy else None)
                if signature_version is None:
                    raise ModelNotFound(model)
                try:
                    decoded = oip.decode_v1_instances(call.instances,
                                                      self.follower.record(model, signature_version).signature)
                except InvalidInput:  # values this signature cannot take: the chosen version's to refuse
                    decoded, signature_version = {}, None
            else:
                output_names(call.meta.get("outputs"))
            assert decoded is not None
            if lv is None:
                assert policy is not None
                chosen = route(policy, self._reader(policy, call.headers, decoded), self._rng)
                shadows, interleave = chosen.shadows, chosen.interleave
                lv = self.pool.get(model, chosen.version) or await self.pool.ensure(model, chosen.version)
        except ChangeoverError as exc:
            raise self.rejected(model, exc, request_id) from None
        version = lv.version
        try:  # from here on a refusal is the chosen version's
            signature = self.follower.record(model, version).signature
            if call.v1 and version != signature_version:
                decoded = oip.decode_v1_instances(call.instances, signature)
            inputs = signature.conform_inputs(decoded)
            wanted = requested_outputs(call.meta.get("outputs"), signature)
        except ChangeoverError as exc:
            self._refused(call, decoded or {}, model, version, request_id, started, exc)
            raise InferFailed(exc, request_id, version) from None
        return await self._predict(call, lv, decoded, inputs, request_id, started, shadows, wanted, interleave)

    # ---- pinned versions ------------------------------------------------------------

    def _pinned_version(self, model: str, pinned: str) -> LoadedVersion:
        """A pinned version that is loaded; else its load starts off the request path and the
        request gets a 503 with Retry-After (or a 404 once the version is known not to exist)."""
        if not (pinned.isascii() and pinned.isdigit()):  # "³".isdigit() is true, int("³") fails
            raise ModelNotFound(model, pinned)
        version = int(pinned)
        lv = self.pool.get(model, version)
        if lv is not None:
            return lv
        key = (model, version)
        now = time.monotonic()
        loading = self._pinned.get(key)
        if loading is not None:
            task, at = loading
            if not task.done():
                raise Unavailable(f"{model} v{version} is loading on this gateway; retry shortly")
            exc = task.exception()
            if exc is not None and now - at < PINNED_RETRY_S:
                if isinstance(exc, ChangeoverError):  # not found, tampered, failed to load: said as it is
                    raise exc
                raise Unavailable(f"{model} v{version} could not be loaded on this gateway: {exc}", 5)
        task = asyncio.ensure_future(self._load_pinned(model, version))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._pinned[key] = (task, now)
        raise Unavailable(f"{model} v{version} is not loaded on this gateway; loading it now, retry shortly")

    async def _load_pinned(self, model: str, version: int) -> None:
        await anyio.to_thread.run_sync(self.follower.record, model, version)
        await self.pool.ensure(model, version)

    # ---- predicting and recording ---------------------------------------------------

    def _meter(self, model: str, version: int) -> _VersionMeters:
        meters = self._meters.get((model, version))
        if meters is None:
            meters = self._meters[(model, version)] = _VersionMeters(self.metrics, model, version)
        return meters

    def _limiter(self, lv: LoadedVersion) -> CapacityLimiter:
        limiter = self._limiters.get((lv.model, lv.version))
        if limiter is None:
            limiter = self._limiters[(lv.model, lv.version)] = CapacityLimiter(self.settings.worker_threads_per_version)
        return limiter

    def _serving_of(self, lv: LoadedVersion) -> _Serving:
        serving = self._serving.get((lv.model, lv.version))
        if serving is None or serving.lv is not lv:  # first use, or the version was loaded again
            labels = self.follower.record(lv.model, lv.version).labels
            batcher = version_batcher(lv.model, lv.version, lv.runtime.predict, labels, limiter=self._limiter(lv),
                                      metrics=self.metrics)
            serving = self._serving[(lv.model, lv.version)] = _Serving(
                lv, self._meter(lv.model, lv.version), allows_nonfinite(labels), batcher)
        return serving

    @staticmethod
    def _reader(policy: TrafficPolicy, headers: Mapping[str, str],
                decoded: oip.Decoded) -> Callable[[str], str | None]:
        """The router's view of one request: its fields, and ``key`` for the policy's sticky key."""
        def read(field: str) -> str | None:
            return read_field(policy.sticky_key if field == "key" else field, headers, decoded)

        return read

    def _segment(self, headers: Mapping[str, str], decoded: oip.Decoded) -> str | None:
        source = self.settings.segment
        if not source:
            return None
        if source.startswith("header:"):  # the default: one look in the headers
            value = headers.get(source[7:].lower())
        else:
            value = read_field(source, headers, decoded)
        return value[:MAX_SEGMENT_CHARS] if value else None

    def _refused(self, call: InferCall, decoded: oip.Decoded, model: str, version: int, request_id: str,
                 started: float, exc: ChangeoverError) -> None:
        """A request the chosen version's signature does not accept: that version's error."""
        latency_ms = (time.perf_counter() - started) * 1000
        code = str(status_of(exc))
        self.metrics.refused.labels(model, str(version), code).inc()
        self._meter(model, version).errors.inc()
        self.metrics.requests.labels(model, str(version), code).inc()
        self.windows.observe(model, version, latency_ms, True, None)
        self._log_request(call, decoded, request_id, model, version, int(code), latency_ms, None, None)

    async def _predict(
        self, call: InferCall, lv: LoadedVersion, decoded: oip.Decoded, inputs: dict[str, np.ndarray],
        request_id: str, started: float, shadows: tuple[Any, ...], wanted: list[str] | None,
        interleave: Interleave | None,
    ) -> InferAnswer:
        """Predict ``inputs`` (the request as the version takes it); ``decoded`` is the request
        as the client sent it, which the request log records for replay. With ``interleave``
        (a one-row request the policy selected) the candidate is called at the same time and
        the answer is the two rankings merged (`_interleaved`)."""
        model, version = lv.model, lv.version
        rows = max((a.shape[0] if a.ndim else 1) for a in inputs.values())
        other: asyncio.Task[Mapping[str, np.ndarray]] | None = None
        if interleave is not None and rows == 1 and interleave.champion == version:
            other = asyncio.ensure_future(self._candidate_answer(model, interleave.candidate, decoded))
        serving = self._serving_of(lv)
        self.pool.acquire(lv)
        try:
            if serving.batcher is not None:  # its labels ask for batching (gateway/batching.py)
                outputs = await serving.batcher.submit(inputs)
            elif serving.inline and rows <= INLINE_ROWS:
                # a fast library model (not user code that might block) on a small batch: a thread hop
                # would cost more than the prediction
                outputs = lv.runtime.predict(inputs)
            else:
                outputs = await anyio.to_thread.run_sync(lv.runtime.predict, inputs, limiter=self._limiter(lv))
            said = None if serving.nonfinite_ok else nonfinite(outputs)
            if said is not None:  # JSON has no NaN: never a silent null, the version's error instead
                raise NonFiniteAnswer(said)
        except Exception as exc:
            error_id = self.new_request_id()[-12:]
            backend = isinstance(exc, BackendError)  # a remote backend's failure: its own status (502/503)
            if backend:
                log.warning("prediction failed in %s v%s (error id %s): %s", model, version, error_id, exc)
            else:  # one traceback per kind of error per minute, with a count of the rest
                self.errorlog.error(exc, f"prediction failed in {model} v{version} (error id {error_id})",
                                    model, str(version))
            code = status_of(exc) if backend else 500
            latency_ms = (time.perf_counter() - started) * 1000
            serving.meters.errors.inc()
            self.metrics.requests.labels(model, str(version), str(code)).inc()
            self.windows.observe(model, version, latency_ms, True, None)
            self._log_request(call, decoded, request_id, model, version, code, latency_ms, None, None)
            if other is not None:
                self._forget(other)
            reason = str(exc) if isinstance(exc, NonFiniteAnswer) else type(exc).__name__
            cause = exc if backend else PredictionFailed(model, version, reason, error_id)
            raise InferFailed(cause, request_id, version) from None
        finally:
            self.pool.release(lv)
        interleaving: dict[str, Any] | None = None
        if other is not None and interleave is not None:
            outputs, interleaving = await self._interleaved(lv, interleave, other, outputs, request_id)
        answered = {k: v for k, v in outputs.items() if k in wanted} if wanted else outputs
        latency_ms = (time.perf_counter() - started) * 1000
        meters = serving.meters
        meters.ok.inc()
        meters.latency.observe(latency_ms / 1000)
        summary, number = summarize(outputs, serving.signature)
        if interleaving is not None:
            summary["interleaving"] = interleaving
        self.windows.observe(model, version, latency_ms, False, number)
        self._log_request(call, decoded, request_id, model, version, 200, latency_ms, summary, outputs)
        if shadows:
            policy = self.follower.policies[model]
            self.mirror.submit(model, version, request_id, inputs, summary, latency_ms, shadows,
                               self._reader(policy, call.headers, decoded))
        return InferAnswer(model, version, request_id, answered)

    async def _candidate_answer(self, model: str, version: int, decoded: oip.Decoded) -> Mapping[str, np.ndarray]:
        """The interleaving candidate's answer to the request, as the version takes it."""
        lv = self.pool.get(model, version)
        if lv is None:
            raise LookupError(f"v{version} is not loaded")
        signature = self.follower.record(model, version).signature
        inputs = signature.conform_inputs(decoded)
        self.pool.acquire(lv)
        try:
            return await anyio.to_thread.run_sync(lv.runtime.predict, inputs, limiter=self._limiter(lv))
        finally:
            self.pool.release(lv)

    @staticmethod
    def _forget(task: asyncio.Task[Any]) -> None:
        """Let a call nobody waits for any more finish on its own, its error retrieved."""
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def _interleaved(self, lv: LoadedVersion, rule: Interleave, other: asyncio.Task[Mapping[str, np.ndarray]],
                           outputs: Mapping[str, np.ndarray], request_id: str,
                           ) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
        """The champion's ``outputs`` merged with the candidate's (team draft), and what the
        request log keeps of the merge; the champion's alone, counted by cause, when the
        candidate fails, is late (``rule.timeout_s`` after the champion answered), or either
        answer holds no one-row ranking."""
        model = lv.model
        done, _ = await asyncio.wait({other}, timeout=rule.timeout_s)
        if not done:
            self._forget(other)
            self.metrics.interleave_calls.labels(model, "timeout").inc()
            return dict(outputs), None
        if other.exception() is not None:
            log.warning("interleaving %s: candidate v%s failed: %r", model, rule.candidate, other.exception())
            self.metrics.interleave_calls.labels(model, "candidate_error").inc()
            return dict(outputs), None
        candidate = other.result()
        candidate_lv = self.pool.get(model, rule.candidate)
        candidate_signature = getattr(candidate_lv.runtime, "signature", None) if candidate_lv else None
        try:
            merged_outputs, merged = merge_rankings(
                outputs, answer_roles(outputs, getattr(lv.runtime, "signature", None)),
                candidate, answer_roles(candidate, candidate_signature), rule.k, request_id)
        except NotARanking as exc:
            log.warning("interleaving %s: %s", model, exc)
            self.metrics.interleave_calls.labels(model, "not_a_ranking").inc()
            return dict(outputs), None
        self.metrics.interleave_calls.labels(model, "merged").inc()
        return merged_outputs, {"a": lv.version, "b": rule.candidate, "teams": list(merged.teams)}

    def _log_request(
        self, call: InferCall, decoded: oip.Decoded, request_id: str, model: str, version: int, status: int,
        latency_ms: float, summary: dict[str, Any] | None, outputs: Mapping[str, np.ndarray] | None,
    ) -> None:
        recorded = outputs is not None and self._rng.random() < self.settings.record_rate
        row: dict[str, Any] = {
            "request_id": traffic.log_key(request_id),
            "model": model,
            "version": version,
            "at": time.time(),
            "status": status,
            "latency_ms": latency_ms,
            "output": summary,
            "inputs": None,
            "answer": None,
            "segment": self._segment(call.headers, decoded),
            "recorded": recorded,
        }
        if recorded and outputs is not None:
            row["inputs"] = [oip.encode_tensor(n, a) | {"datatype": d} for n, (a, d) in decoded.items()]
            row["answer"] = [oip.encode_tensor(n, a) for n, a in outputs.items()]
        self.writer.put(traffic.REQUESTS, row)

    # ---- feedback and metadata ------------------------------------------------------

    async def feedback(self, body: Any) -> tuple[int, dict[str, Any]]:
        """Join a label or a reward to a served request: (status, answer). For a ranker (its
        answer logged a ``ranking``) the label is the clicked or relevant item ids, or an object
        item id → relevance, checked by `ranking_label` (a 422 naming ``label``); the answer
        then says how many relevant items the served list lacked (accepted: they count as
        relevant, not served). Raises ChangeoverError for a refusal (counted)."""
        try:
            if not isinstance(body, dict):
                raise MalformedRequest("the body must be a JSON object")
            request_id = body.get("request_id")
            if not isinstance(request_id, str) or not request_id:
                raise MalformedRequest("a non-empty string is required", "request_id")
            label = body.get("label")
            if label is None and body.get("reward") is None:
                raise MalformedRequest("one of label or reward is required", "label")
            reward = body.get("reward")
            if reward is not None and (isinstance(reward, bool) or not isinstance(reward, int | float)):
                raise MalformedRequest("must be a number", "reward")

            def join() -> tuple[bool, dict[str, Any], int | None]:
                served = traffic.served_request(self.store, request_id)
                if served is None:
                    raise RequestNotFound(request_id)
                missing = ranking_label(served.get("output"), label)
                accepted, stored = traffic.add_feedback(self.store, request_id, label=label, reward=reward)
                return accepted, stored, missing

            try:
                accepted, stored, not_served = await anyio.to_thread.run_sync(join)
            except NotFound:
                # the request may still sit in the writer's queue: flush once and look again
                await anyio.to_thread.run_sync(self.writer.flush, 2.0)
                accepted, stored, not_served = await anyio.to_thread.run_sync(join)
        except ChangeoverError:
            self.metrics.feedback.labels("", "rejected").inc()
            raise
        self.metrics.feedback.labels(stored["model"], "accepted" if accepted else "duplicate").inc()
        if accepted:
            answer: dict[str, Any] = {"request_id": request_id, "status": "accepted"}
            if not_served is not None:
                answer["relevant_not_served"] = not_served
            return 201, answer
        return 200, {"request_id": request_id, "status": "duplicate",
                     "detail": "feedback for this request was already received; the first one is kept",
                     "kept": {"label": stored["label"], "reward": stored["reward"], "at": stored["at"]}}

    def metadata_version(self, model: str, version: str | None) -> int:
        """The version a metadata call is about: the one named, else the champion."""
        if version is not None:
            if not (version.isascii() and version.isdigit()):
                raise ModelNotFound(model, version)
            return int(version)
        policy = self.follower.policies.get(model)
        if policy is None or policy.champion is None:
            raise ModelNotFound(model)
        return policy.champion

    async def model_metadata(self, model: str, version: str | None) -> dict[str, Any]:
        number = self.metadata_version(model, version)
        record = await anyio.to_thread.run_sync(self.follower.record, model, number)
        return oip.model_metadata(model, number, record.signature, f"changeover/{record.runtime}")

    def model_ready(self, model: str, version: str | None) -> bool:
        """Whether the version (the champion by default) is loaded here; ModelNotFound for a
        model this gateway serves no policy of."""
        loaded = self.pool.get(model, self.metadata_version(model, version)) is not None
        if not loaded and model not in self.follower.policies:
            raise ModelNotFound(model, version)  # a model this gateway knows nothing of: 404, not "not ready"
        return loaded
