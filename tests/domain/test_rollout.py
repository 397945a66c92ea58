import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from changeover.domain.rollout import (
    TERMINAL_PHASES,
    Action,
    Emit,
    EventKind,
    FinishWatch,
    Judge,
    Observation,
    PauseReason,
    Phase,
    Promote,
    Rollback,
    RolloutStatus,
    RunGate,
    SetWeight,
    StartInterleave,
    StartShadow,
    StopInterleave,
    StopShadow,
    decide,
    due_at,
)
from changeover.domain.spec import RolloutSpec, parse_spec

K = EventKind
P = Phase
T0 = 1_700_000_000.0

_FULL: dict[str, Any] = {
    "model": "ranker",
    "candidate": "7",
    "gate": {"data": "holdout.parquet", "task": "classification"},
    "shadow": {"sample": 0.5, "until": {"requests": 1000, "or_after": "30m"}},
    "canary": {"steps": [10, 50], "bake": "10m", "max_extensions": 2},
    "watch": "1h",
}


def spec_with(**changes: Any) -> RolloutSpec:
    data = {**_FULL, **changes}
    return parse_spec({key: value for key, value in data.items() if value is not None})


FULL = spec_with()
NO_GATE = spec_with(gate=None)
NO_SHADOW = spec_with(shadow=None)
CANARY_ONLY = spec_with(gate=None, shadow=None)
SHADOW_ONLY = spec_with(gate=None, canary=None)
BARE = spec_with(gate=None, shadow=None, canary=None)
BARE_MANUAL = spec_with(gate=None, shadow=None, canary=None, promote="manual")
MANUAL = spec_with(promote="manual")
NO_WATCH = spec_with(watch=0)
NO_EXTENSIONS = spec_with(canary={"steps": [10, 50], "bake": "10m", "max_extensions": 0})
PAUSE_SPEC = spec_with(canary={"steps": [10, 50], "bake": "10m", "max_extensions": 2,
                               "on_inconclusive": "pause"})
MAX_BAKE = spec_with(canary={"steps": [10, 50], "bake": "10m", "max_bake": "1h"})
LABELS = spec_with(canary={"steps": [10, 50], "bake": "10m",
                           "judge": {"label_accuracy": {"label_delay": "5m"}}})


def st(phase: Phase, **changes: Any) -> RolloutStatus:
    return RolloutStatus(phase=phase, phase_started_at=T0, updated_at=T0, **changes)


PENDING = RolloutStatus()
GATING = st(P.GATING)
SHADOWING = st(P.SHADOWING)
STEP0 = st(P.PROGRESSING, step_index=0, weight=10.0, bake_started_at=T0)
STEP1 = st(P.PROGRESSING, step_index=1, weight=50.0, bake_started_at=T0)
PROMOTING = st(P.PROMOTING, step_index=1, weight=50.0)
WATCHING = st(P.WATCHING, step_index=1, weight=100.0)


def paused(held: Phase, reason: PauseReason = PauseReason.COMMAND, **changes: Any) -> RolloutStatus:
    return st(P.PAUSED, paused_from=held, pause_reason=reason, **changes)


PAUSED_STEP0 = paused(P.PROGRESSING, step_index=0, weight=10.0, bake_started_at=T0)
PAUSED_SHADOW = paused(P.SHADOWING)
PAUSED_GATING = paused(P.GATING)
PAUSED_WATCH = paused(P.WATCHING, step_index=1, weight=100.0)
AWAITING = paused(P.PROMOTING, PauseReason.AWAITING_PROMOTION, step_index=1, weight=50.0)

Ob = Observation
BAKE, WATCH = 600.0, 3600.0


def shape(actions: list[Action]) -> list[object]:
    """Emits compare by kind, Rollbacks by type; every other action compares whole."""
    return [a.kind if isinstance(a, Emit) else Rollback if isinstance(a, Rollback) else a
            for a in actions]


