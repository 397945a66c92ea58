"""Interleaving against an A/B canary on CTR, by simulation with click models.

    python bench/interleaving_simulation.py [--runs 200] [--seed 0] [--jobs 2] [--gap 0.02]

The world. A catalogue of 300 items and a population of 4,000 users. Each (user, item) pair
has a latent affinity, the inner product of 8-dimensional Gaussian user and item factors plus
an item popularity term; graded relevance 0-4 cuts the affinities at fixed quantiles (95% of
pairs irrelevant; 2.5%, 1.3%, 0.8%, 0.4% at grades 1-4: a user likes about 15 of 300 items).
A request is a user drawn uniformly from the population, answered with a list of 10 items.

The rankers. The champion ranks every user's catalogue by affinity + 1.0·ε_c, the candidate
by affinity + σ·ε_b, ε standard normal and fixed per (user, item) (a model's error is a
property of the model, not of the request). σ is found by bisection so that the candidate's
NDCG@10 (gain 2^rel − 1, log2 discount, over the whole population) is lower than the
champion's by `--gap` (0.02); both figures are printed.

The click models (all printed; which one holds decides the comparison):

- PBM: position r (1-based) is examined with probability 1/r; an examined item of grade g is
  clicked with probability 0.05, 0.25, 0.5, 0.75, 0.95; positions independent.
- PBM, heterogeneous users: the same, but each user has an examination decay η, r^−η, uniform
  on [0.5, 2], and an activity a ~ Beta(2, 3): a request is looked at with probability a,
  else it gets no click (the spread of click propensity across users that real logs show).
- cascade, navigational / informational: the cascade model as instantiated for interleaving
  studies by Hofmann, Whiteson & de Rijke (2013; the Lerot framework): the user scans from
  the top, clicks grade g with probability (0.05, 0.3, 0.5, 0.7, 0.95) / (0.4, 0.6, 0.7, 0.8,
  0.9), and after a click stops with probability (0.2, 0.3, 0.5, 0.7, 0.9) / (0.1, 0.2, 0.3,
  0.4, 0.5); examination decays by rank through those stops. A satisfied user stops, so a
  worse list can earn as many clicks per request, or more, as a better one.

The tests, both always-valid (`changeover.domain.sequential`, two mixtures each at alpha/2),
at alpha 0.05, looked at continuously (after every 10 interleaved requests; after every 100
A/B requests), each run stopping at its first detection:

- interleaving: the candidate is detected when `judge_preference` (tolerance 0) fails: the
  interval of harm, 0.5 − the candidate's share of decided requests, lies wholly above 0;
- A/B canary: every request is served by one ranker (a fair coin, 50/50); clicks per request
  is the metric, and `sequential.difference_interval` (candidate − champion) detects when it
  lies wholly below 0.

How requests are drawn. A user's two lists are fixed and team_draft draws at most 5 coins for
k = 10, so each user's 32 possible merged lists are made once by the real `team_draft` (fed
scripted coins). For every merged list, and every ranker's own list, the distribution of the
request's outcome under the click model (a win, tie or loss; the number of clicks) is computed
exactly, by dynamic programming over the 10 positions, and averaged over users and coins.
Requests are independent and identically distributed (a user drawn uniformly, fresh coins,
fresh clicks), so a run draws each look's requests at once from those distributions (a
multinomial per look and arm): the same law as simulating them one by one, at a fraction of the
cost. A pilot of 20,000 requests per click model does simulate them one by one, clicks position
by position, credited by `credit()` itself: its tie rate and share are printed beside the exact
ones.

Each test's mixture is planned (`n_plan`) at the sample a one-sided fixed-horizon test at the
same alpha and 80% power needs for the true (exact) effect, the same rule for both, printed as
"fixed-horizon n". Power 80% is read as the request count by which 80% of runs have detected
the worse candidate (the 80th percentile of the detection counts; runs still undetected at the
horizon, 6× the fixed-horizon n and at most 2,000,000 requests, count as never). Where clicks
per request do not fall for the worse candidate, no fixed horizon exists: the A/B runs to the
cap, planned at it.

A/A: the champion against an equally noisy twin (its own ε, the same noise), the two lists
given to the two sides by a fair coin per request, so the sides are exchangeable on this
population (an identical ranker would tie on every interleaved request: trivially no
preference). Each A/A run is looked at continuously up to the same horizon; printed: the share
of runs with a false fail (candidate confidently worse), and with a confident preference either
way.

Deterministic for a given --seed whatever --jobs: each run has its own seed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from changeover.domain.interleaving import (  # noqa: E402
    BOTH,
    TEAM_A,
    TEAM_B,
    Interleaved,
    Preference,
    credit,
    judge_preference,
    preference_interval,
    team_draft,
)
from changeover.domain.judge import FAIL  # noqa: E402
from changeover.domain.sequential import (  # noqa: E402
    EARLY_SAMPLES,
    difference_interval,
    fixed_horizon_samples,
)
from changeover.monitoring.online import wilson  # noqa: E402

ALPHA, POWER = 0.05, 0.8
ITEMS, USERS, FACTORS, DEPTH = 300, 4_000, 8, 10
COINS = (DEPTH + 1) // 2  # team_draft's most draws for k = DEPTH
PATTERNS = 2**COINS
GRADE_SHARES = (0.95, 0.025, 0.013, 0.008, 0.004)
RANKS = np.arange(1, DEPTH + 1, dtype=np.float64)
CHAMPION_NOISE = 1.0
LOOK_INTERLEAVED, LOOK_AB = 10, 100
BLOCK_INTERLEAVED, BLOCK_AB = 5_000, 50_000
PILOT = 20_000
HORIZON_FACTOR, HORIZON_CAP = 6.0, 2_000_000
TEAM_CODE = {TEAM_A: -1, TEAM_B: 1, BOTH: 0}


@dataclass(frozen=True)
class ClickModel:
    name: str
    click: tuple[float, ...]  # by grade, given examination
    stop: tuple[float, ...] = (0.0,) * 5  # by grade, after a click (cascade)
    patience: tuple[float, float] | None = (1.0, 1.0)  # PBM: examination r^−η, η uniform on it
    activity: tuple[float, float] | None = None  # Beta(α, β) per user: a request is looked at


CLICK_MODELS = (
    ClickModel("PBM", (0.05, 0.25, 0.5, 0.75, 0.95)),
    ClickModel("PBM, heterogeneous users", (0.05, 0.25, 0.5, 0.75, 0.95), patience=(0.5, 2.0),
               activity=(2.0, 3.0)),
    ClickModel("cascade, navigational", (0.05, 0.3, 0.5, 0.7, 0.95), (0.2, 0.3, 0.5, 0.7, 0.9), None),
    ClickModel("cascade, informational", (0.4, 0.6, 0.7, 0.8, 0.9), (0.1, 0.2, 0.3, 0.4, 0.5), None),
)


# -- the world -------------------------------------------------------------------------------


@dataclass
class World:
    grades: np.ndarray  # (USERS, ITEMS)
    lists: dict[str, np.ndarray]  # "champion" / "candidate" / "twin" -> (USERS, DEPTH) item ids
    ndcg: dict[str, float]
    sigma: float
    # each user's PATTERNS merged lists: items and team codes (−1 a, +1 b, 0 both)
    merged_items: dict[str, np.ndarray]  # "candidate" / "twin" -> (USERS, PATTERNS, DEPTH)
    merged_teams: dict[str, np.ndarray]


def _top(scores: np.ndarray) -> np.ndarray:
    top = np.argpartition(-scores, DEPTH, axis=1)[:, :DEPTH]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def _ndcg(grades: np.ndarray, lists: np.ndarray, ideal: np.ndarray) -> float:
    discount = 1.0 / np.log2(RANKS + 1)
    dcg = ((2.0 ** np.take_along_axis(grades, lists, axis=1) - 1.0) * discount).sum(axis=1)
    keep = ideal > 0  # users with nothing relevant have no NDCG
    return float((dcg[keep] / ideal[keep]).mean())


class _Script:
    """Scripted coins for team_draft: bit i of `pattern` set means b picks first in round i."""

    def __init__(self, pattern: int) -> None:
        self.pattern, self.drawn = pattern, 0

    def random(self) -> float:
        bit = (self.pattern >> self.drawn) & 1
        self.drawn += 1
        return 0.75 if bit else 0.25


def merge_all(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every user's PATTERNS team-draft lists of (a[u], b[u]), by the real team_draft."""
    n = a.shape[0]
    items = np.zeros((n, PATTERNS, DEPTH), dtype=np.int64)
    teams = np.zeros((n, PATTERNS, DEPTH), dtype=np.int8)
    for u in range(n):
        la, lb = a[u].tolist(), b[u].tolist()
        for c in range(PATTERNS):
            shown = team_draft(la, lb, DEPTH, _Script(c))
            assert len(shown) == DEPTH  # two lists of DEPTH distinct items always fill it
            items[u, c] = shown.items
            teams[u, c] = [TEAM_CODE[t] for t in shown.teams]
    return items, teams


