"""Adaptive batching (issue 11), side by side: the same ONNX model served by one `changeover
serve` process as two models, ``plain`` (unbatched) and ``batched`` (pushed with
``--label max_batch_size=32 --label max_batch_delay_ms=5``), under closed-loop wrk load at high
concurrency, one 1-row v2 REST request at a time per connection. Target: batched ≥ 3× the
unbatched req/s at a batched p99 < 50 ms.

The model is an MLP classifier (three hidden layers of 2048, skl2onnx, FP32, 30 breast-cancer
features; tests/modelfiles.py `onnx_mlp`): its weights (~34 MB) do not fit in cache, so a
one-row predict reads them all for one matrix-vector product (~1.9 ms on onnxruntime with one
thread, measured here), while a 32-row batch reads them once for 32 rows (~0.25 ms a row). That is the kind of model batching
is for; on a model whose one-row predict costs tens of µs (a logistic regression) the HTTP and
JSON work per request dominates and batching cannot triple anything.

Rounds are interleaved (the order swapped each round); each round's ratio is batched req/s over
plain req/s within that round, and the medians are printed with the range. /metrics gives the
batched version's rows per predict call. The load average before the run is printed: on the
2-core machine, other work (tests, other benches) makes the figures meaningless.

    python bench/batching.py [--seconds 8] [--rounds 3] [--concurrency 64] [--hidden 2048,2048,2048]
                             [--max-batch-size 32] [--max-batch-delay-ms 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from common import TOKEN, ServerProcess, body_file, ensure_wrk, load, tmpdir
from prometheus_client.parser import text_string_to_metric_families

from modelfiles import breast_cancer, onnx_mlp, v2_request

# production-like timers: the controller and the policy poll do not wake every 0.2 s
TIMERS = {"CHANGEOVER_CONTROLLER_TICK_S": "1.0", "CHANGEOVER_POLICY_POLL_S": "2.0", "CHANGEOVER_WINDOW_SECONDS": "5.0"}
TARGET_RATIO, TARGET_P99_MS = 3.0, 50.0
NAMES = ("plain", "batched")


def start(work: Path, model: Path, size: int, delay_ms: float) -> ServerProcess:
    server = ServerProcess(work / "home", env=TIMERS)
    server.start()
    try:
        server.cli("models", "push", str(model), "--name", "plain", check=True)
        server.cli("models", "push", str(model), "--name", "batched", "--label", f"max_batch_size={size}",
                   "--label", f"max_batch_delay_ms={delay_ms:g}", check=True)
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=60) as api:
            for name in NAMES:
                api.put(f"/api/models/{name}/aliases/champion", json={"version": 1, "reason": "bench"}).raise_for_status()
            deadline = time.monotonic() + 60
            while not set(NAMES) <= set(api.get("/api/status").json()["gateway"]["generations"]):
                if time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not adopt both policies")
                time.sleep(0.2)
    except BaseException:
        server.stop()
        raise
    return server


def batch_rows(url: str) -> tuple[float, float]:
    """(predict calls, rows) of the batched model so far, from changeover_batch_rows."""
    calls = rows = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        if family.name == "changeover_batch_rows":
            for s in family.samples:
                if s.labels.get("model") == "batched":
                    if s.name.endswith("_count"):
                        calls += s.value
                    elif s.name.endswith("_sum"):
                        rows += s.value
    return calls, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="load per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--hidden", default="2048,2048,2048", help="the MLP's hidden layer sizes")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-batch-delay-ms", type=float, default=5.0)
    args = parser.parse_args()
    hidden = tuple(int(h) for h in args.hidden.split(","))

    load_before = os.getloadavg()
    tool = "wrk" if ensure_wrk() else "bench/loadgen.py (wrk is missing and could not be installed)"
    work = tmpdir()
    print(f"model: ONNX MLP, hidden layers {hidden}, 30 FP32 features, 1 row per request; "
          f"batched: max_batch_size={args.max_batch_size}, max_batch_delay_ms={args.max_batch_delay_ms:g}", flush=True)
    model = onnx_mlp(work / "mlp.onnx", hidden)
    x, _ = breast_cancer()
    body = body_file(v2_request(x[7:8].astype("float32"), "features", "FP32"), work)
    server = start(work, model, args.max_batch_size, args.max_batch_delay_ms)
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in NAMES}
    ratios: list[float] = []
    try:
        urls = {n: f"{server.url}/v2/models/{n}/infer" for n in NAMES}
        for name in NAMES:
            check = httpx.post(urls[name], content=body.read_bytes(), headers={"content-type": "application/json"},
                               timeout=10)
            if check.status_code != 200:
                raise RuntimeError(f"{name}: a first request answered {check.status_code}: {check.text[:300]}")
            load(urls[name], body, seconds=min(2.0, args.seconds), concurrency=args.concurrency)  # warm-up
        calls_before, rows_before = batch_rows(server.url)
        for r in range(args.rounds):
            order = NAMES if r % 2 == 0 else NAMES[::-1]
            round_figures = {}
            for name in order:
                round_figures[name] = figures = load(urls[name], body, seconds=args.seconds,
                                                     concurrency=args.concurrency)
                results[name].append(figures)
                print(f"round {r + 1}/{args.rounds} {name:8s} {figures['rps']:8.0f} req/s  p50 {figures['p50_ms']:6.1f} ms"
                      f"  p99 {figures['p99_ms']:6.1f} ms  errors {figures['errors']}", flush=True)
            ratios.append(round_figures["batched"]["rps"] / round_figures["plain"]["rps"])
        calls, rows = batch_rows(server.url)
        calls, rows = calls - calls_before, rows - rows_before
    finally:
        server.stop()

    print()
    print(f"{'':10s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>7s}   (median over {args.rounds} rounds "
          f"of {args.seconds:g} s, {args.concurrency} connections, {tool})")
    medians = {}
    for name in NAMES:
        runs = results[name]
        medians[name] = m = {k: statistics.median(f[k] for f in runs) for k in ("rps", "p50_ms", "p99_ms")}
        print(f"{name:10s} {m['rps']:9.0f} {m['p50_ms']:8.1f} {m['p99_ms']:8.1f} {sum(f['errors'] for f in runs):7d}")
    ratio = statistics.median(ratios)
    print(f"\nbatched / unbatched req/s: {ratio:.2f}x (per round: {min(ratios):.2f}-{max(ratios):.2f}x)")
    if calls:
        print(f"batched: {rows / calls:.1f} rows per predict call on average ({calls:.0f} calls, {rows:.0f} rows)")
    met = ratio >= TARGET_RATIO and medians["batched"]["p99_ms"] < TARGET_P99_MS
    print(f"target (≥ {TARGET_RATIO:g}x at batched p99 < {TARGET_P99_MS:g} ms): {'met' if met else 'NOT met'}")
    busy = load_before[0] > 0.5 * (os.cpu_count() or 1)
    print(f"load average before {load_before[0]:.2f} on {os.cpu_count()} cores"
          + ("; the machine was busy: the figures are not reliable" if busy else ""))


if __name__ == "__main__":
    sys.exit(main())