ROAD = [
    # (id, spec, status, observation, now, next phase, actions)
    ("pending->gating", FULL, PENDING, Ob(), T0, P.GATING, [RunGate(), K.GATE_STARTED]),
    ("pending, no gate->shadowing", NO_GATE, PENDING, Ob(), T0, P.SHADOWING,
     [StartShadow(0.5), K.SHADOW_STARTED]),
    ("pending, canary only->progressing", CANARY_ONLY, PENDING, Ob(), T0, P.PROGRESSING,
     [SetWeight(10.0), K.STEP_STARTED]),
    ("pending, nothing, auto->promoting", BARE, PENDING, Ob(), T0, P.PROMOTING,
     [K.PROMOTE_STARTED]),
    ("pending, nothing, manual->paused", BARE_MANUAL, PENDING, Ob(), T0, P.PAUSED,
     [K.PROMOTE_WAITING]),
    ("gating asks for the gate", FULL, GATING, Ob(), T0 + 5, P.GATING, [RunGate()]),
    ("gate pass->shadowing", FULL, GATING, Ob(gate="pass"), T0 + 5, P.SHADOWING,
     [K.GATE_PASSED, StartShadow(0.5), K.SHADOW_STARTED]),
    ("gate pass, no shadow->progressing", NO_SHADOW, GATING, Ob(gate="pass"), T0 + 5,
     P.PROGRESSING, [K.GATE_PASSED, SetWeight(10.0), K.STEP_STARTED]),
    ("gate fail->failed", FULL, GATING, Ob(gate="fail"), T0 + 5, P.FAILED, [K.GATE_FAILED]),
    ("shadow collecting", FULL, SHADOWING, Ob(shadow_requests=999), T0 + 60, P.SHADOWING, []),
    ("shadow early pass is not enough", FULL, SHADOWING,
     Ob(shadow_requests=10, shadow_verdict="pass"), T0 + 60, P.SHADOWING, []),
    ("shadow requests reached->judge", FULL, SHADOWING, Ob(shadow_requests=1000), T0 + 60,
     P.SHADOWING, [Judge("shadow")]),
    ("shadow or_after elapsed->judge", FULL, SHADOWING, Ob(shadow_requests=3), T0 + 1800,
     P.SHADOWING, [Judge("shadow")]),
    ("shadow pass->progressing", FULL, SHADOWING, Ob(shadow_requests=1000, shadow_verdict="pass"),
     T0 + 60, P.PROGRESSING, [StopShadow(), K.SHADOW_PASSED, SetWeight(10.0), K.STEP_STARTED]),
    ("shadow pass, no canary->promoting", SHADOW_ONLY, SHADOWING,
     Ob(shadow_requests=1000, shadow_verdict="pass"), T0 + 60, P.PROMOTING,
     [StopShadow(), K.SHADOW_PASSED, K.PROMOTE_STARTED]),
    ("shadow inconclusive->paused", FULL, SHADOWING,
     Ob(shadow_requests=1000, shadow_verdict="inconclusive"), T0 + 60, P.PAUSED,
     [K.SHADOW_INCONCLUSIVE]),
    ("shadow fail->rolled back", FULL, SHADOWING, Ob(shadow_requests=10, shadow_verdict="fail"),
     T0 + 60, P.ROLLED_BACK, [StopShadow(), Rollback, K.SHADOW_FAILED]),
    ("baking", FULL, STEP0, Ob(), T0 + BAKE - 1, P.PROGRESSING, []),
    ("bake over, nothing to look at yet", FULL, STEP0, Ob(), T0 + BAKE, P.PROGRESSING, []),
    ("early pass waits for the bake", FULL, STEP0, Ob(canary_verdict="pass"), T0 + 60,
     P.PROGRESSING, []),
    ("early inconclusive waits", FULL, STEP0, Ob(canary_verdict="inconclusive"), T0 + 60,
     P.PROGRESSING, []),
    ("step pass->next step", FULL, STEP0, Ob(canary_verdict="pass"), T0 + BAKE, P.PROGRESSING,
     [K.STEP_PASSED, SetWeight(50.0), K.STEP_STARTED]),
    ("last step pass, auto->promoting", FULL, STEP1, Ob(canary_verdict="pass"), T0 + BAKE,
     P.PROMOTING, [K.STEP_PASSED, K.PROMOTE_STARTED]),
    ("last step pass, manual->paused", MANUAL, STEP1, Ob(canary_verdict="pass"), T0 + BAKE,
     P.PAUSED, [K.STEP_PASSED, K.PROMOTE_WAITING]),
    ("step fail->rolled back", FULL, STEP1, Ob(canary_verdict="fail"), T0 + BAKE,
     P.ROLLED_BACK, [Rollback, K.STEP_FAILED]),
    ("step fail mid-bake->rolled back", FULL, STEP0, Ob(canary_verdict="fail"), T0 + 60,
     P.ROLLED_BACK, [Rollback, K.STEP_FAILED]),
    ("inconclusive->bake extended", FULL, STEP0, Ob(canary_verdict="inconclusive"), T0 + BAKE,
     P.PROGRESSING, [K.BAKE_EXTENDED]),
    ("extended bake running", FULL, replace(STEP0, extensions=1), Ob(), T0 + 2 * BAKE - 1,
     P.PROGRESSING, []),
    ("extended bake over, no look", FULL, replace(STEP0, extensions=1), Ob(), T0 + 2 * BAKE,
     P.PROGRESSING, []),
    ("bake over, too few samples->waits", FULL, STEP0,
     Ob(canary_verdict="inconclusive", canary_enough=False), T0 + BAKE, P.PROGRESSING,
     [K.STEP_WAITING]),
    ("still waiting: no second event", FULL, replace(STEP0, waiting=True),
     Ob(canary_verdict="inconclusive", canary_enough=False), T0 + BAKE + 60, P.PROGRESSING, []),
    ("waiting past max_bake->rolled back", MAX_BAKE, STEP0,
     Ob(canary_verdict="inconclusive", canary_enough=False), T0 + 3600, P.ROLLED_BACK,
     [Rollback, K.STEP_INCONCLUSIVE]),
    ("a fail while waiting->rolled back", FULL, replace(STEP0, waiting=True),
     Ob(canary_verdict="fail"), T0 + BAKE + 60, P.ROLLED_BACK, [Rollback, K.STEP_FAILED]),
    ("second extension", FULL, replace(STEP0, extensions=1), Ob(canary_verdict="inconclusive"),
     T0 + 2 * BAKE, P.PROGRESSING, [K.BAKE_EXTENDED]),
    ("inconclusive past the limit->rolled back", FULL, replace(STEP0, extensions=2),
     Ob(canary_verdict="inconclusive"), T0 + 3 * BAKE, P.ROLLED_BACK,
     [Rollback, K.STEP_INCONCLUSIVE]),
    ("inconclusive past the limit, on_inconclusive pause->paused", PAUSE_SPEC,
     replace(STEP0, extensions=2), Ob(canary_verdict="inconclusive"), T0 + 3 * BAKE, P.PAUSED,
     [K.STEP_INCONCLUSIVE]),
    ("no extensions allowed->rolled back", NO_EXTENSIONS, STEP0,
     Ob(canary_verdict="inconclusive"), T0 + BAKE, P.ROLLED_BACK, [Rollback, K.STEP_INCONCLUSIVE]),
    ("label delay holds the judge", LABELS, STEP0, Ob(), T0 + BAKE + 299, P.PROGRESSING, []),
    ("label delay over->a pass acts", LABELS, STEP0, Ob(canary_verdict="pass"), T0 + BAKE + 300,
     P.PROGRESSING, [K.STEP_PASSED, SetWeight(50.0), K.STEP_STARTED]),
    ("a fail acts before the label delay", LABELS, STEP0, Ob(canary_verdict="fail"), T0 + 30,
     P.ROLLED_BACK, [Rollback, K.STEP_FAILED]),
    ("promoting->watching with a holdback", FULL, PROMOTING, Ob(), T0 + 1, P.WATCHING,
     [Promote(holdback=2.0), K.PROMOTE_DONE]),
    ("promoting, no watch->promoted", NO_WATCH, PROMOTING, Ob(), T0 + 1, P.PROMOTED,
     [Promote(), FinishWatch(), K.PROMOTE_DONE]),
    ("watching", FULL, WATCHING, Ob(), T0 + WATCH - 1, P.WATCHING, []),
    ("watch over->promoted", FULL, WATCHING, Ob(), T0 + WATCH, P.PROMOTED,
     [FinishWatch(), K.WATCH_PASSED]),
    ("watch pass->promoted", FULL, WATCHING, Ob(watch_verdict="pass"), T0 + WATCH, P.PROMOTED,
     [FinishWatch(), K.WATCH_PASSED]),
    ("watch inconclusive->promoted", FULL, WATCHING, Ob(watch_verdict="inconclusive"),
     T0 + WATCH, P.PROMOTED, [FinishWatch(), K.WATCH_PASSED]),
    ("watch fail->rolled back", FULL, WATCHING, Ob(watch_verdict="fail"), T0 + 60,
     P.ROLLED_BACK, [Rollback, K.WATCH_FAILED]),
    ("paused idles", FULL, PAUSED_STEP0, Ob(), T0 + 99_999, P.PAUSED, []),
    ("paused ignores a pass", FULL, PAUSED_STEP0, Ob(canary_verdict="pass"), T0 + BAKE,
     P.PAUSED, []),
    ("paused step fail->rolled back", FULL, PAUSED_STEP0, Ob(canary_verdict="fail"), T0 + 9,
     P.ROLLED_BACK, [Rollback, K.STEP_FAILED]),
    ("paused shadow fail->rolled back", FULL, PAUSED_SHADOW, Ob(shadow_verdict="fail"), T0 + 9,
     P.ROLLED_BACK, [StopShadow(), Rollback, K.SHADOW_FAILED]),
    ("paused gate fail->failed", FULL, PAUSED_GATING, Ob(gate="fail"), T0 + 9, P.FAILED,
     [K.GATE_FAILED]),
    ("paused watch fail->rolled back", FULL, PAUSED_WATCH, Ob(watch_verdict="fail"), T0 + 9,
     P.ROLLED_BACK, [Rollback, K.WATCH_FAILED]),
    *[(f"{phase} idles", FULL, st(phase), Ob(canary_verdict="fail", gate="fail"), T0 + 9, phase,
       []) for phase in sorted(TERMINAL_PHASES)],
]

