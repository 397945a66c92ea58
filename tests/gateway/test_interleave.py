"""The gateway's merge of two rankers' answers into one interleaved list."""

from __future__ import annotations

import numpy as np
import pytest

from changeover.domain.interleaving import BOTH, TEAM_A, TEAM_B, team_draft
from changeover.gateway.interleave import NotARanking, coin, merge_rankings

ROLES = {"items": "ranking", "scores": "scores"}


def answer(items: list[int], scores: list[float] | None = None) -> dict[str, np.ndarray]:
    out = {"items": np.asarray([items], dtype=np.int64)}
    if scores is not None:
        out["scores"] = np.asarray([scores], dtype=np.float32)
    return out


def test_the_merge_is_team_draft_seeded_by_the_request_id() -> None:
    a, b = answer([1, 2, 3, 4, 5]), answer([5, 4, 3, 2, 1])
    out, merged = merge_rankings(a, ROLES, b, ROLES, 4, "req-1")
    assert merged == team_draft([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], 4, coin("req-1"))
    assert out["items"].dtype == np.int64 and out["items"].tolist() == [list(merged.items)]
    again, _ = merge_rankings(a, ROLES, b, ROLES, 4, "req-1")
    assert again["items"].tolist() == out["items"].tolist()  # reproducible
    lists = {tuple(merge_rankings(a, ROLES, b, ROLES, 4, f"req-{i}")[1].teams) for i in range(40)}
    assert len(lists) > 1  # the coin differs between requests
    assert all(team in (TEAM_A, TEAM_B) for teams in lists for team in teams)


def test_scores_come_from_the_side_that_contributed_each_item() -> None:
    a = answer([1, 2, 3], [0.9, 0.8, 0.7])
    b = answer([1, 3, 2], [90.0, 80.0, 70.0])
    out, merged = merge_rankings(a, ROLES, b, ROLES, 3, "r")
    assert merged.items[0] == 1 and merged.teams[0] == BOTH
    expected = []
    for item, team in zip(merged.items, merged.teams, strict=True):
        side = {1: 90.0, 3: 80.0, 2: 70.0} if team == TEAM_B else {1: 0.9, 2: 0.8, 3: 0.7}
        expected.append(side[item])
    assert out["scores"].tolist()[0] == pytest.approx(expected)


def test_scores_are_dropped_when_the_candidate_has_none() -> None:
    out, _ = merge_rankings(answer([1, 2], [0.5, 0.4]), ROLES, answer([2, 1]), {"items": "ranking"}, 2, "r")
    assert set(out) == {"items"}


@pytest.mark.parametrize(("a", "b"), [
    ({"prediction": np.zeros(1)}, answer([1])),
    (answer([1]), {"prediction": np.zeros(1)}),
    ({"items": np.asarray([[1, 2], [3, 4]])}, answer([1])),
])
def test_an_answer_without_a_one_row_ranking_is_refused(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    roles = {"items": "ranking", "prediction": "prediction"}
    with pytest.raises(NotARanking):
        merge_rankings(a, roles, b, roles, 5, "r")
