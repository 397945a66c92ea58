"""Where the alert engine reads its figures (the store), and what it calls to roll back.

``StoreFigures`` answers a ``FigureQuery`` from the metric windows, the drift of recorded
traffic against the version's profile, and feedback. Figures of one group are computed once
per evaluation pass and shared by every rule that needs them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from changeover.domain.rollout_state import Command
from changeover.errors import NotFound
from changeover.monitoring.drift_monitor import current_drift
from changeover.monitoring.engine import Figure, FigureQuery, RollbackHook
from changeover.monitoring.online import online_report
from changeover.monitoring.timeseries import window_figures
from changeover.store import rollouts as rollout_store
from changeover.store.store import Store, VersionRecord
from changeover.store.traffic import metric_windows

__all__ = ["StoreFigures", "rollback_on_alert"]

log = logging.getLogger(__name__)

TRAFFIC = {"requests", "errors", "error_rate", "latency_p50_ms", "latency_p99_ms", "mean_prediction"}
DRIFT = {"drift_share", "drifted_columns", "drift_any", "prediction_drift"}


class StoreFigures:
    """A ``Provider`` over the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[tuple[Any, ...], Mapping[str, Any]] = {}
        self._cache_now: float | None = None

    def __call__(self, q: FigureQuery) -> Figure | None:
        if q.now != self._cache_now:
            self._cache, self._cache_now = {}, q.now
        try:
            record = self.store.resolve(q.model, q.version)
        except NotFound as exc:
            return Figure(None, None, {"reason": str(exc)})
        if q.metric in TRAFFIC:
            figures = self._cached(("traffic", q.model, record.number, q.window_s), lambda: window_figures(
                metric_windows(self.store, q.model, record.number, since=q.now - q.window_s, until=q.now)))
            return Figure(figures[q.metric], record.number, {"window_s": q.window_s, "requests": figures["requests"]})
        if q.metric in DRIFT:
            return self._drift(q, record)
        return self._online(q, record)

    def _cached(self, key: tuple[Any, ...], compute: Callable[[], Mapping[str, Any]]) -> Mapping[str, Any]:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def _drift(self, q: FigureQuery, record: VersionRecord) -> Figure:
        report = self._cached(("drift", q.model, record.number, q.window_s),
                              lambda: current_drift(self.store, record, window_s=q.window_s, now=q.now))
        evidence = {"window_s": q.window_s, "requests": report.get("n_requests"), "reason": report.get("reason"),
                    "drifted": [c["name"] for c in report.get("columns", []) if c.get("drifted")]}
        if not report.get("available") or (report.get("drift_share") is None and report.get("prediction") is None):
            return Figure(None, record.number, evidence)
        prediction = report.get("prediction") or {}
        value = {
            "drift_share": report.get("drift_share"),
            "drifted_columns": float(report.get("drifted_columns") or 0),
            "drift_any": float(bool(report.get("drifted_any"))),
            "prediction_drift": prediction.get("statistic") if prediction.get("test") != "no_data" else None,
        }[q.metric]
        return Figure(value, record.number, evidence)

    def _online(self, q: FigureQuery, record: VersionRecord) -> Figure:
        report = self._cached(("online", q.model, q.window_s, q.label_delay_s),
                              lambda: online_report(self.store, q.model, window_s=q.window_s,
                                                    label_delay_s=q.label_delay_s, now=q.now))
        figures = report["versions"].get(str(record.number))
        if figures is None:
            return Figure(None, record.number, {"reason": "no requests in the window"})
        value = figures.get(q.metric, (figures.get("metrics") or {}).get(q.metric))
        evidence = {"window_s": q.window_s, "label_delay_s": q.label_delay_s, "labelled": figures["labelled"],
                    "compared": figures.get("compared")}
        return Figure(None if value is None else float(value), record.number, evidence)


def rollback_on_alert(store: Store, wake: Callable[[], None] = lambda: None, *, actor: str = "alerts") -> RollbackHook:
    """A rollback hook for ``AlertEngine``: when the model's active rollout is in ``watching``,
    leave it the command ``rollback-alert`` (a rollback, said to be an alert rule's) (the controller acts on it at its next tick,
    woken at once) and write why to the audit log. Outside a watch it only records that the
    rule asked. Returns whether a rollback was requested."""

    def hook(model: str, version: int | None, reason: str, evidence: Mapping[str, Any]) -> bool:
        with store.tx() as conn:
            rows = rollout_store.active_in(conn, model)
            watching = [r for r in rows if (r.status or {}).get("phase") == "watching"]
            for r in watching:
                rollout_store.write(conn, r.id, {"command": Command.ROLLBACK_ON_ALERT.value, "updated_at": time.time()})
            rule = (evidence.get("rule") or {}).get("name") if isinstance(evidence.get("rule"), Mapping) else None
            if watching:
                message = f"rollback of {model} requested: {reason}"
            else:
                message = f"{reason}, but no rollout of {model} is in watch: nothing rolled back"
            store.add_event("alert_rollback", message, model=model, actor=actor,
                            evidence={"requested": bool(watching), "rollouts": [r.id for r in watching],
                                      "version": version, "rule": rule}, conn=conn)
        if watching:
            wake()
        return bool(watching)

    return hook
