"""Checks of a rollout spec against the model it rolls out, at `apply`, before anything runs. Pure.

`domain.spec` checks a spec on its own (fields, types, durations). What it cannot know is
whether each criterion can be judged for *this* model; a criterion that cannot would make the
controller raise on every tick, or hold a step for ever, with its mirror running. So `apply`
refuses (422), naming the field and why:

- ``gate.require.<metric>``: a metric the offline gate does not compute for ``gate.task`` (the
  caller passes the names the gate knows, `evaluation.metrics.metric_names`), or a comparison
  with something other than ``champion``.
- ``shadow.require.<figure>``: a figure the shadow comparison does not measure
  (`comparison.KNOWN_FIGURES`, its `FIGURE_ALIASES`, and ``worst_segment_<figure>``), one it
  measures only for another kind of model (``agreement`` on a regressor; ``overlap_at_10``,
  ``rbo``, ``kendall_tau`` on anything but a ranker that answers lists of item ids), or a rule
  other than min/max.
- ``interleave``: needs a ranker that answers lists of item ids (an output of role ``ranking``):
  interleaving merges two such lists into the one a user sees.
- ``canary.judge.label_accuracy``: needs a classifier, an output named ``label`` to compare
  with the feedback's labels. ``canary.judge.mae`` / ``canary.judge.rmse``: need a regressor,
  a numeric output and no ``label``.

The kind of model is read from the candidate's declared outputs. For the canary's criteria
(`model_task`): ``label`` or ``probabilities`` make a classifier, a ``scores`` or ``ranking``
output with a second dimension a ranker, anything else with a numeric output a regressor. For the
shadow's (`shadow_task`), as the shadow compares answers, by output role (`domain.roles`,
declared or inferred): an output of role ``ranking`` makes a ranker, ``label`` or
``probabilities`` a classifier, ``prediction`` a regressor — so a ``task: ranking`` model that
scores one row at a time (a ``prediction``) is compared, and checked, as a regressor. A version
that declares no outputs (or none with a role) is of no known kind: only the names are checked.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any

from changeover.domain.comparison import (
    CLASSIFICATION,
    FIGURE_ALIASES,
    KNOWN_FIGURES,
    RANKING,
    REGRESSION,
    SEGMENT_PREFIX,
    TASK_FIGURES,
)
from changeover.domain.shadow_answers import task_of_answer
from changeover.domain.signature import Signature

__all__ = ["Problem", "model_task", "shadow_task", "spec_problems"]

Problem = tuple[str, str]  # (field path, reason), as `spec.SpecError.problems`

NON_NUMERIC = frozenset({"BYTES", "BOOL"})
_ANY_TASK = frozenset(KNOWN_FIGURES) - {name for names in TASK_FIGURES.values() for name in names}


def model_task(signature: Signature) -> str | None:
    """classification, regression or ranking, from the declared outputs; None when they say nothing."""
    outputs = {t.name: t for t in signature.outputs}
    if not outputs:
        return None
    if "label" in outputs or "probabilities" in outputs:
        return CLASSIFICATION
    if any(name in outputs and len(outputs[name].shape) >= 2 for name in ("scores", "ranking")):
        return RANKING
    if any(t.datatype not in NON_NUMERIC for t in outputs.values()):
        return REGRESSION
    return None


def shadow_task(signature: Signature) -> str | None:
    """The kind of answer the shadow compares for this signature, from its output roles."""
    return task_of_answer({role: True for role in signature.output_roles().values() if role})


def _outputs(signature: Signature) -> str:
    return ", ".join(f"{t.name} ({t.datatype})" for t in signature.outputs) or "none declared"


def _unknown(name: str, known: Collection[str], what: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what}{hint}; known: {', '.join(known)}"


def _rule(rule: Any) -> dict[str, Any]:
    data = rule.model_dump() if hasattr(rule, "model_dump") else rule
    return {k: v for k, v in data.items() if v is not None} if isinstance(data, Mapping) else {}


def _gate(gate: Any, known: Collection[str] | None) -> list[Problem]:
    problems: list[Problem] = []
    for name, rule in (getattr(gate, "require", None) or {}).items():
        path = f"gate.require.{name}"
        if known is not None and name not in known:
            problems.append((path, _unknown(name, sorted(known), f"metric for {gate.task}")))
            continue
        for key in ("not_worse_than", "better_than"):
            against = _rule(rule).get(key)
            if against is not None and against != "champion":
                problems.append((f"{path}.{key}", f"compares with 'champion' only, not {against!r}"))
    return problems


def _shadow(shadow: Any, task: str | None, candidate: int | None, signature: Signature) -> list[Problem]:
    problems: list[Problem] = []
    for name, rule in (getattr(shadow, "require", None) or {}).items():
        path = f"shadow.require.{name}"
        base = name.removeprefix(SEGMENT_PREFIX)
        if base not in KNOWN_FIGURES and base not in FIGURE_ALIASES:
            problems.append((path, _unknown(base, KNOWN_FIGURES, "shadow metric")
                             + f", each also as {SEGMENT_PREFIX}<metric> to judge the worst segment"))
            continue
        base = FIGURE_ALIASES.get(base, base)
        given = _rule(rule)
        if set(given) - {"min", "max"}:
            problems.append((path, "a shadow requirement takes min and/or max (its figures already compare the "
                                   f"candidate with the champion), not {', '.join(sorted(set(given) - {'min', 'max'}))}"))
        measured_for = [t for t, names in TASK_FIGURES.items() if base in names]
        if task is not None and base not in _ANY_TASK and task not in measured_for:
            who = f"v{candidate}" if candidate is not None else "the candidate"
            kind = ("rankers that answer lists of item ids (an output of role ranking)" if measured_for == [RANKING]
                    else f"{' and '.join(measured_for)} models")
            problems.append((path, f"{base} is measured for {kind} only; {who} is a {task} model "
                                   f"(outputs: {_outputs(signature)})"))
    return problems


def _interleave(candidate: int | None, signature: Signature) -> list[Problem]:
    if not signature.outputs or "ranking" in signature.output_roles().values():
        return []
    who = f"v{candidate}" if candidate is not None else "the candidate"
    return [("interleave", "needs a ranker that answers lists of item ids (an output of role ranking, "
                           f"docs/models.md) to merge into the list a user sees; {who} answers "
                           f"{_outputs(signature)}")]


def _canary(canary: Any, task: str | None, candidate: int | None, signature: Signature) -> list[Problem]:
    judge = getattr(canary, "judge", None)
    if judge is None or not signature.outputs:
        return []
    who = f"v{candidate}" if candidate is not None else "the candidate"
    outputs = _outputs(signature)
    problems: list[Problem] = []
    if getattr(judge, "label_accuracy", None) is not None and not any(t.name == "label" for t in signature.outputs):
        problems.append(("canary.judge.label_accuracy",
                         f"needs a classifier: an output named 'label' to compare with the feedback labels; "
                         f"{who} answers {outputs}"))
    for name in ("mae", "rmse"):
        if getattr(judge, name, None) is not None and task != REGRESSION:
            kind = f"is a {task} model" if task is not None else "declares no numeric output"
            problems.append((f"canary.judge.{name}",
                             f"needs a regressor: a numeric prediction to compare with the feedback labels; "
                             f"{who} {kind} (outputs: {outputs})"))
    return problems


def spec_problems(spec: Any, signature: Signature, *, candidate: int | None = None,
                  gate_metrics: Collection[str] | None = None) -> list[Problem]:
    """Every criterion of ``spec`` (a `RolloutSpec`) that cannot be judged for the candidate whose
    signature is ``signature``, as (field path, reason); empty when every one can.

    ``gate_metrics``: the metric names the offline gate computes for ``spec.gate.task`` (None:
    the gate's names are not checked)."""
    task = model_task(signature)
    problems: list[Problem] = []
    if getattr(spec, "gate", None) is not None:
        problems += _gate(spec.gate, gate_metrics)
    if getattr(spec, "shadow", None) is not None:
        problems += _shadow(spec.shadow, shadow_task(signature), candidate, signature)
    if getattr(spec, "interleave", None) is not None:
        problems += _interleave(candidate, signature)
    if getattr(spec, "canary", None) is not None:
        problems += _canary(spec.canary, task, candidate, signature)
    return problems