def build_world(seed: int, gap: float, pool: ProcessPoolExecutor, jobs: int) -> World:
    rng = np.random.default_rng([seed, 0])
    user_f = rng.standard_normal((USERS, FACTORS))
    item_f = rng.standard_normal((ITEMS, FACTORS))
    affinity = user_f @ item_f.T / math.sqrt(FACTORS) + 0.5 * rng.standard_normal(ITEMS)
    cuts = np.quantile(affinity, np.cumsum(GRADE_SHARES)[:-1])
    grades = np.digitize(affinity, cuts).astype(np.int64)
    ideal = ((2.0 ** -np.sort(-grades, axis=1)[:, :DEPTH] - 1.0) / np.log2(RANKS + 1)).sum(axis=1)
    eps_c, eps_b, eps_t = (rng.standard_normal((USERS, ITEMS)) for _ in range(3))
    champion = _top(affinity + CHAMPION_NOISE * eps_c)
    twin = _top(affinity + CHAMPION_NOISE * eps_t)
    ndcg_c = _ndcg(grades, champion, ideal)
    lo, hi = CHAMPION_NOISE, 20 * CHAMPION_NOISE
    for _ in range(30):  # bisection on the candidate's noise (common random numbers)
        mid = (lo + hi) / 2
        if ndcg_c - _ndcg(grades, _top(affinity + mid * eps_b), ideal) < gap:
            lo = mid
        else:
            hi = mid
    sigma = (lo + hi) / 2
    candidate = _top(affinity + sigma * eps_b)
    chunks = np.array_split(np.arange(USERS), 4 * jobs)
    merged_items, merged_teams = {}, {}
    for name, other in (("candidate", candidate), ("twin", twin)):
        parts = list(pool.map(merge_all, [champion[c] for c in chunks], [other[c] for c in chunks]))
        merged_items[name] = np.concatenate([p[0] for p in parts])
        merged_teams[name] = np.concatenate([p[1] for p in parts])
    lists = {"champion": champion, "candidate": candidate, "twin": twin}
    ndcg = {name: _ndcg(grades, got, ideal) for name, got in lists.items()}
    return World(grades, lists, ndcg, sigma, merged_items, merged_teams)


