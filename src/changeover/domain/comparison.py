"""Shadow comparison: a shadow's answers against the champion's, request by request.

Every pair (one request answered by both) feeds running figures, overall and per segment.
Counts and sums are exact and add up across gateways (`Comparison.merge`); quantiles,
distribution distances and histograms come from a bounded reservoir sample of each slice.

The task is given, or inferred from the champion's outputs (`infer_task`):

- classification ("label" and/or "probabilities"): agreement of the labels, the table of who
  said what (champion label → shadow label → count), label_shift (total variation distance
  between the two label distributions). The score is the positive-class probability (two
  classes, or a single probability) or the top probability (more classes).
- regression ("prediction", else the first numeric output; a list gives its first element):
  the score is the prediction; differences are shadow − champion, relative ones to |champion|
  (pairs where the champion said exactly 0 are left out of the relative figures).
- ranking (a list-valued "scores", one per item, or "ranking", items best first):
  overlap_at_k = |top-k ∩ top-k| / k, k capped at the shorter list; rank_correlation is
  Kendall's tau between the two score lists (or between the positions of the items both
  rankings list), averaged over pairs where it is defined. The score is the top item's score.

All tasks: distribution_distance (Wasserstein) and ks_statistic between the two scores on the
same requests, latency quantiles and ratios (shadow / champion), error rates. A shadow that
errored, timed out or answered without a usable finite value is a shadow error, counted by
kind (the part of `Pair.error` before its colon: "timeout", "error", "invalid"...);
candidate_error_rate = shadow errors / pairs, timeouts included. Not thread-safe.

Segments past the first MAX_SEGMENTS - 1 are counted as "(other)". `judge_shadow` checks the
spec's `shadow.require` ({min: x} / {max: x} per figure; `worst_segment_<figure>` checks the
worst segment instead of the average).
"""

from __future__ import annotations

import json
import math
import random
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import kendalltau, wasserstein_distance

from changeover.domain.judge import FAIL, INCONCLUSIVE, PASS

__all__ = ["CLASSIFICATION", "KNOWN_FIGURES", "MIN_SEGMENT_PAIRS", "RANKING", "REGRESSION", "SEGMENT_PREFIX",
           "Comparison", "Pair", "infer_task", "judge_shadow"]

CLASSIFICATION, REGRESSION, RANKING = "classification", "regression", "ranking"
TASKS = (CLASSIFICATION, REGRESSION, RANKING)
FORMAT = 1
MAX_SEGMENTS, MAX_LABELS, MAX_KINDS = 20, 30, 20  # beyond: folded into OTHER
OTHER = "(other)"
MIN_SEGMENT_PAIRS = 30  # a smaller segment is shown, but judged only when no segment is larger
QUANTILES = (50, 90, 99)
HIST_BINS = 30
SMALL_RANKING = 200  # items; Kendall's tau of longer lists goes to scipy (n log n)
SEGMENT_PREFIX = "worst_segment_"  # `worst_segment_agreement: {min: 0.8}` judges every segment

_DIFFS = ("diff_mean", "abs_diff_mean", *(f"abs_diff_p{q}" for q in QUANTILES))
_LATENCY = tuple(f"{who}_latency_{s}_ms" for who in ("champion", "shadow") for s in ("mean", "p50", "p90", "p99"))
TASK_FIGURES: dict[str, tuple[str, ...]] = {
    CLASSIFICATION: ("agreement", "label_shift", *_DIFFS),
    REGRESSION: (*_DIFFS, "rel_diff_mean", *(f"rel_diff_p{q}" for q in QUANTILES)),
    RANKING: ("overlap_at_k", "rank_correlation"),
}
_COMMON = ("pairs", "compared", "shadow_errors", "timeouts", "candidate_error_rate", "timeout_rate", *_LATENCY,
           "latency_ratio", "latency_p99_ratio", "distribution_distance", "ks_statistic")
KNOWN_FIGURES = tuple(dict.fromkeys(_COMMON + sum(TASK_FIGURES.values(), ())))
_WORST_BY = {CLASSIFICATION: ("agreement", min), REGRESSION: ("abs_diff_mean", max), RANKING: ("overlap_at_k", min)}


