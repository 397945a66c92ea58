"""The errors of the Python client: one class per kind of answer a caller handles differently,
each carrying what the server said (its message, the field it names, whether a 409 is a
conflict with the state). Built from an answer by one pure function, `api_error`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AuthError",
    "ChangeoverApiError",
    "ConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "Problem",
    "RefusedError",
    "ServerError",
    "UnavailableError",
    "api_error",
]


@dataclass(frozen=True)
class Problem:
    """One problem the server found in a request (a rollout spec names several at once)."""

    field: str
    reason: str


class ChangeoverApiError(Exception):
    """What the server answered instead of a success (or, with ``status`` 0, that no answer came).

    ``message`` is the server's own sentence; ``field`` the request field it names, where it names
    one; ``problems`` every problem of a request refused for several (a rollout spec);
    ``conflict`` is true for a 409 the server marks as a conflict with the state (another rollout
    active, a lost race), which a caller may retry after looking again; ``body`` the whole answer.
    """

    def __init__(self, status: int, message: str, body: Any = None, *, field: str | None = None,
                 conflict: bool = False, problems: tuple[Problem, ...] = (),
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        self.field = field
        self.conflict = conflict
        self.problems = problems
        self.retry_after = retry_after

    def __repr__(self) -> str:
        extra = f", field={self.field!r}" if self.field else ""
        return f"{type(self).__name__}(status={self.status}, message={self.message!r}{extra})"


class InvalidRequestError(ChangeoverApiError):
    """The request was wrong (400, 413, 415, 422, or a name refused before sending): fix the
    ``field`` it names, or each of ``problems``."""


class AuthError(ChangeoverApiError):
    """No token, or the wrong one (401, 403): set CHANGEOVER_TOKEN or pass ``token=``."""


class NotFoundError(ChangeoverApiError):
    """No such model, version, alias, rollout or served request (404)."""


class RefusedError(ChangeoverApiError):
    """A 409: the server will not do it as things are — an artifact it does not trust, a
    candidate that fails the compatibility step (``body["compat"]`` holds the evidence), a
    version that does not load."""


class ConflictError(RefusedError):
    """A 409 the server marks as a conflict with the state (``conflict`` is true): another
    rollout is active, an alias moved since it was read, a write lost a race. Look again, then retry."""


class UnavailableError(ChangeoverApiError):
    """Not now: the store or the disk is away, a version still loading (503, ``retry_after``
    seconds), or no server answered at all (``status`` 0)."""


class ServerError(ChangeoverApiError):
    """The server failed (500, 502): its log holds the rest."""


def _field_of(location: Any) -> str | None:
    """The field of a FastAPI validation error's ``loc`` (``["body", "version"]`` → ``version``)."""
    if not isinstance(location, list | tuple):
        return None
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def _class_of(status: int, conflict: bool) -> type[ChangeoverApiError]:
    if status in (401, 403):
        return AuthError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError if conflict else RefusedError
    if status == 503 or status == 0:
        return UnavailableError
    if 400 <= status < 500:
        return InvalidRequestError
    return ServerError


def api_error(status: int, body: Any, text: str = "", headers: Mapping[str, str] | None = None) -> ChangeoverApiError:
    """The error for an answer: its class by status, its message, field, problems and conflict
    mark as the server wrote them (``{"error": ..., "field": ...}``, a rollout spec's
    ``problems``, or FastAPI's ``{"detail": [...]}`` for a request that fails its schema)."""
    message: Any = text or f"HTTP {status}"
    field: str | None = None
    problems: tuple[Problem, ...] = ()
    conflict = False
    if isinstance(body, dict):
        message = body.get("error") or body.get("detail") or message
        if isinstance(message, list):  # FastAPI validation errors: where, and what is wrong there
            items = [e for e in message if isinstance(e, dict)]
            problems = tuple(Problem(_field_of(e.get("loc")) or "request", str(e.get("msg"))) for e in items)
            message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in items)
        if isinstance(body.get("problems"), list):
            problems = tuple(Problem(str(p.get("field")), str(p.get("reason"))) for p in body["problems"]
                             if isinstance(p, dict))
        field = body.get("field") if isinstance(body.get("field"), str) else None
        if field is None and problems:
            field = problems[0].field
        conflict = status == 409 and bool(body.get("conflict"))
    retry_after: float | None = None
    raw_retry = (headers or {}).get("retry-after")
    if raw_retry is not None:
        try:
            retry_after = float(raw_retry)
        except ValueError:
            retry_after = None
    return _class_of(status, conflict)(status, str(message), body, field=field, conflict=conflict,
                                       problems=problems, retry_after=retry_after)
