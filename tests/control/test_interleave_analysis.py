"""Interleaving looks: interleaved requests' clicks credited, tallied and judged."""

from __future__ import annotations

import random
import time

from changeover.control.interleave_analysis import InterleaveTally, interleaved_outcome, judge_interleaving
from changeover.domain.interleaving import Outcome
from changeover.domain.spec import parse_spec

T0 = 1_700_000_000.0


def logged(items: list[int], teams: list[str], a: int = 1, b: int = 2) -> dict:
    return {"items": items, "ranking": items, "interleaving": {"a": a, "b": b, "teams": teams}}


def test_clicks_are_credited_to_the_team_that_contributed_the_item() -> None:
    out = logged([7, 3, 9, 4], ["both", "a", "b", "a"])
    assert interleaved_outcome(out, [3, 4], 1, 2) == Outcome(2, 0, 0, 0)
    assert interleaved_outcome(out, ["9", 7], 1, 2) == Outcome(0, 1, 1, 0)  # ids match by text
    assert interleaved_outcome(out, {"9": 2, "3": 0}, 1, 2) == Outcome(0, 1, 0, 0)  # relevance 0: no click
    assert interleaved_outcome(out, [42], 1, 2) == Outcome(0, 0, 0, 1)
    assert interleaved_outcome(out, [], 1, 2) == Outcome(0, 0, 0, 0)


def test_requests_that_were_not_interleaved_between_the_two_are_not_counted() -> None:
    assert interleaved_outcome({"ranking": [1, 2]}, [1], 1, 2) is None
    assert interleaved_outcome(logged([1, 2], ["a", "b"], a=1, b=3), [1], 1, 2) is None
    assert interleaved_outcome(logged([1, 2], ["a", "b"]), None, 1, 2) is None
    assert interleaved_outcome(logged([1, 2], ["a", "x"]), [1], 1, 2) is None
    assert interleaved_outcome(None, [1], 1, 2) is None


def rows(clicks: list[tuple[list[int], list[str], list[int]]], start: int = 0) -> list[dict]:
    return [{"request_id": f"r{start + i}", "version": 1, "output": logged(items, teams), "label": label,
             "at": T0 + 1, "feedback_at": T0 + 2 + i} for i, (items, teams, label) in enumerate(clicks)]


SPEC = parse_spec({"model": "m", "candidate": "2", "interleave": {"until": {"requests": 500}, "tolerance": 0.05}})


def test_a_champion_clicked_far_more_often_fails_and_each_request_counts_once() -> None:
    assert SPEC.interleave is not None
    rng = random.Random(1)
    tally = InterleaveTally(1, 2, T0)
    data = rows([([1, 2], ["a", "b"], [1] if rng.random() < 0.8 else [2]) for _ in range(300)])
    assert tally.add(data) == 300 and tally.add(data) == 0
    look = judge_interleaving(tally, SPEC.interleave, T0 + 60)
    assert look.analysis.outcome == "fail"
    assert look.evidence["kind"] == "interleave" and look.evidence["preference"]["requests"] == 300
    assert look.evidence["preference"]["wins_champion"] > look.evidence["preference"]["wins_candidate"]


def test_an_even_preference_is_not_a_fail_and_feedback_before_the_stage_is_left_out() -> None:
    assert SPEC.interleave is not None
    tally = InterleaveTally(1, 2, T0)
    even = rows([([1, 2], ["a", "b"], [1 + i % 2]) for i in range(200)])
    early = [dict(r, request_id="old", at=T0 - 5) for r in even[:1]]
    tally.add(even + early + [{"request_id": "x", "version": 1, "output": {"ranking": [1]}, "label": [1], "at": T0}])
    assert tally.preference.requests == 200 and tally.unreadable == 1
    assert judge_interleaving(tally, SPEC.interleave, T0 + 60).analysis.outcome == "inconclusive"


def test_a_restarted_controller_rebuilds_the_same_preference_from_the_store(tmp_path) -> None:
    from sqlalchemy import insert

    from changeover.control.interleave_analysis import InterleaveLooks
    from changeover.store import tables as t
    from changeover.store.store import Store
    from changeover.store.traffic import add_feedback

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        now = time.time()
        with store.tx() as conn:
            for i in range(60):
                teams = ["a", "b"] if i % 2 else ["b", "a"]
                conn.execute(insert(t.requests).values(
                    request_id=f"r{i}", model="m", version=1, at=now - 100 + i, status=200, latency_ms=1.0,
                    output=logged([1, 2], teams), recorded=False))
            conn.execute(insert(t.requests).values(request_id="plain", model="m", version=1, at=now - 50, status=200,
                                                   latency_ms=1.0, output={"ranking": [1, 2]}, recorded=False))
        for i in range(40):
            add_feedback(store, f"r{i}", label=[1])  # item 1: team a on odd requests, team b on even ones
        add_feedback(store, "plain", label=[1])
        first = InterleaveLooks(store)
        look, counted = first.look(7, SPEC, 1, 2, now - 200, now=now)
        assert counted == 40 and look.evidence["preference"]["wins_champion"] == 20
        assert look.evidence["feedback_not_interleaved"] == 1
        for i in range(40, 60):
            add_feedback(store, f"r{i}", label={"2": 1})
        again, counted = first.look(7, SPEC, 1, 2, now - 200, now=now)
        restarted, counted_too = InterleaveLooks(store).look(7, SPEC, 1, 2, now - 200, now=now)
        assert counted == counted_too == 60
        assert again.evidence["preference"] == restarted.evidence["preference"]
        assert restarted.evidence["preference"]["wins_candidate"] == 30
    finally:
        store.close()
