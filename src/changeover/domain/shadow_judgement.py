"""The shadow's verdict: `shadow.require` judged on the comparison's figures, and never a pass
on a minority of the mirrored calls. Pure.

`coverage` puts what the gateways' mirrors counted beside the pairs: how many calls were
mirrored, how many compared, and how many dropped, by cause (`comparison.DROP_CAUSES`).
`judge_shadow` gives ``pass``, ``fail`` or ``inconclusive`` with its checks and its reason; the
rule is in its docstring (and docs/shadow.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from changeover.domain.comparison import (
    DROP_CAUSES,
    FIGURE_ALIASES,
    KNOWN_FIGURES,
    SEGMENT_PREFIX,
    K,
    counted,
    eligible_segments,
    overlap_name,
)
from changeover.domain.judge import FAIL, INCONCLUSIVE, PASS

__all__ = ["MIN_COMPARED_SHARE", "coverage", "judge_shadow"]

MIN_COMPARED_SHARE = 0.5  # below this share of the mirrored calls compared, a shadow is not a pass
_KIND_CAUSE = {"timeout": "timeout", "error": "candidate_error", "invalid": "invalid_answer"}


def coverage(overall: Mapping[str, Any], counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Mirrored, compared and dropped calls, with the drops by cause (`DROP_CAUSES`).

    ``overall``: the pairs' figures (`Comparison.figures()["overall"]`). ``counts``: what the
    gateways' mirrors counted (`gateway.shadow.Mirror`), outcome → calls: ``queue_full``,
    ``pool_busy`` and ``not_loaded`` for calls dropped before the shadow was called, and ``ok``,
    ``timeout``, ``error``, ``invalid`` for calls it answered (each of which writes a pair).
    Without counts (None or empty), the pairs alone: nothing is known of calls dropped earlier.

    Causes: the three before the call; ``not_recorded``, calls answered whose pair is not in
    the store (the store writer was behind, or is still writing it); ``timeout``,
    ``candidate_error`` and ``invalid_answer``, pairs whose shadow failed (its errors by kind);
    ``champion_unusable``, pairs whose champion answer holds nothing to compare.
    mirrored = compared + dropped."""
    counts = counts or {}
    pairs, compared = int(overall.get("pairs") or 0), int(overall.get("compared") or 0)
    by = dict.fromkeys(DROP_CAUSES, 0)
    for cause in ("queue_full", "pool_busy", "not_loaded"):
        by[cause] = int(counts.get(cause, 0))
    answered = sum(int(counts.get(outcome, 0)) for outcome in ("ok", "timeout", "error", "invalid"))
    by["not_recorded"] = max(0, answered - pairs)
    for kind, n in (overall.get("errors_by_kind") or {}).items():
        cause = _KIND_CAUSE.get(kind, kind)
        by[cause] = by.get(cause, 0) + int(n)
    by["champion_unusable"] = max(0, pairs - compared - int(overall.get("shadow_errors") or 0))
    dropped = sum(by.values())
    mirrored = compared + dropped
    return {"mirrored": mirrored, "compared": compared, "dropped": dropped,
            "compared_share": compared / mirrored if mirrored else None, "dropped_by": {c: n for c, n in by.items() if n},
            "counted_by_mirror": bool(counts)}


def _dropped_text(cov: Mapping[str, Any]) -> str:
    by = cov.get("dropped_by") or {}
    return f"{cov['dropped']} dropped" + (f" ({counted({c.replace('_', ' '): n for c, n in by.items()})})"
                                          if by else "")


# --- judging ----------------------------------------------------------------------------------


def _resolve(name: str, k: int) -> str:
    """The figure a requirement names: `FIGURE_ALIASES` read, at the comparison's k."""
    base = name.removeprefix(SEGMENT_PREFIX)
    base = overlap_name(k) if base == "overlap_at_k" else FIGURE_ALIASES.get(base, base)
    return base


