"""A closed-loop gRPC load generator for the v2 ModelInfer call, in its own process, run by
MLServer's venv (bench/.venv-mlserver: it has grpcio and MLServer's generated v2 stubs).

    bench/.venv-mlserver/bin/python bench/grpc_loadgen.py 127.0.0.1:PORT MODEL --seconds 8 \
        --concurrency 16 --row 7.0,3.2,4.7,1.4 [--output predict --output predict_proba]

Prints one JSON line like bench/loadgen.py: requests, errors, rps, latency p50/p90/p99 in ms.
A Python client costs more CPU per call than wrk does per HTTP request, and it shares the
machine with the server, so its figures are a floor for the server, not a match for wrk's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import grpc
import numpy as np
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc.dataplane_pb2_grpc import GRPCInferenceServiceStub


async def run(target: str, request: pb.ModelInferRequest, seconds: float, concurrency: int) -> dict[str, object]:
    host = target.rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        raise SystemExit(f"refusing to send load to {host}: loopback only")
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)
        await stub.ModelInfer(request, timeout=30)  # connect before the clock starts
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    await stub.ModelInfer(request, timeout=10)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append((time.perf_counter() - t) * 1000)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    arr = np.asarray(latencies) if latencies else np.asarray([float("nan")])
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(arr, 50)), "p90_ms": float(np.percentile(arr, 90)),
            "p99_ms": float(np.percentile(arr, 99)), "versions": {}, "tool": "bench/grpc_loadgen.py"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", help="HOST:PORT of the gRPC server")
    parser.add_argument("model")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--row", required=True, help="one input row, comma-separated floats")
    parser.add_argument("--output", action="append", default=[], help="an output to ask for")
    args = parser.parse_args()
    row = [float(v) for v in args.row.split(",")]
    request = pb.ModelInferRequest(
        model_name=args.model,
        inputs=[pb.ModelInferRequest.InferInputTensor(
            name="input", datatype="FP64", shape=[1, len(row)], contents=pb.InferTensorContents(fp64_contents=row))],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in args.output],
    )
    result = asyncio.run(run(args.target, request, args.seconds, args.concurrency))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
