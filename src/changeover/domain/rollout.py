"""The rollout state machine: given where a rollout is and what was seen, what comes next.

``decide(spec, status, observation, now)`` is pure. It reads no clock (``now`` is passed in)
and keeps no memory outside ``status``, so a controller that is killed and restarted with
the persisted status neither repeats nor skips a step. The road:

    pending -> gating -> shadowing -> interleaving -> progressing (step, bake, judge; ...) -> promoting
            -> watching -> promoted

Sections the spec leaves out are skipped. A failed gate ends in ``failed`` (no traffic ever
moved); a failed shadow, step or watch ends in ``rolled_back``. Each call makes at most one
move along the road; when nothing is due it returns the same status and no actions. While a
result is awaited (``RunGate``, ``Judge``) the request is repeated on every tick, so a lost
request is asked again; the controller answers such requests idempotently.
"""

from __future__ import annotations

from dataclasses import replace

from changeover.domain.rollout_state import (
    TERMINAL_PHASES,
    Action,
    Command,
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
    Verdict,
)
from changeover.domain.spec import RolloutSpec, ShadowUntil, format_duration

__all__ = [
    "Action",
    "Command",
    "Emit",
    "EventKind",
    "FinishWatch",
    "Judge",
    "Observation",
    "PauseReason",
    "Phase",
    "Promote",
    "Rollback",
    "RolloutStatus",
    "RunGate",
    "SetWeight",
    "StartInterleave",
    "StartShadow",
    "StopInterleave",
    "StopShadow",
    "TERMINAL_PHASES",
    "Verdict",
    "decide",
    "due_at",
]

Decision = tuple[RolloutStatus, list[Action]]

# The road, in order; `_enter_after` walks it to skip the sections a spec leaves out.
_ROAD = (Phase.PENDING, Phase.GATING, Phase.SHADOWING, Phase.INTERLEAVING, Phase.PROGRESSING,
         Phase.PROMOTING)


def decide(spec: RolloutSpec, status: RolloutStatus, obs: Observation, now: float) -> Decision:
    """The next status and the actions that get there. Pure: same inputs, same answer."""
    if status.terminal:
        if obs.command is None:
            return status, []
        return status, [_refused(obs.command, f"the rollout has ended ({status.phase})")]
    failed = _failure(spec, status, obs, now)
    if failed is not None:
        new, actions = failed
        if obs.command is not None and obs.command != Command.ROLLBACK:
            actions.append(_refused(obs.command, f"the rollout ended in {new.phase}: {new.message}"))
        return new, actions
    if obs.command is not None:
        return _command(spec, status, Command(obs.command), now)
    return _advance(spec, status, obs, now)


def due_at(spec: RolloutSpec, status: RolloutStatus) -> float | None:
    """When the clock alone will next make ``decide`` move (a controller can sleep till then)."""
    if status.phase is Phase.SHADOWING and spec.shadow and spec.shadow.until.or_after:
        return _started(status) + spec.shadow.until.or_after
    if status.phase is Phase.INTERLEAVING and spec.interleave and spec.interleave.until.or_after:
        return _started(status) + spec.interleave.until.or_after
    if status.phase is Phase.PROGRESSING and spec.canary is not None:
        return _judge_at(spec, status)
    if status.phase is Phase.WATCHING:
        return _started(status) + spec.watch.duration
    return None


# -- the road ---------------------------------------------------------------------------------


def _advance(spec: RolloutSpec, status: RolloutStatus, obs: Observation, now: float) -> Decision:
    phase = status.phase
    if phase is Phase.PENDING:
        return _enter_after(spec, status, Phase.PENDING, now)
    if phase is Phase.GATING:
        if obs.gate is None:
            return status, [RunGate()]
        counted = replace(status, verdicts=status.verdicts + 1)
        new, actions = _enter_after(spec, counted, Phase.GATING, now)
        return new, [Emit(EventKind.GATE_PASSED, "the offline gate passed"), *actions]
    if phase is Phase.SHADOWING:
        return _shadowing(spec, status, obs, now)
    if phase is Phase.INTERLEAVING:
        return _interleaving(spec, status, obs, now)
    if phase is Phase.PROGRESSING:
        return _progressing(spec, status, obs, now)
    if phase is Phase.PROMOTING:
        return _promoting(spec, status, now)
    if phase is Phase.WATCHING:
        return _watching(spec, status, obs, now)
    return status, []  # paused: only a command, or a failure, moves it


