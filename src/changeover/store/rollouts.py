"""Rollouts: spec + status + the operator's pending command, one row each; at most one active
per model (a partial unique index, migration 0002)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, and_, select, update

from changeover.store import tables as t
from changeover.store.store import Store

__all__ = ["active", "active_in", "every", "running", "spec_of", "write"]


def active(store: Store, model: str) -> dict[str, Any] | None:
    """The model's active rollout, whole (the newest, should two ever be active)."""
    with store.engine.connect() as conn:
        row = conn.execute(select(t.rollouts).where(and_(t.rollouts.c.model == model, t.rollouts.c.active.is_(True)))
                           .order_by(t.rollouts.c.id.desc()).limit(1)).first()
    return dict(row._mapping) if row else None


def running(conn: Connection, model: str) -> Any:
    """The model's active rollout's id and status (None when none runs), in ``conn``."""
    return conn.execute(select(t.rollouts.c.id, t.rollouts.c.status).where(
        and_(t.rollouts.c.model == model, t.rollouts.c.active.is_(True)))).first()


def write(conn: Connection, rollout_id: int, values: Mapping[str, Any]) -> None:
    """Write a rollout's status (and its other columns given) in the caller's transaction."""
    conn.execute(update(t.rollouts).where(t.rollouts.c.id == rollout_id).values(**values))


def spec_of(store: Store, rollout_id: int) -> dict[str, Any] | None:
    """A rollout's spec as it was stored (None: no such rollout)."""
    with store.engine.connect() as conn:
        row = conn.execute(select(t.rollouts.c.spec).where(t.rollouts.c.id == rollout_id)).first()
    return row.spec if row is not None else None


def active_in(conn: Connection, model: str) -> list[Any]:
    """Every active rollout's id and status (at most one, by the schema), in ``conn``."""
    return list(conn.execute(select(t.rollouts.c.id, t.rollouts.c.status).where(
        and_(t.rollouts.c.model == model, t.rollouts.c.active.is_(True)))).all())


def every(store: Store) -> list[Any]:
    """Every rollout's model, spec and status, oldest first."""
    with store.engine.connect() as conn:
        return list(conn.execute(select(t.rollouts.c.model, t.rollouts.c.spec, t.rollouts.c.status)
                                 .order_by(t.rollouts.c.id)).all())
