"""Team-draft interleaving: one merged list per request, clicks credited to the side that
contributed the item, and an always-valid judge of the candidate's preference.

Interleaving compares two rankers on the same requests: the user sees one list drawn from
both, so every click is a paired comparison (Radlinski, Kurup & Joachims, "How does
clickthrough data reflect retrieval quality?", CIKM 2008; validated at scale by Chapelle,
Joachims, Radlinski & Yue, ACM TOIS 2012). Throughout, team "a" is the champion and team "b"
the candidate.

The road for one request:

1. `team_draft(a, b, k, rng)` merges the two rankings into an `Interleaved` list that records,
   per position, the team that contributed the item.
2. `credit(interleaved, clicked)` turns the user's clicks into an `Outcome`: a win for a, a
   win for b, or a tie.
3. `Preference` adds outcomes up (wins_a, wins_b, ties); `preference_interval` is an
   always-valid interval of the candidate's preference, and `judge_preference` a judge's
   `Check` (name "interleaving") of the harm against a tolerance, valid however often it is
   looked at.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from changeover.domain.judge import FAIL, INCONCLUSIVE, PASS, Check
from changeover.domain.sequential import Interval, mean_interval, required_samples

__all__ = [
    "BOTH",
    "CHECK_NAME",
    "Coin",
    "TEAM_A",
    "TEAM_B",
    "TIE",
    "Interleaved",
    "ItemId",
    "Outcome",
    "Preference",
    "credit",
    "decided_share_high",
    "judge_preference",
    "preference_interval",
    "team_draft",
]

ItemId = Hashable
TEAM_A, TEAM_B = "a", "b"  # the champion's team, the candidate's team
BOTH = "both"  # an item of the rankings' common prefix: contributed by both, credited to neither
TIE = "tie"
CHECK_NAME = "interleaving"
PREFERENCE_VARIANCE = 0.25  # the largest variance of a win/loss coin: valid whatever the share
MIN_DECIDED = 100  # decided requests a pass needs at least (as the judge's min_requests)


class Coin(Protocol):
    """What team_draft draws its coin flips from: `numpy.random.Generator`, `random.Random`,
    or anything with `random()` uniform on [0, 1) (a generator seeded from the request id
    makes a request's list reproducible)."""

    def random(self) -> float: ...


@dataclass(frozen=True)
class Interleaved:
    """The merged list a user is shown: `items[i]` was contributed by team `teams[i]`
    ("a", "b", or "both" for the common prefix of the two rankings)."""

    items: tuple[ItemId, ...]
    teams: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.items) != len(self.teams):
            raise ValueError(f"{len(self.items)} items but {len(self.teams)} team labels")
        unknown = set(self.teams) - {TEAM_A, TEAM_B, BOTH}
        if unknown:
            raise ValueError(f"unknown team labels {sorted(unknown)}; known: a, b, both")

    def __len__(self) -> int:
        return len(self.items)

    def team_of(self, item: ItemId) -> str | None:
        """The team that contributed `item`, or None when it was not shown."""
        for shown, team in zip(self.items, self.teams, strict=True):
            if shown == item:
                return team
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe when the item ids are (ids are kept as given)."""
        return {"items": list(self.items), "teams": list(self.teams)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Interleaved:
        return cls(tuple(data["items"]), tuple(data["teams"]))


@dataclass(frozen=True)
class Outcome:
    """One request's clicks, credited: distinct clicked items per team, the clicked items of
    the common prefix (`shared`, credited to neither), and the clicked items that were not
    shown (`unshown`, ignored; kept so callers can report them)."""

    credit_a: int
    credit_b: int
    shared: int = 0
    unshown: int = 0

    @property
    def winner(self) -> str:
        """"a", "b", or "tie" (equal credit, including no credited click)."""
        if self.credit_a > self.credit_b:
            return TEAM_A
        if self.credit_b > self.credit_a:
            return TEAM_B
        return TIE

    @property
    def score(self) -> int:
        """+1 when the candidate (b) wins, −1 when the champion (a) wins, 0 on a tie."""
        return (self.credit_b > self.credit_a) - (self.credit_a > self.credit_b)


def _ranking(name: str, items: Sequence[ItemId]) -> list[ItemId]:
    """The ranking without repeats (an item keeps its first, highest position)."""
    if isinstance(items, str | bytes):
        raise TypeError(f"{name} must be a sequence of item ids, not a {type(items).__name__}")
    seen: set[ItemId] = set()
    out: list[ItemId] = []
    for item in items:
        try:
            new = item not in seen
        except TypeError:
            raise TypeError(f"{name}: item ids must be hashable, got {type(item).__name__}") from None
        if new:
            seen.add(item)
            out.append(item)
    return out


def team_draft(a: Sequence[ItemId], b: Sequence[ItemId], k: int, rng: Coin) -> Interleaved:
    """Team-draft interleaving of ranking `a` (the champion) and ranking `b` (the candidate).

    Computed, in order:

    - Each ranking loses its repeats: an item that appears twice counts at its first position.
    - The common prefix (the leading positions where both rankings hold the same item) is
      shown first, labelled "both" and credited to neither. This is added to Radlinski et
      al.'s algorithm, where the coins would hand these items to one team at random: the
      rankers agree there, so their clicks are only noise. Identical rankings are all common
      prefix, so they always tie.
    - Then rounds: while both rankings still hold an item not yet shown, one draw
      `rng.random() < 0.5` decides that a picks first (else b); the first picker appends its
      highest-ranked item not yet shown, then the other does the same (Radlinski et al. 2008).
      Each pick is labelled with the picker's team. Within this part the two teams' counts
      differ by at most one at every position.
    - Once one ranking has nothing left to show, the other fills the list alone, its items
      labelled with its team, without further draws: a ranker that answers fewer items cedes
      the rest of the list (and the clicks on it) to the other.
    - It stops at `k` items, or earlier when both rankings are exhausted (so the list holds
      min(k, |a ∪ b|) items; empty when both are empty).

    Items are any hashable ids compared with == (ints, strings; 1 and 1.0 are one item).
    Raises ValueError when k <= 0, TypeError when k is not an integer, when a or b is a
    string, or when an item is not hashable. The only randomness is `rng`: one `rng.random()`
    per round (at most ceil(k/2) draws), so a seeded generator gives the same list again; and
    swapping a and b while reversing every coin's outcome swaps the teams' labels, nothing else.
    """
    k = operator.index(k)
    if k <= 0:
        raise ValueError(f"k must be a positive number of items to show, got {k}")
    ra, rb = _ranking("a", a), _ranking("b", b)
    items: list[ItemId] = []
    teams: list[str] = []
    shown: set[ItemId] = set()
    prefix = 0
    while prefix < min(len(ra), len(rb), k) and ra[prefix] == rb[prefix]:
        items.append(ra[prefix])
        teams.append(BOTH)
        shown.add(ra[prefix])
        prefix += 1
    ia = ib = prefix  # each ranking's cursor: nothing before it is left to show
    na, nb = len(ra), len(rb)
    while len(items) < k:
        while ia < na and ra[ia] in shown:
            ia += 1
        while ib < nb and rb[ib] in shown:
            ib += 1
        if ia < na and ib < nb:
            a_first = rng.random() < 0.5
        elif ia < na or ib < nb:
            a_first = ia < na  # one ranking left: it fills alone, no draw
        else:
            break
        for team in (TEAM_A, TEAM_B) if a_first else (TEAM_B, TEAM_A):
            if len(items) >= k:
                break
            if team == TEAM_A:
                while ia < na and ra[ia] in shown:
                    ia += 1
                if ia == na:
                    break
                item = ra[ia]
            else:
                while ib < nb and rb[ib] in shown:
                    ib += 1
                if ib == nb:
                    break
                item = rb[ib]
            items.append(item)
            teams.append(team)
            shown.add(item)
    return Interleaved(tuple(items), tuple(teams))


def credit(interleaved: Interleaved, clicked: Iterable[ItemId]) -> Outcome:
    """Credit one request's clicks to the teams that contributed the clicked items.

    Each distinct clicked item counts once, however often it appears in `clicked`. A click on
    an item of team a adds to `credit_a`, of team b to `credit_b`, of the common prefix to
    `shared` (neither team); a click on an item that was not shown is ignored and counted in
    `unshown`. The request is a win for the team with more credit, a tie on equal credit
    (no clicks, or only shared or unshown ones, is a tie)."""
    owner = dict(zip(interleaved.items, interleaved.teams, strict=True))
    counts = {TEAM_A: 0, TEAM_B: 0, BOTH: 0}
    unshown = 0
    for item in set(clicked):
        team = owner.get(item)
        if team is None:
            unshown += 1
        else:
            counts[team] += 1
    return Outcome(counts[TEAM_A], counts[TEAM_B], counts[BOTH], unshown)


@dataclass(frozen=True)
class Preference:
    """Outcomes added up: requests the champion (a) won, the candidate (b) won, and ties;
    `unshown` counts clicks on items that were not shown (ignored by the credit)."""

    wins_a: int = 0
    wins_b: int = 0
    ties: int = 0
    unshown: int = 0

    def __post_init__(self) -> None:
        if min(self.wins_a, self.wins_b, self.ties, self.unshown) < 0:
            raise ValueError(f"counts must be non-negative, got {self}")

    def add(self, outcome: Outcome) -> Preference:
        """A new Preference with one more request."""
        winner = outcome.winner
        return Preference(self.wins_a + (winner == TEAM_A), self.wins_b + (winner == TEAM_B),
                          self.ties + (winner == TIE), self.unshown + outcome.unshown)

    def __add__(self, other: Preference) -> Preference:
        """Two tallies merged (windows of several replicas)."""
        return Preference(self.wins_a + other.wins_a, self.wins_b + other.wins_b,
                          self.ties + other.ties, self.unshown + other.unshown)

    @classmethod
    def of(cls, outcomes: Iterable[Outcome]) -> Preference:
        wins_a = wins_b = ties = unshown = 0
        for o in outcomes:
            s = o.score
            wins_a, wins_b, ties = wins_a + (s < 0), wins_b + (s > 0), ties + (s == 0)
            unshown += o.unshown
        return cls(wins_a, wins_b, ties, unshown)

    @property
    def requests(self) -> int:
        return self.wins_a + self.wins_b + self.ties

    @property
    def decided(self) -> int:
        """Requests that were not ties: the samples of the preference test."""
        return self.wins_a + self.wins_b

    @property
    def share_b(self) -> float:
        """The candidate's share of the decided requests (nan when none is decided)."""
        return self.wins_b / self.decided if self.decided else math.nan


