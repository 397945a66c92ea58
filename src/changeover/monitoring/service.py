"""Everything monitoring needs in one ``serve`` process, assembled in one call: the /api
endpoints, the dashboard, the Prometheus gauges on the gateway's registry, and the alert
engine's loop (which also refreshes the gauges)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from prometheus_client import CollectorRegistry

from changeover.monitoring.alerts import RulesConfig, load_rules, parse_rules
from changeover.monitoring.dashboard import make_dashboard_router
from changeover.monitoring.engine import AlertEngine, RollbackHook
from changeover.monitoring.figures import StoreFigures
from changeover.monitoring.prom import MonitoringMetrics, register_monitoring_metrics
from changeover.monitoring.router import make_monitoring_router
from changeover.monitoring.webhooks import Delivery, WebhookSender
from changeover.store.store import Store

__all__ = ["Monitoring"]

log = logging.getLogger(__name__)


class Monitoring:
    def __init__(
        self,
        store: Store,
        token: str,
        *,
        registry: CollectorRegistry | None = None,
        rules: RulesConfig | str | Path | Mapping[str, Any] | list[Any] | None = None,
        on_rollback: RollbackHook | None = None,
        leading: Callable[[], bool] | None = None,
        interval_s: float = 10.0,
        refresh_s: float = 30.0,
        dashboard_url: str | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        """``rules``: a RulesConfig, a path to a YAML/JSON rules file, or parsed rules.
        ``on_rollback``: called when a rule with ``rollback: true`` fires (see
        ``figures.rollback_on_alert``). ``leading``: evaluate only while this is true (the
        controller's lease), so one replica announces alerts. The alert rules are evaluated every
        ``interval_s``; the Prometheus gauges (drift, online metrics…) are recomputed at most every
        ``refresh_s``."""
        self.store = store
        self.token = token
        self.interval_s = interval_s
        self.refresh_s = refresh_s
        self._refreshed = -math.inf
        if isinstance(rules, str | Path):
            config = load_rules(rules)
        elif isinstance(rules, RulesConfig):
            config = rules
        else:
            config = parse_rules(rules)
        self.metrics: MonitoringMetrics | None = register_monitoring_metrics(registry) if registry is not None else None
        self.webhooks = webhooks or WebhookSender(on_failure=self._webhook_failed)
        self.engine = AlertEngine(store, config, StoreFigures(store), webhooks=self.webhooks, on_rollback=on_rollback,
                                  leading=leading, dashboard_url=dashboard_url)

    def _webhook_failed(self, delivery: Delivery, payload: Mapping[str, Any]) -> None:
        self.store.add_event("alert_webhook_failed",
                             f"webhook {delivery.url} gave up after {delivery.attempts} attempts: {delivery.error}",
                             model=payload.get("model"), actor="alerts",
                             evidence={"rule": payload.get("rule"), "status": payload.get("status"),
                                       "http_status": delivery.status})

    def routers(self) -> list[APIRouter]:
        """The /api monitoring router and the dashboard router, for ``app.include_router``."""
        return [make_monitoring_router(self.store, self.token, engine=self.engine, metrics=self.metrics),
                make_dashboard_router()]

    def _tick(self, now: float) -> None:
        if self.metrics is None:
            return
        if now - self._refreshed >= self.refresh_s:
            self._refreshed = now
            self.metrics.refresh(self.store, now, alerts=self.engine.state()["instances"])
        else:  # alert states change at every pass: keep their gauge current
            self.metrics.update(alerts=self.engine.state()["instances"])

    def start(self) -> None:
        self.engine.start(self.interval_s, on_tick=self._tick)

    def stop(self) -> None:
        self.engine.stop()
        self.webhooks.close()
