"""The store on both SQLite and a real PostgreSQL: migrations, version numbering, aliases and
their history, the append-only audit log, traffic policy generations; and one real server
process whose store is PostgreSQL."""

from __future__ import annotations

import ast
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from changeover.cli.client import Client
from changeover.domain.policy import TrafficPolicy
from changeover.domain.signature import Signature, TensorSpec
from changeover.errors import AliasNotFound, ModelNotFound
from changeover.store import tables as t
from changeover.store.db import MIGRATIONS
from changeover.store.store import Store
from modelfiles import python_model
from postgres_fixture import PostgresServer
from serverproc import TOKEN, ServerProcess, running_server

SIG = Signature(inputs=(TensorSpec("x", "FP64", (-1, 2)),), outputs=(TensorSpec("y", "FP64", (-1,)),))
SRC = Path(__file__).resolve().parents[2] / "src" / "changeover"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    try:
        yield s
    finally:
        s.close()


def push(store: Store, model: str, sha: str, *, actor: str = "test", labels: dict[str, str] | None = None):
    return store.add_version(model=model, sha256=sha, runtime="python", artifact=f"sha256/{sha[:2]}/{sha}",
                             signature=SIG, labels=labels or {}, trusted=False, source="test", actor=actor)


def sha(n: int) -> str:
    return f"{n:064x}"


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def event_rows(store: Store) -> list[tuple]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(t.events).order_by(t.events.c.id)).all()]


# ---- migrations ---------------------------------------------------------------------------


def test_migrations_build_the_schema_from_an_empty_database(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
    finally:
        engine.dispose()
    store = Store(store_url)
    try:
        with store.engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            assert set(t.metadata.tables) <= names
            assert "alembic_version" in names
            assert MigrationContext.configure(conn).get_current_revision() == head_revision()
            # the migrations build exactly what the code reads: no drift between tables.py and them
            diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
            assert diff == [], diff
    finally:
        store.close()


def test_migrating_twice_is_idempotent_and_keeps_the_data(store_url: str) -> None:
    first = Store(store_url)
    try:
        record, created = push(first, "m", sha(1))
        assert created and record.number == 1
    finally:
        first.close()
    second = Store(store_url)  # runs the migrations again
    try:
        third = Store(store_url)
        third.close()
        assert [v.number for v in second.versions("m")] == [1]
        with second.engine.connect() as conn:
            revisions = conn.execute(sa.text("select version_num from alembic_version")).scalars().all()
        assert revisions == [head_revision()]
    finally:
        second.close()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.close()


# ---- versions -----------------------------------------------------------------------------


def test_versions_are_numbered_per_model_and_same_bytes_return_the_existing_one(store: Store) -> None:
    r1, c1 = push(store, "ranker", sha(1), labels={"team": "search"})
    r2, c2 = push(store, "ranker", sha(2))
    again, c3 = push(store, "ranker", sha(1), labels={"team": "other"})
    other, c4 = push(store, "fraud", sha(1))
    assert (r1.number, c1) == (1, True)
    assert (r2.number, c2) == (2, True)
    assert (again.number, c3) == (1, False)
    assert again.labels == {"team": "search"}  # immutable: the second push changed nothing
    assert (other.number, c4) == (1, True)  # numbering is per model
    assert store.models() == ["fraud", "ranker"]
    assert [v.number for v in store.versions("ranker")] == [1, 2]
    got = store.version("ranker", 2)
    assert got.sha256 == sha(2) and got.signature == SIG and got.runtime == "python"
    with pytest.raises(ModelNotFound):
        store.version("ranker", 3)
    with pytest.raises(ModelNotFound):
        store.versions("nope")
    pushes = [e for e in store.events("ranker") if e["kind"] == "push"]
    assert [e["evidence"]["version"] for e in pushes] == [1, 2]  # the repeated push wrote no event


def test_concurrent_pushes_of_different_artifacts_get_distinct_numbers(store: Store) -> None:
    n, rounds = 32, 1  # enough pushers at once that a loser of the race shows (5 retries used to run out)
    errors: list[BaseException] = []
    lock = threading.Lock()
    for r in range(rounds):
        model = f"busy{r}"
        barrier = threading.Barrier(n)
        results: list[int] = []

        def worker(i: int, r: int = r, model: str = model, barrier: threading.Barrier = barrier,
                   results: list[int] = results) -> None:
            try:
                barrier.wait()
                record, created = push(store, model, sha(1000 * r + i))
                assert created
                with lock:
                    results.append(record.number)
            except BaseException as exc:  # reported below
                with lock:
                    errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        assert not errors, f"{len(errors)} of {n} concurrent pushes failed: {errors[0]!r}"
        assert sorted(results) == list(range(1, n + 1))
        versions = store.versions(model)
        assert sorted(v.number for v in versions) == list(range(1, n + 1))
        assert len({v.sha256 for v in versions}) == n


def test_concurrent_pushes_of_the_same_artifact_make_one_version(store: Store) -> None:
    n = 6
    barrier = threading.Barrier(n)
    numbers: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            numbers.append(push(store, "same", sha(7))[0].number)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors, errors
    assert numbers == [1] * n
    assert [v.number for v in store.versions("same")] == [1]


def test_only_gate_and_profile_may_change_on_a_version(store: Store) -> None:
    push(store, "m", sha(1))
    store.set_version_field("m", 1, gate={"verdict": "pass"})
    assert store.version("m", 1).gate == {"verdict": "pass"}
    with pytest.raises(ValueError):
        store.set_version_field("m", 1, sha256=sha(9))
    assert store.version("m", 1).sha256 == sha(1)


# ---- aliases ------------------------------------------------------------------------------


def test_aliases_move_and_keep_their_history(store: Store) -> None:
    for i in (1, 2, 3):
        push(store, "m", sha(i))
    assert store.set_alias("m", "champion", 1, actor="alice") is None
    assert store.set_alias("m", "champion", 2, actor="bob", reason="better") == 1
    assert store.set_alias("m", "candidate", 3, actor="carol") is None
    assert store.set_alias("m", "champion", 1, actor="dave") == 2
    assert store.aliases("m") == {"champion": 1, "candidate": 3}
    history = store.alias_history("m")
    assert [(h["alias"], h["version"], h["previous"], h["actor"]) for h in history] == [
        ("champion", 1, None, "alice"),
        ("champion", 2, 1, "bob"),
        ("candidate", 3, None, "carol"),
        ("champion", 1, 2, "dave"),
    ]
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)
    assert store.resolve("m", "champion").number == 1
    assert store.resolve("m", "candidate").number == 3
    assert store.resolve("m", "2").number == 2
    assert store.resolve("m", 3).number == 3
    with pytest.raises(AliasNotFound):
        store.resolve("m", "previous")
    with pytest.raises(ModelNotFound):
        store.resolve("nope", "champion")
    with pytest.raises(ModelNotFound):
        store.set_alias("m", "champion", 9, actor="x")  # no such version
    assert store.aliases("m")["champion"] == 1
    alias_events = [e for e in store.events("m") if e["kind"] == "alias"]
    assert len(alias_events) == 4
    assert alias_events[1]["actor"] == "bob" and "better" in alias_events[1]["message"]
    assert alias_events[1]["evidence"] == {"alias": "champion", "version": 2, "previous": 1}


