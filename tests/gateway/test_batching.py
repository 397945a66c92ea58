"""The adaptive batcher on a fake runtime (issue 11): gathering, splitting, errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping

import numpy as np
import pytest

from changeover.gateway.batching import BatchConfig, Batcher, BatchSplitError, batch_config, version_batcher
from changeover.gateway.metrics import GatewayMetrics

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeRuntime:
    """Doubles its input; each call's row count is kept. ``gate`` holds calls until set."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None
        self.extra_output: np.ndarray | None = None

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.gate.wait(5)
        x = inputs["x"]
        self.calls.append(x.shape[0] if x.ndim else 0)
        if self.fail is not None:
            raise self.fail
        out = {"y": x.sum(axis=tuple(range(1, x.ndim))) * 2 if x.ndim > 1 else x * 2}
        if self.extra_output is not None:
            out["z"] = self.extra_output
        return out


def rows(n: int, start: float = 0.0, width: int = 3, dtype: type = np.float64) -> dict[str, np.ndarray]:
    return {"x": (np.arange(n * width, dtype=dtype).reshape(n, width) + start)}


def expected(inputs: dict[str, np.ndarray]) -> np.ndarray:
    return inputs["x"].sum(axis=1) * 2


async def blocked_first(batcher: Batcher, fake: FakeRuntime) -> asyncio.Task[dict[str, np.ndarray]]:
    """A first request whose predict is held, so that later arrivals gather."""
    fake.gate.clear()
    task = asyncio.ensure_future(batcher.submit(rows(1, 1000)))
    for _ in range(100):
        await asyncio.sleep(0.001)
        if batcher.running:
            break
    assert batcher.running == 1 and batcher.queued == 0
    return task


async def test_idle_batcher_sends_the_first_request_at_once() -> None:
    fake = FakeRuntime()
    batcher = Batcher(fake.predict, 32, 10_000)  # a delay it must never wait
    inputs = rows(2)
    out = await asyncio.wait_for(batcher.submit(inputs), 2)
    np.testing.assert_array_equal(out["y"], expected(inputs))
    assert fake.calls == [2]


async def test_arrivals_during_a_batch_gather_for_the_next_and_get_their_own_rows() -> None:
    fake = FakeRuntime()
    batcher = Batcher(fake.predict, 32, 10_000)
    first = await blocked_first(batcher, fake)
    requests = [rows(1 + i % 3, start=100 * i) for i in range(10)]
    tasks = [asyncio.ensure_future(batcher.submit(r)) for r in requests]
    await asyncio.sleep(0.01)
    assert batcher.queued == 10  # waiting for the running batch (the delay is long)
    fake.gate.set()
    outs = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    await first
    for r, out in zip(requests, outs, strict=True):
        np.testing.assert_array_equal(out["y"], expected(r))
    assert fake.calls == [1, sum(1 + i % 3 for i in range(10))]


async def test_a_full_queue_goes_without_waiting_and_batches_never_exceed_the_size() -> None:
    fake = FakeRuntime()
    batcher = Batcher(fake.predict, 4, 10_000)
    first = await blocked_first(batcher, fake)
    tasks = [asyncio.ensure_future(batcher.submit(rows(1, i))) for i in range(10)]
    await asyncio.sleep(0.01)
    fake.gate.set()
    outs = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    await first
    assert [float(o["y"][0]) for o in outs] == [float(expected(rows(1, i))[0]) for i in range(10)]
    assert sorted(fake.calls) == [1, 2, 4, 4]  # two full batches went while the first still ran
    assert max(fake.calls) <= 4


async def test_the_delay_bounds_the_wait_while_a_batch_runs() -> None:
    fake = FakeRuntime()
    batcher = Batcher(fake.predict, 32, 20)
    first = await blocked_first(batcher, fake)
    second = asyncio.ensure_future(batcher.submit(rows(1, 5)))
    await asyncio.sleep(0.005)
    assert batcher.queued == 1
    fake.gate.set()  # nothing left blocking: the second request is sent at once or by its delay
    out = await asyncio.wait_for(second, 2)
    np.testing.assert_array_equal(out["y"], expected(rows(1, 5)))
    await first


async def test_the_delay_sends_a_batch_while_another_still_runs() -> None:
    fake = FakeRuntime()
    started = asyncio.Event()
    calls: list[int] = []
    release = asyncio.Event()

    async def run(fn, inputs):  # noqa: ANN001, ANN202 - a fake thread hop, held until released
        calls.append(inputs["x"].shape[0])
        started.set()
        if len(calls) == 1:
            await release.wait()
        return fn(inputs)

    batcher = Batcher(fake.predict, 32, 20, run=run)
    first = asyncio.ensure_future(batcher.submit(rows(1)))
    await started.wait()
    second = [asyncio.ensure_future(batcher.submit(rows(1, i))) for i in range(3)]
    await asyncio.sleep(0.005)
    assert calls == [1] and batcher.queued == 3
    outs = await asyncio.wait_for(asyncio.gather(*second), 2)  # by the delay, the first still held
    assert calls == [1, 3] and not first.done()
    assert [float(o["y"][0]) for o in outs] == [float(expected(rows(1, i))[0]) for i in range(3)]
    release.set()
    await first


async def test_requests_of_another_shape_or_dtype_go_in_their_own_batch() -> None:
    fake = FakeRuntime()
    batcher = Batcher(fake.predict, 32, 10_000)
    first = await blocked_first(batcher, fake)
    same = [rows(1, i) for i in range(3)]
    wide = rows(2, 7, width=5)
    f32 = rows(1, 9, dtype=np.float32)
    tasks = [asyncio.ensure_future(batcher.submit(r)) for r in (same[0], wide, same[1], f32, same[2])]
    await asyncio.sleep(0.01)
    fake.gate.set()
    outs = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    await first
    for r, out in zip((same[0], wide, same[1], f32, same[2]), outs, strict=True):
        np.testing.assert_allclose(out["y"], expected(r))
    assert outs[3]["y"].dtype == np.float32
    assert sorted(fake.calls[1:]) == [1, 2, 3]  # the three alike together, the other two alone


