"""Desired state changed: a command, a new rollout, an alias move, a shadow written through any
replica wakes the leading controller at once, not at its next tick.

The replica that took the write rings (from its controller's thread, never the event loop: a
ring is a round trip to the store). On PostgreSQL a ring is a NOTIFY on `CHANNEL` carrying the
ringer's name, which every controller LISTENs for; across processes on one SQLite file it bumps
a signal file's modification time, which each controller looks at while it waits; in one
process the API wakes its own controller directly and no ring is needed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from changeover.store.listen import PgListener
from changeover.store.store import Store

log = logging.getLogger(__name__)

CHANNEL = "changeover_desired"

__all__ = ["CHANNEL", "DesiredStateBell", "signal_file"]


def signal_file(url: str) -> Path | None:
    """The file processes on one SQLite database ring each other through (none in memory, nor
    on PostgreSQL, whose processes LISTEN)."""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    return Path(url.split("sqlite:///", 1)[1] + ".desired")


class DesiredStateBell:
    """One controller's side of the bell: `ring` tells the others, `listen` hears them.

    ``ringer`` names this controller: a notification it sent itself is not heard again (it
    woke already, locally)."""

    def __init__(self, store: Store, ringer: str) -> None:
        self.store = store
        self.ringer = ringer
        self.file = signal_file(store.url)
        self._seen = self._mtime()
        self._listener: PgListener | None = None

    def ring(self) -> None:
        """Tell every other controller that desired state changed (after the write committed)."""
        if self.store.is_postgres:
            with self.store.tx() as conn:
                conn.execute(text("SELECT pg_notify(:channel, :ringer)"), {"channel": CHANNEL, "ringer": self.ringer})
        elif self.file is not None:
            with contextlib.suppress(OSError):  # a ring lost: the other controllers' tick still sees it
                self.file.touch()
                os.utime(self.file)
            self._seen = self._mtime()  # our own ring is not news to us

    def listen(self, wake: Callable[[], None]) -> None:
        """On PostgreSQL, call ``wake`` (from the listener's thread) when another controller
        rings, and after each (re)connection of the LISTEN, since rings sent while it was away
        are lost. Elsewhere `rung` is asked instead."""
        if not self.store.is_postgres or self._listener is not None:
            return

        def heard(ringer: str) -> None:
            if ringer != self.ringer:
                wake()

        self._listener = PgListener(self.store.url, channel=CHANNEL, on_payload=heard, on_connect=wake)
        self._listener.start()

    def rung(self) -> bool:
        """Whether another process on this SQLite file rang since the last look (a stat)."""
        if self.file is None:
            return False
        now = self._mtime()
        if now == self._seen:
            return False
        self._seen = now
        return True

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    def _mtime(self) -> int:
        if self.file is None:
            return 0
        try:
            return os.stat(self.file).st_mtime_ns
        except OSError:
            return 0
