"""Errors in the log without flooding it: a model that raises on every request writes one
traceback per kind of error per minute, and a count of the ones it held back.

A *kind* is (model, version, exception type, the line that raised). The first of a kind in a
minute is logged whole, with its error id (the one the answer carries); the others of that
minute only add to a count, which the next line of that kind states ("… and 3,812 more like
it since 10:02:07").
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ErrorLog"]


@dataclass
class _Kind:
    logged_at: float
    held: int = 0
    since: float = 0.0


class ErrorLog:
    def __init__(self, logger: logging.Logger, *, every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.logger = logger
        self.every_s = every_s
        self.clock, self.wall = clock, wall
        self._kinds: dict[tuple[str, ...], _Kind] = {}
        self._lock = threading.Lock()

    @staticmethod
    def kind_of(exc: BaseException, *scope: str) -> tuple[str, ...]:
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        return (*scope, type(exc).__qualname__, where)

    def error(self, exc: BaseException, message: str, *scope: str) -> bool:
        """Log ``message`` with the traceback of ``exc`` unless one of its kind was logged in the
        last ``every_s``; returns whether it was logged."""
        key = self.kind_of(exc, *scope)
        now = self.clock()
        with self._lock:
            kind = self._kinds.get(key)
            held_back = kind is not None and now - kind.logged_at < self.every_s
            if kind is not None and held_back:
                if kind.held == 0:
                    kind.since = self.wall()
                kind.held += 1
            else:
                held, since = (kind.held, kind.since) if kind is not None else (0, 0.0)
                self._kinds[key] = _Kind(logged_at=now)
                if len(self._kinds) > 10_000:  # kinds seen once long ago: forget them
                    cutoff = now - 10 * self.every_s
                    self._kinds = {k: v for k, v in self._kinds.items() if v.logged_at >= cutoff}
        if held_back:  # at debug level only: the id of every error stays findable when one asks for it
            self.logger.debug("%s: %s: %s (traceback held back)", message, type(exc).__name__, exc)
            return False
        if held:
            message += f" (and {held:,} more like it since {time.strftime('%H:%M:%S', time.localtime(since))})"
        self.logger.error(message, exc_info=(type(exc), exc, exc.__traceback__))
        return True
