"""Adaptive batching (issue 11): one `Batcher` per (model, version) whose labels ask for it.

Requests submit their conformed inputs (name → array, the batch on axis 0) and await their own
rows of the outputs. A pending batch starts when any of these holds:

* nothing is running: an idle batcher never waits (the first request goes at once, alone);
* the queue holds ``max_batch_size`` rows;
* its oldest request has waited ``max_batch_delay`` (even while another batch runs).

So while a batch runs, the requests that arrive gather for the next one, which starts as soon
as the running one ends (or the delay passes, or it is full). Only requests whose inputs have
the same names, dtypes and non-batch dims are concatenated; a request that does not match the
oldest one waits for a batch of its own kind, and a request that cannot be split by rows (a
0-d input, inputs of different lengths, no rows, more rows than ``max_batch_size``) runs alone.
One ``predict`` per batch, in a worker thread; the outputs are split by each request's rows.
A batch whose outputs do not all have one row per input row fails every request in it
(`BatchSplitError`, counted), and a batch whose predict raises gives every request the error.

Everything here runs on the event loop except the predict call itself.

Per-version configuration, from the version's labels (``--label`` at push):
``max_batch_size`` (an int ≥ 1; batching is on when it is > 1) and ``max_batch_delay_ms``
(a float ≥ 0, default `DEFAULT_DELAY_MS`). `batch_config` checks them; the registry refuses a
push with bad values, and a version stored with bad values anyway is served unbatched, with a
warning in the log."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio.to_thread
import numpy as np

from changeover.domain.batching import (
    DEFAULT_DELAY_MS,
    DELAY_LABEL,
    SIZE_LABEL,
    BatchConfig,
    batch_config,
)

log = logging.getLogger(__name__)

__all__ = ["BatchConfig", "BatchSplitError", "Batcher", "batch_config", "version_batcher", "DEFAULT_DELAY_MS",
           "SIZE_LABEL", "DELAY_LABEL"]

Tensors = Mapping[str, np.ndarray]
Predict = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]
Run = Callable[[Predict, dict[str, np.ndarray]], Awaitable[Mapping[str, np.ndarray]]]


class BatchSplitError(RuntimeError):
    """A batch's outputs could not be split by rows: some output has no row per input row."""


def _rows(inputs: Tensors) -> int | None:
    """A request's rows when it can share a batch (every input has them on axis 0), else None."""
    rows: int | None = None
    for array in inputs.values():
        if array.ndim == 0:
            return None
        if rows is None:
            rows = array.shape[0]
        elif array.shape[0] != rows:
            return None
    return rows or None  # no inputs, or zero rows: alone


def _kind(inputs: Tensors) -> tuple[Any, ...]:
    """What requests must share to be concatenated: names, dtypes and the non-batch dims."""
    return tuple(sorted((name, a.dtype.str, a.shape[1:]) for name, a in inputs.items()))


class _Request:
    __slots__ = ("inputs", "rows", "kind", "future", "at")

    def __init__(self, inputs: Tensors, rows: int | None, kind: tuple[Any, ...] | None,
                 future: asyncio.Future[dict[str, np.ndarray]], at: float) -> None:
        self.inputs, self.rows, self.kind, self.future, self.at = inputs, rows, kind, future, at