def _enter_after(spec: RolloutSpec, status: RolloutStatus, after: Phase, now: float) -> Decision:
    for phase in _ROAD[_ROAD.index(after) + 1 :]:
        if phase is Phase.GATING and spec.gate is not None:
            message = f"running the offline gate on {spec.gate.data}"
            new = _moved(status, now, Phase.GATING, message)
            return new, [RunGate(), Emit(EventKind.GATE_STARTED, message)]
        if phase is Phase.SHADOWING and spec.shadow is not None:
            shadow = spec.shadow
            message = f"shadowing {shadow.sample * 100:g}% of requests until {_until(spec)}"
            new = _moved(status, now, Phase.SHADOWING, message)
            return new, [StartShadow(shadow.sample), Emit(EventKind.SHADOW_STARTED, message)]
        if phase is Phase.INTERLEAVING and spec.interleave is not None:
            il = spec.interleave
            message = (f"interleaving {il.sample * 100:g}% of requests (top {il.k}, team draft) "
                       f"until {_ends(il.until)}")
            new = _moved(status, now, Phase.INTERLEAVING, message)
            return new, [StartInterleave(il.sample, il.k), Emit(EventKind.INTERLEAVE_STARTED, message)]
        if phase is Phase.PROGRESSING and spec.canary is not None:
            return _enter_step(spec, status, 0, now)
    return _enter_promotion(spec, status, now)


def _shadowing(spec: RolloutSpec, status: RolloutStatus, obs: Observation, now: float) -> Decision:
    if spec.shadow is None:  # the spec changed under a running rollout: no shadow to judge
        new, actions = _enter_after(spec, status, Phase.SHADOWING, now)
        return new, [StopShadow(), *actions]
    until = spec.shadow.until
    enough = until.requests is not None and obs.shadow_requests >= until.requests
    late = until.or_after is not None and now >= _started(status) + until.or_after
    if not (enough or late):
        return status, []
    if obs.shadow_verdict is None:
        return status, [Judge("shadow")]
    counted = replace(status, verdicts=status.verdicts + 1)
    seen = f"{obs.shadow_requests} mirrored requests"
    if obs.shadow_verdict == Verdict.INCONCLUSIVE:
        message = (f"the shadow is inconclusive after {seen}: a person decides "
                   "(resume shadows again; promote, rollback or abort)")
        new = _paused(counted, now, PauseReason.INCONCLUSIVE, message)
        return new, [Emit(EventKind.SHADOW_INCONCLUSIVE, message)]
    new, actions = _enter_after(spec, counted, Phase.SHADOWING, now)
    passed = Emit(EventKind.SHADOW_PASSED, f"the shadow passed after {seen}")
    return new, [StopShadow(), passed, *actions]


def _interleaving(spec: RolloutSpec, status: RolloutStatus, obs: Observation, now: float) -> Decision:
    # A fail acts at any look (`_failure`); a pass or an inconclusive end once `until` is reached.
    if spec.interleave is None:  # the spec changed under a running rollout: nothing to judge
        new, actions = _enter_after(spec, status, Phase.INTERLEAVING, now)
        return new, [StopInterleave(), *actions]
    until = spec.interleave.until
    enough = until.requests is not None and obs.interleave_requests >= until.requests
    late = until.or_after is not None and now >= _started(status) + until.or_after
    if not (enough or late) or obs.interleave_verdict is None:
        return status, []
    counted = replace(status, verdicts=status.verdicts + 1)
    seen = f"{obs.interleave_requests} interleaved requests with clicks"
    why = f": {obs.interleave_reason}" if obs.interleave_reason else ""
    if obs.interleave_verdict == Verdict.PASS:
        new, actions = _enter_after(spec, counted, Phase.INTERLEAVING, now)
        passed = Emit(EventKind.INTERLEAVE_PASSED, f"the interleaving passed after {seen}{why}")
        return new, [StopInterleave(), passed, *actions]
    rule = spec.canary.on_inconclusive if spec.canary is not None else "pause"
    if rule == "rollback":
        message = (f"the interleaving is inconclusive after {seen}: rolling back "
                   f"(canary.on_inconclusive: rollback){why}")
        return _rolled_back(counted, now, message, EventKind.INTERLEAVE_INCONCLUSIVE)
    message = (f"the interleaving is inconclusive after {seen}: a person decides "
               f"(resume interleaves again; promote, rollback or abort){why}")
    new = _paused(counted, now, PauseReason.INCONCLUSIVE, message)
    return new, [Emit(EventKind.INTERLEAVE_INCONCLUSIVE, message)]


