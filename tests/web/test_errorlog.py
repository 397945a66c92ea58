from __future__ import annotations

import logging

import pytest

from changeover.web.errorlog import ErrorLog


def boom(n: int) -> None:
    if n >= 0:
        raise ValueError(f"cannot read row {n}")


def other() -> None:
    raise KeyError("x")


def raised(f, *args) -> BaseException:  # type: ignore[no-untyped-def]
    try:
        f(*args)
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("did not raise")


def test_one_traceback_per_kind_per_minute_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = ErrorLog(logging.getLogger("t.errorlog"), every_s=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, logger="t.errorlog"):
        logged = [log.error(raised(boom, i), f"prediction failed (error id e{i})", "m", "1") for i in range(1000)]
        assert logged.count(True) == 1
        assert log.error(raised(other), "prediction failed (error id k)", "m", "1")  # another kind
        assert log.error(raised(boom, 1), "prediction failed (error id v2)", "m", "2")  # another version
        now[0] = 61.0
        assert log.error(raised(boom, 5), "prediction failed (error id late)", "m", "1")
    lines = [r for r in caplog.records if r.name == "t.errorlog"]
    assert len(lines) == 4 and all(r.exc_info for r in lines)
    assert "error id e0" in lines[0].getMessage()
    assert "error id late" in lines[-1].getMessage() and "999 more like it since" in lines[-1].getMessage()
