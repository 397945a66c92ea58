"""The router: a pure function of the traffic policy and the request."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from changeover.domain.policy import (
    BUCKETS,
    ROUTE_HEADER,
    Interleave,
    Override,
    Shadow,
    TrafficPolicy,
    bucket_of,
    route,
)

KEYS = [f"user-{i}" for i in range(10_000)]
RNG = random.Random(0)


def reader(headers: dict[str, str] | None = None, inputs: dict[str, str] | None = None,
           sticky: str = "header:x-changeover-key"):
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    inputs = inputs or {}

    def read(field: str) -> str | None:
        if field == "key":
            return read(sticky)
        kind, _, name = field.partition(":")
        if kind == "header":
            return headers.get(name.lower())
        if kind == "input":
            return inputs.get(name)
        return None

    return read


def keyed(key: str):
    return reader({"x-changeover-key": key})


def assign(policy: TrafficPolicy, keys: list[str] = KEYS) -> dict[str, int]:
    return {k: route(policy, keyed(k), RNG).version for k in keys}


def test_without_candidates_the_champion_serves_everything() -> None:
    policy = TrafficPolicy(model="m", champion=1)
    for k in KEYS[:200]:
        r = route(policy, keyed(k))
        assert (r.version, r.reason) == (1, "champion")
    assert route(policy, reader()).version == 1


def test_a_model_without_champion_cannot_route() -> None:
    with pytest.raises(LookupError, match="no champion"):
        route(TrafficPolicy(model="m"), reader())


def test_sticky_the_same_key_gets_the_same_version() -> None:
    policy = TrafficPolicy(model="m", champion=1, weights={2: 30.0})
    first = assign(policy, KEYS[:2000])
    for _ in range(3):
        assert assign(policy, KEYS[:2000]) == first
    # and regardless of the random source
    for k in KEYS[:500]:
        assert route(policy, keyed(k), random.Random(7)).version == first[k]
    reasons = {route(policy, keyed(k)).reason for k in KEYS[:2000]}
    assert reasons == {"sticky", "champion"}


def test_as_the_weight_grows_keys_only_move_from_champion_to_candidate() -> None:
    steps = [0.0, 1.0, 5.0, 25.0, 50.0, 100.0]
    previous: dict[str, int] | None = None
    for weight in steps:
        policy = TrafficPolicy(model="m", champion=1, weights={2: weight})
        now = assign(policy)
        if previous is not None:
            back = [k for k in KEYS if previous[k] == 2 and now[k] == 1]
            assert back == [], f"keys moved back to the champion at {weight}%: {back[:5]}"
        previous = now
    assert set(previous.values()) == {2}  # type: ignore[union-attr]


@pytest.mark.parametrize("weight", [1.0, 5.0, 25.0, 50.0, 90.0])
def test_weights_split_keys_in_the_right_proportion(weight: float) -> None:
    policy = TrafficPolicy(model="m", champion=1, weights={2: weight})
    counts = Counter(assign(policy).values())
    share = 100.0 * counts[2] / len(KEYS)
    assert abs(share - weight) < 1.0 + weight * 0.05, share


def test_requests_without_a_key_are_split_at_random_in_proportion() -> None:
    policy = TrafficPolicy(model="m", champion=1, weights={2: 20.0, 3: 10.0})
    rng = random.Random(1)
    counts = Counter(route(policy, reader(), rng).version for _ in range(20_000))
    assert abs(counts[2] / 20_000 - 0.20) < 0.015
    assert abs(counts[3] / 20_000 - 0.10) < 0.015
    assert abs(counts[1] / 20_000 - 0.70) < 0.015
    assert route(policy, reader(), rng).reason in {"weight", "champion"}


def test_several_candidates_each_get_their_share() -> None:
    policy = TrafficPolicy(model="m", champion=1, weights={2: 10.0, 3: 30.0})
    counts = Counter(assign(policy).values())
    assert abs(counts[2] / len(KEYS) - 0.10) < 0.015
    assert abs(counts[3] / len(KEYS) - 0.30) < 0.015


def test_buckets_depend_on_the_model_and_cover_the_range() -> None:
    buckets = [bucket_of("m", k) for k in KEYS]
    assert all(0 <= b < BUCKETS for b in buckets)
    assert len(set(buckets)) > 6000  # about 1 - 1/e of the buckets for as many keys
    assert bucket_of("m", "k") == bucket_of("m", "k")
    differ = sum(bucket_of("a", k) != bucket_of("b", k) for k in KEYS[:1000])
    assert differ > 950  # another model gets an independent split


def test_sticky_key_can_be_an_input() -> None:
    policy = TrafficPolicy(model="m", champion=1, weights={2: 50.0}, sticky_key="input:user")
    for k in KEYS[:300]:
        by_input = route(policy, reader(inputs={"user": k}, sticky="input:user")).version
        assert route(policy, reader(inputs={"user": k}, sticky="input:user")).version == by_input
    versions = {route(policy, reader(inputs={"user": k}, sticky="input:user")).version for k in KEYS[:300]}
    assert versions == {1, 2}


def test_overrides_force_a_version_for_matching_requests() -> None:
    policy = TrafficPolicy(
        model="m", champion=1, weights={2: 50.0},
        overrides=(
            Override(field="header:x-tenant", values=("acme",), version=3),
            Override(field="input:country", values=("fr", "be"), version=2),
            Override(field="key", values=("vip",), version=1),
        ),
    )
    r = route(policy, reader({"x-tenant": "acme", "x-changeover-key": "anyone"}))
    assert (r.version, r.reason) == (3, "override")
    assert route(policy, reader(inputs={"country": "be"})).version == 2
    assert route(policy, reader({"x-changeover-key": "vip"})).version == 1
    assert route(policy, reader({"x-tenant": "other", "x-changeover-key": "vip"})).version == 1
    assert 3 in policy.serving_versions  # an override's version is loaded and served


def test_the_route_header_is_ignored_without_an_override_that_allows_it() -> None:
    policy = TrafficPolicy(model="m", champion=1, weights={2: 10.0}, shadows=(Shadow(3),))
    for k in KEYS[:300]:
        normal = route(policy, keyed(k)).version
        forced = route(policy, reader({"x-changeover-key": k, ROUTE_HEADER: "2"})).version
        assert forced == normal


def test_the_route_header_is_honoured_only_where_and_as_far_as_allowed() -> None:
    policy = TrafficPolicy(
        model="m", champion=1, weights={2: 10.0}, shadows=(Shadow(3, sample=0.0),), warm=(4,),
        overrides=(Override(field="header:x-team", values=("qa",), allowed=(2, 3)),),
    )
    qa = {"x-team": "qa", "x-changeover-key": "k"}
    assert route(policy, reader(qa | {ROUTE_HEADER: "3"})).version == 3
    r = route(policy, reader(qa | {ROUTE_HEADER: "2"}))
    assert (r.version, r.reason) == (2, "route-header")
    # not allowed (4 is loaded but not in the list): normal routing
    assert route(policy, reader(qa | {ROUTE_HEADER: "4"})).reason != "route-header"
    # not loaded at all
    assert route(policy, reader(qa | {ROUTE_HEADER: "9"})).version in {1, 2}
    assert route(policy, reader(qa | {ROUTE_HEADER: "9"})).reason != "route-header"
    # garbage
    assert route(policy, reader(qa | {ROUTE_HEADER: "two"})).reason != "route-header"
    # another team: the header does nothing
    assert route(policy, reader({"x-team": "dev", "x-changeover-key": "k", ROUTE_HEADER: "3"})).reason != "route-header"


def test_an_open_route_rule_allows_any_loaded_version() -> None:
    policy = TrafficPolicy(model="m", champion=1, warm=(5,), overrides=(Override(field=None),))
    assert route(policy, reader({ROUTE_HEADER: "5"})).version == 5
    assert route(policy, reader({ROUTE_HEADER: "6"})).version == 1  # not loaded
    assert route(policy, reader()).version == 1


def test_shadows_are_sampled() -> None:
    policy = TrafficPolicy(model="m", champion=1, shadows=(Shadow(2, sample=1.0), Shadow(3, sample=0.25), Shadow(4, sample=0.0)))
    rng = random.Random(3)
    seen = Counter()
    for _ in range(4000):
        r = route(policy, reader(), rng)
        assert r.version == 1
        seen.update(s.version for s in r.shadows)
    assert seen[2] == 4000
    assert abs(seen[3] / 4000 - 0.25) < 0.03
    assert seen[4] == 0


@pytest.mark.parametrize("weights", [{2: 60.0, 3: 50.0}, {2: -1.0}, {2: 100.5}])
def test_impossible_weights_are_refused(weights: dict[int, float]) -> None:
    with pytest.raises(ValueError, match="weights"):
        TrafficPolicy(model="m", champion=1, weights=weights)


def test_policies_round_trip_and_list_their_versions() -> None:
    policy = TrafficPolicy(
        model="m", generation=7, champion=1, weights={2: 5.0},
        shadows=(Shadow(3, sample=0.5, timeout_s=0.2, segment="header:x-country"),),
        sticky_key="header:x-user-id",
        overrides=(Override(field="header:x-team", values=("qa",), allowed=(2,)), Override(field="key", values=("a",), version=4)),
        warm=(9,),
    )
    again = TrafficPolicy.from_dict(policy.to_dict())
    assert again == policy
    assert policy.serving_versions == {1, 2, 4}
    assert policy.loaded_versions == {1, 2, 3, 4, 9}
    assert policy.evolve(weights={}).serving_versions == {1, 4}
    assert TrafficPolicy.from_dict({"model": "m"}).sticky_key == "header:x-changeover-key"


def test_an_interleave_entry_round_trips_and_keeps_the_candidate_loaded() -> None:
    policy = TrafficPolicy(model="m", generation=3, champion=1, interleave=Interleave(1, 2, sample=0.2, k=5, timeout_s=0.5))
    again = TrafficPolicy.from_dict(policy.to_dict())
    assert again == policy and again.interleave == Interleave(1, 2, 0.2, 5, 0.5)
    assert policy.serving_versions == {1} and policy.loaded_versions == {1, 2}
    assert TrafficPolicy.from_dict({"model": "m", "champion": 1}).interleave is None


@pytest.mark.parametrize("bad", [{"sample": 0.0}, {"sample": 1.5}, {"k": 0}, {"candidate": 1}])
def test_an_impossible_interleave_is_refused(bad: dict[str, float]) -> None:
    args = {"champion": 1, "candidate": 2} | bad
    with pytest.raises(ValueError, match="interleave"):
        Interleave(**args)  # type: ignore[arg-type]


def test_interleaving_is_sticky_by_key_and_takes_its_share() -> None:
    policy = TrafficPolicy(model="m", champion=1, interleave=Interleave(1, 2, sample=0.3))
    chosen = {k: route(policy, keyed(k), RNG).interleave is not None for k in KEYS}
    assert abs(sum(chosen.values()) / len(KEYS) - 0.3) < 0.03
    assert all((route(policy, keyed(k), RNG).interleave is not None) == chosen[k] for k in KEYS[:500])
    assert {route(policy, keyed(k), RNG).version for k in KEYS} == {1}  # the champion still serves
    # without a key: a coin per request, in proportion
    coins = [route(policy, reader(), random.Random(i)).interleave is not None for i in range(4000)]
    assert abs(sum(coins) / 4000 - 0.3) < 0.03


def test_interleaving_is_independent_of_the_canary_buckets() -> None:
    # the users interleaved are not the lowest buckets (those the canary would take first)
    policy = TrafficPolicy(model="m", champion=1, interleave=Interleave(1, 2, sample=0.1))
    low = [k for k in KEYS if bucket_of("m", k) < BUCKETS // 10]
    share = sum(route(policy, keyed(k), RNG).interleave is not None for k in low) / len(low)
    assert 0.05 < share < 0.15


def test_only_the_champion_serves_interleaved_lists() -> None:
    rule = Interleave(1, 2, sample=1.0)
    forced = TrafficPolicy(model="m", champion=1, interleave=rule,
                           overrides=(Override(field="key", values=("qa",), version=2),))
    assert route(forced, keyed("qa"), RNG).interleave is None  # pinned to the candidate
    assert route(forced, keyed("u"), RNG).interleave == rule
    moved = TrafficPolicy(model="m", champion=3, interleave=rule)  # a stale entry after a promotion
    assert route(moved, keyed("u"), RNG).interleave is None
