"""The management API under /api: token-protected, described by OpenAPI. It writes desired
state (versions, aliases, rollouts) and wakes the controller; it never moves traffic itself."""

from __future__ import annotations

import errno
import shutil
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException

from changeover.api.jobs import JobRunner
from changeover.api.limits import BodyLimit
from changeover.errors import ChangeoverError, InvalidRequest, LoadFailed
from changeover.registry.service import Registry
from changeover.settings import Settings
from changeover.store.store import Store
from changeover.web.auth import AuthError, check_bearer
from changeover.web.http import error_response

UPLOAD_WRITE_BYTES = 1 << 20  # an upload is written in pieces of about this size

Preflight = Callable[[str, int], Awaitable[None]]
MAX_NUMBER = 2**31 - 1  # the largest version or id the store's INTEGER columns hold (PostgreSQL's int4)


def file_name(given: str, field: str = "filename") -> str:
    """The last part of a client's file name (no folder, no way out of a temporary folder)."""
    name = Path(given).name
    if not name or name in (".", ".."):
        raise InvalidRequest(field, "must be a file name")
    return name


class AliasMove(BaseModel):
    version: int = Field(ge=1, le=MAX_NUMBER, description="The version the alias should point at")
    reason: str = Field(default="", max_length=500)
    expect: int | None = Field(default=None, ge=1, le=MAX_NUMBER, description=(
        "Move only if the alias still points at this version (compare-and-set); else 409 naming "
        "the version it points at"))


class ApiContext:
    """What the endpoints need, handed over by the server."""

    def __init__(self, store: Store, registry: Registry, token: str, *, wake: Callable[[], None] = lambda: None,
                 preflight: Preflight | None = None, status_extra: Callable[[], dict[str, Any]] | None = None,
                 jobs: JobRunner | None = None, settings: Settings | None = None) -> None:
        self.jobs = jobs or JobRunner()
        self.settings = settings or Settings()  # the limits and data folders (serve reads the same environment)
        self.store = store
        self.registry = registry
        self.token = token
        self.wake = wake
        self.preflight = preflight
        self.status_extra = status_extra


def actor_of(request: Request) -> str:
    return request.headers.get("x-changeover-actor", "api")[:200]


def make_authorize(ctx: ApiContext) -> Any:
    def authorize(request: Request) -> None:
        check_bearer(request.headers.get("authorization"), ctx.token)

    return Depends(authorize)


