from __future__ import annotations

import pytest

from changeover.domain.criteria import canary_config, family_alpha, stages, watch_config
from changeover.domain.spec import parse_spec

BASE = {"model": "m", "candidate": "2"}


def spec(**changes: object):  # type: ignore[no-untyped-def]
    return parse_spec({**BASE, **changes})


def test_defaults_judge_errors_latency_and_rewards_once_they_arrive() -> None:
    config = canary_config(spec(canary={}))
    names = [(c.name, c.tolerance, c.named) for c in config.criteria]
    assert names == [("error_rate", 0.002, True), ("latency_p99_ms", 1.2, True), ("reward", None, False),
                     ("ranking", None, False)]
    assert config.criteria[-1].metric == "ndcg_at_10"
    assert (config.power, config.min_requests, config.min_labels) == (0.8, 100, 100)


def test_every_field_of_the_spec_is_read() -> None:
    s = spec(canary={"judge": {
        "error_rate": {"max_increase": 0.01, "alpha": 0.02},
        "latency_p99_ms": {"max_ratio": 1.5, "alpha": 0.03},
        "label_accuracy": {"max_decrease": 0.02, "alpha": 0.04, "sequential": False},
        "mae": {"max_increase": 2.0}, "rmse": {"max_ratio": 1.1},
        "reward": {"max_decrease": 0.3, "cap": 100, "alpha": 0.01},
        "guards": {"error_rate": {"max": 0.2}},
        "min_requests": 7, "min_labels": 9, "power": 0.9}})
    config = canary_config(s)
    got = {c.name: c for c in config.criteria}
    assert (got["error_rate"].tolerance, got["error_rate"].alpha) == (0.01, 0.02)
    assert (got["latency_p99_ms"].tolerance, got["latency_p99_ms"].alpha) == (1.5, 0.03)
    assert got["label_accuracy"].sequential is False and got["label_accuracy"].alpha == 0.04
    assert got["mae"].tolerance == 2.0 and got["rmse"].relative == pytest.approx(0.1)
    assert (got["reward"].tolerance, got["reward"].cap, got["reward"].alpha) == (0.3, 100, 0.01)
    assert [(g.name, g.max) for g in config.guards] == [("error_rate", 0.2)]
    assert (config.min_requests, config.min_labels, config.power) == (7, 9, 0.9)


def test_reward_null_turns_the_default_off() -> None:
    config = canary_config(spec(canary={"judge": {"reward": None, "ranking": None}}))
    assert [c.name for c in config.criteria] == ["error_rate", "latency_p99_ms"]


def test_a_named_ranking_criterion() -> None:
    config = canary_config(spec(canary={"judge": {"ranking": {"metric": "ctr_at_5", "max_decrease": 0.1}}}))
    (rank,) = [c for c in config.criteria if c.name == "ranking"]
    assert (rank.metric, rank.tolerance, rank.named) == ("ctr_at_5", 0.1, True)


def test_alpha_is_spent_over_the_canary_and_a_watch_with_holdback() -> None:
    assert stages(spec(canary={})) == 5  # four steps, and the default watch keeps a 2% holdback
    assert stages(spec(canary={}, watch={"duration": "1h", "holdback": 0})) == 4
    assert stages(spec(canary={"steps": [50]}, watch=0)) == 1
    # error rate and latency at 0.05, and reward and ranking by default: at most 10% in all
    # (the default ones only count once their feedback arrives)
    assert family_alpha(spec(canary={})) == pytest.approx(0.10)


def test_watch_without_holdback_has_its_guards() -> None:
    s = spec(canary={}, watch={"duration": "1h", "holdback": 0,
                               "guards": {"error_rate": {"max": 0.05}, "latency_p99_ms": {"max": 250}}})
    assert [(g.name, g.max) for g in watch_config(s).guards] == [("error_rate", 0.05), ("latency_p99_ms", 250)]
