from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest
from scipy.stats import kendalltau

from changeover.domain.ranking_comparison import (
    RankingComparison,
    compare_rankings,
    item_key,
    kendall_tau_shared,
    overlap_at_k,
    rank_biased_overlap,
    ranked_keys,
)


def rbo_by_definition(a: list[Any], b: list[Any], p: float, depth: int = 3000) -> float:
    """RBO = (1−p) Σ_d p^(d−1) A_d summed far out, with the agreement the extrapolation assumes:
    below the short list's end its unseen items match at its own rate X_s/s, and below the
    long list's end the agreement stays what it was there."""
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    s, n = len(short), len(long_)
    x_s = len(set(short) & set(long_[:s]))
    agreement = []
    for d in range(1, n + 1):
        x_d = len(set(short[:d]) & set(long_[:d]))
        assumed = x_s * (d - s) / s if d > s else 0.0
        agreement.append((x_d + assumed) / d)
    return (1 - p) * sum(p ** (d - 1) * agreement[min(d, n) - 1] for d in range(1, depth + 1))


# --- overlap@k ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("a", "b", "k", "expected"),
    [
        # top-3 {1,2,3} ∩ {3,1,6} = {1,3}: 2/3
        ([1, 2, 3, 4, 5], [3, 1, 6, 7, 2], 3, 2 / 3),
        # top-5 {1..5} ∩ {3,1,6,7,2} = {1,2,3}: 3/5
        ([1, 2, 3, 4, 5], [3, 1, 6, 7, 2], 5, 3 / 5),
        # order does not matter to overlap
        ([1, 2, 3], [3, 2, 1], 3, 1.0),
        ([1, 2, 3], [4, 5, 6], 3, 0.0),
        # k > both lengths: divide by the longer list's length, so identical short lists agree
        ([1, 2, 3], [1, 2, 3], 10, 1.0),
        ([1, 2, 3], [3, 1], 10, 2 / 3),
        # the longer list fills 10 places; the short one shares 3 of them
        (list(range(10)), [0, 1, 2], 10, 3 / 10),
        # the denominator is capped at k
        (list(range(20)), list(range(20)), 10, 1.0),
        # empty lists: both empty agree fully; one empty shares nothing
        ([], [], 5, 1.0),
        ([], [1, 2], 5, 0.0),
        # ints and strings name the same item
        ([42, 7], ["7", "42"], 2, 1.0),
    ],
)
def test_overlap_at_k_hand_cases(a: list[Any], b: list[Any], k: int, expected: float) -> None:
    assert overlap_at_k(a, b, k) == pytest.approx(expected, abs=1e-15)
    assert overlap_at_k(b, a, k) == pytest.approx(expected, abs=1e-15)


# --- rank-biased overlap -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("a", "b", "p", "expected"),
    [
        # X_d = 1, 1, 3; A_d = 1, 1/2, 1; p = 1/2:
        # X_3/3·p³ + (1−p)/p·Σ A_d p^d = 1/8 + 1·(1/2 + 1/8 + 1/8) = 7/8
        ([1, 2, 3], [1, 3, 2], 0.5, 7 / 8),
        # X_d = 0, 2, 2, 4; A_d = 0, 1, 2/3, 1; p = 0.9:
        # 0.9⁴ + (1/9)(0.81 + (2/3)·0.729 + 0.6561) = 0.6561 + 1.9521/9 = 0.6561 + 0.2169 = 0.873
        ([1, 2, 3, 4], [2, 1, 4, 3], 0.9, 0.873),
        # X_d = 0, 1, 2, 4, 5; A_d = 0, 1/2, 2/3, 1, 1:
        # 0.9⁵ + (1/9)(0.405 + 0.486 + 0.6561 + 0.59049) = 0.59049 + 2.13759/9 = 0.828
        ([1, 2, 3, 4, 5], [2, 3, 4, 1, 5], 0.9, 0.828),
        # unequal lengths (eq. 32), S = [1,2] (s = 2), L = [2,3,1] (l = 3), p = 1/2:
        # X_1 = 0, X_2 = 1 (= X_s), X_3 = |{1,2} ∩ {2,3,1}| = 2 (= X_l)
        # Σ X_d/d p^d = 0 + (1/2)(1/4) + (2/3)(1/8) = 5/24
        # Σ_{d=3} X_s (d−s)/(s d) p^d = 1·1/6·1/8 = 1/48
        # (1−p)/p = 1; tail ((X_l − X_s)/l + X_s/s) p^l = (1/3 + 1/2)/8 = 5/48
        # 10/48 + 1/48 + 5/48 = 1/3
        ([1, 2], [2, 3, 1], 0.5, 1 / 3),
        # the short list is the long one's prefix: its unseen items are assumed to go on
        # matching, so the lists agree fully
        ([1], [1, 2], 0.9, 1.0),
        (["a", "b"], ["a", "b", "c", "d"], 0.8, 1.0),
        ([1, 2, 3], [1, 2, 3], 0.9, 1.0),
        ([1, 2, 3], [4, 5, 6, 7], 0.9, 0.0),
        ([], [], 0.9, 1.0),
        ([], [1], 0.9, 0.0),
    ],
)
def test_rank_biased_overlap_hand_cases(a: list[Any], b: list[Any], p: float, expected: float) -> None:
    assert rank_biased_overlap(a, b, p) == pytest.approx(expected, abs=1e-12)
    assert rank_biased_overlap(b, a, p) == pytest.approx(expected, abs=1e-12)