NOT_PROMOTED = [("pending", PENDING), ("gating", GATING), ("shadowing", SHADOWING),
                ("progressing", STEP0), ("promoting", PROMOTING)]

COMMANDS = [
    *[(f"pause in {name}", FULL, status, Ob(command="pause"), T0 + 9, P.PAUSED, [K.PAUSED])
      for name, status in [*NOT_PROMOTED, ("watching", WATCHING)]],
    ("pause when paused", FULL, PAUSED_STEP0, Ob(command="pause"), T0 + 9, P.PAUSED,
     [K.COMMAND_REFUSED]),
    ("resume->progressing", FULL, PAUSED_STEP0, Ob(command="resume"), T0 + 9, P.PROGRESSING,
     [K.RESUMED]),
    ("resume->shadowing", FULL, PAUSED_SHADOW, Ob(command="resume"), T0 + 9, P.SHADOWING,
     [K.RESUMED]),
    ("resume->gating", FULL, PAUSED_GATING, Ob(command="resume"), T0 + 9, P.GATING,
     [K.RESUMED]),
    ("resume->watching", FULL, PAUSED_WATCH, Ob(command="resume"), T0 + 9, P.WATCHING,
     [K.RESUMED]),
    ("resume after inconclusive", FULL, paused(P.PROGRESSING, PauseReason.INCONCLUSIVE,
                                               step_index=0, weight=10.0, extensions=2),
     Ob(command="resume"), T0 + 9, P.PROGRESSING, [K.RESUMED]),
    ("resume when not paused", FULL, STEP0, Ob(command="resume"), T0 + 9, P.PROGRESSING,
     [K.COMMAND_REFUSED]),
    ("resume awaiting promotion", MANUAL, AWAITING, Ob(command="resume"), T0 + 9, P.PAUSED,
     [K.COMMAND_REFUSED]),
    ("abort pending", FULL, PENDING, Ob(command="abort"), T0, P.ABORTED, [K.ABORTED]),
    ("abort gating", FULL, GATING, Ob(command="abort"), T0 + 9, P.ABORTED, [K.ABORTED]),
    ("abort shadowing", FULL, SHADOWING, Ob(command="abort"), T0 + 9, P.ABORTED,
     [StopShadow(), K.ABORTED]),
    ("abort paused shadow", FULL, PAUSED_SHADOW, Ob(command="abort"), T0 + 9, P.ABORTED,
     [StopShadow(), K.ABORTED]),
    ("abort progressing", FULL, STEP0, Ob(command="abort"), T0 + 9, P.ABORTED,
     [SetWeight(0.0), K.ABORTED]),
    ("abort paused step", FULL, PAUSED_STEP0, Ob(command="abort"), T0 + 9, P.ABORTED,
     [SetWeight(0.0), K.ABORTED]),
    ("abort promoting", FULL, PROMOTING, Ob(command="abort"), T0 + 9, P.ABORTED,
     [SetWeight(0.0), K.ABORTED]),
    ("abort awaiting promotion", MANUAL, AWAITING, Ob(command="abort"), T0 + 9, P.ABORTED,
     [SetWeight(0.0), K.ABORTED]),
    ("abort watching is refused", FULL, WATCHING, Ob(command="abort"), T0 + 9, P.WATCHING,
     [K.COMMAND_REFUSED]),
    ("abort paused watch is refused", FULL, PAUSED_WATCH, Ob(command="abort"), T0 + 9, P.PAUSED,
     [K.COMMAND_REFUSED]),
    ("promote pending", FULL, PENDING, Ob(command="promote"), T0, P.PROMOTING,
     [K.PROMOTE_STARTED]),
    ("promote shadowing", FULL, SHADOWING, Ob(command="promote"), T0 + 9, P.PROMOTING,
     [StopShadow(), K.PROMOTE_STARTED]),
    ("promote progressing", FULL, STEP0, Ob(command="promote"), T0 + 9, P.PROMOTING,
     [K.PROMOTE_STARTED]),
    ("promote paused step", FULL, PAUSED_STEP0, Ob(command="promote"), T0 + 9, P.PROMOTING,
     [K.PROMOTE_STARTED]),
    ("promote awaiting promotion", MANUAL, AWAITING, Ob(command="promote"), T0 + 9,
     P.PROMOTING, [K.PROMOTE_STARTED]),
    ("promote promoting is refused", FULL, PROMOTING, Ob(command="promote"), T0 + 9,
     P.PROMOTING, [K.COMMAND_REFUSED]),
    ("promote watching is refused", FULL, WATCHING, Ob(command="promote"), T0 + 9, P.WATCHING,
     [K.COMMAND_REFUSED]),
    ("rollback pending", FULL, PENDING, Ob(command="rollback"), T0, P.ROLLED_BACK,
     [Rollback, K.ROLLED_BACK]),
    ("rollback shadowing", FULL, SHADOWING, Ob(command="rollback"), T0 + 9, P.ROLLED_BACK,
     [StopShadow(), Rollback, K.ROLLED_BACK]),
    ("rollback progressing", FULL, STEP1, Ob(command="rollback"), T0 + 9, P.ROLLED_BACK,
     [Rollback, K.ROLLED_BACK]),
    ("rollback awaiting promotion", MANUAL, AWAITING, Ob(command="rollback"), T0 + 9,
     P.ROLLED_BACK, [Rollback, K.ROLLED_BACK]),
    ("rollback watching", FULL, WATCHING, Ob(command="rollback"), T0 + 9, P.ROLLED_BACK,
     [Rollback, K.ROLLED_BACK]),
    ("an alert rule's rollback in watch", FULL, WATCHING, Ob(command="rollback-alert"), T0 + 9, P.ROLLED_BACK,
     [Rollback, K.ROLLED_BACK]),
    *[(f"{command} when {phase}", FULL, st(phase), Ob(command=command), T0 + 9, phase,
       [K.COMMAND_REFUSED])
      for phase in sorted(TERMINAL_PHASES)
      for command in ("pause", "resume", "abort", "promote", "rollback", "rollback-alert")],
    ("a failure beats promote", FULL, STEP0, Ob(canary_verdict="fail", command="promote"),
     T0 + BAKE, P.ROLLED_BACK, [Rollback, K.STEP_FAILED, K.COMMAND_REFUSED]),
    ("a failure and rollback agree", FULL, STEP0, Ob(canary_verdict="fail", command="rollback"),
     T0 + BAKE, P.ROLLED_BACK, [Rollback, K.STEP_FAILED]),
    ("a failed gate beats pause", FULL, GATING, Ob(gate="fail", command="pause"), T0 + 9,
     P.FAILED, [K.GATE_FAILED, K.COMMAND_REFUSED]),
    ("a command comes before a pass", FULL, STEP0, Ob(canary_verdict="pass", command="pause"),
     T0 + BAKE, P.PAUSED, [K.PAUSED]),
]

