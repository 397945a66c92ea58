"""A tiny real Open Inference Protocol backend on 127.0.0.1 for the remote runtime's tests:
it answers ``POST /v2/models/{m}/infer`` with ``y`` = the row sums of ``x``, and can be told
to hang (until released, at most ``hang_max_s``) or to answer 500."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

YAML = ("runtime: remote\nurl: {url}\nremote_model: m\n"
        "inputs: [{{name: x, datatype: FP64, shape: [-1, 2]}}]\noutputs: [{{name: y, datatype: FP64, shape: [-1]}}]\n")


class FakeBackend:
    def __init__(self, hang_max_s: float = 30.0) -> None:
        self.mode = "ok"  # ok | hang | fail
        self.hang_max_s = hang_max_s
        self.release = threading.Event()
        self.requests = 0
        self.hanging = 0
        self._lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                with backend._lock:
                    backend.requests += 1
                mode = backend.mode
                if mode == "hang":
                    with backend._lock:
                        backend.hanging += 1
                    backend.release.wait(backend.hang_max_s)
                    with backend._lock:
                        backend.hanging -= 1
                if mode == "fail":
                    self._send(500, {"error": "backend broke"})
                    return
                x = body["inputs"][0]
                rows, cols = x["shape"]
                data = x["data"]
                sums = [sum(data[r * cols:(r + 1) * cols]) for r in range(rows)]
                self._send(200, {"model_name": "m", "outputs": [
                    {"name": "y", "datatype": "FP64", "shape": [rows], "data": sums}]})

            def _send(self, status: int, answer: dict[str, Any]) -> None:
                raw = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:  # the client gave up (timed out) meanwhile
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeBackend:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
