"""The client's errors from the server's answers (pure), and what `import changeover` costs."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import changeover
import changeover.client
from changeover import (
    AuthError,
    ChangeoverApiError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RefusedError,
    ServerError,
    UnavailableError,
)
from changeover.client.errors import Problem, api_error


@pytest.mark.parametrize(
    ("status", "body", "kind", "message", "field", "conflict"),
    [
        (404, {"error": "model 'x' not found"}, NotFoundError, "model 'x' not found", None, False),
        (422, {"error": "to: no other version", "field": "to"}, InvalidRequestError, "to: no other version", "to", False),
        (400, {"error": "request_id: required", "field": "request_id"}, InvalidRequestError, "request_id: required",
         "request_id", False),
        (415, {"error": "Content-Type text/plain is refused", "field": "content-type"}, InvalidRequestError,
         "Content-Type text/plain is refused", "content-type", False),
        (401, {"error": "missing Authorization: Bearer <token>"}, AuthError, "missing Authorization: Bearer <token>",
         None, False),
        (403, {"error": "wrong token"}, AuthError, "wrong token", None, False),
        (409, {"error": "already has rollout 3 (progressing)", "conflict": True}, ConflictError,
         "already has rollout 3 (progressing)", None, True),
        (409, {"error": "pickle artifacts run code: push with --trust"}, RefusedError,
         "pickle artifacts run code: push with --trust", None, False),
        (409, {"error": "v2 is not compatible", "field": "candidate", "compat": {}}, RefusedError,
         "v2 is not compatible", "candidate", False),
        (503, {"error": "the store is unavailable: gone; retry shortly", "cause": "store"}, UnavailableError,
         "the store is unavailable: gone; retry shortly", None, False),
        (500, {"error": "model m v1 failed: boom", "error_id": "e1"}, ServerError, "model m v1 failed: boom", None, False),
        (502, None, ServerError, "Bad Gateway", None, False),
        (404, {"detail": "Not Found"}, NotFoundError, "Not Found", None, False),
    ],
)
def test_an_answer_becomes_the_error_of_its_kind_with_the_servers_words(
        status: int, body: Any, kind: type[ChangeoverApiError], message: str, field: str | None, conflict: bool) -> None:
    error = api_error(status, body, "Bad Gateway")
    assert type(error) is kind
    assert (error.status, error.message, str(error), error.field, error.conflict) == (status, message, message,
                                                                                      field, conflict)
    assert error.body == body


def test_a_409_conflict_is_also_a_refusal_and_every_error_is_the_base() -> None:
    assert issubclass(ConflictError, RefusedError)
    for kind in (AuthError, ConflictError, InvalidRequestError, NotFoundError, RefusedError, ServerError,
                 UnavailableError):
        assert issubclass(kind, ChangeoverApiError)


def test_a_validation_error_names_its_field_and_a_spec_every_problem() -> None:
    fastapi = {"detail": [{"loc": ["body", "version"], "msg": "Input should be greater than or equal to 1"}]}
    error = api_error(422, fastapi)
    assert error.field == "version"
    assert error.message == "body.version: Input should be greater than or equal to 1"
    assert error.problems == (Problem("version", "Input should be greater than or equal to 1"),)

    spec = {"error": "rollout spec (2 problems)", "problems": [
        {"field": "canary.stepz", "reason": "unknown field (did you mean 'steps'?)"},
        {"field": "watch", "reason": "not a duration"}]}
    error = api_error(422, spec)
    assert error.field == "canary.stepz"
    assert [p.field for p in error.problems] == ["canary.stepz", "watch"]


def test_retry_after_is_read_and_a_repr_shows_status_and_field() -> None:
    error = api_error(503, {"error": "m v2 is loading; retry shortly"}, headers={"retry-after": "2"})
    assert error.retry_after == 2.0
    assert repr(api_error(422, {"error": "to: bad", "field": "to"})) == (
        "InvalidRequestError(status=422, message='to: bad', field='to')")


def test_every_exported_name_exists() -> None:
    for module in (changeover, changeover.client):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, (module.__name__, missing)
    assert changeover.Client is changeover.client.Client
    with pytest.raises(AttributeError):
        changeover.NoSuchThing  # noqa: B018


def test_importing_changeover_imports_nothing_heavy() -> None:
    """`import changeover` stays instant; `from changeover import Client` brings httpx, not the
    server, the store, the data plane or NumPy."""
    heavy = ("numpy", "pandas", "sqlalchemy", "fastapi", "changeover.server", "changeover.gateway",
             "changeover.store", "changeover.api")
    code = ("import sys, changeover\n"
            "print(sorted(m for m in sys.modules if m.startswith('changeover') or m == 'httpx'))\n"
            "from changeover import Client, NotFoundError\n"
            f"print([m for m in {heavy!r} if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    first, second = out.stdout.splitlines()
    assert first == "['changeover']"
    assert second == "[]"
