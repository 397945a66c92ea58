"""The alert engine: evaluates the rules over figures read through a provider, writes each
firing and resolving to the audit log once, sends its webhook, and asks for a rollback
when a rule says so.

"Once" holds across replicas and restarts: an event's dedup key is the rule, the model and
the episode number, and the engine rebuilds its firing states from the audit log when it
starts (or takes the lead), so a second engine neither doubles an event nor resends its webhook.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from changeover.domain.spec import format_duration
from changeover.monitoring.alerts import AlertRule, AlertState, AlertStatus, RulesConfig, Transition, step
from changeover.monitoring.webhooks import WebhookSender
from changeover.store import events as store_events
from changeover.store.store import Store

__all__ = ["AlertEngine", "Figure", "FigureQuery", "Provider", "RollbackHook", "alert_payload"]

log = logging.getLogger(__name__)

FIRING_EVENT = "alert_firing"
RESOLVED_EVENT = "alert_resolved"
RESTORE_EVENTS = 10_000  # the newest alert events read to rebuild the state


@dataclass(frozen=True)
class FigureQuery:
    model: str
    version: str  # an alias or a number, as the rule says
    metric: str
    window_s: float
    label_delay_s: float
    now: float


@dataclass(frozen=True)
class Figure:
    value: float | None
    version: int | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)


Provider = Callable[[FigureQuery], Figure | None]
RollbackHook = Callable[[str, int | None, str, Mapping[str, Any]], Any]
"""(model, version, reason, evidence): called when a rule with ``rollback: true`` fires."""


def alert_payload(rule: AlertRule, model: str, status: AlertStatus, version: int | None, firing: bool,
                  dashboard_url: str | None = None) -> dict[str, Any]:
    """The webhook body: Slack reads ``text``; other receivers read the fields beside it."""
    what = f"{model}" + (f" v{version}" if version is not None else "")
    value = "n/a" if status.value is None else f"{status.value:.4g}"
    if firing:
        head = f":rotating_light: FIRING [{rule.severity}] {rule.name}"
        body = f"{what}: {rule.metric} = {value} {rule.condition} {rule.threshold:g}"
        if rule.for_s:
            body += f" for {format_duration(rule.for_s)}"
        if rule.rollback:
            body += " — rollback requested"
    else:
        head = f":white_check_mark: RESOLVED {rule.name}"
        body = f"{what}: {rule.metric} = {value}, no longer {rule.condition} {rule.threshold:g}"
    text = f"{head}\n{body}" + (f"\n<{dashboard_url}|dashboard>" if dashboard_url else "")
    return {
        "text": text,
        "status": "firing" if firing else "resolved",
        "rule": rule.name,
        "severity": rule.severity,
        "model": model,
        "version": version,
        "metric": rule.metric,
        "value": status.value,
        "condition": rule.condition,
        "threshold": rule.threshold,
        "for_s": rule.for_s,
        "episode": status.episode,
        "fired_at": status.fired_at,
        "resolved_at": status.resolved_at if not firing else None,
        "rollback": rule.rollback and firing,
    }


@dataclass
class _Instance:
    rule: AlertRule
    model: str
    status: AlertStatus = field(default_factory=AlertStatus)
    version: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.name, "model": self.model, "version": self.version, "metric": self.rule.metric,
                "condition": self.rule.condition, "threshold": self.rule.threshold, "error": self.error,
                "severity": self.rule.severity, "for_s": self.rule.for_s, "rollback": self.rule.rollback,
                **self.status.to_dict()}


class AlertEngine:
    def __init__(
        self,
        store: Store,
        config: RulesConfig,
        provider: Provider,
        *,
        webhooks: WebhookSender | None = None,
        on_rollback: RollbackHook | None = None,
        models: Callable[[], list[str]] | None = None,
        leading: Callable[[], bool] | None = None,
        dashboard_url: str | None = None,
        actor: str = "alerts",
    ) -> None:
        self.store = store
        self.config = config
        self.provider = provider
        self.webhooks = webhooks
        self.on_rollback = on_rollback
        self.models = models or store.models
        self.leading = leading or (lambda: True)
        self.dashboard_url = dashboard_url
        self.actor = actor
        self.instances: dict[tuple[str, str], _Instance] = {}
        self.evaluations = 0
        self.last_evaluated: float | None = None
        self.last_error: str | None = None
        self._restored = False
        self._eval_lock = threading.Lock()  # one pass at a time; state() reads without waiting for it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- evaluation ---------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> list[dict[str, Any]]:
        """One pass over every rule and model; returns the transitions it made."""
        now = time.time() if now is None else now
        if not self.leading():
            self._restored = False  # another engine acts meanwhile: re-read the log on taking the lead
            return []
        with self._eval_lock:
            if not self._restored:
                self._restore()
                self._restored = True
            models = self.models()
            out: list[dict[str, Any]] = []
            for rule in self.config.rules:
                for model in ([rule.model] if rule.model else models):
                    inst = self.instances.setdefault((rule.name, model), _Instance(rule, model))
                    inst.rule = rule
                    change = self._evaluate_one(inst, now)
                    if change is not None:
                        out.append(change)
            self.evaluations += 1
            self.last_evaluated = now
            return out

    def _evaluate_one(self, inst: _Instance, now: float) -> dict[str, Any] | None:
        rule = inst.rule
        try:
            figure = self.provider(FigureQuery(inst.model, rule.version, rule.metric, rule.window_s,
                                               rule.label_delay_s, now))
            inst.error = None
        except Exception as exc:  # one failing figure must not stop the others
            inst.error = f"{type(exc).__name__}: {exc}"
            log.warning("alert %s on %s: %s", rule.name, inst.model, inst.error)
            figure = None
        value = figure.value if figure is not None else None
        if figure is not None and figure.version is not None:
            inst.version = figure.version
        inst.status, transition = step(rule, inst.status, value, now)
        if transition in (Transition.FIRING, Transition.RESOLVED):
            evidence = dict(figure.evidence) if figure is not None else {}
            self._announce(inst, transition is Transition.FIRING, evidence)
        if transition is None:
            return None
        return {"rule": rule.name, "model": inst.model, "transition": str(transition), "value": value, "at": now}

    def _announce(self, inst: _Instance, firing: bool, figure_evidence: dict[str, Any]) -> None:
        rule, status = inst.rule, inst.status
        kind = FIRING_EVENT if firing else RESOLVED_EVENT
        payload = alert_payload(rule, inst.model, status, inst.version, firing, self.dashboard_url)
        evidence = {"rule": rule.to_dict(), "version": inst.version, "value": status.value,
                    "episode": status.episode, "since": status.since, "fired_at": status.fired_at,
                    "resolved_at": status.resolved_at, "figure": figure_evidence}
        written = self.store.add_event(
            kind, payload["text"].split("\n")[1] + f" ({rule.name})", model=inst.model, actor=self.actor,
            evidence=evidence, dedup=f"alert:{rule.name}:{inst.model}:{'firing' if firing else 'resolved'}:{status.episode}",
        )
        if written is None:
            return  # another engine announced this episode already
        if self.webhooks is not None:
            urls = rule.webhooks or self.config.webhooks
            if urls:
                self.webhooks.submit(urls, payload)
        if firing and rule.rollback and self.on_rollback is not None:
            try:
                self.on_rollback(inst.model, inst.version, f"alert {rule.name} is firing", evidence)
            except Exception as exc:
                log.error("rollback for alert %s failed: %s", rule.name, exc)
                self.store.add_event("alert_rollback_failed", f"rollback asked by {rule.name} failed: {exc}",
                                     model=inst.model, actor=self.actor, evidence={"rule": rule.name})

    def _restore(self) -> None:
        """Firing states and episode numbers from the audit log (the newest event of each pair wins)."""
        names = {r.name: r for r in self.config.rules}
        rows = store_events.newest_of_kinds(self.store, [FIRING_EVENT, RESOLVED_EVENT], limit=RESTORE_EVENTS)
        for row in reversed(rows):
            ev = row.evidence or {}
            name = (ev.get("rule") or {}).get("name")
            if name not in names or row.model is None:
                continue
            inst = self.instances.setdefault((name, row.model), _Instance(names[name], row.model))
            episode = int(ev.get("episode") or 0)
            if row.kind == FIRING_EVENT:
                inst.status = AlertStatus(AlertState.FIRING, since=ev.get("since"), value=ev.get("value"),
                                          fired_at=ev.get("fired_at") or row.at, episode=episode)
            else:
                inst.status = AlertStatus(AlertState.RESOLVED, value=ev.get("value"), fired_at=ev.get("fired_at"),
                                          resolved_at=ev.get("resolved_at") or row.at, episode=episode)
            inst.version = ev.get("version")

    # ---- state and loop -----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        instances = [i.to_dict() for i in list(self.instances.values())]
        return {
            "rules": [r.to_dict() for r in self.config.rules],
            "webhooks": len(self.config.webhooks),
            "source": self.config.source,
            "instances": sorted(instances, key=lambda i: (i["rule"], i["model"])),
            "firing": sum(1 for i in instances if i["state"] == AlertState.FIRING),
            "evaluations": self.evaluations,
            "last_evaluated": self.last_evaluated,
            "last_error": self.last_error,
            "running": self._thread is not None and self._thread.is_alive(),
            "deliveries": [d.__dict__ for d in (self.webhooks.deliveries[-20:] if self.webhooks else [])],
        }

    def start(self, interval_s: float = 10.0, on_tick: Callable[[float], None] | None = None) -> None:
        """Evaluate every ``interval_s`` on a daemon thread (and call ``on_tick`` after each pass)."""
        if self._thread is not None:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.is_set():
                now = time.time()
                try:
                    self.evaluate(now)
                    self.last_error = None
                except Exception as exc:  # the loop never dies
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.error("alert evaluation failed: %s\n%s", exc, traceback.format_exc())
                if on_tick is not None:
                    try:
                        on_tick(now)
                    except Exception:
                        log.exception("monitoring tick failed")
                self._stop.wait(interval_s)

        self._thread = threading.Thread(target=run, name="changeover-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.webhooks is not None:
            self.webhooks.flush(timeout=2)
