from __future__ import annotations

import json
import math
from collections.abc import Hashable, Sequence
from typing import Any, cast

import numpy as np
import pytest

from changeover.domain.interleaving import (
    BOTH,
    CHECK_NAME,
    TEAM_A,
    TEAM_B,
    TIE,
    Interleaved,
    Outcome,
    Preference,
    credit,
    decided_share_high,
    judge_preference,
    preference_interval,
    team_draft,
)
from changeover.domain.judge import FAIL, INCONCLUSIVE, PASS, Check
from changeover.domain.sequential import mean_interval

ALPHA = 0.05


def rng(seed: int = 7) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- hand-worked cases -------------------------------------------------------------------------


def test_team_draft_by_hand() -> None:
    # default_rng(7).random() < 0.5 gives False, False, False, ...: b picks first each round.
    # a = [1, 2, 3, 4, 5, 6], b = [1, 4, 7, 2, 8, 9], k = 6
    #   common prefix: 1                               -> [1]              (both)
    #   round 1, b first: b's best unshown 4, then a's 2  -> [1, 4, 2]     (b, a)
    #   round 2, b first: b's 7 (4 shown), then a's 3     -> [.., 7, 3]    (b, a)
    #   round 3, b first: b's 8 (2 shown); k = 6 reached  -> [.., 8]       (b)
    assert [bool(x < 0.5) for x in rng().random(3)] == [False, False, False]
    got = team_draft([1, 2, 3, 4, 5, 6], [1, 4, 7, 2, 8, 9], 6, rng())
    assert got.items == (1, 4, 2, 7, 3, 8)
    assert got.teams == (BOTH, TEAM_B, TEAM_A, TEAM_B, TEAM_A, TEAM_B)
    # clicks 4 (b), 2 (a), 4 again (counted once), 99 (not shown): credit a 1, b 1 -> a tie
    outcome = credit(got, [4, 2, 99, 4])
    assert outcome == Outcome(credit_a=1, credit_b=1, shared=0, unshown=1)
    assert outcome.winner == TIE and outcome.score == 0
    # clicks 7, 8 (b) and 1 (both, credited to neither): b wins 2 to 0
    outcome = credit(got, [7, 1, 8])
    assert outcome == Outcome(0, 2, 1, 0)
    assert outcome.winner == TEAM_B and outcome.score == 1
    # a click on 3 only: a wins
    assert credit(got, [3]).winner == TEAM_A and credit(got, [3]).score == -1


def test_team_draft_with_string_ids_and_a_first() -> None:
    # default_rng(3): draws 0.086 (< 0.5, a first), 0.241 (a first)
    # a = [x, y, z], b = [z, y, w], k = 5; no common prefix (x != z)
    #   round 1, a first: a's x, then b's z   -> [x, z]
    #   round 2, a first: a's y, then b's w (y shown) -> [x, z, y, w]
    #   a has nothing left (z shown): b fills alone, nothing left either -> stop at 4 < k
    draws = rng(3).random(2)
    assert draws[0] < 0.5 and draws[1] < 0.5
    got = team_draft(["x", "y", "z"], ["z", "y", "w"], 5, rng(3))
    assert got.items == ("x", "z", "y", "w")
    assert got.teams == (TEAM_A, TEAM_B, TEAM_A, TEAM_B)


