"""changeover: take a new ML model version to 100% of traffic, one judged step at a time.

``from changeover import Client`` is the Python client of a server (docs/client.md). Its names
are imported on first use, so ``import changeover`` imports nothing else (not the server, not
NumPy): a server's worker and a CLI start as fast as before."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from changeover.client import (
        AuthError,
        ChangeoverApiError,
        Client,
        ConflictError,
        InvalidRequestError,
        NotFoundError,
        RefusedError,
        ServerError,
        UnavailableError,
    )

__all__ = [
    "AuthError",
    "ChangeoverApiError",
    "Client",
    "ConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "RefusedError",
    "ServerError",
    "UnavailableError",
]


def __getattr__(name: str) -> Any:
    """The client's names, imported when first asked for (PEP 562)."""
    if name in __all__:
        import changeover.client

        return getattr(changeover.client, name)
    raise AttributeError(f"module 'changeover' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
