"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

import pytest

from changeover.domain.breaker import Breaker, BreakerConfig, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(**config: float) -> tuple[Breaker, Clock]:
    clock = Clock()
    return Breaker(BreakerConfig(**config), clock), clock  # type: ignore[arg-type]


def test_it_opens_after_n_consecutive_failures_and_refuses_fast_for_the_cooldown() -> None:
    b, clock = breaker(failures=3, cooldown_s=5.0)
    for _ in range(2):
        assert b.allow() == (True, None)
        assert b.failure() is None
    assert b.allow()[0]
    moved = b.failure()
    assert moved is not None and (moved.old, moved.new, moved.consecutive) == ("closed", "open", 3)
    assert b.state == "open"
    clock.now += 4.0
    assert b.allow() == (False, None)
    assert b.retry_after_s() == pytest.approx(1.0)
    assert retry_after_header(b.retry_after_s()) == 1


def test_a_success_resets_the_consecutive_count() -> None:
    b, _ = breaker(failures=3, min_calls=100)
    for _ in range(10):
        b.failure()
        b.failure()
        assert b.success() is None
    assert b.state == "closed"


def test_it_opens_on_a_failure_rate_over_the_window() -> None:
    b, _ = breaker(failures=100, failure_rate=0.5, window=10, min_calls=10)
    outcomes = [True, False] * 4 + [True]  # 9 calls: under min_calls, whatever the rate
    for failed in outcomes:
        assert (b.failure() if failed else b.success()) is None
    moved = b.success()  # the 10th call: 5 of 10 failed
    assert moved is None and b.state == "closed"  # a success never opens it…
    moved = b.failure()  # …the next failure does: 5 of the last 10 (the window slides)
    assert moved is not None and moved.new == "open" and moved.rate == pytest.approx(0.5)


def test_after_the_cooldown_one_probe_goes_and_its_success_closes_it() -> None:
    b, clock = breaker(failures=1, cooldown_s=2.0)
    b.failure()
    clock.now += 2.0
    allowed, moved = b.allow()
    assert allowed and moved is not None and (moved.old, moved.new) == ("open", "half_open")
    assert b.allow() == (False, None)  # only one probe at a time
    assert b.retry_after_s() > 0
    moved = b.success()
    assert moved is not None and (moved.old, moved.new) == ("half_open", "closed")
    assert b.allow() == (True, None) and b.retry_after_s() == 0.0


def test_a_failed_probe_opens_it_again_for_another_cooldown() -> None:
    b, clock = breaker(failures=1, cooldown_s=2.0)
    b.failure()
    clock.now += 2.5
    assert b.allow()[0]
    moved = b.failure()
    assert moved is not None and (moved.old, moved.new) == ("half_open", "open")
    assert b.allow() == (False, None)
    assert b.retry_after_s() == pytest.approx(2.0)
    clock.now += 2.0
    assert b.allow()[0]


def test_a_probe_that_never_reached_the_backend_lets_another_one_go() -> None:
    b, clock = breaker(failures=1, cooldown_s=1.0)
    b.failure()
    clock.now += 1.0
    assert b.allow()[0]
    b.release()
    assert b.allow() == (True, None) and b.state == "half_open"


def test_late_answers_of_calls_sent_before_it_opened_change_nothing() -> None:
    b, clock = breaker(failures=2, cooldown_s=5.0)
    b.failure()
    b.failure()
    assert b.failure() is None and b.success() is None
    assert b.state == "open" and b.allow() == (False, None)


def test_closing_forgets_the_old_failures() -> None:
    b, clock = breaker(failures=100, failure_rate=0.5, window=4, min_calls=4)
    for _ in range(4):
        b.failure()
    assert b.state == "open"
    clock.now += 10
    b.allow()
    b.success()
    assert b.state == "closed"
    for _ in range(3):
        assert b.failure() is None  # a fresh window: 3 calls are under min_calls
    assert b.failure() is not None


@pytest.mark.parametrize("bad", [{"failures": 0}, {"failure_rate": 0.0}, {"failure_rate": 1.5},
                                 {"cooldown_s": -1.0}, {"window": 0}])
def test_a_wrong_config_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerConfig(**bad)  # type: ignore[arg-type]