def _bounds(name: str, rule: Any, k: int) -> list[tuple[str, float]]:
    base = _resolve(name, k)
    if base not in KNOWN_FIGURES and base != overlap_name(k):
        raise ValueError(f"unknown shadow figure {name!r}; known: {', '.join(KNOWN_FIGURES)}, "
                         f"and {SEGMENT_PREFIX}<figure> to judge the worst segment")
    rule = rule.model_dump() if hasattr(rule, "model_dump") else rule
    given = {k: v for k, v in rule.items() if v is not None} if isinstance(rule, Mapping) else {}
    if not given or set(given) - {"min", "max"}:
        raise ValueError(f"shadow requirement {name!r} takes min and/or max, got {rule!r}")
    return [(key, float(given[key])) for key in ("min", "max") if key in given]


def _check(name: str, kind: str, threshold: float, figures: Mapping[str, Any], pairs: int, k: int) -> dict[str, Any]:
    rule = f"{name} {'>=' if kind == 'min' else '<='} {threshold:g}"
    out: dict[str, Any] = {"name": name, "rule": rule, "figure": None, "passed": None, "reason": "no pairs yet"}
    if pairs == 0:
        return out
    overall, where, base = figures.get("overall", figures), "", _resolve(name, k)
    if name.startswith(SEGMENT_PREFIX):
        found = [(f[base], n) for n, f in eligible_segments(figures.get("segments") or {}).items() if f.get(base) is not None]
        figure, segment = (min if kind == "min" else max)(found) if found else (None, None)
        where, measured = f"segment {segment!r}: ", bool(found)
    else:
        figure, measured = overall.get(base), base in overall
    if figure is None:
        why = "no segment measured it" if name.startswith(SEGMENT_PREFIX) else (
            (figures.get("missing") or {}).get(base) or "no data for it yet" if measured
            else f"not measured for a {figures.get('task')} shadow")
        return out | {"passed": False, "reason": why}
    passed = figure >= threshold if kind == "min" else figure <= threshold
    side = ("at least" if passed else "below") if kind == "min" else ("at most" if passed else "above")
    what = base if name.startswith(SEGMENT_PREFIX) else name  # say what the number is, not a bare figure
    return out | {"figure": figure, "passed": passed, "reason": f"{where}{what} {figure:.4g} is {side} {threshold:g}"}


def judge_shadow(figures: Mapping[str, Any], require: Mapping[str, Any]) -> dict[str, Any]:
    """Judge `shadow.require` on `Comparison.figures()` (flat overall figures are read too).

    The rule, in this order:

    1. no pair yet: ``inconclusive``;
    2. a requirement that fails on a measured figure: ``fail`` (evidence against the shadow
       stands however few calls were compared);
    3. fewer than `MIN_COMPARED_SHARE` (half) of the mirrored calls compared (`coverage`: the
       mirror's counts in ``figures["mirror"]`` when the caller put them there, else the pairs):
       ``inconclusive``, with the share and the drops by cause as the reason — most of the
       traffic was not seen, so the figures cannot speak for it;
    4. a requirement without a figure (not measured, no data): ``fail``;
    5. otherwise ``pass`` (also with no requirements).
    """
    k = int(figures.get("k") or K)
    bounds = [(name, kind, t) for name, rule in require.items() for kind, t in _bounds(name, rule, k)]
    overall = figures.get("overall", figures)
    pairs = int(overall.get("pairs") or 0)
    cov = figures.get("mirror") or coverage(overall)
    checks = [_check(name, kind, t, figures, pairs, k) for name, kind, t in bounds]
    failed = [c for c in checks if c["passed"] is False]
    share = cov.get("compared_share")
    seen = f"{cov['compared']} of {cov['mirrored']} mirrored calls compared"
    if pairs == 0:
        verdict, reason = INCONCLUSIVE, "no pairs yet" + (f": {_dropped_text(cov)}" if cov.get("dropped") else "")
    elif any(c["figure"] is not None for c in failed):
        verdict, reason = FAIL, f"{len(failed)} of {len(checks)} requirements failed ({seen})"
    elif share is None or share < MIN_COMPARED_SHARE:
        verdict = INCONCLUSIVE
        reason = (f"only {seen} ({100 * (share or 0):.1f}%), {_dropped_text(cov)}: a verdict needs at least "
                  f"{100 * MIN_COMPARED_SHARE:g}% of them compared")
    elif failed:
        verdict, reason = FAIL, f"{len(failed)} of {len(checks)} requirements failed ({seen})"
    else:
        verdict, reason = PASS, seen
    return {"verdict": verdict, "checks": checks, "pairs": pairs, "reason": reason, "coverage": dict(cov)}
