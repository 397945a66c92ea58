"""Leases: with several replicas, one holder of each named lease (the controller's) at a time."""

from __future__ import annotations

import time

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from changeover.store import tables as t
from changeover.store.store import Store

__all__ = ["acquire", "release"]


def acquire(store: Store, name: str, holder: str, ttl_s: float, now: float | None = None) -> bool:
    """Take or renew the lease; True when ``holder`` holds it until now + ttl."""
    now = time.time() if now is None else now
    try:
        with store.tx() as conn:
            result = conn.execute(
                update(t.leases)
                .where(t.leases.c.name == name)
                .where(or_(t.leases.c.holder == holder, t.leases.c.expires_at < now))
                .values(holder=holder, expires_at=now + ttl_s)
            )
            if result.rowcount:
                return True
            if conn.execute(select(t.leases.c.name).where(t.leases.c.name == name)).first() is None:
                conn.execute(insert(t.leases).values(name=name, holder=holder, expires_at=now + ttl_s))
                return True
            return False
    except IntegrityError:
        return False


def release(store: Store, name: str, holder: str) -> None:
    with store.tx() as conn:
        conn.execute(update(t.leases).where(t.leases.c.name == name, t.leases.c.holder == holder).values(expires_at=0.0))
