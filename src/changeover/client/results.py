"""What the client's calls answer: typed, immutable views of the server's JSON. Each keeps the
whole answer in ``raw`` (what ``--json`` prints), a short ``repr`` for a terminal, and, where a
table helps, ``_repr_html_`` for a notebook (status, events, gate, rollout, shadow report)."""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from changeover.client.tables import fmt, html_table, text_table

__all__ = [
    "AliasMove", "Compat", "Feedback", "GateResult", "GateRule", "Inference", "Model", "ModelStatus", "Policy",
    "Shadow", "ShadowReport", "Status", "Version",
]

def as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Version:
    """One immutable artifact of a model. ``created`` (a push's answer only): false when the same
    bytes were already stored, as this version."""

    model: str
    version: int
    runtime: str
    sha256: str
    labels: dict[str, str]
    aliases: list[str]
    signature: dict[str, Any]
    task: str | None
    trusted: bool
    source: str | None
    created_at: float | None
    gate: dict[str, Any] | None
    created: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Version:
        return cls(model=data["model"], version=int(data["version"]), runtime=data["runtime"],
                   sha256=data["sha256"], labels=dict(data.get("labels") or {}), aliases=list(data.get("aliases") or []),
                   signature=as_dict(data.get("signature")), task=data.get("task"), trusted=bool(data.get("trusted")),
                   source=data.get("source"), created_at=data.get("created_at"), gate=data.get("gate"),
                   created=data.get("created"), raw=dict(data))

    def __repr__(self) -> str:
        aliases = f" [{', '.join(self.aliases)}]" if self.aliases else ""
        return f"<Version {self.model} v{self.version} {self.runtime}{aliases} sha256 {self.sha256[:12]}>"


@dataclass(frozen=True)
class Policy:
    """A model's traffic policy: the champion, the candidates' percents, shadows; numbered by generation."""

    generation: int
    champion: int | None
    weights: dict[int, float]
    shadows: list[dict[str, Any]]
    sticky_key: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        return cls(generation=int(data.get("generation") or 0), champion=data.get("champion"),
                   weights={int(k): float(v) for k, v in (data.get("weights") or {}).items()},
                   shadows=list(data.get("shadows") or []), sticky_key=data.get("sticky_key"), raw=dict(data))

    @property
    def traffic(self) -> dict[int, float]:
        """Percent of live traffic per version: the candidates' weights, the champion the rest."""
        out = {self.champion: 100.0 - sum(self.weights.values())} if self.champion is not None else {}
        return out | self.weights

    def describe(self) -> str:
        return ", ".join(f"v{v}: {w:g}%" for v, w in self.traffic.items()) or "-"


@dataclass(frozen=True)
class Model:
    """One model: its versions, aliases, alias history and traffic policy."""

    model: str
    versions: list[Version]
    aliases: dict[str, int]
    alias_history: list[dict[str, Any]]
    policy: Policy | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Model:
        policy = data.get("policy")
        return cls(model=data["model"], versions=[Version.from_json(v) for v in data.get("versions") or []],
                   aliases=dict(data.get("aliases") or {}), alias_history=list(data.get("alias_history") or []),
                   policy=Policy.from_json(policy) if policy else None, raw=dict(data))

    def __repr__(self) -> str:
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(self.aliases.items())) or "no aliases"
        return f"<Model {self.model}: {len(self.versions)} versions, {aliases}>"


@dataclass(frozen=True)
class AliasMove:
    """An alias moved: where it points now and where it pointed before (None: it was new)."""

    model: str
    alias: str
    version: int
    previous: int | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AliasMove:
        return cls(data["model"], data["alias"], int(data["version"]), data.get("previous"), dict(data))

    def __repr__(self) -> str:
        was = f"v{self.previous} → " if self.previous is not None else ""
        return f"<AliasMove {self.model} {self.alias}: {was}v{self.version}>"


@dataclass(frozen=True)
class Compat:
    """The compatibility step: signature changes and a replay of recorded production requests."""

    model: str
    candidate: int
    against: int | None
    verdict: str
    causes: list[str]
    changes: list[dict[str, Any]]
    replay: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Compat:
        return cls(model=data.get("model", ""), candidate=int(data.get("candidate") or 0), against=data.get("against"),
                   verdict=data.get("verdict", ""), causes=list(data.get("causes") or []),
                   changes=list(data.get("changes") or []), replay=as_dict(data.get("replay")), raw=dict(data))

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def __repr__(self) -> str:
        causes = f" — {'; '.join(self.causes)}" if self.causes else ""
        return f"<Compat {self.model} v{self.candidate} against v{self.against}: {self.verdict}{causes}>"


