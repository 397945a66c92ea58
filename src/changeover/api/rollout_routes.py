"""Management endpoints for rollouts: start (from a spec), status, operator commands, rollback."""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import and_, insert, select, update

from changeover.api.app import ApiContext, actor_of, make_authorize
from changeover.domain.rollout import Command, RolloutStatus
from changeover.domain.spec import SpecError, parse_spec
from changeover.errors import Conflict, InvalidRequest, NotFound
from changeover.store import tables as t
from changeover.store.store import Store


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
        if ctx.preflight is not None:
            await ctx.preflight(spec.model, candidate.number)
        actor = actor_of(request)

        def create() -> int:
            with store.tx() as conn:
                running = conn.execute(select(t.rollouts.c.id, t.rollouts.c.status).where(
                    and_(t.rollouts.c.model == spec.model, t.rollouts.c.active.is_(True)))).first()
                if running is not None:
                    raise Conflict(f"model {spec.model!r} already has rollout {running.id} "
                                   f"({running.status.get('phase')}); abort it first")
                now = time.time()
                status = RolloutStatus().to_dict() | {"candidate_version": candidate.number,
                                                      "champion_version": champion.number}
                key = conn.execute(insert(t.rollouts).values(
                    model=spec.model, spec=spec.to_dict(), status=status, active=True, command=None,
                    created_at=now, updated_at=now)).inserted_primary_key
                assert key is not None
                rid = int(key[0])
                store.add_event("rollout.created", f"{spec.model}: rollout {rid} of v{candidate.number} "
                                f"against v{champion.number}", model=spec.model, actor=actor,
                                evidence={"rollout": rid, "spec": spec.to_dict()}, conn=conn)
                return rid

        rid = await anyio.to_thread.run_sync(create)
        ctx.wake()
        return JSONResponse({"id": rid, "model": spec.model, "candidate": candidate.number,
                             "champion": champion.number}, status_code=201)

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
                row = conn.execute(select(t.rollouts.c.id).where(
                    and_(t.rollouts.c.model == name, t.rollouts.c.active.is_(True)))).first()
                if row is None:
                    return None
                conn.execute(update(t.rollouts).where(t.rollouts.c.id == row.id).values(command=command))
                store.add_event("command", f"{name}: {command} asked", model=name, actor=actor_of(request),
                                evidence={"rollout": row.id, "command": command}, conn=conn)
                return int(row.id)

        rid = await anyio.to_thread.run_sync(write)
        if rid is None:
            if command == "rollback":
                return await rollback(name, request)
            raise InvalidRequest("model", f"{name!r} has no active rollout")
        ctx.wake()
        return {"model": name, "rollout": rid, "command": command}

    @router.post("/models/{name}/rollback", summary="Instant rollback: the running rollout, or champion to previous")
    async def rollback(name: str, request: Request) -> dict[str, Any]:
        def write() -> dict[str, Any]:
            with store.tx() as conn:
                row = conn.execute(select(t.rollouts.c.id).where(
                    and_(t.rollouts.c.model == name, t.rollouts.c.active.is_(True)))).first()
                if row is not None:
                    conn.execute(update(t.rollouts).where(t.rollouts.c.id == row.id).values(command="rollback"))
                    store.add_event("command", f"{name}: rollback asked", model=name, actor=actor_of(request),
                                    evidence={"rollout": row.id, "command": "rollback"}, conn=conn)
                    return {"model": name, "rollout": int(row.id), "command": "rollback"}
            aliases = store.aliases(name)
            previous = aliases.get("previous")
            if previous is None or previous == aliases.get("champion"):
                raise InvalidRequest("model", f"{name!r} has no previous champion to roll back to")
            with store.tx() as conn:
                store.set_alias(name, "champion", previous, actor=actor_of(request), reason="rollback", conn=conn)
                store.set_alias(name, "previous", aliases["champion"], actor=actor_of(request), reason="rollback",
                                conn=conn)
            return {"model": name, "champion": previous, "previous": aliases["champion"]}

        out = await anyio.to_thread.run_sync(write)
        ctx.wake()
        return out

    return router
