"""Events: the append-only audit log. Writing and the general listing live on `Store`
(`add_event`, `events`); the narrower reads other packages need live here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from changeover.store import tables as t
from changeover.store.store import Store

__all__ = ["newest_of_kinds"]


def newest_of_kinds(store: Store, kinds: Iterable[str], *, limit: int) -> list[Any]:
    """The newest ``limit`` events of these kinds, newest first: rows of (model, kind, evidence, at)."""
    with store.engine.connect() as conn:
        return list(conn.execute(
            select(t.events.c.model, t.events.c.kind, t.events.c.evidence, t.events.c.at)
            .where(t.events.c.kind.in_(list(kinds))).order_by(t.events.c.id.desc()).limit(limit)
        ).all())
