"""Ranking metrics for a ranker that answers a list of item ids per query (role ``ranking``).

The holdout judges items per query in one of two forms (docs/metrics.md, "Rankers that answer
lists"):

- **rows**: one row per (query, item) with a relevance >= 0 (`judgements_from_rows`);
- **lists**: one row per query, a column holding the relevant item ids (`judgements_from_lists`):
  a JSON array (``[3, 17, 42]``), ids separated by commas, spaces, ``;`` or ``|``, a Parquet
  list, or a JSON object of graded relevance (``{"3": 2, "17": 1}``).

Item ids are ints or strings, matched by their text (``42`` and ``"42"`` are one item), as in
`domain.ranking_comparison`. Counting rules, shared with the score-per-row path where both
apply:

- a query with no relevant item has no defined value (NaN) for any metric but coverage, and
  is left out of the means, as in `evaluation.ranking`;
- relevant items the list lacks count as relevant and not retrieved (recall's denominator,
  the ideal DCG), as in `domain.ranking_feedback`;
- precision@k divides by the items answered, min(k, list length), so a list shorter than k
  is not charged for the places it did not fill; an empty list scores 0 everywhere;
- coverage@k is the share of the catalogue found in some query's top k, the catalogue being
  every item the holdout names together with every item either version answered.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from changeover.evaluation.data import DataError

__all__ = [
    "Judgements",
    "answer_keys",
    "coverage_incidence",
    "holdout_judgements",
    "judgements_from_lists",
    "judgements_from_rows",
    "list_metrics",
    "overlap_at_k",
    "parse_items",
]

_SEPARATORS = re.compile(r"[,\s;|]+")


@dataclass(frozen=True)
class Judgements:
    """What the holdout says about each query: item key → relevance (> 0: relevant)."""

    query_ids: np.ndarray  # one per query, in order of first appearance
    first_rows: np.ndarray  # the position in the holdout of each query's first row
    relevance: list[dict[str, float]]
    catalogue: frozenset[str]  # every item the holdout names

    @property
    def n_queries(self) -> int:
        return len(self.query_ids)

    @property
    def n_relevant(self) -> np.ndarray:
        return np.array([sum(1 for v in r.values() if v > 0) for r in self.relevance], dtype=np.float64)


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (for messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _key(item: Any, where: str) -> str:
    if isinstance(item, bytes):
        item = item.decode("utf-8", errors="replace")
    if isinstance(item, str):
        if not item:
            raise ValueError(f"{where}: an empty item id")
        return item
    if isinstance(item, Integral) and not isinstance(item, bool | np.bool_):
        return str(int(item))
    if isinstance(item, Real) and not isinstance(item, bool | np.bool_) and float(item).is_integer():
        return str(int(float(item)))  # 42.0: a CSV column of ids with a gap reads as floats
    raise ValueError(f"{where}: item ids are integers or strings, not {item!r}")


def judgements_from_rows(query: Any, item: Any, relevance: Any) -> Judgements:
    """(query, item, relevance) rows; ValueError naming the query for an item judged twice."""
    q = np.asarray(query)
    rel = np.asarray(relevance, dtype=np.float64)
    codes, uniques = pd.factorize(q, sort=False)
    first = np.full(len(uniques), -1, dtype=np.int64)
    for row in range(len(codes) - 1, -1, -1):
        first[codes[row]] = row
    judged: list[dict[str, float]] = [{} for _ in uniques]
    for row, (code, it, r) in enumerate(zip(codes, np.asarray(item, dtype=object), rel, strict=True)):
        key = _key(it, f"row {row + 2}, item")  # +2: the header and 1-based lines of a file
        if key in judged[code]:
            raise ValueError(f"query {_plain(uniques[code])!r}: item {key!r} is judged twice")
        judged[code][key] = float(r)
    return Judgements(np.asarray(uniques), first, judged, frozenset(k for j in judged for k in j))


def parse_items(value: Any, where: str) -> dict[str, float]:
    """One cell of a relevant-items column as item key → relevance (ids listed: relevance 1;
    an id listed twice counts once)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not a JSON list or object ({exc.msg})") from None
        else:
            value = [v for v in _SEPARATORS.split(text) if v]
    elif value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    if isinstance(value, Mapping):
        out: dict[str, float] = {}
        for item, r in value.items():
            key = _key(item, where)
            if key in out:
                raise ValueError(f"{where}: item {key!r} is named twice")
            if isinstance(r, bool) or not isinstance(r, Real) or not math.isfinite(r) or r < 0:
                raise ValueError(f"{where}: the relevance of {key!r} must be a number >= 0, not {r!r}")
            out[key] = float(r)
        return out
    if isinstance(value, np.ndarray | list | tuple):
        return {_key(item, where): 1.0 for item in value}
    raise ValueError(f"{where}: expected a list of item ids, not {value!r}")