@dataclass(frozen=True)
class GateRule:
    """One rule of the gate: its figure, interval, and why it passed or failed."""

    metric: str
    rule: str
    figure: float | None
    interval: tuple[float, float] | None
    passed: bool
    reason: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateRule:
        interval = data.get("interval")
        return cls(metric=str(data.get("metric")), rule=str(data.get("rule")), figure=data.get("figure"),
                   interval=(interval[0], interval[1]) if interval else None, passed=bool(data.get("passed")),
                   reason=str(data.get("reason", "")))


def _interval(low: Any, high: Any) -> str:
    return f"[{fmt(low)}, {fmt(high)}]" if low is not None else "-"


@dataclass(frozen=True)
class GateResult:
    """The offline gate: candidate against champion on the same data, each metric with its
    paired interval, each rule with its reason. ``html``: the report, when asked for."""

    model: str
    candidate: int
    against: int | None
    verdict: str
    task: str
    n_rows: int
    metrics: dict[str, dict[str, Any]]
    rules: list[GateRule]
    notes: list[str]
    html: str | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], html: str | None = None) -> GateResult:
        return cls(model=data["model"], candidate=int(data["candidate"]), against=data.get("against"),
                   verdict=data["verdict"], task=data.get("task", ""), n_rows=int(data.get("n_rows") or 0),
                   metrics={k: as_dict(v) for k, v in (data.get("metrics") or {}).items()},
                   rules=[GateRule.from_json(r) for r in data.get("rules") or []], notes=list(data.get("notes") or []),
                   html=html, raw=dict(data))

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def save_report(self, path: str | Path) -> Path:
        """Write the HTML report (asked for with ``validate(..., report=True)``) to ``path``."""
        if not self.html:
            raise ValueError("no report: call validate(..., report=True)")
        target = Path(path)
        target.write_text(self.html)
        return target

    def _metric_rows(self) -> list[list[Any]]:
        return [[name, m.get("candidate"), m.get("champion"), m.get("diff"), _interval(m.get("ci_low"), m.get("ci_high"))]
                for name, m in self.metrics.items()]

    def _rule_rows(self) -> list[list[Any]]:
        return [[r.rule, r.figure, _interval(*r.interval) if r.interval else "-", r.passed, r.reason] for r in self.rules]

    def _title(self) -> str:
        against = f"v{self.against}" if self.against is not None else "no champion"
        return f"{self.model} v{self.candidate} against {against}: offline gate on {self.n_rows} rows — {self.verdict}"

    def __repr__(self) -> str:
        passed = sum(r.passed for r in self.rules)
        lines = [f"<GateResult {self._title()} ({passed}/{len(self.rules)} rules passed)>"]
        lines += [f"  {'✓' if r.passed else '✗'} {r.reason}" for r in self.rules]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        against = f"v{self.against}" if self.against is not None else "no champion"
        parts = [html_table(["metric", f"v{self.candidate}", against, "difference", "interval"], self._metric_rows(),
                            caption=self._title())]
        if self.rules:
            parts.append(html_table(["rule", "figure", "interval", "passed", "why"], self._rule_rows(), caption="rules"))
        parts += [f"<p>note: {_esc(n)}</p>" for n in self.notes]
        return "".join(parts)


def _esc(text: Any) -> str:
    return html.escape(str(text))


@dataclass(frozen=True)
class Shadow:
    """A shadow: a version mirrored a share of live traffic, its answers never reaching a user."""

    model: str
    version: int
    active: bool
    sample: float
    started_at: float | None
    stopped_at: float | None
    verdict: dict[str, Any] | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, model: str, data: Mapping[str, Any]) -> Shadow:
        return cls(model=data.get("model", model), version=int(data["version"]), active=bool(data.get("active")),
                   sample=float(data.get("sample") or 0.0), started_at=data.get("started_at"),
                   stopped_at=data.get("stopped_at"), verdict=data.get("verdict"), raw=dict(data))

    def __repr__(self) -> str:
        state = "active" if self.active else "stopped"
        verdict = f", verdict {self.verdict.get('verdict')}" if self.verdict else ""
        return f"<Shadow {self.model} v{self.version} at sample {self.sample:g}: {state}{verdict}>"


