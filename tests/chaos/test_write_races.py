"""Operators racing: every pair of management writes sent at the same instant by real
concurrent clients (threads, httpx) to a real `changeover serve`, on SQLite and on a real
PostgreSQL. Where two writes conflict one wins and the other gets a 409 naming the winner
(or the store serialises them and the second acts on the first's result); where they commute
both succeed. In every case no write is lost: each success has its event in the audit log,
each refusal none, every command asked is acted on or refused with an event, and the log's
order is the order of the state changes (each alias move moves from the version the one
before it moved to, and the alias ends where the last one says)."""

from __future__ import annotations

import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaoslib import LONG, push_folder, record, scale, wait_until

from modelfiles import python_model
from serverproc import TOKEN, ServerProcess

Y = "[{name: y, datatype: FP64, shape: [-1]}]"
MODEL = "m"
# `make test`: a few pairs, the ones the schema and the command slot guard; `make chaos`: every
# pair once, and those again, more times
CORE = {"sqlite": [("start", "start"), ("alias", "alias"), ("promote", "rollback"), ("pause", "abort"),
                   ("shadow+", "shadow-"), ("push", "alias")],
        "postgres": [("start", "start"), ("alias", "rollback"), ("abort", "promote"), ("push", "push")]}
CORE_TRIES = scale(1, 4)
COMMANDS = ("pause", "resume", "abort", "promote")
WRITES = ("alias", "rollback", "start", "shadow+", "shadow-", "push", *COMMANDS)
# conflicting pairs that cannot be serialised: the first's state lasts (a rollout bakes an hour)
NEVER_BOTH = {("start", "start")}
EFFECT = {"pause": "rollout.paused", "resume": "rollout.resumed", "abort": "rollout.aborted",
          "promote": "promote.started", "rollback": "rollout.rolled_back"}
SPEC = {"model": MODEL, "candidate": "2", "canary": {"steps": [10], "bake": "1h"}, "promote": "manual", "watch": 0}


def pairs() -> list[tuple[str, str]]:
    return list(itertools.combinations_with_replacement(WRITES, 2))


def plan(store: str) -> list[tuple[str, str]]:
    """The races to run, in order, on one store."""
    return (pairs() if LONG else []) + CORE[store] * CORE_TRIES


