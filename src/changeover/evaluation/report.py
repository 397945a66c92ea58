"""A self-contained HTML report of a gate run: every figure is an embedded PNG."""

from __future__ import annotations

import base64
import io
import math
from html import escape

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from changeover.evaluation.gate import GateResult, PredictionBatch, prediction_differences
from changeover.evaluation.metrics import ECE_BINS, ece_bins, encode_classification
from changeover.evaluation.rules import MetricComparison

__all__ = ["render_html"]

_CHAMPION, _CANDIDATE = "#4c72b0", "#dd8452"
_GOOD, _BAD, _UNSURE = "#2a9d4b", "#c0392b", "#7f7f7f"
_MAX_POINTS = 3000

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1000px;color:#222}
.banner{padding:1rem 1.5rem;border-radius:6px;color:#fff;font-size:1.4rem;font-weight:600}
.pass{background:#2a9d4b}.fail{background:#c0392b}
table{border-collapse:collapse;margin:1rem 0;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#2a9d4b;font-weight:600}.ko{color:#c0392b;font-weight:600}
figure{margin:1.5rem 0}figcaption{color:#555;font-size:.9rem}img{max-width:100%}
"""


def render_html(
    result: GateResult, *, model: str, champion_label: str, candidate_label: str
) -> str:
    """The whole report as one HTML document (no external assets)."""
    labels = (_tex_safe(champion_label), _tex_safe(candidate_label))
    figures = [
        _forest(result),
        _latency(result, labels),
        _quality(result, labels),
        _differences(result),
    ]
    title = f"Gate report: {model}"
    vs = (
        f"{escape(candidate_label)} against {escape(champion_label)}"
        if result.has_champion
        else f"{escape(candidate_label)} (no champion: first version)"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1><p>{vs}</p>",
        f'<div class="banner {escape(result.verdict)}">Verdict: {escape(result.verdict.upper())}'
        f" ({sum(r.passed for r in result.rules)} of {len(result.rules)} checks passed)</div>",
        _summary(result),
        *(f"<p class='note'>{escape(note)}</p>" for note in result.notes),
        "<h2>Rules</h2>",
        _rules_table(result),
        "<h2>Metrics</h2>",
        _metrics_table(result, champion_label, candidate_label),
        *_segments_section(result),
        "<h2>Figures</h2>",
    ]
    for fig in figures:
        if fig is not None:
            png, caption = fig
            parts.append(
                f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{png}">'
                f"<figcaption>{escape(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


# --- tables ---------------------------------------------------------------------------------


def _num(x: float | None) -> str:
    return "&ndash;" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _summary(r: GateResult) -> str:
    items = [
        ("task", r.task),
        ("rows", str(r.n_rows)),
        ("queries", None if r.n_queries is None else str(r.n_queries)),
        ("answers", ("a list of item ids per query" if r.lists else "a score per row") if r.task == "ranking" else None),
        ("segments", None if r.segment_column is None else f"{len(r.segments)} values of {r.segment_column}"),
        ("confidence", f"{r.confidence:.0%}"),
        ("bootstrap resamples", str(r.n_boot)),
        ("seed", str(r.seed)),
        ("batches", str(len(r.batch_rows))),
    ]
    cells = "".join(f"<tr><th>{k}</th><td>{escape(v)}</td></tr>" for k, v in items if v)
    return f"<table>{cells}</table>"


def _rules_table(r: GateResult) -> str:
    if not r.rules:
        return "<p>No rules: the gate passes on any figures.</p>"
    rows = []
    for rule in r.rules:
        interval = (
            "" if rule.interval is None else f"[{_num(rule.interval[0])}, {_num(rule.interval[1])}]"
        )
        mark = '<span class="ok">pass</span>' if rule.passed else '<span class="ko">fail</span>'
        rows.append(
            f"<tr><td>{escape(rule.rule)}</td><td class='num'>{_num(rule.figure)}</td>"
            f"<td class='num'>{interval}</td><td>{mark}</td><td>{escape(rule.reason)}</td></tr>"
        )
    head = "<tr><th>rule</th><th>figure</th><th>interval</th><th>result</th><th>reason</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _metrics_table(r: GateResult, champion_label: str, candidate_label: str) -> str:
    head = (
        f"<tr><th>metric</th><th>{escape(champion_label)}</th><th>{escape(candidate_label)}</th>"
        f"<th>difference</th><th>{r.confidence:.0%} interval</th><th>better</th></tr>"
    )
    rows = [
        f"<tr><td>{escape(m.name)}</td><td class='num'>{_num(m.champion)}</td>"
        f"<td class='num'>{_num(m.candidate)}</td><td class='num'>{_num(m.diff)}</td>"
        f"<td class='num'>[{_num(m.ci_low)}, {_num(m.ci_high)}]</td>"
        f"<td>{'higher' if m.higher_is_better else 'lower'}</td></tr>"
        for m in r.metrics.values()
    ]
    return f"<table>{head}{''.join(rows)}</table>"


def _segment_metrics(r: GateResult) -> list[str]:
    """The metrics shown per segment: those the rules name, else a few of the task's."""
    first = next(iter(r.segments.values())).metrics
    named = [rule.metric for rule in r.rules if rule.metric in first]
    if named:
        return list(dict.fromkeys(named))
    return [name for name in first if not name.startswith(("latency", "batch_latency", "throughput"))][:4]


def _segments_section(r: GateResult) -> list[str]:
    if not r.segments:
        return []
    shown = _segment_metrics(r)
    head = "<tr><th>" + escape(str(r.segment_column)) + "</th><th>units</th>" + "".join(
        f"<th>{escape(name)}</th>" for name in shown) + "</tr>"
    rows = []
    for value, seg in r.segments.items():
        cells = []
        for name in shown:
            m = seg.metrics.get(name)
            if m is None:
                cells.append("<td>&ndash;</td>")
            elif m.diff is None:
                cells.append(f"<td class='num'>{_num(m.candidate)}</td>")
            else:
                cells.append(f"<td class='num'>{_num(m.candidate)} vs {_num(m.champion)}: {_num(m.diff)} "
                             f"[{_num(m.ci_low)}, {_num(m.ci_high)}]</td>")
        rows.append(f"<tr><td>{escape(value)}</td><td class='num'>{seg.n_units}</td>{''.join(cells)}</tr>")
    caption = ("Each cell: candidate vs champion, the difference and its "
               f"{r.confidence:.0%} paired bootstrap interval within the segment.")
    return [f"<h2>By segment ({escape(str(r.segment_column))})</h2>", f"<p>{caption}</p>",
            f"<table>{head}{''.join(rows)}</table>"]


# --- figures --------------------------------------------------------------------------------


def _tex_safe(label: str) -> str:
    return label.replace("$", r"\$")


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _margins(r: GateResult) -> dict[str, float]:
    """Per metric, the margin's line on the axis of candidate − champion: past the bad side of
    zero for not_worse_than, past the good side for better_than (better by more than it)."""
    out: dict[str, float] = {}
    for rule in r.rules:
        if rule.kind in ("not_worse_than", "better_than") and rule.threshold is not None:
            comp = r.metrics.get(rule.metric)
            bad_side = -1.0 if comp is None or comp.higher_is_better else 1.0
            out[rule.metric] = rule.threshold * (bad_side if rule.kind == "not_worse_than" else -bad_side)
    return out


def _has_interval(m: MetricComparison) -> bool:
    return all(x is not None and math.isfinite(x) for x in (m.diff, m.ci_low, m.ci_high))


def _forest(r: GateResult) -> tuple[str, str] | None:
    shown = [m for m in r.metrics.values() if _has_interval(m)]
    if not shown:
        return None
    margins = _margins(r)
    height = 0.55 * len(shown) + 0.9
    fig = Figure(figsize=(8, height))  # fixed margins: constrained layout is slow on many rows
    fig.subplots_adjust(left=0.28, right=0.97, top=1 - 0.45 / height, bottom=0.35 / height)
    axes = np.atleast_1d(fig.subplots(len(shown), 1, gridspec_kw={"hspace": 0.9}))
    for ax, m in zip(axes, shown, strict=True):
        assert m.diff is not None and m.ci_low is not None and m.ci_high is not None
        good = m.ci_low > 0 if m.higher_is_better else m.ci_high < 0
        bad = m.ci_high < 0 if m.higher_is_better else m.ci_low > 0
        colour = _GOOD if good else _BAD if bad else _UNSURE
        ax.hlines(0, m.ci_low, m.ci_high, color=colour, linewidth=3)
        ax.plot([m.diff], [0], "o", color=colour)
        ax.axvline(0, color="black", linewidth=0.8)
        if m.name in margins:
            ax.axvline(margins[m.name], color=_BAD, linestyle="--", linewidth=0.8)
        ax.set_yticks([])
        arrow = "↑" if m.higher_is_better else "↓"
        ax.set_ylabel(f"{m.name} {arrow}", rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle("candidate − champion, with intervals (dashed: margin)", fontsize=10)
    caption = (
        f"Metric differences with {r.confidence:.0%} paired bootstrap intervals; green: better, "
        "red: worse, grey: not distinguishable. Each row has its own scale."
    )
    return _png(fig), caption


def _ecdf(ax: Axes, values: np.ndarray, label: str, colour: str) -> None:
    x = np.sort(values)
    ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=label, color=colour)


def _latency(r: GateResult, labels: tuple[str, str]) -> tuple[str, str]:
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for version, label, colour in (
        ("champion", labels[0], _CHAMPION),
        ("candidate", labels[1], _CANDIDATE),
    ):
        if version not in r.batch_seconds:
            continue
        secs = r.batch_seconds[version]
        _ecdf(left, secs / r.batch_rows * 1e3, label, colour)
        right.hist(
            secs * 1e3, bins=min(30, max(5, len(secs))), alpha=0.6, label=label, color=colour
        )
    left.set_xlabel("ms per row (batch time / rows)")
    left.set_ylabel("share of batches")
    left.set_title("per-row latency, ECDF", fontsize=10)
    right.set_xlabel("ms per batch")
    right.set_ylabel("batches")
    right.set_title("batch latency", fontsize=10)
    left.legend(fontsize=8)
    caption = "Latency of both versions on the same batches, called interleaved."
    return _png(fig), caption


def _versions(r: GateResult, labels: tuple[str, str]) -> list[tuple[str, str, str]]:
    out = [("candidate", labels[1], _CANDIDATE)]
    if r.champion_predictions is not None:
        out.insert(0, ("champion", labels[0], _CHAMPION))
    return out


def _prediction(r: GateResult, version: str) -> PredictionBatch | None:
    return r.champion_predictions if version == "champion" else r.candidate_predictions


def _quality(r: GateResult, labels: tuple[str, str]) -> tuple[str, str] | None:
    if r.task == "classification":
        return _calibration(r, labels)
    if r.task == "regression":
        return _residuals(r, labels)
    return _per_query(r, labels)


def _calibration(r: GateResult, labels: tuple[str, str]) -> tuple[str, str] | None:
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    ax = fig.subplots()
    drawn = False
    for version, label, colour in _versions(r, labels):
        p = _prediction(r, version)
        if p is None or p.proba is None:
            continue
        conf, correct = encode_classification(r.y_true, p.values, p.proba, p.classes).confidence()
        bins = ece_bins(conf)
        count = np.bincount(bins, minlength=ECE_BINS)
        used = count > 0
        mean_conf = np.bincount(bins, weights=conf, minlength=ECE_BINS)[used] / count[used]
        accuracy = np.bincount(bins, weights=correct, minlength=ECE_BINS)[used] / count[used]
        ax.plot(mean_conf, accuracy, "o-", label=label, color=colour)
        drawn = True
    if not drawn:
        return None
    ax.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle=":")
    ax.set_xlabel("confidence (max probability), mean in bin")
    ax.set_ylabel("accuracy in bin")
    ax.set_title("calibration", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig), f"Reliability curves over {ECE_BINS} equal-width confidence bins (as ECE)."


def _subsample(n: int) -> np.ndarray:
    if n <= _MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, _MAX_POINTS, replace=False))


def _residuals(r: GateResult, labels: tuple[str, str]) -> tuple[str, str]:
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    y = np.asarray(r.y_true, dtype=np.float64)
    keep = _subsample(len(y))
    for version, label, colour in _versions(r, labels):
        p = _prediction(r, version)
        assert p is not None
        res = y - p.values
        left.scatter(p.values[keep], res[keep], s=6, alpha=0.5, label=label, color=colour)
        right.hist(res, bins=30, alpha=0.6, label=label, color=colour)
    left.axhline(0, color="black", linewidth=0.8)
    left.set_xlabel("prediction")
    left.set_ylabel("residual (target − prediction)")
    right.set_xlabel("residual")
    right.set_ylabel("rows")
    left.legend(fontsize=8)
    return _png(fig), "Residuals of both versions against their predictions, and their spread."


def _per_query(r: GateResult, labels: tuple[str, str]) -> tuple[str, str] | None:
    name = f"ndcg_at_{max(r.ks)}"
    cand = r.per_query.get("candidate", {}).get(name)
    if cand is None:
        return None
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    ax = fig.subplots()
    champ = r.per_query.get("champion", {}).get(name)
    if champ is None:
        ax.hist(cand[~np.isnan(cand)], bins=20, color=_CANDIDATE)
        ax.set_xlabel(f"{name} per query ({labels[1]})")
        ax.set_ylabel("queries")
    else:
        ok = ~np.isnan(cand) & ~np.isnan(champ)
        ax.scatter(champ[ok], cand[ok], s=8, alpha=0.5, color=_CANDIDATE)
        ax.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle=":")
        ax.set_xlabel(f"{name}, {labels[0]}")
        ax.set_ylabel(f"{name}, {labels[1]}")
    ax.set_title(f"{name} per query", fontsize=10)
    return _png(
        fig
    ), f"{name} per query (queries with a relevant item); above the diagonal: better."


def _differences(r: GateResult) -> tuple[str, str] | None:
    if r.champion_predictions is None:
        return None
    diff, what = prediction_differences(r)
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    if diff is None:
        agree = float(np.mean(r.champion_predictions.values == r.candidate_predictions.values))
        ax.bar(["same label", "different label"], [agree, 1 - agree], color=[_GOOD, _BAD])
        ax.set_ylabel("share of rows")
        what = "label agreement between the versions"
    else:
        ax.hist(diff, bins=40, color=_UNSURE)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel(what)
        ax.set_ylabel("rows")
    ax.set_title("how the predictions differ", fontsize=10)
    return _png(fig), f"Distribution of per-row differences: {what}."
