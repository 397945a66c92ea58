"""Artifact blobs: content-addressed artifact bytes in the store's database, one row a blob
(``CHANGEOVER_ARTIFACTS=db``; `registry/shared.py` checks and caches them)."""

from __future__ import annotations

import time

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from changeover.store import tables as t

__all__ = ["exists", "put", "read"]


def put(engine: Engine, sha: str, data: bytes) -> None:
    """Store the bytes under their sha256 (once: bytes another replica stored meanwhile stay)."""
    try:
        with engine.begin() as conn:
            conn.execute(insert(t.artifact_blobs).values(sha256=sha, size=len(data), data=data,
                                                         created_at=time.time()))
    except IntegrityError:
        pass


def read(engine: Engine, sha: str) -> bytes | None:
    with engine.connect() as conn:
        data = conn.execute(select(t.artifact_blobs.c.data).where(t.artifact_blobs.c.sha256 == sha)).scalar()
    return None if data is None else bytes(data)


def exists(engine: Engine, sha: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(t.artifact_blobs.c.sha256).where(t.artifact_blobs.c.sha256 == sha)).first() \
            is not None
