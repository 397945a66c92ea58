"""Prometheus gauges of the monitors: drift, online metrics, rollouts, stored policy
generations and alerts — registered beside the gateway's metrics (gateway/metrics.py) on
its registry, so one ``GET /metrics`` serves both.

Each ``update`` replaces a whole family: a label set that is gone (a version no longer
served, a column no longer profiled) is removed, not left at its last value.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from changeover.domain.rollout_state import Phase
from changeover.errors import NotFound
from changeover.monitoring.drift_monitor import current_drift
from changeover.monitoring.online import RANKING_METRICS, online_report
from changeover.store import rollouts as rollout_store
from changeover.store.store import Store
from changeover.web.prometheus import GAUGE_MODE

__all__ = ["MonitoringMetrics", "latest_rollouts", "register_monitoring_metrics"]

log = logging.getLogger(__name__)

ONLINE_METRICS = ("accuracy", "precision", "recall", "f1", "mae", "rmse", "r2", "mape", *RANKING_METRICS)
# per segment, a ranker's headline figures only: segments × metrics × versions stays small (the
# segments themselves are bounded by online.MAX_SEGMENTS, the rest pooled under "(other)")
SEGMENT_METRICS = ("precision_at_10", "recall_at_10", "ndcg_at_10", "ctr_at_10", "mrr")
Labels = tuple[str, ...]


class _Family:
    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge
        self.keys: set[Labels] = set()

    def replace(self, values: Mapping[Labels, float]) -> None:
        """Set ``values``; remove the label sets this family had that are missing now."""
        for labels, value in values.items():
            self.gauge.labels(*labels).set(value)
        for gone in self.keys - set(values):
            with contextlib.suppress(KeyError):
                self.gauge.remove(*gone)
        self.keys = set(values)


class MonitoringMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = self.registry = registry
        self.drift_score = _Family(Gauge(
            "changeover_drift_score", "Drift statistic of a column against the reference (KS D, Wasserstein/std, "
            "Jensen-Shannon, chi2 or z)", ["model", "version", "column", "test"], registry=r, multiprocess_mode=GAUGE_MODE))
        self.drift_detected = _Family(Gauge(
            "changeover_drift_detected", "1 when the column drifted (corrected across columns)",
            ["model", "version", "column"], registry=r, multiprocess_mode=GAUGE_MODE))
        self.drift_share = _Family(Gauge(
            "changeover_drift_share", "Share of input columns that drifted", ["model", "version"], registry=r, multiprocess_mode=GAUGE_MODE))
        self.online = _Family(Gauge(
            "changeover_online_metric", "Online metric from feedback over labelled requests",
            ["model", "version", "metric"], registry=r, multiprocess_mode=GAUGE_MODE))
        self.online_segment = _Family(Gauge(
            "changeover_online_segment_metric", "Online ranking metric from feedback, per segment of the request log "
            f"({', '.join(SEGMENT_METRICS)})", ["model", "version", "segment", "metric"], registry=r, multiprocess_mode=GAUGE_MODE))
        self.labelled = _Family(Gauge(
            "changeover_online_labelled", "Requests with a label in the online window", ["model", "version"], registry=r, multiprocess_mode=GAUGE_MODE))
        self.rollout_phase = _Family(Gauge(
            "changeover_rollout_phase", "1 for the phase the model's latest rollout is in", ["model", "phase"], registry=r, multiprocess_mode=GAUGE_MODE))
        self.rollout_step = _Family(Gauge(
            "changeover_rollout_step", "Cursor of the latest rollout into its canary steps (-1 before)",
            ["model"], registry=r, multiprocess_mode=GAUGE_MODE))
        self.rollout_weight = _Family(Gauge(
            "changeover_rollout_weight", "Percent of live traffic the rollout's candidate gets",
            ["model", "version"], registry=r, multiprocess_mode=GAUGE_MODE))
        self.generation = _Family(Gauge(
            "changeover_policy_generation_stored", "Newest traffic policy generation written to the store",
            ["model"], registry=r, multiprocess_mode=GAUGE_MODE))
        self.alert_firing = _Family(Gauge(
            "changeover_alert_firing", "1 while an alert rule fires", ["rule", "model", "severity"], registry=r, multiprocess_mode=GAUGE_MODE))
        self.refreshed_at = Gauge("changeover_monitoring_refreshed", "Unix time of the last refresh", registry=r, multiprocess_mode=GAUGE_MODE)

    def update(
        self,
        *,
        drift: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
        online: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
        rollouts: Mapping[str, Mapping[str, Any]] | None = None,
        generations: Mapping[str, int] | None = None,
        alerts: Iterable[Mapping[str, Any]] | None = None,
    ) -> None:
        """Replace the families given. ``drift``: (model, version) -> current_drift report;
        ``online``: (model, version) -> online figures; ``rollouts``: model -> {phase,
        step_index, weight, candidate}; ``generations``: model -> generation; ``alerts``: the
        engine's instances."""
        if drift is not None:
            scores: dict[Labels, float] = {}
            detected: dict[Labels, float] = {}
            shares: dict[Labels, float] = {}
            for (model, version), report in drift.items():
                for c in report.get("columns", []):
                    if c.get("test") == "no_data" or c.get("statistic") is None:
                        continue
                    scores[(model, str(version), c["name"], c["test"])] = float(c["statistic"])
                    detected[(model, str(version), c["name"])] = float(bool(c["drifted"]))
                if report.get("drift_share") is not None:
                    shares[(model, str(version))] = float(report["drift_share"])
            self.drift_score.replace(scores)
            self.drift_detected.replace(detected)
            self.drift_share.replace(shares)
        if online is not None:
            values: dict[Labels, float] = {}
            by_segment: dict[Labels, float] = {}
            labelled: dict[Labels, float] = {}
            for (model, version), figures in online.items():
                for segment, seg in (figures.get("segments") or {}).items():
                    for name in SEGMENT_METRICS:
                        value = (seg.get("metrics") or {}).get(name)
                        if isinstance(value, int | float) and math.isfinite(value):
                            by_segment[(model, str(version), str(segment), name)] = float(value)
                labelled[(model, str(version))] = float(figures.get("labelled") or 0)
                metrics = dict(figures.get("metrics") or {})
                if figures.get("mean_reward") is not None:
                    metrics["mean_reward"] = figures["mean_reward"]
                for name, value in metrics.items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        values[(model, str(version), name)] = float(value)
            self.online.replace(values)
            self.online_segment.replace(by_segment)
            self.labelled.replace(labelled)
        if rollouts is not None:
            phases: dict[Labels, float] = {}
            steps: dict[Labels, float] = {}
            weights: dict[Labels, float] = {}
            for model, status in rollouts.items():
                for phase in Phase:
                    phases[(model, str(phase))] = float(status.get("phase") == phase)
                steps[(model,)] = float(status.get("step_index", -1))
                if status.get("candidate") is not None:
                    weights[(model, str(status["candidate"]))] = float(status.get("weight") or 0.0)
            self.rollout_phase.replace(phases)
            self.rollout_step.replace(steps)
            self.rollout_weight.replace(weights)
        if generations is not None:
            self.generation.replace({(m,): float(g) for m, g in generations.items()})
        if alerts is not None:
            self.alert_firing.replace({
                (a["rule"], a["model"], str(a.get("severity", ""))): float(a.get("state") == "firing") for a in alerts
            })

    def refresh(self, store: Store, now: float | None = None, *, drift_window_s: float = 3600.0,
                online_window_s: float = 3600.0, label_delay_s: float = 0.0,
                alerts: Iterable[Mapping[str, Any]] | None = None) -> None:
        """Recompute every family from the store: drift and online figures of each model's
        serving versions, its latest rollout, the stored policy generations."""
        now = time.time() if now is None else now
        drift: dict[tuple[str, int], Mapping[str, Any]] = {}
        online: dict[tuple[str, int], Mapping[str, Any]] = {}
        for model in store.models():
            policy = store.policy(model)
            serving = sorted(policy.serving_versions) if policy else []
            if not serving and "champion" in store.aliases(model):
                serving = [store.aliases(model)["champion"]]
            for version in serving:
                try:
                    drift[(model, version)] = current_drift(store, store.version(model, version),
                                                            window_s=drift_window_s, now=now)
                except NotFound:
                    continue
            report = online_report(store, model, window_s=online_window_s, label_delay_s=label_delay_s, now=now)
            for version_key, figures in report["versions"].items():
                online[(model, int(version_key))] = figures
        self.update(drift=drift, online=online, rollouts=latest_rollouts(store), generations=store.generations(),
                    alerts=alerts)
        self.refreshed_at.set(now)

    def refresh_on_scrape(self, store: Store, *, min_interval_s: float = 15.0,
                          alerts: Callable[[], Iterable[Mapping[str, Any]]] | None = None, **kwargs: Any) -> None:
        """Refresh in the background when the registry is collected (a scrape of /metrics) and
        the last refresh began at least ``min_interval_s`` ago; that scrape sees the previous
        values. No thread runs while nobody scrapes."""
        self.registry.register(_ScrapeRefresh(
            lambda: self.refresh(store, alerts=alerts() if alerts is not None else None, **kwargs), min_interval_s))


