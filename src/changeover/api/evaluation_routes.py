"""Management endpoints for the compatibility check, the offline gate and shadows."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import yaml
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from changeover.api.app import ApiContext, actor_of, file_name
from changeover.api.data_files import store_upload
from changeover.errors import InvalidRequest
from changeover.evaluation.jobs import compat_job, gate_job
from changeover.store import shadows as shadow_store


def require_from_policy(text: str) -> dict[str, Any]:
    """`--policy` YAML: a `require:` mapping, a `gate:` section, or a whole rollout spec."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InvalidRequest("policy", f"not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidRequest("policy", "expected a mapping")
    if "gate" in data and isinstance(data["gate"], dict):
        data = data["gate"]
    require = data.get("require", data)
    if not isinstance(require, dict):
        raise InvalidRequest("policy.require", "expected a mapping of metric -> rule")
    return require


def self_comparison(model: str, version: int, against: str, require: dict[str, Any]) -> str:
    """The note for a gate of a version against itself (``against`` resolves to it), or an
    InvalidRequest when a rule compares with the champion: that comparison would prove nothing."""
    relative = sorted(m for m, rule in require.items()
                      if isinstance(rule, dict) and ({"not_worse_than", "better_than"} & set(rule)))
    who = f"{model}'s {against}" if not against.isdigit() else f"--against {against}"
    if relative:
        raise InvalidRequest("against", f"v{version} is {who}: the rules on {', '.join(relative)} would compare "
                                        f"v{version} with itself; validate a candidate against it, or name another "
                                        "version with --against")
    return f"v{version} is {who}: it was compared with no other version; only its min/max rules applied"


class ShadowStart(BaseModel):
    version: str = Field(description="A version number or an alias")
    sample: float = Field(default=1.0, gt=0.0, le=1.0)
    requests: int | None = Field(default=None, gt=0, description="Stop after this many pairs")
    duration_s: float | None = Field(default=None, gt=0, description="Stop after this long")
    segment: str | None = Field(default=None, description="header:NAME or input:NAME to break figures down by")
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    require: dict[str, dict[str, Any]] = Field(default_factory=dict)


