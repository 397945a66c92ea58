"""Requests per second and p50/p99 latency of v2 infer on a small scikit-learn model:
through changeover, and through a bare Starlette app on uvicorn calling the same model
in-process. The load comes from a separate process, on loopback.

    python bench/serving.py [--seconds 10] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import shutil

from common import ServerProcess, body_file, free_port, load, start_process, tmpdir, wait_ready
from rich.console import Console
from rich.table import Table

from modelfiles import breast_cancer, v2_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    console = Console()
    work = tmpdir()
    try:
        import skops.io as sio
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x, y = breast_cancer()
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
        artifact = work / "model.skops"
        sio.dump(model, artifact)
        body = body_file(v2_request(x[: args.batch]), work)

        results = {}
        with console.status("changeover: starting and measuring…"):
            server = ServerProcess(work / "home").start()
            try:
                server.cli("models", "push", str(artifact), "--name", "bench", check=True)
                server.cli("alias", "set", "bench", "champion", "1", check=True)
                wait_ready(server.url)
                url = f"{server.url}/v2/models/bench/infer"
                load(url, body, seconds=2, concurrency=args.concurrency)  # warm up
                results["changeover"] = load(url, body, seconds=args.seconds, concurrency=args.concurrency)
            finally:
                server.stop()
        with console.status("bare Starlette: starting and measuring…"):
            port = free_port()
            bare = start_process(str(__import__("pathlib").Path(__file__).parent / "bare_app.py"), str(artifact), str(port))
            try:
                wait_ready(f"http://127.0.0.1:{port}")
                url = f"http://127.0.0.1:{port}/v2/models/bare/infer"
                load(url, body, seconds=2, concurrency=args.concurrency)
                results["bare starlette"] = load(url, body, seconds=args.seconds, concurrency=args.concurrency)
            finally:
                bare.terminate()
                bare.wait()

        tool = results["changeover"].get("tool", "bench/loadgen.py")
        table = Table(title=f"v2 infer, batch {args.batch}, {args.concurrency} concurrent clients, {args.seconds:g}s, "
                            f"load from {tool}")
        for col in ("server", "requests", "errors", "req/s", "p50 ms", "p99 ms"):
            table.add_column(col, justify="right")
        for name, r in results.items():
            table.add_row(name, str(r["requests"]), str(r["errors"]), f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}",
                          f"{r['p99_ms']:.2f}")
        console.print(table)
        c, b = results["changeover"], results["bare starlette"]
        console.print(f"changeover / bare: throughput {c['rps'] / b['rps']:.2f}x, "
                      f"p50 {c['p50_ms'] / b['p50_ms']:.2f}x, p99 {c['p99_ms'] / b['p99_ms']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
