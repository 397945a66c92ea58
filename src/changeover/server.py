"""Assembles the data plane, the control plane and the management API into the process
that ``changeover serve`` runs. Neither plane imports the other; they meet in the store."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from changeover.api.app import ApiContext, install_error_handlers, make_router
from changeover.api.evaluation_routes import make_evaluation_router
from changeover.api.jobs import JobRunner
from changeover.api.rollout_routes import make_rollout_router
from changeover.control.loop import Controller, RecorderState
from changeover.control.rollouts import RolloutReconciler
from changeover.evaluation.jobs import gate_job
from changeover.gateway.grpc import GrpcEndpoints
from changeover.gateway.openapi import describe_inference
from changeover.gateway.rest import is_data_plane_path, is_v1_liveness
from changeover.gateway.service import Gateway
from changeover.monitoring.figures import rollback_on_alert
from changeover.monitoring.service import Monitoring
from changeover.registry.service import Registry
from changeover.registry.shared import open_artifacts
from changeover.settings import Settings
from changeover.store.store import Store
from changeover.web.auth import ensure_token

log = logging.getLogger("changeover")


def private_home(home: Path) -> None:
    """The home holds recorded inputs, labels and the token: only its owner may read it. What
    this process creates from now on is 0600 (files) and 0700 (folders); the home itself 0700."""
    os.umask(0o077)
    home.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        home.chmod(0o700)


def private_files(home: Path) -> None:
    """Files an older version (or another umask) left readable to others: made the owner's."""
    for path in home.rglob("*"):
        with contextlib.suppress(OSError):
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                path.chmod(mode & 0o700)


def announce_token(token_file: Path) -> None:
    """Where a generated token is: never the token itself, which logs keep and terminals share."""
    print(f"changeover: generated a management token, kept in {token_file} (mode 0600); the CLI and the "
          "Python client on this machine read it from there", file=sys.stderr, flush=True)


