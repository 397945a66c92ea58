"""The REST endpoints of the data plane: Open Inference Protocol v2 (JSON and the binary
tensor data extension) and KServe v1, translated to and from the transport-agnostic core
(`gateway.dataplane`). They run in a Starlette router of their own, with no middleware, which
`server.py` puts in front of the management app (`data_plane_paths`)."""

from __future__ import annotations

import os
import time
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route, Router

from changeover import oip
from changeover.errors import ChangeoverError, ModelNotFound
from changeover.gateway.dataplane import DataPlane, InferAnswer, InferCall, InferFailed
from changeover.web.auth import AuthError
from changeover.web.http import (
    BINARY_HEADER,
    BodyTooLarge,
    check_infer_headers,
    error_response,
    json_response,
    parse_infer_body,
    read_json,
    receive_body,
)

__all__ = ["RestEndpoints", "is_data_plane_path", "is_v1_liveness", "server_metadata"]

SERVER_NAME = "changeover"
EXTENSIONS = ["binary_tensor_data", "model_repository_readonly", "kserve_v1"]


def server_metadata() -> dict[str, Any]:
    """The protocol's server metadata (``GET /v2``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("changeover")
    except PackageNotFoundError:  # pragma: no cover - a source tree without an install
        ours = "0"
    return {"name": SERVER_NAME, "version": ours, "extensions": EXTENSIONS}


def is_data_plane_path(path: str) -> bool:
    """Whether a request path is the data plane's (inference, feedback, health, /metrics)."""
    return path.startswith(("/v2/", "/v1/models/")) or path in ("/v2", "/v1/feedback", "/metrics")


def is_v1_liveness(scope: dict[str, Any]) -> bool:
    """Whether a request is KServe v1's liveness probe: ``GET /`` from a client that does not ask
    for HTML (KServe's InferenceRESTClient sends ``Accept: */*``). Browsers ask for text/html
    and get the dashboard there."""
    if scope["path"] != "/" or scope["method"] not in ("GET", "HEAD"):
        return False
    accept = b",".join(v for k, v in scope["headers"] if k == b"accept")
    return b"text/html" not in accept


def _failure(failed: InferFailed) -> Response:
    headers = {"x-request-id": failed.request_id}
    if failed.version is not None:
        headers["x-changeover-version"] = str(failed.version)
    cause = failed.cause
    if isinstance(cause, AuthError):
        if cause.status == 401:
            headers["www-authenticate"] = "Bearer"
        return json_response({"error": str(cause)}, cause.status, headers)
    return error_response(cause, headers)


def _version(request: Request) -> str | None:
    """The path's version, if any; ModelNotFound unless ASCII (the core checks versions with
    ``str.isdigit()``, true of "³" too, which ``int()`` then refuses: a 500 it was)."""
    version: str | None = request.path_params.get("version")
    if version is not None and not version.isascii():
        raise ModelNotFound(request.path_params["model"], version)
    return version


def infer_target(path: str) -> tuple[str, str | None, bool] | None:
    """(model, pinned version, v1) of an inference path, matched by hand (the route table's
    regular expressions, tried one by one, cost more than the rest of routing); None for
    any other path, which the router then answers."""
    if path.startswith("/v2/models/"):
        parts = path.split("/")
        if len(parts) == 5 and parts[4] == "infer" and parts[3]:
            return parts[3], None, False
        if len(parts) == 7 and parts[4] == "versions" and parts[6] == "infer" and parts[3] and parts[5]:
            return parts[3], parts[5], False
        return None
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        model = path[11:-8]
        if model and "/" not in model:
            return model, None, True
    return None


