"""The words of the rollout state machine: phases, status, observations and actions.

``rollout.py`` decides; this module only names what it decides over. A status is the
rollout's whole memory: a controller that persists it (``to_dict``) and restarts
(``from_dict``) carries on exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

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
]


class Phase(StrEnum):
    PENDING = "pending"
    GATING = "gating"
    SHADOWING = "shadowing"
    INTERLEAVING = "interleaving"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTING = "promoting"
    WATCHING = "watching"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    FAILED = "failed"


TERMINAL_PHASES = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED})


class PauseReason(StrEnum):
    COMMAND = "command"  # a person said pause; resume goes back
    INCONCLUSIVE = "inconclusive"  # the statistics could not tell; a person decides
    AWAITING_PROMOTION = "awaiting_promotion"  # promote: manual; only promote goes on


class Command(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    ABORT = "abort"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    ROLLBACK_ON_ALERT = "rollback-alert"  # an alert rule asked (monitoring), not a person


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class EventKind(StrEnum):
    """The ``kind`` of every ``Emit``: one audit event per transition."""

    GATE_STARTED = "gate.started"
    GATE_PASSED = "gate.passed"
    GATE_FAILED = "gate.failed"
    SHADOW_STARTED = "shadow.started"
    SHADOW_PASSED = "shadow.passed"
    SHADOW_FAILED = "shadow.failed"
    SHADOW_INCONCLUSIVE = "shadow.inconclusive"
    INTERLEAVE_STARTED = "interleave.started"
    INTERLEAVE_PASSED = "interleave.passed"
    INTERLEAVE_FAILED = "interleave.failed"
    INTERLEAVE_INCONCLUSIVE = "interleave.inconclusive"
    STEP_STARTED = "step.started"
    STEP_PASSED = "step.passed"
    STEP_FAILED = "step.failed"
    STEP_INCONCLUSIVE = "step.inconclusive"
    STEP_WAITING = "step.waiting"
    BAKE_EXTENDED = "bake.extended"
    PROMOTE_WAITING = "promote.waiting"
    PROMOTE_STARTED = "promote.started"
    PROMOTE_DONE = "promote.done"
    WATCH_PASSED = "watch.passed"
    WATCH_FAILED = "watch.failed"
    PAUSED = "rollout.paused"
    RESUMED = "rollout.resumed"
    ABORTED = "rollout.aborted"
    ROLLED_BACK = "rollout.rolled_back"
    COMMAND_REFUSED = "command.refused"


@dataclass(frozen=True)
class RolloutStatus:
    """Where a rollout is. The cursor and the timestamps here are the rollout's only memory.

    ``verdicts`` counts the verdicts acted on (and the waits abandoned by a resume); a
    controller keys the verdict it computes for a ``Judge`` by (kind, ``verdicts``), so an
    old verdict is never offered for a new question.
    """

    phase: Phase = Phase.PENDING
    step_index: int = -1  # cursor into canary.steps; -1 before the first step
    weight: float = 0.0  # the candidate's percent of live traffic now
    phase_started_at: float | None = None
    bake_started_at: float | None = None
    extensions: int = 0  # bakes of the current step extended after an inconclusive verdict
    paused_from: Phase | None = None  # the phase a resume goes back to
    pause_reason: PauseReason | None = None
    message: str = ""
    verdicts: int = 0
    updated_at: float | None = None
    canary_started_at: float | None = None  # the first step's start: the canary's evidence begins
    judge_after: float | None = None  # the current bake (or extension) ends: a pass may act
    waiting: bool = False  # the bake is over, the step waits for the samples a verdict needs

    def __post_init__(self) -> None:
        object.__setattr__(self, "phase", Phase(self.phase))
        if self.paused_from is not None:
            object.__setattr__(self, "paused_from", Phase(self.paused_from))
        if self.pause_reason is not None:
            object.__setattr__(self, "pause_reason", PauseReason(self.pause_reason))

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; ``RolloutStatus.from_dict(status.to_dict()) == status``."""
        data = asdict(self)
        for name in ("phase", "paused_from", "pause_reason"):
            data[name] = None if data[name] is None else str(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutStatus:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown rollout status fields: {', '.join(unknown)}")
        return cls(**dict(data))


_GATE = {None, "pass", "fail"}
_VERDICTS = {None, *Verdict}
_COMMANDS = {None, *Command}


@dataclass(frozen=True)
class Observation:
    """What the controller saw this tick, for one rollout.

    gate: the offline gate's result, "pass" or "fail", None while it has not run.
    shadow_requests: requests mirrored to the candidate since ``status.phase_started_at``.
    shadow_verdict: the answer to the current ``Judge("shadow")`` (None until there is one).
    canary_verdict, watch_verdict: the judge's look now, over everything since the canary
        (or the watch) began (None while there is nothing to look at); a "fail" is acted on
        whenever it comes, a "pass" only once the bake is over.
    interleave_requests: interleaved requests with click feedback counted since
        ``status.phase_started_at`` (what ``interleave.until.requests`` counts).
    interleave_verdict: the preference judge's look now, over everything since the
        interleaving began (None while there is nothing to look at); a "fail" is acted on
        whenever it comes, a "pass" or "inconclusive" only once ``until`` is reached.
    interleave_reason: that look's reason, in words.
    canary_enough: the canary has the samples a conclusion needs; an inconclusive look at
        the end of a bake then extends it, otherwise the step waits for samples.
    canary_reason: the look's reasons, in words, for the audit trail and the status.
    command: an operator command waiting: pause, resume, abort, promote or rollback. The
        decide call that sees it consumes it, whether it is applied or refused.
    """

    gate: str | None = None
    shadow_requests: int = 0
    shadow_verdict: str | None = None
    canary_verdict: str | None = None
    watch_verdict: str | None = None
    command: str | None = None
    canary_enough: bool = True
    canary_reason: str = ""
    interleave_requests: int = 0
    interleave_verdict: str | None = None
    interleave_reason: str = ""

    def __post_init__(self) -> None:
        if self.gate not in _GATE:
            raise ValueError(f"gate must be pass, fail or None, not {self.gate!r}")
        for name in ("shadow_verdict", "canary_verdict", "watch_verdict", "interleave_verdict"):
            if getattr(self, name) not in _VERDICTS:
                raise ValueError(f"{name} must be pass, fail, inconclusive or None")
        if self.command not in _COMMANDS:
            raise ValueError(f"unknown command {self.command!r}")
        if self.shadow_requests < 0 or self.interleave_requests < 0:
            raise ValueError("shadow_requests and interleave_requests must not be negative")


@dataclass(frozen=True)
class RunGate:
    """Run the offline gate (idempotent: one gate run per rollout)."""


@dataclass(frozen=True)
class StartShadow:
    """Mirror this fraction of the model's requests to the candidate."""

    sample: float


@dataclass(frozen=True)
class StopShadow:
    """Stop mirroring requests to the candidate."""


@dataclass(frozen=True)
class StartInterleave:
    """Interleave this fraction of the model's requests: the user sees one list of `k` items
    drawn from the champion's and the candidate's rankings (team draft)."""

    sample: float
    k: int


@dataclass(frozen=True)
class StopInterleave:
    """Stop interleaving: the champion alone answers again."""


@dataclass(frozen=True)
class SetWeight:
    """Route this percent of live traffic to the candidate, the rest to the champion."""

    percent: float


@dataclass(frozen=True)
class Judge:
    """Compute the verdict of kind "shadow", "canary" or "watch" over its window, now."""

    kind: str


@dataclass(frozen=True)
class Promote:
    """Make the candidate the champion (the old one becomes `previous` and stays warm, with
    `holdback` percent of traffic, sticky, for the watch's concurrent baseline)."""

    holdback: float = 0.0


@dataclass(frozen=True)
class Rollback:
    """Restore the champion: shadows off, candidate weight 0, aliases back if promoted."""

    reason: str


@dataclass(frozen=True)
class FinishWatch:
    """The watch is over: the holdback ends and the old champion need no longer stay warm."""


@dataclass(frozen=True)
class Emit:
    """Append an event to the audit log."""

    kind: str
    message: str


Action = (
    RunGate | StartShadow | StopShadow | StartInterleave | StopInterleave | SetWeight | Judge | Promote
    | Rollback | FinishWatch | Emit
)
