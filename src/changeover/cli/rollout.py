"""CLI: `apply SPEC.yaml`, `rollout start|status|pause|resume|abort|promote`, `rollback`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.live import Live
from rich.table import Table

from changeover.cli.client import ApiError, Client
from changeover.cli.common import (
    LONG_CALL_S,
    JsonOpt,
    ModelName,
    client,
    console,
    err,
    fail,
    print_json,
    progress,
    when,
    working,
    wrapped,
)
from changeover.cli.evaluation import print_compat

rollout_app = typer.Typer(no_args_is_help=True,
                          help="Progressive rollouts: compatibility, gate, shadow, canary steps, promotion, watch.")

SUCCESS = {"promoted"}
ENDED = {"promoted", "rolled_back", "aborted", "failed"}


def load_spec_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        err.print(f"[red]error[/red]: {path}: {exc}")
        raise typer.Exit(2) from None
    if not isinstance(data, dict):
        err.print(f"[red]error[/red]: {path}: expected a mapping at the top level")
        raise typer.Exit(2)
    gate = data.get("gate")
    if isinstance(gate, dict) and isinstance(gate.get("data"), str):
        data_path = Path(gate["data"])
        if not data_path.is_absolute():  # relative to the spec file, as a person reads it
            gate["data"] = str((path.parent / data_path).resolve())
        if not Path(gate["data"]).is_file():  # a spec error now, not a failed rollout after the compat step
            relative = "" if data_path.is_absolute() else f" ({gate['data']!r} read from the spec's folder)"
            err.print("[red]invalid rollout spec[/red]:")
            err.print(f"  gate.data: no such file: {str(data_path)!r}{relative}", markup=False, soft_wrap=True)
            raise typer.Exit(2)
    return data


def start_rollout(c: Client, spec: dict[str, Any]) -> dict[str, Any]:
    """Start a rollout, or exit: 2 for a spec that is wrong (or cannot be judged for this
    model), 1 when the candidate fails the compatibility step (with its evidence)."""
    try:
        spec = c.api.upload_gate_data(spec)  # a server reads data only from its own folders: the file goes first
        with working(f"starting the rollout of {spec.get('model')} {spec.get('candidate')}: checking the spec and "
                     "replaying recorded requests through the candidate…"):
            created: dict[str, Any] = c.request("POST", "/api/rollouts", json={"spec": spec})
    except ApiError as exc:
        if exc.status == 422 and isinstance(exc.body, dict) and exc.body.get("problems"):
            err.print("[red]invalid rollout spec[/red]:")
            for p in exc.body["problems"]:
                err.print(f"  {p['field']}: {p['reason']}")
            raise typer.Exit(2) from None
        if exc.status == 409 and isinstance(exc.body, dict) and isinstance(exc.body.get("compat"), dict):
            compat = exc.body["compat"]
            err.print(f"[red]refused[/red]: {compat['model']} v{compat['candidate']} failed the compatibility "
                      f"step against v{compat['against']}; no rollout started, no traffic moved")
            print_compat(compat["model"], compat, to=err)
            raise typer.Exit(1) from None
        fail(exc)
        raise
    compat = created.get("compat")
    if isinstance(compat, dict):
        replayed = compat["replay"]
        what = replayed.get("note") or (f"{replayed['requests']} recorded requests replayed, "
                                        f"{replayed['errors']} errors")
        changes = len(compat["changes"])
        console.print(f"compatibility: [green]pass[/green] — {changes} signature change{'s' if changes != 1 else ''}"
                      f", none breaking; {what}")
    for line in created.get("plan") or []:
        console.print(f"plan: {line}")
    return created


def view(r: dict[str, Any]) -> Table:
    """The live view: phase, step, weight, and the latest verdicts with their evidence."""
    s = r["status"]
    table = Table("phase", "step", "weight", wrapped("message"),
                  title=f"{r['model']} rollout {r['id']}: v{s.get('candidate_version')} against v{s.get('champion_version')}")
    steps = (r["spec"].get("canary") or {}).get("steps") or []
    step = f"{s['step_index'] + 1}/{len(steps)}" if s.get("step_index", -1) >= 0 and steps else "-"
    table.add_row(s["phase"], step, f"{s.get('weight', 0):g}%", s.get("message", ""))
    verdicts = Table("when", "kind", "outcome", wrapped("evidence"), title="verdicts", expand=True)
    for a in r.get("analyses", [])[-8:]:
        colour = {"pass": "green", "fail": "red"}.get(a["outcome"], "yellow")
        verdicts.add_row(when(a["at"]), a["kind"], f"[{colour}]{a['outcome']}", evidence_text(a))
    outer = Table.grid()
    outer.add_row(table)
    if r.get("analyses"):
        outer.add_row(verdicts)
    return outer


def evidence_text(a: dict[str, Any]) -> str:
    """An analysis's evidence as one text: the samples, then every check's reason, whole."""
    ev = a["evidence"] or {}
    nested: dict[str, Any] = ev["verdict"] if isinstance(ev.get("verdict"), dict) else {}
    checks = ev.get("checks") or nested.get("checks") or ev.get("rules") or []
    if ev.get("error"):
        checks = [{"reason": ev["error"]}]
    samples = ""
    if "canary" in ev and isinstance(ev["canary"], dict):
        samples = f"n={ev['canary'].get('requests')} vs {(ev.get('baseline') or {}).get('requests')}; "
    return samples + "; ".join(str(c.get("reason", "")) for c in checks)


def progress_lines(r: dict[str, Any], seen: int, last: str) -> tuple[list[str], int, str]:
    """What changed since the last look, as lines: the phase, step and weight when they moved,
    then each new verdict with its evidence. Returns the lines, the verdicts seen, the state."""
    s = r["status"]
    steps = (r["spec"].get("canary") or {}).get("steps") or []
    step = f", step {s['step_index'] + 1}/{len(steps)}" if s.get("step_index", -1) >= 0 and steps else ""
    state = f"{r['model']} rollout {r['id']}: {s['phase']}{step}, candidate at {s.get('weight', 0):g}%"
    state += f" — {s['message']}" if s.get("message") else ""
    lines = [state] if state != last else []
    analyses = r.get("analyses") or []
    lines += [f"{a['kind']} verdict: {a['outcome']} — {evidence_text(a)}" for a in analyses[seen:]]
    return lines, len(analyses), state


def follow(c: Client, rid: int, timeout: float | None = None, *, lines_to: Any = None) -> dict[str, Any]:
    """Watch a rollout until it ends (or ``timeout``): a live view on a terminal; otherwise a
    progress line whenever something changes (on ``lines_to``, stderr by default), then the view once."""
    deadline = time.monotonic() + timeout if timeout else None
    r = c.get(f"/api/rollouts/{rid}")
    if not console.is_terminal:
        seen, last = 0, ""
        while True:
            lines, seen, last = progress_lines(r, seen, last)
            for line in lines:
                if lines_to is None:
                    progress(line)
                else:
                    lines_to.print(line, markup=False, highlight=False, soft_wrap=True)
            if r["status"]["phase"] in ENDED or (deadline and time.monotonic() > deadline):
                break
            time.sleep(0.5)
            r = c.get(f"/api/rollouts/{rid}")
        console.print(view(r))
        return r
    with Live(view(r), console=console, refresh_per_second=4) as live:
        while r["status"]["phase"] not in ENDED:
            if deadline and time.monotonic() > deadline:
                break
            time.sleep(0.5)
            r = c.get(f"/api/rollouts/{rid}")
            live.update(view(r))
    return r


def finish(r: dict[str, Any]) -> None:
    phase = r["status"]["phase"]
    colour = "green" if phase in SUCCESS else "red"
    console.print(f"[bold {colour}]{r['model']}: {phase}[/] — {r['status'].get('message', '')}")
    if phase not in SUCCESS:
        raise typer.Exit(1)


def apply(
    spec_file: Annotated[Path, typer.Argument(exists=True, help="Rollout spec (YAML)")],
    follow_: Annotated[bool, typer.Option("--follow/--no-follow", help="Watch it live until it ends")] = True,
    timeout: Annotated[float | None, typer.Option(help="Stop following after this many seconds")] = None,
) -> None:
    """Take a candidate along the whole road: compatibility → gate → shadow → canary steps →
    promotion → watch. Exit 0 when promoted, 1 when refused by the compatibility step, rolled
    back, aborted or failed, 2 for a wrong spec (or one that cannot be judged for this model)."""
    c = client(LONG_CALL_S)  # its start replays recorded requests through the candidate
    created = start_rollout(c, load_spec_file(spec_file))
    console.print(f"rollout {created['id']}: {created['model']} v{created['candidate']} against v{created['champion']}")
    if not follow_:
        return
    finish(follow(c, created["id"], timeout))


@rollout_app.command("start")
def rollout_start(spec_file: Annotated[Path, typer.Argument(exists=True, help="Rollout spec (YAML)")]) -> None:
    """Start a rollout and return (see `rollout status`)."""
    created = start_rollout(client(LONG_CALL_S), load_spec_file(spec_file))
    console.print(f"rollout {created['id']} started: {created['model']} v{created['candidate']}")


@rollout_app.command("status")
def rollout_status(name: ModelName, as_json: JsonOpt = False) -> None:
    """The latest rollout of a model: phase, weight, verdicts with their evidence."""
    try:
        rows = client().get("/api/rollouts", model=name, limit=1)
    except ApiError as exc:
        fail(exc)
        return
    if not rows:
        err.print(f"{name} has no rollout")
        raise typer.Exit(1)
    if as_json:
        print_json(rows[0])
        return
    console.print(view(rows[0]))


def _command(name: str, command: str) -> None:
    try:
        out = client().request("POST", f"/api/models/{name}/rollout/{command}")
    except ApiError as exc:
        fail(exc)
        return
    console.print(f"{name}: {command} sent" + (f" to rollout {out['rollout']}" if out.get("rollout") else ""))


@rollout_app.command("pause")
def rollout_pause(name: ModelName) -> None:
    """Hold the rollout where it is."""
    _command(name, "pause")


@rollout_app.command("resume")
def rollout_resume(name: ModelName) -> None:
    """Go on from a pause (the bake restarts)."""
    _command(name, "resume")


@rollout_app.command("abort")
def rollout_abort(name: ModelName) -> None:
    """Stop the rollout and send all traffic back to the champion."""
    _command(name, "abort")


@rollout_app.command("promote")
def rollout_promote(name: ModelName) -> None:
    """Skip the remaining steps and promote the candidate now."""
    _command(name, "promote")


@rollout_app.command("report")
def rollout_report(
    name: ModelName,
    rollout_id: Annotated[int | None, typer.Option("--id", help="Which rollout (default: the latest)")] = None,
    html: Annotated[Path | None, typer.Option(help="Write the whole road as one self-contained HTML page here")] = None,
) -> None:
    """One rollout's whole road: gate, shadow, each canary step over time with the judge's
    intervals, every decision with its evidence (a summary here; the page with --html)."""
    from changeover.cli.rollout_report import render_report, terminal_summary

    c = client()
    try:
        found = c.rollout(name, rollout_id)
        if found is None:
            err.print(f"{name} has no rollout")
            raise typer.Exit(1)
        series = None
        if html is not None:  # a little either side, so the first and last windows are in
            end = found["updated_at"] if not found["active"] else time.time()
            series = c.timeseries(name, since=found["created_at"] - 1.0, until=end + 1.0)
    except ApiError as exc:
        fail(exc)
        return
    console.print(terminal_summary(found))
    if html is not None:
        html.write_text(render_report(found, series), encoding="utf-8")
        console.print(f"report: {html.resolve()}")


def rollback(name: ModelName, to: Annotated[int | None, typer.Option(
        "--to", help="With no rollout running: the version to make champion (default: previous, unless it "
                     "failed its last rollout or gate)")] = None) -> None:
    """Instant rollback: the running rollout's champion, or the previous champion (never one that
    failed its last rollout or its gate: then name the version with --to)."""
    try:
        out = client().request("POST", f"/api/models/{name}/rollback", params={"to": to} if to is not None else None)
    except ApiError as exc:
        fail(exc)
        return
    if out.get("rollout"):
        console.print(f"{name}: rolling back rollout {out['rollout']}")
    else:
        console.print(f"{name}: champion v{out['previous']} → v{out['champion']}")