def preference_interval(pref: Preference, alpha: float, n_plan: float) -> Interval:
    """Always-valid interval for the candidate's preference, share_b − 0.5 (positive: the
    candidate is preferred; the range is [−0.5, 0.5]).

    share_b = wins_b / (wins_a + wins_b) over the decided requests (ties carry no preference
    and are left out). Each decided request is a coin, b wins or a wins; the interval is
    `sequential.mean_interval` of its mean with the coin's largest variance, 1/4 (so no
    variance is estimated and small samples are not over-trusted): the intersection of two
    normal-mixture SPRT intervals, each at alpha/2, one tuned at `n_plan` decided requests and
    one at `sequential.EARLY_SAMPLES`. The chance that it ever excludes the truth, however
    often it is looked at, is at most alpha (under the normal approximation). `n_plan` counts
    decided requests and must be fixed before the data (it tunes where the interval is
    tightest, not its validity). With no decided request the interval is [−0.5, 0.5]."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if not n_plan > 0 or not math.isfinite(n_plan):
        raise ValueError(f"n_plan must be a positive, finite number of decided requests, got {n_plan}")
    n = pref.decided
    if n == 0:
        return Interval(0.0, -0.5, 0.5)
    got = mean_interval(pref.share_b - 0.5, PREFERENCE_VARIANCE, n, alpha, n_plan)
    return Interval(got.estimate, max(got.low, -0.5), min(got.high, 0.5))


def decided_share_high(pref: Preference, alpha: float, n_plan: float) -> float | None:
    """The always-valid upper bound of the share of requests that were decided (not ties), at
    the coin's largest variance 1/4 as `preference_interval`; None before any request."""
    if pref.requests == 0:
        return None
    if not n_plan > 0 or not math.isfinite(n_plan):
        raise ValueError(f"n_plan must be a positive, finite number of requests, got {n_plan}")
    got = mean_interval(pref.decided / pref.requests, PREFERENCE_VARIANCE, pref.requests, alpha, n_plan)
    return min(got.high, 1.0)


