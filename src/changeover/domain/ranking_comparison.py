"""How much two rankings of item ids agree: overlap@k, rank-biased overlap, Kendall τ. Pure.

A ranking is a sequence of item ids, best first. An item id is an int or a str, and the two
name the same item when their text is equal (``42`` and ``"42"``): ids reach us from model
outputs, JSON feedback and CSV files alike, and a type mismatch must not read as "no item in
common". bools, floats and other values are refused. An item twice in one ranking is a
malformed answer: `ValueError` naming the item and both positions.

docs/metrics.md ("Comparing two rankings") gives every counting rule and its reason:

- overlap@k divides by min(k, longer list's length), so two identical short lists agree fully;
- rank-biased overlap is RBO_EXT (Webber, Moffat & Zobel 2010), for equal and unequal lengths;
- Kendall τ-b runs on the items both top-k lists share, and is None below two of them;
- two empty rankings agree fully (1.0); one empty and one not share nothing (0.0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

from scipy.stats import kendalltau

__all__ = [
    "ItemId",
    "RankingComparison",
    "check_k",
    "compare_rankings",
    "item_key",
    "kendall_tau_shared",
    "overlap_at_k",
    "rank_biased_overlap",
    "ranked_keys",
]

ItemId = int | str


def item_key(item: Any) -> str:
    """The text an item id is matched by: ints by their decimal text, strings as they are."""
    if isinstance(item, str):
        return item
    if isinstance(item, Integral) and not isinstance(item, bool):
        return str(int(item))
    raise ValueError(f"item ids must be ints or strings, got {item!r} ({type(item).__name__})")


def ranked_keys(items: Iterable[Any], what: str = "ranking") -> list[str]:
    """The keys of a ranking's items in order; ValueError on a bad id or an item twice."""
    if isinstance(items, str | bytes):
        raise ValueError(f"{what} must be a list of item ids, not a single string {items!r}")
    keys: list[str] = []
    position: dict[str, int] = {}
    for i, item in enumerate(items):
        key = item_key(item)
        if key in position:
            raise ValueError(f"{what}: item {item!r} appears twice (positions {position[key] + 1} and {i + 1})")
        position[key] = i
        keys.append(key)
    return keys


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def overlap_at_k(a: Sequence[ItemId], b: Sequence[ItemId], k: int) -> float:
    """|top-k(a) ∩ top-k(b)| / min(k, max(len(a), len(b))).

    The denominator is the number of places the longer top-k list fills: two identical
    lists of 3 items agree fully (1.0) at any k ≥ 3, while a list of 3 against one of 10
    shares at most 3/10 at k = 10. Two empty lists agree fully (1.0).
    """
    k = check_k(k)
    top_a, top_b = ranked_keys(a, "first ranking")[:k], ranked_keys(b, "second ranking")[:k]
    places = max(len(top_a), len(top_b))
    if places == 0:
        return 1.0
    return len(set(top_a) & set(top_b)) / places


