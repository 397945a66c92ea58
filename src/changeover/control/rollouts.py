"""The rollout reconciler: one tick of one model's active rollout.

Each tick: take a snapshot (spec, status, observations), ask the pure ``decide``, then write
the new status, the traffic policy and every event in ONE transaction. Killed at any point,
it resumes from the stored status: events carry idempotency keys, verdicts are keyed by the
status' verdict counter, and the gate runs once per rollout.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from concurrent.futures import Future
from typing import Any

from sqlalchemy.exc import IntegrityError

from changeover.control.canary_analysis import Look, StageLooks, look_fields, summary
from changeover.control.interleave_analysis import InterleaveLooks
from changeover.control.shadow_analysis import shadow_verdict
from changeover.domain.policy import DEFAULT_STICKY_KEY, Interleave, Override, Shadow, TrafficPolicy
from changeover.domain.rollout import (
    Emit,
    FinishWatch,
    Judge,
    Observation,
    Phase,
    Promote,
    Rollback,
    RolloutStatus,
    RunGate,
    SetWeight,
    StartInterleave,
    StartShadow,
    StopInterleave,
    StopShadow,
    decide,
)
from changeover.domain.spec import RolloutSpec, parse_spec
from changeover.store import analyses
from changeover.store import rollouts as rollout_store
from changeover.store import shadows as shadow_store
from changeover.store.store import Store

log = logging.getLogger(__name__)


active_rollout = rollout_store.active
analysis_outcome = analyses.outcome



def stable_digest(text: str) -> str:
    """A short digest of ``text`` that is the same in every process (``hash()`` of a str is
    salted per process, so two controllers would not dedupe one event)."""
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


class RolloutReconciler:
    def __init__(self, store: Store, *, holder: str, run_gate: Any = None) -> None:
        self.store = store
        self.holder = holder
        self.run_gate = run_gate  # submits evaluation.jobs.gate_job to a worker process; returns a Future
        self._gates: dict[int, Future[Any]] = {}
        self.looks = StageLooks(store)
        self.interleave_looks = InterleaveLooks(store)

    # ---- observe ------------------------------------------------------------------------

    def _observe(self, row: dict[str, Any], spec: RolloutSpec, status: RolloutStatus,
                 now: float) -> tuple[Observation, Look | None]:
        rid = row["id"]
        meta = row["status"]
        champion, candidate = meta.get("champion_version"), meta.get("candidate_version")
        since = status.phase_started_at or row["created_at"]
        n = status.verdicts
        active = status.paused_from if status.phase is Phase.PAUSED else status.phase
        look: Look | None = None
        interleave: dict[str, Any] = {}
        if active is Phase.INTERLEAVING and spec.interleave is not None:
            look, counted = self.interleave_looks.look(rid, spec, champion, candidate, since, now=now)
            interleave = {"interleave_verdict": look.analysis.outcome, "interleave_requests": counted,
                          "interleave_reason": summary(look.analysis)}
        elif active is Phase.PROGRESSING and spec.canary is not None:
            began = status.bake_started_at or since  # each step's looks: nested within the step
            final = now >= (status.judge_after or 0.0)
            look = self.looks.look(rid, "canary", spec, champion, candidate, began, final=final, now=now,
                                   extensions=status.extensions)
        elif active is Phase.WATCHING:
            look = self.looks.look(rid, "watch", spec, champion, candidate, since, final=False, now=now)
        obs = Observation(
            gate=analysis_outcome(self.store, f"gate:{rid}"),
            shadow_requests=shadow_store.pair_count(self.store, spec.model, candidate, since)
            if status.phase is Phase.SHADOWING else 0,
            shadow_verdict=analysis_outcome(self.store, f"shadow:{rid}:{n}"),
            command=row["command"],
            **(interleave or look_fields(active is Phase.PROGRESSING, look)),
        )
        return obs, look

    # ---- one tick ---------------------------------------------------------------------------

    def reconcile(self, model: str) -> bool:
        row = active_rollout(self.store, model)
        if row is None:
            return False
        extra = row["status"]
        spec = parse_spec(row["spec"])
        status = RolloutStatus.from_dict({k: v for k, v in extra.items() if k in RolloutStatus.__dataclass_fields__})
        now = time.time()
        obs, look = self._observe(row, spec, status, now)
        new, actions = decide(spec, status, obs, now)
        for action in actions:
            if isinstance(action, RunGate):
                self._start_gate(row, spec)
            elif isinstance(action, Judge):
                self._judge(row, spec, status, action.kind, now)
        acted = look if look is not None and (new.verdicts > status.verdicts or new.phase != status.phase) else None
        # a step that starts waiting says on what in its event (no analysis row: nothing was decided)
        told = acted or (look if new.waiting and not status.waiting else None)
        self._commit(row, spec, status, new, actions, consumed=obs.command is not None, look=acted, told=told)
        if new.terminal:
            self.looks.forget(row["id"])
            self.interleave_looks.forget(row["id"])
        return True

    def _commit(self, row: dict[str, Any], spec: RolloutSpec, old: RolloutStatus, new: RolloutStatus,
                actions: list[Any], consumed: bool, look: Look | None = None, told: Look | None = None) -> None:
        rid, model = row["id"], spec.model
        meta = {k: v for k, v in row["status"].items() if k not in RolloutStatus.__dataclass_fields__}
        champion, candidate = meta["champion_version"], meta["candidate_version"]
        published = None
        with self.store.tx() as conn:
            current = self.store.policy(model, conn) or TrafficPolicy(model=model, champion=champion)
            policy = current
            messages: list[str] = []
            for action in actions:
                if isinstance(action, SetWeight):
                    weights = {candidate: float(action.percent)} if action.percent > 0 else {}
                    policy = policy.evolve(champion=champion, weights=weights, warm=(candidate,),
                                           sticky_key=self._sticky(spec), overrides=self._overrides(spec, champion, candidate))
                    messages.append(f"v{candidate} at {action.percent:g}%")
                elif isinstance(action, StartShadow):
                    s = spec.shadow
                    shadow = Shadow(candidate, sample=action.sample, timeout_s=s.timeout if s else 1.0,
                                    segment=s.segment if s else None)
                    policy = policy.evolve(shadows=tuple(x for x in policy.shadows if x.version != candidate) + (shadow,))
                    shadow_store.start_shadow(self.store, model, candidate, sample=action.sample, until_requests=None,
                                              until_s=None, segment=shadow.segment, timeout_s=shadow.timeout_s,
                                              require=None, owner=rid, actor=self.holder, conn=conn)
                    messages.append(f"shadow v{candidate}")
                elif isinstance(action, StartInterleave):
                    timeout = spec.interleave.timeout if spec.interleave else 1.0
                    policy = policy.evolve(champion=champion, sticky_key=self._sticky(spec), interleave=Interleave(
                        champion, candidate, sample=action.sample, k=action.k, timeout_s=timeout))
                    messages.append(f"interleaving v{champion} with v{candidate} on {action.sample * 100:g}%")
                elif isinstance(action, StopInterleave):
                    policy = policy.evolve(interleave=None)
                    messages.append("interleaving stopped")
                elif isinstance(action, StopShadow):
                    policy = policy.evolve(shadows=tuple(x for x in policy.shadows if x.version != candidate))
                    shadow_store.stop_shadow(self.store, model, candidate, actor=self.holder, reason="rollout", conn=conn)
                    messages.append("shadow stopped")
                elif isinstance(action, Promote):
                    held = {champion: float(action.holdback)} if action.holdback > 0 else {}
                    policy = policy.evolve(champion=candidate, weights=held, warm=(champion,), overrides=(), interleave=None,
                                           shadows=tuple(x for x in policy.shadows if x.version != candidate))
                    self.store.set_alias(model, "champion", candidate, actor=self.holder, reason=f"rollout {rid}", conn=conn)
                    self.store.set_alias(model, "previous", champion, actor=self.holder, reason=f"rollout {rid}", conn=conn)
                    messages.append(f"v{candidate} promoted, v{champion} kept warm"
                                    + (f" with {action.holdback:g}% held back" if held else ""))
                elif isinstance(action, Rollback):
                    policy = policy.evolve(champion=champion, weights={}, warm=(candidate,), overrides=(), interleave=None,
                                           shadows=tuple(x for x in policy.shadows if x.version != candidate))
                    aliases = self.store.aliases(model)
                    if aliases.get("champion") != champion:
                        self.store.set_alias(model, "champion", champion, actor=self.holder,
                                             reason=f"rollback of rollout {rid}", conn=conn)
                        # the rolled-back version stays warm under `previous`, as after any move
                        self.store.set_alias(model, "previous", candidate, actor=self.holder,
                                             reason=f"rollback of rollout {rid}", conn=conn)
                    messages.append(f"rolled back to v{champion}: {action.reason}")
                elif isinstance(action, FinishWatch):
                    policy = policy.evolve(warm=(), weights={})
                    messages.append(f"watch over, v{champion} no longer kept warm")
                elif isinstance(action, Emit):
                    evidence = {"rollout": rid, "status": new.to_dict()}
                    if (told or look) is not None:
                        evidence["analysis"] = (told or look).evidence  # type: ignore[union-attr]
                    self.store.add_event(action.kind, f"{model} rollout {rid}: {action.message}", model=model,
                                         actor=self.holder, evidence=evidence,
                                         dedup=f"rollout:{rid}:{action.kind}:{old.verdicts}:{old.step_index}:{old.phase}:{new.phase}:{stable_digest(action.message)}",
                                         conn=conn)
            if policy != current:
                published = self.store.write_policy(
                    policy, conn=conn, event_kind="policy", actor=self.holder,
                    message=f"{model}: " + "; ".join(messages), evidence={"rollout": rid},
                    dedup=f"policy:{rid}:{old.verdicts}:{old.step_index}:{old.phase}:{new.phase}:{new.weight}")
            if look is not None:
                kind = look.evidence["kind"]
                analyses.add(conn, rollout_id=rid, model=model, version=candidate, kind=kind,
                             outcome=look.analysis.outcome,
                             evidence=look.evidence | {"step": old.step_index, "weight": old.weight},
                             dedup=f"{kind}:{rid}:{old.verdicts}:{old.phase}:{new.phase}")
            values: dict[str, Any] = {"status": new.to_dict() | meta, "updated_at": time.time(),
                                      "active": not new.terminal}
            if consumed:
                values["command"] = None
            rollout_store.write(conn, rid, values)
        if published is not None:
            self.store.after_commit_publish(published)

    @staticmethod
    def _sticky(spec: RolloutSpec) -> str:
        return spec.canary.sticky_key if spec.canary else DEFAULT_STICKY_KEY

    @staticmethod
    def _overrides(spec: RolloutSpec, champion: int, candidate: int) -> tuple[Override, ...]:
        if spec.canary is None:
            return ()
        out = []
        for o in spec.canary.overrides:
            if o.route_header:
                out.append(Override(field=f"header:{o.header}" if o.header else None,
                                    values=(str(o.value),) if o.value is not None else (), version=None,
                                    allowed=(champion, candidate)))
                continue
            version = candidate if str(o.version) in ("candidate", str(candidate)) else champion
            if o.header:
                out.append(Override(field=f"header:{o.header}", values=(str(o.value),) if o.value is not None else (),
                                    version=version))
            elif o.keys:
                out.append(Override(field="key", values=tuple(o.keys), version=version))
        return tuple(out)

    # ---- gate and judges ------------------------------------------------------------------------

    def _start_gate(self, row: dict[str, Any], spec: RolloutSpec) -> None:
        rid = row["id"]
        future = self._gates.get(rid)
        if future is not None and not future.done():
            return
        if future is not None and future.done():
            result = future.exception() or future.result()
            if isinstance(result, BaseException) or "error" in result:
                reason = str(result) if isinstance(result, BaseException) else result["error"]
                self._record(row, "gate", "fail", {"error": reason}, f"gate:{rid}",
                             f"{spec.model} rollout {rid}: the gate could not run: {reason}")
            return
        if self.run_gate is None or spec.gate is None:
            return
        meta = row["status"]
        gate = spec.gate
        self._gates[rid] = self.run_gate(
            spec.model, str(meta["candidate_version"]), str(meta["champion_version"]), gate.data, gate.task,
            gate.target, {k: v.model_dump(exclude_none=True) for k, v in gate.require.items()}, list(gate.ks),
            gate.query_column, rid)

    def _record(self, row: dict[str, Any], kind: str, outcome: str, evidence: dict[str, Any], dedup: str,
                message: str) -> None:
        try:
            with self.store.tx() as conn:
                analyses.add(conn, rollout_id=row["id"], model=row["model"], version=row["status"]["candidate_version"],
                             kind=kind, outcome=outcome, evidence=evidence, dedup=dedup)
                self.store.add_event("analysis", message, model=row["model"], actor=self.holder,
                                     evidence=evidence | {"rollout": row["id"]}, conn=conn)
        except IntegrityError:
            pass  # this verdict was already stored (a restart between judge and commit)

    def _judge(self, row: dict[str, Any], spec: RolloutSpec, status: RolloutStatus, kind: str, now: float) -> None:
        rid, n = row["id"], status.verdicts
        dedup = f"{kind}:{rid}:{n}"
        if analysis_outcome(self.store, dedup) is not None:
            return
        candidate = row["status"]["candidate_version"]
        since = status.phase_started_at or row["created_at"]
        if kind == "shadow":  # canary and watch looks are taken at every tick (_observe)
            require = {k: v.model_dump(exclude_none=True) for k, v in spec.shadow.require.items()} if spec.shadow else {}
            with contextlib.suppress(IntegrityError):  # already judged (a restart between judge and commit)
                shadow_verdict(self.store, spec.model, candidate, since, require, rollout_id=rid, dedup=dedup)
