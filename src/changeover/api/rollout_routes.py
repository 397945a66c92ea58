"""Management endpoints for rollouts: start (from a spec), status, operator commands, rollback.

Starting a rollout (`apply`) runs the road's first step before any live traffic moves:

1. the spec is parsed (422 with every problem), then checked against the candidate
   (`domain.spec_checks`: every metric name in ``gate.require`` and ``shadow.require``, and
   every criterion that cannot be judged for this model; 422 with every problem);
2. the compatibility step, in the job runner's worker process (`evaluation.jobs`): the
   candidate's signature against the champion's, then the newest recorded production requests
   replayed through it (none recorded: the signature alone decides, and the evidence says so).
   A failure refuses the rollout with 409 and the evidence, and writes a ``compat.failed``
   event; a pass is written with the new rollout (``compat.passed``, and a ``compat`` analysis).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from changeover.api.app import ApiContext, actor_of, make_authorize
from changeover.api.data_files import confine, data_folders
from changeover.domain.plan import Traffic, describe
from changeover.domain.rollout import Command, RolloutStatus
from changeover.domain.spec import RolloutSpec, SpecError, parse_spec
from changeover.domain.spec_checks import spec_problems
from changeover.errors import Conflict, InvalidRequest, NotFound
from changeover.evaluation.jobs import apply_compat_job, compat_summary
from changeover.evaluation.metrics import metric_names
from changeover.evaluation.rules import referenced_ks
from changeover.store import tables as t
from changeover.store.store import Store, VersionRecord
from changeover.store.traffic import recent_traffic

REPLAY_LIMIT = 1000
"""Recorded requests (the newest) replayed through the candidate at apply."""


def gate_metrics(spec: RolloutSpec) -> list[str] | None:
    """The metric names the offline gate computes for the spec's task and cut-offs."""
    if spec.gate is None:
        return None
    ks = set(spec.gate.ks) | (referenced_ks(spec.gate.require) if spec.gate.task == "ranking" else set())
    return metric_names(spec.gate.task, sorted(ks))


def problems_response(problems: list[tuple[str, str]], what: str) -> JSONResponse:
    count = len(problems)
    lines = [f"{what} ({count} problem{'s' if count != 1 else ''}):"] + [f"  {f}: {r}" for f, r in problems]
    return JSONResponse({"error": "\n".join(lines), "problems": [{"field": f, "reason": r} for f, r in problems]},
                        status_code=422)


