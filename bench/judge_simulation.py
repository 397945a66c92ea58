"""Decision quality of the canary judge, by simulation.

    python bench/judge_simulation.py [--runs 500] [--seed 0]

Each run is a canary: champion (baseline) and candidate (canary) each serve `--requests`
requests per window for `--windows` windows; errors are Bernoulli(1%), latencies lognormal
(median 80 ms, sigma 0.5) kept in a uniform reservoir of `--reservoir` per arm, labels arrive
for `--label-share` of requests and are correct with probability 85%. After every window the
judge sees everything so far, and a "fail" rolls the run back (it stops there).

What is measured: `changeover.domain.judge.judge` itself, called at every window with
JudgeConfig(latency_p99_max_ratio=1.1) — a 10% latency tolerance, so that the +20% latency
scenario lies beyond it (at the default 1.2 it would sit exactly on the tolerance); every other
setting is the default. No prediction samples are simulated, so that check is left out.
Against it, on the same data:
- "naive z/t": each window, a two-proportion z-test (errors, accuracy) and a Welch t-test
  (latency) at alpha 0.05, rolled back when the canary is significantly worse;
- "fixed interval": the judge's rules and tolerances with the always-valid intervals replaced
  by fixed-horizon 95% z-intervals (the latency check is the judge's own, already fixed-horizon).

Columns: "rolled back" is the share of runs with a fail at any window (for A/A, the false
rollback rate); the median counts requests per arm up to that window; "first verdict pass" is
the share of runs whose first verdict other than inconclusive was pass, i.e. what a controller
that advances at its first pass would have let through (it keeps judging afterwards).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.stats import norm, ttest_ind

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from changeover.domain.judge import (  # noqa: E402  (after the path set-up)
    FAIL,
    INCONCLUSIVE,
    PASS,
    ArmSample,
    JudgeConfig,
    judge,
    latency_check,
)

CONFIG = JudgeConfig(latency_p99_max_ratio=1.1)
ERROR_RATE, ACCURACY, LATENCY_MEDIAN_MS, LATENCY_SIGMA = 0.01, 0.85, 80.0, 0.5
SCENARIOS: dict[str, dict[str, float]] = {
    "A/A (no change)": {},
    "errors +1 pt": {"error_rate": ERROR_RATE + 0.01},
    "latency +20%": {"latency_scale": 1.2},
    "accuracy -2 pts": {"accuracy": ACCURACY - 0.02},
}
CHECKS = ("error_rate", "latency", "label_accuracy")
Z = float(norm.ppf(0.975))


@dataclass(frozen=True)
class Params:
    windows: int
    requests: int
    reservoir: int
    label_share: float


@dataclass
class RunResult:
    judge_fail: int | None = None  # window (1-based) of the judge's rollback
    judge_first_pass: int | None = None  # first window whose verdict was pass
    judge_first_verdict: str = INCONCLUSIVE  # first non-inconclusive verdict
    failed_checks: tuple[str, ...] = ()
    naive_fail: int | None = None
    fixed_fail: int | None = None
    fixed_failed: dict[str, bool] = field(default_factory=dict)


class Reservoir:
    """A uniform sample of `size` of every latency seen so far (exact in distribution)."""

    def __init__(self, size: int, rng: np.random.Generator, scale: float) -> None:
        self.size, self.rng, self.scale = size, rng, scale
        self.values = np.empty(0)
        self.seen = 0

    def _draw(self, n: int) -> np.ndarray:
        return self.scale * self.rng.lognormal(np.log(LATENCY_MEDIAN_MS), LATENCY_SIGMA, n)

    def add(self, n_new: int) -> np.ndarray:
        fill = min(self.size - self.values.size, n_new)
        if fill:
            self.values = np.concatenate([self.values, self._draw(fill)])
            self.seen, n_new = self.seen + fill, n_new - fill
        if n_new:
            # how many of the new items a uniform sample of all seen items holds
            h = int(self.rng.hypergeometric(n_new, self.seen, self.size))
            self.values[self.rng.choice(self.size, h, replace=False)] = self._draw(h)
            self.seen += n_new
        return self.values.copy()


def _z_worse(x_t: np.ndarray, n_t: np.ndarray, x_c: np.ndarray, n_c: np.ndarray) -> np.ndarray:
    """Two-proportion pooled z statistic of canary − baseline."""
    pooled = (x_t + x_c) / (n_t + n_c)
    se = np.sqrt(np.maximum(pooled * (1 - pooled), 1e-12) * (1 / n_t + 1 / n_c))
    return (x_t / n_t - x_c / n_c) / se


def _fixed_low(x_t: np.ndarray, n_t: np.ndarray, x_c: np.ndarray, n_c: np.ndarray) -> tuple:
    """Fixed-horizon 95% interval of canary − baseline (unpooled, same variance floor as
    the judge's), returned as (low, high)."""
    pooled = (x_t + x_c + 1) / (n_t + n_c + 2)
    floor = pooled * (1 - pooled)
    p_t, p_c = x_t / n_t, x_c / n_c
    v = np.maximum(p_t * (1 - p_t), floor) / n_t + np.maximum(p_c * (1 - p_c), floor) / n_c
    d = p_t - p_c
    return d - Z * np.sqrt(v), d + Z * np.sqrt(v)


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) + 1 if hits.size else None


