"""A circuit breaker's state machine, pure: no I/O, no threads, time from a clock it is given.

    closed ──(``failures`` consecutive failures, or a failure rate of at least ``failure_rate``
              over the last ``window`` calls once ``min_calls`` were seen)──► open
    open ──(``cooldown_s`` elapsed: the next call is let through as the one probe)──► half_open
    half_open ──(the probe succeeds)──► closed      half_open ──(the probe fails)──► open

While open, and in half-open while the probe is out, `allow` refuses and says how long until
the next try. The caller serialises calls to one breaker (runtimes/remote.py holds a lock)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failures: int = 5  # consecutive failures that open it
    failure_rate: float = 0.5  # …or this share of failures over the last `window` calls
    window: int = 20
    min_calls: int = 10  # the rate is judged from this many calls on
    cooldown_s: float = 5.0  # open this long before one probe is let through

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window < 1 or self.min_calls < 1:
            raise ValueError("failures, window and min_calls must be at least 1")
        if not 0.0 < self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be in (0, 1]")
        if self.cooldown_s < 0:
            raise ValueError("cooldown_s must be at least 0")


@dataclass(frozen=True, slots=True)
class Transition:
    old: State
    new: State
    consecutive: int  # consecutive failures when it happened
    rate: float  # failure share of the recent window when it happened


class Breaker:
    def __init__(self, config: BreakerConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.state: State = "closed"
        self.consecutive = 0
        self.recent: deque[bool] = deque(maxlen=config.window)  # True: a failure
        self.opened_at = 0.0
        self.probing = False

    def retry_after_s(self) -> float:
        """Seconds until a call may be let through again (0 when closed)."""
        if self.state == "closed":
            return 0.0
        if self.state == "half_open":
            return self.config.cooldown_s if self.probing else 0.0
        return max(0.0, self.opened_at + self.config.cooldown_s - self.clock())

    def allow(self) -> tuple[bool, Transition | None]:
        """Whether a call may go now, and the transition that letting it go made (open →
        half_open: this call is the probe)."""
        if self.state == "closed":
            return True, None
        if self.state == "open":
            if self.clock() < self.opened_at + self.config.cooldown_s:
                return False, None
            self.probing = True
            return True, self._move("half_open")
        if self.probing:
            return False, None
        self.probing = True
        return True, None

    def success(self) -> Transition | None:
        self.consecutive = 0
        if self.state == "half_open":
            self.probing = False
            self.recent.clear()
            return self._move("closed")
        self.recent.append(False)
        return None

    def failure(self) -> Transition | None:
        self.consecutive += 1
        if self.state == "half_open":
            self.probing = False
            return self._open()
        if self.state == "open":  # a call let through before it opened came back failed
            return None
        self.recent.append(True)
        if self.consecutive >= self.config.failures:
            return self._open()
        if len(self.recent) >= self.config.min_calls and self.rate() >= self.config.failure_rate:
            return self._open()
        return None

    def release(self) -> None:
        """A call that was let through ended neither way (it never reached the backend): a
        half-open breaker may send another probe."""
        if self.state == "half_open":
            self.probing = False

    def rate(self) -> float:
        return sum(self.recent) / len(self.recent) if self.recent else 0.0

    def _open(self) -> Transition:
        self.opened_at = self.clock()
        return self._move("open")

    def _move(self, new: State) -> Transition:
        transition = Transition(self.state, new, self.consecutive, self.rate())
        self.state = new
        return transition


def retry_after_header(seconds: float) -> int:
    """A Retry-After value (whole seconds, at least 1) for ``seconds``."""
    return max(1, math.ceil(seconds))