def judgements_from_lists(lists: Any, query: Any | None = None) -> Judgements:
    """One row per query and its relevant items; ValueError naming the row of a bad cell or a
    query that appears twice."""
    cells = list(lists)
    ids = np.arange(len(cells)) if query is None else np.asarray(query)
    codes, uniques = pd.factorize(ids, sort=False)
    if len(uniques) != len(cells):
        counts = np.bincount(codes)
        twice = _plain(uniques[int(np.argmax(counts > 1))])
        raise ValueError(f"query {twice!r} has {counts.max()} rows: with a list of relevant items, each query is one row")
    judged = [parse_items(cell, f"row {row + 2}") for row, cell in enumerate(cells)]
    return Judgements(np.asarray(uniques), np.arange(len(cells)), judged, frozenset(k for j in judged for k in j))


def holdout_judgements(data: pd.DataFrame, target: str, query_column: str | None, item_column: str | None,
                       features: list[str]) -> Judgements:
    """The holdout's judgements per query; DataError naming the row or query of a bad one."""
    try:
        if item_column is not None:
            assert query_column is not None  # check_list_ranking_data asked for it
            judged = judgements_from_rows(data[query_column].to_numpy(), data[item_column].to_numpy(),
                                          data[target].to_numpy())
        else:
            judged = judgements_from_lists(data[target].tolist(),
                                           None if query_column is None else data[query_column].to_numpy())
    except ValueError as exc:
        column = item_column if item_column is not None and "item" in str(exc) else target
        raise DataError(f"column {column!r}: {exc}") from None
    if not (judged.n_relevant > 0).any():
        raise DataError(f"column {target!r}: no query has a relevant item")
    if item_column is not None and features:
        varying = data.groupby(query_column, sort=False)[features].nunique(dropna=False).max()
        bad = [c for c in features if varying[c] > 1]
        if bad:
            raise DataError(f"feature columns vary within a query: {', '.join(map(repr, bad))}; a ranker that "
                            "answers lists is called once per query, on the query's first row")
    return judged


def answer_keys(array: Any, what: str) -> np.ndarray:
    """A version's lists as an (n, k) array of item keys; ValueError when it is not a list of
    ids per row (not 2-D, ids that are not integers or strings, an item twice in a row)."""
    a = np.asarray(array)
    if a.ndim != 2:
        raise ValueError(f"{what}: a ranking is one list of item ids per row, shape (rows, k), not {list(a.shape)}")
    if a.dtype.kind in "iu":
        keys = a.astype(np.int64).astype(str)
    elif a.dtype.kind in "OUS":
        flat = [_key(v, what) for v in a.reshape(-1).tolist()]
        keys = np.asarray(flat, dtype=str).reshape(a.shape) if flat else np.empty(a.shape, dtype=str)
    else:
        raise ValueError(f"{what}: item ids are integers or strings, not {a.dtype} values")
    if keys.shape[1] > 1:
        ordered = np.sort(keys, axis=1)
        same = ordered[:, 1:] == ordered[:, :-1]
        if same.any():
            row, col = np.argwhere(same)[0]
            raise ValueError(f"{what}: row {row + 1} names item {str(ordered[row, col])!r} twice")
    return keys