def test_preference_interval_by_hand() -> None:
    # 240 b-wins, 160 a-wins, 25 ties: share_b = 0.6, estimate 0.1 over n = 400 decided.
    # var = 1/4, V = 0.25/400 = 6.25e-4; two mixtures, each at alpha/2 = 0.025, so the
    # boundary's −2·ln(0.025/2) = 8.764053.
    #   planned, n_plan = 400: τ = 12·V = 7.5e-3 (PLAN_RATIO); (V+τ)/τ = 13/12 = 1.083333,
    #     −ln(V/(V+τ)) = ln 13 = 2.564949; Z* = sqrt(1.083333 · 11.329002) = 3.503296,
    #     half-width 3.503296 · 0.025 = 0.087582
    #   early, 10 samples: τ = 12 · 0.25/10 = 0.3; (V+τ)/τ = 1.002083, −ln(V/(V+τ)) = ln 481
    #     = 6.175867; Z* = sqrt(1.002083 · 14.939920) = 3.869244, half-width 0.096731
    #   the tighter one: 0.1 ± 0.087582 = [0.012418, 0.187582]
    pref = Preference(wins_a=160, wins_b=240, ties=25)
    got = preference_interval(pref, ALPHA, 400)
    assert got.estimate == pytest.approx(0.1)
    assert got.low == pytest.approx(0.012418, abs=1e-6)
    assert got.high == pytest.approx(0.187582, abs=1e-6)
    want = mean_interval(0.1, 0.25, 400, ALPHA, 400)
    assert (got.low, got.high) == pytest.approx((want.low, want.high))
    # the judge turns it into harm = 0.5 − share_b = −0.1 in [−0.187582, −0.012418]
    check = judge_preference(pref, 0.0, ALPHA, n_plan=400)
    assert (check.estimate, check.low, check.high) == pytest.approx((-0.1, -0.187582, -0.012418), abs=1e-6)
    assert check.outcome == PASS  # confidently better: even tolerance 0 passes
    # with the sides swapped it is a detection: harm +0.1 in [0.012418, 0.187582] > 0
    assert judge_preference(Preference(240, 160, 25), 0.0, ALPHA, n_plan=400).outcome == FAIL


# -- properties --------------------------------------------------------------------------------


def random_rankings(seed: int) -> tuple[list[int], list[int], int]:
    g = np.random.default_rng(seed)
    catalogue = int(g.integers(1, 30))
    a = [int(x) for x in g.integers(0, catalogue, size=int(g.integers(0, 15)))]  # repeats likely
    b = list(a) if g.random() < 0.3 else [int(x) for x in g.integers(0, catalogue, size=int(g.integers(0, 15)))]
    if g.random() < 0.3 and a:  # a shared prefix now and then
        b = a[: int(g.integers(1, len(a) + 1))] + b
    return a, b, int(g.integers(1, 20))


def first_seen(items: Sequence[Hashable]) -> list[Hashable]:
    return list(dict.fromkeys(items))


@pytest.mark.parametrize("seed", range(300))
def test_team_draft_properties(seed: int) -> None:
    a, b, k = random_rankings(seed)
    got = team_draft(a, b, k, rng(seed))
    ra, rb = first_seen(a), first_seen(b)
    # every shown item comes from a or b; no duplicates; as long as it can be
    assert set(got.items) <= set(a) | set(b)
    assert len(set(got.items)) == len(got.items)
    assert len(got) == min(k, len(set(a) | set(b)))
    # each team's items appear in that team's order, and each pick is the best unshown one
    for team, ranking in ((TEAM_A, ra), (TEAM_B, rb)):
        picks = [item for item, t in zip(got.items, got.teams, strict=True) if t == team]
        assert picks == [x for x in ranking if x in picks]
        for i, (item, t) in enumerate(zip(got.items, got.teams, strict=True)):
            if t == team:
                assert item == next(x for x in ranking if x not in got.items[:i])
    # the common prefix comes first, labelled both, and nowhere else
    shared = [t == BOTH for t in got.teams]
    assert shared == sorted(shared, reverse=True)
    for i in range(sum(shared)):
        assert got.items[i] == ra[i] == rb[i]
    # while both rankings have unshown items, the teams' sizes differ by at most one
    n_a = n_b = 0
    for i, team in enumerate(got.teams):
        shown = set(got.items[:i])
        both_left = any(x not in shown for x in ra) and any(x not in shown for x in rb)
        n_a += team == TEAM_A
        n_b += team == TEAM_B
        if both_left:
            assert abs(n_a - n_b) <= 1


