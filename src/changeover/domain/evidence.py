"""The evidence a canary look reads: per version, everything seen since the stage began.

An `ArmEvidence` folds metric windows (counts, errors, the latency reservoir weighted by the
requests it stands for) and labelled outcomes (right/wrong, absolute and squared errors,
rewards) into running sums. `StageEvidence` holds both arms of one stage (a canary, or the
watch) and remembers which windows and which feedback it has already counted, so the
controller can fold in only what is new at every look and every look sees all earlier data
(nested looks), and a restarted controller rebuilding it from the store gets the same sums.
Pure: the controller and the simulation feed it the same rows.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from changeover.domain.moments import Moments
from changeover.domain.outcomes import Outcome, outcome
from changeover.domain.quantiles import LatencyHistogram
from changeover.domain.ranking_feedback import RankingMoments

__all__ = ["ArmEvidence", "Moments", "StageEvidence"]

PREDICTION_SAMPLE = 5000


@dataclass
class ArmEvidence:
    """One version over one stage."""

    requests: int = 0
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    labelled: int = 0  # classification outcomes
    correct: int = 0
    abs_error: Moments = field(default_factory=Moments)  # regression |label − prediction|
    sq_error: Moments = field(default_factory=Moments)  # regression (label − prediction)²
    reward: Moments = field(default_factory=Moments)
    ranking: RankingMoments = field(default_factory=RankingMoments)  # per ranking metric
    predictions: list[float] = field(default_factory=list)  # a uniform reservoir
    _seen_predictions: int = 0

    def add_window(self, requests: int, errors: int, latencies_ms: ArrayLike,
                   predictions: Iterable[float] = (), rng: random.Random | None = None) -> None:
        """One metric window: its counts, and its latency reservoir weighted by the answered
        requests each sampled value stands for (errors carry no latency)."""
        if requests < 0 or not 0 <= errors <= requests:
            raise ValueError(f"need 0 <= errors <= requests, got {errors}/{requests}")
        self.requests += requests
        self.errors += errors
        sample = np.asarray(latencies_ms, dtype=np.float64).ravel()
        if sample.size:
            answered = max(requests - errors, sample.size)
            self.latency.add(sample, answered / sample.size)
        for value in predictions:
            self._seen_predictions += 1
            if len(self.predictions) < PREDICTION_SAMPLE:
                self.predictions.append(float(value))
            else:
                j = (rng or random).randrange(self._seen_predictions)
                if j < PREDICTION_SAMPLE:
                    self.predictions[j] = float(value)

    def add_outcome(self, result: Outcome, reward_cap: float | None = None) -> None:
        """One labelled request; a reward above `reward_cap` counts as the cap (winsorised)."""
        if result.correct is not None:
            self.labelled += 1
            self.correct += int(result.correct)
        if result.error is not None:
            self.abs_error.add_sums(1, result.error, result.error**2)
            self.sq_error.add_sums(1, result.error**2, result.error**4)
        if result.ranking is not None:
            self.ranking.add(result.ranking)
        if result.reward is not None:
            reward = min(result.reward, reward_cap) if reward_cap is not None else result.reward
            self.reward.add_sums(1, reward, reward**2)

    def add_labels(self, labelled: int, correct: int) -> None:
        """Classification outcomes in bulk (what the simulation feeds)."""
        if not 0 <= correct <= labelled:
            raise ValueError(f"need 0 <= correct <= labelled, got {correct}/{labelled}")
        self.labelled += labelled
        self.correct += correct


@dataclass
class StageEvidence:
    """Both arms of one stage, and what has been counted (so each look adds only the new)."""

    baseline: int
    canary: int
    since: float
    arms: dict[int, ArmEvidence] = field(default_factory=dict)
    windows_seen: set[int] = field(default_factory=set)
    feedback_seen: set[str] = field(default_factory=set)
    feedback_cursor: float = 0.0  # the newest feedback time counted
    reward_cap: float | None = None

    def arm(self, version: int) -> ArmEvidence:
        return self.arms.setdefault(version, ArmEvidence())

    def add_windows(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Fold in metric-window rows not counted yet; returns how many were new."""
        added = 0
        for row in rows:
            key = int(row["id"])
            version = int(row["version"])
            if key in self.windows_seen or version not in (self.baseline, self.canary):
                continue
            self.windows_seen.add(key)
            latencies, predictions = row.get("latencies"), row.get("predictions")
            self.arm(version).add_window(int(row["requests"]), int(row["errors"]),
                                         [] if latencies is None else latencies,
                                         [] if predictions is None else predictions)
            added += 1
        return added

    def add_feedback(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Fold in labelled requests (version, output, label, reward, request_id, and the
        feedback's time as `feedback_at`) not counted yet, served since the stage began."""
        added = 0
        for row in rows:
            key = str(row["request_id"])
            version = int(row["version"])
            if key in self.feedback_seen or version not in (self.baseline, self.canary):
                continue
            if row.get("at") is not None and float(row["at"]) < self.since:
                continue
            self.feedback_seen.add(key)
            self.feedback_cursor = max(self.feedback_cursor, float(row.get("feedback_at") or 0.0))
            self.arm(version).add_outcome(outcome(row.get("output"), row.get("label"), row.get("reward")),
                                          self.reward_cap)
            added += 1
        return added