IL = {"sample": 0.2, "k": 10, "until": {"requests": 500, "or_after": "1h"}}
INTERLEAVE = spec_with(interleave=IL)
INTERLEAVE_ONLY = spec_with(gate=None, shadow=None, interleave=IL)
INTERLEAVE_PAUSE = spec_with(interleave=IL, canary={"steps": [10, 50], "on_inconclusive": "pause"})
INTERLEAVE_NO_CANARY = spec_with(gate=None, shadow=None, canary=None, interleave=IL)
INTERLEAVING = st(P.INTERLEAVING)
PAUSED_INTERLEAVING = paused(P.INTERLEAVING)


def il(requests: int, verdict: str | None = None, **more: Any) -> Observation:
    return Ob(interleave_requests=requests, interleave_verdict=verdict, **more)


INTERLEAVING_CASES = [
    ("shadow pass->interleaving", INTERLEAVE, SHADOWING,
     Ob(shadow_requests=1000, shadow_verdict="pass"), T0 + 60, P.INTERLEAVING,
     [StopShadow(), K.SHADOW_PASSED, StartInterleave(0.2, 10), K.INTERLEAVE_STARTED]),
    ("pending, interleave first->interleaving", INTERLEAVE_ONLY, PENDING, Ob(), T0,
     P.INTERLEAVING, [StartInterleave(0.2, 10), K.INTERLEAVE_STARTED]),
    ("gate pass, no shadow->interleaving", spec_with(shadow=None, interleave=IL), GATING,
     Ob(gate="pass"), T0 + 5, P.INTERLEAVING, [K.GATE_PASSED, StartInterleave(0.2, 10),
                                               K.INTERLEAVE_STARTED]),
    ("interleaving collects", INTERLEAVE, INTERLEAVING, il(499, "inconclusive"), T0 + 60,
     P.INTERLEAVING, []),
    ("an early pass waits for until", INTERLEAVE, INTERLEAVING, il(10, "pass"), T0 + 60,
     P.INTERLEAVING, []),
    ("until reached, no look yet", INTERLEAVE, INTERLEAVING, il(500), T0 + 60, P.INTERLEAVING, []),
    ("until.requests reached, pass->progressing", INTERLEAVE, INTERLEAVING, il(500, "pass"),
     T0 + 60, P.PROGRESSING,
     [StopInterleave(), K.INTERLEAVE_PASSED, SetWeight(10.0), K.STEP_STARTED]),
    ("until.or_after elapsed, pass->progressing", INTERLEAVE, INTERLEAVING, il(3, "pass"),
     T0 + 3600, P.PROGRESSING,
     [StopInterleave(), K.INTERLEAVE_PASSED, SetWeight(10.0), K.STEP_STARTED]),
    ("pass, no canary->promoting", INTERLEAVE_NO_CANARY, INTERLEAVING, il(500, "pass"), T0 + 60,
     P.PROMOTING, [StopInterleave(), K.INTERLEAVE_PASSED, K.PROMOTE_STARTED]),
    ("a fail at any look->rolled back", INTERLEAVE, INTERLEAVING, il(40, "fail"), T0 + 60,
     P.ROLLED_BACK, [StopInterleave(), Rollback, K.INTERLEAVE_FAILED]),
    ("inconclusive at the end, on_inconclusive rollback->rolled back", INTERLEAVE, INTERLEAVING,
     il(500, "inconclusive"), T0 + 60, P.ROLLED_BACK,
     [StopInterleave(), Rollback, K.INTERLEAVE_INCONCLUSIVE]),
    ("inconclusive at the end, on_inconclusive pause->paused", INTERLEAVE_PAUSE, INTERLEAVING,
     il(500, "inconclusive"), T0 + 60, P.PAUSED, [K.INTERLEAVE_INCONCLUSIVE]),
    ("inconclusive at the end, no canary->paused", INTERLEAVE_NO_CANARY, INTERLEAVING,
     il(500, "inconclusive"), T0 + 60, P.PAUSED, [K.INTERLEAVE_INCONCLUSIVE]),
    ("paused interleaving ignores a pass", INTERLEAVE, PAUSED_INTERLEAVING, il(900, "pass"),
     T0 + 9, P.PAUSED, []),
    ("paused interleaving fail->rolled back", INTERLEAVE, PAUSED_INTERLEAVING, il(90, "fail"),
     T0 + 9, P.ROLLED_BACK, [StopInterleave(), Rollback, K.INTERLEAVE_FAILED]),
    ("a shadow verdict does not judge the interleaving", INTERLEAVE, INTERLEAVING,
     Ob(interleave_requests=500, shadow_verdict="fail"), T0 + 60, P.INTERLEAVING, []),
    ("the spec lost its interleave->progressing", FULL, INTERLEAVING, il(0), T0 + 60,
     P.PROGRESSING, [StopInterleave(), SetWeight(10.0), K.STEP_STARTED]),
    ("pause interleaving", INTERLEAVE, INTERLEAVING, Ob(command="pause"), T0 + 9, P.PAUSED,
     [K.PAUSED]),
    ("resume->interleaving", INTERLEAVE, PAUSED_INTERLEAVING, Ob(command="resume"), T0 + 9,
     P.INTERLEAVING, [K.RESUMED]),
    ("abort interleaving", INTERLEAVE, INTERLEAVING, Ob(command="abort"), T0 + 9, P.ABORTED,
     [StopInterleave(), K.ABORTED]),
    ("abort paused interleaving", INTERLEAVE, PAUSED_INTERLEAVING, Ob(command="abort"), T0 + 9,
     P.ABORTED, [StopInterleave(), K.ABORTED]),
    ("promote interleaving", INTERLEAVE, INTERLEAVING, Ob(command="promote"), T0 + 9,
     P.PROMOTING, [StopInterleave(), K.PROMOTE_STARTED]),
    ("rollback interleaving", INTERLEAVE, INTERLEAVING, Ob(command="rollback"), T0 + 9,
     P.ROLLED_BACK, [StopInterleave(), Rollback, K.ROLLED_BACK]),
    ("an interleave fail beats promote", INTERLEAVE, INTERLEAVING,
     il(50, "fail", command="promote"), T0 + 9, P.ROLLED_BACK,
     [StopInterleave(), Rollback, K.INTERLEAVE_FAILED, K.COMMAND_REFUSED]),
]