async def test_requests_that_cannot_be_split_by_rows_run_alone() -> None:
    fake = FakeRuntime()
    batcher = Batcher(fake.predict, 4, 10_000)
    first = await blocked_first(batcher, fake)
    big = rows(6, 3)  # more rows than a batch
    scalar = {"x": np.array(2.0)}
    tasks = [asyncio.ensure_future(batcher.submit(r)) for r in (rows(1), big, scalar, rows(1, 1))]
    await asyncio.sleep(0.01)
    fake.gate.set()
    outs = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    await first
    np.testing.assert_array_equal(outs[1]["y"], expected(big))
    assert float(outs[2]["y"]) == 4.0
    assert sorted(fake.calls) == [0, 1, 2, 6]  # the held first; 0: the 0-d input; the two rows together


async def test_an_exception_reaches_every_request_in_the_batch() -> None:
    fake = FakeRuntime()
    batcher = Batcher(fake.predict, 32, 10_000)
    first = await blocked_first(batcher, fake)
    tasks = [asyncio.ensure_future(batcher.submit(rows(1, i))) for i in range(5)]
    await asyncio.sleep(0.01)
    fake.fail = ValueError("boom")
    fake.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert all(isinstance(r, ValueError) and str(r) == "boom" for r in results)
    with pytest.raises(ValueError):
        await first
    fake.fail = None
    out = await batcher.submit(rows(1))  # the batcher goes on
    np.testing.assert_array_equal(out["y"], expected(rows(1)))


async def test_outputs_without_a_row_per_input_row_fail_the_batch_and_are_counted() -> None:
    fake = FakeRuntime()
    split_errors: list[int] = []
    batch_rows: list[int] = []
    batcher = Batcher(fake.predict, 32, 10_000, on_batch=batch_rows.append,
                      on_split_error=lambda: split_errors.append(1))
    first = await blocked_first(batcher, fake)
    tasks = [asyncio.ensure_future(batcher.submit(rows(1, i))) for i in range(3)]
    await asyncio.sleep(0.01)
    fake.extra_output = np.zeros(7)  # not one row per input row
    fake.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert all(isinstance(r, BatchSplitError) for r in results)
    assert "z (7,)" in str(results[0])
    assert split_errors == [1]
    assert batch_rows == [1, 3]
    out = await first  # alone, the outputs are given as they are (as without batching)
    assert out["z"].shape == (7,)


async def test_a_caller_that_goes_away_is_skipped() -> None:
    fake = FakeRuntime()
    batcher = Batcher(fake.predict, 32, 10_000)
    first = await blocked_first(batcher, fake)
    gone = asyncio.ensure_future(batcher.submit(rows(1, 1)))
    kept = asyncio.ensure_future(batcher.submit(rows(1, 2)))
    await asyncio.sleep(0.01)
    gone.cancel()
    fake.gate.set()
    out = await asyncio.wait_for(kept, 5)
    np.testing.assert_array_equal(out["y"], expected(rows(1, 2)))
    await first
    assert fake.calls == [1, 1]
    assert gone.cancelled()


@pytest.mark.parametrize(
    ("labels", "config"),
    [
        ({}, None),
        ({"max_batch_size": "1"}, None),
        ({"max_batch_size": "32"}, BatchConfig(32, 2.0)),
        ({"max_batch_size": " 8 ", "max_batch_delay_ms": "0"}, BatchConfig(8, 0.0)),
        ({"max_batch_size": "16", "max_batch_delay_ms": "2.5"}, BatchConfig(16, 2.5)),
        ({"max_batch_delay_ms": "5"}, None),
    ],
)
def test_batch_config_from_labels(labels: dict[str, str], config: BatchConfig | None) -> None:
    assert batch_config(labels) == config


@pytest.mark.parametrize(
    ("labels", "named"),
    [
        ({"max_batch_size": "0"}, "max_batch_size"),
        ({"max_batch_size": "2.5"}, "max_batch_size"),
        ({"max_batch_size": "many"}, "max_batch_size"),
        ({"max_batch_size": "4", "max_batch_delay_ms": "-1"}, "max_batch_delay_ms"),
        ({"max_batch_size": "4", "max_batch_delay_ms": "nan"}, "max_batch_delay_ms"),
        ({"max_batch_size": "4", "max_batch_delay_ms": "soon"}, "max_batch_delay_ms"),
        ({"max_batch_delay_ms": "inf"}, "max_batch_delay_ms"),
    ],
)
def test_bad_batch_labels_are_refused(labels: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        batch_config(labels)


async def test_version_batcher_counts_rows_and_ignores_bad_labels(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeRuntime()
    metrics = GatewayMetrics()
    assert version_batcher("m", 1, fake.predict, {"max_batch_size": "zero"}, metrics=metrics) is None
    assert "served unbatched" in caplog.text
    assert version_batcher("m", 1, fake.predict, {}, metrics=metrics) is None
    batcher = version_batcher("m", 2, fake.predict, {"max_batch_size": "8"}, metrics=metrics)
    assert batcher is not None and batcher.max_batch_size == 8
    await batcher.submit(rows(3))
    assert metrics.registry.get_sample_value("changeover_batch_rows_sum", {"model": "m", "version": "2"}) == 3