@dataclass
class Pair:
    """One request answered by both versions; outputs are first-row values, as the gateway summarises them."""

    request_id: str
    champion: dict[str, Any]
    shadow: dict[str, Any] | None  # None when the shadow errored or timed out
    champion_ms: float
    shadow_ms: float | None
    error: str | None = None  # "timeout", "error: ...", "invalid: NaN"...
    segment: str | None = None
    task: str | None = None  # None: inferred from the champion's outputs


def infer_task(outputs: Mapping[str, Any]) -> str:
    if "label" in outputs or "probabilities" in outputs:
        return CLASSIFICATION
    if any(isinstance(outputs.get(name), list) for name in ("scores", "ranking")):
        return RANKING
    return REGRESSION


# --- one answer, one pair -------------------------------------------------------------------


def _unwrap(value: Any) -> Any:
    while isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]
    return value


def _number(value: Any) -> float | None:
    value = _unwrap(value)
    if isinstance(value, list | tuple) and value:
        value = _unwrap(value[0])
    return float(value) if isinstance(value, bool | int | float) else None


def _numbers(value: Any) -> list[float] | None:
    """A flat list of numbers (a first row that is a vector), or None."""
    if isinstance(value, list | tuple) and len(value) == 1 and isinstance(value[0], list | tuple):
        value = value[0]
    if not isinstance(value, list | tuple) or not value or isinstance(value[0], str | list | tuple | dict):
        return None
    try:
        return list(np.asarray(value, dtype=np.float64).tolist())
    except (TypeError, ValueError):
        return None


