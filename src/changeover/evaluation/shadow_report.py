"""A shadow comparison for people: a self-contained HTML report (every plot an embedded PNG), and
the rows of a summary table (the CLI prints them with Rich).

Both read only `Comparison.figures()` (with ``mirror``, the calls mirrored, compared and dropped
by cause, and ``missing``, why a figure has no value, as `control.shadow_analysis` adds them)
and, for the HTML, `judge_shadow`'s verdict. Every figure without a value is listed with its
reason; a report never leaves one out silently."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["coverage_rows", "missing_rows", "render_shadow_html", "summary_rows"]

_CHAMPION, _SHADOW = "#4c72b0", "#dd8452"
_GOOD, _BAD, _UNSURE = "#2a9d4b", "#c0392b", "#7f7f7f"
_KEY_FIGURE = {"classification": "agreement", "regression": "abs_diff_mean", "ranking": "overlap_at_{k}"}
_LOWER_IS_BETTER = ("abs_diff_mean",)
_PERCENT = ("_rate", "agreement", "overlap_at_", "label_shift", "rel_diff", "_share")

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1000px;color:#222}
.banner{padding:1rem 1.5rem;border-radius:6px;color:#fff;font-size:1.4rem;font-weight:600}
.pass{background:#2a9d4b}.fail{background:#c0392b}.inconclusive,.none{background:#7f7f7f}
table{border-collapse:collapse;margin:1rem 0;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#2a9d4b;font-weight:600}.ko{color:#c0392b;font-weight:600}
figure{margin:1.5rem 0}figcaption{color:#555;font-size:.9rem}img{max-width:100%}
"""


def _value(name: str, x: Any) -> str:
    """One figure as a person reads it: rates in percent, latencies in ms, ratios as ×."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, int) and not isinstance(x, bool):
        return str(x)
    if name.endswith("_ms"):
        return f"{x:.1f} ms"
    if "ratio" in name:
        return f"×{x:.2f}"
    if any(p in name for p in _PERCENT):
        return f"{100 * x:.2f}%"
    return f"{x:.4g}"


def _key_figure(figures: Mapping[str, Any]) -> str | None:
    key = _KEY_FIGURE.get(figures.get("task") or "")
    return None if key is None else key.format(k=figures.get("k") or 10)


def _causes(by: Mapping[str, int]) -> str:
    return ", ".join(f"{cause.replace('_', ' ')} {n}" for cause, n in sorted(by.items(), key=lambda kv: -kv[1]))


def coverage_rows(figures: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Mirrored, compared and dropped (by cause), when the figures carry the mirror's counts."""
    m: Mapping[str, Any] | None = figures.get("mirror")
    if not m:
        return []
    sample = f" at sample {m['sample']:g}" if isinstance(m.get("sample"), int | float) else ""
    counted = "" if m.get("counted_by_mirror") else " (no counts from the gateways yet: pairs only)"
    rows = [("mirrored", f"{m['mirrored']} calls{sample}{counted}"),
            ("compared", f"{m['compared']} ({_value('_share', m.get('compared_share'))} of mirrored)"),
            ("dropped", f"{m['dropped']}" + (f": {_causes(m['dropped_by'])}" if m.get("dropped_by") else ""))]
    return rows