def _progressing(spec: RolloutSpec, status: RolloutStatus, obs: Observation, now: float) -> Decision:
    canary = spec.canary
    if canary is None or status.step_index >= len(canary.steps):
        # The spec changed under a running rollout: nothing is left to bake.
        return _enter_promotion(spec, status, now)
    # A fail acts at any look (`_failure`); a pass or a tie only once the bake is over.
    if now < _judge_at(spec, status) or obs.canary_verdict is None:
        return status, []
    verdict = obs.canary_verdict
    counted = replace(status, verdicts=status.verdicts + 1, waiting=False)
    step = _step_name(spec, status)
    why = f": {obs.canary_reason}" if obs.canary_reason else ""
    if verdict == Verdict.PASS:
        passed = Emit(EventKind.STEP_PASSED, f"{step} passed{why}")
        if status.step_index + 1 < len(canary.steps):
            new, actions = _enter_step(spec, counted, status.step_index + 1, now)
        else:
            new, actions = _enter_promotion(spec, counted, now)
        return new, [passed, *actions]
    started = status.bake_started_at if status.bake_started_at is not None else _started(status)
    over = canary.max_bake is not None and now >= started + canary.max_bake
    if not obs.canary_enough and not over:
        # The bake is over but the evidence a verdict needs is not there yet: keep baking
        # (the estimate was printed at apply), say what is missing, once as an event.
        if status.waiting:
            return status, []  # said once; the live look (status API) shows the counts
        message = f"{step} waits for samples{why}"
        waiting = replace(status, waiting=True, message=message, updated_at=now)
        return waiting, [Emit(EventKind.STEP_WAITING, message)]
    if status.extensions < canary.max_extensions and not over:
        # an extension is a whole new bake from now; the looks stay nested (same evidence)
        extended = replace(counted, extensions=status.extensions + 1, judge_after=now + canary.bake)
        message = (f"{step} is inconclusive: bake extended by {format_duration(canary.bake)} "
                   f"({extended.extensions} of {canary.max_extensions}){why}")
        new = _moved(extended, now, Phase.PROGRESSING, message, keep_started=True)
        return new, [Emit(EventKind.BAKE_EXTENDED, message)]
    after = (f"its maximum bake of {format_duration(canary.max_bake)}" if over and canary.max_bake
             else f"{canary.max_extensions} extensions")
    if canary.on_inconclusive == "rollback":
        message = f"{step} is still inconclusive after {after}: rolling back (on_inconclusive: rollback){why}"
        return _rolled_back(counted, now, message, EventKind.STEP_INCONCLUSIVE)
    message = (f"{step} is still inconclusive after {after}: a person decides "
               f"(resume bakes again; promote, rollback or abort){why}")
    new = _paused(counted, now, PauseReason.INCONCLUSIVE, message)
    return new, [Emit(EventKind.STEP_INCONCLUSIVE, message)]


def _enter_step(spec: RolloutSpec, status: RolloutStatus, index: int, now: float) -> Decision:
    assert spec.canary is not None
    weight = spec.canary.steps[index]
    first = status.canary_started_at if status.canary_started_at is not None else now
    stepped = replace(status, step_index=index, weight=weight, bake_started_at=now, extensions=0,
                      canary_started_at=first, waiting=False,
                      judge_after=now + spec.canary.bake + spec.canary.judge.labels_delay)
    message = (f"{_step_name(spec, stepped)}: baking for {format_duration(spec.canary.bake)}")
    new = _moved(stepped, now, Phase.PROGRESSING, message)
    return new, [SetWeight(weight), Emit(EventKind.STEP_STARTED, message)]


def _enter_promotion(spec: RolloutSpec, status: RolloutStatus, now: float) -> Decision:
    if spec.promote == "manual":
        message = f"ready to promote candidate {spec.candidate}: waiting for a person (promote)"
        new = _paused(status, now, PauseReason.AWAITING_PROMOTION, message, Phase.PROMOTING)
        return new, [Emit(EventKind.PROMOTE_WAITING, message)]
    message = f"promoting candidate {spec.candidate} to champion"
    new = _moved(status, now, Phase.PROMOTING, message)
    return new, [Emit(EventKind.PROMOTE_STARTED, message)]