def rank_biased_overlap(a: Sequence[ItemId], b: Sequence[ItemId], p: float = 0.9, k: int | None = None) -> float:
    """Extrapolated rank-biased overlap RBO_EXT of the two lists (cut at depth k if given).

    Webber, Moffat & Zobel, "A similarity measure for indefinite rankings", ACM TOIS 28(4),
    2010, eq. 32, with S the shorter list (length s) and L the longer (length l), and X_d the
    number of items S[:d] and L[:d] share (S[:d] is all of S once d > s):

        RBO_EXT = (1−p)/p · [ Σ_{d=1..l} X_d/d · p^d + Σ_{d=s+1..l} X_s·(d−s)/(s·d) · p^d ]
                  + [ (X_l − X_s)/l + X_s/s ] · p^l

    It assumes the agreement seen at the end of the evaluated prefixes goes on below them,
    and that S's unseen items would match L at S's own rate. With s = l it is the
    equal-length extrapolation X_k/k · p^k + (1−p)/p · Σ_{d=1..k} X_d/d · p^d. Identical
    lists give 1, disjoint ones 0. Two empty lists give 1.0; one empty list gives 0.0.
    p is the persistence: the agreement at depth d weighs (1−p)·p^(d−1), and since an item
    high in the lists counts at every depth below it, the top 10 ranks carry about 86% of
    the weight at p = 0.9 (the paper's weight of a prefix).
    """
    if not (isinstance(p, int | float) and 0.0 < p < 1.0):
        raise ValueError(f"p must be a number strictly between 0 and 1, got {p!r}")
    keys_a, keys_b = ranked_keys(a, "first ranking"), ranked_keys(b, "second ranking")
    if k is not None:
        k = check_k(k)
        keys_a, keys_b = keys_a[:k], keys_b[:k]
    short, long_ = (keys_a, keys_b) if len(keys_a) <= len(keys_b) else (keys_b, keys_a)
    s, l = len(short), len(long_)  # noqa: E741 - the paper's names
    if l == 0:
        return 1.0
    if s == 0:
        return 0.0
    if short == long_[:s]:
        return 1.0  # the sum below gives 1 up to rounding; a `min: 1.0` rule must not miss it
    seen_short: set[str] = set()
    seen_long: set[str] = set()
    overlap = 0
    overlap_s = 0
    total = 0.0
    for d in range(1, l + 1):
        if d <= s:
            x = short[d - 1]
            seen_short.add(x)
            overlap += x in seen_long
        y = long_[d - 1]
        seen_long.add(y)
        overlap += y in seen_short
        if d == s:
            overlap_s = overlap
        weight = p**d
        total += overlap / d * weight
        if d > s:
            total += overlap_s * (d - s) / (s * d) * weight
    return (1.0 - p) / p * total + ((overlap - overlap_s) / l + overlap_s / s) * p**l


def kendall_tau_shared(a: Sequence[ItemId], b: Sequence[ItemId], k: int) -> float | None:
    """Kendall τ-b (scipy.stats.kendalltau) between the positions, in a and in b, of the items
    both top-k lists share; None when they share fewer than two items (τ needs a pair).

    Items only one list holds are left out: τ says whether the two agree on the order of
    what they both show, and overlap@k says how much that is.
    """
    k = check_k(k)
    top_a, top_b = ranked_keys(a, "first ranking")[:k], ranked_keys(b, "second ranking")[:k]
    position_b = {key: i for i, key in enumerate(top_b)}
    pairs = [(i, position_b[key]) for i, key in enumerate(top_a) if key in position_b]
    if len(pairs) < 2:
        return None
    tau = kendalltau([i for i, _ in pairs], [j for _, j in pairs]).statistic
    return None if math.isnan(tau) else float(tau)


@dataclass(frozen=True)
class RankingComparison:
    """Two rankings compared at depth k."""

    k: int
    size_a: int  # items in the first ranking (whole list)
    size_b: int
    shared: int  # items both top-k lists hold
    overlap: float  # overlap@k
    rbo: float  # RBO_EXT of the top-k prefixes
    kendall_tau: float | None  # on the shared items; None below two

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "k": self.k, "size_a": self.size_a, "size_b": self.size_b, "shared": self.shared,
            "overlap": self.overlap, "rbo": self.rbo, "kendall_tau": self.kendall_tau,
        }


def compare_rankings(a: Sequence[ItemId], b: Sequence[ItemId], k: int, p: float = 0.9) -> RankingComparison:
    """Overlap@k, RBO_EXT of the top-k prefixes (persistence p) and τ on the shared items."""
    k = check_k(k)
    keys_a, keys_b = ranked_keys(a, "first ranking"), ranked_keys(b, "second ranking")
    return RankingComparison(
        k=k,
        size_a=len(keys_a),
        size_b=len(keys_b),
        shared=len(set(keys_a[:k]) & set(keys_b[:k])),
        overlap=overlap_at_k(keys_a, keys_b, k),
        rbo=rank_biased_overlap(keys_a, keys_b, p=p, k=k),
        kendall_tau=kendall_tau_shared(keys_a, keys_b, k),
    )
