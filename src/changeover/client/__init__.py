"""The Python client of a changeover server: ``from changeover import Client``.

The CLI is built on it. Every method answers a typed result (``raw`` holds the server's JSON)
or raises a `ChangeoverApiError` carrying the server's message. See docs/client.md."""

from changeover.client.client import Client, load_spec
from changeover.client.errors import (
    AuthError,
    ChangeoverApiError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    Problem,
    RefusedError,
    ServerError,
    UnavailableError,
)
from changeover.client.results import (
    AliasMove,
    Compat,
    Feedback,
    GateResult,
    GateRule,
    Inference,
    Model,
    ModelStatus,
    Policy,
    Shadow,
    ShadowReport,
    Status,
    Version,
)
from changeover.client.rollouts import Analysis, Event, Events, Rollback, Rollout, RolloutCommand

__all__ = [
    "AliasMove", "Analysis", "AuthError", "ChangeoverApiError", "Client", "Compat", "ConflictError", "Event",
    "Events", "Feedback", "GateResult", "GateRule", "Inference", "InvalidRequestError", "Model", "ModelStatus",
    "NotFoundError", "Policy", "Problem", "RefusedError", "Rollback", "Rollout", "RolloutCommand", "ServerError",
    "Shadow", "ShadowReport", "Status", "UnavailableError", "Version", "load_spec",
]