def _gains(keys: np.ndarray, judged: Sequence[Mapping[str, float]]) -> np.ndarray:
    gains = np.zeros(keys.shape, dtype=np.float64)
    for q, (row, relevance) in enumerate(zip(keys, judged, strict=True)):
        if relevance:
            gains[q] = [relevance.get(k, 0.0) for k in row]
    return gains


def _ideal_dcg(judged: Sequence[Mapping[str, float]], k: int) -> np.ndarray:
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    out = np.zeros(len(judged))
    for q, relevance in enumerate(judged):
        best = sorted((v for v in relevance.values() if v > 0), reverse=True)[:k]
        out[q] = float(np.dot(best, discount[: len(best)]))
    return out


def list_metrics(keys: np.ndarray, judgements: Judgements, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per query: precision, recall, NDCG, AP and hit rate at each k, and MRR; NaN where the
    query has no relevant item. ``keys`` is `answer_keys` of the version's answer."""
    if len(keys) != judgements.n_queries:
        raise ValueError(f"{len(keys)} lists for {judgements.n_queries} queries")
    gains = _gains(keys, judgements.relevance)
    hits = gains > 0
    length = keys.shape[1]
    n_rel = judgements.n_relevant
    eligible = n_rel > 0
    positions = np.arange(length)
    discount = 1.0 / np.log2(positions + 2.0)
    cum_hits = np.cumsum(hits, axis=1)
    out: dict[str, np.ndarray] = {}

    def defined(values: np.ndarray) -> np.ndarray:
        return np.where(eligible, values, np.nan)

    def ratio(num: np.ndarray, den: np.ndarray | float) -> np.ndarray:
        den = np.broadcast_to(np.asarray(den, dtype=np.float64), num.shape)
        return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)

    for k in ks:
        top = min(k, length)
        found = hits[:, :top].sum(axis=1).astype(np.float64)
        out[f"precision_at_{k}"] = defined(ratio(found, float(top)))
        out[f"recall_at_{k}"] = defined(ratio(found, n_rel))
        dcg = (gains[:, :top] * discount[:top]).sum(axis=1)
        out[f"ndcg_at_{k}"] = defined(ratio(dcg, _ideal_dcg(judgements.relevance, k)))
        precision_here = cum_hits[:, :top] / (positions[:top] + 1.0)
        ap = (precision_here * hits[:, :top]).sum(axis=1)
        out[f"map_at_{k}"] = defined(ratio(ap, np.minimum(k, n_rel)))
        out[f"hit_rate_at_{k}"] = defined((found > 0).astype(np.float64))
    found_any = hits.any(axis=1)
    first = hits.argmax(axis=1) if length else np.zeros(len(hits), dtype=np.int64)
    out["mrr"] = defined(np.where(found_any, 1.0 / (first + 1.0), 0.0))
    return out


def coverage_incidence(keys: np.ndarray, k: int, index: Mapping[str, int]) -> sparse.csr_matrix:
    """(queries × catalogue) 0/1: which items each query's top k holds (`index`: key → column)."""
    top = keys[:, : min(k, keys.shape[1])]
    rows = np.repeat(np.arange(len(keys)), top.shape[1])
    cols = np.fromiter((index[v] for v in top.reshape(-1)), dtype=np.int64, count=top.size)
    data = np.ones(len(cols), dtype=np.float64)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(keys), len(index)))


def overlap_at_k(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Per query, |top-k(a) ∩ top-k(b)| / min(k, longer list), as `domain.ranking_comparison`;
    1.0 for two empty lists."""
    ta, tb = a[:, : min(k, a.shape[1])], b[:, : min(k, b.shape[1])]
    places = min(k, max(a.shape[1], b.shape[1]))
    if places == 0:
        return np.ones(len(a))
    shared = np.array([len(set(x.tolist()) & set(y.tolist())) for x, y in zip(ta, tb, strict=True)], dtype=np.float64)
    return shared / places
