"""Stale metrics are not "no requests": while a replica's recorder cannot write, the windows
it holds are missing from the store, and a look that has seen no new window since that stall
began would judge a stage on what is not there. Such a look waits: it neither passes nor
fails, and says "metrics stale since T (replica X's recorder cannot write)" (the bake's
"waits for samples" holds the step, as for any evidence still to come).

Pure: the reports come from the replicas' heartbeats (store/replicas.py); the times are the
replicas' and the controller's clocks (seconds since the epoch)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from changeover.domain.judge import INCONCLUSIVE, Analysis, Check

__all__ = ["RecorderReport", "held", "stale_stall", "stale_words"]

METRICS = "metrics"  # the name of the check a stale look adds


@dataclass(frozen=True)
class RecorderReport:
    """One replica's last heartbeat: since when its recorder cannot write (None: it can)."""

    replica: str
    stalled_since: float | None
    heartbeat_at: float


def stale_stall(reports: Iterable[RecorderReport], last_arrival: float | None) -> RecorderReport | None:
    """The earliest stall that no window arrived after: the look is stale, or None.

    ``last_arrival`` is when this stage's looks last saw a new window (None: none yet). A
    window that arrived after a stall began came from a replica still writing, so the stage
    goes on being judged on it; a stall reported by a replica whose heartbeat stopped is the
    caller's to leave out (`store.replicas.reports(since=...)`)."""
    stalls = [r for r in reports if r.stalled_since is not None
              and (last_arrival is None or r.stalled_since >= last_arrival)]
    return min(stalls, key=lambda r: (r.stalled_since or 0.0, r.replica), default=None)


def stale_words(stall: RecorderReport) -> str:
    assert stall.stalled_since is not None
    at = datetime.fromtimestamp(stall.stalled_since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"metrics stale since {at} (replica {stall.replica}'s recorder cannot write)"


def held(analysis: Analysis, stall: RecorderReport) -> Analysis:
    """The look made to wait: inconclusive and not enough, whatever the checks said (they stay
    in the evidence), with the stale metrics first among its reasons."""
    words = stale_words(stall)
    first = analysis.checks[0] if analysis.checks else None
    check = Check(METRICS, INCONCLUSIVE, None, None, None, first.n_canary if first else 0,
                  first.n_baseline if first else 0, words, enough=False)
    return replace(analysis, outcome=INCONCLUSIVE, checks=(check, *analysis.checks), enough=False,
                   waiting=(f"{METRICS}: {words}", *analysis.waiting))
