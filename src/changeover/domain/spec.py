"""The rollout spec: what was asked of a rollout, parsed from YAML and validated.

Every mistake in a spec is reported at once, each with the path of the field it concerns
(``canary.steps[2]``), so a person can fix a spec in one pass. Durations are written the way
people write them (``30s``, ``10m``, ``1h30m``) and stored as float seconds.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "CanarySpec",
    "Ceiling",
    "ErrorRateJudge",
    "GuardsSpec",
    "GateSpec",
    "InterleaveSpec",
    "JudgeSpec",
    "LabelAccuracyJudge",
    "LatencyJudge",
    "Override",
    "RankingJudge",
    "RegressionJudge",
    "Requirement",
    "RewardJudge",
    "RolloutSpec",
    "ShadowSpec",
    "ShadowUntil",
    "SpecError",
    "WatchSpec",
    "format_duration",
    "load_spec_text",
    "parse_duration",
    "parse_spec",
]

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_KEY = re.compile(r"^(header|input):([A-Za-z0-9_.\-]+)$", re.IGNORECASE)


class SpecError(ValueError):
    """A rollout spec that cannot be used; ``problems`` lists every (field path, reason)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        count = len(self.problems)
        lines = [f"invalid rollout spec ({count} problem{'s' if count != 1 else ''}):"]
        lines += [f"  {path}: {reason}" if path else f"  {reason}" for path, reason in self.problems]
        return "\n".join(lines)


def parse_duration(value: object) -> float:
    """Seconds in ``30s``, ``10m``, ``1h``, ``1d``, ``1h30m``, ``500ms`` or a plain number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parse_units(text)
    else:
        raise ValueError(f"not a duration: {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {value!r}")
    return seconds


def _parse_units(text: str) -> float:
    order = list(_UNITS)
    seconds, position, last = 0.0, 0, -1
    for match in _PART.finditer(text):
        rank = order.index(match.group(2))
        if match.start() != position or rank <= last:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position, last = match.end(), rank
    else:
        if position == len(text):
            return seconds
    raise ValueError(f"not a duration: {text!r}")


def format_duration(seconds: float) -> str:
    """The short human form of a number of seconds: 5400 -> ``1h30m``, 0.5 -> ``500ms``."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms" if seconds else "0s"
    parts, rest = [], seconds
    for unit in ("d", "h", "m"):
        count, rest = divmod(rest, _UNITS[unit])
        if count:
            parts.append(f"{int(count)}{unit}")
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)