def _promoting(spec: RolloutSpec, status: RolloutStatus, now: float) -> Decision:
    watch = spec.watch
    promoted = replace(status, weight=100.0 - (watch.holdback if watch.duration > 0 else 0.0),
                       bake_started_at=None, judge_after=None, waiting=False)
    if watch.duration > 0:
        held = (f", {watch.holdback:g}% held back on the old champion" if watch.holdback > 0
                else ", no holdback: absolute guards only")
        message = (f"candidate {spec.candidate} is champion; watching for "
                   f"{format_duration(watch.duration)}{held}")
        new = _moved(promoted, now, Phase.WATCHING, message)
        return new, [Promote(holdback=watch.holdback), Emit(EventKind.PROMOTE_DONE, message)]
    message = f"candidate {spec.candidate} is champion (no watch)"
    new = _moved(promoted, now, Phase.PROMOTED, message)
    return new, [Promote(), FinishWatch(), Emit(EventKind.PROMOTE_DONE, message)]


def _watching(spec: RolloutSpec, status: RolloutStatus, obs: Observation, now: float) -> Decision:
    # A fail acts at any look (`_failure`); the watch passes when its time is over.
    if now < _started(status) + spec.watch.duration:
        return status, []
    counted = replace(status, verdicts=status.verdicts + 1, weight=100.0)
    message = (f"the {format_duration(spec.watch.duration)} watch is over: candidate "
               f"{spec.candidate} stays")
    new = _moved(counted, now, Phase.PROMOTED, message)
    return new, [FinishWatch(), Emit(EventKind.WATCH_PASSED, message)]


# -- failures: a "fail" verdict ends the rollout whenever it comes, paused or not ---------------


def _failure(spec: RolloutSpec, status: RolloutStatus, obs: Observation, now: float) -> Decision | None:
    active = status.paused_from if status.phase is Phase.PAUSED else status.phase
    counted = replace(status, verdicts=status.verdicts + 1)
    if active is Phase.GATING and obs.gate == Verdict.FAIL:
        message = "the offline gate failed: no traffic was moved"
        new = _ended(counted, now, Phase.FAILED, message, weight=0.0)
        return new, [Emit(EventKind.GATE_FAILED, message)]
    if active is Phase.SHADOWING and obs.shadow_verdict == Verdict.FAIL:
        message = f"the shadow failed after {obs.shadow_requests} mirrored requests: rolling back"
        return _rolled_back(counted, now, message, EventKind.SHADOW_FAILED)
    if active is Phase.INTERLEAVING and obs.interleave_verdict == Verdict.FAIL:
        why = f": {obs.interleave_reason}" if obs.interleave_reason else ""
        message = (f"the interleaving failed after {obs.interleave_requests} interleaved requests "
                   f"with clicks: the champion is preferred; rolling back{why}")
        return _rolled_back(counted, now, message, EventKind.INTERLEAVE_FAILED)
    why = f": {obs.canary_reason}" if obs.canary_reason else ""
    if active is Phase.PROGRESSING and obs.canary_verdict == Verdict.FAIL:
        message = f"{_step_name(spec, status)} failed: rolling back to the champion{why}"
        return _rolled_back(counted, now, message, EventKind.STEP_FAILED)
    if active is Phase.WATCHING and obs.watch_verdict == Verdict.FAIL:
        message = f"the watch failed: rolling back to the previous champion {spec.champion}{why}"
        return _rolled_back(counted, now, message, EventKind.WATCH_FAILED)
    return None


def _rolled_back(status: RolloutStatus, now: float, message: str, kind: str) -> Decision:
    actions = _stops(status)
    new = _ended(status, now, Phase.ROLLED_BACK, message, weight=0.0)
    return new, [*actions, Rollback(message), Emit(kind, message)]


# -- commands ---------------------------------------------------------------------------------


def _command(spec: RolloutSpec, status: RolloutStatus, command: Command, now: float) -> Decision:
    phase, held = status.phase, status.paused_from
    promoted = Phase.WATCHING in (phase, held)
    if command is Command.PAUSE:
        if phase is Phase.PAUSED:
            return status, [_refused(command, "the rollout is already paused")]
        message = f"paused by a person in {phase}"
        new = _paused(status, now, PauseReason.COMMAND, message)
        return new, [Emit(EventKind.PAUSED, message)]
    if command is Command.RESUME:
        return _resume(spec, status, now)
    if command is Command.ROLLBACK:
        return _rolled_back(status, now, "rolled back by a person", EventKind.ROLLED_BACK)
    if command is Command.ROLLBACK_ON_ALERT:
        return _rolled_back(status, now, "rolled back by an alert rule (its alert_rollback event says which and why)",
                            EventKind.ROLLED_BACK)
    if promoted:
        why = "the candidate is already champion: use rollback"
        return status, [_refused(command, why)]
    if command is Command.ABORT:
        actions = _stops(status)
        actions += [SetWeight(0.0)] if status.weight > 0 else []
        message = f"aborted by a person in {phase}: all traffic back to the champion"
        new = _ended(status, now, Phase.ABORTED, message, weight=0.0)
        return new, [*actions, Emit(EventKind.ABORTED, message)]
    # promote: skip whatever is left before promotion
    if phase is Phase.PROMOTING:
        return status, [_refused(command, "the rollout is already promoting")]
    actions = _stops(status)
    message = f"promote asked by a person in {phase}: promoting candidate {spec.candidate}"
    new = _moved(status, now, Phase.PROMOTING, message)
    return new, [*actions, Emit(EventKind.PROMOTE_STARTED, message)]


