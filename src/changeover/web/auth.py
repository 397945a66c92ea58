"""The management token: required on every management call (401 without, 403 wrong)."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def check_bearer(header: str | None, token: str) -> None:
    if not header:
        raise AuthError(401, "missing Authorization: Bearer <token>")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise AuthError(401, "expected Authorization: Bearer <token>")
    if not token or not secrets.compare_digest(given.strip().encode(), token.encode()):
        raise AuthError(403, "wrong token")


def _kept(token_file: Path) -> str:
    """The token another process wrote: waits (a second at most) while it is still being written."""
    for _ in range(100):
        kept = token_file.read_text().strip()
        if kept:
            return kept
        time.sleep(0.01)
    raise RuntimeError(f"{token_file} stays empty: remove it, or set CHANGEOVER_TOKEN")


def ensure_token(configured: str | None, token_file: Path) -> tuple[str, bool]:
    """The token to require: the configured one, the one kept in the home, or a new one
    (written with mode 0600). Returns (token, newly generated)."""
    if configured:
        return configured, False
    if token_file.exists():
        return _kept(token_file), False
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process on this home made it first: use that one
        return _kept(token_file), False
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, True


def read_token(configured: str | None, token_file: Path) -> str | None:
    """What the CLI sends: CHANGEOVER_TOKEN, else the token file in the home."""
    if configured:
        return configured
    if token_file.exists():
        return token_file.read_text().strip()
    return None
