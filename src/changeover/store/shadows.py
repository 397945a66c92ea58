"""Desired shadows (part of the traffic policy, so they survive a restart), their pairs, and
what the gateways' mirrors counted for each (``body["mirror"]``: outcome → calls, since the
shadow started)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from changeover.domain.policy import Shadow
from changeover.store import tables as t
from changeover.store.store import Store


def start_shadow(store: Store, model: str, version: int, *, sample: float, until_requests: int | None,
                 until_s: float | None, segment: str | None, timeout_s: float, require: dict[str, Any] | None,
                 owner: int | None, actor: str, conn: Connection | None = None) -> dict[str, Any]:
    if conn is None:
        with store.tx() as c:
            return start_shadow(store, model, version, sample=sample, until_requests=until_requests, until_s=until_s,
                                segment=segment, timeout_s=timeout_s, require=require, owner=owner, actor=actor, conn=c)
    now = time.time()
    body = {"active": True, "sample": sample, "until_requests": until_requests, "until_s": until_s,
            "segment": segment, "timeout_s": timeout_s, "require": require or {}, "owner": owner,
            "started_at": now, "stopped_at": None, "verdict": None, "mirror": {}}
    exists = conn.execute(select(t.shadow_stats.c.model).where(
        and_(t.shadow_stats.c.model == model, t.shadow_stats.c.shadow_version == version))).first()
    if exists:
        conn.execute(update(t.shadow_stats).where(
            and_(t.shadow_stats.c.model == model, t.shadow_stats.c.shadow_version == version)
        ).values(started_at=now, body=body, updated_at=now))
    else:
        conn.execute(insert(t.shadow_stats).values(model=model, shadow_version=version, started_at=now, body=body,
                                                   updated_at=now))
    limits = ", ".join(x for x in (f"{until_requests} requests" if until_requests else "",
                                   f"{until_s:g}s" if until_s else "") if x) or "until stopped"
    store.add_event("shadow_start", f"{model}: shadow v{version} at sample {sample:g} ({limits})", model=model,
                    actor=actor, evidence={"version": version, **body}, conn=conn)
    return body


def stop_shadow(store: Store, model: str, version: int, *, actor: str, reason: str,
                verdict: dict[str, Any] | None = None, conn: Connection | None = None) -> bool:
    if conn is None:
        with store.tx() as c:
            return stop_shadow(store, model, version, actor=actor, reason=reason, verdict=verdict, conn=c)
    row = conn.execute(select(t.shadow_stats).where(
        and_(t.shadow_stats.c.model == model, t.shadow_stats.c.shadow_version == version)).with_for_update()).first()
    if row is None or not row.body.get("active"):
        return False
    body = dict(row.body) | {"active": False, "stopped_at": time.time(), "stop_reason": reason, "verdict": verdict}
    conn.execute(update(t.shadow_stats).where(
        and_(t.shadow_stats.c.model == model, t.shadow_stats.c.shadow_version == version)
    ).values(body=body, updated_at=time.time()))
    store.add_event("shadow_stop", f"{model}: shadow v{version} stopped ({reason})"
                    + (f", verdict {verdict['verdict']}" if verdict else ""), model=model, actor=actor,
                    evidence={"version": version, "reason": reason, "verdict": verdict}, conn=conn)
    return True


def shadows(store: Store, model: str, *, active_only: bool = False) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.shadow_stats).where(t.shadow_stats.c.model == model)
                            .order_by(t.shadow_stats.c.started_at)).all()
    out = [{"version": r.shadow_version, **r.body} for r in rows]
    return [s for s in out if s["active"]] if active_only else out


def shadow(store: Store, model: str, version: int) -> dict[str, Any] | None:
    """One shadow (the latest run of this version), or None."""
    with store.engine.connect() as conn:
        row = conn.execute(select(t.shadow_stats).where(
            and_(t.shadow_stats.c.model == model, t.shadow_stats.c.shadow_version == version))).first()
    return None if row is None else {"version": row.shadow_version, **row.body}


def add_mirror_counts(store: Store, counts: Mapping[tuple[str, int], Mapping[str, int]]) -> None:
    """Add what one gateway's mirror counted, (model, version) → outcome → calls, to each active
    shadow's running counts. Counts for a shadow that is stopped or unknown are left out: they
    belong to no run (the verdict of a stopped one is already written)."""
    if not counts:
        return
    now = time.time()
    with store.tx() as conn:
        for (model, version), by in counts.items():
            where = and_(t.shadow_stats.c.model == model, t.shadow_stats.c.shadow_version == version)
            row = conn.execute(select(t.shadow_stats).where(where).with_for_update()).first()
            if row is None or not row.body.get("active"):
                continue
            mirror = dict(row.body.get("mirror") or {})
            for outcome, n in by.items():
                mirror[outcome] = int(mirror.get(outcome, 0)) + int(n)
            conn.execute(update(t.shadow_stats).where(where).values(body=dict(row.body) | {"mirror": mirror},
                                                                    updated_at=now))


def policy_shadows(store: Store, model: str) -> tuple[Shadow, ...]:
    return tuple(
        Shadow(version=s["version"], sample=float(s["sample"]), timeout_s=float(s.get("timeout_s") or 1.0),
               segment=s.get("segment"))
        for s in shadows(store, model, active_only=True)
    )


def pair_count(store: Store, model: str, version: int, since: float) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.shadow_pairs).where(
            and_(t.shadow_pairs.c.model == model, t.shadow_pairs.c.shadow_version == version,
                 t.shadow_pairs.c.at >= since))).scalar() or 0)


def pairs_with_feedback(store: Store, model: str, version: int, since: float, limit: int = 200_000) -> list[dict[str, Any]]:
    """Shadow pairs since ``since``, each with the label or reward that came back for its request."""
    q = (select(t.shadow_pairs, t.feedback.c.label, t.feedback.c.reward)
         .select_from(t.shadow_pairs.outerjoin(t.feedback, t.feedback.c.request_id == t.shadow_pairs.c.request_id))
         .where(and_(t.shadow_pairs.c.model == model, t.shadow_pairs.c.shadow_version == version,
                     t.shadow_pairs.c.at >= since))
         .order_by(t.shadow_pairs.c.id.desc()).limit(limit))
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q).all()]
