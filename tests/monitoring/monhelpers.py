"""Monitoring test helpers: a store filled through the Store API and by inserting the rows the
gateway writes, a real HTTP receiver for webhooks, and a real uvicorn server in a thread."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import insert, select
from starlette.responses import Response

from changeover.api.app import ApiContext, install_error_handlers, make_router
from changeover.domain.signature import Signature, TensorSpec
from changeover.monitoring.dashboard import make_dashboard_router
from changeover.monitoring.router import make_monitoring_router
from changeover.registry.artifacts import ArtifactStore
from changeover.registry.service import Registry
from changeover.store import tables as t
from changeover.store.store import Store, VersionRecord
from changeover.web.auth import check_bearer

TOKEN = "monitoring-test-token"
SIG = Signature(inputs=(TensorSpec("x", "FP64", (-1, 2)),), outputs=(TensorSpec("label", "INT64", (-1,)),))


def push(store: Store, model: str, n: int, signature: Signature = SIG) -> VersionRecord:
    record, _ = store.add_version(model=model, sha256=f"{n:064x}", runtime="python", artifact=f"a/{n}",
                                  signature=signature, labels={}, trusted=False, source="test", actor="test")
    return record


_ids = iter(range(10**9))


def add_request(store: Store, model: str, version: int, at: float, *, output: dict[str, Any] | None = None,
                x: list[list[float]] | None = None, request_id: str | None = None, status: int = 200,
                latency_ms: float = 5.0) -> str:
    """A served request as the gateway logs it; with ``x`` a recorded one (inputs as v2 tensors)."""
    rid = request_id or f"r{next(_ids)}"
    inputs = None
    if x is not None:
        flat = [v for row in x for v in row]
        inputs = [{"name": "x", "datatype": "FP64", "shape": [len(x), len(x[0])], "data": flat}]
    with store.tx() as conn:
        conn.execute(insert(t.requests).values(
            request_id=rid, model=model, version=version, at=at, status=status, latency_ms=latency_ms,
            output=output, inputs=inputs, answer=None, segment=None, recorded=x is not None))
    return rid


def add_feedback(store: Store, request_id: str, model: str, at: float, served_at: float, *, label: Any = None,
                 reward: float | None = None) -> None:
    with store.tx() as conn:
        conn.execute(insert(t.feedback).values(request_id=request_id, model=model, label=label, reward=reward,
                                               at=at, served_at=served_at))


def add_window(store: Store, model: str, version: int, start: float, end: float, *, requests: int, errors: int = 0,
               latencies: list[float] | None = None, predictions: list[float] | None = None,
               replica: str = "r1") -> None:
    with store.tx() as conn:
        conn.execute(insert(t.metric_windows).values(
            model=model, version=version, replica=replica, start=start, end=end, requests=requests, errors=errors,
            latencies=latencies or [], predictions=predictions or []))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """A real webhook receiver on 127.0.0.1 that answers the statuses it is given, then 200."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[dict[str, Any]] = []
        self.answered: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.received.append(json.loads(body))
                receiver.answered.append(status)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ok(self) -> list[dict[str, Any]]:
        """The bodies that were accepted (answered 2xx)."""
        return [b for b, s in zip(self.received, self.answered, strict=True) if s < 300]


class LiveServer:
    """A FastAPI app under a real uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def build_app(store: Store, home: Path, *, engine: Any = None, rollouts: bool = True) -> FastAPI:
    """The management API, the monitoring routers, the dashboard and /metrics over ``store``;
    with ``rollouts``, a stand-in for ``GET /api/rollouts`` that reads the rollouts table."""
    registry = CollectorRegistry()
    app = FastAPI()
    app.include_router(make_router(ApiContext(store, Registry(store, ArtifactStore(home / "artifacts")), TOKEN)))
    app.include_router(make_monitoring_router(store, TOKEN, gateway_metrics_registry=registry, engine=engine,
                                              refresh_s=0.5))
    app.include_router(make_dashboard_router())
    install_error_handlers(app)

    if rollouts:
        def authorize(request: Request) -> None:
            check_bearer(request.headers.get("authorization"), TOKEN)

        stub = APIRouter(dependencies=[Depends(authorize)])

        @stub.get("/api/rollouts")
        def list_rollouts(model: str | None = None) -> list[dict[str, Any]]:
            with store.engine.connect() as conn:
                rows = conn.execute(select(t.rollouts).order_by(t.rollouts.c.id)).all()
                found = conn.execute(select(t.analyses).order_by(t.analyses.c.id)).all()
            return [{"id": r.id, "model": r.model, "spec": r.spec, "status": r.status,
                     "analyses": [{"kind": a.kind, "outcome": a.outcome, "evidence": a.evidence, "at": a.at}
                                  for a in found if a.rollout_id == r.id],
                     "events": [e for e in store.events(r.model) if "." in e["kind"]]}
                    for r in rows if model is None or r.model == model]

        app.include_router(stub)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.state.registry = registry
    return app