def running_rollout(store: Store, model: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(select(t.rollouts.c.id, t.rollouts.c.status).where(
            and_(t.rollouts.c.model == model, t.rollouts.c.active.is_(True)))).first()


def already_running(model: str, running: Any) -> Conflict:
    return Conflict(f"model {model!r} already has rollout {running.id} ({running.status.get('phase')}); abort it first")


def ask(store: Store, conn: Any, model: str, command: str, actor: str) -> int | None:
    """Hand an operator command to the model's active rollout (its id), or None when none is
    active. A compare-and-set on the rollout's empty command slot: a command racing another
    one still pending (not yet acted on by the controller) is refused with 409 naming it, so
    no command is ever overwritten unseen; the same command asked twice is asked once."""
    row = conn.execute(select(t.rollouts.c.id).where(
        and_(t.rollouts.c.model == model, t.rollouts.c.active.is_(True)))).first()
    if row is None:
        return None
    rid = int(row.id)
    taken = conn.execute(update(t.rollouts).where(and_(
        t.rollouts.c.id == rid, t.rollouts.c.active.is_(True), t.rollouts.c.command.is_(None))).values(command=command))
    if taken.rowcount == 0:  # another command got there first, or the rollout ended meanwhile
        now = conn.execute(select(t.rollouts.c.command, t.rollouts.c.active, t.rollouts.c.status)
                           .where(t.rollouts.c.id == rid)).first()
        if now.active and now.command == command:
            return rid
        if not now.active:
            raise Conflict(f"rollout {rid} of {model} ended meanwhile ({(now.status or {}).get('phase')}); "
                           f"nothing asked, look at its status and ask again")
        raise Conflict(f"rollout {rid} of {model} already has {now.command!r} pending (asked first); {command!r} "
                       f"not asked: wait for the controller to act on it, then ask again")
    store.add_event("command", f"{model}: {command} asked", model=model, actor=actor,
                    evidence={"rollout": rid, "command": command}, conn=conn)
    return rid


def record_compat(store: Store, candidate: VersionRecord, result: dict[str, Any], actor: str,
                  rollout_id: int | None = None, conn: Any = None) -> None:
    """The compatibility step's verdict with its evidence: a ``compat`` analysis and a
    ``compat.passed`` / ``compat.failed`` event (of the rollout, when there is one)."""
    evidence = result | {"rollout": rollout_id}

    def write(c: Any) -> None:
        c.execute(insert(t.analyses).values(rollout_id=rollout_id, model=candidate.model, version=candidate.number,
                                            kind="compat", outcome=result["verdict"], evidence=evidence,
                                            at=time.time(), dedup=None))
        kind = "compat.passed" if result["verdict"] == "pass" else "compat.failed"
        store.add_event(kind, compat_summary(result), model=candidate.model, actor=actor, evidence=evidence, conn=c)

    if conn is not None:
        write(conn)
    else:
        with store.tx() as c:
            write(c)


def rollout_plan(store: Store, spec: RolloutSpec, champion: int) -> list[str]:
    """How long the first step will wait for evidence, at the champion's last hour of traffic."""
    seen = recent_traffic(store, spec.model, champion)
    traffic = Traffic(rate=seen["rate"], error_rate=seen["error_rate"], latencies_ms=seen["latencies"])
    return describe(spec, traffic)


class RolloutStart(BaseModel):
    spec: dict[str, Any]


def rollout_view(store: Store, row: Any, *, detail: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row.id, "model": row.model, "spec": row.spec, "status": row.status,
                           "active": row.active, "command": row.command, "created_at": row.created_at,
                           "updated_at": row.updated_at}
    if detail:
        with store.engine.connect() as conn:
            analyses = conn.execute(select(t.analyses).where(t.analyses.c.rollout_id == row.id)
                                    .order_by(t.analyses.c.id)).all()
        out["analyses"] = [{"kind": a.kind, "outcome": a.outcome, "version": a.version, "at": a.at,
                            "evidence": a.evidence} for a in analyses]
        out["events"] = [e for e in store.events(row.model, limit=500)
                         if (e.get("evidence") or {}).get("rollout") == row.id]
    return out


def make_rollout_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[make_authorize(ctx)])
    store = ctx.store

    @router.post("/rollouts", status_code=201, summary="Start a rollout from a spec (refused when one runs)")
    async def start(body: RolloutStart, request: Request) -> JSONResponse:
        try:
            spec = parse_spec(body.spec)
        except SpecError as exc:
            return JSONResponse({"error": str(exc), "problems": [{"field": p, "reason": r} for p, r in exc.problems]},
                                status_code=422)
        candidate = await anyio.to_thread.run_sync(store.resolve, spec.model, spec.candidate)
        try:
            champion = await anyio.to_thread.run_sync(store.resolve, spec.model, spec.champion)
        except NotFound:
            raise InvalidRequest("champion", f"model {spec.model!r} has no {spec.champion!r} to compare with") from None
        if candidate.number == champion.number:
            raise InvalidRequest("candidate", f"v{candidate.number} is already the champion")
        problems = spec_problems(spec, candidate.signature, candidate=candidate.number, gate_metrics=gate_metrics(spec))
        if problems:
            return problems_response(problems, f"rollout spec that cannot be judged for {spec.model} v{candidate.number}")
        if spec.gate is not None:
            try:  # only a file in the data folders, kept as its real path (no symlink moved later)
                data = confine(spec.gate.data, data_folders(ctx.settings.data_dir, ctx.settings.data_folders))
            except InvalidRequest as exc:
                return problems_response([("gate.data", exc.reason)], "rollout spec whose data the server may not read")
            if not await anyio.to_thread.run_sync(data.is_file):
                return problems_response([("gate.data", f"no such file on the server: {spec.gate.data!r}")],
                                         "rollout spec that names a file that is not there")
            spec = spec.model_copy(update={"gate": spec.gate.model_copy(update={"data": str(data)})})
        running = await anyio.to_thread.run_sync(running_rollout, store, spec.model)
        if running is not None:  # told at once, not after a replay (checked again when the rollout is written)
            raise already_running(spec.model, running)
        actor = actor_of(request)

        # the road's first step, off the event loop (a worker process: it loads the candidate)
        compat = await ctx.jobs.run(apply_compat_job, store.url, ctx.registry.artifacts.locator, spec.model,
                                    candidate.number, champion.number, REPLAY_LIMIT, actor)
        if "error" in compat:
            raise InvalidRequest(compat["field"], compat["error"])
        if compat["verdict"] != "pass":
            await anyio.to_thread.run_sync(lambda: record_compat(store, candidate, compat, actor))
            return JSONResponse({"error": f"{spec.model} v{candidate.number} is not compatible with "
                                          f"v{champion.number}, no rollout started: {'; '.join(compat['causes'])}",
                                 "field": "candidate", "compat": compat}, status_code=409)
        if ctx.preflight is not None:
            await ctx.preflight(spec.model, candidate.number)

        def create() -> int:
            with store.tx() as conn:
                running = conn.execute(select(t.rollouts.c.id, t.rollouts.c.status).where(
                    and_(t.rollouts.c.model == spec.model, t.rollouts.c.active.is_(True)))).first()
                if running is not None:
                    raise already_running(spec.model, running)
                now = time.time()
                status = RolloutStatus().to_dict() | {"candidate_version": candidate.number,
                                                      "champion_version": champion.number}
                key = conn.execute(insert(t.rollouts).values(
                    model=spec.model, spec=spec.to_dict(), status=status, active=True, command=None,
                    created_at=now, updated_at=now)).inserted_primary_key
                assert key is not None
                rid = int(key[0])
                record_compat(store, candidate, compat, actor, rollout_id=rid, conn=conn)
                store.add_event("rollout.created", f"{spec.model}: rollout {rid} of v{candidate.number} "
                                f"against v{champion.number}", model=spec.model, actor=actor,
                                evidence={"rollout": rid, "spec": spec.to_dict()}, conn=conn)
                return rid

        try:
            rid = await anyio.to_thread.run_sync(create)
        except IntegrityError:  # another start won the race between the check and the insert
            def winner() -> Any:
                with store.engine.connect() as conn:
                    return conn.execute(select(t.rollouts.c.id, t.rollouts.c.status).where(
                        and_(t.rollouts.c.model == spec.model, t.rollouts.c.active.is_(True)))).first()

            running = await anyio.to_thread.run_sync(winner)
            if running is None:
                raise
            raise already_running(spec.model, running) from None
        ctx.wake()
        plan = await anyio.to_thread.run_sync(rollout_plan, store, spec, champion.number)
        return JSONResponse({"id": rid, "model": spec.model, "candidate": candidate.number,
                             "champion": champion.number, "compat": compat, "plan": plan}, status_code=201)

    @router.get("/rollouts", summary="Rollouts, newest first")
    async def list_rollouts(model: str | None = None, active: bool | None = None, limit: int = 20) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            q = select(t.rollouts)
            if model:
                q = q.where(t.rollouts.c.model == model)
            if active is not None:
                q = q.where(t.rollouts.c.active.is_(active))
            with store.engine.connect() as conn:
                rows = conn.execute(q.order_by(t.rollouts.c.id.desc()).limit(limit)).all()
            return [rollout_view(store, r) for r in rows]
        return await anyio.to_thread.run_sync(read)

    @router.get("/rollouts/{rid}", summary="One rollout with its verdicts and events")
    async def get_rollout(rid: int) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            with store.engine.connect() as conn:
                row = conn.execute(select(t.rollouts).where(t.rollouts.c.id == rid)).first()
            if row is None:
                raise InvalidRequest("id", f"no rollout {rid}")
            return rollout_view(store, row)
        return await anyio.to_thread.run_sync(read)

    @router.post("/models/{name}/rollout/{command}", summary="pause | resume | abort | promote | rollback")
    async def command(name: str, command: str, request: Request) -> dict[str, Any]:
        if command not in set(Command):
            raise InvalidRequest("command", f"one of {', '.join(Command)}; got {command!r}")

        def write() -> int | None:
            with store.tx() as conn:
                return ask(store, conn, name, command, actor_of(request))

        rid = await anyio.to_thread.run_sync(write)
        if rid is None:
            if command == "rollback":
                return await rollback(name, request)
            raise InvalidRequest("model", f"{name!r} has no active rollout")
        ctx.wake()
        return {"model": name, "rollout": rid, "command": command}

    @router.post("/models/{name}/rollback", summary="Instant rollback: the running rollout, or champion to previous")
    async def rollback(name: str, request: Request,
                       to: Annotated[int | None, Query(ge=1, description=(
                           "with no rollout running: the version to make champion (default: previous)"))] = None,
                       ) -> dict[str, Any]:
        """With a rollout running, roll it back. Otherwise move champion back: to ``previous``, but
        never to a version that failed its last rollout or its gate (409 saying why and what to
        do); ``to`` names the version explicitly (the audit log says it was chosen)."""
        actor = actor_of(request)

        def write() -> dict[str, Any]:
            with store.tx() as conn:
                rid = ask(store, conn, name, Command.ROLLBACK.value, actor)
                if rid is not None:
                    return {"model": name, "rollout": rid, "command": "rollback"}
            aliases = store.aliases(name)
            champion = aliases.get("champion")
            target = to if to is not None else aliases.get("previous")
            if target is None or target == champion:
                raise InvalidRequest("to" if to is not None else "model",
                                     f"{name!r} has no other version to roll back to (champion v{champion}"
                                     + ("" if to is not None else ", no previous") + "); give one with --to VERSION")
            store.version(name, target)  # 404 for a version that does not exist
            unsafe = store.why_unsafe(name, target)
            if unsafe is not None and to is None:
                raise Conflict(f"rollback of {name} refused, nothing moved: the previous champion {unsafe}. "
                               f"Choose the version to serve with `changeover rollback {name} --to VERSION`")
            reason = "rollback" if to is None else f"rollback to v{target}, chosen" + (
                f" although {unsafe}" if unsafe else "")
            with store.tx() as conn:
                store.set_alias(name, "champion", target, actor=actor, reason=reason, conn=conn, expect=champion)
                if champion is not None:
                    store.set_alias(name, "previous", champion, actor=actor, reason=reason, conn=conn)
            return {"model": name, "champion": target, "previous": champion}

        out = await anyio.to_thread.run_sync(write)
        ctx.wake()
        return out

    return router
