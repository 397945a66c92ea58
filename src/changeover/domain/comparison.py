"""Shadow comparison: a shadow's answers against the champion's, request by request.

Every pair (one request answered by both) feeds running figures, overall and per segment.
Counts and sums are exact and add up across gateways (`Comparison.merge`); quantiles,
distribution distances and histograms come from a bounded reservoir sample of each slice.

Answers are read by output role (`domain.shadow_answers`), never by output name or shape: each
`Pair` carries both versions' output roles (their signatures'; inferred from the answer when a
version declares no outputs). The task is given, or follows the roles of the champion's answer:
a ranking makes a ranker, a label or probabilities a classifier, a prediction a regressor.

- classification: agreement of the labels, the table of who said what (champion label → shadow
  label → count), label_shift (total variation distance between the two label distributions).
  The score is the positive-class probability (two classes) or the top probability (more).
- regression: the score is the prediction; differences are shadow − champion, relative ones to
  |champion| (pairs where the champion said exactly 0 are left out of the relative figures).
- ranking: the two lists of item ids (role ``ranking``) are compared by id with
  `domain.ranking_comparison`: ``overlap_at_<k>`` (overlap@k), ``rbo`` (RBO_EXT of the top-k
  prefixes, p = 0.9) and ``kendall_tau`` (τ-b on the items both top-k lists share; pairs
  sharing fewer than two are left out of it), each averaged over the compared pairs. The score
  is the top item's score (role ``scores``), when the rankings carry scores.

All tasks: distribution_distance (Wasserstein) and ks_statistic between the two scores on the
same requests, latency quantiles and ratios (shadow / champion), error rates. A shadow that
errored, timed out or answered without a usable value is a shadow error, counted by kind (the
part of `Pair.error` before its colon: "timeout", "error", "invalid"...); candidate_error_rate
= shadow errors / pairs, timeouts included. A pair whose champion answer cannot be read for the
task is counted, not compared, and not the shadow's error. Not thread-safe.

`figures()["missing"]` says, for every figure that has no value, why (figure → reason).

Segments past the first MAX_SEGMENTS - 1 are counted as "(other)". The verdict on these figures
(`shadow.require`, and the mirror's drops) is `domain.shadow_judgement`'s.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from changeover.domain.ranking_comparison import compare_rankings
from changeover.domain.shadow_answers import CLASSIFICATION, RANKING, REGRESSION, Answer, by_role, read, task_of_answer

__all__ = ["CLASSIFICATION", "DROP_CAUSES", "FIGURE_ALIASES", "K", "KNOWN_FIGURES", "MIN_SEGMENT_PAIRS", "RANKING",
           "REGRESSION", "SEGMENT_PREFIX", "TASK_FIGURES", "Comparison", "Pair", "counted", "eligible_segments",
           "infer_task", "overlap_name"]

TASKS = (CLASSIFICATION, REGRESSION, RANKING)
FORMAT = 2  # 2: rankings compared by id (overlap, rbo, kendall_tau sums); reasons kept per slice
K = 10  # the depth rankings are compared at, unless a Comparison is given another
MAX_SEGMENTS, MAX_LABELS, MAX_KINDS = 20, 30, 20  # beyond: folded into OTHER
OTHER = "(other)"
MIN_SEGMENT_PAIRS = 30  # a smaller segment is shown, but judged only when no segment is larger
QUANTILES = (50, 90, 99)
HIST_BINS = 30
SEGMENT_PREFIX = "worst_segment_"  # `worst_segment_agreement: {min: 0.8}` judges every segment

_DIFFS = ("diff_mean", "abs_diff_mean", *(f"abs_diff_p{q}" for q in QUANTILES))
_LATENCY = tuple(f"{who}_latency_{s}_ms" for who in ("champion", "shadow") for s in ("mean", "p50", "p90", "p99"))


def overlap_name(k: int) -> str:
    return f"overlap_at_{k}"


TASK_FIGURES: dict[str, tuple[str, ...]] = {
    CLASSIFICATION: ("agreement", "label_shift", *_DIFFS),
    REGRESSION: (*_DIFFS, "rel_diff_mean", *(f"rel_diff_p{q}" for q in QUANTILES)),
    RANKING: (overlap_name(K), "rbo", "kendall_tau"),
}
_COMMON = ("pairs", "compared", "shadow_errors", "timeouts", "candidate_error_rate", "timeout_rate", *_LATENCY,
           "latency_ratio", "latency_p99_ratio", "distribution_distance", "ks_statistic")
KNOWN_FIGURES = tuple(dict.fromkeys(_COMMON + sum(TASK_FIGURES.values(), ())))
# names of earlier releases, still read in `shadow.require`: overlap at the comparison's k, and
# the rank correlation, now Kendall τ on the shared items
FIGURE_ALIASES = {"overlap_at_k": overlap_name(K), "rank_correlation": "kendall_tau"}
# why a mirrored call was not compared, in the order a report lists them (`coverage`)
DROP_CAUSES = ("queue_full", "pool_busy", "not_loaded", "not_recorded", "timeout", "candidate_error",
               "invalid_answer", "champion_unusable")


def _worst_by(task: str, k: int) -> tuple[str, Any]:
    return {CLASSIFICATION: ("agreement", min), REGRESSION: ("abs_diff_mean", max),
            RANKING: (overlap_name(k), min)}[task]


@dataclass
class Pair:
    """One request answered by both versions; outputs are first-row values, as the gateway
    summarises them (output name → value)."""

    request_id: str
    champion: dict[str, Any]
    shadow: dict[str, Any] | None  # None when the shadow errored or timed out
    champion_ms: float
    shadow_ms: float | None
    error: str | None = None  # "timeout", "error: ...", "invalid: NaN"...
    segment: str | None = None
    task: str | None = None  # None: from the roles of the champion's answer
    champion_roles: Mapping[str, str | None] | None = None  # output name → role; None: inferred from the answer
    shadow_roles: Mapping[str, str | None] | None = None


def infer_task(outputs: Mapping[str, Any], roles: Mapping[str, str | None] | None = None) -> str | None:
    """The task an answer is compared as: from its output roles; None when it holds none."""
    return task_of_answer(by_role(outputs, roles))


# --- one pair -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Observed:
    champion_score: float
    shadow_score: float = math.nan
    labels: tuple[str, str] | None = None
    overlap: float | None = None
    rbo: float | None = None
    tau: float | None = None


def _compare(task: str, c: Answer, s: Answer | None, k: int) -> _Observed:
    if s is None:
        return _Observed(c.score)
    if task == CLASSIFICATION:
        return _Observed(c.score, s.score, labels=(str(c.label), str(s.label)))
    if task == REGRESSION:
        return _Observed(c.score, s.score)
    r = compare_rankings(c.ranking, s.ranking, k)
    return _Observed(c.score, s.score, overlap=r.overlap, rbo=r.rbo, tau=r.kendall_tau)


# --- one slice of traffic (overall, or one segment) -------------------------------------------


def _bump(counts: dict[str, int], key: str, cap: int, by: int = 1) -> None:
    if key not in counts and len(counts) >= cap - 1:
        key = OTHER
    counts[key] = counts.get(key, 0) + by


def _tally(table: dict[str, dict[str, int]], c: str, s: str, by: int = 1) -> None:
    """Count who said what; labels past the first MAX_LABELS - 1 on a side are counted as OTHER."""
    if c not in table and len(table) >= MAX_LABELS - 1:
        c = OTHER
    row = table.setdefault(c, {})
    if s not in row and s != OTHER:
        seen = {x for r in table.values() for x in r}
        s = s if s in seen or len(seen) < MAX_LABELS - 1 else OTHER
    row[s] = row.get(s, 0) + by


def _sig(x: float) -> float | None:
    return float(f"{x:.6g}") if math.isfinite(x) else None


@dataclass
class _Slice:
    n: dict[str, float] = field(default_factory=dict)  # exact counts and sums, named as in `add`
    kinds: dict[str, int] = field(default_factory=dict)  # shadow errors by kind
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)  # champion label -> shadow label -> n
    seen: int = 0
    rows: list[list[float]] = field(default_factory=list)  # reservoir: both scores, both latencies
    why: dict[str, int] = field(default_factory=dict)  # why answers could not be read: "champion: ..." -> n

    @property
    def pairs(self) -> int:
        return int(self.n.get("pairs", 0))

    def _inc(self, **by: float) -> None:
        for key, value in by.items():
            self.n[key] = self.n.get(key, 0) + value

    def add(self, obs: _Observed | None, kind: str | None, why: str | None, champion_ms: float,
            shadow_ms: float | None, capacity: int, rng: random.Random) -> None:
        self._inc(pairs=1, champion_ms=champion_ms)
        if shadow_ms is not None:
            self._inc(shadow_ms=shadow_ms, shadow_ms_n=1)
        if why is not None:
            _bump(self.why, why[:160], MAX_KINDS)
        if kind is not None:
            self._inc(errors=1)
            _bump(self.kinds, kind, MAX_KINDS)
        elif obs is None:
            self._inc(unread=1)  # the champion's answer could not be read: nothing to compare with
        else:
            self._inc(compared=1)
            if obs.labels is not None:
                c, s = obs.labels
                self._inc(agree=int(c == s))
                _tally(self.confusion, c, s)
            if math.isfinite(obs.champion_score) and math.isfinite(obs.shadow_score):
                d = obs.shadow_score - obs.champion_score
                self._inc(diff_n=1, diff=d, abs=abs(d))
                if obs.champion_score != 0:
                    self._inc(rel_n=1, rel=abs(d) / abs(obs.champion_score))
            if obs.overlap is not None:
                self._inc(ranked=1, overlap=obs.overlap, rbo=obs.rbo or 0.0)
            if obs.tau is not None:
                self._inc(tau_n=1, tau=obs.tau)
        row = [obs.champion_score if obs else math.nan, obs.shadow_score if obs else math.nan,
               champion_ms, math.nan if shadow_ms is None else shadow_ms]
        self.seen += 1
        if len(self.rows) < capacity:
            self.rows.append(row)
        elif (j := rng.randrange(self.seen)) < capacity:
            self.rows[j] = row

    def merged(self, other: _Slice, capacity: int, rng: random.Random) -> _Slice:
        out = _Slice(dict(self.n), seen=self.seen + other.seen)
        out._inc(**other.n)
        for kind, count in sorted(self.kinds.items()) + sorted(other.kinds.items()):
            _bump(out.kinds, kind, MAX_KINDS, count)
        for why, count in sorted(self.why.items()) + sorted(other.why.items()):
            _bump(out.why, why, MAX_KINDS, count)
        for table in (self.confusion, other.confusion):
            for c, row in table.items():
                for s, count in row.items():
                    _tally(out.confusion, c, s, count)
        out.rows = _merge_samples(self.rows, self.seen, other.rows, other.seen, capacity, rng)
        return out

    def to_dict(self) -> dict[str, Any]:
        rows = [[_sig(x) for x in row] for row in self.rows]
        confusion = {c: dict(row) for c, row in self.confusion.items()}
        return {"n": dict(self.n), "kinds": dict(self.kinds), "confusion": confusion, "seen": self.seen, "rows": rows,
                "why": dict(self.why)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Slice:
        rows = [[math.nan if x is None else float(x) for x in row] for row in data["rows"]]
        return cls(dict(data["n"]), dict(data["kinds"]), {c: dict(r) for c, r in data["confusion"].items()},
                   int(data["seen"]), rows, dict(data.get("why") or {}))



def _merge_samples(a: list[list[float]], a_seen: int, b: list[list[float]], b_seen: int, capacity: int,
                   rng: random.Random) -> list[list[float]]:
    """A uniform sample of both streams: how many come from each is hypergeometric."""
    if len(a) == a_seen and len(b) == b_seen and a_seen + b_seen <= capacity:
        return [list(r) for r in a + b]
    gen = np.random.default_rng(rng.getrandbits(64))
    take = min(capacity, a_seen + b_seen)
    from_a = int(gen.hypergeometric(a_seen, b_seen, take)) if a_seen and b_seen else min(take, a_seen)
    from_a = min(from_a, len(a))
    from_b = min(take - from_a, len(b))
    return [list(a[i]) for i in gen.choice(len(a), from_a, replace=False)] + [
        list(b[i]) for i in gen.choice(len(b), from_b, replace=False)]


# --- figures ----------------------------------------------------------------------------------


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _q(x: np.ndarray, q: float) -> float | None:
    return float(np.percentile(x, q)) if x.size else None



def _columns(sl: _Slice) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(sl.rows, dtype=np.float64).reshape(-1, 4).T)


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic (scipy's ks_2samp warns on tiny samples)."""
    grid = np.concatenate([a, b])
    ecdf_a = np.searchsorted(np.sort(a), grid, side="right") / a.size
    return float(np.max(np.abs(ecdf_a - np.searchsorted(np.sort(b), grid, side="right") / b.size)))


