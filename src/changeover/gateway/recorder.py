"""Off the critical path: the request log, recorded traffic, metric windows and shadow pairs
go to the store from one writer thread. A request only appends its row to a bounded buffer
(no lock, no wake-up); the thread writes what has gathered in batches every `INTERVAL_S`.

The writer never dies and never blocks a request. A batch that fails is retried with
exponential back-off (`BACKOFF_S` … `MAX_BACKOFF_S`) until the store is back; meanwhile new
rows gather up to ``capacity`` and past it are dropped and counted (``dropped``,
``changeover_dropped_records_total``). A batch refused for its content (a duplicate request
id, chosen by a client) is written again without the duplicates, then dropped if it still
fails. When the store comes back after an outage, one ``recorder.recovered`` event says for
how long it was away and how many rows were dropped. ``stalled_since`` is when the current
outage began (None while writes succeed), which health and the judge read."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from typing import Any

from changeover.store import traffic
from changeover.store.store import Store

log = logging.getLogger(__name__)

INTERVAL_S = 0.1  # how often the writer looks for rows to write (bigger batches cost less per row)
BATCH = 5000  # rows per transaction at most
BACKOFF_S = 0.2  # the first wait after a failed batch; doubled per failure…
MAX_BACKOFF_S = 5.0  # …up to this


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
        replica: str = "",
    ) -> None:
        self.store = store
        self.retention_s = retention_s
        self.max_recorded = max_recorded
        self.max_requests = max_requests
        self.on_drop = on_drop
        self.capacity = capacity
        self.replica = replica
        self._rows: deque[tuple[str, dict[str, Any]]] = deque()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._busy = False  # the thread holds rows it has taken but not yet written or dropped
        self._thread = threading.Thread(target=self._run, name="changeover-writer", daemon=True)
        self._last_prune = 0.0
        self.dropped = 0
        self.written = 0
        self.failures = 0  # failed write attempts in all
        self.stalled_since: float | None = None
        self._dropped_at_stall = 0

    def start(self) -> None:
        self._thread.start()

    def put(self, kind: str, row: dict[str, Any]) -> None:
        """Queue one row of a kind (`traffic.REQUESTS`, `WINDOWS`, `SHADOW_PAIRS`; any thread);
        past ``capacity`` it is dropped and counted."""
        if len(self._rows) >= self.capacity:
            self._drop(1)
            return
        self._rows.append((kind, row))

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self.on_drop:
            try:
                self.on_drop(n)
            except TypeError:  # a counter's inc() takes the amount; a plain callback may not
                for _ in range(n):
                    self.on_drop()

    @property
    def pending(self) -> int:
        return len(self._rows)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until what was queued so far is written or dropped (tests, feedback joins and
        shutdown); False when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            if not self._rows and not self._busy:
                return True
            self._wake.set()
            time.sleep(0.005)
        return False

    def stop(self) -> None:
        self.flush()
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        backoff = BACKOFF_S
        batch: list[tuple[str, dict[str, Any]]] = []
        while not self._stop.is_set() or self._rows or batch:
            try:
                if not batch:
                    self._busy = True
                    while self._rows and len(batch) < BATCH:
                        batch.append(self._rows.popleft())
                if not batch:
                    self._busy = False
                    self._maybe_prune()
                    self._wake.wait(INTERVAL_S)
                    self._wake.clear()
                    continue
                if self._write(batch):
                    batch = []
                    backoff = BACKOFF_S
                    self._busy = bool(self._rows)
                    self._recovered()
                    if len(self._rows) < BATCH and not self._stop.is_set():
                        # let the next batch gather (unless catching up, or asked to flush): writing the
                        # few rows that came during a write, again and again, costs a GIL hand-off and
                        # a transaction per handful of requests
                        self._wake.wait(INTERVAL_S)
                        self._wake.clear()
                    continue
                if self._stop.is_set():  # shutting down with the store away: count what is lost
                    self._drop(len(batch) + len(self._rows))
                    batch = []
                    self._rows.clear()
                    break
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except Exception:  # never let the only writer die: log, count, go on
                log.exception("store writer: unexpected error; %d rows dropped", len(batch))
                self._drop(len(batch))
                batch = []
                self._stop.wait(BACKOFF_S)
        self._busy = False

    def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> bool:
        """Write one batch; False when it should be tried again later (the store is away).
        A batch refused for its content is written once more without duplicate request ids,
        and dropped (counted) when the store refuses it still."""
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for kind, row in batch:
            grouped[kind].append(row)
        try:
            self._insert(grouped)
            self.written += len(batch)
            return True
        except Exception as first:
            self.failures += 1
            error: Exception = first
        try:  # a duplicate request id (client-chosen) must not sink the others
            if traffic.REQUESTS in grouped:
                grouped[traffic.REQUESTS] = self._dedupe_requests(grouped[traffic.REQUESTS])
            else:
                self._ping()
        except Exception as exc:  # the store is away: keep the batch, try later
            self._stalled(exc)
            return False
        try:
            self._insert(grouped)
        except Exception as exc:
            try:
                self._ping()
            except Exception:
                self._stalled(exc)
                return False
            log.error("store writer: the store refused a batch of %d rows (%s; first: %s); dropped",
                      len(batch), exc, error)
            self._drop(len(batch))
            return True
        self.written += sum(len(rows) for rows in grouped.values())
        return True

    def _stalled(self, exc: Exception) -> None:
        if self.stalled_since is None:
            self.stalled_since = time.time()
            self._dropped_at_stall = self.dropped
            log.warning("store writer: %s; retrying with back-off (requests are still served)", exc)

    def _ping(self) -> None:
        traffic.ping(self.store)

    def _insert(self, grouped: dict[str, list[dict[str, Any]]]) -> None:
        traffic.write_rows(self.store, grouped)

    def _recovered(self) -> None:
        if self.stalled_since is None:
            return
        since, self.stalled_since = self.stalled_since, None
        lost = self.dropped - self._dropped_at_stall
        away = time.time() - since
        log.warning("store writer: the store is back after %.1f s; %d rows dropped meanwhile", away, lost)
        try:
            self.store.add_event(
                "recorder.recovered",
                f"the store was away for {away:.1f} s; the request log, metric windows and shadow pairs were "
                f"held and written after it, {lost} rows dropped (buffer of {self.capacity} full)",
                actor=f"gateway:{self.replica}" if self.replica else "gateway",
                evidence={"since": since, "seconds": round(away, 3), "dropped": lost, "replica": self.replica})
        except Exception as exc:
            log.warning("store writer: could not record its recovery: %s", exc)

    def _dedupe_requests(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        known = traffic.known_request_ids(self.store, [r["request_id"] for r in rows])
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
        traffic.prune(self.store, now - self.retention_s, self.max_recorded, self.max_requests)