@pytest.mark.parametrize("seed", range(100))
def test_identical_rankings_always_tie(seed: int) -> None:
    g = np.random.default_rng(seed)
    ranking = [int(x) for x in g.integers(0, 40, size=int(g.integers(0, 20)))]
    got = team_draft(ranking, list(ranking), int(g.integers(1, 25)), g)
    assert set(got.teams) <= {BOTH}
    for _ in range(5):
        clicked = [int(x) for x in g.integers(0, 45, size=int(g.integers(0, 6)))]
        assert credit(got, clicked).winner == TIE


def test_same_seed_same_list() -> None:
    a, b = list(range(20)), list(range(19, -1, -1))
    assert team_draft(a, b, 10, rng(11)) == team_draft(a, b, 10, rng(11))


class Script:
    """Scripted coins: True means a picks first."""

    def __init__(self, a_first: list[bool]) -> None:
        self.a_first = list(a_first)

    def random(self) -> float:
        return 0.25 if self.a_first.pop(0) else 0.75


@pytest.mark.parametrize("seed", range(50))
def test_swapping_the_rankers_and_the_coins_swaps_the_teams(seed: int) -> None:
    a, b, k = random_rankings(seed)
    coins = [bool(x) for x in np.random.default_rng(seed).integers(0, 2, size=k)]
    one = team_draft(a, b, k, Script(coins))
    other = team_draft(b, a, k, Script([not c for c in coins]))
    swap = {TEAM_A: TEAM_B, TEAM_B: TEAM_A, BOTH: BOTH}
    assert other.items == one.items
    assert other.teams == tuple(swap[t] for t in one.teams)


def test_any_coin_with_random_will_do() -> None:
    import random

    got = team_draft([1, 2, 3], [3, 2, 1], 3, random.Random(1))
    assert set(got.items) == {1, 2, 3}
    # at most ceil(k/2) draws: a script of 2 coins is enough for k = 3 (or 4)
    assert len(team_draft(list(range(10)), list(range(10, 20)), 4, Script([True, False]))) == 4


def test_coin_is_fair_for_the_first_pick() -> None:
    g = rng(5)
    firsts = [team_draft([1, 2], [3, 4], 2, g).teams[0] for _ in range(4000)]
    assert abs(firsts.count(TEAM_A) / 4000 - 0.5) < 0.03


@pytest.mark.parametrize(("a", "b", "k", "items", "teams"), [
    ([], [], 3, (), ()),
    ([1, 2, 3], [], 2, (1, 2), (TEAM_A, TEAM_A)),
    ([], ["p", "q"], 5, ("p", "q"), (TEAM_B, TEAM_B)),
    ([1, 1, 2, 2], [1, 2], 4, (1, 2), (BOTH, BOTH)),  # repeats count at their first position
    ([5, 6, 7], [5, 6, 7], 2, (5, 6), (BOTH, BOTH)),  # k shorter than the common prefix
    ([1], [2, 3, 4], 10, None, None),  # short a: b fills the rest alone
])
def test_edge_cases(a: list[Hashable], b: list[Hashable], k: int, items: tuple[Hashable, ...] | None,
                    teams: tuple[str, ...] | None) -> None:
    got = team_draft(a, b, k, rng())
    if items is None:
        assert set(got.items) == {1, 2, 3, 4}
        assert got.teams.count(TEAM_A) == 1 and got.teams.count(TEAM_B) == 3
        assert got.items[-2:] == (3, 4)
    else:
        assert got.items == items
        assert got.teams == teams


def test_to_dict_round_trip() -> None:
    got = team_draft(["u", "v"], ["v", "w"], 3, rng())
    again = Interleaved.from_dict(json.loads(json.dumps(got.to_dict())))
    assert again == got
    assert again.team_of("w") == TEAM_B and again.team_of("nope") is None


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1])
def test_k_must_be_positive(k: int) -> None:
    with pytest.raises(ValueError, match="k must be a positive number"):
        team_draft([1], [2], k, rng())


