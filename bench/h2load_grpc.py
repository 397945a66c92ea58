"""gRPC load from h2load (nghttp2's HTTP/2 benchmark, a C program, Debian's nghttp2-client):
the v2 ModelInfer call as gRPC puts it on the wire (a POST of one length-prefixed protobuf
message), so changeover's gRPC and MLServer's are measured by the same C client, as wrk does
for REST. h2load counts HTTP/2 answers; a gRPC error also comes as HTTP 200 (its status is in
the trailers), so `check_answer` makes one call with grpcio first and the run fails loudly
if that call is refused.

    python bench/h2load_grpc.py 127.0.0.1:PORT MODEL --row 7.0,3.2,4.7,1.4 [--output predict]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import ensure_debian

from changeover.protos import grpc_predict_v2_pb2 as pb

PATH = "/inference.GRPCInferenceService/ModelInfer"


def ensure_h2load() -> bool:
    """h2load (Debian package nghttp2-client), installed when missing and we are root."""
    return ensure_debian("h2load", "nghttp2-client")


def infer_request(model: str, row: list[float], outputs: tuple[str, ...] = ()) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[pb.ModelInferRequest.InferInputTensor(
            name="input", datatype="FP64", shape=[1, len(row)], contents=pb.InferTensorContents(fp64_contents=row))],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs],
    )


def framed(message: pb.ModelInferRequest) -> bytes:
    """One gRPC message on the wire: not compressed (0), its length (4 bytes, big-endian), itself."""
    raw = message.SerializeToString()
    return b"\x00" + len(raw).to_bytes(4, "big") + raw


def check_answer(target: str, message: pb.ModelInferRequest) -> None:
    """One real gRPC call: the load is only worth measuring if the server answers it."""
    import grpc

    from changeover.protos.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    with grpc.insecure_channel(target) as channel:
        answer = GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=30)
    if not answer.outputs:
        raise RuntimeError(f"{target} answered ModelInfer without outputs")


def run(target: str, message: pb.ModelInferRequest, *, seconds: float, concurrency: int) -> dict[str, Any]:
    host = target.rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        raise SystemExit(f"refusing to send load to {host}: loopback only")
    check_answer(target, message)
    with tempfile.TemporaryDirectory(prefix="changeover-h2load-") as folder:
        body, log = Path(folder) / "body.bin", Path(folder) / "requests.log"
        body.write_bytes(framed(message))
        # one stream per connection (-m1): closed-loop like wrk's 16 connections
        out = subprocess.run(
            ["h2load", "-t1", f"-c{concurrency}", "-m1", f"-D{max(1, round(seconds))}", "--warm-up-time=1",
             "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
             f"--log-file={log}", f"http://{target}{PATH}"],
            capture_output=True, text=True, timeout=seconds + 60, check=True)
        durations_ms, errors = [], 0
        for line in log.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) < 3:
                continue
            status, micros = int(fields[1]), int(fields[2])
            if status != 200:
                errors += 1
            durations_ms.append(micros / 1000)
    requests = len(durations_ms)
    failed = _figure(out.stdout, "failed") + _figure(out.stdout, "errored") + _figure(out.stdout, "timeout")
    cuts = statistics.quantiles(durations_ms, n=100) if requests > 1 else [float("nan")] * 99
    rps = _rate(out.stdout)
    return {"requests": requests, "errors": errors + failed, "rps": rps if rps is not None else requests / seconds,
            "p50_ms": cuts[49], "p90_ms": cuts[89], "p99_ms": cuts[98], "versions": {}, "tool": "h2load"}


def _rate(text: str) -> float | None:
    """req/s from h2load's "finished in 8.00s, 1234.56 req/s, …" line (the warm-up left out)."""
    for line in text.splitlines():
        if line.startswith("finished in") and "req/s" in line:
            return float(line.split(",")[1].split()[0])
    return None


def _figure(text: str, name: str) -> int:
    """A count from h2load's "requests: … N failed, N errored, N timeout" line."""
    for line in text.splitlines():
        if line.startswith("requests:"):
            for part in line.split(":", 1)[1].split(","):
                words = part.split()
                if len(words) == 2 and words[1] == name:
                    return int(words[0])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", help="HOST:PORT of the gRPC server")
    parser.add_argument("model")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--row", required=True, help="one input row, comma-separated floats")
    parser.add_argument("--output", action="append", default=[], help="an output to ask for")
    args = parser.parse_args()
    if not ensure_h2load():
        raise SystemExit("h2load is not installed (Debian: apt-get install nghttp2-client)")
    message = infer_request(args.model, [float(v) for v in args.row.split(",")], tuple(args.output))
    result = run(args.target, message, seconds=args.seconds, concurrency=args.concurrency)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