def missing_rows(figures: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(figures, reason) for every figure without a value, those with the same reason together."""
    grouped: dict[str, list[str]] = {}
    for name, reason in (figures.get("missing") or {}).items():
        grouped.setdefault(str(reason), []).append(name)
    return [(", ".join(names), reason) for reason, names in grouped.items()]


def summary_rows(figures: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows: what was mirrored and compared, the figures that matter for the shadow's
    task, its worst segments, then every missing figure with its reason."""
    o: Mapping[str, Any] = figures.get("overall") or {}
    task = figures.get("task")
    rows = [("task", task or "not known yet"), *coverage_rows(figures),
            ("pairs", f"{o.get('pairs', 0)} ({o.get('compared', 0)} answered by both)"),
            ("shadow error rate", f"{_value('candidate_error_rate', o.get('candidate_error_rate'))} "
                                  f"({o.get('shadow_errors', 0)} errors, {o.get('timeouts', 0)} timeouts)")]
    if task == "classification":
        rows += [("agreement", _value("agreement", o.get("agreement"))),
                 ("label shift", _value("label_shift", o.get("label_shift")))]
    if task == "ranking":
        k = figures.get("k") or 10
        rows += [(f"overlap@{k} (item ids)", _value("overlap_at_", o.get(f"overlap_at_{k}"))),
                 ("rank-biased overlap (RBO, p 0.9)", _value("rbo", o.get("rbo"))),
                 ("Kendall τ on the shared items", _value("kendall_tau", o.get("kendall_tau")))]
    if o.get("abs_diff_mean") is not None:
        what = "probability" if task == "classification" else "prediction"
        rows.append((f"{what} difference, mean |Δ|", f"{_value('', o['abs_diff_mean'])} "
                     f"(p90 {_value('', o.get('abs_diff_p90'))}, p99 {_value('', o.get('abs_diff_p99'))})"))
    if o.get("rel_diff_mean") is not None:
        rows.append(("relative difference, mean", _value("rel_diff_mean", o["rel_diff_mean"])))
    if o.get("distribution_distance") is not None:
        rows.append(("score distribution distance", f"{_value('', o['distribution_distance'])} (Wasserstein), "
                                                      f"KS {_value('', o.get('ks_statistic'))}"))
    for q, ratio in (("p50", "latency_ratio"), ("p99", "latency_p99_ratio")):
        rows.append((f"latency {q}, shadow vs champion",
                     f"{_value('_ms', o.get(f'shadow_latency_{q}_ms'))} vs "
                     f"{_value('_ms', o.get(f'champion_latency_{q}_ms'))} ({_value('ratio', o.get(ratio))})"))
    if worst := figures.get("worst_segment"):
        by = worst["by"]
        rows.append(("worst segment", f"{worst['segment']}: {by} {_value(by, worst['value'])} "
                                      f"(overall {_value(by, worst['overall'])}, {worst['pairs']} pairs)"))
    if slow := figures.get("slowest_segment"):
        rows.append(("slowest segment", f"{slow['segment']}: p50 {_value('_ms', slow['shadow_latency_p50_ms'])} "
                                        f"vs {_value('_ms', slow['champion_latency_p50_ms'])} "
                                        f"({_value('ratio', slow['latency_ratio'])})"))
    if o.get("pairs"):  # with no pair every figure is missing for the same reason, said above
        rows += [(f"no {names}", reason) for names, reason in missing_rows(figures)]
    return rows


def render_shadow_html(model: str, champion: int, shadow: int, figures: Mapping[str, Any],
                       verdict: Mapping[str, Any] | None) -> str:
    """The whole report as one HTML document (no external assets)."""
    title = f"Shadow report: {model}"
    outcome = verdict["verdict"] if verdict else "none"
    checks = verdict.get("checks", []) if verdict else []
    banner = "No verdict yet" if not verdict else (
        f"Verdict: {outcome.upper()} ({sum(bool(c['passed']) for c in checks)} of {len(checks)} checks passed)")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>Version {shadow} in shadow of the champion, version {champion}: the same requests, "
        "its answers compared and never served.</p>",
        f'<div class="banner {escape(outcome)}">{escape(banner)}</div>',
    ]
    if verdict and verdict.get("reason"):
        parts.append(f"<p>{escape(str(verdict['reason']))}</p>")
    if checks:
        parts += ["<h2>Requirements</h2>", _checks_table(checks)]
    parts += ["<h2>Summary</h2>", _table(("figure", "value"), summary_rows(figures))]
    mirror = figures.get("mirror") or {}
    if mirror.get("dropped_by"):
        parts += ["<h2>Mirrored calls not compared</h2>",
                  _table(("cause", "calls"), [(c.replace("_", " "), str(n)) for c, n in mirror["dropped_by"].items()])]
    if figures.get("missing"):
        parts += ["<h2>Missing figures</h2>", _table(("figures", "why"), missing_rows(figures), numeric_from=2)]
    segments = figures.get("segments") or {}
    if segments:
        parts += ["<h2>Segments</h2>", _segments_table(figures)]
    overall = figures.get("overall") or {}
    if overall.get("confusion"):
        parts += ["<h2>Who said what</h2>", _confusion_table(overall["confusion"])]
    if overall.get("errors_by_kind"):
        parts += ["<h2>Shadow errors</h2>",
                  _table(("kind", "count"), [(k, str(n)) for k, n in overall["errors_by_kind"].items()])]
    plots = [p for p in (_scores_plot(figures), _segments_plot(figures), _latency_plot(figures)) if p]
    parts.append("<h2>Figures</h2>")
    if not plots:
        parts.append("<p>No pairs yet: nothing to plot.</p>")
    for png, caption in plots:
        parts.append(f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{png}">'
                     f"<figcaption>{escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --- tables ---------------------------------------------------------------------------------


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]], numeric_from: int = 1) -> str:
    top = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td class='num'>{escape(v)}</td>" if i >= numeric_from else f"<td>{escape(v)}</td>"
                         for i, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{top}</tr>{body}</table>"


