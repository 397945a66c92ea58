"""One rollout's road read back from what the management API gives: its stages (compatibility,
gate, shadow, interleave, each canary step, promotion, watch) with when each began and ended and
the verdict and event that decided it, every look of the canary judge, and the candidate's
planned traffic share over time. Pure: plain dicts in (``GET /api/rollouts/{id}``), plain
dataclasses out; the report (`rollout_report`) draws them.

The events say what happened in order, so stages are read by walking them: a ``*.started``
event opens a stage, its ``passed``/``failed``/``inconclusive`` event closes the stage that is
open, and an abort or rollback ends whatever is open. Messages are shown, never parsed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Look", "Stage", "decisions", "looks", "road", "weights"]

PASSED, FAILED, INCONCLUSIVE, RUNNING, NOT_REACHED, ENDED = (
    "passed", "failed", "inconclusive", "running", "not reached", "ended")
ENDING = {"rollout.aborted": "aborted", "rollout.rolled_back": "rolled back"}
LOOK_EVENTS = ("step.waiting", "bake.extended", "step.passed", "step.failed", "step.inconclusive",
               "watch.passed", "watch.failed")


@dataclass
class Stage:
    """One stage of the road. ``state``: passed, failed, inconclusive, running, not reached, or
    how the rollout ended while it was open (aborted, rolled back)."""

    key: str  # compat, gate, shadow, interleave, step-1 .. step-N, promote, watch
    name: str
    state: str = NOT_REACHED
    started: float | None = None
    ended: float | None = None
    weight: float | None = None  # a canary step's planned share of traffic, percent
    analysis: dict[str, Any] | None = None  # the verdict that decided it (the last of its kind)
    decision: dict[str, Any] | None = None  # the event that ended it
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Look:
    """One look of the canary or watch judge: its checks, each with the interval of harm."""

    kind: str  # canary | watch
    at: float
    step: int | None  # 0-based step index (canary looks)
    outcome: str
    checks: tuple[dict[str, Any], ...]
    canary: Mapping[str, Any]
    baseline: Mapping[str, Any]
    acted: bool  # a verdict acted on (stored as an analysis), not a look along the way


def _spec_stages(spec: Mapping[str, Any]) -> list[Stage]:
    stages = [Stage("compat", "compatibility")]
    if spec.get("gate"):
        stages.append(Stage("gate", "offline gate"))
    if spec.get("shadow"):
        stages.append(Stage("shadow", "shadow"))
    if spec.get("interleave"):
        stages.append(Stage("interleave", "interleave"))
    steps = (spec.get("canary") or {}).get("steps") or []
    for i, percent in enumerate(steps):
        stages.append(Stage(f"step-{i + 1}", f"step {i + 1} of {len(steps)} ({percent:g}%)", weight=float(percent)))
    stages += [Stage("promote", "promotion"), Stage("watch", "watch")]
    return stages


def _step_index(event: Mapping[str, Any]) -> int | None:
    status = (event.get("evidence") or {}).get("status") or {}
    index = status.get("step_index")
    return int(index) if isinstance(index, int) and index >= 0 else None


def road(rollout: Mapping[str, Any]) -> list[Stage]:
    """The stages of the rollout's spec, each with its state, times, verdict and deciding event."""
    stages = _spec_stages(rollout.get("spec") or {})
    by_key = {s.key: s for s in stages}
    open_stage: Stage | None = None

    def close(stage: Stage | None, state: str, event: Mapping[str, Any]) -> None:
        if stage is not None and stage.state == RUNNING:
            stage.state, stage.ended, stage.decision = state, event["at"], dict(event)

    def start(key: str, event: Mapping[str, Any]) -> Stage | None:
        stage = by_key.get(key)
        if stage is not None:
            stage.state, stage.started, stage.ended = RUNNING, event["at"], None
        return stage

    for e in sorted(rollout.get("events") or [], key=lambda e: (e["at"], e.get("id", 0))):
        kind: str = e["kind"]
        head, _, tail = kind.partition(".")
        if head == "compat":
            compat = by_key["compat"]
            compat.started = compat.ended = e["at"]
            compat.state, compat.decision = (PASSED if tail == "passed" else FAILED), dict(e)
        elif kind == "step.started":
            index = _step_index(e)
            open_stage = start(f"step-{index + 1}", e) if index is not None else open_stage
        elif head in ("gate", "shadow", "interleave", "promote") and tail == "started":
            open_stage = start(head, e)
        elif kind == "promote.done":
            close(by_key["promote"], PASSED, e)
            open_stage = start("watch", e)
        elif head in ("gate", "shadow", "interleave", "step", "watch") and tail in (PASSED, FAILED, INCONCLUSIVE):
            close(open_stage if head == "step" else by_key.get(head), tail, e)
        elif kind in ENDING:
            close(open_stage, ENDING[kind], e)
        stage = open_stage if head in ("step", "bake", "promote") else by_key.get(head)
        if stage is not None and stage.started is not None:
            stage.events.append(dict(e))
    for a in rollout.get("analyses") or []:
        key = a["kind"]
        if key == "canary":
            step = (a.get("evidence") or {}).get("step")
            key = f"step-{step + 1}" if isinstance(step, int) else ""
        if key in by_key:
            by_key[key].analysis = a
    if not rollout.get("active", True):  # what was still open when the rollout ended
        end = rollout.get("updated_at")
        for stage in stages:
            if stage.state == RUNNING:
                stage.state, stage.ended = ENDED, end
    return stages


