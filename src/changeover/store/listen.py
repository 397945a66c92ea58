"""PostgreSQL LISTEN/NOTIFY: a gateway replica hears of a new policy generation committed by
another process within milliseconds, instead of at its next poll; a controller hears that
desired state changed through another replica (``store/desired.py``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from changeover.store.db import Listener

log = logging.getLogger(__name__)
CHANNEL = "changeover_policy"


class PgListener:
    """One thread holding one LISTEN connection. A policy listener gets ``(model, generation)``;
    ``on_payload`` (for other channels) gets each notification's payload as it came.
    ``on_connect`` runs after each (re)connection: what was notified while the connection was
    away is lost, so a subscriber that must not miss a change reads the state again then."""

    def __init__(self, sqlalchemy_url: str, listener: Listener | None = None, *, channel: str = CHANNEL,
                 on_payload: Callable[[str], None] | None = None,
                 on_connect: Callable[[], None] | None = None) -> None:
        self.dsn = sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.listener = listener
        self.channel = channel
        self.on_payload = on_payload
        self.on_connect = on_connect
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"changeover-pg-listen-{channel}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _deliver(self, payload: str) -> None:
        if self.on_payload is not None:
            self.on_payload(payload)
            return
        model, _, generation = payload.rpartition(":")
        if generation.isdigit() and self.listener is not None:
            self.listener(model, int(generation))

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    if self.on_connect is not None:
                        self.on_connect()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._deliver(note.payload)
            except Exception as exc:  # the store went away: the subscriber keeps polling; try again
                log.warning("LISTEN %s failed: %s", self.channel, exc)
                self._stop.wait(2.0)