def _duration(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        raise PydanticCustomError(
            "duration", "not a duration: {value} (write e.g. 30s, 10m, 1h30m, or seconds)",
            {"value": repr(value)},
        ) from None


def _text(value: object) -> object:
    # YAML reads `candidate: 7` as a number; a version number is a name here.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _key(value: object, what: str) -> object:
    if not isinstance(value, str):
        return value
    match = _KEY.match(value)
    if match is None:
        raise PydanticCustomError("key", "{what} must be header:NAME or input:NAME, not {value}",
                                  {"what": what, "value": repr(value)})
    source, name = match.group(1).lower(), match.group(2)
    # Header names are case-insensitive, and ASGI hands them over lower-cased.
    return f"{source}:{name.lower() if source == 'header' else name}"


Duration = Annotated[float, BeforeValidator(_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]
Text = Annotated[str, BeforeValidator(_text), Field(min_length=1)]
Version = Literal["candidate", "champion"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Requirement(_Model):
    """One bound on one metric: ``{min: x}``, ``{max: x}``, ``{not_worse_than: champion}``..."""

    min: float | None = None
    max: float | None = None
    not_worse_than: Text | None = None
    better_than: Text | None = None
    margin: float | None = Field(default=None, ge=0)
    per_segment: bool | None = None  # gate only: every check also binds each segment of gate.segment

    @model_validator(mode="after")
    def _one_bound(self) -> Requirement:
        compared = self.not_worse_than is not None or self.better_than is not None
        if self.margin is not None and not compared:
            raise ValueError("margin needs not_worse_than or better_than")
        if self.min is None and self.max is None and not compared:
            raise ValueError("a requirement needs min, max, not_worse_than or better_than")
        if self.not_worse_than is not None and self.better_than is not None:
            raise ValueError("use not_worse_than or better_than, not both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class GateSpec(_Model):
    """The offline gate: candidate and champion scored on the same data."""

    data: Text
    task: Literal["classification", "regression", "ranking"]
    target: Text = "label"
    query_column: Text | None = None
    ks: list[Annotated[int, Field(gt=0)]] = Field(default=[5, 10], min_length=1)
    require: dict[str, Requirement] = {}
    segment: Text | None = None  # a column of the data: every metric broken down by its values


class ShadowUntil(_Model):
    """When a shadow has seen enough: a number of requests, or a time, whichever comes first."""

    requests: int | None = Field(default=None, gt=0)
    or_after: PositiveDuration | None = None

    @model_validator(mode="after")
    def _some_end(self) -> ShadowUntil:
        if self.requests is None and self.or_after is None:
            raise ValueError("until needs requests, or_after, or both")
        return self


class ShadowSpec(_Model):
    """Mirror a sample of live requests to the candidate; its answers are compared, never served."""

    sample: float = Field(gt=0, le=1)
    until: ShadowUntil
    require: dict[str, Requirement] = {}
    segment: str | None = None
    timeout: PositiveDuration = 1.0

    @field_validator("segment", mode="before")
    @classmethod
    def _segment(cls, value: object) -> object:
        return _key(value, "segment")


Alpha = Annotated[float, Field(gt=0, lt=1)]


class InterleaveSpec(_Model):
    """Team-draft interleaving of the champion's and the candidate's rankings (rankers only):
    ``sample`` of the requests (sticky by the canary's sticky key when a request has one) see
    one list merged from both, ``k`` items long; clicks are credited to the side that
    contributed the item. It fails as soon as the champion is confidently preferred by more
    than ``tolerance`` (a share of decided requests above one half), and passes once ``until``
    is reached with that excluded; an inconclusive end follows ``canary.on_inconclusive``
    (pause without a canary)."""

    sample: float = Field(default=0.1, gt=0, le=1)
    k: int = Field(default=10, gt=0, le=1000)
    until: ShadowUntil
    tolerance: float = Field(default=0.05, ge=0, lt=0.5)
    alpha: Alpha = 0.05
    min_decided: int = Field(default=100, ge=0)
    timeout: PositiveDuration = 1.0


class ErrorRateJudge(_Model):
    """Fail when the candidate's error rate is confidently above the champion's by more than
    this; pass once the evidence excludes such an increase."""

    max_increase: float = Field(default=0.002, gt=0)
    alpha: Alpha = 0.05


class LatencyJudge(_Model):
    """The candidate's p99 latency against this multiple of the champion's p99."""

    max_ratio: float = Field(default=1.2, gt=1)
    alpha: Alpha = 0.05


class LabelAccuracyJudge(_Model):
    """Accuracy on feedback labels (a classifier); labels arrive up to ``label_delay`` after
    a request. ``sequential: false`` reads a fixed-horizon interval once per bake instead."""

    sequential: bool = True
    alpha: Alpha = 0.05
    max_decrease: float = Field(default=0.01, gt=0)
    label_delay: Duration = 0.0


class RegressionJudge(_Model):
    """A regressor's error on feedback labels (MAE, or RMSE): at most ``max_increase`` in the
    label's unit, or at most ``max_ratio`` times the champion's."""

    max_increase: float | None = Field(default=None, gt=0)
    max_ratio: float | None = Field(default=None, gt=1)
    alpha: Alpha = 0.05

    @model_validator(mode="after")
    def _one_tolerance(self) -> RegressionJudge:
        if self.max_increase is not None and self.max_ratio is not None:
            raise ValueError("give max_increase or max_ratio, not both")
        if self.max_increase is None and self.max_ratio is None:
            object.__setattr__(self, "max_ratio", 1.05)
        return self


class RewardJudge(_Model):
    """The mean reward per rewarded request (clicks, revenue, conversion): at most
    ``max_decrease`` below the champion's (reward units), or ``max_relative_decrease`` of it;
    rewards above ``cap`` count as the cap (heavy tails)."""

    max_decrease: float | None = Field(default=None, gt=0)
    max_relative_decrease: float | None = Field(default=None, gt=0, lt=1)
    cap: float | None = None
    alpha: Alpha = 0.05

    @model_validator(mode="after")
    def _one_tolerance(self) -> RewardJudge:
        if self.max_decrease is not None and self.max_relative_decrease is not None:
            raise ValueError("give max_decrease or max_relative_decrease, not both")
        if self.max_decrease is None and self.max_relative_decrease is None:
            object.__setattr__(self, "max_relative_decrease", 0.05)
        return self


RANKING_METRICS = tuple(f"{m}_at_{k}" for k in (5, 10) for m in ("precision", "recall", "ndcg", "ctr", "hit")) + ("mrr",)


class RankingJudge(_Model):
    """A ranker's online quality on ranking feedback (clicked or relevant item ids per
    request): ``metric`` (default ``ndcg_at_10``) at most ``max_decrease`` below the
    champion's, or ``max_relative_decrease`` of it (default 0.05)."""

    metric: str = "ndcg_at_10"
    max_decrease: float | None = Field(default=None, gt=0)
    max_relative_decrease: float | None = Field(default=None, gt=0, lt=1)
    alpha: Alpha = 0.05

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in RANKING_METRICS:
            raise ValueError(f"unknown ranking metric {value!r}; known: {', '.join(RANKING_METRICS)}")
        return value

    @model_validator(mode="after")
    def _one_tolerance(self) -> RankingJudge:
        if self.max_decrease is not None and self.max_relative_decrease is not None:
            raise ValueError("give max_decrease or max_relative_decrease, not both")
        if self.max_decrease is None and self.max_relative_decrease is None:
            object.__setattr__(self, "max_relative_decrease", 0.05)
        return self


class Ceiling(_Model):
    """An absolute bound on the candidate alone."""

    max: float = Field(gt=0)
    alpha: Alpha = 0.05


class GuardsSpec(_Model):
    """Absolute guards: the candidate's own error rate (a share) or p99 latency (ms)
    confidently above these fails, whatever the champion does."""

    error_rate: Ceiling | None = None
    latency_p99_ms: Ceiling | None = None

    @field_validator("error_rate")
    @classmethod
    def _share(cls, value: Ceiling | None) -> Ceiling | None:
        if value is not None and value.max >= 1:
            raise ValueError("an error-rate ceiling is a share below 1 (0.05 is 5%)")
        return value


class JudgeSpec(_Model):
    """How a canary is judged: candidate against champion over the same windows, at every
    window. Leave a criterion out with ``null``. ``reward`` (and, for a ranker, ``ranking``)
    is judged by default once feedback carries rewards (ranking feedback); ``null`` turns
    that off."""

    error_rate: ErrorRateJudge | None = ErrorRateJudge()
    latency_p99_ms: LatencyJudge | None = LatencyJudge()
    label_accuracy: LabelAccuracyJudge | None = None
    mae: RegressionJudge | None = None
    rmse: RegressionJudge | None = None
    reward: RewardJudge | None = None
    ranking: RankingJudge | None = None
    guards: GuardsSpec = GuardsSpec()
    min_requests: int = Field(default=100, ge=0)
    min_labels: int = Field(default=100, ge=0)
    power: float = Field(default=0.8, gt=0, lt=1)
    label_delay: Duration = 0.0

    @property
    def reward_by_default(self) -> bool:
        """True when the spec did not name reward: it is judged once rewards arrive."""
        return "reward" not in self.model_fields_set

    @property
    def ranking_by_default(self) -> bool:
        """True when the spec did not name ranking: NDCG@10 is judged once ranking feedback
        arrives."""
        return "ranking" not in self.model_fields_set

    @property
    def labels_delay(self) -> float:
        """How long labels take to arrive: the longest delay the spec gives."""
        own = self.label_accuracy.label_delay if self.label_accuracy else 0.0
        return max(self.label_delay, own)


class Override(_Model):
    """Pin some requests to one version: by a header value, or by sticky keys. Or, with
    ``route_header: true``, let the ``x-changeover-route`` header pick the champion or the
    candidate (for every request, or only those whose ``header`` has ``value``)."""

    header: str | None = None
    value: Text | None = None
    keys: list[Text] | None = None
    version: Version | None = None
    route_header: bool = False

    @field_validator("header", mode="before")
    @classmethod
    def _header(cls, value: object) -> object:
        if isinstance(value, str) and not re.fullmatch(r"[A-Za-z0-9_\-]+", value):
            raise ValueError(f"not a header name: {value!r}")
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_form(self) -> Override:
        if self.route_header:
            if self.keys is not None or self.version is not None:
                raise ValueError("route_header lets the request's header choose: no keys and no version")
            if (self.header is None) != (self.value is None):
                raise ValueError("route_header may be limited by header and value, given together")
            return self
        if self.version is None:
            raise ValueError("an override needs the version it pins: candidate or champion")
        if (self.header is None) == (self.keys is None):
            raise ValueError("an override has either header and value, or keys")
        if self.header is not None and self.value is None:
            raise ValueError("a header override needs a value")
        if self.keys is not None and self.value is not None:
            raise ValueError("value goes with header, not with keys")
        if self.keys is not None and not self.keys:
            raise ValueError("keys must not be empty")
        return self


class CanarySpec(_Model):
    """Live traffic in steps: each step sets the candidate's weight, bakes, then is judged."""

    sticky_key: str = "header:x-changeover-key"
    steps: list[Annotated[float, Field(gt=0, le=100)]] = Field(
        default=[1.0, 5.0, 25.0, 50.0], min_length=1
    )
    bake: PositiveDuration = 600.0
    max_extensions: int = Field(default=3, ge=0)
    judge: JudgeSpec = JudgeSpec()
    overrides: list[Override] = []
    on_inconclusive: Literal["rollback", "pause"] = "rollback"
    max_bake: PositiveDuration | None = None

    @field_validator("sticky_key", mode="before")
    @classmethod
    def _sticky_key(cls, value: object) -> object:
        return _key(value, "sticky_key")

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[float]) -> list[float]:
        for index in range(1, len(steps)):
            if steps[index] <= steps[index - 1]:
                raise PydanticCustomError(
                    "steps_order", "steps must increase: {step} after {previous}",
                    {"step": f"{steps[index]:g}", "previous": f"{steps[index - 1]:g}",
                     "at": (index,)},
                )
        return steps


def _watch(value: object) -> object:
    # `watch: 1h` is the short form of `watch: {duration: 1h}`
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return {"duration": value}
    return value


class WatchSpec(_Model):
    """After promotion: ``holdback`` percent of traffic (sticky) stays on the old champion so
    the watch compares the same hours; with ``holdback: 0`` only the guards can roll back."""

    duration: Duration = 3600.0
    holdback: float = Field(default=2.0, ge=0, lt=50)
    guards: GuardsSpec = GuardsSpec()


class RolloutSpec(_Model):
    """The whole road of one rollout, as a person asked for it."""

    model: Text
    candidate: Text
    champion: Text = "champion"
    gate: GateSpec | None = None
    shadow: ShadowSpec | None = None
    interleave: InterleaveSpec | None = None
    canary: CanarySpec | None = None
    promote: Literal["auto", "manual"] = "auto"
    watch: Annotated[WatchSpec, BeforeValidator(_watch)] = WatchSpec()

    @model_validator(mode="after")
    def _distinct(self) -> RolloutSpec:
        if self.candidate == self.champion:
            raise PydanticCustomError("same_version", "candidate and champion are both {name}",
                                      {"name": repr(self.candidate), "at": ("candidate",)})
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: durations in seconds; ``parse_spec(spec.to_dict()) == spec``."""
        return self.model_dump(mode="json")


def parse_spec(data: object) -> RolloutSpec:
    """Validate a mapping (as read from YAML or JSON) into a spec, or raise ``SpecError``."""
    if not isinstance(data, Mapping):
        got = "nothing" if data is None else f"a {type(data).__name__}"
        raise SpecError([("", f"a rollout spec must be a mapping, got {got}")])
    try:
        return RolloutSpec.model_validate(dict(data))
    except ValidationError as error:
        raise SpecError([_problem(item) for item in error.errors()]) from None


def load_spec_text(text: str) -> RolloutSpec:
    """Parse a rollout spec from YAML text, or raise ``SpecError``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(error, "problem", None) or str(error)
        raise SpecError([("", f"not valid YAML: {reason}{where}")]) from None
    return parse_spec(data)


def _problem(item: Any) -> tuple[str, str]:
    loc = tuple(item["loc"]) + tuple((item.get("ctx") or {}).get("at", ()))
    kind, message = item["type"], item["msg"]
    if kind == "extra_forbidden":
        hint = _did_you_mean(loc)
        message = "unknown field" + (f" (did you mean {hint!r}?)" if hint else "")
    elif kind == "missing":
        message = "required"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"must be a mapping, got {_kind(item.get('input'))}"
    elif kind == "list_type":
        message = f"must be a list, got {_kind(item.get('input'))}"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
    return _path(loc), message


def _kind(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _did_you_mean(loc: tuple[Any, ...]) -> str | None:
    """The field a person most likely meant by the unknown field at ``loc``: a close name at
    the same level (its bare name), else the same name — or a close one — elsewhere in the spec
    (its whole path, e.g. ``canary.judge.min_requests`` for ``canary.min_requests``), nearest
    to where it was written first."""
    name, parent = str(loc[-1]), loc[:-1]
    close = difflib.get_close_matches(name, _fields_at(parent), n=1)
    if close:
        return close[0]
    where = _path(parent)
    elsewhere = [path for path in _all_paths(RolloutSpec) if path != where]

    def nearness(path: str) -> tuple[int, int]:  # more leading parts shared with where it was written, then shorter
        shared = 0
        for a, b in zip(path.split(".")[:-1], where.split("."), strict=False):
            if a != b:
                break
            shared += 1
        return -shared, path.count(".")

    same = sorted((p for p in elsewhere if p.rsplit(".", 1)[-1] == name), key=nearness)
    if same:
        return same[0]
    leaves = {p.rsplit(".", 1)[-1]: p for p in sorted(elsewhere, key=nearness, reverse=True)}
    close = difflib.get_close_matches(name, list(leaves), n=1, cutoff=0.8)
    return leaves[close[0]] if close else None


def _all_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field path of ``model`` through nested models (not into lists or mappings, whose
    keys or indexes are the user's)."""
    out: list[str] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        out.append(path)
        inner = _unwrap(field.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out += _all_paths(inner, path)
    return out


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found at ``loc``, for "did you mean" hints."""
    annotation: Any = RolloutSpec
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        elif typing.get_origin(annotation) in (list, dict):
            annotation = typing.get_args(annotation)[-1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        else:
            return annotation
