"""Alert rules and their evaluation. Pure: no clock, no store, no network.

A rule names a metric, a condition (``>``, ``>=``, ``<``, ``<=``) and a threshold, and how
long the condition must hold (``for``). Each (rule, model) pair has a status that moves

    inactive ──(holds)──► pending ──(held for `for`)──► firing ──(stops holding)──► resolved
        ▲                    │                                                     │
        └──(stops holding)───┘                     resolved ──(holds again)──► pending

Firing and resolving are transitions, each reported once per episode. A figure that is
missing (no traffic, no labels) changes nothing: a pending rule stays pending, a firing one
stays firing — silence is not health.

Rules file (YAML or JSON)::

    webhooks: [https://hooks.slack.com/services/...]   # default receivers of every rule
    rules:
      - name: ranker-errors          # unique
        metric: error_rate            # see METRICS
        condition: ">"
        threshold: 0.02
        for: 2m                       # how long it must hold (default 0: at once)
        window: 5m                    # the figure's window (default 5m)
        model: ranker                 # default: every model
        version: champion             # an alias or a number (default champion)
        label_delay: 10m              # online metrics: only requests this old have labels
        severity: critical            # free text, sent along
        rollback: true                # firing asks for a rollback (acted on during watch)
        webhooks: [http://...]        # this rule's receivers instead of the default ones
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from changeover.domain.spec import RANKING_METRICS, parse_duration

__all__ = [
    "CONDITIONS",
    "METRICS",
    "AlertRule",
    "AlertState",
    "AlertStatus",
    "RuleError",
    "RulesConfig",
    "Transition",
    "load_rules",
    "parse_rules",
    "step",
]

CONDITIONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}

_RANKING_HELP = {
    "precision": "mean share of the shown items that were clicked (relevant)",
    "recall": "mean share of the relevant items that were shown", "ndcg": "mean NDCG",
    "ctr": "mean clicks per request", "hit": "share of requests with a click",
    "mrr": "mean reciprocal rank of the first clicked item",
}


def _ranking_help(name: str) -> str:
    what, _, k = name.rpartition("_at_")
    return f"ranker, top {k}: {_RANKING_HELP[what]}" if what else f"ranker: {_RANKING_HELP[name]}"


METRICS = {
    # from the metric windows over `window`
    "requests": "requests answered or failed",
    "errors": "requests that failed in the model",
    "error_rate": "errors / requests",
    "latency_p50_ms": "median latency of answered requests",
    "latency_p99_ms": "99th percentile latency of answered requests",
    "mean_prediction": "mean of the per-request prediction number",
    # drift of the version against its reference profile over `window`
    "drift_share": "share of input columns that drifted",
    "drifted_columns": "input columns that drifted",
    "drift_any": "1 when any column or the predictions drifted, else 0",
    "prediction_drift": "the prediction column's drift statistic",
    # online metrics from feedback over `window`, ending `label_delay` ago
    "accuracy": "classification accuracy on labels", "precision": "precision on labels",
    "recall": "recall on labels", "f1": "F1 on labels",
    "mae": "regression mean absolute error", "rmse": "regression root mean squared error",
    "mean_reward": "mean reward", "label_coverage": "share of requests with a label",
    # a ranker's online metrics from its clicked or relevant items, per request, at k 5 and 10
    # (docs/metrics.md, "Online metrics of a ranker")
    **{name: _ranking_help(name) for name in RANKING_METRICS},
}


class RuleError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid alert rules:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class AlertRule:
    name: str
    metric: str
    condition: str
    threshold: float
    for_s: float = 0.0
    window_s: float = 300.0
    model: str | None = None
    version: str = "champion"
    label_delay_s: float = 0.0
    severity: str = "warning"
    rollback: bool = False
    webhooks: tuple[str, ...] = ()
    description: str = ""

    def holds(self, value: float) -> bool:
        return CONDITIONS[self.condition](value, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"webhooks": list(self.webhooks)}


class AlertState(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Transition(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    CLEARED = "cleared"  # pending, then stopped holding before `for`


@dataclass(frozen=True)
class AlertStatus:
    state: AlertState = AlertState.INACTIVE
    since: float | None = None  # when the condition started to hold (pending and firing)
    value: float | None = None  # the latest figure
    evaluated_at: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    episode: int = 0  # firings so far; a resolve belongs to the episode it closes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"state": str(self.state)}


def step(rule: AlertRule, status: AlertStatus, value: float | None, now: float) -> tuple[AlertStatus, Transition | None]:
    """The next status of one (rule, model) after seeing ``value`` at ``now``."""
    if value is None:
        return replace(status, evaluated_at=now), None
    seen = replace(status, value=value, evaluated_at=now)
    holds = rule.holds(value)
    state = status.state
    if holds and state in (AlertState.INACTIVE, AlertState.RESOLVED):
        if rule.for_s <= 0:
            return replace(seen, state=AlertState.FIRING, since=now, fired_at=now, episode=status.episode + 1), Transition.FIRING
        return replace(seen, state=AlertState.PENDING, since=now), Transition.PENDING
    if holds and state is AlertState.PENDING:
        assert status.since is not None
        if now - status.since >= rule.for_s:
            return replace(seen, state=AlertState.FIRING, fired_at=now, episode=status.episode + 1), Transition.FIRING
        return seen, None
    if not holds and state is AlertState.PENDING:
        return replace(seen, state=AlertState.INACTIVE, since=None), Transition.CLEARED
    if not holds and state is AlertState.FIRING:
        return replace(seen, state=AlertState.RESOLVED, since=None, resolved_at=now), Transition.RESOLVED
    return seen, None


@dataclass(frozen=True)
class RulesConfig:
    rules: tuple[AlertRule, ...] = ()
    webhooks: tuple[str, ...] = ()
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rules": [r.to_dict() for r in self.rules], "webhooks": list(self.webhooks), "source": self.source}


def _urls(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in items):
        problems.append(f"{where}: expected an http(s) URL or a list of them")
        return ()
    return tuple(items)


_KEYS = {"name", "metric", "condition", "threshold", "for", "window", "model", "version", "label_delay",
         "severity", "rollback", "webhooks", "webhook", "description"}


def _rule(raw: Any, where: str, problems: list[str]) -> AlertRule | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: expected a mapping")
        return None
    before = len(problems)
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        problems.append(f"{where}: unknown keys {', '.join(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}.name: required")
    metric = raw.get("metric")
    if metric not in METRICS:
        problems.append(f"{where}.metric: {metric!r} is not one of {', '.join(METRICS)}")
    condition = str(raw.get("condition", ""))
    if condition not in CONDITIONS:
        problems.append(f"{where}.condition: {condition!r} is not one of > >= < <=")
    threshold = raw.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        problems.append(f"{where}.threshold: expected a number")
    durations: dict[str, float] = {}
    for key, default in (("for", 0.0), ("window", 300.0), ("label_delay", 0.0)):
        try:
            durations[key] = parse_duration(raw.get(key, default))
        except ValueError:
            problems.append(f"{where}.{key}: not a duration (write e.g. 30s, 5m, 1h)")
    if durations.get("window") == 0:
        problems.append(f"{where}.window: must be longer than 0")
    rollback = raw.get("rollback", False)
    if not isinstance(rollback, bool):
        problems.append(f"{where}.rollback: expected true or false")
    model = raw.get("model")
    if model is not None and not isinstance(model, str):
        problems.append(f"{where}.model: expected a model name")
    webhooks = _urls(raw.get("webhooks", raw.get("webhook")), f"{where}.webhooks", problems)
    if len(problems) > before:
        return None
    return AlertRule(
        name=str(name).strip(), metric=str(metric), condition=condition, threshold=float(threshold),  # type: ignore[arg-type]
        for_s=durations["for"], window_s=durations["window"], model=model, version=str(raw.get("version", "champion")),
        label_delay_s=durations["label_delay"], severity=str(raw.get("severity", "warning")), rollback=rollback,
        webhooks=webhooks, description=str(raw.get("description", "")),
    )


def parse_rules(data: Any, source: str | None = None) -> RulesConfig:
    """Rules from parsed YAML/JSON: ``{rules: [...], webhooks: [...]}`` or a bare list of rules
    (the ``alerts:`` section of a config or a rollout spec). Every problem is reported at once."""
    if data is None:
        return RulesConfig(source=source)
    problems: list[str] = []
    if isinstance(data, list):
        raw_rules, raw_hooks = data, None
    elif isinstance(data, Mapping):
        unknown = sorted(set(data) - {"rules", "webhooks", "webhook"})
        if unknown:
            problems.append(f"unknown keys {', '.join(unknown)} (expected rules, webhooks)")
        raw_rules, raw_hooks = data.get("rules") or [], data.get("webhooks", data.get("webhook"))
    else:
        raise RuleError(["expected a mapping with `rules:` or a list of rules"])
    if not isinstance(raw_rules, list):
        raise RuleError(["rules: expected a list"])
    hooks = _urls(raw_hooks, "webhooks", problems)
    rules = [_rule(raw, f"rules[{i}]", problems) for i, raw in enumerate(raw_rules)]
    names = [r.name for r in rules if r is not None]
    problems += [f"rule name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    if problems:
        raise RuleError(problems)
    return RulesConfig(tuple(r for r in rules if r is not None), hooks, source)


def load_rules(path: str | Path) -> RulesConfig:
    """Rules from a YAML or JSON file (JSON is YAML; ``.json`` is read strictly)."""
    p = Path(path)
    text = p.read_text()
    data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    return parse_rules(data, source=str(p))

