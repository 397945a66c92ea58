"""Leadership: with several replicas, one controller acts; the lease lives in the store
(`store/leases.py` holds its SQL)."""

from __future__ import annotations

from changeover.store.leases import acquire, release

__all__ = ["acquire", "release"]
