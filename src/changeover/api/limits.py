"""Request-size limits on the management app: every body is bounded, before it is read.

FastAPI reads a JSON body whole before it parses it and before the token is checked, so an
unbounded body is memory any caller can take. JSON bodies are held to
CHANGEOVER_MAX_JSON_BYTES; the endpoints that take a file (a push, held-out data) to their own
limit. Past it: 413 naming the limit and its setting, at once when the declared length is past
it, else as soon as the bytes read are. (Inference and feedback have theirs in the gateway:
CHANGEOVER_MAX_BODY_BYTES.)
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.exceptions import HTTPException

from changeover.settings import Settings

# the endpoints whose body is a file: (method, path), the setting that bounds them
UPLOADS = (
    ("POST", re.compile(r"/api/models/[^/]+/versions"), "max_artifact_bytes"),
    ("POST", re.compile(r"/api/models/[^/]+/versions/[^/]+/validate"), "max_data_bytes"),
    ("POST", re.compile(r"/api/data"), "max_data_bytes"),
)


def limit_for(method: str, path: str, settings: Settings) -> tuple[int, str]:
    """The body limit of one request, and the setting it comes from."""
    for upload_method, pattern, setting in UPLOADS:
        if method == upload_method and pattern.fullmatch(path):
            return int(getattr(settings, setting)), setting
    return settings.max_json_bytes, "max_json_bytes"


def too_large(limit: int, setting: str) -> str:
    env = f"CHANGEOVER_{setting.upper()}"
    return f"request body larger than {limit} bytes ({limit / 1024**2:g} MiB), the limit {env} sets"


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


class BodyLimit:
    """ASGI middleware: the limit of `limit_for` on every HTTP request of the app it wraps."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = limit_for(scope["method"], scope["path"], self.settings)
        declared = declared_length(scope.get("headers") or [])
        if declared is not None and declared > limit:
            message = too_large(limit, setting)
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
            await send({"type": "http.response.body",
                        "body": orjson.dumps({"error": message, "field": "body", "limit": limit})})
            return
        size = 0

        async def limited() -> Any:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:  # FastAPI lets an HTTPException from the body's read through as it is
                    raise HTTPException(413, too_large(limit, setting))
            return message

        await self.app(scope, limited, send)