def simulate_run(scenario: dict[str, float], params: Params, seed: np.random.SeedSequence,
                 ) -> RunResult:
    rng = np.random.default_rng(seed)
    w, n = params.windows, params.requests
    rates = [ERROR_RATE, scenario.get("error_rate", ERROR_RATE)]
    accuracies = [ACCURACY, scenario.get("accuracy", ACCURACY)]
    scales = [1.0, scenario.get("latency_scale", 1.0)]
    requests = n * np.arange(1, w + 1)
    errors = np.stack([rng.binomial(n, r, w).cumsum() for r in rates])
    labelled_w = rng.binomial(n, params.label_share, (2, w))
    labelled = labelled_w.cumsum(axis=1)
    correct = np.stack([rng.binomial(labelled_w[a], accuracies[a]).cumsum() for a in range(2)])
    reservoirs = [Reservoir(params.reservoir, rng, s) for s in scales]
    samples = [[r.add(n) for _ in range(w)] for r in reservoirs]

    out = RunResult()
    # naive: fixed-horizon tests at every window, no tolerance
    err_z = _z_worse(errors[1], requests, errors[0], requests)
    acc_z = _z_worse(correct[1], labelled[1], correct[0], labelled[0])
    lat = ttest_ind(np.stack(samples[1]), np.stack(samples[0]), axis=1, equal_var=False)
    lat_worse = (lat.pvalue < 0.05) & (lat.statistic > 0)
    out.naive_fail = _first((err_z > Z) | (acc_z < -Z) | lat_worse)
    # fixed interval with the judge's tolerances (latency: the judge's own check, below)
    err_lo, _ = _fixed_low(errors[1], requests, errors[0], requests)
    _, acc_hi = _fixed_low(correct[1], labelled[1], correct[0], labelled[0])
    fixed_err = err_lo > (CONFIG.error_rate_max_increase or 0.0)
    fixed_acc = acc_hi < -(CONFIG.label_accuracy_max_decrease or 0.0)

    latency_fail = np.zeros(w, dtype=bool)
    for k in range(w):
        arms = [
            ArmSample(int(requests[k]), int(errors[a, k]), samples[a][k],
                      int(labelled[a, k]), int(correct[a, k]))
            for a in range(2)
        ]
        analysis = judge(arms[0], arms[1], CONFIG)
        checks = {c.name: c.outcome for c in analysis.checks}
        latency_fail[k] = checks["latency"] == FAIL
        if analysis.outcome == PASS and out.judge_first_pass is None:
            out.judge_first_pass = k + 1
        if out.judge_first_verdict == INCONCLUSIVE and analysis.outcome != INCONCLUSIVE:
            out.judge_first_verdict = analysis.outcome
        if analysis.outcome == FAIL:
            out.judge_fail = k + 1
            out.failed_checks = tuple(name for name, o in checks.items() if o == FAIL)
            break
    # The fixed-interval row shares the judge's latency check; after the judge's rollback it
    # is still needed at the windows before the fixed error/accuracy intervals fire.
    first_other = _first(fixed_err | fixed_acc) or w + 1
    for k in range(out.judge_fail or w, min(w, first_other - 1)):
        arms = [ArmSample(int(requests[k]), 0, samples[a][k]) for a in range(2)]
        latency_fail[k] = latency_check(arms[0], arms[1], CONFIG).outcome == FAIL
    fixed_any = fixed_err | fixed_acc | latency_fail
    out.fixed_fail = _first(fixed_any)
    return out


