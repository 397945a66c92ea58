"""Interleaved answers: the champion's and the candidate's rankings merged into the one list a
user sees (team draft, `domain.interleaving`), for a request the policy selects.

The merge is pure and reproducible: the coin is seeded by the request id, so the same request
gives the same list (and the same teams) again, in a test or when a click is audited.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np

from changeover.domain.interleaving import TEAM_B, Interleaved, team_draft

__all__ = ["NotARanking", "coin", "merge_rankings"]


class NotARanking(ValueError):
    """An answer that holds no ranking of one row to interleave."""


def coin(request_id: str) -> random.Random:
    """The request's coin: seeded by its id (str seeds hash the same in every process)."""
    return random.Random(f"interleave:{request_id}")


def _by_role(roles: Mapping[str, str | None], outputs: Mapping[str, Any], role: str) -> str | None:
    return next((name for name, r in roles.items() if r == role and name in outputs), None)


def _row(outputs: Mapping[str, Any], name: str, side: str) -> tuple[np.ndarray, list[Any]]:
    array = np.asarray(outputs[name])
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[0] != 1:
        raise NotARanking(f"the {side}'s {name!r} is not one ranking (shape {array.shape})")
    values = array[0].tolist()
    return array, values


def merge_rankings(champion: Mapping[str, Any], champion_roles: Mapping[str, str | None],
                   candidate: Mapping[str, Any], candidate_roles: Mapping[str, str | None],
                   k: int, request_id: str) -> tuple[dict[str, Any], Interleaved]:
    """The champion's outputs with its ranking replaced by the team-draft merge of both
    rankings (one row each), and the merge itself.

    The merged ranking keeps the champion's output name and datatype. Scores (an output of
    role ``scores`` on both sides) are taken from the side that contributed each item (the
    champion's for the common prefix); when either side has none, the scores are dropped,
    never invented. Any other output is the champion's. NotARanking when either answer holds
    no ranking of one row, or its ids are not hashable."""
    a_name = _by_role(champion_roles, champion, "ranking")
    b_name = _by_role(candidate_roles, candidate, "ranking")
    if a_name is None or b_name is None:
        raise NotARanking(f"no ranking output in the {'champion' if a_name is None else 'candidate'}'s answer")
    a_array, a_items = _row(champion, a_name, "champion")
    _, b_items = _row(candidate, b_name, "candidate")
    try:
        merged = team_draft(a_items, b_items, k, coin(request_id))
    except TypeError as exc:
        raise NotARanking(str(exc)) from None
    out = dict(champion)
    out[a_name] = np.asarray(list(merged.items), dtype=a_array.dtype).reshape(1, -1)
    a_scores_name = _by_role(champion_roles, champion, "scores")
    b_scores_name = _by_role(candidate_roles, candidate, "scores")
    if a_scores_name is not None:
        del out[a_scores_name]
        if b_scores_name is not None:
            a_scores = np.asarray(champion[a_scores_name]).reshape(-1)
            b_scores = np.asarray(candidate[b_scores_name]).reshape(-1)
            a_at = {item: i for i, item in reversed(list(enumerate(a_items)))}
            b_at = {item: i for i, item in reversed(list(enumerate(b_items)))}
            picked = []
            for item, team in zip(merged.items, merged.teams, strict=True):
                scores, at = (b_scores, b_at) if team == TEAM_B else (a_scores, a_at)
                index = at.get(item)
                picked.append(scores[index] if index is not None and index < scores.size else np.nan)
            if not any(np.isnan(np.asarray(picked, dtype=np.float64))):
                out[a_scores_name] = np.asarray(picked, dtype=a_scores.dtype).reshape(1, -1)
    return out, merged