def make_evaluation_router(ctx: ApiContext) -> APIRouter:
    from changeover.api.app import make_authorize

    router = APIRouter(prefix="/api", dependencies=[make_authorize(ctx)])
    store = ctx.store

    @router.post("/models/{name}/versions/{ref}/compat", summary="Signature comparison and replay of recorded traffic")
    async def compat(name: str, ref: str, request: Request, against: str = "champion",
                     limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> JSONResponse:
        await anyio.to_thread.run_sync(store.resolve, name, ref)
        result = await ctx.jobs.run(compat_job, store.url, ctx.registry.artifacts.locator, name, ref, against,
                                    limit, actor_of(request))
        if "error" in result:
            raise InvalidRequest(result["field"], result["error"])
        ctx.wake()
        return JSONResponse(result)

    @router.post("/models/{name}/versions/{ref}/validate", summary="Offline gate: candidate against champion on data")
    async def validate(
        name: str, ref: str, request: Request,
        task: Annotated[str, Query(pattern="^(classification|regression|ranking)$")],
        filename: Annotated[str, Query(description="The data file's name (.csv or .parquet)")],
        target: str = "label", against: str | None = "champion", query_column: str | None = None,
        ks: Annotated[list[int] | None, Query()] = None, policy: str | None = None, report: bool = False,
        item_column: Annotated[str | None, Query(description="Ranking, (query, item, relevance) rows: the item id "
                                                             "column (default item_id or item)")] = None,
        segment: Annotated[str | None, Query(description="A column to break every metric down by")] = None,
    ) -> JSONResponse:
        candidate = await anyio.to_thread.run_sync(store.resolve, name, ref)
        require = require_from_policy(policy) if policy else {}
        itself = None
        if against:
            try:
                compared = await anyio.to_thread.run_sync(store.resolve, name, against)
            except Exception:
                if against != "champion":
                    raise
                against = None  # a first version has no champion: absolute rules only
            else:
                if compared.number == candidate.number:
                    itself = self_comparison(name, candidate.number, against, require)
                    against = None  # compared with nothing: its min/max rules only
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / file_name(filename)
            size = 0
            with open(path, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > ctx.settings.max_data_bytes:  # BodyLimit answers 413 first
                        raise InvalidRequest("data", f"larger than {ctx.settings.max_data_bytes} bytes")
                    fh.write(chunk)
            result = await ctx.jobs.run(gate_job, store.url, ctx.registry.artifacts.locator, name, ref, against,
                                        str(path), task, target, require, ks or [5, 10], query_column, report,
                                        actor_of(request), item_column=item_column, segment=segment)
        if "error" in result:
            raise InvalidRequest(result["field"], result["error"])
        if itself and isinstance(result.get("result"), dict):
            result["result"]["notes"] = [itself, *(result["result"].get("notes") or [])]
        return JSONResponse(result)

    @router.post("/data", status_code=201, summary="Send held-out data; a rollout spec's gate.data names the path answered")
    async def upload_data(
        filename: Annotated[str, Query(max_length=200, description="The data file's name (.csv or .parquet)")],
        request: Request,
    ) -> dict[str, Any]:
        """Kept content-addressed in the home's data folder, which a spec's ``gate.data`` may always
        name: the client's file reaches the server without the server reading a client's path."""
        path, sha, size = await store_upload(request.stream(), file_name(filename), ctx.settings.data_dir)
        return {"data": str(path), "sha256": sha, "bytes": size, "filename": path.name}

    @router.post("/models/{name}/shadows", status_code=201, summary="Start a shadow: a copy of live traffic")
    async def shadow_start(name: str, body: ShadowStart, request: Request) -> dict[str, Any]:
        record = await anyio.to_thread.run_sync(store.resolve, name, body.version)
        aliases = await anyio.to_thread.run_sync(store.aliases, name)
        if aliases.get("champion") == record.number:
            others = await anyio.to_thread.run_sync(lambda: [v.number for v in store.versions(name)])
            hint = next((f" (e.g. {name}@{v})" for v in sorted(others, reverse=True) if v != record.number), "")
            raise InvalidRequest("version", f"v{record.number} is {name}'s champion: a shadow compares another version "
                                            f"with the champion on the same requests, and v{record.number} against "
                                            f"itself would agree on every one; shadow a candidate{hint}")
        if body.segment and not body.segment.startswith(("header:", "input:")):
            raise InvalidRequest("segment", "expected header:NAME or input:NAME")
        if ctx.preflight is not None:
            await ctx.preflight(name, record.number)
        result = await anyio.to_thread.run_sync(lambda: shadow_store.start_shadow(
            store, name, record.number, sample=body.sample, until_requests=body.requests, until_s=body.duration_s,
            segment=body.segment, timeout_s=body.timeout_s, require=body.require, owner=None,
            actor=actor_of(request)))
        ctx.wake()
        return {"model": name, "version": record.number, **result}

    @router.delete("/models/{name}/shadows", summary="Stop shadows (all, or one version)")
    async def shadow_stop(name: str, request: Request, version: str | None = None) -> dict[str, Any]:
        from changeover.control.shadow_analysis import shadow_verdict

        active = await anyio.to_thread.run_sync(lambda: shadow_store.shadows(store, name, active_only=True))
        if version is not None:
            number = (await anyio.to_thread.run_sync(store.resolve, name, version)).number
            active = [s for s in active if s["version"] == number]
        stopped = []
        for s in active:
            def stop(s: dict[str, Any] = s) -> bool:
                verdict = shadow_verdict(store, name, s["version"], s["started_at"], s.get("require") or {})
                return shadow_store.stop_shadow(store, name, s["version"], actor=actor_of(request), reason="stopped",
                                                verdict=verdict)
            if await anyio.to_thread.run_sync(stop):  # False: a concurrent stop got there first (its event says so)
                stopped.append(s["version"])
        ctx.wake()
        return {"model": name, "stopped": stopped}

    @router.get("/models/{name}/shadows", summary="Shadows of a model, with their latest figures")
    async def shadow_list(name: str) -> list[dict[str, Any]]:
        return await anyio.to_thread.run_sync(lambda: shadow_store.shadows(store, name))

    @router.get("/models/{name}/shadows/report", summary="The comparison of a shadow with the champion")
    async def shadow_report(name: str, version: str | None = None, html: bool = False) -> dict[str, Any]:
        from changeover.control.shadow_analysis import shadow_figures
        from changeover.domain.comparison import judge_shadow

        all_shadows = await anyio.to_thread.run_sync(lambda: shadow_store.shadows(store, name))
        if version is not None:
            number = (await anyio.to_thread.run_sync(store.resolve, name, version)).number
            all_shadows = [s for s in all_shadows if s["version"] == number]
        if not all_shadows:
            raise InvalidRequest("version", f"model {name!r} has no shadow" + (f" v{version}" if version else ""))
        shadow = all_shadows[-1]
        figures, _ = await anyio.to_thread.run_sync(
            lambda: shadow_figures(store, name, shadow["version"], shadow["started_at"]))
        require = shadow.get("require") or {}
        verdict = shadow.get("verdict") or (judge_shadow(figures, require) if require and figures["overall"].get("pairs") else None)
        out: dict[str, Any] = {"model": name, "shadow": shadow, "figures": figures, "verdict": verdict}
        if html:
            from changeover.evaluation.shadow_report import render_shadow_html

            champions = figures.get("champion_versions") or [0]
            out["html"] = await anyio.to_thread.run_sync(
                lambda: render_shadow_html(name, champions[-1], shadow["version"], figures, verdict))
        return out

    return router
