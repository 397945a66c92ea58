"""Gate rules (`gate.require` in a rollout spec): validation and pure evaluation.

A rule maps a metric name to one or more checks:

- `{min: x}` / `{max: x}`: the candidate's value (a point estimate) is >= x / <= x.
- `{not_worse_than: champion, margin: m}`: the bound of the confidence interval of
  candidate - champion in the bad direction may not go past m in that direction
  (higher is better: ci_low >= -m; lower is better: ci_high <= m). margin defaults to 0.
- `{better_than: champion, margin: m}`: the whole interval lies on the good side of m: the
  candidate is better by at least m (higher is better: ci_low > m; lower is better: ci_high < -m).
  margin defaults to 0 (better at all).
- `per_segment: true` (with any of the above): every check of the rule also binds each
  segment of the gate's segment column, one result per segment: "no segment worse than the
  champion by more than the margin". A segment where the metric is undefined for both versions
  (no relevant item, a single class) has nothing to compare: its check passes and says so.

Relative checks fail, with a reason, when there is no champion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from changeover.evaluation.bootstrap import Interval
from changeover.evaluation.metrics import (
    CLASSIFICATION_PROBA_METRICS,
    LATENCY_METRICS,
    higher_is_better,
    metric_names,
)

__all__ = [
    "RULE_KEYS",
    "MetricComparison",
    "RuleResult",
    "RulesError",
    "compare_metrics",
    "evaluate_rules",
    "referenced_ks",
    "validate_rules",
    "verdict",
]

RULE_KEYS = ("min", "max", "not_worse_than", "better_than", "margin", "per_segment")
_CHECK_ORDER = ("min", "max", "not_worse_than", "better_than")


class RulesError(ValueError):
    """`gate.require` is malformed; the message names each bad metric and key."""


@dataclass(frozen=True)
class MetricComparison:
    """One metric for both versions; diff and interval are candidate - champion."""

    name: str
    champion: float | None
    candidate: float
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    higher_is_better: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "champion": _json_float(self.champion),
            "candidate": _json_float(self.candidate),
            "diff": _json_float(self.diff),
            "ci_low": _json_float(self.ci_low),
            "ci_high": _json_float(self.ci_high),
            "higher_is_better": self.higher_is_better,
        }


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one check of one rule."""

    metric: str
    kind: str  # min | max | not_worse_than | better_than
    rule: str  # the check, as a person reads it
    threshold: float | None  # the min/max bound, or the margin
    figure: float | None  # the candidate's value (min/max) or the difference (relative)
    interval: tuple[float, float] | None  # of the difference, for relative checks
    passed: bool
    reason: str
    segment: str | None = None  # the segment this check binds (per_segment rules); None: all the data

    def to_dict(self) -> dict[str, Any]:
        out = {
            "metric": self.metric,
            "kind": self.kind,
            "rule": self.rule,
            "threshold": _json_float(self.threshold),
            "figure": _json_float(self.figure),
            "interval": None
            if self.interval is None
            else [_json_float(self.interval[0]), _json_float(self.interval[1])],
            "passed": self.passed,
            "reason": self.reason,
        }
        if self.segment is not None:
            out["segment"] = self.segment
        return out


