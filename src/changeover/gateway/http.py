"""Small HTTP helpers shared by the gateway's endpoints: JSON answers, body limits, errors."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from changeover.errors import (
    ChangeoverError,
    InvalidInput,
    InvalidRequest,
    MalformedRequest,
    NotFound,
)


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


async def read_infer_body(request: Request, limit: int) -> tuple[Any, bytes | None]:
    """The JSON part of a body and, with the binary tensor data extension (Triton/KServe:
    ``Inference-Header-Content-Length``), the raw bytes that follow it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise MalformedRequest("the body is empty; expected JSON")
    binary: bytes | None = None
    header_length = request.headers.get(BINARY_HEADER)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(raw):
            raise MalformedRequest(f"{BINARY_HEADER} must be a byte count within the body", BINARY_HEADER)
        raw, binary = raw[: int(header_length)], raw[int(header_length):]
    try:
        return orjson.loads(raw), binary
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not valid JSON ({exc})") from None


def error_response(exc: Exception, headers: dict[str, str] | None = None) -> Response:
    """Map a client-side error to its status; the message names the field."""
    if isinstance(exc, BodyTooLarge):
        return json_response({"error": str(exc)}, 413, headers)
    if isinstance(exc, MalformedRequest):
        return json_response({"error": str(exc), "field": exc.field}, 400, headers)
    if isinstance(exc, InvalidInput):
        return json_response(
            {"error": str(exc), "field": exc.field, "expected": exc.expected, "got": exc.got}, 422, headers
        )
    if isinstance(exc, InvalidRequest):
        return json_response({"error": str(exc), "field": exc.field}, 422, headers)
    if isinstance(exc, NotFound):
        return json_response({"error": str(exc)}, 404, headers)
    if isinstance(exc, ChangeoverError):
        return json_response({"error": str(exc)}, 409, headers)
    raise exc