def test_an_alias_move_and_its_event_share_one_transaction(store: Store) -> None:
    push(store, "m", sha(1))
    push(store, "m", sha(2))
    store.set_alias("m", "champion", 1, actor="a")
    before = len(event_rows(store))
    with pytest.raises(RuntimeError), store.tx() as conn:
        store.set_alias("m", "champion", 2, actor="a", conn=conn)
        raise RuntimeError("abort the transaction")
    assert store.aliases("m") == {"champion": 1}
    assert len(store.alias_history("m")) == 1
    assert len(event_rows(store)) == before


# ---- events -------------------------------------------------------------------------------


def test_events_are_append_only(store: Store) -> None:
    snapshots = [event_rows(store)]

    def step() -> None:
        rows = event_rows(store)
        previous = snapshots[-1]
        assert len(rows) >= len(previous)
        assert rows[: len(previous)] == previous, "an existing event row changed"
        snapshots.append(rows)

    push(store, "m", sha(1))
    step()
    push(store, "m", sha(2))
    step()
    push(store, "m", sha(1))  # same bytes: no new row, no changed row
    step()
    store.set_alias("m", "champion", 1, actor="a")
    step()
    store.set_alias("m", "champion", 2, actor="a")
    step()
    store.set_version_field("m", 1, gate={"verdict": "fail"})
    step()
    assert store.add_event("note", "once", model="m", dedup="k1") is not None
    assert store.add_event("note", "twice", model="m", dedup="k1") is None  # dedup: not doubled
    step()
    with store.tx() as conn:
        store.write_policy(TrafficPolicy(model="m", champion=2), conn=conn, event_kind="policy", message="p", actor="c")
    step()
    assert len(snapshots[-1]) == 6
    kinds = [e["kind"] for e in store.events("m", limit=100)]
    assert kinds == ["push", "push", "alias", "alias", "note", "policy"]
    ids = [e["id"] for e in store.events(limit=100)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_events_filter_by_model_limit_and_after(store: Store) -> None:
    for i in range(5):
        store.add_event("note", f"a{i}", model="a", actor="t")
        store.add_event("note", f"b{i}", model="b", actor="t")
    a = store.events("a")
    assert [e["message"] for e in a] == [f"a{i}" for i in range(5)]
    newest = store.events("a", limit=2)
    assert [e["message"] for e in newest] == ["a3", "a4"]  # the newest, oldest first
    after = store.events(after=a[2]["id"])
    assert [e["message"] for e in after] == ["b2", "a3", "b3", "a4", "b4"]
    assert all(e["at"] <= time.time() and e["actor"] == "t" for e in a)


def test_no_code_updates_or_deletes_events() -> None:
    """The application never issues an UPDATE or a DELETE on ``events`` (checked in every module)."""
    offenders = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
                name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                if name in ("update", "delete") and node.args:
                    target = ast.unparse(node.args[0])
                    if target.split(".")[-1] == "events":
                        offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = " ".join(node.value.lower().split())
                if "update events" in text or "delete from events" in text:
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}")
    assert offenders == []