async def _in_thread(predict: Predict, inputs: dict[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    return await anyio.to_thread.run_sync(predict, inputs)


class Batcher:
    """Gathers one version's requests into batches; see the module's docstring.

    ``run`` calls ``predict`` off the event loop (default: an anyio worker thread);
    ``on_batch`` is told each batch's rows and ``on_split_error`` each batch whose outputs
    could not be split (both for metrics)."""

    def __init__(self, predict: Predict, max_batch_size: int, max_batch_delay_ms: float, *,
                 run: Run | None = None, on_batch: Callable[[int], None] | None = None,
                 on_split_error: Callable[[], None] | None = None) -> None:
        if max_batch_size < 1 or max_batch_delay_ms < 0:
            raise ValueError("max_batch_size must be ≥ 1 and max_batch_delay_ms ≥ 0")
        self.predict = predict
        self.max_batch_size = max_batch_size
        self.delay_s = max_batch_delay_ms / 1000
        self._run = run or _in_thread
        self._on_batch = on_batch
        self._on_split_error = on_split_error
        self._pending: deque[_Request] = deque()
        self._pending_rows = 0
        self._running = 0  # batches whose predict has not returned
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        return self._running

    async def submit(self, inputs: Tensors) -> dict[str, np.ndarray]:
        """This request's outputs (its own rows), once its batch has run; the batch's error
        when its predict raised or its outputs could not be split."""
        loop = asyncio.get_running_loop()
        rows = _rows(inputs)
        if rows is not None and rows > self.max_batch_size:
            rows = None  # bigger than a batch: alone, as it is
        future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
        if rows is None:  # alone whatever else comes: no reason to wait
            self._start([_Request(inputs, None, None, future, loop.time())], 0, loop)
        else:
            self._pending.append(_Request(inputs, rows, _kind(inputs), future, loop.time()))
            self._pending_rows += rows
            self._schedule(loop)
        return await future

    # ---- deciding when a batch goes -------------------------------------------------

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._pending:
            head = self._pending[0]
            if head.future.done():  # its caller went away before its batch started
                self._pending.popleft()
                self._pending_rows -= head.rows or 0
                continue
            due = head.at + self.delay_s
            if self._running == 0 or self._pending_rows >= self.max_batch_size or loop.time() >= due:
                self._dispatch(loop)
                continue
            if self._timer is None:
                self._timer = loop.call_at(due, self._on_timer, loop)
            return

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._schedule(loop)

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a batch: the oldest request and the next ones of its kind, up to the size."""
        head = self._pending.popleft()
        self._pending_rows -= head.rows or 0
        batch, rows = [head], head.rows or 0
        kept: deque[_Request] = deque()
        while self._pending and rows < self.max_batch_size:
            request = self._pending.popleft()
            if request.future.done():
                self._pending_rows -= request.rows or 0
            elif request.kind == head.kind and rows + (request.rows or 0) <= self.max_batch_size:
                batch.append(request)
                rows += request.rows or 0
                self._pending_rows -= request.rows or 0
            else:
                kept.append(request)
        kept.extend(self._pending)
        self._pending = kept
        self._start(batch, rows, loop)

    def _start(self, batch: list[_Request], rows: int, loop: asyncio.AbstractEventLoop) -> None:
        self._running += 1
        task = loop.create_task(self._execute(batch, rows))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- running a batch ------------------------------------------------------------

    async def _execute(self, batch: list[_Request], rows: int) -> None:
        try:
            if len(batch) == 1:
                inputs = dict(batch[0].inputs)
            else:
                inputs = {name: np.concatenate([r.inputs[name] for r in batch]) for name in batch[0].inputs}
            if self._on_batch is not None:
                self._on_batch(rows or 1)
            outputs = await self._run(self.predict, inputs)
            answers = self._split(batch, rows, outputs)
        except asyncio.CancelledError:
            for request in batch:
                request.future.cancel()
            raise
        except Exception as exc:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
        else:
            for request, answer in zip(batch, answers, strict=True):
                if not request.future.done():
                    request.future.set_result(answer)
        finally:
            self._running -= 1
            self._schedule(asyncio.get_running_loop())

    def _split(self, batch: list[_Request], rows: int, outputs: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        if len(batch) == 1:  # alone: the outputs as they are, as without batching
            return [dict(outputs)]
        arrays = {name: np.asarray(a) for name, a in outputs.items()}
        bad = sorted(name for name, a in arrays.items() if a.ndim == 0 or a.shape[0] != rows)
        if bad:
            if self._on_split_error is not None:
                self._on_split_error()
            shapes = ", ".join(f"{name} {arrays[name].shape}" for name in bad)
            raise BatchSplitError(f"a batch of {rows} rows ({len(batch)} requests) gave outputs without a row "
                                  f"per input row: {shapes}")
        answers, start = [], 0
        for request in batch:
            end = start + (request.rows or 0)
            answers.append({name: a[start:end] for name, a in arrays.items()})
            start = end
        return answers


def version_batcher(model: str, version: int, predict: Predict, labels: Mapping[str, str], *,
                    limiter: Any = None, metrics: Any = None) -> Batcher | None:
    """The batcher a version's labels ask for (None: unbatched), its predict run in a worker
    thread under ``limiter`` and its batches counted in ``metrics`` (`GatewayMetrics`). Bad
    values (a version stored before the registry checked them) are logged and ignored."""
    try:
        config = batch_config(labels)
    except ValueError as exc:
        log.warning("%s v%s is served unbatched: its label %s", model, version, exc)
        return None
    if config is None:
        return None

    async def run(fn: Predict, inputs: dict[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        return await anyio.to_thread.run_sync(fn, inputs, limiter=limiter)

    rows = metrics.batch_rows.labels(model, str(version)) if metrics is not None else None
    errors = metrics.batch_split_errors.labels(model, str(version)) if metrics is not None else None
    log.info("%s v%s batches up to %d rows, waiting at most %g ms", model, version, config.max_batch_size,
             config.max_batch_delay_ms)
    return Batcher(predict, config.max_batch_size, config.max_batch_delay_ms, run=run,
                   on_batch=rows.observe if rows is not None else None,
                   on_split_error=errors.inc if errors is not None else None)
