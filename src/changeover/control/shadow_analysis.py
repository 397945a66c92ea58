"""The shadow's analysis: comparison figures over its pairs, the online metric of both
versions on exactly the same labelled requests, and the verdict against `shadow.require`."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sqlalchemy import insert

from changeover.domain.comparison import Comparison, Pair, judge_shadow
from changeover.store import shadows as shadow_store
from changeover.store import tables as t
from changeover.store.store import Store


def _same(a: Any, b: Any) -> bool:
    return str(a) == str(b)


def online_metrics(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Both versions scored on the same requests whose label arrived."""
    labelled = [p for p in pairs if p.get("label") is not None and p.get("shadow_output")]
    out: dict[str, Any] = {"labelled": len(labelled)}
    if not labelled:
        return out
    first = labelled[0]["champion_output"]
    if "label" in first:
        champ = np.mean([_same(p["champion_output"].get("label"), p["label"]) for p in labelled])
        shad = np.mean([_same(p["shadow_output"].get("label"), p["label"]) for p in labelled])
        out.update(metric="accuracy", champion=float(champ), shadow=float(shad), difference=float(shad - champ))
    else:
        name = next(iter(first))
        try:
            champ = np.mean([abs(float(p["champion_output"][name]) - float(p["label"])) for p in labelled])
            shad = np.mean([abs(float(p["shadow_output"][name]) - float(p["label"])) for p in labelled])
        except (TypeError, ValueError, KeyError):
            return out
        out.update(metric="mae", champion=float(champ), shadow=float(shad), difference=float(shad - champ))
    return out


def shadow_figures(store: Store, model: str, version: int, since: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows = shadow_store.pairs_with_feedback(store, model, version, since)
    comparison = Comparison()
    for r in rows:
        comparison.add(Pair(
            request_id=r["request_id"], champion=r["champion_output"] or {}, shadow=r["shadow_output"],
            champion_ms=float(r["champion_ms"] or 0.0), shadow_ms=r["shadow_ms"], error=r["error"],
            segment=r["segment"],
        ))
    figures = comparison.figures()
    figures["online"] = online_metrics(rows)
    figures["champion_versions"] = sorted({r["champion_version"] for r in rows})
    return figures, rows


def shadow_verdict(store: Store, model: str, version: int, since: float, require: dict[str, Any],
                   rollout_id: int | None = None, dedup: str | None = None) -> dict[str, Any]:
    """Judge a shadow against its requirements; the verdict and its evidence are stored."""
    figures, _ = shadow_figures(store, model, version, since)
    verdict = judge_shadow(figures, require) if require else {
        "verdict": "pass" if figures["overall"].get("pairs") else "inconclusive", "checks": [], "pairs": figures["overall"].get("pairs", 0)}
    evidence = {"verdict": verdict, "figures": figures, "since": since}
    with store.tx() as conn:
        conn.execute(insert(t.analyses).values(rollout_id=rollout_id, model=model, version=version, kind="shadow",
                                               outcome=verdict["verdict"], evidence=evidence, at=time.time(),
                                               dedup=dedup))
        checks = "; ".join(c["reason"] for c in verdict.get("checks", []))
        store.add_event("analysis", f"{model}: shadow v{version} {verdict['verdict']}" + (f" — {checks}" if checks else ""),
                        model=model, evidence=evidence | {"rollout": rollout_id}, conn=conn)
    return verdict
