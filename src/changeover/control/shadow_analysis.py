"""The shadow's analysis: comparison figures over its pairs (answers read by each version's output
roles), the online metric of both versions on exactly the same labelled requests, what the
mirror dropped, and the verdict against `shadow.require`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from changeover.domain.comparison import Comparison, Pair
from changeover.domain.shadow_answers import by_role, label_key, read, task_of_answer
from changeover.domain.shadow_judgement import coverage, judge_shadow
from changeover.errors import ModelNotFound
from changeover.store import analyses
from changeover.store import shadows as shadow_store
from changeover.store.store import Store

Roles = Mapping[str, str | None] | None


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def online_metrics(pairs: list[dict[str, Any]], roles_of: Callable[[int], Roles] | None = None) -> dict[str, Any]:
    """Both versions scored on the same requests whose label arrived: accuracy of the outputs of
    role ``label`` (or the arg-max of ``probabilities``), else the mean absolute error of the
    outputs of role ``prediction``, whatever each version names them. ``roles_of``: version →
    its output roles (None: inferred from the answers). When no figure can be given, ``reason``
    says why (also in the report's ``missing`` map)."""
    roles_of = roles_of or (lambda _version: None)
    labelled = [p for p in pairs if p.get("label") is not None and p.get("shadow_output")]
    out: dict[str, Any] = {"labelled": len(labelled)}
    if not labelled:
        out["reason"] = "no labelled pair yet (no feedback label for a request both versions answered)"
        return out
    pairs_by_role = [(by_role(p["champion_output"], roles_of(p["champion_version"])),
                      by_role(p["shadow_output"], roles_of(p["shadow_version"])), p["label"]) for p in labelled]
    task = task_of_answer(pairs_by_role[0][0])
    if task == "classification":
        answers = [(read(task, c), read(task, s), label_key(label)) for c, s, label in pairs_by_role]
        usable = [(c.label, s.label, label) for c, s, label in answers if not isinstance(c, str) and not isinstance(s, str)]
        if not usable:
            return out | {"reason": "no labelled pair where both versions answered a label"}
        champ = sum(c == label for c, _, label in usable) / len(usable)
        shad = sum(s == label for _, s, label in usable) / len(usable)
        return out | {"metric": "accuracy", "scored": len(usable), "champion": champ, "shadow": shad,
                      "difference": shad - champ}
    if task == "regression":
        errors = []
        for c, s, label in pairs_by_role:
            a, b, y = read(task, c), read(task, s), _number(label)
            if y is not None and not isinstance(a, str) and not isinstance(b, str):
                errors.append((abs(a.score - y), abs(b.score - y)))
        if not errors:
            return out | {"reason": "no labelled pair with a numeric label and a prediction from both versions"}
        champ = sum(e[0] for e in errors) / len(errors)
        shad = sum(e[1] for e in errors) / len(errors)
        return out | {"metric": "mae", "scored": len(errors), "champion": champ, "shadow": shad,
                      "difference": shad - champ}
    if task == "ranking":
        return out | {"reason": "ranking feedback is not scored in the shadow report (the online ranking metrics "
                                "are per version: /api/models/{model}/online)"}
    return out | {"reason": "the champion's answers hold no output of role label, probabilities or prediction"}


def _roles_reader(store: Store, model: str) -> Callable[[int], Roles]:
    """Version → its signature's output roles (None when it declares no outputs, or is gone)."""
    cache: dict[int, Roles] = {}

    def roles_of(version: int) -> Roles:
        if version not in cache:
            try:
                cache[version] = store.version(model, int(version)).signature.output_roles() or None
            except ModelNotFound:
                cache[version] = None
        return cache[version]

    return roles_of


def shadow_figures(store: Store, model: str, version: int, since: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The comparison's figures over the pairs since ``since``, with ``online`` (both versions on
    the labelled pairs), ``mirror`` (mirrored, compared and dropped by cause: the gateways'
    counts for this shadow's run beside the pairs) and ``missing`` (figure → why it has none)."""
    rows = shadow_store.pairs_with_feedback(store, model, version, since)
    roles_of = _roles_reader(store, model)
    comparison = Comparison()
    for r in rows:
        comparison.add(Pair(
            request_id=r["request_id"], champion=r["champion_output"] or {}, shadow=r["shadow_output"],
            champion_ms=float(r["champion_ms"] or 0.0), shadow_ms=r["shadow_ms"], error=r["error"],
            segment=r["segment"], champion_roles=roles_of(r["champion_version"]),
            shadow_roles=roles_of(r["shadow_version"]),
        ))
    figures = comparison.figures()
    online = figures["online"] = online_metrics(rows, roles_of)
    if "reason" in online:
        figures["missing"][f"online_{online.get('metric') or _online_name(figures['task'])}"] = online["reason"]
    shadow = shadow_store.shadow(store, model, version) or {}
    figures["mirror"] = coverage(figures["overall"], shadow.get("mirror")) | {"sample": shadow.get("sample")}
    figures["champion_versions"] = sorted({r["champion_version"] for r in rows})
    return figures, rows


def _online_name(task: str | None) -> str:
    return {"classification": "accuracy", "regression": "mae", "ranking": "ranking"}.get(task or "", "metric")


def shadow_verdict(store: Store, model: str, version: int, since: float, require: dict[str, Any],
                   rollout_id: int | None = None, dedup: str | None = None) -> dict[str, Any]:
    """Judge a shadow against its requirements (`judge_shadow`: never a pass when fewer than half
    of the mirrored calls were compared); the verdict and its evidence are stored."""
    figures, _ = shadow_figures(store, model, version, since)
    verdict = judge_shadow(figures, require or {})
    evidence = {"verdict": verdict, "figures": figures, "since": since}
    with store.tx() as conn:
        analyses.add(conn, rollout_id=rollout_id, model=model, version=version, kind="shadow",
                     outcome=verdict["verdict"], evidence=evidence, dedup=dedup)
        checks = "; ".join(c["reason"] for c in verdict.get("checks", []))
        why = "; ".join(x for x in (checks, verdict.get("reason") or "") if x)
        store.add_event("analysis", f"{model}: shadow v{version} {verdict['verdict']}" + (f" — {why}" if why else ""),
                        model=model, evidence=evidence | {"rollout": rollout_id}, conn=conn)
    return verdict