def _resume(spec: RolloutSpec, status: RolloutStatus, now: float) -> Decision:
    if status.phase is not Phase.PAUSED or status.paused_from is None:
        return status, [_refused(Command.RESUME, "the rollout is not paused")]
    if status.pause_reason is PauseReason.AWAITING_PROMOTION:
        return status, [_refused(Command.RESUME, "waiting for promote (or abort, or rollback)")]
    back = status.paused_from
    # Timers restart, and any verdict asked for before the pause is void (a new number).
    bake = spec.canary.bake + spec.canary.judge.labels_delay if spec.canary else 0.0
    resumed = replace(status, verdicts=status.verdicts + 1, extensions=0, waiting=False,
                      bake_started_at=now if back is Phase.PROGRESSING else None,
                      judge_after=now + bake if back is Phase.PROGRESSING else None)
    message = f"resumed by a person: back to {back}"
    if back is Phase.PROGRESSING:
        message += f", {_step_name(spec, resumed)} bakes again"
    new = _moved(resumed, now, back, message)
    return new, [Emit(EventKind.RESUMED, message)]


def _refused(command: str, why: str) -> Emit:
    return Emit(EventKind.COMMAND_REFUSED, f"{command} refused: {why}")


# -- helpers ----------------------------------------------------------------------------------


def _moved(status: RolloutStatus, now: float, phase: Phase, message: str,
           keep_started: bool = False) -> RolloutStatus:
    started = status.phase_started_at if keep_started else now
    return replace(status, phase=phase, phase_started_at=started, paused_from=None,
                   pause_reason=None, message=message, updated_at=now)


def _paused(status: RolloutStatus, now: float, reason: PauseReason, message: str,
            held: Phase | None = None) -> RolloutStatus:
    paused = _moved(status, now, Phase.PAUSED, message)
    return replace(paused, paused_from=held or status.phase, pause_reason=reason)


def _ended(status: RolloutStatus, now: float, phase: Phase, message: str,
           weight: float) -> RolloutStatus:
    ended = _moved(status, now, phase, message)
    return replace(ended, weight=weight, bake_started_at=None)


def _shadow_on(status: RolloutStatus) -> bool:
    return Phase.SHADOWING in (status.phase, status.paused_from)


def _stops(status: RolloutStatus) -> list[Action]:
    """What an end (or a promotion) turns off: the shadow or the interleaving, if one runs."""
    if _shadow_on(status):
        return [StopShadow()]
    if Phase.INTERLEAVING in (status.phase, status.paused_from):
        return [StopInterleave()]
    return []


def _started(status: RolloutStatus) -> float:
    return status.phase_started_at if status.phase_started_at is not None else 0.0


def _judge_at(spec: RolloutSpec, status: RolloutStatus) -> float:
    """When the current bake (or extension) is over: a pass may act from then on. The label
    delay is waited once, at the end of the step's first bake."""
    assert spec.canary is not None
    if status.judge_after is not None:
        return status.judge_after
    delay = spec.canary.judge.labels_delay
    started = status.bake_started_at if status.bake_started_at is not None else _started(status)
    return started + spec.canary.bake * (1 + status.extensions) + delay


def _step_name(spec: RolloutSpec, status: RolloutStatus) -> str:
    count = len(spec.canary.steps) if spec.canary else 0
    return f"step {status.step_index + 1} of {count} ({status.weight:g}%)"


def _until(spec: RolloutSpec) -> str:
    assert spec.shadow is not None
    return _ends(spec.shadow.until)


def _ends(until: ShadowUntil) -> str:
    ends = [f"{until.requests} requests"] if until.requests else []
    ends += [format_duration(until.or_after)] if until.or_after else []
    return " or ".join(ends)
