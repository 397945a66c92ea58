"""Analyses: the judgements (gate, shadow, canary, watch) with their evidence, one row each,
keyed by a dedup key so a restarted controller never stores one verdict twice."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, insert, select

from changeover.store import tables as t
from changeover.store.store import Store

__all__ = ["add", "for_rollout", "outcome"]


def add(conn: Connection, *, rollout_id: int | None, model: str, version: int, kind: str, outcome: str,
        evidence: Mapping[str, Any], dedup: str | None, at: float | None = None) -> None:
    """Store one analysis in the caller's transaction (IntegrityError: this dedup key is stored)."""
    conn.execute(insert(t.analyses).values(rollout_id=rollout_id, model=model, version=version, kind=kind,
                                           outcome=outcome, evidence=dict(evidence), dedup=dedup,
                                           at=time.time() if at is None else at))


def outcome(store: Store, dedup: str) -> str | None:
    """The outcome stored under ``dedup``, if any."""
    with store.engine.connect() as conn:
        return conn.execute(select(t.analyses.c.outcome).where(t.analyses.c.dedup == dedup)).scalar()


def for_rollout(store: Store, rollout_id: int) -> list[dict[str, Any]]:
    """A rollout's analyses, oldest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.analyses).where(t.analyses.c.rollout_id == rollout_id)
                            .order_by(t.analyses.c.id)).all()
    return [{"kind": a.kind, "outcome": a.outcome, "version": a.version, "at": a.at, "evidence": a.evidence}
            for a in rows]
