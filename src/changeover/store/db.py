"""Opening the store: engine, SQLite pragmas, Alembic migrations, change notifications."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import StaticPool

MIGRATIONS = Path(__file__).parent / "migrations"

Listener = Callable[[str, int], None]
"""Called with (model, generation) after a new traffic policy generation commits."""


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            engine = create_engine(
                url, connect_args={"check_same_thread": False}, poolclass=StaticPool
            )
        else:
            path = url.split("sqlite:///", 1)[-1]
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


MIGRATION_LOCK = 0x6368616E6765  # PostgreSQL advisory lock key of the migrations ("change")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent), one process at a time: under a
    PostgreSQL advisory lock held for the migration's transaction, or a file lock beside a
    SQLite database, so replicas started at the same instant on an empty database all come up
    (the first migrates, the others find the schema at head)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _sqlite_lock(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


@contextlib.contextmanager
def _sqlite_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Notifier:
    """Tells subscribers that a policy generation committed.

    In this process, at once. Across processes on one SQLite file (``serve --workers N``, or
    several servers on one home), through a signal file beside the database: a publish bumps
    its modification time, and a watcher thread in every subscribed process checks it every
    `WATCH_S` and tells its subscribers ``("", 0)``: "something changed, read the generations".
    On PostgreSQL, other processes hear it through LISTEN/NOTIFY (see ``pg_listen``);
    everywhere, gateways also poll slowly as the fallback.
    """

    WATCH_S = 0.02

    def __init__(self, signal_file: Path | None = None) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self.signal_file = signal_file
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    def subscribe(self, listener: Listener, *, watch: bool = True) -> None:
        """Call ``listener`` on each publish. With ``watch`` (and a signal file) a thread also
        watches the file for other processes' publishes; a subscriber with an event loop of its
        own watches it there instead (`signal_mtime`), which costs its loop a stat per look and
        no thread that takes the GIL from it 50 times a second."""
        with self._lock:
            self._listeners.append(listener)
            if watch and self.signal_file is not None and self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="changeover-generation-watch", daemon=True)
                self._watcher.start()

    def publish(self, model: str, generation: int) -> None:
        self._tell(model, generation)
        if self.signal_file is not None:
            with contextlib.suppress(OSError):  # a signal lost: the other processes' poll still sees it
                self.signal_file.touch()
                os.utime(self.signal_file)

    def _tell(self, model: str, generation: int) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            with contextlib.suppress(Exception):  # a listener's failure must not undo a committed write
                listener(model, generation)

    def signal_mtime(self) -> int | None:
        """The signal file's modification time (0 when it is missing); None without one."""
        return None if self.signal_file is None else self._mtime(str(self.signal_file))

    def _mtime(self, path: str) -> int:
        try:
            return os.stat(path).st_mtime_ns
        except OSError:
            return 0

    def _watch(self) -> None:
        assert self.signal_file is not None
        path = str(self.signal_file)
        seen = self._mtime(path)
        while not self._stop.is_set():
            time.sleep(self.WATCH_S)  # a sleep takes the GIL back once; an Event's wait, several times
            now = self._mtime(path)
            if now != seen:
                seen = now
                self._tell("", 0)

    def close(self) -> None:
        self._stop.set()
