"""CLI: `compat`, `validate` and `shadow start|stop|report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from changeover.cli.client import ApiError
from changeover.cli.common import (
    LONG_CALL_S,
    JsonOpt,
    ModelName,
    client,
    console,
    err,
    fail,
    print_json,
    split_ref,
    working,
    wrapped,
)

shadow_app = typer.Typer(no_args_is_help=True, help="Shadows: a copy of live traffic, compared request by request.")


def versioned_ref(ref: str) -> tuple[str, str]:
    """NAME@VERSION, or exit 2 saying so."""
    name, version = split_ref(ref)
    if not version:
        err.print(f"[red]error[/red]: expected NAME@VERSION, got {ref!r}")
        raise typer.Exit(2)
    return name, version


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def compat(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    against: Annotated[str, typer.Option(help="Version or alias to compare with")] = "champion",
    limit: Annotated[int, typer.Option(help="Recorded requests to replay, newest first")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Can the candidate read today's production requests? Signatures, then a replay of recorded traffic."""
    name, version = versioned_ref(ref)
    try:
        with working(f"compatibility of {name} v{version} against {against}: signatures, then a replay of up to "
                     f"{limit} recorded requests…"):
            result = client(LONG_CALL_S).request("POST", f"/api/models/{name}/versions/{version}/compat",
                                      params={"against": against, "limit": limit})
    except ApiError as exc:
        fail(exc)
        return
    if as_json:
        print_json(result)
    else:
        print_compat(name, result)
    raise typer.Exit(0 if result["verdict"] == "pass" else 1)


def print_compat(name: str, result: dict[str, Any], *, to: Any = None) -> None:
    """The compatibility step's evidence: signature changes, the replay, the verdict and its causes."""
    out = to or console
    table = Table("change", "tensor", wrapped("detail"), "breaking", title=f"{name} v{result['candidate']} against v{result['against']}")
    for c in result["changes"]:
        table.add_row(c["kind"], c["tensor"], c["detail"], "[red]yes" if c["breaking"] else "no")
    if result["changes"]:
        out.print(table)
    r = result["replay"]
    if r.get("note"):
        out.print(r["note"])
    else:
        out.print(f"replayed {r['requests']} recorded requests: {r['errors']} errors, "
                  f"{r['invalid_outputs']} invalid outputs")
    for example in r.get("error_examples", [])[:3]:
        out.print(f"  request {example['request_id']}: {example['error']}")
    for example in r.get("invalid_examples", [])[:3]:
        out.print(f"  request {example['request_id']}: {example['problem']}")
    for output, d in r["differences"].items():
        out.print(f"  {output}: agreement with production {_fmt(d['agreement'])}, "
                  f"mean |diff| {_fmt(d['mean_abs_diff'])}, max |diff| {_fmt(d['max_abs_diff'])}")
    colour = "green" if result["verdict"] == "pass" else "red"
    out.print(f"verdict: [bold {colour}]{result['verdict']}[/]")
    for cause in result["causes"]:
        out.print(f"  [red]✗[/red] {cause}")


