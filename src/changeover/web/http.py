"""HTTP helpers both apps share: JSON answers, body limits, and the one map from errors to status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from changeover.errors import (
    BackendFailed,
    BackendUnavailable,
    ChangeoverError,
    Conflict,
    InvalidInput,
    InvalidRequest,
    MalformedRequest,
    NotFound,
    PredictionFailed,
    Unavailable,
    UnsupportedMediaType,
)
from changeover.web.auth import AuthError


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body larger than {limit} bytes")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON; BodyTooLarge past ``limit``, MalformedRequest when it is not JSON."""
    return (await read_infer_body(request, limit))[0]


BINARY_HEADER = "inference-header-content-length"
# the body types a web page may POST to another origin without a preflight (a "simple" request):
# refused, so no page can infer or label requests through a user's browser
SIMPLE_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})


def check_content_type(headers: Mapping[str, str]) -> None:
    """UnsupportedMediaType (415) for a body type browsers send cross-origin unasked."""
    given = headers.get("content-type")
    if given is not None and given.split(";", 1)[0].strip().lower() in SIMPLE_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {given.split(';', 1)[0].strip()} is refused: send application/json (or "
            "application/octet-stream with the binary tensor extension)", "content-type")


def check_infer_headers(headers: Mapping[str, str], limit: int) -> None:
    """Before a body is read: UnsupportedMediaType for a type browsers send cross-origin
    unasked, BodyTooLarge when its declared length is past ``limit``."""
    check_content_type(headers)
    declared = headers.get("content-length")
    # isascii too: "³".isdigit() is true, and int("³") raises (headers are latin-1, b"\xb3" is "³")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)


def parse_infer_body(raw: bytes, headers: Mapping[str, str]) -> tuple[Any, bytes | None]:
    """The JSON part of a body and, with the binary tensor data extension (Triton/KServe:
    ``Inference-Header-Content-Length``), the raw bytes that follow it."""
    if not raw:
        raise MalformedRequest("the body is empty; expected JSON")
    binary: bytes | None = None
    header_length = headers.get(BINARY_HEADER)
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(raw):
            raise MalformedRequest(f"{BINARY_HEADER} must be a byte count within the body", BINARY_HEADER)
        raw, binary = raw[: int(header_length)], raw[int(header_length):]
    try:
        return orjson.loads(raw), binary
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not valid JSON ({exc})") from None


async def receive_body(receive: Any, limit: int) -> bytes:
    """A raw ASGI request's whole body; BodyTooLarge past ``limit``, ClientDisconnect when the
    client went away first."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False) and len(body) <= limit:
        return body  # the common case: one message
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        if size > limit:
            raise BodyTooLarge(limit)
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
    if size > limit:
        raise BodyTooLarge(limit)
    return b"".join(chunks)


async def read_infer_body(request: Request, limit: int,
                          headers: Mapping[str, str] | None = None) -> tuple[Any, bytes | None]:
    """`parse_infer_body` of a Starlette request's body, read up to ``limit`` bytes.
    ``headers``: the request's headers already read into a dict (lower-case names)."""
    if headers is None:
        headers = request.headers
    check_infer_headers(headers, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return parse_infer_body(b"".join(chunks), headers)


def status_of(exc: Exception) -> int:
    """The one map from errors to HTTP status codes (the gRPC endpoints map these on)."""
    if isinstance(exc, AuthError):
        return exc.status
    if isinstance(exc, BodyTooLarge):
        return 413
    if isinstance(exc, UnsupportedMediaType):
        return 415
    if isinstance(exc, MalformedRequest):
        return 400
    if isinstance(exc, InvalidInput | InvalidRequest):
        return 422
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, PredictionFailed):
        return 500
    if isinstance(exc, BackendFailed):  # a remote version's backend refused or answered badly
        return 502
    if isinstance(exc, Unavailable | BackendUnavailable):  # BackendUnavailable: timed out, or its breaker open
        return 503
    if isinstance(exc, ChangeoverError):
        return 409
    raise exc


def error_body(exc: Exception) -> dict[str, Any]:
    """What an error answer says: the message, and the field (and expectation) it is about."""
    if isinstance(exc, InvalidInput):
        return {"error": str(exc), "field": exc.field, "expected": exc.expected, "got": exc.got}
    if isinstance(exc, MalformedRequest | InvalidRequest):
        return {"error": str(exc), "field": exc.field}
    if isinstance(exc, PredictionFailed):
        return {"error": str(exc), "error_id": exc.error_id}
    if isinstance(exc, BackendFailed | BackendUnavailable):
        return {"error": str(exc), "backend": exc.url}
    if isinstance(exc, Conflict):  # lost to the state (a race, another rollout): the CLI exits 3, not 2
        return {"error": str(exc), "conflict": True}
    return {"error": str(exc)}


def error_response(exc: Exception, headers: dict[str, str] | None = None) -> Response:
    """Map a client-side error to its status; the message names the field. Errors that are
    not the project's are raised again (a bug: the server's 500)."""
    status = status_of(exc)
    if isinstance(exc, Unavailable | BackendUnavailable):
        headers = {**(headers or {}), "retry-after": str(exc.retry_after_s)}
    return json_response(error_body(exc), status, headers)
