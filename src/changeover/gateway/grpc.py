"""The gRPC endpoints of the data plane: the Open Inference Protocol's
``inference.GRPCInferenceService`` on a port of its own (``changeover serve --grpc-port``),
translated to and from the transport-agnostic core (`gateway.dataplane`), so routing,
stickiness (gRPC metadata are the headers), shadows, metrics and the request log are REST's.

Errors are REST's statuses (`web.http.status_of`) mapped to gRPC codes, the message as the
details; the trailing metadata carry ``x-request-id`` and, once a version was chosen,
``x-changeover-version``."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, NoReturn

import grpc

from changeover import oip_grpc
from changeover.errors import BackendUnavailable, ChangeoverError, MalformedRequest, Unavailable
from changeover.gateway.dataplane import DataPlane, InferCall, InferFailed
from changeover.gateway.rest import server_metadata
from changeover.protos import grpc_predict_v2_pb2 as pb
from changeover.protos import grpc_predict_v2_pb2_grpc as pb_grpc
from changeover.web.auth import AuthError
from changeover.web.http import status_of

log = logging.getLogger(__name__)

__all__ = ["GrpcEndpoints", "code_of"]

CODE_BY_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    500: grpc.StatusCode.INTERNAL,
    502: grpc.StatusCode.UNAVAILABLE,  # a remote version's backend failed
    503: grpc.StatusCode.UNAVAILABLE,
}
GRACE_S = 5.0  # in-flight calls get this long to finish when the server stops


def code_of(exc: Exception) -> grpc.StatusCode:
    """The gRPC code of an error: its HTTP status (the one map) translated."""
    return CODE_BY_STATUS.get(status_of(exc), grpc.StatusCode.UNKNOWN)


def headers_of(context: Any) -> dict[str, str]:
    """A call's metadata as the data plane reads headers (lower-case names, text values; the
    first of a repeated key, binary ``-bin`` entries left out)."""
    headers: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str):
            headers.setdefault(key.lower(), value)
    return headers


class GrpcEndpoints(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane, max_message_bytes: int) -> None:
        self.plane = plane
        self.max_message_bytes = max_message_bytes
        meta = server_metadata()
        self._server_metadata = pb.ServerMetadataResponse(name=meta["name"], version=meta["version"],
                                                          extensions=meta["extensions"])
        self._server: grpc.aio.Server | None = None

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); the port bound."""
        server = grpc.aio.server(options=[
            # past the body limit a call is refused (RESOURCE_EXHAUSTED), as REST answers 413
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", -1),
        ])
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self, server)
        bound = server.add_insecure_port(f"{host}:{port}")
        await server.start()
        self._server = server
        log.info("gRPC inference on %s:%s", host, bound)
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(GRACE_S)
            self._server = None

    # ---- errors ---------------------------------------------------------------------

    @staticmethod
    async def _abort(context: Any, exc: Exception, request_id: str | None = None,
                     version: int | None = None) -> NoReturn:
        trailing: list[tuple[str, str]] = []
        if request_id is not None:
            trailing.append(("x-request-id", request_id))
        if version is not None:
            trailing.append(("x-changeover-version", str(version)))
        if isinstance(exc, Unavailable | BackendUnavailable):
            trailing.append(("retry-after", str(exc.retry_after_s)))
        error_id = getattr(exc, "error_id", "")
        if error_id:
            trailing.append(("x-changeover-error-id", error_id))
        await context.abort(code_of(exc), str(exc), tuple(trailing))
        raise AssertionError("grpc.aio's abort raises")  # pragma: no cover

    # ---- health and metadata --------------------------------------------------------

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802 - the protocol's name
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.plane.ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self._server_metadata

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            ready = self.plane.model_ready(request.name, request.version or None)
        except ChangeoverError as exc:
            await self._abort(context, exc)
        return pb.ModelReadyResponse(ready=ready)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            meta = await self.plane.model_metadata(request.name, request.version or None)
        except ChangeoverError as exc:
            await self._abort(context, exc)
        return oip_grpc.encode_model_metadata(meta)

    # ---- inference ------------------------------------------------------------------

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        started = time.perf_counter()
        plane = self.plane
        model = request.model_name
        headers: Mapping[str, str] = headers_of(context)
        try:
            try:
                plane.check_token(headers)
                if not model:
                    raise MalformedRequest("a model name is required", "model_name")
                decoded, meta = oip_grpc.decode_infer_request(request)
            except (ChangeoverError, AuthError) as exc:
                raise plane.rejected(model, exc, headers.get("x-request-id") or plane.new_request_id()) from None
            call = InferCall(model, headers, decoded, meta, pinned=request.model_version or None, started=started)
            answer = await plane.infer(call)
        except InferFailed as failed:
            await self._abort(context, failed.cause, failed.request_id, failed.version)
        context.set_trailing_metadata((("x-request-id", answer.request_id),
                                       ("x-changeover-version", str(answer.version))))
        return oip_grpc.encode_infer_response(answer.model, answer.version, answer.request_id, answer.outputs)

