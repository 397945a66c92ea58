""""did you mean" across nesting: a field written at the wrong level is pointed to where it lives
(docs/rollout-spec.md promises the hint for nested paths too)."""

from __future__ import annotations

import pytest

from changeover.domain.spec import SpecError, parse_spec

BASE = {"model": "m", "candidate": "2"}


def problems(extra: dict) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec(BASE | extra)
    return info.value.problems


@pytest.mark.parametrize(("extra", "field", "hint"), [
    # the case: min_requests lives under canary.judge
    ({"canary": {"min_requests": 50}}, "canary.min_requests", "canary.judge.min_requests"),
    ({"canary": {"min_request": 50}}, "canary.min_request", "canary.judge.min_requests"),  # and misspelt
    ({"judge": {}}, "judge", "canary.judge"),
    ({"canary": {"judge": {"max_bake": "1m"}}}, "canary.judge.max_bake", "canary.max_bake"),
    ({"watch": {"error_rate": {"max": 0.1}}}, "watch.error_rate", "watch.guards.error_rate"),
    ({"sample": 0.5}, "sample", "shadow.sample"),
    # a close name at the same level keeps the short hint
    ({"canary": {"stpes": [1]}}, "canary.stpes", "steps"),
])
def test_a_misplaced_field_is_pointed_to_where_it_lives(extra: dict, field: str, hint: str) -> None:
    assert problems(extra) == [(field, f"unknown field (did you mean {hint!r}?)")]


def test_a_field_that_lives_nowhere_gets_no_hint() -> None:
    assert problems({"canary": {"colour": "blue"}}) == [("canary.colour", "unknown field")]
