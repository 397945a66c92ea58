"""The policy follower: adopts each traffic policy generation once every version it names is
loaded and warm, and keeps serving the last one while the store is away.

It learns of a new generation three ways: the store's in-process notifier (SQLite), a
PostgreSQL LISTEN (replicas), and a slow poll as the fallback. Adopting is per model and
serialised; the data plane reads `policies` without waiting on any of it."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

import anyio.to_thread

from changeover.domain.policy import TrafficPolicy
from changeover.errors import ChangeoverError, LoadFailed, NotFound
from changeover.gateway.metrics import GatewayMetrics
from changeover.gateway.pool import ModelPool
from changeover.store.store import Store, VersionRecord

log = logging.getLogger(__name__)

__all__ = ["PolicyFollower"]


class PolicyFollower:
    def __init__(self, store: Store, pool: ModelPool, metrics: GatewayMetrics, replica: str, *,
                 poll_s: float, on_adopt: Callable[[TrafficPolicy], None] | None = None) -> None:
        self.store = store
        self.pool = pool
        self.metrics = metrics
        self.replica = replica
        self.poll_s = poll_s
        self.on_adopt = on_adopt
        self.policies: dict[str, TrafficPolicy] = {}
        self.records: dict[tuple[str, int], VersionRecord] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refreshing: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._weighted: dict[str, set[str]] = {}  # model → versions with a traffic-weight series
        self._pg_listener: Any = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        notifier = self.store.notifier
        notifier.subscribe(self.on_generation, watch=False)
        if notifier.signal_file is not None:  # other processes on this SQLite file: watched on this loop
            self._watch_task = asyncio.create_task(self._watch_signal())
        if self.store.is_postgres:
            from changeover.store.listen import PgListener

            self._pg_listener = PgListener(self.store.url, self.on_generation)
            self._pg_listener.start()
        try:
            for model in await anyio.to_thread.run_sync(self.store.generations):
                await self.refresh(model)
        except Exception as exc:  # the store may be away: serve what we can, poll later
            log.warning("initial policy load failed: %s", exc)
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._pg_listener is not None:
            self._pg_listener.stop()
        for task in (self._task, self._watch_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def on_generation(self, model: str, generation: int) -> None:
        """Called from any thread when a policy generation commits; model "" when another
        process says only that something changed (every model's generation is read)."""
        if self._loop is not None and not self._loop.is_closed():
            work = self.refresh(model) if model else self.refresh_changed()
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(work))

    async def refresh_changed(self) -> None:
        """Adopt every model's newer generation, if any."""
        try:
            generations = await anyio.to_thread.run_sync(self.store.generations)
        except Exception as exc:
            log.warning("reading policy generations failed (serving on the last policy): %s", exc)
            return
        for model, generation in generations.items():
            current = self.policies.get(model)
            if current is None or current.generation < generation:
                await self.refresh(model)

    async def _watch_signal(self) -> None:
        """Another process's publish (``serve --workers``, servers sharing a home): the signal
        file's time moves; every model's generation is then read."""
        notifier = self.store.notifier
        seen = notifier.signal_mtime()
        while True:
            await asyncio.sleep(notifier.WATCH_S)
            now = notifier.signal_mtime()
            if now != seen:
                seen = now
                asyncio.ensure_future(self.refresh_changed())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            await self.refresh_changed()

    def record(self, model: str, version: int) -> VersionRecord:
        """A version's record, from the store once (versions are immutable: cached forever)."""
        key = (model, version)
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = self.store.version(model, version)
        return record

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
            self._set_weights(model, policy)
            if self.on_adopt is not None:
                self.on_adopt(policy)

    def _set_weights(self, model: str, policy: TrafficPolicy) -> None:
        """``changeover_traffic_weight``: a series per version that serves, adding up to 100; the
        series of a version that served before and no longer does is removed (with ``serve
        --workers``, whose series live in shared files, set to 0: it takes no traffic)."""
        serving = {str(v) for v in policy.serving_versions}
        for version in policy.serving_versions:
            weight = policy.weights.get(version)
            if weight is None and version == policy.champion:
                weight = 100.0 - sum(policy.weights.values())
            self.metrics.weight.labels(model, str(version)).set(weight or 0.0)
        for stale in self._weighted.get(model, set()) - serving:
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                self.metrics.weight.labels(model, stale).set(0.0)
            else:
                self.metrics.weight.remove(model, stale)
        self._weighted[model] = serving

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