@pytest.fixture(params=["sqlite", "postgres"], scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp(f"write-races-{request.param}")
    store = None
    if request.param == "postgres":  # a database of its own on the session's PostgreSQL
        pg = request.getfixturevalue("postgres_server")
        name = f"write_races_{uuid.uuid4().hex[:8]}"
        pg.create_database(name)
        store = pg.url(name)
    srv = ServerProcess(root / "home", store=store).start(timeout=120)
    try:
        with srv.client() as api:
            for number in range(1, 5):
                assert push(api, root, number).status_code == 201
            for number in (2, 1):  # champion v1, previous v2: an instant rollback has somewhere to go
                api.put(f"/api/models/{MODEL}/aliases/champion", json={"version": number}).raise_for_status()
        yield srv
    finally:
        srv.stop()


def push(api: httpx.Client, root: Path, tag: int | str, actor: str = "setup") -> httpx.Response:
    folder = python_model(root / f"push-{tag}-{uuid.uuid4().hex[:6]}", f"return {{'y': inputs['x'][:, 0] * 1.0}}  # {tag}",
                          outputs=Y)
    return push_folder(api, MODEL, folder, actor)


class Racer:
    """One operator: its own connection and its own name in the audit log."""

    def __init__(self, server: ServerProcess, root: Path, actor: str, target: int) -> None:
        self.actor, self.target, self.root = actor, target, root
        self.http = httpx.Client(base_url=server.url, timeout=120,
                                 headers={"authorization": f"Bearer {TOKEN}", "x-changeover-actor": actor})

    def send(self, write: str) -> httpx.Response:
        h = self.http
        if write == "alias":
            return h.put(f"/api/models/{MODEL}/aliases/champion", json={"version": self.target})
        if write == "rollback":
            return h.post(f"/api/models/{MODEL}/rollback")
        if write == "start":
            return h.post("/api/rollouts", json={"spec": SPEC})
        if write == "shadow+":
            return h.post(f"/api/models/{MODEL}/shadows", json={"version": "4", "sample": 0.5})
        if write == "shadow-":
            return h.delete(f"/api/models/{MODEL}/shadows")
        if write == "push":
            return push(h, self.root, self.actor, actor=self.actor)
        return h.post(f"/api/models/{MODEL}/rollout/{write}")


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()
        except httpx.HTTPError as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for r in out:
        assert isinstance(r, httpx.Response), r
    return out


def active(api: httpx.Client) -> list[dict[str, Any]]:
    return api.get("/api/rollouts", params={"model": MODEL, "active": True}).json()


def settle(api: httpx.Client) -> None:
    """Until the controller acted on every command asked (none pending, no promotion half done)."""
    wait_until(lambda: all(r["command"] is None and r["status"]["phase"] != "promoting" for r in active(api)),
               "the controller to act on the commands", timeout=60)


def prepare(api: httpx.Client, running: bool) -> None:
    """No rollout, no shadow, champion v1; with ``running``, a rollout of v2 baking at 10%."""
    for r in active(api):
        if r["command"] is None:
            api.post(f"/api/models/{MODEL}/rollout/abort")
    wait_until(lambda: not active(api), "no active rollout", timeout=60)
    api.delete(f"/api/models/{MODEL}/shadows").raise_for_status()
    if api.get(f"/api/models/{MODEL}").json()["aliases"].get("champion") != 1:
        api.put(f"/api/models/{MODEL}/aliases/champion", json={"version": 1}).raise_for_status()
    if running:
        started = api.post("/api/rollouts", json={"spec": SPEC})
        assert started.status_code == 201, started.text
        wait_until(lambda: (a := active(api)) and a[0]["status"]["phase"] == "progressing", "the canary", timeout=60)


def events_after(api: httpx.Client, mark: int) -> list[dict[str, Any]]:
    return api.get("/api/events", params={"model": MODEL, "after": mark, "limit": 10000}).json()


def last_event_id(api: httpx.Client) -> int:
    got = api.get("/api/events", params={"model": MODEL, "limit": 10000}).json()
    return max((e["id"] for e in got), default=0)


def check(pair: tuple[str, str], got: list[httpx.Response], racers: list[Racer], events: list[dict[str, Any]],
          champion_before: int, champion_after: int) -> list[str]:
    """What went wrong in one race (nothing: an empty list)."""
    wrong: list[str] = []
    said = [f"{w}: {r.status_code} {r.text[:200]}" for w, r in zip(pair, got, strict=True)]
    for write, r, racer in zip(pair, got, racers, strict=True):
        mine = [e for e in events if e.get("actor") == racer.actor]
        if write == "rollback" and r.status_code == 422 and "roll back to" in r.text:
            continue  # nothing to roll back to (the other write moved champion to previous first)
        if r.status_code >= 500 or r.status_code not in (200, 201, 409):
            wrong.append(f"{write} answered {r.status_code}: {r.text[:300]}")
            continue
        if r.status_code == 409:
            error = r.json().get("error", "")
            if not re.search(r"rollout \d+|v\d+|pending|meanwhile|conflict", error):
                wrong.append(f"{write}: a 409 that names no winner: {error!r}")
            if any(e["kind"] not in ("refused", "command.refused", "compat.passed", "compat.failed") for e in mine):
                wrong.append(f"{write}: refused, yet it wrote {[e['kind'] for e in mine]}")
            continue
        body = r.json()
        expected = {"alias": "alias", "start": "rollout.created", "shadow+": "shadow_start", "push": "push",
                    "rollback": "command" if "rollout" in body else "alias"}.get(write, "command")
        if write == "shadow-" and not body.get("stopped"):
            continue  # nothing left to stop: the other stop did it (and said so)
        if write in COMMANDS and pair[0] == pair[1] and any(e["kind"] == "command" for e in events):
            continue  # the same command asked twice at once is asked once
        if not any(e["kind"] == expected for e in mine):
            wrong.append(f"{write} answered {r.status_code} but the log has no {expected!r} event of it "
                         f"(its events: {[e['kind'] for e in mine]})")
    if pair in NEVER_BOTH and sorted(r.status_code for r in got) != [201, 409]:
        wrong.append(f"{pair} must have one winner and one 409: {said}")
    created = [e for e in events if e["kind"] == "rollout.created"]
    if len(created) > 1 and not any(e["kind"] in ("rollout.aborted", "rollout.rolled_back", "promote.done")
                                    for e in events if e["id"] < created[-1]["id"]):
        wrong.append("two rollouts created with no end between them")
    # every command asked is acted on or refused, in the order asked
    asked = [e for e in events if e["kind"] == "command"]
    outcomes = [e for e in events if e["kind"] in (*EFFECT.values(), "command.refused")]
    for command_event in asked:
        command = command_event["evidence"]["command"]
        later = [e for e in outcomes if e["id"] > command_event["id"]]
        if not later:
            wrong.append(f"{command} was asked and neither acted on nor refused")
        elif later[0]["kind"] not in (EFFECT[command], "command.refused"):
            wrong.append(f"{command} asked, but the next outcome is {later[0]['kind']}")
    # the alias chain: each move from the version the one before moved to, ending where the state is
    moves = [e["evidence"] for e in events if e["kind"] == "alias" and e["evidence"]["alias"] == "champion"]
    at = champion_before
    for move in moves:
        if move["previous"] != at:
            wrong.append(f"the log moves champion from v{move['previous']} but it was at v{at}: {moves}")
        at = move["version"]
    if at != champion_after:
        wrong.append(f"the log leaves champion at v{at}, the store has v{champion_after}")
    return [f"{pair}: {w} ({said})" for w in wrong]


def test_every_pair_of_management_writes_raced(server: ServerProcess, tmp_path: Path) -> None:
    problems: list[str] = []
    tried = 0
    started = time.monotonic()
    store = "postgres" if server.env.get("CHANGEOVER_STORE") else "sqlite"
    with server.client() as api:
        api.timeout = httpx.Timeout(120)
        for attempt, pair in enumerate(plan(store)):
            running = bool(set(pair) & set(COMMANDS)) or (pair == ("rollback", "rollback") and attempt % 2 == 1)
            prepare(api, running)
            tag = uuid.uuid4().hex[:6]
            racers = [Racer(server, tmp_path, f"racer-{tag}-{i}", target) for i, target in enumerate((3, 4))]
            mark = last_event_id(api)
            champion_before = api.get(f"/api/models/{MODEL}").json()["aliases"]["champion"]
            try:
                got = at_once([lambda r=r, w=w: r.send(w) for r, w in zip(racers, pair, strict=True)])
            finally:
                for r in racers:
                    r.http.close()
            settle(api)
            champion_after = api.get(f"/api/models/{MODEL}").json()["aliases"]["champion"]
            problems += check(pair, got, racers, events_after(api, mark), champion_before, champion_after)
            assert len(active(api)) <= 1
            tried += 1
    record(f"races: management write pairs at once ({store})", tried, tried - len(problems),
           f"{len(set(plan(store)))} pairs, {time.monotonic() - started:.0f}s")
    assert not problems, "\n".join(problems[:15])
