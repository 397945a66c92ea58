"""The gateway of one process: the data plane core, its REST endpoints, the policy follower,
the model pool, the shadow mirror and the writers, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from typing import Any

import anyio.to_thread
from starlette.routing import Route

from changeover.domain.policy import TrafficPolicy
from changeover.gateway.dataplane import DataPlane
from changeover.gateway.follower import PolicyFollower
from changeover.gateway.metrics import GatewayMetrics
from changeover.gateway.pool import ModelPool
from changeover.gateway.recorder import StoreWriter
from changeover.gateway.rest import RestEndpoints
from changeover.gateway.shadow import Mirror
from changeover.gateway.windows import WindowAggregator
from changeover.registry.service import Registry
from changeover.settings import Settings
from changeover.store import traffic
from changeover.store.store import Store

__all__ = ["Gateway"]

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, store: Store, registry: Registry, settings: Settings, *, replica: str | None = None) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.replica = replica or uuid.uuid4().hex[:8]
        self.metrics = GatewayMetrics()
        self.pool = ModelPool(self._load)
        self.windows = WindowAggregator(self.replica)
        self.writer = StoreWriter(
            store,
            retention_s=settings.record_retention_days * 86400,
            max_recorded=settings.record_max_rows,
            max_requests=settings.request_log_max_rows,
            on_drop=self.metrics.dropped_records.inc, replica=self.replica,
        )
        self.mirror = Mirror(self.pool, self.writer, self.metrics, queue_size=settings.shadow_queue_size,
                             concurrency=settings.shadow_concurrency)
        self.follower = PolicyFollower(store, self.pool, self.metrics, self.replica, poll_s=settings.policy_poll_s,
                                       on_adopt=self.mirror.adopt)
        self.plane = DataPlane(store, settings, self.pool, self.follower, self.metrics, self.windows, self.writer,
                               self.mirror)
        self.rest = RestEndpoints(self.plane, settings.max_body_bytes, self.metrics.registry)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def policies(self) -> dict[str, TrafficPolicy]:
        return self.follower.policies

    @property
    def ready(self) -> bool:
        return self.plane.ready

    def _load(self, model: str, version: int) -> Any:
        loaded = self.registry.load(self.follower.record(model, version))
        if hasattr(loaded, "on_breaker"):  # a remote version: its backend's circuit breaker, as events
            loaded.on_breaker = lambda state, info: self._breaker_event(model, version, state, info)
        return loaded

    def _breaker_event(self, model: str, version: int, state: str, info: dict[str, Any]) -> None:
        """``backend.open`` / ``backend.closed``, written off the request's thread (never waits on the store)."""
        kind = "backend.open" if state == "open" else "backend.closed"
        if state == "open":
            message = (f"{model} v{version}: backend {info.get('url')} failing ({info.get('cause')}); "
                       f"calls fail fast for {info.get('cooldown_s')}s, then one probe")
        else:
            message = f"{model} v{version}: backend {info.get('url')} answers again"
        evidence = {**info, "version": version, "replica": self.replica}

        def write() -> None:
            try:
                self.store.add_event(kind, message, model=model, actor="gateway", evidence=evidence)
            except Exception as exc:
                log.warning("could not record %s for %s v%s: %r", kind, model, version, exc)

        threading.Thread(target=write, name="breaker-event", daemon=True).start()

    async def start(self) -> None:
        self.writer.start()
        self.mirror.start()
        await self.follower.start()
        self._tasks.append(asyncio.create_task(self._flush_windows()))
        self.plane.ready = True

    async def stop(self) -> None:
        self.plane.ready = False
        await self.follower.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.mirror.stop()
        self._write_windows()
        await anyio.to_thread.run_sync(self.writer.stop)
        self.pool.close_all()

    async def _flush_windows(self) -> None:
        while True:
            await asyncio.sleep(self.settings.window_seconds)
            self._write_windows()

    def _write_windows(self) -> None:
        for row in self.windows.drain():
            self.writer.put(traffic.WINDOWS, row)

    def routes(self) -> list[Route]:
        return self.rest.routes()

    def router(self) -> Any:
        """The data plane's ASGI app."""
        return self.rest.app()