def test_rank_biased_overlap_weights_the_top() -> None:
    # one swap at the top costs more than the same swap at the bottom
    base = list(range(10))
    top_swap = [1, 0, *range(2, 10)]
    bottom_swap = [*range(8), 9, 8]
    assert rank_biased_overlap(base, top_swap) < rank_biased_overlap(base, bottom_swap) < 1.0


def test_rank_biased_overlap_of_agreeing_lists_is_exactly_one() -> None:
    # the sum would give 0.9999999999999993 for 100 identical items at p = 0.95
    assert rank_biased_overlap(list(range(100)), list(range(100)), p=0.95) == 1.0
    assert rank_biased_overlap(list(range(30)), list(range(100)), p=0.95) == 1.0


def test_rank_biased_overlap_cuts_at_k() -> None:
    a, b = [1, 2, 3, 9, 8], [1, 2, 3, 4, 5]
    assert rank_biased_overlap(a, b, k=3) == pytest.approx(1.0)
    assert rank_biased_overlap(a, b, k=5) < 1.0
    # k beyond both lists changes nothing
    assert rank_biased_overlap(a, b, k=50) == rank_biased_overlap(a, b)
    # a cut that leaves unequal lengths uses eq. 32
    assert rank_biased_overlap([1, 2], [2, 3, 1, 7], p=0.5, k=3) == pytest.approx(1 / 3)


def test_rank_biased_overlap_matches_its_definition_on_random_lists() -> None:
    rng = random.Random(10)
    for _ in range(300):
        a = rng.sample(range(30), rng.randint(1, 15))
        b = rng.sample(range(30), rng.randint(1, 15))
        p = rng.choice([0.5, 0.8, 0.9, 0.95])
        value = rank_biased_overlap(a, b, p)
        assert value == pytest.approx(rbo_by_definition(a, b, p), abs=1e-9), (a, b, p)
        assert -1e-12 <= value <= 1 + 1e-12
        assert value == pytest.approx(rank_biased_overlap(b, a, p), abs=1e-12)


@pytest.mark.parametrize("p", [0, 1, -0.1, 1.5, math.nan, "0.9", None])
def test_rank_biased_overlap_refuses_a_bad_persistence(p: Any) -> None:
    with pytest.raises(ValueError, match="p must be"):
        rank_biased_overlap([1], [1], p)


# --- Kendall τ on the shared items ---------------------------------------------------------

@pytest.mark.parametrize(
    ("a", "b", "k", "expected"),
    [
        # shared in the top 5: 1, 2, 3 at positions (0,1,2) in a and (1,4,0) in b;
        # pairs (1,2) concordant, (1,3) and (2,3) discordant: τ = (1 − 2)/3
        ([1, 2, 3, 4, 5], [3, 1, 6, 7, 2], 5, -1 / 3),
        # at k = 3, b's top 3 holds 3 and 1: one discordant pair
        ([1, 2, 3, 4, 5], [3, 1, 6, 7, 2], 3, -1.0),
        ([1, 2, 3, 4], [1, 2, 3, 4], 4, 1.0),
        ([1, 2, 3, 4], [4, 3, 2, 1], 4, -1.0),
        # items only one list has are left out: the shared 1, 2, 3 keep their order
        ([1, 9, 2, 8, 3], [1, 2, 7, 3, 6], 5, 1.0),
        # fewer than two shared items: undefined
        ([1, 2, 3], [1, 5, 6], 3, None),
        ([1, 2, 3], [4, 5, 6], 3, None),
        ([], [], 3, None),
        ([1, 2], [2, 1], 1, None),
    ],
)
def test_kendall_tau_shared_hand_cases(a: list[Any], b: list[Any], k: int, expected: float | None) -> None:
    got = kendall_tau_shared(a, b, k)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_kendall_tau_shared_is_scipys_tau_b_on_random_lists() -> None:
    rng = random.Random(11)
    for _ in range(200):
        a, b = rng.sample(range(15), 10), rng.sample(range(15), 10)
        k = rng.randint(2, 10)
        shared = [x for x in a[:k] if x in b[:k]]
        got = kendall_tau_shared(a, b, k)
        if len(shared) < 2:
            assert got is None
        else:
            expected = kendalltau([a.index(x) for x in shared], [b.index(x) for x in shared]).statistic
            assert got == pytest.approx(expected)


