"""Off the critical path: the request log, recorded traffic, metric windows and shadow pairs
go to the store from one writer thread. A full queue drops (and counts) rows; it never
blocks or fails a request."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import Table, delete, func, insert, select

from changeover.store import tables as t
from changeover.store.store import Store

log = logging.getLogger(__name__)


class StoreWriter:
    def __init__(
        self,
        store: Store,
        *,
        retention_s: float,
        max_recorded: int,
        max_requests: int,
        on_drop: Any = None,
        capacity: int = 50_000,
    ) -> None:
        self.store = store
        self.retention_s = retention_s
        self.max_recorded = max_recorded
        self.max_requests = max_requests
        self.on_drop = on_drop
        self._queue: queue.Queue[tuple[Table, dict[str, Any]]] = queue.Queue(maxsize=capacity)
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="changeover-writer", daemon=True)
        self._last_prune = 0.0
        self.dropped = 0
        self.written = 0

    def start(self) -> None:
        self._thread.start()

    def put(self, table: Table, row: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait((table, row))
        except queue.Full:
            self.dropped += 1
            if self.on_drop:
                self.on_drop()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until what was queued so far is written (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return
            time.sleep(0.01)

    def stop(self) -> None:
        self.flush()
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                self._maybe_prune()
                continue
            batch = [first]
            while len(batch) < 2000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)
            for _ in batch:
                self._queue.task_done()
            self._maybe_prune()

    def _write(self, batch: list[tuple[Table, dict[str, Any]]]) -> None:
        grouped: dict[Table, list[dict[str, Any]]] = defaultdict(list)
        for table, row in batch:
            grouped[table].append(row)
        for attempt in range(3):
            try:
                with self.store.tx() as conn:
                    for table, rows in grouped.items():
                        conn.execute(insert(table), rows)
                self.written += len(batch)
                return
            except Exception as exc:  # the store may be away: retry a little, then drop
                log.warning("store writer: %s (attempt %d)", exc, attempt + 1)
                if attempt == 0 and t.requests in grouped:
                    # a duplicate request id (client-chosen) must not sink the others
                    grouped[t.requests] = self._dedupe_requests(grouped[t.requests])
                time.sleep(0.2 * (attempt + 1))
        self.dropped += len(batch)

    def _dedupe_requests(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [r["request_id"] for r in rows]
        with self.store.engine.connect() as conn:
            known = set(conn.execute(select(t.requests.c.request_id).where(t.requests.c.request_id.in_(ids))).scalars())
        seen: set[str] = set()
        out = []
        for r in rows:
            if r["request_id"] not in known and r["request_id"] not in seen:
                seen.add(r["request_id"])
                out.append(r)
        return out

    def _maybe_prune(self) -> None:
        now = time.time()
        if now - self._last_prune < 30:
            return
        self._last_prune = now
        try:
            self.prune(now)
        except Exception as exc:
            log.warning("prune failed: %s", exc)

    def prune(self, now: float | None = None) -> None:
        """Drop rows past retention, and the oldest past the row bounds."""
        now = now or time.time()
        cutoff = now - self.retention_s
        with self.store.tx() as conn:
            conn.execute(delete(t.requests).where(t.requests.c.at < cutoff))
            conn.execute(delete(t.shadow_pairs).where(t.shadow_pairs.c.at < cutoff))
            conn.execute(delete(t.metric_windows).where(t.metric_windows.c.end < cutoff))
            for recorded, bound in ((True, self.max_recorded), (False, self.max_requests)):
                count = conn.execute(select(func.count()).select_from(t.requests).where(t.requests.c.recorded == recorded)).scalar() or 0
                if count > bound:
                    edge = conn.execute(
                        select(t.requests.c.at).where(t.requests.c.recorded == recorded)
                        .order_by(t.requests.c.at.desc()).offset(bound).limit(1)
                    ).scalar()
                    if edge is not None:
                        conn.execute(delete(t.requests).where(t.requests.c.recorded == recorded, t.requests.c.at <= edge))
