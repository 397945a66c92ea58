"""The controller: a reconcile loop that turns desired state (aliases, rollouts) into traffic
policies. Each tick reads, decides in pure code, and writes the policy and its event in one
transaction. It never dies: an error becomes an event and the next tick tries again.

A change of desired state wakes it at once, whichever replica took the write: the API wakes its
own process' controller (`wake`), which rings the others (`store/desired.py`) from this thread;
the leader hears the ring and ticks."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from changeover.control import lease
from changeover.control.shadow_analysis import shadow_verdict
from changeover.domain.champion import policy_for_aliases
from changeover.domain.policy import TrafficPolicy
from changeover.store import replicas
from changeover.store import shadows as shadow_store
from changeover.store.desired import DesiredStateBell
from changeover.store.store import Store

log = logging.getLogger(__name__)

LEASE = "controller"
SIGNAL_LOOK_S = 0.1  # on one SQLite file, how often a waiting controller looks whether another rang

Reconciler = Callable[[str], list[TrafficPolicy]]


@dataclass(frozen=True)
class RecorderState:
    """What this process' recorder reports in its replica's heartbeat (`store/replicas.py`)."""

    replica: str
    stalled_since: float | None
    pending: int = 0
    dropped: int = 0


class Controller:
    def __init__(self, store: Store, *, tick_s: float = 1.0, holder: str | None = None) -> None:
        self.store = store
        self.tick_s = tick_s
        self.holder = holder or f"controller-{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._asked = threading.Event()  # desired state changed through this process: ring the others
        self._stop = threading.Event()
        self.bell = DesiredStateBell(store, self.holder)
        self._thread = threading.Thread(target=self._run, name="changeover-controller", daemon=True)
        self.rollouts: object | None = None  # the rollout reconciler (control/rollouts.py), set by the server
        # this replica's recorder, read at every tick for its heartbeat; set by the server (the
        # controller does not import the gateway)
        self.recorder: Callable[[], RecorderState] | None = None
        self.ticks = 0
        self.leading = False

    def start(self) -> None:
        self.bell.listen(self._wake.set)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.bell.close()
        if self.leading:
            with contextlib.suppress(Exception):
                lease.release(self.store, LEASE, self.holder)

    def wake(self) -> None:
        """Act now on a change of desired state, not at the next timer tick; and tell the
        other replicas' controllers, one of which may lead. Called on the event loop: the ring,
        a round trip to the store, is left to this controller's thread."""
        self._asked.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            if self._asked.is_set():
                self._asked.clear()
                try:
                    self.bell.ring()
                except Exception as exc:  # the store is away: the leader's next tick sees the change
                    log.warning("could not ring the other controllers: %s", exc)
            try:
                self.tick()
            except Exception as exc:  # the loop never dies
                log.error("controller tick failed: %s\n%s", exc, traceback.format_exc())
                with contextlib.suppress(Exception):
                    self.store.add_event("controller_error", f"controller tick failed: {exc}", actor=self.holder,
                                         dedup=None)
            self._wait()

    def _wait(self) -> None:
        """Until the next tick, a wake, or (on one SQLite file) another process' ring."""
        if self.bell.file is None:
            self._wake.wait(self.tick_s)
            return
        deadline = time.monotonic() + self.tick_s
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._wake.wait(min(left, SIGNAL_LOOK_S)) or self.bell.rung():
                return

    def tick(self) -> None:
        if not self.beat():
            return  # the leader judges only on a current heartbeat of its own recorder
        self.leading = lease.acquire(self.store, LEASE, self.holder, ttl_s=max(5.0, self.tick_s * 5))
        if not self.leading:
            return
        self.ticks += 1
        for model in self.store.models():
            try:
                self.reconcile(model)
            except Exception as exc:
                log.error("reconcile of %s failed: %s\n%s", model, exc, traceback.format_exc())
                self.store.add_event("controller_error", f"reconcile of {model} failed: {exc}", model=model,
                                     actor=self.holder)

    def beat(self) -> bool:
        """Every replica's controller, leading or not: its recorder's state in the store, read
        by the leader's judge (a stall makes a stage that sees no new windows wait). False when
        it could not be written (the store is away, or coming back)."""
        if self.recorder is None:
            return True
        state = self.recorder()
        try:
            replicas.beat(self.store, state.replica, stalled_since=state.stalled_since, pending=state.pending,
                          dropped=state.dropped)
        except Exception as exc:
            log.warning("heartbeat of %s failed: %s", state.replica, exc)
            return False
        return True

    def reconcile(self, model: str) -> None:
        if self.rollouts is not None and self.rollouts.reconcile(model):  # type: ignore[attr-defined]
            return  # an active rollout owns this model's traffic
        self.finish_shadows(model)
        published = None
        with self.store.tx() as conn:
            current = self.store.policy(model, conn)
            aliases = self.store.aliases(model)
            wanted = policy_for_aliases(model, current, aliases, shadow_store.policy_shadows(self.store, model))
            if wanted is not None:
                shadows = ", ".join(f"v{s.version} at {s.sample:g}" for s in wanted.shadows)
                published = self.store.write_policy(
                    wanted, conn=conn, event_kind="policy", actor=self.holder,
                    message=f"{model}: all traffic to champion v{wanted.champion}"
                    + (f", v{wanted.warm[0]} kept warm" if wanted.warm else "")
                    + (f", shadows {shadows}" if shadows else ""),
                )
        if published is not None:
            self.store.after_commit_publish(published)

    def finish_shadows(self, model: str) -> None:
        """Stop manual shadows that reached their request count or duration, with their verdict."""
        now = time.time()
        for shadow in shadow_store.shadows(self.store, model, active_only=True):
            if shadow.get("owner") is not None:
                continue  # a rollout's shadow: the rollout ends it
            version, started = shadow["version"], shadow["started_at"]
            until_s, until_n = shadow.get("until_s"), shadow.get("until_requests")
            done = (until_s and now >= started + until_s) or (
                until_n and shadow_store.pair_count(self.store, model, version, started) >= until_n)
            if not done:
                continue
            verdict = shadow_verdict(self.store, model, version, started, shadow.get("require") or {})
            shadow_store.stop_shadow(self.store, model, version, actor=self.holder, reason="limit reached",
                                     verdict=verdict)
