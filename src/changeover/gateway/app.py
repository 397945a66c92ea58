"""The data plane: Open Inference Protocol v2 and KServe v1 endpoints over the router,
the model pool and the writers. It never waits on the store to answer a request."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

import anyio.to_thread
import numpy as np
import orjson
from anyio import CapacityLimiter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from changeover.api.auth import AuthError, check_bearer
from changeover.domain.policy import Interleave, TrafficPolicy, route
from changeover.domain.ranking_comparison import item_key
from changeover.domain.ranking_feedback import relevance_by_item, relevant_not_served
from changeover.domain.roles import output_roles
from changeover.domain.signature import Signature, TensorSpec, datatype_of
from changeover.errors import (
    ChangeoverError,
    InvalidInput,
    InvalidRequest,
    LoadFailed,
    MalformedRequest,
    ModelNotFound,
    NotFound,
    RequestNotFound,
)
from changeover.gateway import protocol
from changeover.gateway.http import BodyTooLarge, error_response, json_response, read_infer_body, read_json
from changeover.gateway.interleave import NotARanking, merge_rankings
from changeover.gateway.metrics import GatewayMetrics
from changeover.gateway.pool import LoadedVersion, ModelPool
from changeover.gateway.recorder import StoreWriter
from changeover.gateway.shadow import Mirror
from changeover.gateway.windows import WindowAggregator
from changeover.registry.service import Registry
from changeover.settings import Settings
from changeover.store import tables as t
from changeover.store import traffic
from changeover.store.store import Store, VersionRecord

log = logging.getLogger(__name__)


INLINE_MS = 2.0  # versions whose one-row prediction takes at most this run on the event loop…
INLINE_ROWS = 8  # …for batches of at most this many rows; everything else runs in a worker thread


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
    known = {t.name for t in signature.outputs}
    for name in names or ():
        if known and name not in known:
            raise InvalidInput(name, f"an output among {sorted(known)}", f"unknown output {name!r}")
    return names


MAX_LOGGED_IDS = 100  # a ranking in the request log: its first ids, enough to join feedback to


@functools.lru_cache(maxsize=512)
def _roles(signature: Signature) -> dict[str, str | None]:
    return signature.output_roles()


def _answer_roles(outputs: Mapping[str, np.ndarray], signature: Signature | None) -> dict[str, str | None]:
    """Output name → role: the signature's, else inferred from the arrays' names and types."""
    if signature is not None and signature.outputs:
        return _roles(signature)
    specs = []
    for name, array in outputs.items():
        a = np.asarray(array)
        try:
            specs.append(TensorSpec(name, datatype_of(a), tuple(-1 if i == 0 else d for i, d in enumerate(a.shape))))
        except ValueError:
            return {}
    return output_roles(specs)


def _first_row(array: np.ndarray) -> Any:
    first = array[0] if array.ndim and array.shape[0] else array
    value = first.tolist() if isinstance(first, np.ndarray) else (first.item() if hasattr(first, "item") else first)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    elif isinstance(value, list):
        value = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in value]
    return value


def summarize(outputs: Mapping[str, np.ndarray], signature: Signature | None = None) -> tuple[dict[str, Any], float | None]:
    """The first row of each output (kept in the request log for feedback joins), and one
    number per request for the prediction distribution.

    A ranking (the output whose role is ``ranking``, `domain.roles`) is also kept under the key
    ``ranking``: the first row's item ids, at most `MAX_LOGGED_IDS` of them, as are its scores
    under the output's own name. The number is the positive-class probability (probabilities
    of two classes), the top item's score (a ranking with scores; none for a ranking without),
    the prediction, or else the first number of the first output."""
    roles = _answer_roles(outputs, signature)
    row: dict[str, Any] = {}
    for name, array in outputs.items():
        value = _first_row(np.asarray(array))
        if roles.get(name) in ("ranking", "scores") and isinstance(value, list):
            value = value[:MAX_LOGGED_IDS]
        row[name] = value
    by_role = {role: name for name, role in roles.items() if role and name in outputs}
    if "ranking" in by_role:
        ids = row[by_role["ranking"]]
        row["ranking"] = ids if isinstance(ids, list) else [ids]
    number: float | None = None
    proba = outputs.get(by_role.get("probabilities", "probabilities"))
    scores = outputs.get(by_role["scores"]) if "scores" in by_role else None
    if proba is not None and np.ndim(proba) == 2 and np.shape(proba)[1] == 2:
        number = float(np.asarray(proba)[0, 1])
    elif "ranking" in by_role:
        if scores is not None and np.asarray(scores).size:
            number = float(np.asarray(scores).reshape(-1)[0])
    else:
        first = outputs.get(by_role["prediction"]) if "prediction" in by_role else next(iter(outputs.values()), None)
        if first is not None and np.asarray(first).size and np.asarray(first).dtype.kind in "fiub":
            number = float(np.asarray(first).reshape(-1)[0])
    if number is not None and not np.isfinite(number):
        number = None
    return row, number


RANKING_LABEL = "a list of clicked or relevant item ids, or an object item id → relevance (a number >= 0)"


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def ranking_label(output: Mapping[str, Any] | None, label: Any) -> int | None:
    """For feedback on a ranker's answer (a logged ``ranking``): check the label and return how
    many of its relevant items the served list did not contain; None for any other answer, or
    no label. InvalidRequest (422, field ``label``) for a label that names no items, an id that
    is not an int or a string, or a relevance that is not a number >= 0."""
    served = (output or {}).get("ranking")
    if label is None or not isinstance(served, list):
        return None
    if isinstance(label, dict):
        for item, value in label.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InvalidRequest("label", f"the relevance of item {item!r} must be a number >= 0, "
                                              f"got {_json_text(value)}")
    elif isinstance(label, list):
        for position, item in enumerate(label):
            try:
                item_key(item)
            except ValueError:
                raise InvalidRequest("label", f"item ids are ints or strings; item {position} is "
                                              f"{_json_text(item)}") from None
    else:
        raise InvalidRequest("label", f"feedback for a ranker is {RANKING_LABEL}; got {_json_text(label)}")
    try:
        relevance_by_item(label)  # the scorer's own check: what it refuses is refused here
    except ValueError as exc:
        raise InvalidRequest("label", str(exc)) from None
    try:
        return relevant_not_served(served, label)
    except ValueError:  # the logged answer itself is not a list of ids: nothing to count against
        return None


class Gateway:
    def __init__(self, store: Store, registry: Registry, settings: Settings, *, replica: str | None = None) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.replica = replica or uuid.uuid4().hex[:8]
        self.policies: dict[str, TrafficPolicy] = {}
        self.records: dict[tuple[str, int], VersionRecord] = {}
        self.pool = ModelPool(self._load)
        self.metrics = GatewayMetrics()
        self.windows = WindowAggregator(self.replica)
        self.writer = StoreWriter(
            store,
            retention_s=settings.record_retention_days * 86400,
            max_recorded=settings.record_max_rows,
            max_requests=settings.request_log_max_rows,
            on_drop=self.metrics.dropped_records.inc,
        )
        self.limiter = CapacityLimiter(16)
        self.mirror = Mirror(self.pool, self.writer, self.metrics, queue_size=settings.shadow_queue_size,
                             concurrency=settings.shadow_concurrency)
        self._rng = random.Random()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refreshing: dict[str, asyncio.Lock] = {}
        self.ready = False
        self._pg_listener: Any = None

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.writer.start()
        self.mirror.start()
        self.store.notifier.subscribe(self._on_generation)
        if self.store.is_postgres:
            from changeover.store.listen import PgListener

            self._pg_listener = PgListener(self.store.url, self._on_generation)
            self._pg_listener.start()
        try:
            for model in await anyio.to_thread.run_sync(self.store.generations):
                await self.refresh(model)
        except Exception as exc:  # the store may be away: serve what we can, poll later
            log.warning("initial policy load failed: %s", exc)
        self._tasks.append(asyncio.create_task(self._poll()))
        self._tasks.append(asyncio.create_task(self._flush_windows()))
        self.ready = True

    async def stop(self) -> None:
        if self._pg_listener is not None:
            self._pg_listener.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.mirror.stop()
        self._write_windows()
        await anyio.to_thread.run_sync(self.writer.stop)
        self.pool.close_all()

    def _on_generation(self, model: str, generation: int) -> None:
        """Called from any thread when a policy generation commits."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.refresh(model)))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.policy_poll_s)
            try:
                generations = await anyio.to_thread.run_sync(self.store.generations)
            except Exception as exc:
                log.warning("policy poll failed (serving on the last policy): %s", exc)
                continue
            for model, generation in generations.items():
                current = self.policies.get(model)
                if current is None or current.generation < generation:
                    await self.refresh(model)

    async def _flush_windows(self) -> None:
        while True:
            await asyncio.sleep(self.settings.window_seconds)
            self._write_windows()

    def _write_windows(self) -> None:
        for row in self.windows.drain():
            self.writer.put(t.metric_windows, row)

    def _load(self, model: str, version: int) -> Any:
        return self.registry.load(self.record(model, version))

    def record(self, model: str, version: int) -> VersionRecord:
        key = (model, version)
        if key not in self.records:
            self.records[key] = self.store.version(model, version)  # immutable: cache forever
        return self.records[key]

    async def refresh(self, model: str) -> None:
        """Adopt the newest policy of a model once every version it names is loaded and warm."""
        lock = self._refreshing.setdefault(model, asyncio.Lock())
        async with lock:
            try:
                policy = await anyio.to_thread.run_sync(self.store.policy, model)
            except Exception as exc:
                log.warning("reading the policy of %s failed: %s", model, exc)
                return
            current = self.policies.get(model)
            if policy is None or (current is not None and current.generation >= policy.generation):
                return
            try:  # every version that serves must load and warm, or this gateway keeps the old policy
                for version in sorted(policy.serving_versions):
                    await anyio.to_thread.run_sync(self.record, model, version)
                    await self.pool.ensure(model, version)
            except (LoadFailed, NotFound, ChangeoverError) as exc:
                await self._load_failed(model, policy, current, str(exc))
                return
            # a warm or shadow version that fails is left out; users are served all the same
            broken: set[int] = set()
            for version in sorted(policy.loaded_versions - policy.serving_versions):
                try:
                    await anyio.to_thread.run_sync(self.record, model, version)
                    await self.pool.ensure(model, version)
                except (LoadFailed, NotFound, ChangeoverError) as exc:
                    broken.add(version)
                    await self._load_failed(model, policy, current, str(exc), left_out=version)
            if broken:
                policy = policy.evolve(warm=tuple(v for v in policy.warm if v not in broken),
                                       shadows=tuple(s for s in policy.shadows if s.version not in broken),
                                       interleave=None if policy.interleave is not None
                                       and policy.interleave.candidate in broken else policy.interleave)
            self.policies[model] = policy
            self.pool.retain(model, policy.loaded_versions)
            self.metrics.generation.labels(model).set(policy.generation)
            for version in policy.serving_versions:
                weight = policy.weights.get(version)
                if weight is None and version == policy.champion:
                    weight = 100.0 - sum(policy.weights.values())
                self.metrics.weight.labels(model, str(version)).set(weight or 0.0)
            self.mirror.adopt(policy)

    async def _load_failed(self, model: str, policy: TrafficPolicy, current: TrafficPolicy | None, reason: str,
                           left_out: int | None = None) -> None:
        if left_out is None:
            message = (f"gateway {self.replica} keeps generation {current.generation if current else 'none'} "
                       f"of {model}: {reason}")
        else:
            message = f"gateway {self.replica} serves generation {policy.generation} of {model} without v{left_out}: {reason}"
        await anyio.to_thread.run_sync(lambda: self.store.add_event(
            "load_failed", message, model=model, actor=f"gateway:{self.replica}",
            evidence={"generation": policy.generation, "reason": reason, "left_out": left_out},
            dedup=f"load_failed:{model}:{policy.generation}:{self.replica}:{left_out}",
        ))

    # ---- inference ------------------------------------------------------------------

    def _reader(self, policy: TrafficPolicy, request: Request, decoded: protocol.Decoded) -> Any:
        def read(field: str) -> str | None:
            if field == "key":
                return read(policy.sticky_key)
            kind, _, name = field.partition(":")
            if kind == "header":
                return request.headers.get(name)
            if kind == "input" and name in decoded:
                array = decoded[name][0]
                return str(array.reshape(-1)[0]) if array.size else None
            return None

        return read

    async def _serve(self, request: Request, model: str, pinned: str | None, v1: bool) -> Response:
        """Two kinds of 4xx: before a version is chosen, the client's (a body that is not JSON
        or not the protocol, an unknown model), counted in ``changeover_rejected_total``; once
        a version is chosen (routed or pinned), a request its signature refuses (datatype,
        shape, inputs, outputs) is that version's error, in its metric window, in the request
        log and in ``/metrics``, as a 500 is: a candidate that refuses today's traffic fails
        its canary."""
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        headers = {"x-request-id": request_id}
        signature_version: int | None = None
        try:
            if self.settings.require_token_for_inference:
                check_bearer(request.headers.get("authorization"), self.settings.token or "")
            body, binary = await read_infer_body(request, self.settings.max_body_bytes)
            policy = self.policies.get(model)
            if pinned is not None:
                if not pinned.isdigit():
                    raise ModelNotFound(model, pinned)
                version = int(pinned)
                await anyio.to_thread.run_sync(self.record, model, version)
                shadows: tuple[Any, ...] = ()
                interleave: Interleave | None = None
            elif policy is None:
                raise ModelNotFound(model)
            lv = self.pool.get(model, int(pinned)) if pinned is not None else None
            if pinned is not None and lv is None:
                lv = await self.pool.ensure(model, int(pinned))
            if v1:
                # v1 instances carry no datatype: decoded here for routing (input: sticky keys), with
                # the champion's signature, and again below with the chosen version's
                signature_version = int(pinned) if pinned is not None else (policy.champion if policy else None)
                if signature_version is None:
                    raise ModelNotFound(model)
                try:
                    decoded = protocol.decode_v1_instances(body, self.record(model, signature_version).signature)
                except InvalidInput:  # values this signature cannot take: the chosen version's to refuse
                    decoded, signature_version = {}, None
                meta: dict[str, Any] = {}
            else:
                decoded, meta = protocol.decode_infer_request(body, binary)
                if "id" in meta and "x-request-id" not in request.headers and isinstance(meta["id"], str) and meta["id"]:
                    request_id = meta["id"]
                    headers["x-request-id"] = request_id
                output_names(meta.get("outputs"))
            if lv is None:
                assert policy is not None
                chosen = route(policy, self._reader(policy, request, decoded), self._rng)
                version, shadows, interleave = chosen.version, chosen.shadows, chosen.interleave
                lv = self.pool.get(model, version) or await self.pool.ensure(model, version)
            else:
                version = lv.version
        except (ChangeoverError, BodyTooLarge) as exc:
            response = error_response(exc, headers)
            # a fixed label for names that are not models: clients cannot grow the metrics without bound
            known = model in self.policies or any(m == model for m, _ in self.pool.loaded())
            self.metrics.rejected.labels(model if known else "unknown", str(response.status_code)).inc()
            return response
        except AuthError as exc:
            return json_response({"error": str(exc)}, exc.status, headers)
        headers["x-changeover-version"] = str(version)
        try:  # from here on a refusal is the chosen version's
            signature = self.record(model, version).signature
            if v1 and version != signature_version:
                decoded = protocol.decode_v1_instances(body, signature)
            inputs = signature.conform_inputs(decoded)
            wanted = requested_outputs(meta.get("outputs"), signature)
        except ChangeoverError as exc:
            return self._refused(request, model, version, request_id, headers, started, exc)
        return await self._predict(request, lv, decoded, inputs, request_id, headers, started, shadows, v1, wanted,
                                   interleave)

    def _refused(self, request: Request, model: str, version: int, request_id: str, headers: dict[str, str],
                 started: float, exc: ChangeoverError) -> Response:
        """A request the chosen version's signature does not accept: that version's error."""
        response = error_response(exc, headers)
        latency_ms = (time.perf_counter() - started) * 1000
        code = str(response.status_code)
        self.metrics.refused.labels(model, str(version), code).inc()
        self.metrics.errors.labels(model, str(version)).inc()
        self.metrics.requests.labels(model, str(version), code).inc()
        self.windows.observe(model, version, latency_ms, True, None)
        self._log_request(request_id, model, version, response.status_code, latency_ms, None, None, request)
        return response

    async def _predict(
        self, request: Request, lv: LoadedVersion, decoded: protocol.Decoded, inputs: dict[str, np.ndarray],
        request_id: str, headers: dict[str, str], started: float, shadows: tuple[Any, ...], v1: bool,
        wanted: list[str] | None = None, interleave: Interleave | None = None,
    ) -> Response:
        """Predict ``inputs`` (the request as the version takes it); ``decoded`` is the request
        as the client sent it, which the request log records for replay. With ``interleave``
        (a one-row request the policy selected) the candidate is called at the same time and
        the answer is the two rankings merged (`_interleaved`)."""
        model, version = lv.model, lv.version
        rows = max((a.shape[0] if a.ndim else 1) for a in inputs.values())
        other: asyncio.Task[Mapping[str, np.ndarray]] | None = None
        if interleave is not None and rows == 1 and interleave.champion == version:
            other = asyncio.ensure_future(self._candidate_answer(model, interleave.candidate, decoded))
        self.pool.acquire(lv)
        try:
            if lv.warm_ms <= INLINE_MS and rows <= INLINE_ROWS and getattr(lv.runtime, "inline_ok", False):
                # a fast library model (not user code that might block) on a small batch: a thread hop
                # would cost more than the prediction
                outputs = lv.runtime.predict(inputs)
            else:
                outputs = await anyio.to_thread.run_sync(lv.runtime.predict, inputs, limiter=self.limiter)
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            log.exception("prediction failed in %s v%s (error id %s)", model, version, error_id)
            latency_ms = (time.perf_counter() - started) * 1000
            self.metrics.errors.labels(model, str(version)).inc()
            self.metrics.requests.labels(model, str(version), "500").inc()
            self.windows.observe(model, version, latency_ms, True, None)
            self._log_request(request_id, model, version, 500, latency_ms, None, None, request)
            if other is not None:
                self._forget(other)
            return json_response(
                {"error": f"model {model} v{version} failed: {type(exc).__name__}", "error_id": error_id}, 500, headers
            )
        finally:
            self.pool.release(lv)
        interleaving: dict[str, Any] | None = None
        if other is not None and interleave is not None:
            outputs, interleaving = await self._interleaved(lv, interleave, other, outputs, request_id)
        answered = {k: v for k, v in outputs.items() if k in wanted} if wanted else outputs
        body = protocol.encode_v1_predictions(outputs) if v1 else protocol.encode_infer_response(
            model, version, request_id, answered
        )
        response = json_response(body, 200, headers)
        latency_ms = (time.perf_counter() - started) * 1000
        self.metrics.requests.labels(model, str(version), "200").inc()
        self.metrics.latency.labels(model, str(version)).observe(latency_ms / 1000)
        summary, number = summarize(outputs, getattr(lv.runtime, "signature", None))
        if interleaving is not None:
            summary["interleaving"] = interleaving
        self.windows.observe(model, version, latency_ms, False, number)
        self._log_request(request_id, model, version, 200, latency_ms, summary, (decoded, outputs), request)
        if shadows:
            policy = self.policies[model]
            self.mirror.submit(model, version, request_id, inputs, summary, latency_ms, shadows,
                               self._reader(policy, request, decoded))
        return response

    async def _candidate_answer(self, model: str, version: int, decoded: protocol.Decoded) -> Mapping[str, np.ndarray]:
        """The interleaving candidate's answer to the request, as the version takes it."""
        lv = self.pool.get(model, version)
        if lv is None:
            raise LookupError(f"v{version} is not loaded")
        signature = self.record(model, version).signature
        inputs = signature.conform_inputs(decoded)
        self.pool.acquire(lv)
        try:
            return await anyio.to_thread.run_sync(lv.runtime.predict, inputs, limiter=self.limiter)
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
                outputs, _answer_roles(outputs, getattr(lv.runtime, "signature", None)),
                candidate, _answer_roles(candidate, candidate_signature), rule.k, request_id)
        except NotARanking as exc:
            log.warning("interleaving %s: %s", model, exc)
            self.metrics.interleave_calls.labels(model, "not_a_ranking").inc()
            return dict(outputs), None
        self.metrics.interleave_calls.labels(model, "merged").inc()
        return merged_outputs, {"a": lv.version, "b": rule.candidate, "teams": list(merged.teams)}

    def _log_request(
        self, request_id: str, model: str, version: int, status: int, latency_ms: float,
        summary: dict[str, Any] | None, full: tuple[protocol.Decoded, Mapping[str, np.ndarray]] | None,
        request: Request,
    ) -> None:
        recorded = full is not None and self._rng.random() < self.settings.record_rate
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
            "segment": None,
            "recorded": recorded,
        }
        if recorded and full is not None:
            decoded, outputs = full
            row["inputs"] = [protocol.encode_tensor(n, a) | {"datatype": d} for n, (a, d) in decoded.items()]
            row["answer"] = [protocol.encode_tensor(n, a) for n, a in outputs.items()]
        self.writer.put(t.requests, row)

    # ---- endpoints ------------------------------------------------------------------

    async def infer(self, request: Request) -> Response:
        return await self._serve(request, request.path_params["model"], None, v1=False)

    async def infer_pinned(self, request: Request) -> Response:
        return await self._serve(request, request.path_params["model"], request.path_params["version"], v1=False)

    async def predict_v1(self, request: Request) -> Response:
        return await self._serve(request, request.path_params["model"], None, v1=True)

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def health_ready(self, request: Request) -> Response:
        return json_response({"ready": self.ready}, 200 if self.ready else 503)

    def _metadata_version(self, model: str, version: str | None) -> int:
        if version is not None:
            if not version.isdigit():
                raise ModelNotFound(model, version)
            return int(version)
        policy = self.policies.get(model)
        if policy is None or policy.champion is None:
            raise ModelNotFound(model)
        return policy.champion

    async def metadata(self, request: Request) -> Response:
        model = request.path_params["model"]
        try:
            version = self._metadata_version(model, request.path_params.get("version"))
            record = await anyio.to_thread.run_sync(self.record, model, version)
        except NotFound as exc:
            return error_response(exc)
        return json_response(protocol.model_metadata(model, version, record.signature, f"changeover/{record.runtime}"))

    async def model_ready(self, request: Request) -> Response:
        model = request.path_params["model"]
        try:
            version = self._metadata_version(model, request.path_params.get("version"))
        except NotFound as exc:
            return error_response(exc)
        ready = self.pool.get(model, version) is not None
        return json_response({"name": model, "ready": ready}, 200 if ready else 503)

    async def feedback(self, request: Request) -> Response:
        """Join a label or a reward to a served request. For a ranker (its answer logged a
        ``ranking``) the label is the clicked or relevant item ids, or an object item id →
        relevance, checked by `ranking_label` (a 422 naming ``label``); the answer then says how
        many relevant items the served list lacked (accepted: they count as relevant, not served)."""
        if self.settings.require_token_for_inference:
            try:
                check_bearer(request.headers.get("authorization"), self.settings.token or "")
            except AuthError as exc:
                return json_response({"error": str(exc)}, exc.status)
        try:
            body = await read_json(request, self.settings.max_body_bytes)
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
        except ChangeoverError as exc:
            self.metrics.feedback.labels("", "rejected").inc()
            return error_response(exc)
        self.metrics.feedback.labels(stored["model"], "accepted" if accepted else "duplicate").inc()
        if accepted:
            answer: dict[str, Any] = {"request_id": request_id, "status": "accepted"}
            if not_served is not None:
                answer["relevant_not_served"] = not_served
            return json_response(answer, 201)
        return json_response(
            {"request_id": request_id, "status": "duplicate",
             "detail": "feedback for this request was already received; the first one is kept",
             "kept": {"label": stored["label"], "reward": stored["reward"], "at": stored["at"]}},
            200,
        )

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[Route]:
        return [
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.health_ready, methods=["GET"]),
            Route("/v2", self.live, methods=["GET"]),
            Route("/v2/models/{model}", self.metadata, methods=["GET"]),
            Route("/v2/models/{model}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}", self.metadata, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{model}/infer", self.infer, methods=["POST"]),
            Route("/v2/models/{model}/versions/{version}/infer", self.infer_pinned, methods=["POST"]),
            Route("/v1/models/{model}:predict", self.predict_v1, methods=["POST"]),
            Route("/v1/feedback", self.feedback, methods=["POST"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
        ]