def judge_preference(pref: Preference, tolerance: float, alpha: float = 0.05, *,
                     n_plan: float | None = None, power: float = 0.8,
                     minimum: int = MIN_DECIDED) -> Check:
    """The judge's check "interleaving": the harm, 0.5 − share_b (how much more often the
    champion is preferred than an even split), against `tolerance` (≥ 0, in share points:
    0.01 allows the champion 51% of decided requests).

    The interval of harm is `preference_interval` turned around. As the canary judge does:

    - fail when it lies wholly above the tolerance (the champion preferred beyond it, with
      confidence); with tolerance 0 this detects a candidate that is worse at all;
    - pass when it lies wholly below the tolerance and at least `minimum` requests are decided;
    - pass as "indistinguishable" when at least `minimum` requests were credited and the
      always-valid upper bound of the decided share (`decided_share_high`) is at most the
      tolerance: the two rankers' lists gave the same
      credit on all but a tolerance of requests (an identical or near-identical retrain), so
      no preference can show and none matters to users; a candidate losing the few decided
      requests is still failed first;
    - otherwise inconclusive, with `required`: the decided requests at which an equal candidate
      passes with probability `power` (`sequential.required_samples` at variance 1/4;
      infinite when tolerance is 0: then only a candidate confidently preferred passes).

    `n_plan` (decided requests) tunes the interval; by default it is `required`, which needs
    tolerance > 0 (ValueError otherwise: give n_plan). In the Check, `n_canary` is the decided
    requests (the units of `required` and `minimum`), `n_baseline` all interleaved requests;
    ties and unshown clicks are in the reason. Before any decided request it is inconclusive,
    `enough` False."""
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a finite share >= 0, got {tolerance}")
    required = required_samples(PREFERENCE_VARIANCE, 0.0, 1.0, tolerance, alpha, power)
    plan = n_plan if n_plan is not None else required
    if not math.isfinite(plan):
        raise ValueError("n_plan is needed when tolerance is 0 (no pass to plan for)")
    n = pref.decided
    counts = (f"candidate won {pref.wins_b}, champion won {pref.wins_a}, {pref.ties} ties "
              f"of {pref.requests} requests; {pref.unshown} clicks on items not shown ignored")
    same = decided_share_high(pref, alpha, plan)
    indistinguishable = same is not None and same <= tolerance and pref.requests >= minimum
    if n == 0 and not indistinguishable:
        return Check(CHECK_NAME, INCONCLUSIVE, None, None, None, 0, pref.requests,
                     f"no decided requests yet ({counts})", required, False, tolerance, alpha)
    pref_iv = preference_interval(pref, alpha, plan)
    harm = Interval(-pref_iv.estimate, -pref_iv.high, -pref_iv.low)
    enough = n >= max(minimum, required)
    if n and harm.above(tolerance):
        outcome, verdict, enough = FAIL, "champion preferred beyond tolerance", True
    elif harm.below(tolerance) and n >= minimum:
        outcome, verdict, enough = PASS, "a preference for the champion beyond tolerance excluded", True
    elif indistinguishable:
        # lists that change the credit on at most `tolerance` of requests: users cannot tell them apart
        assert same is not None
        outcome, enough = PASS, True
        verdict = (f"indistinguishable: the lists gave equal credit on all but {n} of {pref.requests} requests "
                   f"(at most {same:.2%} decided, always-valid)")
    elif n < minimum:
        outcome, verdict, enough = INCONCLUSIVE, f"too few decided requests yet ({n} of at least {minimum})", False
    else:
        outcome, verdict = INCONCLUSIVE, "not yet shown within tolerance"
    need = f"~{required:,.0f}" if math.isfinite(required) else "an unbounded number of"
    share = "n/a" if n == 0 else f"{pref.share_b:.2%}"
    reason = (f"{verdict}: candidate's share of decided requests {share} ({counts}); "
              f"harm {harm.estimate:+.4f} in [{harm.low:+.4f}, {harm.high:+.4f}] (always-valid, "
              f"alpha {alpha:.3g}), tolerance {tolerance:.4g}; an equally good candidate passes at {need} "
              f"decided requests, a better one sooner")
    return Check(CHECK_NAME, outcome, harm.estimate, harm.low, harm.high, n, pref.requests, reason,
                 required, enough, tolerance, alpha)