def _batch(args: tuple[dict[str, float], Params, list[np.random.SeedSequence]]) -> list[RunResult]:
    scenario, params, seeds = args
    return [simulate_run(scenario, params, s) for s in seeds]


def _median_requests(windows: list[int], per_window: int) -> str:
    return f"{int(np.median(windows)) * per_window:,}" if windows else "—"


def _share(count: int, total: int) -> str:
    return f"{count / total:.1%}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--requests", type=int, default=1000, help="per arm per window")
    parser.add_argument("--reservoir", type=int, default=500, help="latency samples per arm")
    parser.add_argument("--label-share", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    params = Params(args.windows, args.requests, args.reservoir, args.label_share)
    console = Console()
    started = time.perf_counter()

    root = np.random.SeedSequence(args.seed)
    jobs = []
    for scenario, seq in zip(SCENARIOS.values(), root.spawn(len(SCENARIOS)), strict=True):
        seeds = seq.spawn(args.runs)
        chunks = [seeds[i::args.workers * 4] for i in range(args.workers * 4)]
        jobs.append([(scenario, params, chunk) for chunk in chunks if chunk])
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [[pool.submit(_batch, job) for job in scenario_jobs] for scenario_jobs in jobs]
        results = [[r for f in scenario_futures for r in f.result()]
                   for scenario_futures in futures]

    table = Table(title=(
        f"Canary judge, {args.runs} runs per scenario, judged after each of {args.windows} "
        f"windows of {args.requests:,} requests per arm (alpha {CONFIG.alpha})"
    ))
    for column in ("scenario", "method", "rolled back", "median requests/arm to rollback",
                   "first verdict pass", "median requests/arm to first pass", "fails by check"):
        table.add_column(column, justify="left" if column in ("scenario", "method") else "right")
    for name, runs in zip(SCENARIOS, results, strict=True):
        total = len(runs)
        judged = [r.judge_fail for r in runs if r.judge_fail is not None]
        first_pass = sum(r.judge_first_verdict == PASS for r in runs)
        passes = [r.judge_first_pass for r in runs if r.judge_first_pass is not None]
        by_check = " / ".join(
            f"{label} {_share(sum(c in r.failed_checks for r in runs), total)}"
            for c, label in zip(CHECKS, ("errors", "latency", "accuracy"), strict=True)
        )
        table.add_row(name, "judge (always-valid)", _share(len(judged), total),
                      _median_requests(judged, args.requests), _share(first_pass, total),
                      _median_requests(passes, args.requests), by_check)
        for method, attr in (("fixed interval", "fixed_fail"), ("naive z/t", "naive_fail")):
            fails = [getattr(r, attr) for r in runs if getattr(r, attr) is not None]
            table.add_row("", method, _share(len(fails), total),
                          _median_requests(fails, args.requests), "—", "—", "")
        table.add_section()
    console.print(table)
    console.print(
        f"latency reservoir {args.reservoir}/arm, labels on {args.label_share:.0%} of requests, "
        f"latency max ratio {CONFIG.latency_p99_max_ratio}, error max increase "
        f"{CONFIG.error_rate_max_increase}, accuracy max decrease "
        f"{CONFIG.label_accuracy_max_decrease}; seed {args.seed}; "
        f"{time.perf_counter() - started:.0f} s on {args.workers} workers"
    )


if __name__ == "__main__":
    main()
