"""The monitoring endpoints under /api (token-protected, as the rest of the management API):
figures over time, drift against the reference profile, online metrics from feedback, and
the alert rules with their state."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Body, Depends, Query, Request
from prometheus_client import CollectorRegistry
from starlette.responses import Response

from changeover.domain.spec import parse_duration
from changeover.errors import InvalidRequest
from changeover.monitoring.drift_monitor import current_drift, drift_history, set_reference_profile
from changeover.monitoring.engine import AlertEngine
from changeover.monitoring.online import online_report
from changeover.monitoring.prom import MonitoringMetrics, register_monitoring_metrics
from changeover.monitoring.timeseries import choose_step, parse_since, timeseries
from changeover.store.store import Store, VersionRecord
from changeover.web.auth import check_bearer
from changeover.web.http import json_response

__all__ = ["make_monitoring_router", "set_reference_profile"]

Duration = Annotated[str | None, Query(description="a duration: 30s, 15m, 1h, or seconds")]


def _duration(name: str, value: str | None, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        return parse_duration(value)
    except ValueError:
        raise InvalidRequest(name, f"not a duration: {value!r} (write e.g. 30s, 15m, 1h)") from None


def version_of(store: Store, model: str, ref: str | None) -> VersionRecord:
    """A version by number or alias; by default the champion, else the newest version."""
    if ref:
        return store.resolve(model, ref)
    champion = store.aliases(model).get("champion")
    if champion is not None:
        return store.version(model, champion)
    versions = store.versions(model)
    if not versions:
        raise InvalidRequest("version", f"model {model!r} has no versions")
    return versions[-1]


def make_monitoring_router(
    store: Store,
    token: str,
    *,
    gateway_metrics_registry: CollectorRegistry | None = None,
    engine: AlertEngine | None = None,
    metrics: MonitoringMetrics | None = None,
    refresh_s: float = 15.0,
) -> APIRouter:
    """The /api monitoring endpoints. With ``gateway_metrics_registry`` (the gateway's
    ``GatewayMetrics.registry``) the monitors' gauges are registered there and refreshed
    from the store when /metrics is scraped (at most every ``refresh_s``)."""

    def authorize(request: Request) -> None:
        check_bearer(request.headers.get("authorization"), token)

    if metrics is None and gateway_metrics_registry is not None:
        metrics = register_monitoring_metrics(gateway_metrics_registry)
        metrics.refresh_on_scrape(store, min_interval_s=refresh_s,
                                  alerts=(lambda: engine.state()["instances"]) if engine is not None else None)
    router = APIRouter(prefix="/api", dependencies=[Depends(authorize)], tags=["monitoring"])

    @router.get("/models/{name}/timeseries", summary="Per version and time bucket: traffic, errors, latency, "
                "predictions, shadow agreement, online metric")
    async def get_timeseries(
        name: str,
        since: Annotated[str | None, Query(description="a duration ago (15m) or a Unix time")] = None,
        until: Annotated[float | None, Query(description="a Unix time; default now")] = None,
        step: Duration = None,
        label_delay: Duration = None,
    ) -> Response:
        now = time.time()
        end = until if until is not None else now
        try:
            start = parse_since(since, end)
            width = choose_step(end - start, step)
        except ValueError as exc:
            raise InvalidRequest("since" if step is None else "step", str(exc)) from None
        if start >= end:
            raise InvalidRequest("since", "must be before until")
        delay = _duration("label_delay", label_delay, 0.0)

        def read() -> dict[str, Any]:
            store.versions(name)  # 404 for an unknown model
            return timeseries(store, name, since=start, until=end, step=width, label_delay_s=delay)

        return json_response(await anyio.to_thread.run_sync(read))

    @router.get("/models/{name}/drift", summary="Latest drift per input and for predictions, against the "
                "version's reference profile")
    async def get_drift(
        name: str,
        version: Annotated[str | None, Query(description="a number or an alias; default the champion")] = None,
        window: Duration = None,
        alpha: Annotated[float, Query(gt=0, lt=1)] = 0.05,
        correction: Annotated[str, Query(pattern="^(bonferroni|fdr)$")] = "bonferroni",
    ) -> Response:
        window_s = _duration("window", window, 3600.0)

        def read() -> dict[str, Any]:
            record = version_of(store, name, version)
            return current_drift(store, record, window_s=window_s, alpha=alpha, correction=correction)

        return json_response(await anyio.to_thread.run_sync(read))

    @router.get("/models/{name}/drift/history", summary="Drift per time bucket (share of drifted inputs, "
                "prediction statistic)")
    async def get_drift_history(
        name: str,
        version: Annotated[str | None, Query()] = None,
        since: Annotated[str | None, Query(description="a duration ago (1h) or a Unix time")] = None,
        step: Duration = None,
    ) -> Response:
        now = time.time()
        try:
            start = parse_since(since, now, default_s=3600.0)
            width = choose_step(now - start, step, buckets=20)
        except ValueError as exc:
            raise InvalidRequest("since", str(exc)) from None

        def read() -> dict[str, Any]:
            record = version_of(store, name, version)
            return drift_history(store, record, since=start, until=now, step=width)

        return json_response(await anyio.to_thread.run_sync(read))

    @router.put("/models/{name}/versions/{ref}/profile", summary="Set a version's drift reference profile")
    async def put_profile(
        name: str,
        ref: str,
        body: Annotated[dict[str, Any], Body(description='{"data": {column: [values]}, "predictions": [...]} '
                                             'or {"profile": <a built profile>}')],
    ) -> Response:
        data = body.get("profile") or body.get("data")
        if not isinstance(data, Mapping) or not data:
            raise InvalidRequest("data", "expected {column: [values]} (or a built profile under 'profile')")

        def write() -> dict[str, Any]:
            profile = set_reference_profile(store, name, ref, data, body.get("predictions"), source="api")
            return {"model": name, "version": store.resolve(name, ref).number, "columns": sorted(profile["columns"]),
                    "rows": profile.get("n_rows"), "prediction": profile.get("prediction") is not None}

        return json_response(await anyio.to_thread.run_sync(write))

    @router.get("/models/{name}/online", summary="Rolling online metrics per version from feedback")
    async def get_online(
        name: str,
        window: Duration = None,
        label_delay: Duration = None,
        task: Annotated[str | None, Query(pattern="^(classification|regression|ranking)$")] = None,
    ) -> Response:
        window_s = _duration("window", window, 3600.0)
        delay = _duration("label_delay", label_delay, 0.0)

        def read() -> dict[str, Any]:
            store.versions(name)
            return online_report(store, name, window_s=window_s, label_delay_s=delay, task=task)

        return json_response(await anyio.to_thread.run_sync(read))

    @router.get("/alerts", summary="Alert rules and their state")
    async def get_alerts() -> Response:
        if engine is None:
            return json_response({"enabled": False, "rules": [], "instances": [], "firing": 0,
                                  "reason": "no alert engine: no rules configured"})
        return json_response({"enabled": True, **(await anyio.to_thread.run_sync(engine.state))})

    return router
