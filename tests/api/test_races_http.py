"""Operators racing: two management writes at once against a real server, on SQLite and on
PostgreSQL. One wins, the other gets a 409 naming the winner, and the audit log tells the
true order (the invariants live in the schema, not in a check before the write)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from changeover.cli.client import Client
from modelfiles import python_model
from serverproc import TOKEN, ServerProcess

Y = "[{name: y, datatype: FP64, shape: [-1]}]"
ROUNDS = 5


@pytest.fixture(params=["sqlite", "postgres"], scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp(f"races-{request.param}")
    store = None
    if request.param == "postgres":  # a database of its own under the shared test server
        import uuid

        pg = request.getfixturevalue("postgres_server")
        name = f"races_{uuid.uuid4().hex[:8]}"
        pg.create_database(name)
        store = pg.url(name)
    srv = ServerProcess(root / "home", store=store)
    srv.start()
    try:
        pusher = Client(url=srv.url, token=TOKEN)
        for model in ("r", "a"):
            for number in range(1, 5):
                folder = python_model(root / f"{model}{number}", f"return {{'y': inputs['x'][:, 0] * {number}.0}}",
                                      outputs=Y)
                assert pusher.push(folder, name=model, labels={}, runtime=None, trust=True)["version"] == number
        pusher.close()
        with srv.client() as api:
            for model in ("r", "a"):
                api.put(f"/api/models/{model}/aliases/champion", json={"version": 1}).raise_for_status()
        yield srv
    finally:
        srv.stop()


def at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(calls))
    out: list[httpx.Response | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        out[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]


def api(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=60)


def test_two_rollouts_started_at_once_one_wins(server: ServerProcess) -> None:
    spec = {"model": "r", "candidate": "2", "canary": {"steps": [10], "bake": "1h"}, "promote": "manual", "watch": 0}
    for _ in range(ROUNDS):
        with api(server) as a, api(server) as b:
            got = at_once(lambda: a.post("/api/rollouts", json={"spec": spec}),
                          lambda: b.post("/api/rollouts", json={"spec": spec}))
            codes = sorted(r.status_code for r in got)
            assert codes == [201, 409], [r.text for r in got]
            winner = next(r for r in got if r.status_code == 201).json()["id"]
            loser = next(r for r in got if r.status_code == 409).json()
            assert f"rollout {winner}" in loser["error"]
            active = a.get("/api/rollouts", params={"model": "r", "active": True}).json()
            assert [r["id"] for r in active] == [winner]
            a.post("/api/models/r/rollout/abort").raise_for_status()
            for _ in range(300):  # the controller ends it; aborting the one that ran starts no other
                running = a.get("/api/rollouts", params={"model": "r", "active": True}).json()
                assert all(r["id"] == winner for r in running)
                if not running:
                    break
                threading.Event().wait(0.1)
            assert not running


def test_two_alias_moves_at_once_one_wins_and_the_log_is_true(server: ServerProcess) -> None:
    """Either the store serialises the two moves (both 200, the second moving from the first's
    version) or they race (one 200, one 409 naming the winner); never two moves from one version."""
    for round_ in range(ROUNDS):
        with api(server) as a, api(server) as b:
            start = a.get("/api/models/a").json()["aliases"]["champion"]
            first, second = [v for v in (2, 3, 4, 1) if v != start][:2]
            got = at_once(lambda a=a, v=first: a.put("/api/models/a/aliases/champion", json={"version": v}),
                          lambda b=b, v=second: b.put("/api/models/a/aliases/champion", json={"version": v}))
            codes = sorted(r.status_code for r in got)
            assert codes in ([200, 200], [200, 409]), (round_, [r.text for r in got])
            won = [r.json() for r in got if r.status_code == 200]
            chain = sorted(won, key=lambda w: w["previous"] != start)
            assert chain[0]["previous"] == start
            if len(chain) == 2:
                assert chain[1]["previous"] == chain[0]["version"]
            else:
                lost = next(r for r in got if r.status_code == 409).json()
                assert f"now v{chain[0]['version']}" in lost["error"]
            now = a.get("/api/models/a").json()["aliases"]["champion"]
            assert now == chain[-1]["version"]
            # the audit log: this round's moves, each from the version it really moved from
            moves = [e["evidence"] for e in a.get("/api/events", params={"model": "a", "limit": 10000}).json()
                     if e["kind"] == "alias" and e["evidence"]["alias"] == "champion"][-len(chain):]
            assert [(m["previous"], m["version"]) for m in moves] == [(w["previous"], w["version"]) for w in chain]


def test_a_move_that_expects_a_version_is_refused_once_it_moved(server: ServerProcess) -> None:
    with api(server) as a:
        start = a.get("/api/models/a").json()["aliases"]["champion"]
        other = 1 if start != 1 else 2
        a.put("/api/models/a/aliases/champion", json={"version": other, "expect": start}).raise_for_status()
        stale = a.put("/api/models/a/aliases/champion", json={"version": start, "expect": start})
        assert stale.status_code == 409 and f"points at v{other}" in stale.json()["error"]
        assert a.get("/api/models/a").json()["aliases"]["champion"] == other