def test_bad_items() -> None:
    half: Any = 2.5
    nested: Any = [[2]]
    with pytest.raises(TypeError):
        team_draft([1], [2], half, rng())
    with pytest.raises(TypeError, match="a must be a sequence of item ids, not a str"):
        team_draft("abc", [1], 2, rng())
    with pytest.raises(TypeError, match="b: item ids must be hashable, got list"):
        team_draft([1], nested, 2, rng())
    with pytest.raises(ValueError, match="2 items but 1 team labels"):
        Interleaved((1, 2), (TEAM_A,))
    with pytest.raises(ValueError, match="unknown team labels"):
        Interleaved((1,), ("c",))


def test_bad_judge_input() -> None:
    with pytest.raises(ValueError, match="alpha"):
        preference_interval(Preference(1, 1), 1.5, 100)
    with pytest.raises(ValueError, match="n_plan"):
        preference_interval(Preference(1, 1), ALPHA, math.inf)
    with pytest.raises(ValueError, match="n_plan is needed"):
        judge_preference(Preference(1, 1), 0.0)
    with pytest.raises(ValueError, match="tolerance"):
        judge_preference(Preference(1, 1), -0.1)
    with pytest.raises(ValueError, match="non-negative"):
        Preference(-1, 0)


# -- the tally and the judge -------------------------------------------------------------------


def test_preference_tally() -> None:
    outcomes = [Outcome(1, 0), Outcome(0, 2, unshown=1), Outcome(0, 0), Outcome(1, 1, shared=1)]
    pref = Preference.of(outcomes)
    assert pref == Preference(wins_a=1, wins_b=1, ties=2, unshown=1)
    step = Preference()
    for o in outcomes:
        step = step.add(o)
    assert step == pref
    assert pref + pref == Preference(2, 2, 4, 2)
    assert (pref.requests, pref.decided, pref.share_b) == (4, 2, 0.5)
    assert math.isnan(Preference(ties=3).share_b)


def test_judge_outcomes() -> None:
    # the champion wins 700 of 1000 decided: confidently worse
    check = judge_preference(Preference(wins_a=700, wins_b=300, ties=500), 0.02, ALPHA)
    assert isinstance(check, Check)
    assert (check.name, check.outcome) == (CHECK_NAME, FAIL)
    assert check.estimate == pytest.approx(0.2)
    assert check.low is not None and check.low > 0.02
    assert (check.n_canary, check.n_baseline) == (1000, 1500)
    assert "500 ties" in check.reason
    # an even split over many requests: harm beyond 0.02 excluded
    check = judge_preference(Preference(wins_a=10_000, wins_b=10_000), 0.02, ALPHA)
    assert check.outcome == PASS and check.high is not None and check.high < 0.02
    # a small even sample: not yet
    check = judge_preference(Preference(wins_a=30, wins_b=30), 0.02, ALPHA)
    assert check.outcome == INCONCLUSIVE and not check.enough
    assert check.required is not None and check.required > 60
    # nothing decided yet
    check = judge_preference(Preference(ties=40), 0.02, ALPHA)
    assert check.outcome == INCONCLUSIVE and check.estimate is None and not check.enough
    # tolerance 0: detection only, never a pass
    check = judge_preference(Preference(wins_a=5000, wins_b=5000), 0.0, ALPHA, n_plan=1000)
    assert check.outcome == INCONCLUSIVE and check.required == math.inf
    assert json.dumps(check.to_dict())


# -- A/A under continuous looks ----------------------------------------------------------------