# --- bad input -----------------------------------------------------------------------------

COMPARERS: list[Callable[[list[Any], list[Any]], object]] = [
    lambda a, b: overlap_at_k(a, b, 3),
    lambda a, b: rank_biased_overlap(a, b),
    lambda a, b: kendall_tau_shared(a, b, 3),
    lambda a, b: compare_rankings(a, b, 3),
]


@pytest.mark.parametrize("compare", COMPARERS)
@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([1, 2, 1], [1, 2, 3], r"first ranking: item 1 appears twice \(positions 1 and 3\)"),
        ([1, 2, 3], ["x", "y", "x"], "second ranking: item 'x' appears twice"),
        # a duplicate below the cut is still a malformed answer
        ([1, 2, 3, 4, 5, 4], [1], "item 4 appears twice"),
        # 42 and "42" are the same item
        ([42, "42"], [1], "item '42' appears twice"),
        ([1.5, 2], [1], "item ids must be ints or strings, got 1.5"),
        ([True], [1], "item ids must be ints or strings, got True"),
        ([None], [1], "got None"),
        ("abc", [1], "not a single string"),
    ],
)
def test_bad_rankings_are_refused_naming_the_item(
    compare: Callable[[list[Any], list[Any]], object], a: Any, b: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        compare(a, b)


@pytest.mark.parametrize("k", [0, -1, 2.5, "3", True, None])
def test_bad_k_is_refused(k: Any) -> None:
    with pytest.raises(ValueError, match="k must be a positive integer"):
        overlap_at_k([1], [1], k)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        kendall_tau_shared([1], [1], k)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        compare_rankings([1], [1], k)


def test_item_keys() -> None:
    import numpy as np

    assert item_key(42) == item_key("42") == item_key(np.int64(42)) == "42"
    assert item_key("a b") == "a b"
    assert ranked_keys((3, "x", np.int32(5))) == ["3", "x", "5"]


# --- all at once ---------------------------------------------------------------------------

def test_compare_rankings_worked_case() -> None:
    a, b = [1, 2, 3, 4, 5, 11], [3, 1, 6, 7, 2]
    got = compare_rankings(a, b, 5, p=0.9)
    assert isinstance(got, RankingComparison)
    assert (got.k, got.size_a, got.size_b, got.shared) == (5, 6, 5, 3)
    assert got.overlap == pytest.approx(3 / 5)
    assert got.kendall_tau == pytest.approx(-1 / 3)
    assert got.rbo == rank_biased_overlap(a[:5], b, p=0.9)
    # by hand: X_d = 0, 1, 2, 2, 3; A_d = 0, 1/2, 2/3, 1/2, 3/5
    # 0.9⁵·3/5 + (1/9)(0 + 0.81/2 + (2/3)·0.729 + 0.6561/2 + 0.59049·3/5)
    # = 0.354294 + (0.405 + 0.486 + 0.32805 + 0.354294)/9 = 0.354294 + 0.174816 = 0.52911
    assert got.rbo == pytest.approx(0.52911, abs=1e-12)
    assert got.as_dict()["shared"] == 3


def test_compare_rankings_of_empty_lists() -> None:
    got = compare_rankings([], [], 10)
    assert (got.size_a, got.size_b, got.shared, got.overlap, got.rbo, got.kendall_tau) == (0, 0, 0, 1.0, 1.0, None)
    got = compare_rankings([1, 2], [], 10)
    assert (got.overlap, got.rbo, got.kendall_tau) == (0.0, 0.0, None)