def _look(evidence: Mapping[str, Any], acted: bool, step: int | None) -> Look | None:
    window = evidence.get("window") or {}
    if "checks" not in evidence or window.get("until") is None:
        return None
    return Look(kind=str(evidence.get("kind") or "canary"), at=float(window["until"]),
                step=evidence.get("step", step), outcome=str(evidence.get("outcome") or ""),
                checks=tuple(evidence["checks"]), canary=evidence.get("canary") or {},
                baseline=evidence.get("baseline") or {}, acted=acted)


def looks(rollout: Mapping[str, Any]) -> list[Look]:
    """Every look of the canary and watch judges the rollout kept, oldest first: the verdicts
    acted on (analyses) and the looks events carry (a step waiting for samples, an extended bake)."""
    found: dict[tuple[str, float], Look] = {}
    for a in rollout.get("analyses") or []:
        if a["kind"] in ("canary", "watch") and (look := _look(a.get("evidence") or {}, True, None)):
            found[(look.kind, round(look.at, 3))] = look
    for e in rollout.get("events") or []:
        analysis = (e.get("evidence") or {}).get("analysis")
        if e["kind"] in LOOK_EVENTS and isinstance(analysis, Mapping):
            look = _look(analysis, False, _step_index(e))
            if look is not None:
                found.setdefault((look.kind, round(look.at, 3)), look)
    return sorted(found.values(), key=lambda x: x.at)


def weights(rollout: Mapping[str, Any]) -> list[tuple[float, float]]:
    """(time, percent) whenever a traffic policy of the rollout changed the candidate's share."""
    candidate = str((rollout.get("status") or {}).get("candidate_version"))
    out: list[tuple[float, float]] = []
    for e in sorted(rollout.get("events") or [], key=lambda e: e["at"]):
        policy = (e.get("evidence") or {}).get("policy")
        if e["kind"] != "policy" or not isinstance(policy, Mapping):
            continue
        shares = {str(k): float(v) for k, v in (policy.get("weights") or {}).items()}
        share = 100.0 - sum(shares.values()) if str(policy.get("champion")) == candidate else shares.get(candidate, 0.0)
        if not out or out[-1][1] != share:
            out.append((float(e["at"]), share))
    return out


def decisions(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The events that are the road's decisions (a stage begun or judged, a command, a refusal),
    not the policy writes and analyses that go with them."""
    return [e for e in events if "." in e["kind"] or e["kind"] == "command"]