def _json_float(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _is_number(x: Any) -> TypeGuard[float]:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def compare_metrics(
    point: dict[str, dict[str, float]],
    intervals: Mapping[str, Interval],
    task: str,
    ks: Sequence[int],
) -> dict[str, MetricComparison]:
    """Each metric of ``task`` the candidate has, against the champion's, with the interval of
    candidate - champion."""
    cand, champ = point["candidate"], point.get("champion")
    out: dict[str, MetricComparison] = {}
    for name in metric_names(task, ks):
        if name not in cand:
            continue
        ch = None if champ is None else champ.get(name)
        ci = intervals.get(name)
        out[name] = MetricComparison(
            name=name,
            champion=ch,
            candidate=cand[name],
            diff=None if ch is None else cand[name] - ch,
            ci_low=None if ci is None else ci.low,
            ci_high=None if ci is None else ci.high,
            higher_is_better=higher_is_better(name),
        )
    return out


def referenced_ks(require: Mapping[str, Any] | None) -> set[int]:
    """The k of every `<metric>_at_<k>` name in the rules (so the gate computes them)."""
    ks: set[int] = set()
    for name in require or {}:
        head, sep, tail = str(name).rpartition("_at_")
        if sep and head and tail.isdigit() and int(tail) > 0:
            ks.add(int(tail))
    return ks


def validate_rules(require: Mapping[str, Any] | None, task: str, ks: Sequence[int], *,
                   segmented: bool | None = None) -> None:
    """Raise RulesError listing every unknown metric, unknown key or bad value.

    Ranking names are accepted for any k >= 1 (`ndcg_at_20` with ks (5, 10)): `run_gate`
    computes every k the rules name as well as `ks`. ``segmented`` says whether the gate has a
    segment column (None: not known yet): a ``per_segment`` rule needs one.
    """
    if require is None:
        return
    if not isinstance(require, Mapping):
        raise RulesError(f"gate.require must be a mapping of metric -> rule, not {require!r}")
    try:
        # any k named in a ranking rule is fine: run_gate adds it to the ks it computes
        extra = referenced_ks(require) if task == "ranking" else set()
        known = set(metric_names(task, sorted({int(k) for k in ks} | extra)))
    except ValueError as exc:
        raise RulesError(str(exc)) from exc
    problems: list[str] = []
    for metric, rule in require.items():
        if metric not in known:
            problems.append(
                f"{metric}: unknown metric for {task} (known: {', '.join(sorted(known))})"
            )
            continue
        problems += [f"{metric}: {p}" for p in _rule_problems(rule)]
        if isinstance(rule, Mapping) and rule.get("per_segment") is True:
            if metric in LATENCY_METRICS:
                problems.append(f"{metric}: per_segment: latency is measured per batch of mixed rows, not per segment")
            elif segmented is False:
                problems.append(f"{metric}: per_segment needs a segment column (--segment COLUMN, gate.segment)")
    if problems:
        raise RulesError("; ".join(problems))


def _rule_problems(rule: Any) -> list[str]:
    if not isinstance(rule, Mapping) or not rule:
        return [f"a rule is a non-empty mapping such as {{min: 0.9}}, not {rule!r}"]
    problems = [
        f"unknown rule key {k!r} (known: {', '.join(RULE_KEYS)})"
        for k in rule
        if k not in RULE_KEYS
    ]
    for key in ("min", "max"):
        if key in rule and not _is_number(rule[key]):
            problems.append(f"{key} must be a number, not {rule[key]!r}")
    lo, hi = rule.get("min"), rule.get("max")
    if _is_number(lo) and _is_number(hi) and lo > hi:
        problems.append(f"min {rule['min']} is above max {rule['max']}")
    for key in ("not_worse_than", "better_than"):
        if key in rule and rule[key] != "champion":
            problems.append(f"{key} compares with 'champion', not {rule[key]!r}")
    if "margin" in rule:
        if "not_worse_than" not in rule and "better_than" not in rule:
            problems.append("margin only goes with not_worse_than or better_than")
        elif not _is_number(rule["margin"]) or rule["margin"] < 0:
            problems.append(f"margin must be a number >= 0, not {rule['margin']!r}")
    if "per_segment" in rule and not isinstance(rule["per_segment"], bool):
        problems.append(f"per_segment is true or false, not {rule['per_segment']!r}")
    if not any(k in rule for k in _CHECK_ORDER):
        problems.append(f"no check in the rule (one of {', '.join(_CHECK_ORDER)})")
    return problems


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4g}"


def evaluate_rules(
    require: Mapping[str, Any] | None,
    metrics: Mapping[str, MetricComparison],
    *,
    has_champion: bool,
    confidence: float = 0.95,
    segments: Mapping[str, Mapping[str, MetricComparison]] | None = None,
    segment_column: str | None = None,
) -> list[RuleResult]:
    """One RuleResult per check, in the order of the rules, then one per segment for the
    checks of a ``per_segment`` rule (``segments``: segment → its metrics); rules must be valid
    already."""
    results: list[RuleResult] = []
    level = f"{confidence:.0%}"
    for metric, rule in (require or {}).items():
        results += _checks(metric, rule, metrics.get(metric), has_champion, level)
        if rule.get("per_segment") is True:
            if segments is None:
                results.append(RuleResult(metric, "per_segment", f"{metric} in every segment", None, None, None,
                                          False, "the rule binds each segment, and the gate has no segment column."))
                continue
            for value, seg_metrics in segments.items():
                where = f"{segment_column}={value}" if segment_column else value
                for r in _checks(metric, rule, seg_metrics.get(metric), has_champion, level):
                    results.append(_in_segment(r, value, where, seg_metrics.get(metric)))
    return results


def _checks(metric: str, rule: Mapping[str, Any], comp: MetricComparison | None, has_champion: bool,
            level: str) -> list[RuleResult]:
    out: list[RuleResult] = []
    for kind in _CHECK_ORDER:
        if kind not in rule:
            continue
        if comp is None:
            out.append(_not_computed(metric, kind, rule))
        elif kind in ("min", "max"):
            out.append(_absolute(comp, kind, float(rule[kind])))
        else:
            out.append(_relative(comp, kind, float(rule.get("margin", 0.0)), has_champion, level))
    return out


def _undefined(x: float | None) -> bool:
    return x is None or not math.isfinite(x)


