"""Adaptive batching through a real `changeover serve` (issue 11): an ONNX MLP pushed with
``--label max_batch_size=32 --label max_batch_delay_ms=5`` answers concurrent HTTP requests
each with its own rows (the model's own one-row prediction), and /metrics shows batches of
more than one row. A push with bad batching labels is refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelfiles import breast_cancer, onnx_mlp, v2_request
from serverproc import TOKEN, ServerProcess

X, _ = breast_cancer()
REQUESTS = 400
CONCURRENCY = 32


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    root = tmp_path_factory.mktemp("batching")
    model = onnx_mlp(root / "mlp.onnx", (64, 64))
    server = ServerProcess(root / "home").start()
    try:
        server.cli("models", "push", str(model), "--name", "mlp", "--label", "max_batch_size=32",
                   "--label", "max_batch_delay_ms=5", check=True)
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30) as admin:
            admin.put("/api/models/mlp/aliases/champion", json={"version": 1}).raise_for_status()
            deadline = time.monotonic() + 30
            while "mlp" not in admin.get("/api/status").json()["gateway"]["generations"]:
                assert time.monotonic() < deadline, "the gateway did not adopt mlp's policy"
                time.sleep(0.1)
        yield server, model
    finally:
        server.stop()


def batch_rows(server: ServerProcess) -> dict[str, float]:
    """changeover_batch_rows of mlp v1: its count, sum and cumulative buckets by ``le``."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics", timeout=10).text):
        if family.name != "changeover_batch_rows":
            continue
        for sample in family.samples:
            if sample.labels.get("model") != "mlp" or sample.labels.get("version") != "1":
                continue
            key = sample.name.removeprefix("changeover_batch_rows_")
            out[f"le={sample.labels['le']}" if key == "bucket" else key] = sample.value
    return out


async def send_all(url: str, rows: list[np.ndarray]) -> list[httpx.Response]:
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        async def one(row: np.ndarray) -> httpx.Response:
            async with gate:
                return await http.post("/v2/models/mlp/infer", json=v2_request(row, "features", "FP32"))

        return await asyncio.gather(*(one(r) for r in rows))


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(served: tuple[ServerProcess, Path]) -> None:
    import onnxruntime as ort

    server, model = served
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    rows = [X[rng.integers(len(X), size=int(rng.integers(1, 4)))].astype(np.float32) for _ in range(REQUESTS)]
    before = batch_rows(server)
    answers = asyncio.run(send_all(server.url, rows))
    for row, answer in zip(rows, answers, strict=True):
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o for o in answer.json()["outputs"]}
        label, proba = session.run(["label", "probabilities"], {"features": row[:1]})  # the model, row by row
        for i in range(1, len(row)):
            more = session.run(["label", "probabilities"], {"features": row[i:i + 1]})
            label, proba = np.concatenate([label, more[0]]), np.concatenate([proba, more[1]])
        assert outputs["label"]["shape"] == [len(row)]
        assert outputs["label"]["data"] == label.tolist()
        # a batch's matrix products may round the last float bit differently from one row's
        np.testing.assert_allclose(np.array(outputs["probabilities"]["data"]).reshape(proba.shape), proba,
                                   rtol=1e-5, atol=1e-6)
    after = batch_rows(server)
    calls = after["count"] - before.get("count", 0)
    total = after["sum"] - before.get("sum", 0)
    assert total == sum(len(r) for r in rows)  # every row went through the batcher, once
    assert calls < REQUESTS  # fewer predict calls than requests: some batches held several requests
    assert after["le=1.0"] - before.get("le=1.0", 0) < calls or total > calls
    assert after["count"] - after["le=4.0"] > 0  # some batch of more than 4 rows (each request has 1 to 3)


def test_an_idle_version_answers_one_request_at_once(served: tuple[ServerProcess, Path]) -> None:
    server, _ = served
    row = X[:1].astype(np.float32)
    started = time.perf_counter()
    answer = httpx.post(f"{server.url}/v2/models/mlp/infer", json=v2_request(row, "features", "FP32"), timeout=10)
    assert answer.status_code == 200
    assert time.perf_counter() - started < 1.0  # no batch delay to wait out (5 ms here: a loose bound)


@pytest.mark.parametrize("label", ["max_batch_size=0", "max_batch_size=lots", "max_batch_delay_ms=-3"])
def test_a_push_with_bad_batching_labels_is_refused(served: tuple[ServerProcess, Path], label: str) -> None:
    server, model = served
    result = server.cli("models", "push", str(model), "--name", "mlp-bad", "--label", "max_batch_size=8",
                        "--label", label)
    assert result.returncode != 0
    assert label.split("=")[0] in result.stdout + result.stderr
