"""Feedback checks that need the served answer: a ranker's label names items, ids and relevances."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from changeover.domain.ranking_comparison import item_key
from changeover.domain.ranking_feedback import relevance_by_item, relevant_not_served
from changeover.errors import InvalidRequest

__all__ = ["RANKING_LABEL", "ranking_label"]


RANKING_LABEL = "a list of clicked or relevant item ids, or an object item id → relevance (a number >= 0)"


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def ranking_label(output: Mapping[str, Any] | None, label: Any) -> int | None:
    """For feedback on a ranker's answer (a logged ``ranking``): check the label and return how
    many of its relevant items the served list did not contain; None for any other answer, or
    no label. InvalidRequest (422, field ``label``) for a label that names no items, an id that
    is not an int or a string, or a relevance that is not a number >= 0."""
    served = (output or {}).get("ranking")
    if label is None or not isinstance(served, list):
        return None
    if isinstance(label, dict):
        for item, value in label.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InvalidRequest("label", f"the relevance of item {item!r} must be a number >= 0, "
                                              f"got {_json_text(value)}")
    elif isinstance(label, list):
        for position, item in enumerate(label):
            try:
                item_key(item)
            except ValueError:
                raise InvalidRequest("label", f"item ids are ints or strings; item {position} is "
                                              f"{_json_text(item)}") from None
    else:
        raise InvalidRequest("label", f"feedback for a ranker is {RANKING_LABEL}; got {_json_text(label)}")
    try:
        relevance_by_item(label)  # the scorer's own check: what it refuses is refused here
    except ValueError as exc:
        raise InvalidRequest("label", str(exc)) from None
    try:
        return relevant_not_served(served, label)
    except ValueError:  # the logged answer itself is not a list of ids: nothing to count against
        return None
