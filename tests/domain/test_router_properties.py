"""Properties of the router (`domain.policy.route`), over policies and requests hypothesis
draws: weights honoured within statistical bounds, stickiness, monotone movement as a
candidate's weight grows, and traffic policy generations that only increase."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from changeover.domain.policy import BUCKETS, Override, TrafficPolicy, route
from changeover.store.store import Store

CHAMPION = 1
Z = 5.0  # bounds at five standard deviations: a correct router fails about once in 3.5 million tries

keys = st.text(min_size=1, max_size=24)
models = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
percent = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def candidate_weights() -> st.SearchStrategy[dict[int, float]]:
    """1 to 3 candidates (versions 2..9) whose percents sum to at most 100."""
    def scale(raw: dict[int, float]) -> dict[int, float]:
        total = sum(raw.values())
        return {v: w * 100.0 / total for v, w in raw.items()} if total > 100.0 else raw
    return st.dictionaries(st.integers(2, 9), st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=3).map(scale)


def keyed(key: str | None):
    def read(field: str) -> str | None:
        return key if field in ("key", "header:x-changeover-key") else None
    return read


def within(count: int, n: int, p: float) -> bool:
    """``count`` successes of ``n`` draws is within Z standard deviations of ``n * p`` (plus the
    rounding of a percent to the 10,000 buckets)."""
    p = min(1.0, max(0.0, p))
    slack = n / BUCKETS  # one bucket's worth at each edge of the range
    return abs(count - n * p) <= Z * math.sqrt(n * p * (1 - p)) + 2 * slack + 1


@settings(max_examples=40, deadline=None)
@given(model=models, weights=candidate_weights(), seed=st.integers(0, 2**32 - 1))
def test_weights_are_honoured_within_statistical_bounds(model: str, weights: dict[int, float], seed: int) -> None:
    """Requests without a key: each version's share is its weight (the champion's the rest)."""
    policy = TrafficPolicy(model=model, champion=CHAMPION, weights=weights)
    rng = random.Random(seed)
    n = 2000
    served = Counter(route(policy, keyed(None), rng).version for _ in range(n))
    expected = dict(weights) | {CHAMPION: 100.0 - sum(weights.values())}
    assert set(served) <= set(expected)
    for version, share in expected.items():
        assert within(served[version], n, share / 100.0), (version, share, served)


@settings(max_examples=20, deadline=None)
@given(model=models, weight=st.floats(0.5, 99.5), prefix=st.text(max_size=8))
def test_sticky_keys_spread_as_the_weights_say(model: str, weight: float, prefix: str) -> None:
    """Distinct keys hash uniformly into the buckets: the candidate's share of keys is its weight."""
    policy = TrafficPolicy(model=model, champion=CHAMPION, weights={2: weight})
    n = 2000
    to_candidate = sum(route(policy, keyed(f"{prefix}{i}")).version == 2 for i in range(n))
    assert within(to_candidate, n, weight / 100.0), (weight, to_candidate)


@settings(max_examples=50, deadline=None)
@given(model=models, weights=candidate_weights(), key=keys, seeds=st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=5))
def test_a_key_is_served_by_one_version_whatever_the_dice(model: str, weights: dict[int, float], key: str,
                                                          seeds: list[int]) -> None:
    policy = TrafficPolicy(model=model, champion=CHAMPION, weights=weights)
    chosen = {route(policy, keyed(key), random.Random(seed)).version for seed in seeds}
    assert len(chosen) == 1
    assert chosen <= policy.serving_versions
    # the same policy read back from its stored form routes the key alike (gateways on other replicas)
    again = TrafficPolicy.from_dict(policy.to_dict())
    assert route(again, keyed(key)).version in chosen


@settings(max_examples=40, deadline=None)
@given(model=models, low=percent, high=percent, batch=st.lists(keys, min_size=20, max_size=100, unique=True))
def test_a_growing_weight_moves_keys_only_from_champion_to_candidate(model: str, low: float, high: float,
                                                                     batch: list[str]) -> None:
    low, high = sorted((low, high))
    before = TrafficPolicy(model=model, champion=CHAMPION, weights={2: low})
    after = TrafficPolicy(model=model, champion=CHAMPION, weights={2: high})
    for key in batch:
        if route(before, keyed(key)).version == 2:
            assert route(after, keyed(key)).version == 2, (key, low, high)
        if route(after, keyed(key)).version == CHAMPION:
            assert route(before, keyed(key)).version == CHAMPION, (key, low, high)


@settings(max_examples=60, deadline=None)
@given(model=models, weights=candidate_weights(), forced=st.integers(1, 12), key=st.one_of(st.none(), keys))
def test_a_route_header_picks_only_loaded_versions_the_override_allows(model: str, weights: dict[int, float],
                                                                       forced: int, key: str | None) -> None:
    policy = TrafficPolicy(model=model, champion=CHAMPION, weights=weights,
                           overrides=(Override(field=None, allowed=(CHAMPION, 2, 3)),))

    def read(field: str) -> str | None:
        if field == "header:x-changeover-route":
            return str(forced)
        return keyed(key)(field)

    got = route(policy, read, random.Random(0))
    if forced in (CHAMPION, 2, 3) and forced in policy.loaded_versions:
        assert (got.version, got.reason) == (forced, "route-header")
    else:
        assert got.version in policy.serving_versions and got.reason != "route-header"


policy_changes = st.lists(st.tuples(st.sampled_from(["m", "n"]), st.floats(0.0, 100.0, allow_nan=False),
                                    st.integers(-5, 50)), min_size=1, max_size=12)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('generations') / 'store.db'}")
    yield store
    store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=policy_changes)
def test_generations_only_increase(store: Store, changes: list[tuple[str, float, int]]) -> None:
    """Whatever generation a writer's policy carries (stale, made up, negative), the store
    numbers each write one past the model's newest, and the newest is what gateways read."""
    last = store.generations()
    for model, weight, claimed in changes:
        policy = TrafficPolicy(model=model, generation=claimed, champion=CHAMPION, weights={2: weight} if weight else {})
        with store.tx() as conn:
            written = store.write_policy(policy, conn=conn, event_kind="policy", message="test", actor="test")
        assert written.generation == last.get(model, 0) + 1
        last[model] = written.generation
        assert store.generations() == last
        newest = store.policy(model)
        assert newest is not None and newest.generation == written.generation
        assert dict(newest.weights) == dict(written.weights)
