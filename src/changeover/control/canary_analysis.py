"""Canary and watch looks: fold what the store has seen since the stage began into its
evidence (only what is new at each look), and ask the judge (domain/judge.py).

The controller keeps one `StageEvidence` per rollout stage in memory; a restarted controller
rebuilds it from the store on its first look, so it sees the same sums. Metric windows are
matched by id (a window committed late by another replica is still counted once), feedback
by request id, read back a little before the newest feedback already counted.

A look that has seen no new window since a replica's recorder stalled (its heartbeat says so,
`store/replicas.py`) waits, saying "metrics stale since T" (`domain/judge_staleness.py`):
the windows that recorder holds are on their way, not absent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from changeover.domain.criteria import canary_config, stages, watch_config
from changeover.domain.evidence import StageEvidence
from changeover.domain.judge import FAIL, PASS, Analysis, judge
from changeover.domain.judge_staleness import RecorderReport, held, stale_stall
from changeover.domain.spec import RolloutSpec
from changeover.store import replicas
from changeover.store.store import Store
from changeover.store.traffic import feedback_since, metric_window_ids, metric_windows_by_id

__all__ = ["Look", "StageLooks", "judge_stage", "look_fields", "summary"]

FEEDBACK_OVERLAP_S = 30.0  # feedback committed out of order by other replicas is still seen
HEARTBEAT_FRESH_S = 120.0  # a replica silent for longer is gone: its stall no longer holds a stage


@dataclass(frozen=True)
class Look:
    analysis: Analysis
    evidence: dict[str, Any]


def summary(analysis: Analysis) -> str:
    """The look in words: the checks that decide it (all of them for a pass)."""
    if analysis.outcome == PASS:
        chosen = [c for c in analysis.checks if c.name != "prediction_distribution"]
    elif analysis.outcome == FAIL:
        chosen = [c for c in analysis.checks if c.outcome == FAIL]
    else:
        chosen = [c for c in analysis.checks if c.outcome != PASS]
    return "; ".join(f"{c.name}: {c.reason}" for c in chosen)


class StageLooks:
    """The running evidence of every rollout stage this controller is judging."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._stages: dict[tuple[int, str, float], StageEvidence] = {}
        self._last: dict[tuple[int, str, float], Look] = {}
        self._arrived: dict[tuple[int, str, float], float] = {}  # when a look last saw a new window

    def look(self, rollout_id: int, kind: str, spec: RolloutSpec, baseline: int, canary: int,
             since: float, *, final: bool, now: float | None = None, extensions: int = 0) -> Look:
        """`kind` is "canary" or "watch"; `since` is when the stage began."""
        now = time.time() if now is None else now
        key = (rollout_id, kind, since)
        stage = self._stages.get(key)
        if stage is None:
            self.forget(rollout_id)  # a new stage: the rollout's older evidence is done with
            stage = self._stages[key] = StageEvidence(baseline, canary, since)
            config = canary_config(spec) if kind == "canary" else watch_config(spec)
            reward = next((c for c in config.criteria if c.name == "reward"), None)
            stage.reward_cap = reward.cap if reward else None
        versions = (baseline, canary)
        ids = metric_window_ids(self.store, spec.model, versions, since=since)
        new = [i for i in ids if i not in stage.windows_seen]
        added = stage.add_windows(metric_windows_by_id(self.store, new)) if new else 0
        if new:
            self._arrived[key] = now
        stall = stale_stall(replicas.reports(self.store, since=now - HEARTBEAT_FRESH_S), self._arrived.get(key))
        arrived = max(since, stage.feedback_cursor - FEEDBACK_OVERLAP_S)
        added += stage.add_feedback(feedback_since(self.store, spec.model, versions,
                                                   served_since=since, arrived_since=arrived))
        last = self._last.get(key)
        if (last is not None and not added and last.evidence.get("final") == final
                and last.evidence.get("extensions") == extensions and last.evidence.get("stale") == _stale(stall)):
            return last
        look = judge_stage(stage, kind, spec, since, final, now, extensions)
        if stall is not None:
            waiting = held(look.analysis, stall)
            look = Look(waiting, look.evidence | waiting.to_dict() | {"stale": _stale(stall)})
        self._last[key] = look
        return look

    def forget(self, rollout_id: int) -> None:
        for old in [k for k in self._stages if k[0] == rollout_id]:
            self._stages.pop(old, None)
            self._last.pop(old, None)
            self._arrived.pop(old, None)


def _stale(stall: RecorderReport | None) -> dict[str, Any] | None:
    return None if stall is None else {"replica": stall.replica, "since": stall.stalled_since}


def judge_stage(stage: StageEvidence, kind: str, spec: RolloutSpec, since: float, final: bool,
                now: float, extensions: int = 0) -> Look:
    """Judge a stage's evidence as the controller does ("canary" or "watch"); after
    `extensions` extended bakes a tie needs (1 + extensions) times the planned samples."""
    holdback = kind == "canary" or spec.watch.holdback > 0
    config = canary_config(spec) if kind == "canary" else watch_config(spec)
    config = replace(config, need_factor=1.0 + extensions)
    base, cand = stage.arm(stage.baseline), stage.arm(stage.canary)
    analysis = judge(base if holdback else None, cand, config, stages=stages(spec), final=final,
                     waited_s=now - since)
    evidence = analysis.to_dict() | {
        "kind": kind,
        "final": final,
        "extensions": extensions,
        "window": {"since": since, "until": now},
        "baseline": {"version": stage.baseline, "requests": base.requests, "errors": base.errors,
                     "labelled": base.labelled + base.abs_error.n, "rewards": base.reward.n},
        "canary": {"version": stage.canary, "requests": cand.requests, "errors": cand.errors,
                   "labelled": cand.labelled + cand.abs_error.n, "rewards": cand.reward.n},
    }
    return Look(analysis, evidence)


def look_fields(active_canary: bool, look: Look | None) -> dict[str, Any]:
    """The Observation fields a look gives `decide` (the reconciler's and the simulation's)."""
    verdict = look.analysis.outcome if look is not None else None
    return {
        "canary_verdict": verdict if active_canary else None,
        "watch_verdict": None if active_canary else verdict,
        "canary_enough": look.analysis.enough if look is not None else True,
        "canary_reason": summary(look.analysis) if look is not None else "",
    }