def _header_value(value: str) -> bytes:
    """A header value as bytes: latin-1 (as it came), else (a body's id in any script) UTF-8
    percent-quoted, so no id can break the answer."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        from urllib.parse import quote

        return quote(value, safe="").encode()


_JSON_TYPE = (b"content-type", b"application/json")


class _InferRoute:
    """An inference route as a raw ASGI app (for the route table: the OpenAPI document and
    paths reached through the router)."""

    def __init__(self, rest: RestEndpoints, v1: bool) -> None:
        self.rest, self.v1 = rest, v1

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        params = scope["path_params"]
        await self.rest.infer(scope, receive, send, params["model"], params.get("version"), self.v1)


class RestEndpoints:
    def __init__(self, plane: DataPlane, max_body_bytes: int, metrics_registry: Any) -> None:
        self.plane = plane
        self.max_body_bytes = max_body_bytes
        self.registry = metrics_registry
        self._server_metadata = orjson.dumps(server_metadata())
        self._router: Router | None = None

    async def infer(self, scope: dict[str, Any], receive: Any, send: Any, model: str, pinned: str | None,
                    v1: bool) -> None:
        """One inference request, straight on ASGI: no Request or Response object on the way
        of an answer (errors are answered by Starlette's responses, which cost no matter)."""
        started = time.perf_counter()
        # one dict of the headers (names arrive lower-cased): the core reads several of them
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        plane = self.plane
        meta: dict[str, Any] = {}
        try:
            try:
                plane.check_token(headers)
                check_infer_headers(headers, self.max_body_bytes)
                body, binary = parse_infer_body(await receive_body(receive, self.max_body_bytes), headers)
                if v1:
                    call = InferCall(model, headers, instances=body, pinned=pinned, v1=True, started=started)
                else:
                    decoded, meta = oip.decode_infer_request(body, binary)
                    call = InferCall(model, headers, decoded, meta, pinned=pinned, started=started)
            except (ChangeoverError, BodyTooLarge, AuthError) as exc:
                raise plane.rejected(model, exc, headers.get("x-request-id") or plane.new_request_id()) from None
            answer = await plane.infer(call)
        except InferFailed as failed:
            await _failure(failed)(scope, receive, send)
            return
        except ClientDisconnect:  # nobody to answer
            return
        content_type, payload = self._answer(answer, meta, v1)
        head = [content_type, (b"content-length", str(len(payload[0]) + len(payload[1])).encode()),
                (b"x-request-id", _header_value(answer.request_id)),
                (b"x-changeover-version", str(answer.version).encode())]
        if payload[1]:
            head.append((BINARY_HEADER.encode(), str(len(payload[0])).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": payload[0] + payload[1] if payload[1] else payload[0]})

    @staticmethod
    def _answer(answer: InferAnswer, meta: dict[str, Any],
                v1: bool) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
        """(content-type header, (JSON part, binary part)) of an answer."""
        if v1:
            return _JSON_TYPE, (orjson.dumps(oip.encode_v1_predictions(answer.outputs),
                                             option=orjson.OPT_SERIALIZE_NUMPY), b"")
        binary = oip.binary_outputs(meta) if meta else False
        if binary:
            header, raw = oip.encode_infer_response_binary(answer.model, answer.version, answer.request_id,
                                                           answer.outputs, binary)
            head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
            return (b"content-type", b"application/octet-stream"), (head, raw)
        body = oip.encode_infer_response(answer.model, answer.version, answer.request_id, answer.outputs)
        return _JSON_TYPE, (orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), b"")

    # ---- endpoints ------------------------------------------------------------------

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def v1_live(self, request: Request) -> Response:
        return json_response({"status": "alive"})

    async def server_meta(self, request: Request) -> Response:
        return Response(self._server_metadata, media_type="application/json")

    async def health_ready(self, request: Request) -> Response:
        ready = self.plane.ready
        return json_response({"ready": ready}, 200 if ready else 503)

    async def metadata(self, request: Request) -> Response:
        try:
            meta = await self.plane.model_metadata(request.path_params["model"], _version(request))
        except ChangeoverError as exc:
            return error_response(exc)
        return json_response(meta)

    async def model_ready(self, request: Request) -> Response:
        model = request.path_params["model"]
        try:
            ready = self.plane.model_ready(model, _version(request))
        except ChangeoverError as exc:
            return error_response(exc)
        return json_response({"name": model, "ready": ready}, 200 if ready else 503)

    async def feedback(self, request: Request) -> Response:
        try:
            self.plane.check_feedback_token(request.headers)
        except AuthError as exc:
            return json_response({"error": str(exc)}, exc.status)
        try:
            body = await read_json(request, self.max_body_bytes)
            status, answer = await self.plane.feedback(body)
        except (ChangeoverError, BodyTooLarge) as exc:
            return error_response(exc)
        return json_response(answer, status)

    async def prometheus(self, request: Request) -> Response:
        """The metrics; with ``serve --workers`` (Prometheus' multiprocess folder set), those of
        every worker merged: counters and histograms summed, gauges the most recent."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import CollectorRegistry, multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return Response(generate_latest(merged), media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[Route]:
        return [
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.health_ready, methods=["GET"]),
            Route("/v2", self.server_meta, methods=["GET"]),
            Route("/v2/models/{model}", self.metadata, methods=["GET"]),
            Route("/v2/models/{model}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}", self.metadata, methods=["GET"]),
            Route("/v2/models/{model}/versions/{version}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{model}/infer", _InferRoute(self, v1=False), methods=["POST"]),
            Route("/v2/models/{model}/versions/{version}/infer", _InferRoute(self, v1=False), methods=["POST"]),
            Route("/v1/models/{model}:predict", _InferRoute(self, v1=True), methods=["POST"]),
            Route("/v1/models/{model}", self.model_ready, methods=["GET"]),
            Route("/v1/feedback", self.feedback, methods=["POST"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/", self.v1_live, methods=["GET"]),  # reached only as `is_v1_liveness` says
        ]

    def router(self) -> Router:
        """These routes and nothing else (no middleware)."""
        if self._router is None:
            self._router = Router(self.routes())
        return self._router

    def app(self) -> Any:
        """The data plane's own ASGI app: inference dispatched by hand (`infer_target`), every
        other path through `router`."""
        router = self.router()
        infer = self.infer

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["method"] == "POST":
                target = infer_target(scope["path"])
                if target is not None:
                    await infer(scope, receive, send, *target)
                    return
            await router(scope, receive, send)

        return app