def make_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[make_authorize(ctx)])
    store, registry = ctx.store, ctx.registry

    @router.get("/status", summary="Every model: champion, traffic policy, rollout")
    async def status() -> dict[str, Any]:
        def read() -> dict[str, Any]:
            out = []
            for model in store.models():
                policy = store.policy(model)
                out.append({
                    "model": model,
                    "aliases": store.aliases(model),
                    "versions": len(store.versions(model)),
                    "policy": policy.to_dict() if policy else None,
                })
            return {"models": out}
        result = await anyio.to_thread.run_sync(read)
        if ctx.status_extra:
            result.update(ctx.status_extra())
        return result

    @router.get("/models", summary="Models with their versions and aliases")
    async def list_models() -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            return [
                {"model": m, "versions": [v.number for v in store.versions(m)], "aliases": store.aliases(m)}
                for m in store.models()
            ]
        return await anyio.to_thread.run_sync(read)

    @router.get("/models/{name}", summary="One model: versions, aliases, alias history, policy")
    async def show_model(name: str) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            versions = store.versions(name)
            aliases = store.aliases(name)
            by_version: dict[int, list[str]] = {}
            for alias, number in aliases.items():
                by_version.setdefault(number, []).append(alias)
            policy = store.policy(name)
            return {
                "model": name,
                "versions": [v.to_dict(sorted(by_version.get(v.number, []))) for v in versions],
                "aliases": aliases,
                "alias_history": store.alias_history(name),
                "policy": policy.to_dict() if policy else None,
            }
        return await anyio.to_thread.run_sync(read)

    @router.get("/models/{name}/versions/{ref}", summary="One version, by number or alias")
    async def show_version(name: str, ref: str) -> dict[str, Any]:
        record = await anyio.to_thread.run_sync(store.resolve, name, ref)
        aliases = [a for a, v in store.aliases(name).items() if v == record.number]
        return record.to_dict(sorted(aliases))

    @router.post("/models/{name}/versions", status_code=201, summary="Push an artifact (raw bytes, or a .tar.gz of a folder)")
    async def push(
        name: str,
        request: Request,
        filename: Annotated[str, Query(description="The artifact's file name (its suffix tells the runtime)")],
        runtime: Annotated[str | None, Query()] = None,
        trust: Annotated[bool, Query(description="Trust the whole artifact: a pickle, a python folder (code that "
                                                 "runs in the server), a skops file with types skops does not trust")] = False,
        trust_type: Annotated[list[str] | None, Query(description="A skops type to trust, by name (repeatable), "
                                                                  "e.g. sklearn.tree._tree.Tree")] = None,
        origin: Annotated[str | None, Query(description="The folder's absolute path where it was pushed from: a "
                                                        "python folder there, in CHANGEOVER_TRUSTED_FOLDERS on the "
                                                        "server's disk and holding the same bytes, needs no trust")] = None,
        folder: Annotated[bool, Query(description="The body is a .tar.gz of a model folder")] = False,
        label: Annotated[list[str] | None, Query(description="k=v labels")] = None,
    ) -> JSONResponse:
        labels: dict[str, str] = {}
        for item in label or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise InvalidRequest("label", f"expected k=v, got {item!r}")
            labels[key] = value
        safe_name = file_name(filename)
        # the upload (up to CHANGEOVER_MAX_ARTIFACT_BYTES) is written and unpacked in worker threads: the
        # event loop serves inference meanwhile
        tmp = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp))
        try:
            upload = tmp / ("upload.tar.gz" if folder else safe_name)
            size = 0
            fh = await anyio.to_thread.run_sync(upload.open, "wb")
            try:
                buffer: list[bytes] = []
                buffered = 0
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > ctx.settings.max_artifact_bytes:  # BodyLimit answers 413 first
                        raise InvalidRequest("body", f"artifact larger than {ctx.settings.max_artifact_bytes} bytes")
                    buffer.append(chunk)
                    buffered += len(chunk)
                    if buffered >= UPLOAD_WRITE_BYTES:
                        await anyio.to_thread.run_sync(fh.write, b"".join(buffer))
                        buffer, buffered = [], 0
                if buffer:
                    await anyio.to_thread.run_sync(fh.write, b"".join(buffer))
            finally:
                await anyio.to_thread.run_sync(fh.close)
            if size == 0:
                raise InvalidRequest("body", "the artifact is empty")
            path = upload
            if folder:
                path = tmp / safe_name.removesuffix(".tar.gz")

                def unpack() -> None:
                    path.mkdir()
                    with tarfile.open(upload, "r:gz") as archive:
                        archive.extractall(path, filter="data")

                try:
                    await anyio.to_thread.run_sync(unpack)
                except (tarfile.TarError, OSError) as exc:
                    raise InvalidRequest("body", f"not a readable .tar.gz of a folder ({exc})") from None
            record, created = await anyio.to_thread.run_sync(
                lambda: registry.push(path, name=name, labels=labels, runtime=runtime, trust=trust,
                                      trust_types=trust_type or (), origin=Path(origin) if origin else None,
                                      actor=actor_of(request), source=filename)
            )
        finally:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(tmp, ignore_errors=True))
        return JSONResponse(record.to_dict() | {"created": created}, status_code=201 if created else 200)

    @router.put("/models/{name}/aliases/{alias}", summary="Move an alias; moving champion swaps traffic with no failed request")
    async def set_alias(name: str, alias: str, move: AliasMove, request: Request) -> dict[str, Any]:
        if not alias.replace("-", "").replace("_", "").isalnum() or len(alias) > 64:
            raise InvalidRequest("alias", f"{alias!r} is not an alias name")
        record = await anyio.to_thread.run_sync(store.version, name, move.version)
        actor = actor_of(request)
        if alias == "champion" and ctx.preflight is not None:
            try:
                await ctx.preflight(name, record.number)
            except LoadFailed as exc:
                message, reason = str(exc), exc.reason
                await anyio.to_thread.run_sync(lambda: store.add_event(
                    "refused", f"champion of {name} stays: {message}", model=name, actor=actor,
                    evidence={"version": record.number, "reason": reason}))
                raise

        def write() -> int | None:
            with store.tx() as conn:
                previous = store.set_alias(name, alias, record.number, actor=actor, reason=move.reason, conn=conn,
                                           expect=move.expect)
                if alias == "champion" and previous is not None and previous != record.number:
                    store.set_alias(name, "previous", previous, actor=actor, reason="previous champion", conn=conn)
                return previous

        previous = await anyio.to_thread.run_sync(write)
        ctx.wake()
        return {"model": name, "alias": alias, "version": record.number, "previous": previous}

    @router.get("/events", summary="The audit log, oldest first")
    async def events(model: str | None = None, limit: Annotated[int, Query(ge=1, le=10000)] = 100,
                     after: Annotated[int, Query(ge=0, le=2**63 - 1, description="events with a larger id than this")] = 0) -> list[dict[str, Any]]:
        return await anyio.to_thread.run_sync(lambda: store.events(model, limit=limit, after=after))

    return router


