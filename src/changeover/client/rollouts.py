"""What happened and where a rollout is: the audit log's events, a rollout with its verdicts,
operators' commands and rollbacks (see `changeover.client.results` for the rest)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from changeover.client.results import Compat, as_dict
from changeover.client.tables import html_table, text_table, when

__all__ = ["ENDED_PHASES", "Analysis", "Event", "Events", "Rollback", "Rollout", "RolloutCommand"]

ENDED_PHASES = frozenset({"promoted", "rolled_back", "aborted", "failed"})
"""A rollout in one of these phases moves no more (the server's terminal phases)."""


@dataclass(frozen=True)
class Analysis:
    """One judgement of a rollout (compat, gate, shadow, canary step, watch) with its evidence."""

    kind: str
    outcome: str
    version: int | None
    at: float | None
    evidence: dict[str, Any]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Analysis:
        return cls(kind=data.get("kind", ""), outcome=data.get("outcome", ""), version=data.get("version"),
                   at=data.get("at"), evidence=as_dict(data.get("evidence")))

    @property
    def reasons(self) -> list[str]:
        """The evidence in sentences: each check's (or rule's) reason, or the error."""
        ev = self.evidence
        if ev.get("error"):
            return [str(ev["error"])]
        nested = as_dict(ev.get("verdict"))
        checks = ev.get("checks") or nested.get("checks") or ev.get("rules") or ev.get("causes") or []
        return [str(c.get("reason", "")) if isinstance(c, Mapping) else str(c) for c in checks]


@dataclass(frozen=True)
class Event:
    """One row of the audit log: who, when, what, why, evidence."""

    id: int
    at: float
    actor: str
    model: str | None
    kind: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        return cls(id=int(data["id"]), at=float(data["at"]), actor=data.get("actor", ""), model=data.get("model"),
                   kind=data.get("kind", ""), message=data.get("message", ""), evidence=as_dict(data.get("evidence")))


_EVENT_HEADER = ["id", "when", "actor", "model", "kind", "message"]


def _event_row(e: Event) -> list[Any]:
    return [e.id, when(e.at), e.actor, e.model or "", e.kind, e.message]


class Events(tuple[Event, ...]):
    """Events, oldest first: a tuple of `Event` that shows as a table."""

    __slots__ = ()

    def __repr__(self) -> str:
        return text_table(_EVENT_HEADER, [_event_row(e) for e in self]) if self else "(no events)"

    def _repr_html_(self) -> str:
        return html_table(_EVENT_HEADER, [_event_row(e) for e in self], caption=f"{len(self)} events")


@dataclass(frozen=True)
class Rollout:
    """A rollout: its spec, where it is (phase, step, the candidate's weight), every verdict with
    its evidence, and its events. ``compat`` and ``plan``: what `apply` answered at the start."""

    id: int
    model: str
    phase: str
    candidate: int | None
    champion: int | None
    weight: float
    step_index: int
    steps: list[float]
    message: str
    active: bool
    spec: dict[str, Any]
    status: dict[str, Any]
    analyses: list[Analysis]
    events: Events
    compat: Compat | None = None
    plan: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], started: Mapping[str, Any] | None = None) -> Rollout:
        status, spec = as_dict(data.get("status")), as_dict(data.get("spec"))
        compat = (started or {}).get("compat")
        return cls(id=int(data["id"]), model=data["model"], phase=str(status.get("phase", "")),
                   candidate=status.get("candidate_version"), champion=status.get("champion_version"),
                   weight=float(status.get("weight") or 0.0), step_index=int(status.get("step_index", -1)),
                   steps=list(as_dict(spec.get("canary")).get("steps") or []), message=str(status.get("message", "")),
                   active=bool(data.get("active")), spec=spec, status=status,
                   analyses=[Analysis.from_json(a) for a in data.get("analyses") or []],
                   events=Events(Event.from_json(e) for e in data.get("events") or []),
                   compat=Compat.from_json(compat) if isinstance(compat, Mapping) else None,
                   plan=list((started or {}).get("plan") or []), raw=dict(data))

    @property
    def ended(self) -> bool:
        """True once it moves no more: promoted, rolled back, aborted or failed."""
        return self.phase in ENDED_PHASES

    @property
    def promoted(self) -> bool:
        return self.phase == "promoted"

    @property
    def step(self) -> str:
        """``2/4`` during the canary's second of four steps, ``-`` outside the canary."""
        return f"{self.step_index + 1}/{len(self.steps)}" if self.step_index >= 0 and self.steps else "-"

    def _title(self) -> str:
        return f"{self.model} rollout {self.id}: v{self.candidate} against v{self.champion}"

    def _verdict_rows(self) -> list[list[Any]]:
        return [[when(a.at), a.kind, a.outcome, "; ".join(a.reasons)] for a in self.analyses]

    def __repr__(self) -> str:
        lines = [f"<Rollout {self._title()}: {self.phase}, step {self.step}, weight {self.weight:g}%"
                 + (f" — {self.message}" if self.message else "") + ">"]
        lines += [f"  {a.kind}: {a.outcome}" + (f" — {'; '.join(a.reasons)}" if a.reasons else "")
                  for a in self.analyses[-8:]]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        parts = [html_table(["phase", "step", "weight", "message"],
                            [[self.phase, self.step, f"{self.weight:g}%", self.message]], caption=self._title())]
        if self.analyses:
            parts.append(html_table(["when", "kind", "outcome", "evidence"], self._verdict_rows(), caption="verdicts"))
        return "".join(parts)


@dataclass(frozen=True)
class RolloutCommand:
    """An operator's command (pause, resume, abort, promote) written for the controller to act on."""

    model: str
    rollout: int
    command: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutCommand:
        return cls(data["model"], int(data["rollout"]), data["command"], dict(data))


@dataclass(frozen=True)
class Rollback:
    """A rollback: of the running ``rollout`` (the controller sends traffic back), or, with none
    running, champion moved from ``previous`` to ``champion`` at once."""

    model: str
    rollout: int | None
    champion: int | None
    previous: int | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rollback:
        return cls(data["model"], data.get("rollout"), data.get("champion"), data.get("previous"), dict(data))

    def __repr__(self) -> str:
        if self.rollout is not None:
            return f"<Rollback {self.model}: rolling back rollout {self.rollout}>"
        return f"<Rollback {self.model}: champion v{self.previous} → v{self.champion}>"
