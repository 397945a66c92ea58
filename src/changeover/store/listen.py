"""PostgreSQL LISTEN/NOTIFY: a gateway replica hears of a new policy generation committed by
another process within milliseconds, instead of at its next poll."""

from __future__ import annotations

import logging
import threading

from changeover.store.db import Listener

log = logging.getLogger(__name__)
CHANNEL = "changeover_policy"


class PgListener:
    def __init__(self, sqlalchemy_url: str, listener: Listener) -> None:
        self.dsn = sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.listener = listener
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="changeover-pg-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            model, _, generation = note.payload.rpartition(":")
                            if generation.isdigit():
                                self.listener(model, int(generation))
            except Exception as exc:  # the store went away: the gateway keeps polling; try again
                log.warning("LISTEN %s failed: %s", CHANNEL, exc)
                self._stop.wait(2.0)