def _key(value: Any) -> str:
    value = _unwrap(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a label 1 from one version and 1.0 from the other agree
    if isinstance(value, str) or type(value) is int:
        return str(value)
    return json.dumps(value, default=str)


@dataclass(frozen=True)
class _Answer:
    score: float = math.nan
    label: str | None = None
    order: tuple[str, ...] = ()  # ranking: items, best first
    scores: tuple[float, ...] | None = None  # ranking: one score per item


def _answer(task: str, outputs: Mapping[str, Any]) -> _Answer | None:
    """What one version said, or None when it said nothing usable."""
    if task == CLASSIFICATION:
        probs = _numbers(outputs.get("probabilities")) or _numbers([outputs.get("probabilities")]) or []
        probs = [1 - probs[0], probs[0]] if len(probs) == 1 else probs  # one probability: the positive class's
        score = (probs[1] if len(probs) == 2 else max(probs)) if probs else math.nan
        if outputs.get("probabilities") is not None and not all(map(math.isfinite, probs or [math.nan])):
            return None
        if outputs.get("label") is not None:
            return _Answer(score, _key(outputs["label"]))
        if probs:
            return _Answer(score, str(int(np.argmax(probs))))
        first = next((v for v in outputs.values() if v is not None), None)
        return None if first is None else _Answer(score, _key(first))
    if task == REGRESSION:
        name = "prediction" if "prediction" in outputs else next(
            (n for n, v in outputs.items() if _number(v) is not None), None)
        x = None if name is None else _number(outputs[name])
        return None if x is None or not math.isfinite(x) else _Answer(x)
    scores = _numbers(outputs.get("scores"))
    if scores is not None:
        if not all(map(math.isfinite, scores)):
            return None
        order = tuple(np.argsort(-np.asarray(scores), kind="stable").astype(str).tolist())
        return _Answer(max(scores), order=order, scores=tuple(scores))
    ranking = outputs.get("ranking")
    if isinstance(ranking, list) and len(ranking) == 1 and isinstance(ranking[0], list):
        ranking = ranking[0]
    return _Answer(order=tuple(_key(v) for v in ranking)) if isinstance(ranking, list) and ranking else None


def _tau(a: _Answer, b: _Answer) -> float | None:
    if a.scores is not None and b.scores is not None and len(a.scores) == len(b.scores):
        x, y = list(a.scores), list(b.scores)
    else:
        where = {item: i for i, item in enumerate(b.order)}
        common = [(i, where[item]) for i, item in enumerate(a.order) if item in where]
        x, y = [c[0] for c in common], [c[1] for c in common]
    if len(x) < 2 or min(x) == max(x) or min(y) == max(y):
        return None  # undefined for a constant list
    if len(x) <= SMALL_RANKING:  # tau-b from all pairs: scipy's call costs more than the sum below
        dx, dy = (np.sign(np.subtract.outer(v, v)) for v in (np.asarray(x), np.asarray(y)))
        tau = float(np.sum(dx * dy) / math.sqrt(np.sum(dx * dx) * np.sum(dy * dy)))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tau = float(kendalltau(x, y).statistic)
    return tau if math.isfinite(tau) else None


@dataclass(frozen=True)
class _Observed:
    champion_score: float
    shadow_score: float = math.nan
    labels: tuple[str, str] | None = None
    overlap: float | None = None
    correlation: float | None = None


def _compare(task: str, c: _Answer, s: _Answer | None, k: int) -> _Observed:
    if s is None:
        return _Observed(c.score)
    if task == CLASSIFICATION:
        return _Observed(c.score, s.score, labels=(str(c.label), str(s.label)))
    if task == REGRESSION:
        return _Observed(c.score, s.score)
    top = min(k, len(c.order), len(s.order))
    overlap = len(set(c.order[:top]) & set(s.order[:top])) / top if top else None
    return _Observed(c.score, s.score, overlap=overlap, correlation=_tau(c, s))


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

    @property
    def pairs(self) -> int:
        return int(self.n.get("pairs", 0))

    def _inc(self, **by: float) -> None:
        for key, value in by.items():
            self.n[key] = self.n.get(key, 0) + value

    def add(self, obs: _Observed | None, kind: str | None, champion_ms: float, shadow_ms: float | None,
            capacity: int, rng: random.Random) -> None:
        self._inc(pairs=1, champion_ms=champion_ms)
        if shadow_ms is not None:
            self._inc(shadow_ms=shadow_ms, shadow_ms_n=1)
        if kind is not None:
            self._inc(errors=1)
            _bump(self.kinds, kind, MAX_KINDS)
        elif obs is not None:
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
                self._inc(overlap_n=1, overlap=obs.overlap)
            if obs.correlation is not None:
                self._inc(corr_n=1, corr=obs.correlation)
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
        for table in (self.confusion, other.confusion):
            for c, row in table.items():
                for s, count in row.items():
                    _tally(out.confusion, c, s, count)
        out.rows = _merge_samples(self.rows, self.seen, other.rows, other.seen, capacity, rng)
        return out

    def to_dict(self) -> dict[str, Any]:
        rows = [[_sig(x) for x in row] for row in self.rows]
        confusion = {c: dict(row) for c, row in self.confusion.items()}
        return {"n": dict(self.n), "kinds": dict(self.kinds), "confusion": confusion, "seen": self.seen, "rows": rows}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Slice:
        rows = [[math.nan if x is None else float(x) for x in row] for row in data["rows"]]
        return cls(dict(data["n"]), dict(data["kinds"]), {c: dict(r) for c, r in data["confusion"].items()},
                   int(data["seen"]), rows)


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


def _slice_figures(sl: _Slice, task: str | None) -> dict[str, Any]:
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
        out |= {"overlap_at_k": _div(n("overlap"), n("overlap_n")), "rank_correlation": _div(n("corr"), n("corr_n"))}
    return out


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


def _eligible(segments: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    big = {n: f for n, f in segments.items() if f["pairs"] >= MIN_SEGMENT_PAIRS}
    return big or dict(segments)


def _slowest(segments: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """Where the shadow is slowest (its median latency), with the champion's beside it."""
    found = [(f["shadow_latency_p50_ms"], n) for n, f in _eligible(segments).items()
             if f["shadow_latency_p50_ms"] is not None]
    if not found:
        return None
    name = max(found)[1]
    keys = ("pairs", "shadow_latency_p50_ms", "champion_latency_p50_ms", "latency_ratio", "latency_p99_ratio")
    return {"segment": name} | {k: segments[name][k] for k in keys}


def _worst(segments: Mapping[str, Mapping[str, Any]], overall: Mapping[str, Any], task: str | None) -> dict | None:
    if task is None:
        return None
    by, pick = _WORST_BY[task]
    found = [(f[by], n) for n, f in _eligible(segments).items() if f.get(by) is not None]
    if not found:
        return None
    value, name = pick(found)
    return {"segment": name, "by": by, "value": value, "overall": overall.get(by), "pairs": segments[name]["pairs"]}


# --- the running comparison -------------------------------------------------------------------


class Comparison:
    """Running figures for one (model, shadow version); `merge` adds up those of several gateways."""

    def __init__(self, task: str | None = None, k: int = 10, sample_size: int = 2000, seed: int = 0) -> None:
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

    def add(self, pair: Pair) -> None:
        if pair.task is not None and pair.task not in TASKS:
            raise ValueError(f"unknown task {pair.task!r}; known: {', '.join(TASKS)}")
        task = self.task = self.task or pair.task or infer_task(pair.champion)
        champion = _answer(task, pair.champion)
        kind = None
        if pair.error is not None or pair.shadow is None:
            kind = (pair.error or "error").split(":", 1)[0].strip().lower()[:40] or "error"
        shadow = _answer(task, pair.shadow) if kind is None and pair.shadow is not None else None
        if kind is None and shadow is None and champion is not None:
            kind = "invalid"
        obs = None if champion is None else _compare(task, champion, shadow, self.k)
        self._overall.add(obs, kind, pair.champion_ms, pair.shadow_ms, self.sample_size, self._rng)
        if pair.segment is not None:
            name = str(pair.segment)[:200]
            if name not in self._segments and len(self._segments) >= MAX_SEGMENTS - 1:
                name = OTHER
            segment = self._segments.setdefault(name, _Slice())
            segment.add(obs, kind, pair.champion_ms, pair.shadow_ms, self._segment_capacity, self._rng)

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
        overall = _slice_figures(self._overall, self.task)
        order = sorted(self._segments, key=lambda n: (-self._segments[n].pairs, n))
        segments = {n: _slice_figures(self._segments[n], self.task) for n in order}
        return {"task": self.task, "k": self.k, "overall": overall, "segments": segments,
                "slowest_segment": _slowest(segments), "worst_segment": _worst(segments, overall, self.task),
                "histograms": _histograms(self._overall)}


# --- judging ----------------------------------------------------------------------------------


def _bounds(name: str, rule: Any) -> list[tuple[str, float]]:
    if name.removeprefix(SEGMENT_PREFIX) not in KNOWN_FIGURES:
        raise ValueError(f"unknown shadow figure {name!r}; known: {', '.join(KNOWN_FIGURES)}, "
                         f"and {SEGMENT_PREFIX}<figure> to judge the worst segment")
    rule = rule.model_dump() if hasattr(rule, "model_dump") else rule
    given = {k: v for k, v in rule.items() if v is not None} if isinstance(rule, Mapping) else {}
    if not given or set(given) - {"min", "max"}:
        raise ValueError(f"shadow requirement {name!r} takes min and/or max, got {rule!r}")
    return [(k, float(given[k])) for k in ("min", "max") if k in given]


def _check(name: str, kind: str, threshold: float, figures: Mapping[str, Any], pairs: int) -> dict[str, Any]:
    rule = f"{name} {'>=' if kind == 'min' else '<='} {threshold:g}"
    out: dict[str, Any] = {"name": name, "rule": rule, "figure": None, "passed": None, "reason": "no pairs yet"}
    if pairs == 0:
        return out
    overall, where = figures.get("overall", figures), ""
    if name.startswith(SEGMENT_PREFIX):
        base = name.removeprefix(SEGMENT_PREFIX)
        found = [(f[base], n) for n, f in _eligible(figures.get("segments") or {}).items() if f.get(base) is not None]
        figure, segment = (min if kind == "min" else max)(found) if found else (None, None)
        where, measured = f"segment {segment!r}: ", bool(found)
    else:
        figure, measured = overall.get(name), name in overall
    if figure is None:
        why = "no segment measured it" if name.startswith(SEGMENT_PREFIX) else (
            "no data for it yet" if measured else f"not measured for a {figures.get('task')} shadow")
        return out | {"passed": False, "reason": why}
    passed = figure >= threshold if kind == "min" else figure <= threshold
    side = ("at least" if passed else "below") if kind == "min" else ("at most" if passed else "above")
    return out | {"figure": figure, "passed": passed, "reason": f"{where}{figure:.4g} is {side} {threshold:g}"}


def judge_shadow(figures: Mapping[str, Any], require: Mapping[str, Any]) -> dict[str, Any]:
    """Judge `shadow.require` on `Comparison.figures()`: pass, fail, or inconclusive without pairs."""
    bounds = [(name, kind, t) for name, rule in require.items() for kind, t in _bounds(name, rule)]
    pairs = int(figures.get("overall", figures).get("pairs") or 0)
    checks = [_check(name, kind, t, figures, pairs) for name, kind, t in bounds]
    verdict = INCONCLUSIVE if pairs == 0 else FAIL if any(not c["passed"] for c in checks) else PASS
    return {"verdict": verdict, "checks": checks, "pairs": pairs}