def _label_shift(table: dict[str, dict[str, int]]) -> float | None:
    """Total variation distance between the champion's and the shadow's label distributions."""
    gap: dict[str, int] = {}
    for c, row in table.items():
        for s, n in row.items():
            gap[c] = gap.get(c, 0) + n
            gap[s] = gap.get(s, 0) - n
    total = sum(n for row in table.values() for n in row.values())
    return _div(sum(abs(v) for v in gap.values()) / 2, total)


def _task_figures(task: str | None, k: int) -> tuple[str, ...]:
    if task == RANKING:
        return (overlap_name(k), "rbo", "kendall_tau")
    return TASK_FIGURES.get(task or "", ())


def _slice_figures(sl: _Slice, task: str | None, k: int) -> dict[str, Any]:
    n, (cs, ss, cms, sms) = sl.n.get, _columns(sl)
    errors, timeouts = int(n("errors", 0)), sl.kinds.get("timeout", 0)
    out: dict[str, Any] = {
        "pairs": sl.pairs, "compared": int(n("compared", 0)), "shadow_errors": errors, "timeouts": timeouts,
        "candidate_error_rate": _div(errors, sl.pairs), "timeout_rate": _div(timeouts, sl.pairs),
        "errors_by_kind": dict(sorted(sl.kinds.items())),
    }
    for who, ms, count in (("champion", cms, "pairs"), ("shadow", sms, "shadow_ms_n")):
        out[f"{who}_latency_mean_ms"] = _div(n(f"{who}_ms"), n(count))
        out |= {f"{who}_latency_p{q}_ms": _q(ms[np.isfinite(ms)], q) for q in QUANTILES}
    out["latency_ratio"] = _div(out["shadow_latency_p50_ms"], out["champion_latency_p50_ms"])
    out["latency_p99_ratio"] = _div(out["shadow_latency_p99_ms"], out["champion_latency_p99_ms"])
    both = np.isfinite(cs) & np.isfinite(ss)
    c, s = cs[both], ss[both]
    out["distribution_distance"] = float(wasserstein_distance(c, s)) if c.size else None
    out["ks_statistic"] = _ks(c, s) if c.size else None
    if task == CLASSIFICATION:
        out["agreement"] = _div(n("agree", 0), n("compared"))
        out["label_shift"] = _label_shift(sl.confusion)
        out["confusion"] = {k: dict(sorted(v.items())) for k, v in sorted(sl.confusion.items())}
    if task in (CLASSIFICATION, REGRESSION):
        gap = np.abs(s - c)
        out |= {"diff_mean": _div(n("diff"), n("diff_n")), "abs_diff_mean": _div(n("abs"), n("diff_n"))}
        out |= {f"abs_diff_p{q}": _q(gap, q) for q in QUANTILES}
    if task == REGRESSION:
        out["rel_diff_mean"] = _div(n("rel"), n("rel_n"))
        out |= {f"rel_diff_p{q}": _q(gap[c != 0] / np.abs(c[c != 0]), q) for q in QUANTILES}
    if task == RANKING:
        out |= {overlap_name(k): _div(n("overlap"), n("ranked")), "rbo": _div(n("rbo"), n("ranked")),
                "kendall_tau": _div(n("tau"), n("tau_n"))}
    return out