def validate(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    data: Annotated[Path, typer.Option("--data", help="Held-out data: .csv or .parquet")],
    task: Annotated[str, typer.Option("--task", help="classification | regression | ranking")],
    target: Annotated[str, typer.Option(help="The label column")] = "label",
    against: Annotated[str, typer.Option(help="champion or a version")] = "champion",
    policy: Annotated[Path | None, typer.Option(help="YAML with gate.require rules")] = None,
    query_column: Annotated[str | None, typer.Option(help="Ranking: the query id column")] = None,
    k: Annotated[list[int] | None, typer.Option("--k", help="Ranking cut-offs, repeatable")] = None,
    item_column: Annotated[str | None, typer.Option(
        help="Ranking, a ranker that answers lists, (query, item, relevance) rows: the item id column "
             "(default item_id or item)")] = None,
    segment: Annotated[str | None, typer.Option(help="A column to break every metric down by")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The offline gate: candidate against champion on the same data. Exit 0 pass, 1 fail, 2 bad input."""
    name, version = versioned_ref(ref)
    if not data.is_file():
        err.print(f"[red]error[/red]: --data: {data} is not a file")
        raise typer.Exit(2)
    if task not in ("classification", "regression", "ranking"):
        err.print(f"[red]error[/red]: --task must be classification, regression or ranking, got {task!r}")
        raise typer.Exit(2)
    params: dict[str, Any] = {"task": task, "target": target, "against": against, "filename": data.name,
                              "report": report is not None}
    if policy is not None:
        if not policy.is_file():
            err.print(f"[red]error[/red]: --policy: {policy} is not a file")
            raise typer.Exit(2)
        params["policy"] = policy.read_text()
    if query_column:
        params["query_column"] = query_column
    if k:
        params["ks"] = k
    if item_column:
        params["item_column"] = item_column
    if segment:
        params["segment"] = segment
    try:
        with working(f"gating {name} v{version} on {data.name}: both versions predict every row, then the "
                     "paired bootstrap…"):
            out = client(LONG_CALL_S).request("POST", f"/api/models/{name}/versions/{version}/validate", params=params,
                                   content=data.read_bytes())
    except ApiError as exc:
        fail(exc)
        return
    result = out["result"]
    if report is not None and out.get("html"):
        report.write_text(out["html"])
    if as_json:
        print_json(result)
    else:
        print_verdict(result)
        if report is not None:
            console.print(f"report: {report.resolve()}")
    raise typer.Exit(0 if result["verdict"] == "pass" else 1)


def print_verdict(result: dict[str, Any]) -> None:
    against = f"v{result['against']}" if result.get("against") else "no champion"
    table = Table("metric", f"v{result['candidate']}", against, "difference", "interval", title=f"{result['model']}: offline gate on {result['n_rows']} rows")
    for name, m in result["metrics"].items():
        interval = f"[{_fmt(m.get('ci_low'))}, {_fmt(m.get('ci_high'))}]" if m.get("ci_low") is not None else "-"
        table.add_row(name, _fmt(m.get("candidate")), _fmt(m.get("champion")), _fmt(m.get("diff")), interval)
    console.print(table)
    rules = Table(wrapped("rule"), "figure", "interval", "passed", wrapped("why"))
    for r in result["rules"]:
        interval = r.get("interval")
        rules.add_row(r["rule"], _fmt(r.get("figure")),
                      f"[{_fmt(interval[0])}, {_fmt(interval[1])}]" if interval else "-",
                      "[green]yes" if r["passed"] else "[red]no", r["reason"])
    if result["rules"]:
        console.print(rules)
    if result.get("segments"):
        print_segments(result)
    for note in result.get("notes") or ():
        console.print(f"note: {note}")
    colour = "green" if result["verdict"] == "pass" else "red"
    console.print(f"verdict: [bold {colour}]{result['verdict']}[/]")


def print_segments(result: dict[str, Any]) -> None:
    """Per segment, candidate − champion and its interval for the metrics the rules name (else a few)."""
    segments = result["segments"]
    first = next(iter(segments.values()))["metrics"]
    named = [r["metric"] for r in result["rules"] if r["metric"] in first]
    shown = list(dict.fromkeys(named)) or [m for m in first if not m.startswith(("latency", "batch", "through"))][:3]
    table = Table(result["segment_column"], "units", *shown, title="by segment: candidate − champion [interval]")
    for value, seg in segments.items():
        cells = []
        for name in shown:
            m = seg["metrics"].get(name) or {}
            if m.get("diff") is None:
                cells.append(_fmt(m.get("candidate")))
            else:
                cells.append(f"{_fmt(m['diff'])} [{_fmt(m.get('ci_low'))}, {_fmt(m.get('ci_high'))}]")
        table.add_row(value, str(seg["n_units"]), *cells)
    console.print(table)


@shadow_app.command("start")
def shadow_start(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    sample: Annotated[float, typer.Option(help="Share of traffic mirrored, 0-1")] = 1.0,
    requests: Annotated[int | None, typer.Option(help="Stop after this many pairs")] = None,
    for_: Annotated[str | None, typer.Option("--for", help="Stop after this long: 30s, 10m, 1h")] = None,
    segment: Annotated[str | None, typer.Option(help="header:NAME or input:NAME to break figures down by")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds before a shadow call is abandoned")] = 1.0,
) -> None:
    """Mirror live traffic to a version; its answers never reach a user."""
    from changeover.domain.spec import parse_duration

    name, version = versioned_ref(ref)
    try:
        duration = parse_duration(for_) if for_ else None
    except (ValueError, TypeError) as exc:
        err.print(f"[red]error[/red]: --for: {exc}")
        raise typer.Exit(2) from None
    try:
        out = client().request("POST", f"/api/models/{name}/shadows", json={
            "version": version, "sample": sample, "requests": requests, "duration_s": duration,
            "segment": segment, "timeout_s": timeout})
    except ApiError as exc:
        fail(exc)
        return
    console.print(f"shadowing {name} v{out['version']} at sample {out['sample']:g}")


@shadow_app.command("stop")
def shadow_stop(name: ModelName, version: Annotated[str | None, typer.Option(help="Only this version")] = None) -> None:
    """Stop a model's shadows (their verdicts are judged and logged)."""
    try:
        out = client().request("DELETE", f"/api/models/{name}/shadows", params={"version": version} if version else {})
    except ApiError as exc:
        fail(exc)
        return
    console.print(f"stopped: {', '.join(f'v{v}' for v in out['stopped']) or 'nothing was running'}")


@shadow_app.command("report")
def shadow_report(
    name: str,
    version: Annotated[str | None, typer.Option(help="Which shadow (default: the latest)")] = None,
    html: Annotated[Path | None, typer.Option(help="Write an HTML report here")] = None,
    as_json: JsonOpt = False,
) -> None:
    """How the shadow's answers compare with the champion's, overall and per segment."""
    params: dict[str, Any] = {"html": html is not None}
    if version:
        params["version"] = version
    try:
        out = client().get(f"/api/models/{name}/shadows/report", **params)
    except ApiError as exc:
        fail(exc)
        return
    if html is not None and out.get("html"):
        html.write_text(out.pop("html"))
    if as_json:
        out.pop("html", None)
        print_json(out)
        return
    print_shadow(out)
    if html is not None:
        console.print(f"report: {html.resolve()}")


def print_shadow(out: dict[str, Any]) -> None:
    from changeover.evaluation.shadow_report import summary_rows

    figures = out["figures"]
    table = Table("figure", "value", title=f"{out['model']}: shadow v{out['shadow']['version']}")
    for key, value in summary_rows(figures):
        table.add_row(key, value)
    online = figures.get("online") or {}
    if online.get("metric"):
        table.add_row(f"online {online['metric']} (champion / shadow, {online['labelled']} labels)",
                      f"{_fmt(online['champion'])} / {_fmt(online['shadow'])}")
    console.print(table)
    verdict = out.get("verdict")
    if verdict:
        colour = "green" if verdict["verdict"] == "pass" else "red"
        console.print(f"verdict: [bold {colour}]{verdict['verdict']}[/]")
        for c in verdict.get("checks", []):
            console.print(f"  {'[green]✓' if c['passed'] else '[red]✗'}[/] {c['reason']}")


def drift(
    name: str,
    version: Annotated[str | None, typer.Option(help="Version or alias (default: champion)")] = None,
    window: Annotated[str | None, typer.Option(help="How far back: 15m, 1h, 1d")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Drift of live inputs and predictions against the version's reference profile."""
    params: dict[str, Any] = {}
    if version:
        params["version"] = version
    if window:
        params["window"] = window
    try:
        out = client().get(f"/api/models/{name}/drift", **params)
    except ApiError as exc:
        fail(exc)
        return
    if as_json:
        print_json(out)
        return
    if not out.get("available", True):
        console.print(f"{name}: no drift figures — {out.get('reason')}")
        return
    table = Table("input", "test", "statistic", "p-value / threshold", "drifted",
                  title=f"{name} v{out.get('version')}: drift over {out.get('n_requests', '?')} recorded requests")
    for c in out.get("columns") or []:
        limit = c.get("p_value") if c.get("p_value") is not None else c.get("threshold")
        table.add_row(str(c.get("feature") or c.get("name")), str(c.get("test")), _fmt(c.get("statistic")),
                      _fmt(limit), "[red]yes" if c.get("drifted") else "no")
    console.print(table)
    console.print("drift: " + ("[red]yes[/]" if out.get("drifted_any") else "[green]no[/]")
                  + (f" — {out['reason']}" if out.get("reason") else ""))