@dataclass(frozen=True)
class ShadowReport:
    """How a shadow's answers compare with the champion's: ``figures`` (overall, per segment,
    online), and the ``verdict`` of its requirements when it has some."""

    model: str
    shadow: Shadow
    figures: dict[str, Any]
    verdict: dict[str, Any] | None
    html: str | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShadowReport:
        return cls(model=data["model"], shadow=Shadow.from_json(data["model"], data["shadow"]),
                   figures=as_dict(data.get("figures")), verdict=data.get("verdict"), html=data.get("html"), raw=dict(data))

    @property
    def overall(self) -> dict[str, Any]:
        return as_dict(self.figures.get("overall"))

    def _rows(self) -> list[list[Any]]:
        return [[k, v] for k, v in self.overall.items() if not isinstance(v, dict | list)]

    def __repr__(self) -> str:
        o = self.overall
        verdict = (self.verdict or {}).get("verdict", "not judged")
        return (f"<ShadowReport {self.model} v{self.shadow.version}: {o.get('pairs', 0)} pairs, "
                f"{o.get('compared', 0)} compared; verdict {verdict}>")

    def _repr_html_(self) -> str:
        parts = [html_table(["figure", "value"], self._rows(), caption=f"{self.model}: shadow v{self.shadow.version}")]
        checks = (self.verdict or {}).get("checks") or []
        if self.verdict:
            parts.append(html_table(["passed", "why"], [[bool(c.get("passed")), c.get("reason")] for c in checks],
                                    caption=f"verdict: {self.verdict.get('verdict')}"))
        return "".join(parts)


@dataclass(frozen=True)
class ModelStatus:
    model: str
    versions: int
    aliases: dict[str, int]
    policy: Policy | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelStatus:
        policy = data.get("policy")
        return cls(data["model"], int(data.get("versions") or 0), dict(data.get("aliases") or {}),
                   Policy.from_json(policy) if policy else None)

    @property
    def champion(self) -> int | None:
        return self.aliases.get("champion")


_STATUS_HEADER = ["model", "versions", "aliases", "generation", "traffic"]


@dataclass(frozen=True)
class Status:
    """Every model: aliases, versions, traffic; and the answering replica's gateway and controller."""

    models: list[ModelStatus]
    gateway: dict[str, Any]
    controller: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Status:
        return cls([ModelStatus.from_json(m) for m in data.get("models") or []], as_dict(data.get("gateway")),
                   as_dict(data.get("controller")), dict(data))

    def __getitem__(self, model: str) -> ModelStatus:
        for m in self.models:
            if m.model == model:
                return m
        raise KeyError(model)

    def __iter__(self) -> Iterator[ModelStatus]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def _rows(self) -> list[list[Any]]:
        return [[m.model, m.versions, ", ".join(f"{a}=v{v}" for a, v in sorted(m.aliases.items())),
                 m.policy.generation if m.policy else "-", m.policy.describe() if m.policy else "-"]
                for m in self.models]

    def __repr__(self) -> str:
        return text_table(_STATUS_HEADER, self._rows()) if self.models else "(no models)"

    def _repr_html_(self) -> str:
        return html_table(_STATUS_HEADER, self._rows(), caption=f"{len(self.models)} models")


@dataclass(frozen=True)
class Inference:
    """An answer of the data plane: its outputs, the request id (to send feedback for) and the
    version that served it."""

    model: str
    version: int | None
    request_id: str | None
    outputs: list[dict[str, Any]]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def output(self, name: str | None = None) -> list[Any]:
        """The data of one output (the first when ``name`` is None)."""
        for o in self.outputs:
            if name is None or o.get("name") == name:
                return list(o.get("data") or [])
        raise KeyError(name)


@dataclass(frozen=True)
class Feedback:
    """Feedback joined to a served request: ``accepted``, or ``duplicate`` (the first is kept)."""

    request_id: str
    status: str
    relevant_not_served: int | None = None
    kept: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Feedback:
        return cls(data["request_id"], data["status"], data.get("relevant_not_served"), data.get("kept"), dict(data))

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