# ---- traffic policies ---------------------------------------------------------------------


def test_policy_generations_count_up_and_notify(store: Store) -> None:
    push(store, "m", sha(1))
    push(store, "m", sha(2))
    heard: list[tuple[str, int]] = []
    store.notifier.subscribe(lambda model, gen: heard.append((model, gen)))
    assert store.policy("m") is None
    for champion in (1, 2, 1):
        with store.tx() as conn:
            new = store.write_policy(TrafficPolicy(model="m", champion=champion), conn=conn, event_kind="policy",
                                     message=f"to v{champion}", actor="controller")
        store.after_commit_publish(new)
    policy = store.policy("m")
    assert policy is not None and policy.generation == 3 and policy.champion == 1
    assert store.generations() == {"m": 3}
    assert heard == [("m", 1), ("m", 2), ("m", 3)]
    policy_events = [e for e in store.events("m") if e["kind"] == "policy"]
    assert [e["evidence"]["generation"] for e in policy_events] == [1, 2, 3]


# ---- a real server on PostgreSQL ----------------------------------------------------------


@dataclass
class PgServer:
    server: ServerProcess
    url: str
    pushed: dict


@pytest.fixture(scope="module")
def pg_server(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """A `changeover serve` process whose store is a new PostgreSQL database, with `double` pushed
    (as `changeover models push` does) and made champion."""
    root = tmp_path_factory.mktemp("pg-server")
    database = f"changeover_srv_{uuid.uuid4().hex[:8]}"
    postgres_server.create_database(database)
    url = postgres_server.url(database)
    try:
        with running_server(root / "home", store=url) as server, server.client() as http:
            client = Client(url=server.url, token=TOKEN)
            try:
                folder = python_model(root / "double", "return {'y': inputs['x'].sum(axis=1) * 2}")
                pushed = client.push(folder, name="double", labels={"store": "pg"}, runtime=None, trust=True)
            finally:
                client.close()
            http.put("/api/models/double/aliases/champion", json={"version": 1}).raise_for_status()
            yield PgServer(server, url, pushed)
    finally:
        postgres_server.drop_database(database)


def infer_double(http: httpx.Client, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]}]}
    deadline = time.monotonic() + 10
    while True:
        response = http.post("/v2/models/double/infer", json=body, headers=headers)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_a_server_process_on_postgresql_pushes_aliases_and_serves(pg_server: PgServer) -> None:
    assert (pg_server.pushed["version"], pg_server.pushed["created"]) == (1, True)
    with pg_server.server.client() as http:
        response = infer_double(http)
        assert response.status_code == 200, response.text
        assert response.headers["x-changeover-version"] == "1"
        assert response.json()["outputs"][0]["data"] == [6.0, 14.0]
        feedback = http.post("/v1/feedback", json={"request_id": response.headers["x-request-id"], "label": 6.0})
        assert feedback.status_code == 201, feedback.text  # the request log is in PostgreSQL too
    assert not (pg_server.server.home / "store.db").exists()  # nothing went to SQLite
    engine = sa.create_engine(pg_server.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.select(t.versions.c.number).where(t.versions.c.model == "double")).scalars().all() == [1]
            assert conn.execute(sa.select(t.aliases.c.version).where(t.aliases.c.alias == "champion")).scalar() == 1
            kinds = conn.execute(sa.select(t.events.c.kind).order_by(t.events.c.id)).scalars().all()
            assert {"push", "alias", "policy"} <= set(kinds)
            assert conn.execute(sa.select(sa.func.count()).select_from(t.policies)).scalar() >= 1
    finally:
        engine.dispose()


def test_a_long_client_request_id_still_joins_feedback_on_postgresql(pg_server: PgServer) -> None:
    long_id = "trace-" + "0123456789abcdef" * 12  # 198 characters, as some tracing headers are
    with pg_server.server.client() as http:
        response = infer_double(http, headers={"x-request-id": long_id})
        assert response.status_code == 200 and response.headers["x-request-id"] == long_id
        feedback = http.post("/v1/feedback", json={"request_id": long_id, "label": 6.0})
    assert feedback.status_code == 201, feedback.text