# -- click models: exact outcome distributions, and explicit clicks for the pilot -------------


@dataclass
class Users:
    """A click model's per-user examination (USERS, DEPTH) and activity (USERS,) or None."""

    examine: np.ndarray
    activity: np.ndarray | None


def users_of(model: ClickModel, seed: int) -> Users:
    rng = np.random.default_rng([seed, 1, CLICK_MODELS.index(model)])
    if model.patience is None:  # cascade: every position is examined until the user stops
        examine = np.ones((USERS, DEPTH))
    else:
        eta = rng.uniform(*model.patience, size=USERS)
        examine = RANKS[None, :] ** -eta[:, None]
    activity = rng.beta(*model.activity, size=USERS) if model.activity else None
    return Users(examine, activity)


def _distribution(q: np.ndarray, stop: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Exact distribution of D = Σ weight_r · click_r over a list, where position r is clicked
    with probability q_r while the user is still scanning, and a click stops the scan with
    probability stop_r. q, stop, weight: (n, DEPTH), weight in {−1, 0, 1}. Returns (n, 2·DEPTH+1),
    column j for D = j − DEPTH."""
    going = np.zeros((q.shape[0], 2 * DEPTH + 1))
    done = np.zeros_like(going)
    going[:, DEPTH] = 1.0
    for r in range(DEPTH):
        clicked = going * q[:, r : r + 1]
        up, down = np.zeros_like(going), np.zeros_like(going)
        up[:, 1:], down[:, :-1] = clicked[:, :-1], clicked[:, 1:]  # D + 1, D − 1 (never past ±DEPTH)
        w = weight[:, r : r + 1]
        shifted = np.where(w > 0, up, np.where(w < 0, down, clicked))
        going = going * (1.0 - q[:, r : r + 1]) + shifted * (1.0 - stop[:, r : r + 1])
        done = done + shifted * stop[:, r : r + 1]
    return going + done


@dataclass
class Outcomes:
    """Per click model, the exact distribution of one request's outcome (a user drawn
    uniformly, then the coins, then the clicks): requests are independent and identically
    distributed, so runs draw them from these."""

    interleaved: dict[str, np.ndarray]  # "candidate" / "twin" -> P(a wins), P(tie), P(b wins)
    clicks: dict[str, np.ndarray]  # ranker -> P(0, 1, …, DEPTH clicks on a request it serves)

    def ctr(self, ranker: str) -> tuple[float, float]:
        """Exact mean and variance of clicks per request."""
        counts = np.arange(DEPTH + 1)
        mean = float(self.clicks[ranker] @ counts)
        return mean, float(self.clicks[ranker] @ counts**2) - mean**2


def outcomes_of(world: World, model: ClickModel, users: Users) -> Outcomes:
    click, stop = np.asarray(model.click), np.asarray(model.stop)
    active = users.activity if users.activity is not None else np.ones(USERS)
    interleaved = {}
    for key in ("candidate", "twin"):
        items = world.merged_items[key].reshape(USERS * PATTERNS, DEPTH)
        grades = world.grades[np.repeat(np.arange(USERS), PATTERNS)[:, None], items]
        examine = np.repeat(users.examine, PATTERNS, axis=0)
        dist = _distribution(examine * click[grades], stop[grades],
                             world.merged_teams[key].reshape(USERS * PATTERNS, DEPTH))
        a = np.repeat(active, PATTERNS)[:, None]
        three = np.stack([dist[:, :DEPTH].sum(1), dist[:, DEPTH], dist[:, DEPTH + 1:].sum(1)], axis=1)
        interleaved[key] = (a * three + (1 - a) * np.array([0.0, 1.0, 0.0])).mean(axis=0)
    clicks = {}
    for ranker, lists in world.lists.items():
        grades = np.take_along_axis(world.grades, lists, axis=1)
        dist = _distribution(users.examine * click[grades], stop[grades], np.ones((USERS, DEPTH)))[:, DEPTH:]
        dist = active[:, None] * dist
        dist[:, 0] += 1 - active
        clicks[ranker] = dist.mean(axis=0)
    return Outcomes(interleaved, clicks)


def outcomes_for(world: World, model: ClickModel, seed: int) -> Outcomes:
    return outcomes_of(world, model, users_of(model, seed))


def explicit_clicks(model: ClickModel, users: Users, u: np.ndarray, grades: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """(n, DEPTH) clicks simulated position by position (the pilot's check of the exact path)."""
    click, stop = np.asarray(model.click), np.asarray(model.stop)
    going = np.ones(u.size, dtype=bool)
    if users.activity is not None:
        going &= rng.random(u.size) < users.activity[u]
    out = np.zeros(grades.shape, dtype=bool)
    for r in range(DEPTH):
        g = grades[:, r]
        hit = going & (rng.random(u.size) < users.examine[u, r] * click[g])
        out[:, r] = hit
        going &= ~(hit & (rng.random(u.size) < stop[g]))
    return out


@dataclass(frozen=True)
class Pilot:
    tie_rate: float
    share_b: float
    unshown: int


def pilot(world: World, model: ClickModel, users: Users, seed: int) -> Pilot:
    """PILOT requests with explicit clicks, credited by `credit()` itself."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, USERS, PILOT)
    c = rng.integers(0, PATTERNS, PILOT)
    items, teams = world.merged_items["candidate"][u, c], world.merged_teams["candidate"][u, c]
    clicks = explicit_clicks(model, users, u, world.grades[u[:, None], items], rng)
    label = {code: team for team, code in TEAM_CODE.items()}
    outcomes = [credit(Interleaved(tuple(it), tuple(label[t] for t in tm)),
                       [item for item, hit in zip(it, cl, strict=True) if hit])
                for it, tm, cl in zip(items.tolist(), teams.tolist(), clicks.tolist(), strict=True)]
    pref = Preference.of(outcomes)
    return Pilot(pref.ties / pref.requests, pref.share_b, pref.unshown)


# -- runs ------------------------------------------------------------------------------------


_STATE: dict[str, Outcomes] | None = None  # per click model, in the worker processes


def _init(state: dict[str, Outcomes] | None) -> None:
    global _STATE
    _STATE = state


@dataclass(frozen=True)
class Run:
    detected_at: float  # requests at the first detection (inf: none by the horizon)
    false_fail: bool = False  # A/A: the candidate confidently worse at some look
    either: bool = False  # A/A: a confident preference either way at some look


def _flagged(estimate: np.ndarray, v: np.ndarray, n: np.ndarray, n_plan: float, both: bool) -> np.ndarray:
    """Looks whose always-valid interval may lie wholly below 0 (or, with `both`, either side
    of it): a vectorised copy of `sequential.two_mixture_interval` (τ = V·n/plan, so
    (V+τ)/τ = 1 + plan/n) with 1% slack, so it flags a superset; every flagged look is then
    judged by the real function."""
    c = -2.0 * math.log(ALPHA / 4.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.full(estimate.shape, np.inf)
        for plan in (max(n_plan, 1.0), float(EARLY_SAMPLES)):
            half = np.minimum(half, np.sqrt(v * (1.0 + plan / n) * (c + np.log1p(n / plan))))
        return np.flatnonzero((n > 0) & ((np.abs(estimate) if both else -estimate) > 0.99 * half))


def _pvals(p: np.ndarray) -> np.ndarray:
    return np.clip(p, 0.0, None) / np.clip(p, 0.0, None).sum()


def interleaving_run(seed: int, model: str, aa: bool, horizon: int, n_plan: float) -> Run:
    """One run: looks every LOOK_INTERLEAVED requests, whose wins and ties are drawn at once
    (a multinomial of the look's requests: the same as drawing them one by one)."""
    assert _STATE is not None
    p = _STATE[model].interleaved["twin" if aa else "candidate"]
    if aa:  # which of the two equal rankers is "the candidate": a coin per request
        p = (p + p[::-1]) / 2
    p = _pvals(p)
    rng = np.random.default_rng(seed)
    totals = np.zeros(3, dtype=np.int64)  # wins_a, ties, wins_b
    better = False
    done = 0
    per_block = BLOCK_INTERLEAVED // LOOK_INTERLEAVED
    while done < horizon:
        cum = np.cumsum(rng.multinomial(LOOK_INTERLEAVED, p, size=per_block), axis=0) + totals
        decided = (cum[:, 0] + cum[:, 2]).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            estimate = cum[:, 2] / decided - 0.5
            flagged = _flagged(estimate, 0.25 / decided, decided, n_plan, aa and not better)
        for j in flagged.tolist():
            wins_a, ties, wins_b = cum[j].tolist()
            pref = Preference(wins_a, wins_b, ties)
            if judge_preference(pref, 0.0, ALPHA, n_plan=n_plan).outcome == FAIL:
                if aa:  # a false fail settles both of an A/A's figures
                    return Run(math.inf, True, True)
                return Run(float(done + (j + 1) * LOOK_INTERLEAVED))
            better |= preference_interval(pref, ALPHA, n_plan).low > 0
        totals = cum[-1]
        done += BLOCK_INTERLEAVED
    return Run(math.inf, False, better)


def ab_run(seed: int, model: str, aa: bool, horizon: int, n_plan: float) -> Run:
    """One run: each request goes to either arm by a coin; looks every LOOK_AB requests, each
    arm's click counts drawn at once (multinomials of the look's requests per arm)."""
    assert _STATE is not None
    clicks = _STATE[model].clicks
    if aa:  # each arm serves the champion's or the twin's list, by a coin per request
        served = [_pvals((clicks["champion"] + clicks["twin"]) / 2)] * 2
    else:
        served = [_pvals(clicks["champion"]), _pvals(clicks["candidate"])]
    values = np.arange(DEPTH + 1, dtype=np.float64)
    rng = np.random.default_rng(seed)
    totals = np.zeros((2, 3))  # per arm (0 champion, 1 candidate): n, Σx, Σx²
    better = False
    done = 0
    per_block = BLOCK_AB // LOOK_AB
    while done < horizon:
        n_t = rng.binomial(LOOK_AB, 0.5, size=per_block)
        cum = np.empty((2, 3, per_block))
        for side, n in ((0, LOOK_AB - n_t), (1, n_t)):
            counts = rng.multinomial(n, served[side])
            for k, moment in enumerate((counts.sum(axis=1), counts @ values, counts @ values**2)):
                cum[side, k] = np.cumsum(moment) + totals[side, k]
        (n_c, s_c, q_c), (n_tr, s_t, q_t) = cum[0], cum[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            m_c, m_t = s_c / n_c, s_t / n_tr
            v_c = np.maximum(q_c / n_c - m_c**2, 1e-12)
            v_t = np.maximum(q_t / n_tr - m_t**2, 1e-12)
            v = v_t / n_tr + v_c / n_c
            flagged = _flagged(m_t - m_c, v, np.where((n_c >= 2) & (n_tr >= 2), n_tr, 0.0), n_plan,
                               aa and not better)
        for j in flagged.tolist():
            diff = difference_interval(float(m_t[j]), float(v_t[j]), int(n_tr[j]), float(m_c[j]),
                                       float(v_c[j]), int(n_c[j]), ALPHA, n_plan)
            if diff.high < 0:
                if aa:
                    return Run(math.inf, True, True)
                return Run(float(done + (j + 1) * LOOK_AB))
            better |= diff.low > 0
        totals = cum[:, :, -1]
        done += BLOCK_AB
    return Run(math.inf, False, better)


# -- figures ---------------------------------------------------------------------------------


def share(k: int, n: int) -> str:
    lo, hi = wilson(k, n) or (0.0, 1.0)
    return f"{k / n:.1%} [{lo:.1%}, {hi:.1%}]"


def at_power(detected: list[float]) -> float:
    """Requests by which POWER of the runs detected (inf when fewer did by the horizon)."""
    ordered = sorted(detected)
    return ordered[max(0, math.ceil(POWER * len(ordered)) - 1)]


def count(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "never"


def horizon_of(fixed: float, block: int) -> int:
    target = min(HORIZON_FACTOR * fixed, HORIZON_CAP) if math.isfinite(fixed) else HORIZON_CAP
    return int(math.ceil(target / block) * block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="runs per click model and test, and as many A/A")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--gap", type=float, default=0.02, help="NDCG@10 by which the candidate is worse")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 160))
    started = time.monotonic()
    console.print(f"[bold]Team-draft interleaving vs an A/B canary on clicks per request[/]: {ITEMS} items, "
                  f"{USERS:,} users, lists of {DEPTH}, alpha {ALPHA}, power {POWER:.0%}, looks every "
                  f"{LOOK_INTERLEAVED} (interleaving) / {LOOK_AB} (A/B) requests, {args.runs} runs per row and "
                  f"as many A/A, seed {args.seed}")
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init, initargs=(None,)) as pool:
        world = build_world(args.seed, args.gap, pool, args.jobs)
        n = len(CLICK_MODELS)
        outcomes = dict(zip([m.name for m in CLICK_MODELS],
                            pool.map(outcomes_for, [world] * n, CLICK_MODELS, [args.seed] * n), strict=True))
    rankers = Table(title="Rankers: NDCG@10 over the population (graded relevance)")
    for col in ("ranker", "noise σ", "NDCG@10", "vs champion"):
        rankers.add_column(col, justify="left" if col == "ranker" else "right")
    for name, sigma in (("champion", CHAMPION_NOISE), ("candidate", world.sigma), ("twin", CHAMPION_NOISE)):
        ndcg = world.ndcg[name]
        rankers.add_row(name if name != "twin" else "A/A twin", f"{sigma:.3f}", f"{ndcg:.4f}",
                        f"{ndcg - world.ndcg['champion']:+.4f}")
    console.print(rankers)

    seen = Table(title="What each test sees, per click model (exact; pilot: explicit clicks through credit())")
    for col in ("click model", "clicks/request champion", "candidate", "Δ (relative)", "ties", "ties (pilot)",
                "candidate's share of decided", "share (pilot)"):
        seen.add_column(col, justify="left" if col == "click model" else "right")
    plans: dict[str, dict[str, float]] = {}
    for model in CLICK_MODELS:
        users = users_of(model, args.seed)
        out = outcomes[model.name]
        three = out.interleaved["candidate"]
        tie_rate, share_b = float(three[1]), float(three[2] / (three[0] + three[2]))
        p = pilot(world, model, users, args.seed * 1_000_003 + 999_999)
        (ctr_c, var_c), (ctr_b, var_b) = out.ctr("champion"), out.ctr("candidate")
        # the mixtures' plans: a fixed-horizon one-sided test's sample for the true effect
        plan_il = fixed_horizon_samples(0.25, 0.0, 1.0, 0.5 - share_b, ALPHA, POWER)  # decided requests
        plan_ab = fixed_horizon_samples(var_b, var_c, 1.0, ctr_c - ctr_b, ALPHA, POWER)  # per arm
        fixed_il, fixed_ab = plan_il / (1.0 - tie_rate), 2.0 * plan_ab
        plans[model.name] = {"fixed_il": fixed_il, "fixed_ab": fixed_ab, "plan_il": plan_il,
                             "plan_ab": plan_ab if math.isfinite(plan_ab) else HORIZON_CAP / 2}
        seen.add_row(model.name, f"{ctr_c:.4f}", f"{ctr_b:.4f}", f"{ctr_b - ctr_c:+.4f} ({(ctr_b - ctr_c) / ctr_c:+.2%})",
                     f"{tie_rate:.1%}", f"{p.tie_rate:.1%}", f"{share_b:.2%}", f"{p.share_b:.2%}")
    console.print(seen)

    table = Table(title=f"Requests to detect a candidate worse by {args.gap} NDCG@10, looked at continuously")
    for col in ("click model", "test", "fixed-horizon n", f"requests at {POWER:.0%} power", "median",
                "detected by horizon", "horizon", "A/A false fail", "A/A preference either way"):
        table.add_column(col, justify="left" if col in ("click model", "test") else "right")
    seeds = [args.seed * 1_000_003 + i for i in range(args.runs)]
    ratios: list[str] = []
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_init, initargs=(outcomes,)) as pool:
        def many(fn: Callable[[int, str, bool, int, float], Run], model: str, aa: bool, horizon: int,
                 plan: float, offset: int) -> list[Run]:
            n = len(seeds)
            return list(pool.map(fn, [s + offset for s in seeds], [model] * n, [aa] * n, [horizon] * n,
                                 [plan] * n, chunksize=max(1, n // (4 * args.jobs))))

        for k, model in enumerate(CLICK_MODELS):
            m, plan = model.name, plans[model.name]
            found: dict[str, float] = {}
            horizons: dict[str, int] = {}
            for test, fn, fixed, n_plan, block in (
                    ("team-draft interleaving", interleaving_run, plan["fixed_il"], plan["plan_il"],
                     BLOCK_INTERLEAVED),
                    ("A/B, clicks per request", ab_run, plan["fixed_ab"], plan["plan_ab"], BLOCK_AB)):
                horizon = horizons[test] = horizon_of(fixed, block)
                offset = 10_000_000 * (4 * k + 2 * (fn is ab_run))
                runs = many(fn, m, False, horizon, n_plan, offset)
                aa = many(fn, m, True, horizon, n_plan, offset + 10_000_000)
                detected = [r.detected_at for r in runs]
                found[test] = at_power(detected)
                table.add_row(m, test, count(fixed), count(found[test]), count(float(np.median(detected))),
                              share(sum(math.isfinite(d) for d in detected), len(runs)), f"{horizon:,}",
                              share(sum(r.false_fail for r in aa), len(aa)), share(sum(r.either for r in aa), len(aa)))
                console.print(f"  {m}, {test}: done ({time.monotonic() - started:.0f} s)")
            il_n, ab_n = found["team-draft interleaving"], found["A/B, clicks per request"]
            if math.isfinite(il_n) and math.isfinite(ab_n):
                ratio = f"{ab_n / il_n:.1f}×"
            elif math.isfinite(il_n):
                ratio = f"> {horizons['A/B, clicks per request'] / il_n:.0f}× (the A/B did not reach 80% by its horizon)"
            else:
                ratio = "not measured (interleaving did not reach 80% by its horizon)"
            fixed_ratio = plan["fixed_ab"] / plan["fixed_il"]
            ratios.append(f"{m}: the A/B needs {ratio} the requests of interleaving at {POWER:.0%} power"
                          + (f" (fixed-horizon ratio {fixed_ratio:.1f}×)" if math.isfinite(fixed_ratio)
                             else " (clicks per request do not fall for the worse candidate)"))
    console.print(table)
    for line in ratios:
        console.print(line)
    console.print(f"Targets: interleaving ≥ 10× fewer requests; A/A false fail ≤ alpha/2 = {ALPHA / 2:.3f}, "
                  f"either way ≤ alpha = {ALPHA}. ({time.monotonic() - started:.0f} s, {args.jobs} jobs)")


if __name__ == "__main__":
    main()