CASES = ROAD + COMMANDS + INTERLEAVING_CASES
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize(("name", "spec", "status", "obs", "now", "phase", "actions"), CASES,
                         ids=IDS)
def test_transition(name: str, spec: RolloutSpec, status: RolloutStatus, obs: Observation,
                    now: float, phase: Phase, actions: list[object]) -> None:
    new, got = decide(spec, status, obs, now)
    assert (new.phase, shape(got)) == (phase, actions)
    # pure: the same question, the same answer
    assert decide(spec, status, obs, now) == (new, got)
    emits = [a for a in got if isinstance(a, Emit)]
    assert all(e.message for e in emits)
    if new != status:
        # every transition leaves an audit event and a status message, stamped now
        assert emits and new.message and new.updated_at == now
        assert new.message in [e.message for e in emits]
    else:
        assert new is status  # nothing changed: the very same status


def test_a_refused_command_changes_nothing() -> None:
    for status in (WATCHING, PROMOTING, PAUSED_STEP0, *(st(p) for p in TERMINAL_PHASES)):
        new, actions = decide(FULL, status, Ob(command="promote"), T0 + 9)
        if actions and isinstance(actions[0], Emit) and actions[0].kind == K.COMMAND_REFUSED:
            assert new is status and len(actions) == 1
            assert actions[0].message.startswith("promote refused: ")


