"""Interleaving looks: fold the click feedback of interleaved requests into a `Preference` and
ask the always-valid preference judge (`domain.interleaving.judge_preference`).

An interleaved request is logged by the gateway with the merged list it answered and the team
of each item (`{"ranking": [...], "interleaving": {"a": champion, "b": candidate, "teams":
[...]}}`); its feedback's label names the clicked items (a list of ids, or an object id →
relevance where a relevance above 0 is a click). Each such request is credited once
(`credit`): a win for the champion, for the candidate, or a tie. As the canary's looks, the
tally is kept in memory per rollout and stage start, folded with only what is new at each
look, and rebuilt from the store by a restarted controller (the same sums).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from changeover.control.canary_analysis import FEEDBACK_OVERLAP_S, Look
from changeover.domain.interleaving import Interleaved, Outcome, Preference, credit, judge_preference
from changeover.domain.judge import Analysis
from changeover.domain.ranking_comparison import item_key
from changeover.domain.ranking_feedback import relevance_by_item
from changeover.domain.spec import InterleaveSpec, RolloutSpec
from changeover.store.store import Store
from changeover.store.traffic import feedback_since

__all__ = ["InterleaveLooks", "InterleaveTally", "interleaved_outcome", "judge_interleaving"]

DEFAULT_PLAN = 1000  # decided requests the interval is tuned at when the tolerance is 0 and no until.requests


def interleaved_outcome(output: Mapping[str, Any] | None, label: Any, champion: int,
                        candidate: int) -> Outcome | None:
    """The credited outcome of one interleaved request of this champion and candidate; None
    for a request that was not interleaved between them, or whose log or label cannot be read
    (a label the gateway refused never reaches here)."""
    if not isinstance(output, Mapping):
        return None
    meta = output.get("interleaving")
    items = output.get("ranking")
    if not isinstance(meta, Mapping) or not isinstance(items, list) or label is None:
        return None
    if meta.get("a") != champion or meta.get("b") != candidate or not isinstance(meta.get("teams"), list):
        return None
    teams = list(meta["teams"])[: len(items)]  # the log keeps the first ids of a long list
    try:
        shown = Interleaved(tuple(item_key(i) for i in items[: len(teams)]), tuple(teams))
        clicked = [key for key, relevance in relevance_by_item(label).items() if relevance > 0]
    except (ValueError, TypeError):
        return None
    return credit(shown, clicked)


@dataclass
class InterleaveTally:
    """One interleaving stage's preference, and the feedback already counted."""

    champion: int
    candidate: int
    since: float
    preference: Preference = field(default_factory=Preference)
    seen: set[str] = field(default_factory=set)
    cursor: float = 0.0
    unreadable: int = 0  # feedback of the stage's champion that was not an interleaved request of the two

    def add(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Fold in feedback rows (request_id, output, label, at, feedback_at) not counted yet."""
        added = 0
        for row in rows:
            key = str(row["request_id"])
            if key in self.seen or (row.get("at") is not None and float(row["at"]) < self.since):
                continue
            self.seen.add(key)
            self.cursor = max(self.cursor, float(row.get("feedback_at") or 0.0))
            outcome = interleaved_outcome(row.get("output"), row.get("label"), self.champion, self.candidate)
            if outcome is None:
                self.unreadable += 1
                continue
            self.preference = self.preference.add(outcome)
            added += 1
        return added


def judge_interleaving(tally: InterleaveTally, spec: InterleaveSpec, now: float) -> Look:
    """The judge's look at a tally, as the controller records it (an analysis of kind "interleave")."""
    plan = None
    if spec.tolerance == 0:
        plan = float(spec.until.requests or DEFAULT_PLAN)
    check = judge_preference(tally.preference, spec.tolerance, spec.alpha, n_plan=plan, minimum=spec.min_decided)
    analysis = Analysis(check.outcome, (check,), enough=check.enough)
    pref = tally.preference
    evidence = analysis.to_dict() | {
        "kind": "interleave",
        "window": {"since": tally.since, "until": now},
        "champion": tally.champion,
        "candidate": tally.candidate,
        "preference": {"wins_champion": pref.wins_a, "wins_candidate": pref.wins_b, "ties": pref.ties,
                       "requests": pref.requests, "decided": pref.decided,
                       "candidate_share": None if math.isnan(pref.share_b) else pref.share_b,
                       "clicks_not_shown": pref.unshown},
        "feedback_not_interleaved": tally.unreadable,
        "tolerance": spec.tolerance,
        "alpha": spec.alpha,
    }
    return Look(analysis, evidence)


class InterleaveLooks:
    """The running preference of every interleaving stage this controller is judging."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._tallies: dict[tuple[int, float], InterleaveTally] = {}

    def look(self, rollout_id: int, spec: RolloutSpec, champion: int, candidate: int, since: float,
             now: float | None = None) -> tuple[Look, int]:
        """The look now, and the interleaved requests with feedback counted (for `until`)."""
        assert spec.interleave is not None
        now = time.time() if now is None else now
        key = (rollout_id, since)
        tally = self._tallies.get(key)
        if tally is None:
            self.forget(rollout_id)
            tally = self._tallies[key] = InterleaveTally(champion, candidate, since)
        arrived = max(since, tally.cursor - FEEDBACK_OVERLAP_S)
        tally.add(feedback_since(self.store, spec.model, (champion,), served_since=since, arrived_since=arrived))
        return judge_interleaving(tally, spec.interleave, now), tally.preference.requests

    def forget(self, rollout_id: int) -> None:
        for old in [k for k in self._tallies if k[0] == rollout_id]:
            self._tallies.pop(old, None)