class Server:
    """Every long-lived part of one ``serve`` process."""

    def __init__(self, settings: Settings, *, grpc_host: str = "127.0.0.1") -> None:
        self.settings = settings
        self.grpc_host = grpc_host
        private_home(settings.home)
        token, generated = ensure_token(settings.token, settings.token_file)
        if generated:
            announce_token(settings.token_file)
        self.token = token
        settings.token = token
        self.store = Store(settings.store_url)
        private_files(settings.home)
        self.registry = Registry(self.store, open_artifacts(settings.artifacts, settings.artifacts_dir, engine=self.store.engine,
                                                           options=settings.artifacts_options),
                                 trusted_folders=settings.trusted_folders, skops_trusted_types=settings.skops_trusted_types)
        self.gateway = Gateway(self.store, self.registry, settings)
        self.grpc = GrpcEndpoints(self.gateway.plane, settings.max_body_bytes)
        self.controller = Controller(self.store, tick_s=settings.controller_tick_s)
        writer = self.gateway.writer
        self.controller.recorder = lambda: RecorderState(self.gateway.replica, writer.stalled_since, writer.pending,
                                                         writer.dropped)
        self.jobs = JobRunner()
        self.monitoring = Monitoring(
            self.store, token, registry=self.gateway.metrics.registry, rules=settings.alert_rules,
            on_rollback=rollback_on_alert(self.store, self.controller.wake),
            leading=lambda: self.controller.leading, interval_s=settings.alert_interval_s)
        self.controller.rollouts = RolloutReconciler(self.store, holder=self.controller.holder,
                                                     run_gate=self.submit_gate)

    def submit_gate(self, model: str, candidate: str, champion: str, data: str, task: str, target: str,
                    require: dict[str, Any], ks: list[int], query_column: str | None, rollout_id: int) -> Any:
        """A rollout's gate, in a worker process (the controller polls the future)."""
        return self.jobs.submit(gate_job, self.store.url, self.registry.artifacts.locator, model, candidate,
                                champion, data, task, target, require, ks, query_column, False,
                                self.controller.holder, rollout_id)

    async def preflight(self, model: str, version: int) -> None:
        """Load and warm a version before any alias sends traffic to it."""
        await self.gateway.pool.ensure(model, version)

    def status_extra(self) -> dict[str, Any]:
        return {
            "gateway": {
                "replica": self.gateway.replica,
                "loaded": [{"model": m, "version": v} for m, v in self.gateway.pool.loaded()],
                "generations": {m: p.generation for m, p in self.gateway.policies.items()},
                "dropped_records": self.gateway.writer.dropped,
                "recorder": {"pending": self.gateway.writer.pending, "written": self.gateway.writer.written,
                             "dropped": self.gateway.writer.dropped, "failures": self.gateway.writer.failures,
                             "stalled_since": self.gateway.writer.stalled_since},
            },
            "controller": {"holder": self.controller.holder, "leading": self.controller.leading,
                           "ticks": self.controller.ticks},
        }

    def app(self) -> Any:
        """The ASGI app of ``serve``: data-plane paths straight to the gateway's own router (no
        management middleware or route table on the inference path), the rest to FastAPI."""
        management = self.management_app()
        data_plane = self.gateway.router()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and (is_data_plane_path(scope["path"]) or is_v1_liveness(scope)):
                await data_plane(scope, receive, send)
            else:
                await management(scope, receive, send)

        return app

    def management_app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            await self.gateway.start()
            if self.settings.grpc_port is not None:
                await self.grpc.start(self.grpc_host, self.settings.grpc_port)
            self.jobs.warm()  # the first apply's compatibility replay need not start a process
            self.controller.start()
            self.monitoring.start()
            # what start-up allocated lives as long as the process: out of the collector's way, so
            # a full collection does not stall requests for tens of milliseconds
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                self.monitoring.stop()
                self.controller.stop()
                self.jobs.close()
                await self.grpc.stop()  # before the gateway: its in-flight calls finish first
                await self.gateway.stop()
                self.store.close()
                if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(os.getpid())

        app = FastAPI(title="changeover", version="0.1.0", lifespan=lifespan,
                      description="Model updates without hurting production: management API. "
                      "Inference speaks the Open Inference Protocol v2 under /v2.")
        ctx = ApiContext(self.store, self.registry, self.token, wake=self.controller.wake,
                         preflight=self.preflight, status_extra=self.status_extra, jobs=self.jobs)
        app.include_router(make_router(ctx))
        app.include_router(make_evaluation_router(ctx))
        app.include_router(make_rollout_router(ctx))
        for router in self.monitoring.routers():
            app.include_router(router)
        install_error_handlers(app)
        describe_inference(app, self.gateway.rest)  # the data plane's routes in /openapi.json
        return app


def create_app(settings: Settings | None = None, *, grpc_host: str = "127.0.0.1") -> Any:
    return Server(settings or Settings(), grpc_host=grpc_host).app()


WORKER_HOST_ENV = "CHANGEOVER_WORKER_GRPC_HOST"


def prepare_workers(settings: Settings, host: str) -> None:
    """Before ``serve --workers N`` starts its processes: the token and the schema once (not
    raced by N processes), Prometheus' multiprocess folder emptied, and what the workers need
    to know put in the environment they inherit."""
    private_home(settings.home)
    _, generated = ensure_token(settings.token, settings.token_file)
    if generated:
        announce_token(settings.token_file)
    Store(settings.store_url).close()  # migrations, once
    folder = settings.home / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    os.environ[WORKER_HOST_ENV] = host
    if settings.grpc_port is not None:
        os.environ["CHANGEOVER_GRPC_PORT"] = str(settings.grpc_port)


def create_worker_app() -> Any:
    """The app of one ``serve --workers`` process (uvicorn's factory)."""
    return create_app(Settings(), grpc_host=os.environ.get(WORKER_HOST_ENV, "127.0.0.1"))
