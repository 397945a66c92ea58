"""The shadow mirror: a copy of live traffic for shadow versions, off the critical path.

The user's answer never waits for a shadow. Mirrored calls go through a bounded queue and a
thread pool of their own; when the queue is full, or every shadow thread is still busy (a
hung shadow keeps its thread), the mirror is dropped and counted — never queued without bound.
Each answered mirror becomes a pair (champion answer, shadow answer, both latencies) in the store.

Every mirrored call ends in one outcome, counted per (model, shadow version) where it happens:

- dropped before the shadow is called: ``queue_full`` (the mirror's queue is full),
  ``pool_busy`` (the version already holds its share of the shadow threads, or every thread
  is busy: a slow or hung shadow), ``not_loaded`` (this gateway has not loaded the version);
- answered, each writing a pair: ``ok``, ``timeout`` (past the shadow's timeout; its thread
  stays busy until the call returns), ``error`` (the shadow raised), ``invalid`` (NaN or
  infinity in its answer).

The counts go to Prometheus (``changeover_shadow_calls_total``, ``dropped_<cause>`` for drops)
and, every `FLUSH_S` seconds and at stop, to the store, added to the shadow's running counts
(`store.shadows.add_mirror_counts`), from a worker thread: the shadow report states mirrored,
compared and dropped by cause from them (`domain.shadow_judgement.coverage`). Requests the router
sampled out (a shadow's ``sample`` below 1) never reach the mirror and are not counted here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from changeover.domain.policy import Shadow, TrafficPolicy
from changeover.gateway.metrics import GatewayMetrics
from changeover.gateway.pool import ModelPool
from changeover.gateway.recorder import StoreWriter
from changeover.gateway.summary import summarize  # one summary shape for the log and the pairs
from changeover.store import shadows as shadow_store
from changeover.store.traffic import SHADOW_PAIRS, log_key

log = logging.getLogger(__name__)

FLUSH_S = 1.0  # how often the mirror's outcome counts are added to the store

FieldReader = Callable[[str], str | None]


def _first_rows(outputs: Mapping[str, np.ndarray], signature: Any) -> dict[str, Any]:
    return summarize(outputs, signature)[0]


class Mirror:
    def __init__(self, pool: ModelPool, writer: StoreWriter, metrics: GatewayMetrics, *, queue_size: int,
                 concurrency: int) -> None:
        self.pool = pool
        self.writer = writer
        self.metrics = metrics
        self.concurrency = concurrency
        self.queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue(maxsize=queue_size)
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="shadow")
        self.running: dict[tuple[str, int], int] = {}  # shadow threads busy per version (a hung one stays busy)
        # one version may hold at most this many threads: a hung shadow cannot starve the others
        self.per_version = max(1, concurrency // 2)
        self.counts: dict[str, int] = {"submitted": 0, "dropped": 0, "ok": 0, "error": 0, "timeout": 0, "invalid": 0}
        # outcomes per (model, version) not yet in the store; kept (and added to) while the store is away
        self.unflushed: dict[tuple[str, int], dict[str, int]] = {}
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]
        self._workers.append(asyncio.create_task(self._flush_every(FLUSH_S)))

    async def stop(self) -> None:
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)
        await self.flush()

    def _count(self, model: str, version: int, outcome: str) -> None:
        by = self.unflushed.setdefault((model, version), {})
        by[outcome] = by.get(outcome, 0) + 1

    async def flush(self) -> None:
        """Add the outcomes counted since the last flush to the store, off the event loop; on
        failure they are kept for the next one."""
        pending, self.unflushed = self.unflushed, {}
        if not pending:
            return
        try:
            await asyncio.to_thread(shadow_store.add_mirror_counts, self.writer.store, pending)
        except Exception as exc:  # the store may be away: the counts wait, the mirror goes on
            log.warning("shadow mirror counts not stored yet: %s", exc)
            for key, by in pending.items():
                kept = self.unflushed.setdefault(key, {})
                for outcome, n in by.items():
                    kept[outcome] = kept.get(outcome, 0) + n

    async def _flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self.flush()

    def adopt(self, policy: TrafficPolicy) -> None:
        """Nothing to prepare: shadows are loaded by the gateway before it adopts a policy."""

    def _drop(self, model: str, version: int, why: str) -> None:
        self.counts["dropped"] += 1
        self._count(model, version, why)
        self.metrics.shadow_calls.labels(model, str(version), f"dropped_{why}").inc()

    def submit(self, model: str, champion_version: int, request_id: str, inputs: Mapping[str, np.ndarray],
               champion_summary: dict[str, Any], champion_ms: float, shadows: tuple[Shadow, ...],
               read: FieldReader) -> None:
        """Called on the request path: O(1), never blocks, never raises."""
        for shadow in shadows:
            if shadow.version == champion_version:
                continue
            segment = read(shadow.segment) if shadow.segment else None
            item = (model, champion_version, shadow, request_id, inputs, champion_summary, champion_ms, segment)
            try:
                self.queue.put_nowait(item)
                self.counts["submitted"] += 1
            except asyncio.QueueFull:
                self._drop(model, shadow.version, "queue_full")

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self.queue.get()
            try:
                await self._mirror(loop, *item)
            except Exception as exc:  # a shadow must never take the gateway down
                log.warning("shadow mirror failed: %s", exc)
            finally:
                self.queue.task_done()

    async def _mirror(self, loop: asyncio.AbstractEventLoop, model: str, champion_version: int, shadow: Shadow,
                      request_id: str, inputs: Mapping[str, np.ndarray], champion_summary: dict[str, Any],
                      champion_ms: float, segment: str | None) -> None:
        lv = self.pool.get(model, shadow.version)
        if lv is None:
            self._drop(model, shadow.version, "not_loaded")
            return
        key = (model, shadow.version)
        if self.running.get(key, 0) >= self.per_version or sum(self.running.values()) >= self.concurrency:
            self._drop(model, shadow.version, "pool_busy")
            return
        self.running[key] = self.running.get(key, 0) + 1
        self.pool.acquire(lv)
        started = time.perf_counter()
        future = self.executor.submit(lv.runtime.predict, inputs)

        def finished(_: concurrent.futures.Future[Any]) -> None:
            loop.call_soon_threadsafe(self._finished, lv)

        future.add_done_callback(finished)
        error: str | None = None
        shadow_out: dict[str, Any] | None = None
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), timeout=shadow.timeout_s)
            result = {k: np.asarray(v) for k, v in result.items()}
            if any(a.dtype.kind == "f" and not np.all(np.isfinite(a)) for a in result.values()):
                error = "invalid: NaN or infinity"
            shadow_out = _first_rows(result, getattr(lv.runtime, "signature", None))
        except TimeoutError:
            error = "timeout"
        except Exception as exc:
            error = f"error: {type(exc).__name__}: {exc}"[:300]
        shadow_ms = (time.perf_counter() - started) * 1000
        outcome = "ok" if error is None else error.split(":", 1)[0]
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self._count(model, shadow.version, outcome)
        self.metrics.shadow_calls.labels(model, str(shadow.version), outcome).inc()
        self.writer.put(SHADOW_PAIRS, {
            "model": model,
            "shadow_version": shadow.version,
            "champion_version": champion_version,
            "request_id": log_key(request_id),
            "at": time.time(),
            "champion_output": champion_summary,
            "shadow_output": shadow_out if error is None or error.startswith("invalid") else None,
            "champion_ms": champion_ms,
            "shadow_ms": None if error == "timeout" else shadow_ms,
            "error": error,
            "segment": segment,
        })

    def _finished(self, lv: Any) -> None:
        self.running[(lv.model, lv.version)] -= 1
        self.pool.release(lv)
