"""Canary and watch analyses: read metric windows and feedback for both arms over the same
time span, and ask the judge (domain/judge.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from changeover.domain.judge import ArmSample, JudgeConfig, judge
from changeover.domain.spec import RolloutSpec
from changeover.store.store import Store
from changeover.store.traffic import labelled_requests, metric_windows


def judge_config(spec: RolloutSpec) -> JudgeConfig:
    j = spec.canary.judge if spec.canary else None
    if j is None:
        return JudgeConfig()
    return JudgeConfig(
        error_rate_max_increase=j.error_rate.max_increase if j.error_rate else None,
        latency_p99_max_ratio=j.latency_p99_ms.max_ratio if j.latency_p99_ms else None,
        label_accuracy_max_decrease=j.label_accuracy.max_decrease if j.label_accuracy else None,
        alpha=j.label_accuracy.alpha if j.label_accuracy else 0.05,
        min_requests=j.min_requests,
    )


def arm(store: Store, model: str, version: int, since: float, until: float,
        labels: dict[int, tuple[int, int]]) -> ArmSample:
    windows = metric_windows(store, model, version, since=since, until=until)
    latencies = [x for w in windows for x in (w["latencies"] or [])]
    predictions = [x for w in windows for x in (w["predictions"] or [])]
    labelled, correct = labels.get(version, (0, 0))
    return ArmSample(
        requests=sum(w["requests"] for w in windows),
        errors=sum(w["errors"] for w in windows),
        latencies_ms=np.asarray(latencies, dtype=float),
        labelled=labelled,
        correct=correct,
        predictions=np.asarray(predictions, dtype=float) if predictions else None,
    )


def label_counts(store: Store, model: str, since: float, until: float, delay: float) -> dict[int, tuple[int, int]]:
    """Per version: (requests whose label arrived, of those the ones it got right)."""
    out: dict[int, list[int]] = {}
    for row in labelled_requests(store, model, since=since, until=until, label_delay=delay):
        if row["label"] is None or not row["output"] or "label" not in row["output"]:
            continue
        counts = out.setdefault(row["version"], [0, 0])
        counts[0] += 1
        counts[1] += int(str(row["output"]["label"]) == str(row["label"]))
    return {v: (n, c) for v, (n, c) in out.items()}


def canary_analysis(store: Store, spec: RolloutSpec, champion: int, candidate: int, since: float,
                    until: float) -> dict[str, Any]:
    delay = spec.canary.judge.label_accuracy.label_delay if spec.canary and spec.canary.judge.label_accuracy else 0.0
    labels = label_counts(store, spec.model, since, until, delay)
    baseline = arm(store, spec.model, champion, since, until, labels)
    canary = arm(store, spec.model, candidate, since, until, labels)
    analysis = judge(baseline, canary, judge_config(spec))
    return analysis.to_dict() | {
        "window": {"since": since, "until": until},
        "baseline": {"version": champion, "requests": baseline.requests, "errors": baseline.errors,
                     "labelled": baseline.labelled},
        "canary": {"version": candidate, "requests": canary.requests, "errors": canary.errors,
                   "labelled": canary.labelled},
    }
