"""Loaded versions, with in-flight counts so an old version drains before it is unloaded.

Everything here runs on the gateway's event loop except loading, warming and closing,
which run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio.to_thread

from changeover.errors import LoadFailed
from changeover.runtimes.base import LoadedModel

log = logging.getLogger(__name__)

Loader = Callable[[str, int], LoadedModel]
"""Loads (and checks) one version: the registry's job."""


@dataclass(eq=False)
class LoadedVersion:
    model: str
    version: int
    runtime: LoadedModel
    warm_ms: float = float("inf")  # a one-row prediction's time, measured while warming
    inflight: int = 0
    retired: bool = False
    closed: bool = False
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class ModelPool:
    def __init__(self, loader: Loader) -> None:
        self.loader = loader
        self._loaded: dict[tuple[str, int], LoadedVersion] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    def get(self, model: str, version: int) -> LoadedVersion | None:
        lv = self._loaded.get((model, version))
        return None if lv is None or lv.retired else lv

    def loaded(self) -> list[tuple[str, int]]:
        return [k for k, lv in self._loaded.items() if not lv.retired]

    async def ensure(self, model: str, version: int) -> LoadedVersion:
        """Load and warm a version unless it is already; raise LoadFailed when it cannot."""
        key = (model, version)
        lv = self.get(model, version)
        if lv is not None:
            return lv
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            lv = self.get(model, version)
            if lv is not None:
                return lv
            try:
                runtime, warm_ms = await anyio.to_thread.run_sync(self._load_and_warm, model, version)
            except LoadFailed:
                raise
            except Exception as exc:
                raise LoadFailed(model, version, f"{type(exc).__name__}: {exc}") from exc
            lv = LoadedVersion(model, version, runtime, warm_ms=warm_ms)
            log.info("loaded %s v%s: a one-row prediction takes %.3f ms", model, version, warm_ms)
            self._loaded[key] = lv
            return lv

    def _load_and_warm(self, model: str, version: int) -> tuple[LoadedModel, float]:
        runtime = self.loader(model, version)
        sample = runtime.signature.sample_inputs(1)
        try:
            runtime.predict(sample)
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                runtime.predict(sample)
                timings.append((time.perf_counter() - started) * 1000)
        except Exception as exc:
            runtime.close()
            raise LoadFailed(model, version, f"warm-up prediction failed: {type(exc).__name__}: {exc}") from exc
        return runtime, sorted(timings)[len(timings) // 2]

    def acquire(self, lv: LoadedVersion) -> LoadedVersion:
        lv.inflight += 1
        return lv

    def release(self, lv: LoadedVersion) -> None:
        lv.inflight -= 1
        if lv.retired and lv.inflight == 0:
            self._close(lv)

    def retain(self, model: str, keep: set[int]) -> None:
        """Retire this model's versions not in ``keep``; each closes once its in-flight requests end."""
        for (m, version), lv in list(self._loaded.items()):
            if m == model and version not in keep and not lv.retired:
                lv.retired = True
                del self._loaded[(m, version)]
                if lv.inflight == 0:
                    self._close(lv)

    def _close(self, lv: LoadedVersion) -> None:
        if lv.closed:
            return
        lv.closed = True
        log.info("unloaded %s v%s after it drained", lv.model, lv.version)
        try:
            loop = asyncio.get_running_loop()
            loop.run_in_executor(None, lv.runtime.close)
        except RuntimeError:
            lv.runtime.close()

    def close_all(self) -> None:
        for lv in list(self._loaded.values()):
            lv.retired = True
            if not lv.closed:
                lv.closed = True
                lv.runtime.close()
        self._loaded.clear()