def _in_segment(r: RuleResult, value: str, where: str, comp: MetricComparison | None) -> RuleResult:
    """A check of the whole data, restated for one segment."""
    passed, reason = r.passed, f"in {where}: {r.reason}"
    if not passed and comp is not None and _undefined(comp.candidate) and _undefined(comp.champion):
        passed = True
        reason = (f"in {where}: {r.metric} is undefined for both versions (e.g. no relevant item or a "
                  "single class in this segment): nothing to compare.")
    return RuleResult(r.metric, r.kind, f"{r.rule} in {where}", r.threshold, r.figure, r.interval, passed, reason,
                      segment=value)


def verdict(results: Sequence[RuleResult]) -> str:
    """ "pass" when every check passed (also when there are none), else "fail"."""
    return "pass" if all(r.passed for r in results) else "fail"


def _rule_text(metric: str, kind: str, rule: Mapping[str, Any]) -> str:
    if kind == "min":
        return f"{metric} >= {rule['min']}"
    if kind == "max":
        return f"{metric} <= {rule['max']}"
    if kind == "better_than":
        return f"{metric} better than champion" + (f" by more than {rule['margin']}" if rule.get("margin") else "")
    return f"{metric} not worse than champion by more than {rule.get('margin', 0)}"


def _not_computed(metric: str, kind: str, rule: Mapping[str, Any]) -> RuleResult:
    if metric in CLASSIFICATION_PROBA_METRICS:
        why = "it needs class probabilities and a version gave none"
    elif metric.startswith("coverage_at_"):
        why = "coverage needs the item ids of each answer: a ranker that answers lists (role ranking)"
    else:
        why = "it was not computed"
    raw = rule.get(kind) if kind in ("min", "max") else rule.get("margin")
    threshold = float(raw) if _is_number(raw) else None
    return RuleResult(
        metric,
        kind,
        _rule_text(metric, kind, rule),
        threshold,
        None,
        None,
        False,
        f"{metric} is not available: {why}.",
    )


def _absolute(comp: MetricComparison, kind: str, bound: float) -> RuleResult:
    value = comp.candidate
    text = f"{comp.name} {'>=' if kind == 'min' else '<='} {bound:g}"
    if value is None or not math.isfinite(value):
        return RuleResult(
            comp.name,
            kind,
            text,
            bound,
            None,
            None,
            False,
            f"the candidate's {comp.name} could not be computed.",
        )
    passed = value >= bound if kind == "min" else value <= bound
    side = (
        ("at least" if kind == "min" else "at most")
        if passed
        else ("below" if kind == "min" else "above")
    )
    reason = f"candidate {comp.name} is {_fmt(value)}, {side} the {kind} {bound:g}."
    return RuleResult(comp.name, kind, text, bound, value, None, passed, reason)


def _relative(
    comp: MetricComparison, kind: str, margin: float, has_champion: bool, level: str
) -> RuleResult:
    if kind == "better_than":
        text = f"{comp.name} better than champion" + (f" by more than {margin:g}" if margin else "")
        threshold = margin if margin else None
    else:
        text, threshold = f"{comp.name} not worse than champion by more than {margin:g}", margin
    if not has_champion:
        reason = "there is no champion to compare with (first version); only min/max rules apply."
        return RuleResult(comp.name, kind, text, threshold, None, None, False, reason)
    if comp.champion is None:
        reason = f"the champion has no {comp.name} (e.g. it gave no class probabilities)."
        return RuleResult(comp.name, kind, text, threshold, None, None, False, reason)
    lo, hi = comp.ci_low, comp.ci_high
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return RuleResult(
            comp.name,
            kind,
            text,
            threshold,
            comp.diff,
            None,
            False,
            f"the interval of the {comp.name} difference could not be computed "
            "(the metric is undefined on too many resamples).",
        )
    interval = (lo, hi)
    shown = f"{level} interval of candidate - champion is [{_fmt(lo)}, {_fmt(hi)}]"
    up = comp.higher_is_better
    if kind == "better_than":  # better by more than the margin: the whole interval past it
        limit = margin if up else -margin
        passed = lo > limit if up else hi < limit
        side = "above" if up else "below"
        what = "zero" if not margin else f"{_fmt(limit)} (the margin)"
        reason = (
            f"the {shown}, wholly {side} {what}."
            if passed
            else f"the {shown}, which does not clear {what}: no evidence of an improvement"
            + (f" by more than {margin:g}." if margin else ".")
        )
    else:
        worst = lo if up else hi
        passed = worst >= -margin if up else worst <= margin
        limit = -margin if up else margin
        bound = "lower" if up else "upper"
        if passed:
            where = "not below" if up else "not above"
            reason = f"the {shown}; its {bound} bound is {where} {_fmt(limit)}."
        else:
            where = "below" if up else "above"
            reason = (
                f"the {shown}; its {bound} bound is {where} {_fmt(limit)}: "
                f"the candidate may be worse than the champion by more than {margin:g}."
            )
    return RuleResult(comp.name, kind, text, threshold, comp.diff, interval, passed, reason)