def test_next_step_moves_the_cursor_and_restarts_the_bake() -> None:
    new, _ = decide(FULL, replace(STEP0, verdicts=4), Ob(canary_verdict="pass"), T0 + BAKE + 7)
    assert (new.step_index, new.weight, new.extensions) == (1, 50.0, 0)
    assert new.bake_started_at == new.phase_started_at == T0 + BAKE + 7
    assert new.verdicts == 5
    assert due_at(FULL, new) == T0 + 2 * BAKE + 7


def test_an_extension_is_a_whole_new_bake_and_keeps_the_evidence() -> None:
    # judged 3 s late (or after waiting for samples): the extension bakes a full BAKE from
    # now, and the looks stay nested: the step's evidence still begins where it began
    new, _ = decide(FULL, STEP0, Ob(canary_verdict="inconclusive"), T0 + BAKE + 3)
    assert (new.extensions, new.bake_started_at, new.phase_started_at) == (1, T0, T0)
    assert new.verdicts == 1 and due_at(FULL, new) == T0 + BAKE + 3 + BAKE
    waited, _ = decide(FULL, STEP0, Ob(canary_verdict="inconclusive"), T0 + 5 * BAKE)
    assert due_at(FULL, waited) == T0 + 6 * BAKE and waited.bake_started_at == T0


def test_pause_remembers_where_and_resume_restarts_the_timers() -> None:
    held, actions = decide(FULL, replace(STEP0, extensions=1), Ob(command="pause"), T0 + 60)
    assert (held.phase, held.paused_from, held.pause_reason) == (
        P.PAUSED, P.PROGRESSING, PauseReason.COMMAND)
    assert (held.step_index, held.weight, held.extensions) == (0, 10.0, 1)
    back, _ = decide(FULL, held, Ob(command="resume"), T0 + 5000)
    assert (back.phase, back.paused_from, back.pause_reason) == (P.PROGRESSING, None, None)
    assert (back.bake_started_at, back.extensions, back.weight) == (T0 + 5000, 0, 10.0)
    assert back.verdicts == held.verdicts + 1  # a verdict asked for before the pause is void
    assert decide(FULL, back, Ob(), T0 + 5000 + BAKE - 1) == (back, [])
    assert decide(FULL, back, Ob(canary_verdict="pass"), T0 + 5000 + BAKE - 1) == (back, [])
    assert decide(FULL, back, Ob(canary_verdict="pass"), T0 + 5000 + BAKE)[1][0].kind == K.STEP_PASSED


def test_resumed_shadow_counts_again_from_the_resume() -> None:
    back, _ = decide(FULL, PAUSED_SHADOW, Ob(command="resume"), T0 + 7000)
    assert back.phase_started_at == T0 + 7000 and due_at(FULL, back) == T0 + 7000 + 1800


@pytest.mark.parametrize(
    ("status", "obs", "weight"),
    [(STEP1, Ob(command="abort"), 0.0), (STEP1, Ob(command="rollback"), 0.0),
     (STEP1, Ob(canary_verdict="fail"), 0.0), (PROMOTING, Ob(), 98.0), (PROMOTING, Ob(), 98.0),
     (GATING, Ob(gate="fail"), 0.0)],
)
def test_weight_after_the_end(status: RolloutStatus, obs: Observation, weight: float) -> None:
    assert decide(FULL, status, obs, T0 + BAKE)[0].weight == weight


def test_rollback_carries_its_reason() -> None:
    _, actions = decide(FULL, STEP1, Ob(canary_verdict="fail"), T0 + BAKE)
    (rollback,) = [a for a in actions if isinstance(a, Rollback)]
    assert "step 2 of 2 (50%) failed" in rollback.reason


def test_due_at() -> None:
    assert due_at(FULL, PENDING) is None and due_at(FULL, PAUSED_STEP0) is None
    assert due_at(FULL, SHADOWING) == T0 + 1800
    assert due_at(FULL, STEP0) == T0 + BAKE and due_at(LABELS, STEP0) == T0 + BAKE + 300
    assert due_at(FULL, WATCHING) == T0 + WATCH


def test_status_round_trips_through_json() -> None:
    status = replace(AWAITING, message="m", verdicts=3, extensions=1, bake_started_at=T0 + 1)
    data = json.loads(json.dumps(status.to_dict()))
    assert data["phase"] == "paused" and data["pause_reason"] == "awaiting_promotion"
    assert RolloutStatus.from_dict(data) == status
    assert RolloutStatus.from_dict({}) == RolloutStatus()
    with pytest.raises(ValueError, match="unknown rollout status fields: cursor"):
        RolloutStatus.from_dict({"cursor": 1})
    with pytest.raises(ValueError):
        RolloutStatus.from_dict({"phase": "sleeping"})