def counted(counts: Mapping[str, int | float]) -> str:
    """``name n, name n``: the largest first."""
    return ", ".join(f"{name} {int(n)}" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _not_compared(sl: _Slice) -> str:
    """Why no pair of a slice (with pairs) was compared."""
    errors, unread = int(sl.n.get("errors", 0)), int(sl.n.get("unread", 0))
    parts = [f"{errors} shadow errors ({counted(sl.kinds)})"] if errors else []
    if unread:
        parts.append(f"{unread} champion answers that could not be read")
    why = "; ".join(f"{w} ({n})" for w, n in sorted(sl.why.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
    return f"no pair compared of {sl.pairs}: " + ", ".join(parts) + (f" — {why}" if why else "")


_NO_SCORE = {
    CLASSIFICATION: "no compared pair where both answers carry probabilities (an output of role probabilities)",
    RANKING: "no compared pair where both rankings carry scores (an output of role scores)",
}


def _missing(sl: _Slice, out: Mapping[str, Any], task: str | None, k: int) -> dict[str, str]:
    """Figure → why it has no value, for every figure of the task (and of every task) without one."""
    names = [*_COMMON, *_task_figures(task, k)]
    if sl.pairs == 0:
        return {name: "no pairs yet" for name in names if out.get(name) is None}
    missing: dict[str, str] = {}
    if task is None:
        missing["task"] = ("the champion's answers hold no output the shadow compares (role label, probabilities, "
                           "prediction or ranking): " + _not_compared(sl))
    nothing = _not_compared(sl) if not out["compared"] else None
    timed_out = (f"no shadow call finished ({out['timeouts']} timeouts)" if not sl.n.get("shadow_ms_n")
                 else "no shadow latency in the sample")
    for name in names:
        if out.get(name) is not None:
            continue
        if name.startswith("shadow_latency") or (name.startswith("latency_") and out["shadow_latency_p50_ms"] is None):
            missing[name] = timed_out
        elif name.startswith("latency_"):
            missing[name] = "the champion's latency is 0 ms"
        elif nothing is not None:
            missing[name] = nothing
        elif name.startswith("rel_diff"):
            missing[name] = "the champion predicted exactly 0 on every compared pair (relative to 0 is undefined)"
        elif name == "kendall_tau":
            missing[name] = f"no compared pair shares two items in both top-{k} lists (τ needs a pair of them)"
        elif task in _NO_SCORE:
            missing[name] = _NO_SCORE[task]
        else:
            missing[name] = "no value in the sample"
    return missing


def _histograms(sl: _Slice) -> dict[str, Any]:
    """Both versions' scores and latencies on shared bins, for plots (small, unlike the samples)."""
    cs, ss, cms, sms = _columns(sl)
    out: dict[str, Any] = {}
    for name, c, s, log in (("scores", cs, ss, False), ("latency_ms", cms, sms, True)):
        c, s = c[np.isfinite(c) & (c > 0 if log else True)], s[np.isfinite(s) & (s > 0 if log else True)]
        values = np.concatenate([c, s])
        if not values.size:
            out[name] = None
            continue
        lo, hi = float(values.min()), float(values.max())
        edges = np.geomspace(lo, hi, HIST_BINS + 1) if log and hi > lo else np.histogram_bin_edges(values, HIST_BINS)
        out[name] = {"edges": edges.tolist(), "champion": np.histogram(c, edges)[0].tolist(),
                     "shadow": np.histogram(s, edges)[0].tolist(), "log": bool(log and hi > lo)}
    return out


def eligible_segments(segments: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The segments judged: those with at least MIN_SEGMENT_PAIRS pairs, or all when none has."""
    big = {n: f for n, f in segments.items() if f["pairs"] >= MIN_SEGMENT_PAIRS}
    return big or dict(segments)


def _slowest(segments: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """Where the shadow is slowest (its median latency), with the champion's beside it."""
    found = [(f["shadow_latency_p50_ms"], n) for n, f in eligible_segments(segments).items()
             if f["shadow_latency_p50_ms"] is not None]
    if not found:
        return None
    name = max(found)[1]
    keys = ("pairs", "shadow_latency_p50_ms", "champion_latency_p50_ms", "latency_ratio", "latency_p99_ratio")
    return {"segment": name} | {k: segments[name][k] for k in keys}


def _worst(segments: Mapping[str, Mapping[str, Any]], overall: Mapping[str, Any], task: str | None,
           k: int) -> dict | None:
    if task is None:
        return None
    by, pick = _worst_by(task, k)
    found = [(f[by], n) for n, f in eligible_segments(segments).items() if f.get(by) is not None]
    if not found:
        return None
    value, name = pick(found)
    return {"segment": name, "by": by, "value": value, "overall": overall.get(by), "pairs": segments[name]["pairs"]}


# --- the running comparison -------------------------------------------------------------------


class Comparison:
    """Running figures for one (model, shadow version); `merge` adds up those of several gateways."""

    def __init__(self, task: str | None = None, k: int = K, sample_size: int = 2000, seed: int = 0) -> None:
        if task is not None and task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        if k < 1 or sample_size < 1:
            raise ValueError(f"k and sample_size must be at least 1, got {k} and {sample_size}")
        self.task, self.k, self.sample_size, self.seed = task, k, sample_size, seed
        self._overall = _Slice()
        self._segments: dict[str, _Slice] = {}
        self._rng = random.Random(seed)

    @property
    def pairs(self) -> int:
        return self._overall.pairs

    @property
    def _segment_capacity(self) -> int:
        return min(self.sample_size, max(100, self.sample_size // 8))  # keeps to_dict small with many segments

    def _observe(self, pair: Pair) -> tuple[_Observed | None, str | None, str | None]:
        """What one pair shows: the observation (None: the champion's answer cannot be read), the
        shadow error's kind (None: no error), and why an answer could not be read."""
        champion_roles = by_role(pair.champion, pair.champion_roles)
        task = self.task = self.task or pair.task or task_of_answer(champion_roles)
        kind = None
        if pair.error is not None or pair.shadow is None:
            kind = (pair.error or "error").split(":", 1)[0].strip().lower()[:40] or "error"
        if task is None:
            return None, kind, "champion: no output of role label, probabilities, prediction or ranking"
        champion = read(task, champion_roles)
        why = None if isinstance(champion, Answer) else f"champion: {champion}"
        shadow: Answer | None = None
        if kind is None and pair.shadow is not None:
            read_shadow = read(task, by_role(pair.shadow, pair.shadow_roles))
            if isinstance(read_shadow, Answer):
                shadow = read_shadow
            elif why is None:  # the champion said something usable and the shadow did not
                kind, why = "invalid", f"shadow: {read_shadow}"
        obs = _compare(task, champion, shadow, self.k) if isinstance(champion, Answer) else None
        return obs, kind, why

    def add(self, pair: Pair) -> None:
        if pair.task is not None and pair.task not in TASKS:
            raise ValueError(f"unknown task {pair.task!r}; known: {', '.join(TASKS)}")
        obs, kind, why = self._observe(pair)
        self._overall.add(obs, kind, why, pair.champion_ms, pair.shadow_ms, self.sample_size, self._rng)
        if pair.segment is not None:
            name = str(pair.segment)[:200]
            if name not in self._segments and len(self._segments) >= MAX_SEGMENTS - 1:
                name = OTHER
            segment = self._segments.setdefault(name, _Slice())
            segment.add(obs, kind, why, pair.champion_ms, pair.shadow_ms, self._segment_capacity, self._rng)

    def merge(self, other: Comparison) -> Comparison:
        """A new comparison holding both; neither input changes."""
        if self.k != other.k:
            raise ValueError(f"cannot merge comparisons at k={self.k} and k={other.k}")
        if self.task and other.task and self.task != other.task:
            raise ValueError(f"cannot merge a {self.task} comparison with a {other.task} one")
        out = Comparison(self.task or other.task, self.k, self.sample_size, self.seed)
        out._rng = rng = random.Random(f"{self.seed}/{self.pairs}/{other.pairs}")
        out._overall = self._overall.merged(other._overall, out.sample_size, rng)
        cap = out._segment_capacity
        for name, segment in [*self._segments.items(), *other._segments.items()]:
            name = name if name in out._segments or len(out._segments) < MAX_SEGMENTS - 1 else OTHER
            out._segments[name] = out._segments.get(name, _Slice()).merged(segment, cap, rng)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "task": self.task, "k": self.k, "sample_size": self.sample_size, "seed": self.seed,
                "overall": self._overall.to_dict(), "segments": {n: s.to_dict() for n, s in self._segments.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        if data.get("format") != FORMAT:
            raise ValueError(f"comparison format {data.get('format')!r} is not {FORMAT}, the one this build reads")
        out = cls(data["task"], data["k"], data["sample_size"], data["seed"])
        out._overall = _Slice.from_dict(data["overall"])
        out._segments = {n: _Slice.from_dict(s) for n, s in data["segments"].items()}
        out._rng = random.Random(f"{out.seed}/{out.pairs}")
        return out

    def figures(self) -> dict[str, Any]:
        overall = _slice_figures(self._overall, self.task, self.k)
        order = sorted(self._segments, key=lambda n: (-self._segments[n].pairs, n))
        segments = {n: _slice_figures(self._segments[n], self.task, self.k) for n in order}
        return {"task": self.task, "k": self.k, "overall": overall, "segments": segments,
                "slowest_segment": _slowest(segments), "worst_segment": _worst(segments, overall, self.task, self.k),
                "histograms": _histograms(self._overall),
                "missing": _missing(self._overall, overall, self.task, self.k)}


def __getattr__(name: str) -> Any:
    """`judge_shadow` and `coverage` live in `domain.shadow_judgement` (which reads this module's
    figures); importing them from here, as callers did before, still works."""
    if name in ("judge_shadow", "coverage"):
        from changeover.domain import shadow_judgement

        return getattr(shadow_judgement, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