class _ScrapeRefresh:
    """A collector that yields nothing: collecting it starts a refresh when one is due."""

    def __init__(self, refresh: Callable[[], None], min_interval_s: float) -> None:
        self.refresh = refresh
        self.min_interval_s = min_interval_s
        self.last = -math.inf
        self.running = False
        self.lock = threading.Lock()

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        with self.lock:
            due = not self.running and time.monotonic() - self.last >= self.min_interval_s
            if due:
                self.running, self.last = True, time.monotonic()
        if due:
            threading.Thread(target=self._run, name="changeover-prom-refresh", daemon=True).start()
        return []

    def _run(self) -> None:
        try:
            self.refresh()
        except Exception:
            log.exception("refresh of the monitoring metrics failed")
        finally:
            with self.lock:
                self.running = False


def latest_rollouts(store: Store) -> dict[str, dict[str, Any]]:
    """model -> the status of its newest rollout, with the candidate's version number."""
    rows = rollout_store.every(store)
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        status = dict(row.status or {})
        candidate = status.get("candidate_version")  # the controller keeps the resolved number here
        if candidate is None and (row.spec or {}).get("candidate") is not None:
            try:
                candidate = store.resolve(row.model, row.spec["candidate"]).number
            except (NotFound, ValueError):
                candidate = None
        status["candidate"] = candidate
        out[row.model] = status
    return out


def register_monitoring_metrics(registry: CollectorRegistry) -> MonitoringMetrics:
    """Register the monitors' gauges on ``registry`` (the gateway's: GatewayMetrics.registry)."""
    return MonitoringMetrics(registry)