@pytest.mark.parametrize(
    "fields",
    [{"gate": "inconclusive"}, {"canary_verdict": "ok"}, {"shadow_verdict": "PASS"},
     {"watch_verdict": "bad"}, {"command": "undo"}, {"shadow_requests": -1},
     {"interleave_verdict": "win"}, {"interleave_requests": -1}],
)
def test_an_observation_names_only_known_outcomes(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Observation(**fields)


# -- walks with a fake clock and a fake controller -----------------------------------------


@dataclass
class World:
    """What the store and gateways would tell a controller; verdicts scripted per kind."""

    script: dict[str, list[str]]
    gate: str = "pass"
    shadow_rate: float = 1.0  # mirrored requests per second
    commands: dict[float, str] = field(default_factory=dict)
    gate_ran: bool = False
    answers: dict[tuple[str, int], str] = field(default_factory=dict)
    interleave_rate: float = 0.1  # interleaved requests with clicks per second
    interleave_looks: list[str] = field(default_factory=list)  # one verdict per look, in order

    def observe(self, status: RolloutStatus, now: float) -> Observation:
        shadowing = P.SHADOWING in (status.phase, status.paused_from)
        started = status.phase_started_at or now
        canary = watch = None
        if P.PROGRESSING in (status.phase, status.paused_from):
            # the judge looks at every tick; the scripted verdict is its answer once the
            # bake is over (before, the evidence is still building: inconclusive)
            due = status.judge_after if status.judge_after is not None else now
            looked = now >= due and status.phase is P.PROGRESSING
            canary = self.answer("canary", status.verdicts) if looked else "inconclusive"
        if P.WATCHING in (status.phase, status.paused_from) and self.script.get("watch"):
            watch = self.answer("watch", status.verdicts)
        interleaving = P.INTERLEAVING in (status.phase, status.paused_from)
        preference = self.interleave_looks.pop(0) if interleaving and self.interleave_looks else None
        return Observation(
            interleave_requests=int((now - started) * self.interleave_rate) if interleaving else 0,
            interleave_verdict=preference,
            gate=self.gate if self.gate_ran else None,
            shadow_requests=int((now - started) * self.shadow_rate) if shadowing else 0,
            shadow_verdict=self.answers.get(("shadow", status.verdicts)),
            canary_verdict=canary,
            watch_verdict=watch,
            command=self.commands.pop(now, None),
        )

    def answer(self, kind: str, verdicts: int) -> str:
        if (kind, verdicts) not in self.answers:
            self.answers[(kind, verdicts)] = self.script[kind].pop(0)
        return self.answers[(kind, verdicts)]

    def act(self, status: RolloutStatus, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, RunGate):
                self.gate_ran = True
            elif isinstance(action, Judge) and (action.kind, status.verdicts) not in self.answers:
                self.answers[(action.kind, status.verdicts)] = self.script[action.kind].pop(0)


@dataclass
class Walk:
    final: RolloutStatus
    log: list[tuple[float, Action]]
    states: list[tuple[Phase, int]]

    def of(self, kind: type) -> list[Any]:
        return [action for _, action in self.log if isinstance(action, kind)]

    def kinds(self) -> list[str]:
        return [action.kind for action in self.of(Emit)]


def walk(spec: RolloutSpec, world: World, ticks: list[float],
         crash_at: frozenset[float] = frozenset()) -> Walk:
    """Tick a controller whose only memory is the persisted status (a JSON document).

    At a tick in ``crash_at`` the controller acts, then dies before it writes the status.
    """
    stored = json.dumps(RolloutStatus().to_dict())
    log: list[tuple[float, Action]] = []
    states: list[tuple[Phase, int]] = []
    for now in ticks:
        status = RolloutStatus.from_dict(json.loads(stored))  # a fresh process every tick
        new, actions = decide(spec, status, world.observe(status, now), now)
        world.act(new, actions)
        log += [(now, action) for action in actions]
        if now in crash_at:
            continue
        stored = json.dumps(new.to_dict())
        if not states or states[-1] != (new.phase, new.step_index):
            states.append((new.phase, new.step_index))
        if new.terminal:
            break
    return Walk(RolloutStatus.from_dict(json.loads(stored)), log, states)


def every(seconds: float, hours: float = 12) -> list[float]:
    return [T0 + i * seconds for i in range(int(hours * 3600 / seconds))]


def test_happy_path_walk() -> None:
    world = World({"shadow": ["pass"], "canary": ["pass", "pass"], "watch": ["pass"]})
    done = walk(FULL, world, every(60))
    assert done.final.phase is P.PROMOTED and done.final.weight == 100.0
    assert done.states == [(P.GATING, -1), (P.SHADOWING, -1), (P.PROGRESSING, 0),
                           (P.PROGRESSING, 1), (P.PROMOTING, 1), (P.WATCHING, 1),
                           (P.PROMOTED, 1)]
    assert done.of(SetWeight) == [SetWeight(10.0), SetWeight(50.0)]
    assert done.of(StartShadow) == [StartShadow(0.5)] and done.of(StopShadow) == [StopShadow()]
    assert len(done.of(Promote)) == 1 and len(done.of(FinishWatch)) == 1
    assert done.of(Rollback) == []
    assert done.kinds() == [K.GATE_STARTED, K.GATE_PASSED, K.SHADOW_STARTED, K.SHADOW_PASSED,
                            K.STEP_STARTED, K.STEP_PASSED, K.STEP_STARTED, K.STEP_PASSED,
                            K.PROMOTE_STARTED, K.PROMOTE_DONE, K.WATCH_PASSED]
    # each step baked its full bake at its own weight, judged at the first tick after
    weights = [(now, a.percent) for now, a in done.log if isinstance(a, SetWeight)]
    assert weights[1][0] - weights[0][0] == BAKE  # the look at the end of the bake acts at once
    assert done.final.verdicts == 5  # gate, shadow, two steps, watch


def test_rollback_walk() -> None:
    world = World({"shadow": ["pass"], "canary": ["pass", "fail"]})
    done = walk(FULL, world, every(60))
    assert done.final.phase is P.ROLLED_BACK and done.final.weight == 0.0
    assert done.of(SetWeight) == [SetWeight(10.0), SetWeight(50.0)]
    assert len(done.of(Rollback)) == 1 and done.of(Promote) == []
    assert done.kinds()[-1] == K.STEP_FAILED


def test_extensions_then_a_person_resumes() -> None:
    pause_at = T0 + 60 * 60
    world = World({"shadow": ["pass"], "canary": ["inconclusive"] * 3 + ["pass", "pass"],
                   "watch": ["pass"]}, commands={pause_at: "resume"})
    done = walk(spec_with(gate=None, shadow=None, canary={
        "steps": [10, 50], "bake": "10m", "max_extensions": 2, "on_inconclusive": "pause"}),
        world, every(60))
    assert done.final.phase is P.PROMOTED
    kinds = done.kinds()
    assert kinds[:4] == [K.STEP_STARTED, K.BAKE_EXTENDED, K.BAKE_EXTENDED, K.STEP_INCONCLUSIVE]
    assert kinds[4] == K.RESUMED
    assert done.of(SetWeight) == [SetWeight(10.0), SetWeight(50.0)]


def test_manual_promotion_waits_for_a_person() -> None:
    world = World({"canary": ["pass", "pass"], "watch": ["pass"]},
                  commands={T0 + 4 * 3600: "promote"})
    spec = spec_with(gate=None, shadow=None, promote="manual")
    done = walk(spec, world, every(60))
    assert done.final.phase is P.PROMOTED
    (promoted_at,) = [now for now, a in done.log if isinstance(a, Promote)]
    assert promoted_at == T0 + 4 * 3600 + 60


@pytest.mark.parametrize(
    "script", [["pass", "pass"], ["pass", "fail"], ["inconclusive", "pass", "pass"]]
)
def test_a_controller_that_crashes_neither_repeats_nor_skips_a_step(script: list[str]) -> None:
    def run(crash_at: frozenset[float]) -> Walk:
        world = World({"shadow": ["pass"], "canary": list(script), "watch": ["pass"]})
        return walk(FULL, world, every(60), crash_at)

    clean = run(frozenset())
    crashing = run(frozenset(every(60)[1::3]))  # dies before writing, every third tick
    assert crashing.final.phase == clean.final.phase
    assert crashing.states == clean.states  # every step, once, in order
    # the actions of a lost tick are done again (they are idempotent), never new ones
    assert _squeezed(crashing.of(SetWeight)) == clean.of(SetWeight)
    assert _firsts(crashing.of(Emit)) == clean.of(Emit)
    assert len(crashing.of(Emit)) > len(clean.of(Emit))  # crashes did happen


def _firsts(items: list[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _squeezed(items: list[Any]) -> list[Any]:
    return [item for i, item in enumerate(items) if i == 0 or items[i - 1] != item]


def test_a_long_outage_judges_once_and_bakes_the_next_step_in_full() -> None:
    world = World({"canary": ["pass", "pass"], "watch": ["pass"]})
    ticks = [T0, T0 + 60, T0 + 5 * 3600, T0 + 5 * 3600 + 60, *every(60, 20)[301:]]
    done = walk(CANARY_ONLY, world, sorted(set(ticks)))
    weights = [(now, a.percent) for now, a in done.log if isinstance(a, SetWeight)]
    assert weights[0] == (T0, 10.0)
    assert weights[1] == (T0 + 5 * 3600, 50.0)  # judged once, at the first tick after the outage
    (promoted_at,) = [now for now, a in done.log if isinstance(a, Promote)]
    assert promoted_at >= T0 + 5 * 3600 + BAKE  # the outage did not skip step 2's bake
    assert done.final.phase is P.PROMOTED


def test_interleaving_counts_its_verdict_and_due_at_says_when_it_ends() -> None:
    new, _ = decide(INTERLEAVE, INTERLEAVING, il(500, "pass"), T0 + 60)
    assert new.verdicts == INTERLEAVING.verdicts + 1 and new.step_index == 0
    assert due_at(INTERLEAVE, INTERLEAVING) == T0 + 3600
    failed, _ = decide(INTERLEAVE, INTERLEAVING, il(40, "fail", interleave_reason="harm +0.2"), T0 + 60)
    assert failed.verdicts == INTERLEAVING.verdicts + 1 and failed.weight == 0.0
    assert "harm +0.2" in failed.message


def test_interleaving_walk_between_shadow_and_canary() -> None:
    world = World({"shadow": ["pass"], "canary": ["pass", "pass"], "watch": ["pass"]})
    ticks = every(60)
    world.interleave_looks = ["inconclusive"] * 5 + ["pass"] * 400
    done = walk(INTERLEAVE, world, ticks)
    assert done.final.phase is P.PROMOTED
    assert done.states[:4] == [(P.GATING, -1), (P.SHADOWING, -1), (P.INTERLEAVING, -1),
                               (P.PROGRESSING, 0)]
    assert done.of(StartInterleave) == [StartInterleave(0.2, 10)]
    assert done.of(StopInterleave) == [StopInterleave()]
    # 500 clicked requests at 0.1/s: the pass acts at the first look past 5000 s... or at or_after
    (started,) = [now for now, a in done.log if isinstance(a, StartInterleave)]
    (stopped,) = [now for now, a in done.log if isinstance(a, StopInterleave)]
    assert stopped - started == 3600.0  # or_after (1h) comes before 500 requests (5000 s)


def test_an_interleaving_that_fails_rolls_back_before_any_canary_traffic() -> None:
    world = World({"shadow": ["pass"]}, interleave_looks=["inconclusive"] * 3 + ["fail"])
    done = walk(INTERLEAVE, world, every(60))
    assert done.final.phase is P.ROLLED_BACK and done.of(SetWeight) == []
    assert done.kinds()[-1] == K.INTERLEAVE_FAILED


def test_all_names_exist() -> None:
    from changeover.domain import rollout, rollout_state

    for module in (rollout, rollout_state):
        assert all(hasattr(module, name) for name in module.__all__)
    assert set(rollout_state.__all__) <= set(rollout.__all__)


def test_a_rollback_an_alert_rule_asked_for_says_so() -> None:
    """The audit log names the actor truly: an alert rule's rollback is not "by a person"."""
    new, actions = decide(FULL, WATCHING, Ob(command="rollback-alert"), T0 + 9)
    assert new.phase is P.ROLLED_BACK
    message = next(a for a in actions if isinstance(a, Rollback)).reason
    assert "alert rule" in message and "person" not in message
    _, by_hand = decide(FULL, WATCHING, Ob(command="rollback"), T0 + 9)
    assert "by a person" in next(a for a in by_hand if isinstance(a, Rollback)).reason
