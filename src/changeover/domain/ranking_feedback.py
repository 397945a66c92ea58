"""One served ranking scored against its feedback: P@k, R@k, NDCG@k, CTR@k, hit@k, MRR. Pure.

The served ranking is the list of item ids a version answered, best first (item ids as in
`ranking_comparison`: ints or strings, ``42`` and ``"42"`` the same item, none twice).
Feedback is either the clicked or relevant item ids (a set or list: each has relevance 1,
an item named twice counts once) or a mapping item id → graded relevance (a finite
number ≥ 0). An item is relevant when its relevance is > 0; a click is a relevant item.

The definitions are the offline gate's (`changeover.evaluation.ranking`, docs/metrics.md
"Ranking"), so a ranker scores the same online as offline on the same judgements: linear
gain with a log2 discount, precision over the items shown, MRR over the whole list. That
module cannot be imported here (domain/ imports no other layer), so a test holds the two
to agreement. Where online differs, it is on purpose and docs/metrics.md ("Scoring a served
ranking against feedback") gives the reason:

- feedback naming items the answer did not contain counts them as relevant but not
  retrieved (recall's denominator, NDCG's ideal list), as if ranked just below the list's
  end; `relevant_not_served` returns how many there were;
- feedback with no relevant item (no click) scores precision, CTR, hit and MRR 0 — "nobody
  clicked" is an outcome of the list — and leaves recall and NDCG undefined (None);
- an empty served ranking scores precision 0 (it showed nothing, and found nothing).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real

from changeover.domain.moments import Moments
from changeover.domain.ranking_comparison import ItemId, check_k, item_key, ranked_keys

__all__ = [
    "Feedback",
    "RankingMoments",
    "ctr_at_k",
    "hit_at_k",
    "metric_names",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank",
    "relevance_by_item",
    "relevant_not_served",
    "score_ranking",
]

Feedback = Mapping[ItemId, float] | Collection[ItemId]


def relevance_by_item(feedback: Feedback) -> dict[str, float]:
    """Item key → relevance (≥ 0). ValueError on a bad id, a bad relevance, or a mapping that
    names one item twice (``42`` and ``"42"``)."""
    if isinstance(feedback, str | bytes):
        raise ValueError(f"feedback must be item ids or a mapping item → relevance, not a string {feedback!r}")
    if isinstance(feedback, Mapping):
        out: dict[str, float] = {}
        for item, value in feedback.items():
            key = item_key(item)
            if key in out:
                raise ValueError(f"feedback names item {item!r} twice")
            if not isinstance(value, Real) or not math.isfinite(float(value)) or float(value) < 0:
                raise ValueError(f"feedback: relevance of item {item!r} must be a finite number >= 0, got {value!r}")
            out[key] = float(value)
        return out
    if not isinstance(feedback, Iterable):
        raise ValueError(f"feedback must be item ids or a mapping item → relevance, got {type(feedback).__name__}")
    return {item_key(item): 1.0 for item in feedback}


@dataclass(frozen=True)
class _Judged:
    """The served list's gains in order, and the ideal gains of all relevant feedback."""

    gains: list[float]  # relevance of each served item, 0 where the feedback is silent
    ideal: list[float]  # relevance of every relevant feedback item, highest first
    not_served: int  # relevant feedback items the served list lacks

    def hits(self, k: int) -> int:
        return sum(1 for g in self.gains[:k] if g > 0)


def _judge(served: Sequence[ItemId], feedback: Feedback) -> _Judged:
    keys = ranked_keys(served, "served ranking")
    relevance = relevance_by_item(feedback)
    relevant = {key: r for key, r in relevance.items() if r > 0}
    served_set = set(keys)
    return _Judged(
        gains=[relevance.get(key, 0.0) for key in keys],
        ideal=sorted(relevant.values(), reverse=True),
        not_served=sum(1 for key in relevant if key not in served_set),
    )


def _dcg(gains: Sequence[float], k: int) -> float:
    return sum(g / math.log2(i + 2.0) for i, g in enumerate(gains[:k]))


def _precision(j: _Judged, k: int) -> float:
    shown = min(k, len(j.gains))
    return j.hits(k) / shown if shown else 0.0


def _recall(j: _Judged, k: int) -> float | None:
    return j.hits(k) / len(j.ideal) if j.ideal else None


def _ndcg(j: _Judged, k: int) -> float | None:
    return _dcg(j.gains, k) / _dcg(j.ideal, k) if j.ideal else None


def _reciprocal_rank(j: _Judged) -> float:
    return next((1.0 / (i + 1) for i, g in enumerate(j.gains) if g > 0), 0.0)


def precision_at_k(served: Sequence[ItemId], feedback: Feedback, k: int) -> float:
    """Relevant items in the top k / min(k, items served); 0 for an empty served list."""
    return _precision(_judge(served, feedback), check_k(k))


