"""Ranking metrics per query, for rows grouped by a query column.

Conventions (docs/metrics.md gives the reasons):

- Within a query, rows are ordered by score, highest first. Tied scores are resolved
  against the model: the less relevant row comes first, so a model never gains from a tie
  and the figures do not depend on the order of rows in the file.
- A row is relevant when its relevance is > 0; NDCG uses the graded relevance as gain
  (linear gain, log2 discount, as `sklearn.metrics.ndcg_score`).
- precision@k divides by the items shown, min(k, items in the query).
- AP@k divides by min(k, relevant items in the query).
- MRR looks at the whole list (no cut-off); hit rate@k is 1 when a relevant row is in the top k.
- A query with no relevant item has no defined value (NaN) for every metric and is left
  out of the means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "RankedQueries",
    "map_at_k",
    "mean_over_queries",
    "mrr",
    "ndcg_at_k",
    "per_query_metrics",
    "precision_at_k",
    "rank_queries",
    "ranking_metrics",
    "recall_at_k",
]


@dataclass(frozen=True)
class RankedQueries:
    """Rows sorted into each query's ranked list, with what every metric needs."""

    query_ids: np.ndarray  # one per query, in order of first appearance
    query: np.ndarray  # query code of each ranked row
    rank: np.ndarray  # 0-based position of each ranked row in its query
    relevance: np.ndarray  # relevance of each ranked row
    n_items: np.ndarray  # per query
    n_relevant: np.ndarray  # per query
    ideal_query: np.ndarray  # the same rows in ideal order (relevance, highest first)
    ideal_rank: np.ndarray
    ideal_relevance: np.ndarray

    @property
    def n_queries(self) -> int:
        return len(self.query_ids)

    @property
    def eligible(self) -> np.ndarray:
        """Queries with at least one relevant item: the only ones metrics are defined on."""
        return self.n_relevant > 0

    def per_query(self, weights: np.ndarray) -> np.ndarray:
        return np.bincount(self.query, weights=weights, minlength=self.n_queries)


def rank_queries(relevance: Any, scores: Any, query: Any) -> RankedQueries:
    """Sort rows within each query by score (ties: less relevant first)."""
    rel = np.asarray(relevance, dtype=np.float64)
    sc = np.asarray(scores, dtype=np.float64)
    if rel.shape != sc.shape or rel.ndim != 1:
        raise ValueError(f"relevance {rel.shape} and scores {sc.shape} must be 1-D, same length")
    if len(np.asarray(query)) != len(rel):
        raise ValueError("query ids must have one entry per row")
    if not np.all(np.isfinite(rel)) or np.any(rel < 0):
        raise ValueError("relevance must be finite and >= 0")
    if not np.all(np.isfinite(sc)):
        raise ValueError(f"{int(np.sum(~np.isfinite(sc)))} scores are NaN or infinite")
    codes, uniques = pd.factorize(np.asarray(query), sort=False)
    if np.any(codes < 0):
        raise ValueError("query ids contain missing values")
    n = len(rel)
    rows = np.arange(n)
    nq = len(uniques)
    n_items = np.bincount(codes, minlength=nq)
    starts = np.concatenate([[0], np.cumsum(n_items)[:-1]])
    # lexsort: the last key is the primary one
    order = np.lexsort((rows, rel, -sc, codes))
    ideal = np.lexsort((rows, -rel, codes))
    q, iq = codes[order], codes[ideal]
    return RankedQueries(
        query_ids=np.asarray(uniques),
        query=q,
        rank=rows - starts[q],
        relevance=rel[order],
        n_items=n_items,
        n_relevant=np.bincount(codes, weights=rel > 0, minlength=nq),
        ideal_query=iq,
        ideal_rank=rows - starts[iq],
        ideal_relevance=rel[ideal],
    )


def _undefined_where_no_relevant(rq: RankedQueries, values: np.ndarray) -> np.ndarray:
    return np.where(rq.eligible, values, np.nan)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _hits(rq: RankedQueries, k: int) -> np.ndarray:
    return rq.per_query(((rq.rank < k) & (rq.relevance > 0)).astype(np.float64))


def _check_k(k: int) -> None:
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _precision(rq: RankedQueries, k: int) -> np.ndarray:
    shown = np.minimum(k, rq.n_items)
    return _undefined_where_no_relevant(rq, _hits(rq, k) / shown)