def install_error_handlers(app: FastAPI, settings: Settings | None = None) -> None:
    """The one map from errors to answers on the management app, and its body limits (`limits`)."""
    app.add_middleware(BodyLimit, settings=settings or Settings())

    async def on_auth(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthError)
        headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)

    async def on_domain(request: Request, exc: Exception) -> Any:
        return error_response(exc)

    async def on_store(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DBAPIError)
        if isinstance(exc, IntegrityError):  # a write that lost a race the schema guards
            return JSONResponse({"error": f"the write conflicts with the store's state: {exc.orig}", "conflict": True},
                                status_code=409)
        if isinstance(exc, DataError):  # a value the column cannot hold (PostgreSQL: an int past int4)
            cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
            return JSONResponse({"error": f"a value the store cannot hold: {cause}"}, status_code=422)
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        orig = getattr(exc, "orig", None)
        if getattr(orig, "sqlite_errorcode", None) == 13 or getattr(orig, "sqlstate", None) == "53100":
            # SQLITE_FULL, PostgreSQL's disk_full: the store is there, its disk is not
            return JSONResponse({"error": f"the disk is full: the store cannot write ({cause}); free space, then retry",
                                 "cause": "disk"}, status_code=503, headers={"retry-after": "60"})
        return JSONResponse({"error": f"the store is unavailable: {cause}; retry shortly", "cause": "store"},
                            status_code=503, headers={"retry-after": "5"})

    def disk_full(exc: BaseException | None) -> bool:
        """ENOSPC/EDQUOT here or in what caused it; shutil.Error (a copy of a folder) carries
        its errors as text, with no errno of its own."""
        seen = 0
        while exc is not None and seen < 10:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return True
            if isinstance(exc, shutil.Error) and any("[Errno 28]" in str(a) or "[Errno 122]" in str(a) for a in exc.args):
                return True
            exc, seen = exc.__cause__ or exc.__context__, seen + 1
        return False

    async def on_os(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OSError)
        if disk_full(exc):
            return JSONResponse({"error": f"the disk is full: {exc.strerror or 'No space left on device'} ({exc.filename or 'the home'})",
                                 "cause": "disk"}, status_code=503, headers={"retry-after": "60"})
        raise exc

    async def on_overflow(request: Request, exc: Exception) -> JSONResponse:
        # SQLite's driver refuses a Python int past 64 bits before the query runs
        return JSONResponse({"error": f"a number past what the store holds ({exc}); numbers and ids are at most "
                                      f"{MAX_NUMBER}"}, status_code=422)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        # the framework's own refusals (a body that is not JSON, a method not allowed) in the
        # shape of every other error: ``error`` says why
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"error": detail, "detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = jsonable_encoder(exc.errors(), custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")})
        fields = [".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body" for e in errors]
        said = "; ".join(f"{f}: {e.get('msg', 'invalid')}" for f, e in zip(fields, errors, strict=True))
        return JSONResponse({"error": f"invalid request: {said}", "field": fields[0] if fields else None,
                             "detail": errors}, status_code=422)

    app.add_exception_handler(AuthError, on_auth)
    app.add_exception_handler(OverflowError, on_overflow)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(ChangeoverError, on_domain)
    app.add_exception_handler(DBAPIError, on_store)
    app.add_exception_handler(OSError, on_os)
