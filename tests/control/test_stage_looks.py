"""The controller's looks, on evidence fed as the store gives it (no server needed)."""

from __future__ import annotations

import numpy as np

from changeover.control.canary_analysis import judge_stage, look_fields
from changeover.domain.evidence import StageEvidence
from changeover.domain.spec import parse_spec


def windows(rng: np.random.Generator, version: int, count: int, *, start_id: int, requests: int,
            error_rate: float, scale: float = 1.0) -> list[dict]:
    return [{"id": start_id + i, "version": version, "requests": requests,
             "errors": int(rng.binomial(requests, error_rate)),
             "latencies": scale * rng.lognormal(np.log(80.0), 0.5, min(requests, 2000))}
            for i in range(count)]


def test_the_watch_compares_the_holdback_over_the_same_hours() -> None:
    """A drift that slows both versions alike is no reason to roll back: the watch's baseline is
    the old champion's holdback, served at the same time, not its earlier hours."""
    rng = np.random.default_rng(0)
    spec = parse_spec({"model": "m", "candidate": "2", "champion": "1", "canary": {}, "watch": "1h"})
    stage = StageEvidence(baseline=1, canary=2, since=1000.0)
    for hour_scale in (1.0, 1.35, 1.7):  # +35% an hour, for both versions
        stage.add_windows(windows(rng, 1, 40, start_id=int(hour_scale * 1000), requests=50,
                                  error_rate=0.001, scale=hour_scale))
        stage.add_windows(windows(rng, 2, 40, start_id=int(hour_scale * 1000) + 500, requests=2450,
                                  error_rate=0.001, scale=hour_scale))
    look = judge_stage(stage, "watch", spec, 1000.0, final=False, now=5000.0)
    assert look.analysis.outcome != "fail", look.evidence
    assert {c.name for c in look.analysis.checks} >= {"error_rate", "latency_p99_ms"}
    fields = look_fields(False, look)
    assert fields["canary_verdict"] is None and fields["watch_verdict"] == look.analysis.outcome


def test_a_watch_without_holdback_has_only_its_guards() -> None:
    rng = np.random.default_rng(1)
    spec = parse_spec({"model": "m", "candidate": "2", "champion": "1", "canary": {},
                       "watch": {"duration": "1h", "holdback": 0,
                                 "guards": {"error_rate": {"max": 0.05}}}})
    stage = StageEvidence(baseline=1, canary=2, since=0.0)
    stage.add_windows(windows(rng, 2, 10, start_id=0, requests=500, error_rate=0.30))
    look = judge_stage(stage, "watch", spec, 0.0, final=False, now=60.0)
    assert [c.name for c in look.analysis.checks] == ["guard.error_rate"]
    assert look.analysis.outcome == "fail"  # 30% errors against a 5% ceiling, no baseline needed


def test_a_failing_canary_fails_at_its_first_window() -> None:
    rng = np.random.default_rng(2)
    spec = parse_spec({"model": "m", "candidate": "2", "champion": "1", "canary": {"steps": [20], "bake": "10m"}})
    stage = StageEvidence(baseline=1, canary=2, since=0.0)
    stage.add_windows(windows(rng, 1, 1, start_id=0, requests=2000, error_rate=0.001))
    stage.add_windows(windows(rng, 2, 1, start_id=1, requests=500, error_rate=0.34))
    look = judge_stage(stage, "canary", spec, 0.0, final=False, now=5.0)
    assert look.analysis.outcome == "fail" and "error_rate" in look_fields(True, look)["canary_reason"]
