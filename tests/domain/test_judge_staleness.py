"""Stale metrics are not "no requests": a look that has seen no new window since a replica's
recorder stalled waits, whatever its checks say, and says since when and whose recorder."""

from __future__ import annotations

import numpy as np
import pytest

from changeover.control.canary_analysis import judge_stage, look_fields
from changeover.domain.evidence import StageEvidence
from changeover.domain.judge import FAIL, INCONCLUSIVE, PASS
from changeover.domain.judge_staleness import RecorderReport, held, stale_stall, stale_words
from changeover.domain.rollout import Observation, Phase, RolloutStatus, decide
from changeover.domain.rollout_state import EventKind
from changeover.domain.spec import parse_spec

T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
OK = RecorderReport("a", None, T0)


@pytest.mark.parametrize(("reports", "last_arrival", "stale"), [
    ([], None, None),
    ([OK], None, None),  # every recorder writes: no windows is no requests
    ([RecorderReport("b", T0 + 5, T0 + 9)], None, "b"),  # nothing arrived yet, b cannot write
    ([RecorderReport("b", T0 + 5, T0 + 9)], T0 + 4, "b"),  # the last window came before the stall
    ([RecorderReport("b", T0 + 5, T0 + 9)], T0 + 5, "b"),
    ([RecorderReport("b", T0 + 5, T0 + 9)], T0 + 6, None),  # a window came after: others still write
    ([RecorderReport("c", T0 + 7, T0 + 9), RecorderReport("b", T0 + 5, T0 + 9), OK], T0 + 1, "b"),  # the earliest
])
def test_which_stall_makes_a_look_stale(reports: list[RecorderReport], last_arrival: float | None,
                                        stale: str | None) -> None:
    found = stale_stall(reports, last_arrival)
    assert (found.replica if found else None) == stale


def test_the_words_say_since_when_and_whose_recorder() -> None:
    assert stale_words(RecorderReport("r1", T0, T0)) == \
        "metrics stale since 2027-01-15 08:00:00 UTC (replica r1's recorder cannot write)"


def windows(rng: np.random.Generator, version: int, count: int, *, start_id: int, requests: int,
            error_rate: float) -> list[dict]:
    return [{"id": start_id + i, "version": version, "requests": requests,
             "errors": int(rng.binomial(requests, error_rate)),
             "latencies": rng.lognormal(np.log(80.0), 0.5, min(requests, 2000))}
            for i in range(count)]


SPEC = parse_spec({"model": "m", "candidate": "2", "champion": "1",
                   "canary": {"steps": [20], "bake": "10m", "judge": {"min_requests": 50}}})


def stage(candidate_error_rate: float) -> StageEvidence:
    rng = np.random.default_rng(3)
    evidence = StageEvidence(baseline=1, canary=2, since=T0)
    evidence.add_windows(windows(rng, 1, 20, start_id=0, requests=2000, error_rate=0.001))
    evidence.add_windows(windows(rng, 2, 20, start_id=100, requests=500, error_rate=candidate_error_rate))
    return evidence


@pytest.mark.parametrize("error_rate", [0.001, 0.4])
def test_a_stale_look_neither_passes_nor_fails(error_rate: float) -> None:
    look = judge_stage(stage(error_rate), "canary", SPEC, T0, final=True, now=T0 + 700)
    assert look.analysis.outcome == (PASS if error_rate < 0.01 else FAIL)
    waiting = held(look.analysis, RecorderReport("b", T0 + 650, T0 + 699))
    assert waiting.outcome == INCONCLUSIVE and not waiting.enough
    assert waiting.checks[0].name == "metrics" and waiting.checks[1:] == look.analysis.checks  # evidence kept
    assert waiting.waiting[0].startswith("metrics: metrics stale since ")


def test_the_step_waits_and_says_why_once_its_bake_is_over() -> None:
    look = judge_stage(stage(0.001), "canary", SPEC, T0, final=True, now=T0 + 700)
    stale = type(look)(held(look.analysis, RecorderReport("b", T0 + 650, T0 + 699)), look.evidence)
    status = RolloutStatus(phase=Phase.PROGRESSING, phase_started_at=T0, updated_at=T0, step_index=0,
                           weight=20.0, bake_started_at=T0, judge_after=T0 + 600)
    new, actions = decide(SPEC, status, Observation(**look_fields(True, stale)), T0 + 700)
    assert new.phase is Phase.PROGRESSING and new.step_index == 0 and new.waiting
    assert [a.kind for a in actions] == [EventKind.STEP_WAITING]  # type: ignore[attr-defined]
    assert "metrics stale since" in actions[0].message and "replica b's recorder" in actions[0].message  # type: ignore[attr-defined]
    # the same look, fresh, passes the step
    passed, actions = decide(SPEC, status, Observation(**look_fields(True, look)), T0 + 700)
    assert passed.phase is Phase.PROMOTING
    assert EventKind.STEP_PASSED in [getattr(a, "kind", None) for a in actions]