def _recall(rq: RankedQueries, k: int) -> np.ndarray:
    return _undefined_where_no_relevant(rq, _safe_div(_hits(rq, k), rq.n_relevant))


def _ndcg(rq: RankedQueries, k: int) -> np.ndarray:
    top = rq.rank < k
    dcg = rq.per_query(np.where(top, rq.relevance / np.log2(rq.rank + 2.0), 0.0))
    itop = rq.ideal_rank < k
    gain = np.where(itop, rq.ideal_relevance / np.log2(rq.ideal_rank + 2.0), 0.0)
    idcg = np.bincount(rq.ideal_query, weights=gain, minlength=rq.n_queries)
    return _undefined_where_no_relevant(rq, _safe_div(dcg, idcg))


def _average_precision(rq: RankedQueries, k: int) -> np.ndarray:
    relevant = (rq.relevance > 0).astype(np.float64)
    running = np.cumsum(relevant)
    # hits up to and including each row, counted from the start of its query
    first = np.flatnonzero(rq.rank == 0)
    before_query = (running - relevant)[first]
    hits_so_far = running - before_query[rq.query]
    precision_here = hits_so_far / (rq.rank + 1.0)
    total = rq.per_query(np.where(rq.rank < k, relevant * precision_here, 0.0))
    return _undefined_where_no_relevant(rq, _safe_div(total, np.minimum(k, rq.n_relevant)))


def _reciprocal_rank(rq: RankedQueries) -> np.ndarray:
    rr = np.zeros(rq.n_queries)
    hit = rq.relevance > 0
    np.maximum.at(rr, rq.query[hit], 1.0 / (rq.rank[hit] + 1.0))
    return _undefined_where_no_relevant(rq, rr)


def precision_at_k(relevance: Any, scores: Any, query: Any, k: int) -> np.ndarray:
    """Per query: relevant items in the top k / min(k, items in the query)."""
    _check_k(k)
    return _precision(rank_queries(relevance, scores, query), k)


def recall_at_k(relevance: Any, scores: Any, query: Any, k: int) -> np.ndarray:
    """Per query: relevant items in the top k / relevant items in the query."""
    _check_k(k)
    return _recall(rank_queries(relevance, scores, query), k)


def ndcg_at_k(relevance: Any, scores: Any, query: Any, k: int) -> np.ndarray:
    """Per query: DCG@k / ideal DCG@k, gain = relevance, discount = 1 / log2(rank + 1)."""
    _check_k(k)
    return _ndcg(rank_queries(relevance, scores, query), k)


def map_at_k(relevance: Any, scores: Any, query: Any, k: int) -> np.ndarray:
    """Per query: average precision at k (sum of precision@i at relevant i <= k over
    min(k, relevant items)); its mean over queries is MAP@k."""
    _check_k(k)
    return _average_precision(rank_queries(relevance, scores, query), k)


def mrr(relevance: Any, scores: Any, query: Any) -> np.ndarray:
    """Per query: 1 / rank of the first relevant item (its mean over queries is MRR)."""
    return _reciprocal_rank(rank_queries(relevance, scores, query))


def per_query_metrics(
    relevance: Any, scores: Any, query: Any, ks: Sequence[int] = (5, 10)
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(query ids, metric name -> value per query); NaN where the query has no relevant item."""
    for k in ks:
        _check_k(k)
    rq = rank_queries(relevance, scores, query)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"precision_at_{k}"] = _precision(rq, k)
        out[f"recall_at_{k}"] = _recall(rq, k)
        out[f"ndcg_at_{k}"] = _ndcg(rq, k)
        out[f"map_at_{k}"] = _average_precision(rq, k)
        out[f"hit_rate_at_{k}"] = _undefined_where_no_relevant(rq, (_hits(rq, k) > 0).astype(np.float64))
    out["mrr"] = _reciprocal_rank(rq)
    return rq.query_ids, out


def mean_over_queries(values: np.ndarray) -> float:
    """Mean over the queries where the metric is defined; NaN when there is none."""
    v = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(v)
    return float(v[defined].mean()) if defined.any() else float("nan")


def ranking_metrics(
    relevance: Any, scores: Any, query: Any, ks: Sequence[int] = (5, 10)
) -> dict[str, float]:
    """Means over queries of every ranking metric for each k, and MRR."""
    _, per_query = per_query_metrics(relevance, scores, query, ks)
    return {name: mean_over_queries(v) for name, v in per_query.items()}
