"""The desired-state bell between controllers: a ring is heard by every other controller on the
same store (LISTEN/NOTIFY on a real PostgreSQL, a signal file on one SQLite file), not by the
one that rang, and a controller woken by it ticks at once instead of at its next timer tick."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from changeover.control.loop import Controller
from changeover.store.desired import DesiredStateBell
from changeover.store.store import Store


def test_on_one_sqlite_file_a_ring_is_news_to_the_others_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    a, b = Store(url), Store(url)
    try:
        ringer, hearer = DesiredStateBell(a, "a"), DesiredStateBell(b, "b")
        assert not hearer.rung()
        ringer.ring()
        assert not ringer.rung()  # its own ring
        assert hearer.rung()
        assert not hearer.rung()  # once
    finally:
        a.close()
        b.close()


def test_in_memory_there_is_nothing_to_ring() -> None:
    store = Store("sqlite://")
    try:
        bell = DesiredStateBell(store, "a")
        bell.ring()
        assert bell.file is None and not bell.rung()
    finally:
        store.close()


@pytest.mark.postgres
def test_on_postgres_the_others_hear_a_ring_and_the_ringer_does_not(fresh_postgres_url: str) -> None:
    a, b = Store(fresh_postgres_url), Store(fresh_postgres_url)
    heard: dict[str, threading.Event] = {"a": threading.Event(), "b": threading.Event()}
    bells = {"a": DesiredStateBell(a, "a"), "b": DesiredStateBell(b, "b")}
    try:
        connected = {name: threading.Event() for name in bells}
        for name, bell in bells.items():
            bell.listen(lambda n=name: (heard[n] if connected[n].is_set() else connected[n]).set())  # type: ignore[misc]
        for event in connected.values():  # the first call is the LISTEN connecting
            assert event.wait(10)
        bells["a"].ring()
        assert heard["b"].wait(2)
        time.sleep(0.3)
        assert not heard["a"].is_set()
    finally:
        for bell in bells.values():
            bell.close()
        a.close()
        b.close()


def test_a_ring_wakes_a_controller_between_its_ticks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    a, b = Store(url), Store(url)
    ctl = Controller(b, tick_s=60.0, holder="b")
    try:
        ctl.start()
        deadline = time.monotonic() + 10
        while ctl.ticks == 0:  # the first tick: it leads (there is no other)
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        before = ctl.ticks
        DesiredStateBell(a, "a").ring()
        deadline = time.monotonic() + 2
        while ctl.ticks == before:
            assert time.monotonic() < deadline, "the ring did not wake the controller"
            time.sleep(0.01)
    finally:
        ctl.stop()
        a.close()
        b.close()
