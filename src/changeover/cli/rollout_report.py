"""One page for one rollout: the whole road on one self-contained HTML page (style inline, every
chart an inline SVG drawn by matplotlib; nothing fetched from anywhere), and the same in short
for a terminal (Rich).

Pure: it takes what the management API gave — the rollout with its analyses and events
(``GET /api/rollouts/{id}``) and its figures over time (``GET /api/models/{model}/timeseries``)
— and returns HTML or renderables; `rollout report` in cli/rollout.py fetches and writes."""

from __future__ import annotations

import io
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from changeover.cli.rollout_road import Look, Stage, decisions, looks, road, weights
from changeover.evaluation.shadow_report import summary_rows

__all__ = ["render_report", "terminal_summary"]

_CHAMPION, _CANDIDATE = "#4c72b0", "#dd8452"
_COLOURS = {"pass": "#2a9d4b", "passed": "#2a9d4b", "fail": "#c0392b", "failed": "#c0392b",
            "rolled back": "#c0392b", "aborted": "#c0392b", "inconclusive": "#b7950b", "running": "#2e86c1"}
_BANDS = ("#eef3fb", "#fbf1e8")
_EVIDENCE_CHARS = 20_000  # an event's evidence shown in full up to this size

_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:2px solid #eee;padding-bottom:.2rem}
.banner{padding:.8rem 1.2rem;border-radius:6px;color:#fff;font-size:1.3rem;font-weight:600;margin:1rem 0}
.promoted{background:#2a9d4b}.rolled_back,.failed,.aborted{background:#c0392b}.running{background:#2e86c1}
ol.road{display:flex;flex-wrap:wrap;gap:.4rem;list-style:none;padding:0}
ol.road li{border-radius:6px;padding:.45rem .7rem;border:2px solid #ccc;min-width:7.5rem;font-size:.85rem}
ol.road li b{display:block;font-size:.95rem}
li.passed{border-color:#2a9d4b;background:#eaf7ee}li.failed,li.aborted,li.rolled{border-color:#c0392b;background:#fbeaea}
li.inconclusive{border-color:#b7950b;background:#fdf7e3}li.running{border-color:#2e86c1;background:#eaf2fb}
li.not,li.ended{color:#888;border-style:dashed}
table{border-collapse:collapse;margin:.8rem 0;width:100%;font-size:.85rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .45rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ok{color:#2a9d4b;font-weight:600}.ko{color:#c0392b;font-weight:600}.un{color:#b7950b;font-weight:600}
figure.chart{margin:1rem 0}figure.chart svg{width:100%;height:auto}figcaption{color:#555;font-size:.85rem}
details pre{background:#f6f6f6;padding:.5rem;overflow:auto;max-height:24rem;font-size:.75rem;white-space:pre-wrap;
overflow-wrap:anywhere}
table.decisions{table-layout:fixed}table.decisions th:nth-child(1){width:4.5rem}
table.decisions th:nth-child(2){width:9rem}table.decisions th:nth-child(3){width:9rem}
.muted{color:#777}
"""


# --- numbers ----------------------------------------------------------------------------------


def _num(x: Any, digits: int = 4) -> str:
    if x is None or isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return "–"
    return str(x) if isinstance(x, int) else f"{x:.{digits}g}"


def _clock(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "–"


def _took(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _mark(outcome: str | None) -> str:
    cls = {"pass": "ok", "passed": "ok", "fail": "ko", "failed": "ko"}.get(outcome or "", "un")
    return f'<span class="{cls}">{escape(outcome or "–")}</span>'


# --- charts (matplotlib, as inline SVG) ---------------------------------------------------------


def _svg(fig: Figure, chart_id: str) -> str:
    """The figure as an SVG element to put in the page: no XML prologue, no metadata, text kept
    as text, and ids salted by the chart so two charts never share one."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": chart_id}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*", "", text)
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)

    def own(match: re.Match[str]) -> str:  # matplotlib numbers its ids per figure: line2d_1 in every chart
        head, name, tail = match.groups()
        return f"{head}{name if name.startswith(chart_id) else f'{chart_id}-{name}'}{tail}"

    return re.sub(r'(\bid="|url\(#|href="#)([^")]+)([")])', own, text)


class _Clock:
    """The time axis every chart shares: seconds (or minutes, hours) since the rollout began."""

    def __init__(self, start: float, end: float) -> None:
        self.start = start
        span = max(end - start, 1e-9)
        self.unit, self.scale = ("h", 3600.0) if span > 7200 else ("min", 60.0) if span > 180 else ("s", 1.0)
        self.end = self.x(end)

    def x(self, ts: float) -> float:
        return (ts - self.start) / self.scale

    @property
    def label(self) -> str:
        return f"{self.unit} since the rollout began ({_clock(self.start)})"


def _band_label(stage: Stage) -> str:
    if stage.key.startswith("step-") and stage.weight is not None:
        return f"step {stage.key[5:]}: {stage.weight:g}%"
    return {"gate": "gate", "promote": "promote"}.get(stage.key, stage.name)


def _axes(clock: _Clock, stages: Sequence[Stage], ylabel: str, height: float = 2.4) -> tuple[Figure, Axes]:
    """A chart with the rollout's stages shaded behind it, each named at the top (when there is
    room for its name)."""
    fig = Figure(figsize=(10, height))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.84, bottom=0.2)
    ax = fig.add_subplot()
    right = max(clock.end, 1e-6) * 1.02  # the last look sits on the chart, not on its edge
    shown = [s for s in stages if s.started is not None and s.key != "compat"]
    for i, s in enumerate(shown):
        a, b = clock.x(s.started or 0.0), clock.x(s.ended) if s.ended is not None else clock.end
        ax.axvspan(a, max(b, a + 1e-9), color=_BANDS[i % 2], lw=0, zorder=0, gid=f"band-{s.key}")
        if (b - a) / right > 0.04:
            ax.text((a + b) / 2, 1.02, _band_label(s), transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=7, color="#555", clip_on=False)
    ax.set_xlim(0, right)
    ax.set_xlabel(clock.label, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    return fig, ax


def _series_chart(chart_id: str, ts: Mapping[str, Any], key: str, ylabel: str, clock: _Clock,
                  stages: Sequence[Stage], names: Mapping[str, str], scale: float = 1.0) -> str | None:
    """One figure of the time series per version (the champion and the candidate)."""
    step = float(ts.get("step") or 1.0)
    xs = [clock.x(b + step / 2) for b in ts.get("buckets") or []]
    drawn = False
    fig, ax = _axes(clock, stages, ylabel)
    for version, name in names.items():
        values = (ts.get("versions") or {}).get(version, {}).get(key) or []
        points = [(x, v * scale) for x, v in zip(xs, values, strict=False) if v is not None]
        if points:
            colour = _CANDIDATE if name.startswith("candidate") else _CHAMPION
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", ms=3, lw=1.2, color=colour,
                    label=name, gid=f"{chart_id}-v{version}")
            drawn = True
    if not drawn:
        return None
    if key in ("error_rate", "requests"):  # never below zero, and a flat zero is a line at the bottom
        ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 1.0 if scale == 100.0 else 1e-3))
    ax.legend(fontsize=7, loc="upper left")
    return _svg(fig, chart_id)


def _traffic_chart(ts: Mapping[str, Any], rollout: Mapping[str, Any], clock: _Clock, stages: Sequence[Stage],
                   champion: str, candidate: str) -> str | None:
    """The candidate's share of requests answered, per bucket, against the share the policy gave."""
    step = float(ts.get("step") or 1.0)
    versions = ts.get("versions") or {}
    cand = versions.get(candidate, {}).get("requests") or []
    champ = versions.get(champion, {}).get("requests") or []
    points = []
    for b, c, h in zip(ts.get("buckets") or [], cand or [0] * len(champ), champ or [0] * len(cand), strict=False):
        if (c or 0) + (h or 0) > 0:
            points.append((clock.x(b + step / 2), 100.0 * (c or 0) / ((c or 0) + (h or 0))))
    planned = weights(rollout)
    if not points and not planned:
        return None
    fig, ax = _axes(clock, stages, "candidate share, %")
    if planned:
        xs = [clock.x(t) for t, _ in planned] + [clock.end]
        ys = [w for _, w in planned] + [planned[-1][1]]
        ax.step(xs, ys, where="post", color="#555", lw=1.2, ls="--", label="planned (traffic policy)",
                gid="chart-traffic-planned")
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", ms=3, lw=1.2, color=_CANDIDATE,
                label=f"served by v{candidate}", gid="chart-traffic-served")
    ax.set_ylim(-3, 103)
    ax.legend(fontsize=7, loc="upper left")
    return _svg(fig, "chart-traffic")


_CHECK_UNITS = {"error_rate": ("error rate increase, points", 100.0, 0.0),
                "label_accuracy": ("accuracy drop, points", 100.0, 0.0),
                "latency_p99_ms": ("p99 ratio, candidate / champion", 1.0, 1.0)}
_ZOOM = 4.0  # the y axis spans this many tolerances around no harm; longer intervals are cut, with a marker


def _judge_chart(name: str, found: Sequence[Look], clock: _Clock, stages: Sequence[Stage]) -> str | None:
    """Each look's always-valid interval of harm for one check (larger is worse), its estimate,
    and the tolerance over the stage it judged: a fail is an interval wholly above the line, a
    pass wholly below. An interval reaching past the axis (or unbounded) ends in a triangle."""
    label, scale, none = _CHECK_UNITS.get(name, (f"{name}: harm", 1.0, 0.0))
    rows = [(look, c) for look in found for c in look.checks if c.get("name") == name]
    rows = [(look, c) for look, c in rows if c.get("estimate") is not None or c.get("low") is not None]
    if not rows:
        return None
    tolerances = [c["tolerance"] * scale for _, c in rows if isinstance(c.get("tolerance"), int | float)]
    reach = max([abs(t - none) for t in tolerances] or [0.0]) * _ZOOM
    values = [v * scale for _, c in rows for v in (c.get("low"), c.get("high"), c.get("estimate"))
              if isinstance(v, int | float) and math.isfinite(v)]
    if not values and not tolerances:
        return None
    if reach <= 0:
        reach = max([abs(v - none) for v in values] or [1.0]) * 1.1 or 1.0
    bottom = max(min([*values, none - reach * 0.25]), none - reach)
    top = min(max([*values, *tolerances, none + reach * 0.25]), none + reach)
    pad = (top - bottom) * 0.06
    bottom, top = bottom - pad, top + pad
    fig, ax = _axes(clock, stages, label, height=2.6)
    chart_id = f"chart-judge-{name}"
    for i, (look, c) in enumerate(rows):
        x = clock.x(look.at)
        low = c["low"] * scale if c.get("low") is not None else -math.inf
        high = c["high"] * scale if c.get("high") is not None else math.inf
        colour = _COLOURS.get(c.get("outcome", ""), "#7f7f7f")
        width = 3 if look.acted else 1.6
        ax.vlines(x, max(low, bottom), min(high, top), color=colour, lw=width, gid=f"{chart_id}-interval-{i}")
        if high > top:
            ax.plot([x], [top], "^", color=colour, ms=5)
        if low < bottom:
            ax.plot([x], [bottom], "v", color=colour, ms=5)
        if c.get("estimate") is not None and bottom <= c["estimate"] * scale <= top:
            ax.plot([x], [c["estimate"] * scale], "o", color=colour, ms=4 if look.acted else 3)
    drawn = False
    for i, (look, c) in enumerate(rows):  # the tolerance over the stage each look judged
        stage = next((s for s in stages if s.started is not None and s.started <= look.at
                      and (s.ended is None or look.at <= s.ended + 1e-6) and s.key != "compat"), None)
        if stage is None or c.get("tolerance") is None:
            continue
        ax.hlines(c["tolerance"] * scale, clock.x(stage.started or look.at),
                  clock.x(stage.ended) if stage.ended is not None else clock.end, colors="#c0392b",
                  linestyles="--", lw=1, label="_nolegend_" if drawn else "tolerance", gid=f"{chart_id}-tolerance-{i}")
        drawn = True
    ax.axhline(none, color="#999", lw=0.8)
    if drawn:
        ax.legend(fontsize=7, loc="upper left")
    ax.set_ylim(bottom, top)
    return _svg(fig, chart_id)


def _figure(svg: str | None, chart_id: str, caption: str) -> str:
    if svg is None:
        return f'<p class="muted" id="{chart_id}-none">{escape(caption)}: no figures recorded.</p>'
    return f'<figure class="chart" id="{chart_id}">{svg}<figcaption>{escape(caption)}</figcaption></figure>'


# --- sections ---------------------------------------------------------------------------------


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """Cells are HTML already (callers escape what they take from the data)."""
    top = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><tr>{top}</tr>{body}</table>'


def _road_section(stages: Sequence[Stage]) -> str:
    items = []
    for s in stages:
        took = _took(s.ended - s.started) if s.started is not None and s.ended is not None else ""
        when = f"{_clock(s.started)[11:]}" + (f" · {took}" if took and s.key != "compat" else "")
        items.append(f'<li class="{escape(s.state)}" data-stage="{escape(s.key)}"><b>{escape(s.name)}</b>'
                     f"{escape(s.state)}<br><span class='muted'>{escape(when) if s.started else ''}</span></li>")
    return f'<ol class="road">{"".join(items)}</ol>'


def _gate_section(stage: Stage | None) -> str:
    if stage is None:
        return "<p>No offline gate in this rollout's spec.</p>"
    ev = (stage.analysis or {}).get("evidence") or {}
    if not ev:
        return f"<p>The gate {escape(stage.state)}; it left no verdict.</p>"
    if ev.get("error"):
        return f"<p class='ko'>The gate could not run: {escape(str(ev['error']))}</p>"
    confidence = ev.get("confidence")
    intro = (f"<p>v{escape(str(ev.get('candidate')))} against v{escape(str(ev.get('against')))} on "
             f"{escape(str(ev.get('data') or 'the holdout'))}: {escape(str(ev.get('n_rows')))} rows, task "
             f"{escape(str(ev.get('task')))}; paired bootstrap intervals at "
             f"{_num(100 * confidence if isinstance(confidence, int | float) else None, 3)}% "
             f"({escape(str(ev.get('n_boot')))} resamples). Verdict: {_mark(ev.get('verdict'))}</p>")
    rules = []
    for r in ev.get("rules") or []:
        interval = r.get("interval")
        shown = f"[{_num(interval[0])}, {_num(interval[1])}]" if isinstance(interval, list | tuple) and interval else "–"
        rules.append((escape(str(r.get("rule") or r.get("metric"))), f"<span class='num'>{_num(r.get('figure'))}</span>",
                      shown, _mark("pass" if r.get("passed") else "fail"), escape(str(r.get("reason") or ""))))
    metrics = [(escape(name), _num(m.get("champion")), _num(m.get("candidate")), _num(m.get("diff")),
                f"[{_num(m.get('ci_low'))}, {_num(m.get('ci_high'))}]", "higher" if m.get("higher_is_better") else "lower")
               for name, m in (ev.get("metrics") or {}).items()]
    out = [intro]
    out.append(_table(("rule", "figure", "interval", "result", "reason"), rules, "gate-rules") if rules
               else "<p>No rules: the gate passes on any figures.</p>")
    if metrics:
        out += ["<h3>Every metric</h3>",
                _table(("metric", "champion", "candidate", "difference", "interval", "better"), metrics, "gate-metrics")]
    return "".join(out)


def _shadow_section(stage: Stage | None, label: str) -> str:
    if stage is None:
        return f"<p>No {label} in this rollout's spec.</p>"
    ev = (stage.analysis or {}).get("evidence") or {}
    verdict = ev.get("verdict") if isinstance(ev.get("verdict"), Mapping) else None
    if not ev:
        return f"<p>The {label} {escape(stage.state)}; it left no verdict.</p>"
    out = []
    if verdict is not None:
        out.append(f"<p>Verdict: {_mark(verdict.get('verdict'))} — {escape(str(verdict.get('reason') or ''))}</p>")
        checks = [(escape(str(c.get("rule") or c.get("name"))), _num(c.get("figure")),
                   _mark("pass" if c.get("passed") else "fail" if c.get("passed") is False else None),
                   escape(str(c.get("reason") or ""))) for c in verdict.get("checks") or []]
        if checks:
            out.append(_table(("requirement", "figure", "result", "reason"), checks, "shadow-checks"))
    if isinstance(ev.get("figures"), Mapping):
        out += ["<h3>Comparison with the champion</h3>",
                _table(("figure", "value"), [(escape(k), escape(v)) for k, v in summary_rows(ev["figures"])],
                       "shadow-figures")]
        online = ev["figures"].get("online") or {}
        if online.get("metric"):
            out.append(f"<p>Online {escape(online['metric'])} on the same {online.get('scored')} labelled requests: "
                       f"champion {_num(online.get('champion'))}, candidate {_num(online.get('shadow'))} "
                       f"(difference {_num(online.get('difference'))}).</p>")
    elif ev.get("checks"):  # an interleave's judge
        out.append(_checks_table(ev["checks"]))
    return "".join(out)


def _checks_table(checks: Sequence[Mapping[str, Any]]) -> str:
    rows = [(escape(str(c.get("name"))), _mark(c.get("outcome")),
             f"{_num(c.get('estimate'))} in [{_num(c.get('low'))}, {_num(c.get('high'))}]",
             _num(c.get("tolerance")), escape(str(c.get("reason") or ""))) for c in checks]
    return _table(("check", "outcome", "harm, interval", "tolerance", "reason"), rows, "judge-checks")


def _steps_section(stages: Sequence[Stage], found: Sequence[Look]) -> str:
    rows = []
    for s in stages:
        if not s.key.startswith("step-") and s.key != "watch":
            continue
        ev = (s.analysis or {}).get("evidence") or {}
        index = int(s.key[5:]) - 1 if s.key.startswith("step-") else None
        n_looks = sum(1 for look in found if (look.kind == "watch") == (s.key == "watch")
                      and (index is None or look.step == index))
        arms = (f"{_num((ev.get('canary') or {}).get('requests'))} / {_num((ev.get('baseline') or {}).get('requests'))}"
                if ev else "–")
        reason = escape(str((s.decision or {}).get("message") or ""))
        rows.append((f"<b>{escape(s.name)}</b>", _mark(s.state), escape(_clock(s.started)[11:] if s.started else "–"),
                     escape(_took(s.ended - s.started) if s.started and s.ended else "–"), arms, str(n_looks), reason))
    if not rows:
        return ""
    return _table(("stage", "state", "began", "took", "requests (candidate / champion)", "looks", "decision"),
                  rows, "canary-steps")


def _decisions_section(events: Sequence[Mapping[str, Any]], start: float) -> str:
    rows = []
    for e in events:
        evidence = json.dumps(e.get("evidence"), indent=1, default=str, sort_keys=True)
        if len(evidence) > _EVIDENCE_CHARS:
            evidence = evidence[:_EVIDENCE_CHARS] + f"\n… ({len(evidence) - _EVIDENCE_CHARS} more characters)"
        rows.append(f'<tr class="event" data-kind="{escape(e["kind"])}"><td class="num">+{e["at"] - start:.1f} s</td>'
                    f"<td>{escape(e['kind'])}</td><td>{escape(str(e.get('actor') or ''))}</td>"
                    f"<td>{escape(str(e.get('message') or ''))}<details><summary>evidence</summary>"
                    f"<pre>{escape(evidence)}</pre></details></td></tr>")
    head = "<tr><th>when</th><th>kind</th><th>who</th><th>what and why</th></tr>"
    return f'<table class="decisions">{head}{"".join(rows)}</table>'


# --- the page ---------------------------------------------------------------------------------


def render_report(rollout: Mapping[str, Any], timeseries: Mapping[str, Any] | None = None) -> str:
    """The whole road of one rollout as one HTML document that needs nothing else."""
    status = rollout.get("status") or {}
    model, rid = str(rollout["model"]), rollout["id"]
    champion, candidate = str(status.get("champion_version")), str(status.get("candidate_version"))
    stages = road(rollout)
    found = looks(rollout)
    events = sorted(rollout.get("events") or [], key=lambda e: (e["at"], e.get("id", 0)))
    start = float(rollout.get("created_at") or (events[0]["at"] if events else 0.0))
    end = float(rollout.get("updated_at") or start) if not rollout.get("active") else max(
        [start, *(e["at"] for e in events)])
    clock = _Clock(start, max(end, start + 1.0))
    by_key = {s.key: s for s in stages}
    phase = str(status.get("phase") or "pending")
    ts = timeseries or {}
    names = {champion: f"champion v{champion}", candidate: f"candidate v{candidate}"}
    online = ts.get("online_metric")
    judged = sorted({str(c.get("name")) for look in found for c in look.checks
                     if c.get("name") != "prediction_distribution"})
    charts = [
        _figure(_traffic_chart(ts, rollout, clock, stages, champion, candidate), "chart-traffic",
                "Traffic: the candidate's share of answered requests per bucket, and the share the policy gave it"),
        _figure(_series_chart("chart-errors", ts, "error_rate", "error rate, %", clock, stages, names, 100.0),
                "chart-errors", "Errors: the share of requests each version failed"),
        _figure(_series_chart("chart-latency", ts, "latency_p99_ms", "p99 latency, ms", clock, stages, names),
                "chart-latency", "Latency: each version's p99 per bucket"),
        _figure(_series_chart("chart-online", ts, "online", f"online {online or 'metric'}", clock, stages, names)
                if online else None, "chart-online",
                f"Online {online or 'metric'}: each version's answers scored by the feedback that came back"),
    ]
    judge_charts = [_figure(_judge_chart(name, found, clock, stages), f"chart-judge-{name}",
                            f"The judge on {name}: every look's always-valid interval of harm (thick: a verdict "
                            "acted on), its estimate, and the tolerance (dashed)") for name in judged]
    title = f"{model}: rollout {rid} of v{candidate} against v{champion}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='muted'>began {_clock(start)}; "
        + (f"ended {_clock(end)} after {_took(end - start)}" if not rollout.get("active") else "still running")
        + "</p>",
        f'<div class="banner {escape(phase if phase in ("promoted", "rolled_back", "failed", "aborted") else "running")}"'
        f' id="outcome">{escape(phase.replace("_", " "))} — {escape(str(status.get("message") or ""))}</div>',
        '<section id="road"><h2>The road</h2>', _road_section(stages), "</section>",
        '<section id="compat"><h2>Compatibility</h2>',
        f"<p>{escape(str((by_key['compat'].decision or {}).get('message') or 'no compatibility verdict'))}</p></section>",
        '<section id="gate"><h2>Offline gate</h2>', _gate_section(by_key.get("gate")), "</section>",
        '<section id="shadow"><h2>Shadow</h2>', _shadow_section(by_key.get("shadow"), "shadow"), "</section>",
    ]
    if "interleave" in by_key:
        parts += ['<section id="interleave"><h2>Interleave</h2>', _shadow_section(by_key["interleave"], "interleave"),
                  "</section>"]
    parts += ['<section id="canary"><h2>Canary steps and watch</h2>', _steps_section(stages, found), *charts,
              "<h3>The judge's intervals</h3>", *judge_charts]
    last = next((look for look in reversed(found) if look.acted), found[-1] if found else None)
    if last is not None:
        parts += [f"<h3>The last verdict's checks ({escape(last.kind)}, {escape(last.outcome)})</h3>",
                  _checks_table(last.checks)]
    parts += ["</section>", '<section id="decisions"><h2>Every decision, with its evidence</h2>',
              _decisions_section(events, start), "</section>", "</body></html>"]
    return "\n".join(parts)


# --- the terminal -----------------------------------------------------------------------------


def terminal_summary(rollout: Mapping[str, Any]) -> RenderableType:
    """The road in short: the outcome, each stage with its state and the decision that ended it,
    the gate's rules with their intervals, and the last verdict's checks."""
    status = rollout.get("status") or {}
    stages = road(rollout)
    colour = {"promoted": "green", "rolled_back": "red", "failed": "red", "aborted": "red"}.get(
        str(status.get("phase")), "cyan")
    head = Text.assemble((f"{rollout['model']} rollout {rollout['id']}: v{status.get('candidate_version')} against "
                          f"v{status.get('champion_version')} — ", "bold"),
                         (str(status.get("phase")), f"bold {colour}"), f" {status.get('message') or ''}")
    road_table = Table("stage", "state", "began", "took", "decision", title="the road", expand=True)
    for s in stages:
        style = {"passed": "green", "failed": "red", "rolled back": "red", "aborted": "red",
                 "inconclusive": "yellow", "running": "cyan"}.get(s.state, "dim")
        road_table.add_row(s.name, f"[{style}]{s.state}", _clock(s.started)[11:] if s.started else "-",
                           _took(s.ended - s.started) if s.started and s.ended else "-",
                           Text(str((s.decision or {}).get("message") or "")))
    parts: list[RenderableType] = [head, road_table]
    gate = next((s for s in stages if s.key == "gate"), None)
    rules = ((gate.analysis or {}).get("evidence") or {}).get("rules") or [] if gate else []
    if rules:
        table = Table("rule", "figure", "interval", "result", title="offline gate", expand=True)
        for r in rules:
            interval = r.get("interval")
            table.add_row(str(r.get("rule")), _num(r.get("figure")),
                          f"[{_num(interval[0])}, {_num(interval[1])}]" if interval else "-",
                          "[green]pass" if r.get("passed") else "[red]fail")
        parts.append(table)
    found = looks(rollout)
    last = next((look for look in reversed(found) if look.acted), None)
    if last is not None:
        table = Table("check", "outcome", "harm in interval", "tolerance", title=f"last verdict ({last.kind})",
                      expand=True)
        for c in last.checks:
            table.add_row(str(c.get("name")), str(c.get("outcome")),
                          f"{_num(c.get('estimate'))} in [{_num(c.get('low'))}, {_num(c.get('high'))}]",
                          _num(c.get("tolerance")))
        parts.append(table)
    chosen = decisions(rollout.get("events") or [])
    parts.append(Text(f"{len(chosen)} decisions in the audit log; `--html FILE` draws the whole road", style="dim"))
    return Group(*parts)
