"""A load generator that runs in its own process: closed loop (N concurrent clients) or
open loop (a fixed request rate), bounded in requests and time, loopback only.

    python bench/loadgen.py URL BODY.json --seconds 10 --concurrency 16 [--rate 200]

Prints one JSON line: requests, errors, rps, latency p50/p90/p99 in ms, versions seen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import urlparse

import httpx
import numpy as np


async def run(url: str, body: bytes, seconds: float, concurrency: int, rate: float | None, max_requests: int,
              headers: dict[str, str]) -> dict[str, object]:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to send load to {host}: loopback only")
    latencies: list[float] = []
    errors = 0
    versions: Counter[str] = Counter()
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def one() -> None:
            nonlocal errors
            start = time.perf_counter()
            try:
                r = await client.post(url, content=body, headers={"content-type": "application/json", **headers})
                if r.status_code != 200:
                    errors += 1
                versions[r.headers.get("x-changeover-version", "-")] += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append((time.perf_counter() - start) * 1000)

        if rate:
            interval = 1.0 / rate
            tasks: set[asyncio.Task[None]] = set()
            next_at = time.perf_counter()
            while time.perf_counter() < deadline and sent < max_requests:
                now = time.perf_counter()
                if now < next_at:
                    await asyncio.sleep(next_at - now)
                next_at += interval
                if len(tasks) >= concurrency * 8:  # bounded: never queue without end
                    errors += 1
                    continue
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.gather(*tasks)
        else:

            async def worker() -> None:
                nonlocal sent
                while time.perf_counter() < deadline and sent < max_requests:
                    sent += 1
                    await one()

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = seconds if rate else max(1e-9, min(seconds, time.perf_counter() - (deadline - seconds)))
    arr = np.asarray(latencies) if latencies else np.asarray([float("nan")])
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(arr, 50)),
        "p90_ms": float(np.percentile(arr, 90)),
        "p99_ms": float(np.percentile(arr, 99)),
        "versions": dict(versions),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("body", help="a file with the JSON body")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=None, help="open loop: requests per second")
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--header", action="append", default=[], help="NAME:VALUE")
    args = parser.parse_args()
    with open(args.body, "rb") as fh:
        body = fh.read()
    headers = dict(h.split(":", 1) for h in args.header)
    result = asyncio.run(run(args.url, body, args.seconds, args.concurrency, args.rate, args.max_requests, headers))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
