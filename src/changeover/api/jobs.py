"""Heavy work (gate, compatibility replay) runs in a worker process, never on the serving
event loop: serving keeps its CPU share and its latency while a gate runs."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

PARENT_CHECK_S = 1.0  # how often a job worker checks that its server still runs


def _background_worker(server: int) -> None:
    """Serving comes first: the worker runs at a lower priority, on one BLAS/OpenMP thread. It
    ends with its server: a server killed with -9 (or crashed) leaves no worker behind, holding
    memory and waking the CPU, as a watcher thread sees the parent gone within a second."""
    with contextlib.suppress(OSError):
        os.nice(10)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)

    def watch() -> None:  # `server` is the pid that started it: it may be gone before this runs
        while True:
            if os.getppid() != server:
                os._exit(0)
            time.sleep(PARENT_CHECK_S)

    threading.Thread(target=watch, name="changeover-job-parent-watch", daemon=True).start()


def _warm() -> None:
    """Import what every job needs (scikit-learn, pandas, the gate and the replay), so the
    first `apply` or gate does not wait for a fresh worker process to start and import."""
    import changeover.evaluation.jobs  # noqa: F401


class JobRunner:
    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_background_worker, initargs=(os.getpid(),))
        return self._pool

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        future = self._executor().submit(fn, *args, **kwargs)
        return await asyncio.wrap_future(future)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._executor().submit(fn, *args, **kwargs)

    def run_sync(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._executor().submit(fn, *args, **kwargs).result()

    def warm(self) -> None:
        """Start the worker now, in the background (the server calls this at start)."""
        self._executor().submit(_warm)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