def recall_at_k(served: Sequence[ItemId], feedback: Feedback, k: int) -> float | None:
    """Relevant items in the top k / relevant items in the feedback (served or not); None
    when the feedback holds no relevant item."""
    return _recall(_judge(served, feedback), check_k(k))


def ndcg_at_k(served: Sequence[ItemId], feedback: Feedback, k: int) -> float | None:
    """DCG@k / ideal DCG@k, gain = relevance, discount 1 / log2(rank + 1); the ideal list is
    every relevant feedback item, served or not, highest first. None without a relevant item."""
    return _ndcg(_judge(served, feedback), check_k(k))


def ctr_at_k(served: Sequence[ItemId], feedback: Feedback, k: int) -> float:
    """Clicks in the top k of this request (a count: its mean over requests is clicks per
    request in the top k); with graded feedback a click is an item with relevance > 0."""
    return float(_judge(served, feedback).hits(check_k(k)))


def hit_at_k(served: Sequence[ItemId], feedback: Feedback, k: int) -> float:
    """1.0 when a relevant item is in the top k, else 0.0."""
    return 1.0 if _judge(served, feedback).hits(check_k(k)) else 0.0


def reciprocal_rank(served: Sequence[ItemId], feedback: Feedback) -> float:
    """1 / rank of the first relevant item over the whole served list; 0.0 if none is in it
    (its mean over requests is MRR)."""
    return _reciprocal_rank(_judge(served, feedback))


def relevant_not_served(served: Sequence[ItemId], feedback: Feedback) -> int:
    """Relevant feedback items the served list did not contain (the user found them elsewhere)."""
    return _judge(served, feedback).not_served


def _check_ks(ks: int | Iterable[int]) -> list[int]:
    values = [check_k(k) for k in ([ks] if isinstance(ks, int) else ks)]
    if not values:
        raise ValueError("ks must name at least one k")
    return list(dict.fromkeys(values))


def metric_names(ks: int | Iterable[int] = (5, 10)) -> list[str]:
    """The keys `score_ranking` returns for these ks, in its order."""
    names = [f"{m}_at_{k}" for k in _check_ks(ks) for m in ("precision", "recall", "ndcg", "ctr", "hit")]
    return [*names, "mrr", "relevant_items", "relevant_not_served"]


def score_ranking(served: Sequence[ItemId], feedback: Feedback, ks: int | Iterable[int] = (5, 10)) -> dict[str, float | None]:
    """Every metric for each k (``precision_at_10``, ``recall_at_10``, ``ndcg_at_10``,
    ``ctr_at_10``, ``hit_at_10``), ``mrr`` (this request's reciprocal rank), and two counts:
    ``relevant_items`` in the feedback and ``relevant_not_served``. None = undefined."""
    j = _judge(served, feedback)
    out: dict[str, float | None] = {}
    for k in _check_ks(ks):
        hits = j.hits(k)
        out[f"precision_at_{k}"] = _precision(j, k)
        out[f"recall_at_{k}"] = _recall(j, k)
        out[f"ndcg_at_{k}"] = _ndcg(j, k)
        out[f"ctr_at_{k}"] = float(hits)
        out[f"hit_at_{k}"] = 1.0 if hits else 0.0
    out["mrr"] = _reciprocal_rank(j)
    out["relevant_items"] = float(len(j.ideal))
    out["relevant_not_served"] = float(j.not_served)
    return out


@dataclass
class RankingMoments:
    """Per metric, the count, sum and sum of squares of its per-request values, so a judge can
    build always-valid intervals on their means. Undefined values (None, NaN) are not counted:
    ``moments(name).n`` below ``requests`` says how many requests left the metric undefined."""

    requests: int = 0
    metrics: dict[str, Moments] = field(default_factory=dict)

    def add(self, scores: Mapping[str, float | None]) -> None:
        """One request's `score_ranking`."""
        self.requests += 1
        for name, value in scores.items():
            moments = self.metrics.setdefault(name, Moments())
            if value is not None and math.isfinite(value):
                moments.add_sums(1, float(value), float(value) ** 2)

    def merge(self, other: RankingMoments) -> None:
        """Fold in another accumulator (another window, another replica)."""
        self.requests += other.requests
        for name, m in other.metrics.items():
            self.metrics.setdefault(name, Moments()).add_sums(m.n, m.total, m.total_sq)

    def __add__(self, other: RankingMoments) -> RankingMoments:
        out = RankingMoments()
        out.merge(self)
        out.merge(other)
        return out

    def moments(self, name: str) -> Moments:
        return self.metrics.get(name, Moments())

    def mean(self, name: str) -> float | None:
        m = self.moments(name)
        return m.mean if m.n else None
