"""The store writer: batches rows off the request path, survives a store that goes away, and
says what it lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from changeover.gateway.recorder import StoreWriter
from changeover.store import tables as t
from changeover.store.store import Store


def request_row(i: int, request_id: str | None = None) -> dict[str, Any]:
    return {"request_id": request_id or f"r-{i}", "model": "m", "version": 1, "at": time.time(), "status": 200,
            "latency_ms": 1.0, "output": None, "inputs": None, "answer": None, "segment": None, "recorded": False}


def count_requests(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.requests)).scalar() or 0)


class Outage:
    """Makes the real store's transactions fail while on (as a database that is away does)."""

    def __init__(self, store: Store) -> None:
        self.store, self.on, self.real_tx = store, False, store.tx
        store.tx = self.tx  # type: ignore[method-assign]
        self.real_connect = store.engine.connect

    @contextmanager
    def tx(self) -> Iterator[Any]:
        if self.on:
            raise ConnectionError("the database is away")
        with self.real_tx() as conn:
            yield conn


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else \
        str(request.getfixturevalue("fresh_postgres_url"))
    s = Store(url)
    yield s
    s.close()


def writer_for(store: Store, **kw: Any) -> StoreWriter:
    return StoreWriter(store, retention_s=86400, max_recorded=10_000, max_requests=100_000, replica="r1", **kw)


def test_rows_are_written_in_batches_and_flush_waits_for_them(store: Store) -> None:
    writer = writer_for(store)
    writer.start()
    try:
        for i in range(3000):
            writer.put("requests", request_row(i))
        assert writer.flush(10)
        assert count_requests(store) == 3000 and writer.written == 3000 and writer.dropped == 0
    finally:
        writer.stop()


def test_the_writer_survives_an_outage_and_says_so(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    outage = Outage(store)
    # with the store away, the dedupe look-up cannot connect either
    monkeypatch.setattr(store.engine, "connect", lambda: (_ for _ in ()).throw(ConnectionError("away")))
    writer = writer_for(store, capacity=500)
    writer.start()
    try:
        outage.on = True
        for i in range(300):
            writer.put("requests", request_row(i))
        time.sleep(0.6)
        assert writer.stalled_since is not None and writer.written == 0
        for i in range(300, 900):  # past the buffer (the held batch is apart from it): dropped and counted, never blocking
            writer.put("requests", request_row(i))
        assert writer.dropped > 0
        dropped = writer.dropped
        outage.on = False
        monkeypatch.undo()
        assert writer.flush(15)
        assert writer.stalled_since is None
        assert count_requests(store) == 900 - dropped
        recovered = [e for e in store.events() if e["kind"] == "recorder.recovered"]
        assert len(recovered) == 1 and recovered[0]["evidence"]["dropped"] == dropped
        # and it goes on writing
        writer.put("requests", request_row(10_000))
        assert writer.flush(5) and count_requests(store) == 900 - dropped + 1
    finally:
        writer.stop()


def test_what_the_request_log_keeps_reads_back_as_it_was_served(store: Store) -> None:
    """The request log's fast insert: JSON columns round-trip (NaN, which JSON lacks, as null),
    and a served request is found by its id for feedback."""
    from changeover.store.traffic import served_request

    writer = writer_for(store)
    writer.start()
    try:
        row = request_row(1, "rid-json") | {
            "output": {"label": 2, "probabilities": [0.1, float("nan"), 0.9], "ranking": ["a", "b"]},
            "inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [1.5, 2.0]}],
            "answer": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [2]}],
            "segment": "eu", "recorded": True}
        writer.put("requests", row)
        assert writer.flush(5) and writer.written == 1
        got = served_request(store, "rid-json")
        assert got is not None
        assert got["output"] == {"label": 2, "probabilities": [0.1, None, 0.9], "ranking": ["a", "b"]}
        assert got["inputs"] == row["inputs"] and got["answer"] == row["answer"]
        assert got["segment"] == "eu" and got["recorded"] is True and got["version"] == 1
    finally:
        writer.stop()


def test_a_duplicate_request_id_does_not_sink_its_batch(store: Store) -> None:
    writer = writer_for(store)
    writer.start()
    try:
        writer.put("requests", request_row(0, "same"))
        assert writer.flush(5)
        for i in range(1, 50):
            writer.put("requests", request_row(i))
        writer.put("requests", request_row(99, "same"))
        assert writer.flush(10)
        assert count_requests(store) == 50
    finally:
        writer.stop()
