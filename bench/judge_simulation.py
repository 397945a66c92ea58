"""Whole rollouts through the real code: the judge as a product, by simulation.

    python bench/judge_simulation.py [--runs 100] [--seed 0] [--jobs 2] [--only NAME ...]

Each run is one rollout of the default spec (steps 1/5/25/50%, bake 10m, 3 extensions,
on_inconclusive rollback, a 1h watch with a 2% sticky holdback), driven on a virtual clock
through the real `domain.rollout.decide`, the controller's real evidence accumulation
(`domain.evidence.StageEvidence.add_windows`, fed metric-window rows exactly as the store
gives them: counts, errors, and a latency reservoir of at most `gateway.windows.SAMPLE`
values per window) and the controller's real look (`control.canary_analysis.judge_stage`
and `look_fields`, which build the `Observation`). A look is taken at every 5-s window, as
the controller does when a window arrives. Labels and rewards are fed in bulk per window
(`ArmEvidence.add_labels` and per-request outcomes), after their delay.

Traffic: sticky users (20,000, Pareto-distributed activity: a few users send much of the
traffic) hashed to buckets as the router does, so the canary holds the same users as its
weight grows; 10% of users form a segment. Latency: lognormal, median 80 ms, sigma 0.5, with
a 2% slow mixture (x4); errors 0.1%; labels on 50% of requests after 60 s, accuracy 85%;
rewards (clicks, Poisson 4.9) where a scenario has them. Scenarios name what changes.

Printed per scenario, with 95% Wilson intervals: the share of rollouts rolled back, promoted,
and stuck (paused, or not ended by the horizon); for bad candidates the median canary
requests and the median failed user requests (errors served by the candidate) until the
rollback, beside the sample a fixed-horizon one-sided test of the same alpha and 80% power
needs to tell the tolerance from no harm (what a fixed design must wait for before it may
decide at all).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from changeover.control.canary_analysis import judge_stage, look_fields  # noqa: E402
from changeover.domain.evidence import StageEvidence  # noqa: E402
from changeover.domain.rollout import (  # noqa: E402
    Observation,
    Phase,
    RolloutStatus,
    decide,
)
from changeover.domain.spec import RolloutSpec, parse_spec  # noqa: E402
from changeover.gateway.windows import SAMPLE  # noqa: E402
from changeover.monitoring.online import wilson  # noqa: E402

WINDOW_S = 5.0
USERS = 20_000
BASE_ERROR, ACCURACY, CLICKS = 0.001, 0.85, 4.9
LABEL_SHARE, LABEL_DELAY_S = 0.5, 60.0
CHAMPION, CANDIDATE = 1, 2


@dataclass(frozen=True)
class Scenario:
    name: str
    rate: float = 500.0  # requests per second, all versions
    error: float = 0.0  # candidate's extra error rate (points as a share)
    segment_error: float = 0.0  # extra error rate in the 10% segment only
    scale: float = 1.0  # candidate latency, whole distribution
    tail: float = 1.0  # candidate latency, the slow 2% only (p99 ×2, median unchanged)
    accuracy: float = 0.0  # candidate's change of accuracy
    reward: float | None = None  # candidate's relative change of mean reward (None: no rewards)
    drift_per_h: float = 0.0  # latency of both versions grows this much per hour
    labels: bool = False
    judge: dict[str, Any] = field(default_factory=dict)
    canary: dict[str, Any] = field(default_factory=dict)
    horizon_h: float = 24.0
    bad: bool = False
    runs_share: float = 1.0  # of --runs: the slowest scenarios (days of virtual time) run fewer

    def spec(self) -> RolloutSpec:
        judge = dict(self.judge)
        if self.labels:
            judge.setdefault("label_accuracy", {"max_decrease": 0.01, "label_delay": "60s"})
        canary = {"judge": judge, **self.canary}
        return parse_spec({"model": "sim", "candidate": "2", "champion": "1", "canary": canary,
                           "watch": "1h"})


SCENARIOS = [
    Scenario("A/A 500 req/s"),
    Scenario("A/A 50 req/s", rate=50.0, horizon_h=72.0),
    Scenario("A/A 500 req/s, labels", labels=True),
    Scenario("A/A 50 req/s, labels", rate=50.0, labels=True, horizon_h=120.0, runs_share=0.25),
    Scenario("A/A 500 req/s, drift +35%/h", drift_per_h=0.35),
    Scenario("A/A 500 req/s, rewards", reward=0.0),
    Scenario("A/A 1 req/s (steps 10/50, 1-pt tolerance)", rate=1.0, horizon_h=24 * 14,
             canary={"steps": [10, 50], "bake": "1h"},
             judge={"error_rate": {"max_increase": 0.01}, "latency_p99_ms": {"max_ratio": 2.0}}),
    Scenario("errors +1 pt", error=0.01, bad=True),
    Scenario("errors +10 pts in a 10% segment", segment_error=0.10, bad=True),
    Scenario("latency +20% at max_ratio 1.1", scale=1.2, bad=True,
             judge={"latency_p99_ms": {"max_ratio": 1.1}}),
    Scenario("p99 x2, median unchanged", tail=2.0, bad=True),
    Scenario("accuracy -2 pts", accuracy=-0.02, labels=True, bad=True),
    Scenario("reward -10%", reward=-0.10, bad=True),
    Scenario("errors 100% at 1%", error=0.999, bad=True),
]


@dataclass
class Result:
    phase: str
    hours: float
    canary_requests: int
    canary_errors: int
    reason: str = ""


class Traffic:
    """Sticky users with heavy-tailed activity, routed by bucket as the router does."""

    def __init__(self, rng: np.random.Generator) -> None:
        activity = rng.pareto(1.2, USERS) + 1.0
        self.cumulative = np.cumsum(activity) / activity.sum()
        self.bucket = rng.random(USERS)
        self.segment = rng.random(USERS) < 0.10

    def users(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cumulative, rng.random(n)), USERS - 1)


def _latencies(rng: np.random.Generator, n: int, scale: float, tail: float) -> np.ndarray:
    x = rng.lognormal(np.log(80.0), 0.5, n)
    slow = rng.random(n) < 0.02
    x[slow] *= rng.lognormal(np.log(4.0), 0.3, int(slow.sum())) * tail
    return scale * x


def run(scenario: Scenario, seed: int) -> Result:
    rng = np.random.default_rng(seed)
    spec = scenario.spec()
    traffic = Traffic(rng)
    status, now = RolloutStatus(), 1_700_000_000.0
    start = now
    window_id = 0
    stage: StageEvidence | None = None
    stage_key: tuple[str, float] | None = None
    pending: list[tuple[float, int, int, int, np.ndarray | None]] = []  # feedback in flight
    canary_requests = canary_errors = 0
    horizon = start + scenario.horizon_h * 3600
    per_window = scenario.rate * WINDOW_S
    carry = 0.0
    while now < horizon:
        # route this window's requests by the policy the status implies
        active = status.paused_from if status.phase is Phase.PAUSED else status.phase
        if active is Phase.WATCHING:
            serving, other, weight = CANDIDATE, CHAMPION, 100.0 - spec.watch.holdback
        else:
            serving, other, weight = CANDIDATE, CHAMPION, status.weight
        carry += per_window
        n = int(carry)
        carry -= n
        users = traffic.users(rng, n)
        to_candidate = traffic.bucket[users] * 100.0 < weight
        drift = 1.0 + scenario.drift_per_h * (now - start) / 3600.0
        rows = []
        for version, mask in ((serving, to_candidate), (other, ~to_candidate)):
            count = int(mask.sum())
            if count == 0:
                continue
            bad = version == CANDIDATE
            p_err = np.full(count, BASE_ERROR)
            if bad:
                p_err += scenario.error
                p_err[traffic.segment[users[mask]]] += scenario.segment_error
            errors = int((rng.random(count) < np.minimum(p_err, 1.0)).sum())
            answered = count - errors
            lat = _latencies(rng, min(answered, SAMPLE), drift * (scenario.scale if bad else 1.0),
                             scenario.tail if bad else 1.0)
            window_id += 1
            rows.append({"id": window_id, "version": version, "requests": count, "errors": errors,
                         "latencies": lat, "predictions": []})
            if bad and active in (Phase.PROGRESSING, Phase.WATCHING):
                canary_requests += count
                canary_errors += errors
            labelled = int(rng.binomial(answered, LABEL_SHARE)) if scenario.labels else 0
            correct = int(rng.binomial(labelled, min(1.0, ACCURACY + (scenario.accuracy if bad else 0.0))))
            rewards = None
            if scenario.reward is not None:
                mean = CLICKS * (1.0 + (scenario.reward if bad else 0.0))
                rewards = rng.poisson(mean, int(rng.binomial(answered, LABEL_SHARE))).astype(float)
            pending.append((now + WINDOW_S + LABEL_DELAY_S, version, labelled, correct, rewards))
        now += WINDOW_S
        # the controller: a look when the window arrives, then decide
        began = None
        kind = "canary"
        if active is Phase.PROGRESSING:
            began = status.bake_started_at
        elif active is Phase.WATCHING:
            began, kind = status.phase_started_at, "watch"
        look = None
        if began is not None:
            if stage_key != (kind, began):
                stage, stage_key = StageEvidence(CHAMPION, CANDIDATE, began), (kind, began)
            assert stage is not None
            stage.add_windows(rows)
            arrived = [p for p in pending if p[0] <= now]
            pending = [p for p in pending if p[0] > now]
            for _, version, labelled, correct, rewards in arrived:
                arm = stage.arm(version)
                arm.add_labels(labelled, correct)
                if rewards is not None and rewards.size:
                    arm.reward.add(rewards)
            final = now >= (status.judge_after or 0.0)
            look = judge_stage(stage, kind, spec, began, final, now, status.extensions)
        else:
            pending = []
        obs = Observation(**look_fields(active is Phase.PROGRESSING, look))
        status, _ = decide(spec, status, obs, now)
        if status.terminal or (status.phase is Phase.PAUSED):
            break
    phase = status.phase.value if (status.terminal or status.phase is Phase.PAUSED) else "stuck"
    return Result(phase, (now - start) / 3600, canary_requests, canary_errors, status.message[:200])


def share(k: int, n: int) -> str:
    lo, hi = wilson(k, n) or (0.0, 1.0)
    return f"{k / n:.1%} [{lo:.1%}, {hi:.1%}]"


def fixed_horizon(s: Scenario) -> str:
    """Canary requests a one-sided fixed-horizon test at alpha 0.05 and 80% power needs to
    tell no harm from harm at the tolerance (1:99 arms, as at the first step)."""
    z = float(norm.ppf(0.95) + norm.ppf(0.8))
    j = s.spec().canary.judge  # type: ignore[union-attr]
    if s.error or s.segment_error:
        tol = j.error_rate.max_increase  # type: ignore[union-attr]
        return f"{(z / tol) ** 2 * BASE_ERROR * (1 - BASE_ERROR) * 1.01:,.0f}"
    if s.accuracy:
        tol = j.label_accuracy.max_decrease  # type: ignore[union-attr]
        return f"{(z / tol) ** 2 * ACCURACY * (1 - ACCURACY) * 1.01 / LABEL_SHARE:,.0f}"
    if s.reward is not None:
        return f"{(z / (0.05 * CLICKS)) ** 2 * CLICKS * 1.01 / LABEL_SHARE:,.0f}"
    if s.scale != 1.0 or s.tail != 1.0:
        # p99 of the mixture: var(log q) ~ p(1 − p) / (n (f(q) q)^2), f from a large sample
        x = np.sort(_latencies(np.random.default_rng(1), 2_000_000, 1.0, 1.0))
        q = float(np.quantile(x, 0.99))
        f = 0.002 / (float(np.quantile(x, 0.991)) - float(np.quantile(x, 0.989)))
        tol = math.log(j.latency_p99_ms.max_ratio)  # type: ignore[union-attr]
        return f"{(z / tol) ** 2 * 0.99 * 0.01 / (f * q) ** 2 * 1.01:,.0f}"
    return "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--only", nargs="*", help="scenario names containing any of these words (=NAME: exactly)")
    args = parser.parse_args()
    def picked(name: str) -> bool:  # a word matches a name it is part of; "=NAME" only NAME
        return any(name == w[1:] if w.startswith("=") else w.lower() in name.lower() for w in args.only)

    chosen = [s for s in SCENARIOS if not args.only or picked(s.name)]
    console = Console()
    console.print(f"[bold]Whole-rollout simulation[/]: {args.runs} rollouts per scenario, default spec "
                  "(steps 1/5/25/50%, bake 10m, 3 extensions, 1h watch with 2% holdback), looks every 5 s")
    table = Table(show_lines=False)
    for col in ("scenario", "runs", "rolled back", "promoted", "stuck / paused", "median h",
                "canary req. to catch", "failed req. before rollback", "fixed-horizon n"):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for s in chosen:
            seeds = [args.seed * 1_000_003 + i for i in range(max(1, round(args.runs * s.runs_share)))]
            results = list(pool.map(run, [s] * len(seeds), seeds, chunksize=4))
            n = len(results)
            back = [r for r in results if r.phase == "rolled_back"]
            promoted = sum(r.phase == "promoted" for r in results)
            stuck = sum(r.phase in ("stuck", "paused") for r in results)
            med_h = float(np.median([r.hours for r in results]))
            catch = f"{np.median([r.canary_requests for r in back]):,.0f}" if back and s.bad else "–"
            failed = f"{np.median([r.canary_errors for r in back]):,.0f}" if back and s.bad else "–"
            row = (s.name, str(n), share(len(back), n), share(promoted, n), share(stuck, n), f"{med_h:.1f}",
                   catch, failed, fixed_horizon(s) if s.bad else "–")
            table.add_row(*row)
            console.print(f"  {' | '.join(row)}  ({time.monotonic() - started:.0f} s)")
    console.print(table)
    console.print("Targets: A/A rolled back <= 5% and stuck <= 5% in every scenario; a bad candidate "
                  "rolled back >= 95%, stuck <= 5%.")


if __name__ == "__main__":
    main()