def _checks_table(checks: list[Mapping[str, Any]]) -> str:
    rows = []
    for c in checks:
        mark = ('<span class="ok">pass</span>' if c["passed"] else '<span class="ko">fail</span>'
                if c["passed"] is False else "<span>–</span>")
        rows.append(f"<tr><td>{escape(c['rule'])}</td><td class='num'>{escape(_value(c['name'], c['figure']))}</td>"
                    f"<td>{mark}</td><td>{escape(c['reason'])}</td></tr>")
    return f"<table><tr><th>rule</th><th>figure</th><th>result</th><th>reason</th></tr>{''.join(rows)}</table>"


def _segments_table(figures: Mapping[str, Any]) -> str:
    key = _key_figure(figures) or "candidate_error_rate"
    head = ("segment", "pairs", key.replace("_", " "), "shadow error rate", "shadow p50", "champion p50", "p50 ratio")
    rows = [
        (name, str(f["pairs"]), _value(key, f.get(key)), _value("candidate_error_rate", f["candidate_error_rate"]),
         _value("_ms", f["shadow_latency_p50_ms"]), _value("_ms", f["champion_latency_p50_ms"]),
         _value("ratio", f["latency_ratio"]))
        for name, f in figures["segments"].items()
    ]
    return _table(head, rows)


def _confusion_table(confusion: Mapping[str, Mapping[str, int]]) -> str:
    shadow_labels = sorted({s for row in confusion.values() for s in row})
    head = "".join(f"<th>shadow: {escape(s)}</th>" for s in shadow_labels)
    body = "".join(
        f"<tr><th>champion: {escape(c)}</th>"
        + "".join(f"<td class='num'>{row.get(s, 0)}</td>" for s in shadow_labels) + "</tr>"
        for c, row in confusion.items()
    )
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


# --- plots ----------------------------------------------------------------------------------


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _tex_safe(text: str) -> str:
    return text.replace("$", r"\$")


def _histogram_plot(hist: Mapping[str, Any] | None, xlabel: str, title: str) -> Figure | None:
    if not hist:
        return None
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.subplots()
    edges = np.asarray(hist["edges"], dtype=np.float64)
    for who, colour in (("champion", _CHAMPION), ("shadow", _SHADOW)):
        ax.stairs(np.asarray(hist[who], dtype=np.float64), edges, label=who, color=colour, linewidth=1.5)
    if hist.get("log"):
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("requests (sample)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _scores_plot(figures: Mapping[str, Any]) -> tuple[str, str] | None:
    task = figures.get("task")
    what = {"classification": "positive-class (or top) probability", "ranking": "top item's score"}.get(
        task or "", "prediction")
    fig = _histogram_plot((figures.get("histograms") or {}).get("scores"), what, "score distributions")
    if fig is None:
        return None
    o = figures.get("overall") or {}
    return _png(fig), (f"Distribution of the {what} of both versions on a sample of the same requests; "
                       f"Wasserstein distance {_value('', o.get('distribution_distance'))}, "
                       f"KS {_value('', o.get('ks_statistic'))}.")


def _latency_plot(figures: Mapping[str, Any]) -> tuple[str, str] | None:
    fig = _histogram_plot((figures.get("histograms") or {}).get("latency_ms"), "ms", "latency")
    if fig is None:
        return None
    return _png(fig), "Latency of both versions on a sample of the mirrored requests (timeouts included)."


def _segments_plot(figures: Mapping[str, Any]) -> tuple[str, str] | None:
    segments: Mapping[str, Mapping[str, Any]] = figures.get("segments") or {}
    key = _key_figure(figures)
    if not segments or key is None:
        return None
    names = list(segments)
    values = [segments[n].get(key) for n in names]
    ratios = [segments[n].get("latency_ratio") for n in names]
    overall = (figures.get("overall") or {}).get(key)
    worst = (figures.get("worst_segment") or {}).get("segment")
    fig = Figure(figsize=(9, 0.35 * len(names) + 1.6), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(names))
    colours = [_BAD if n == worst else _UNSURE for n in names]
    left.barh(y, [np.nan if v is None else v for v in values], color=colours)
    if overall is not None:
        left.axvline(overall, color="black", linestyle="--", linewidth=0.8, label="overall")
        left.legend(fontsize=8)
    left.set_yticks(y, [_tex_safe(f"{n} ({segments[n]['pairs']})") for n in names], fontsize=8)
    left.invert_yaxis()
    arrow = "↓" if key in _LOWER_IS_BETTER else "↑"
    left.set_xlabel(f"{key.replace('_', ' ')} {arrow}")
    right.barh(y, [np.nan if r is None else r for r in ratios], color=_SHADOW)
    right.axvline(1.0, color="black", linewidth=0.8)
    right.set_xlabel("latency p50, shadow / champion")
    fig.suptitle("per segment (pairs in brackets)", fontsize=10)
    caption = (f"{key.replace('_', ' ')} and latency ratio per segment; red: the worst segment, dashed: overall. "
               "A candidate worse for one slice shows here even when the average looks fine.")
    return _png(fig), caption
