"""Replica heartbeats: each replica's controller says, every tick, whether its recorder can
write (`stalled_since`), so the leader's judge can tell "no requests" from "metrics stale"."""

from __future__ import annotations

import time

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from changeover.domain.judge_staleness import RecorderReport
from changeover.store import tables as t
from changeover.store.store import Store

__all__ = ["beat", "reports"]


def beat(store: Store, replica: str, *, stalled_since: float | None, pending: int = 0, dropped: int = 0,
         now: float | None = None) -> None:
    """Write this replica's heartbeat (an upsert)."""
    values = {"heartbeat_at": time.time() if now is None else now, "recorder_stalled_since": stalled_since,
              "recorder_pending": pending, "recorder_dropped": dropped}
    with store.tx() as conn:
        if conn.execute(update(t.replicas).where(t.replicas.c.name == replica).values(**values)).rowcount:
            return
    try:
        with store.tx() as conn:
            conn.execute(insert(t.replicas).values(name=replica, **values))
    except IntegrityError:  # its first beat, raced by another process of the same name
        with store.tx() as conn:
            conn.execute(update(t.replicas).where(t.replicas.c.name == replica).values(**values))


def reports(store: Store, *, since: float) -> list[RecorderReport]:
    """What every replica that beat at or after ``since`` last reported."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.replicas).where(t.replicas.c.heartbeat_at >= since)
                            .order_by(t.replicas.c.name)).all()
    return [RecorderReport(r.name, r.recorder_stalled_since, r.heartbeat_at) for r in rows]