def looked_runs(runs: int, looks: int, per_look: int, seed: int, noise_b: float = 0.3) -> tuple[int, int]:
    """Two rankers, each ranking by its own noisy estimate of relevance (noise 0.3 for the
    champion, `noise_b` for the candidate: equal noise makes them exchangeable, an A/A), a
    position-based click model; the judge looks after every `per_look` requests. Returns
    (runs with a fail at some look, runs with a confident preference either way)."""
    g = np.random.default_rng(seed)
    catalogue, depth = 30, 10
    examine = 1.0 / np.arange(1, depth + 1)
    fails = either = 0
    for _ in range(runs):
        pref = Preference()
        failed = preferred = False
        for _ in range(looks):
            relevance = g.random((per_look, catalogue)) ** 3
            lists_a = np.argsort(-(relevance + 0.3 * g.standard_normal(relevance.shape)), axis=1)[:, :depth]
            lists_b = np.argsort(-(relevance + noise_b * g.standard_normal(relevance.shape)), axis=1)[:, :depth]
            draws = (g.random((per_look, depth)) / examine).tolist()  # click: draw/examine < relevance
            for ranked_a, ranked_b, rel, draw in zip(lists_a.tolist(), lists_b.tolist(), relevance.tolist(), draws,
                                                     strict=True):
                shown = team_draft(ranked_a, ranked_b, depth, g)
                clicked = [item for item, d in zip(shown.items, draw, strict=False) if d < rel[cast(int, item)]]
                pref = pref.add(credit(shown, clicked))
            check = judge_preference(pref, 0.0, ALPHA, n_plan=300)
            interval = preference_interval(pref, ALPHA, 300)
            failed |= check.outcome == FAIL
            preferred |= interval.low > 0 or interval.high < 0
        fails += failed
        either += preferred
    return fails, either


def test_aa_false_preference_under_continuous_looks() -> None:
    runs = 200
    fails, either = looked_runs(runs, looks=40, per_look=10, seed=2024)
    assert fails / runs <= ALPHA / 2
    assert either / runs <= ALPHA


def test_the_same_looks_catch_a_worse_candidate() -> None:
    # the A/A harness is not blind: a much noisier candidate is caught in most runs
    fails, _ = looked_runs(30, looks=40, per_look=10, seed=7, noise_b=1.0)
    assert fails >= 24


def test_public_names_and_imports() -> None:
    import ast
    from pathlib import Path

    from changeover.domain import interleaving

    for name in interleaving.__all__:
        assert hasattr(interleaving, name), name
    tree = ast.parse(Path(interleaving.__file__).read_text())
    project = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module and node.module.startswith("changeover")}
    # pure: the statistics it judges with, and the judge's Check it returns
    assert project <= {"changeover.domain.sequential", "changeover.domain.judge", "changeover.errors"}
    third = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert third <= {"math", "operator"}


def test_identical_rankers_pass_as_indistinguishable() -> None:
    """A retrain whose lists equal the champion's ties every request: no preference can show,
    and once enough requests were credited the stage passes instead of waiting forever."""
    few = judge_preference(Preference(ties=200), 0.05, ALPHA)
    assert few.outcome == INCONCLUSIVE and not few.enough
    many = judge_preference(Preference(ties=3000), 0.05, ALPHA)
    assert many.outcome == PASS and many.enough
    assert "indistinguishable" in many.reason and "0 of 3000" in many.reason
    # tolerance 0 allows no such pass
    assert judge_preference(Preference(ties=3000), 0.0, ALPHA, n_plan=400).outcome == INCONCLUSIVE
    # a candidate that loses the few requests it changes is failed, however many ties surround them
    losing = judge_preference(Preference(wins_a=40, wins_b=0, ties=3000), 0.05, ALPHA)
    assert losing.outcome == FAIL
    # lists that differ often are judged on their preference, not as indistinguishable
    split = judge_preference(Preference(wins_a=700, wins_b=300, ties=2000), 0.05, ALPHA)
    assert split.outcome == FAIL and "indistinguishable" not in split.reason


def test_decided_share_bound_is_valid_under_continuous_looks() -> None:
    """The decided-share bound excludes a true share of 10% at most alpha of the time, looked
    at every 10 requests (simulated)."""
    rng = np.random.default_rng(7)
    runs, excluded = 300, 0
    for _ in range(runs):
        ties = decided = 0
        for hits in (rng.random((200, 10)) < 0.10):  # a look every 10 requests
            decided += int(hits.sum())
            ties += int((~hits).sum())
            pref = Preference(wins_a=decided, ties=ties)
            high = decided_share_high(pref, ALPHA, 1000)
            if high is not None and high < 0.10:
                excluded += 1
                break
    assert excluded / runs <= ALPHA
