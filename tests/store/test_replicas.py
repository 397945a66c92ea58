"""Replica heartbeats: the last beat of each replica wins, and only the recent ones are read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from changeover.domain.judge_staleness import RecorderReport
from changeover.store import replicas
from changeover.store.store import Store


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("fresh_postgres_url")))
    s = Store(url)
    try:
        yield s
    finally:
        s.close()


def test_the_last_beat_of_each_replica_is_what_the_judge_reads(store: Store) -> None:
    replicas.beat(store, "a", stalled_since=None, now=100.0)
    replicas.beat(store, "b", stalled_since=None, now=100.0)
    replicas.beat(store, "b", stalled_since=95.0, pending=12, dropped=0, now=101.0)  # b cannot write since 95
    replicas.beat(store, "gone", stalled_since=10.0, now=20.0)  # silent since: not read
    assert replicas.reports(store, since=50.0) == [RecorderReport("a", None, 100.0), RecorderReport("b", 95.0, 101.0)]
    replicas.beat(store, "b", stalled_since=None, now=102.0)
    assert replicas.reports(store, since=101.5) == [RecorderReport("b", None, 102.0)]
