"""The data plane side by side (issue 11): req/s, p50, p99, errors and the server's peak RSS
of v2 REST infer, one iris row per request, for every scenario in the same run:

  bare      a bare Starlette app calling the model in-process (bench/bare_app.py): the ceiling
  champion  `changeover serve`, champion only
  canary    changeover with a rollout of v2 held at a 10% canary (one step, a 1 h bake)
  shadow    changeover with v2 as a shadow at sample 1.0
  hang      changeover with a shadow at sample 1.0 whose predict sleeps --hang-seconds
  mlserver  MLServer 1.7 + mlserver-sklearn, REST, in its own venv (bench/mlserver_setup.py)
  grpc      changeover champion over gRPC (`serve --grpc-port`)
  mlserver-grpc  the same MLServer process over gRPC; gRPC load for both from h2load (nghttp2's
            C client, bench/h2load_grpc.py; installed with apt-get when missing and root), else
            bench/grpc_loadgen.py (a Python client in its own process)

Every scenario is its own server process on 127.0.0.1, started once and kept for the run.
Each round also loads bare and champion from one connection (half of --seconds): at
saturation a p50 is mostly queueing (16 connections over the req/s), so the p50 overhead
of a request is the difference of those one-connection p50s.
Rounds are interleaved: each round runs every scenario once for --seconds (the order rotated
by one each round, so no scenario always follows the same one), and the table gives the
median over rounds. Each ratio is taken within a round, where both sides saw the same
machine, and the median of those per-round ratios is printed with its range.

The model is a logistic regression on iris (sklearn's load_iris), saved with skops for
changeover and the bare app, and fitted the same way as a joblib file by MLServer's own venv.
MLServer is asked for both outputs (predict and predict_proba), as changeover and the bare
app return a label and the probabilities. The load comes from wrk in a separate process
(installed with apt-get when missing and root, else bench/loadgen.py), never from a server.
Peak RSS is the server process with its children (changeover's job worker is one), and in
brackets the main process alone, sampled every 0.25 s under load; RSS growth is the tree's
RSS after the last round less its RSS after warm-up. After the rounds, 400 probe requests
check that the canary still answers about 10%, and /metrics gives the shadows' call counts.

MLServer runs with parallel_workers 0: inference in its one process, as changeover and the
bare app serve from one process; with 1 worker every request crosses a process boundary,
and a quick wrk run here gave about half the req/s. Its metrics are off (no Prometheus
middleware), which favours it if anything.

    python bench/dataplane.py [--seconds 8] [--rounds 3] [--concurrency 16]
                              [--only bare,champion] [--no-mlserver] [--hang-seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2load_grpc
import httpx
from common import (
    HERE,
    TOKEN,
    ServerProcess,
    body_file,
    ensure_wrk,
    free_port,
    load,
    rss_tree_bytes,
    tmpdir,
    wait_ready,
)
from h2load_grpc import ensure_h2load
from mlserver_setup import VENV, ensure_venv, iris_model, write_model_folder
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from shadow_overhead import rss_bytes, shadow_counts

from modelfiles import python_model, v2_request

MB = 1024 * 1024
LIGHT = ("bare", "champion")  # measured at one connection too, each round (the p50 overhead target)
SCENARIOS = {
    "bare": "bare Starlette",
    "champion": "changeover champion",
    "workers2": "changeover champion, --workers 2",
    "canary": "changeover 10% canary",
    "shadow": "changeover 100% shadow",
    "hang": "changeover hanging shadow",
    "mlserver": "MLServer REST",
    "mlserver-grpc": "MLServer gRPC",
    "grpc": "changeover champion gRPC",
}
# Production-like timers: four changeover servers sit idle while another is measured, and
# fast test timers would have them wake every 0.2 s.
TIMERS = {"CHANGEOVER_CONTROLLER_TICK_S": "1.0", "CHANGEOVER_POLICY_POLL_S": "2.0", "CHANGEOVER_WINDOW_SECONDS": "5.0"}


class Target:
    """One scenario's server: where to send load, whose memory to watch, how to stop it."""

    def __init__(self, name: str, url: str, pid: int, stop: Callable[[], None], body: Path,
                 server_url: str | None = None) -> None:
        self.name, self.url, self.pid, self.stop, self.body = name, url, pid, stop, body
        self.server_url = server_url  # changeover's, for its /metrics
        self.runner: Callable[[float, int], dict[str, Any]] | None = None  # load other than REST
        self.grpc_port = 0
        self.rss_start = 0
        self.rss_end = 0
        self.notes: list[str] = []

    def run(self, seconds: float, concurrency: int) -> dict[str, Any]:
        if self.runner is not None:
            return self.runner(seconds, concurrency)
        return load(self.url, self.body, seconds=seconds, concurrency=concurrency)


def wait_for(check: Callable[[], bool], timeout: float, what: str, pause: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(pause)


def stop_popen(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group it leads (started with start_new_session), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def popen(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


# ---- the scenarios' servers -------------------------------------------------------------------


def start_bare(work: Path, models: dict[str, Path], body: Path) -> Target:
    port = free_port()
    proc = popen([sys.executable, str(HERE / "bare_app.py"), str(models["v1"]), str(port)], work / "bare.log")
    target = Target("bare", f"http://127.0.0.1:{port}/v2/models/bare/infer", proc.pid, lambda: stop_popen(proc), body)
    try:
        wait_ready(f"http://127.0.0.1:{port}")
    except BaseException:
        target.stop()
        raise
    return target


def start_changeover(name: str, work: Path, models: dict[str, Path], body: Path) -> Target:
    server = ServerProcess(work / f"home-{name}", env=TIMERS,
                           args=("--workers", "2") if name == "workers2" else (),
                           grpc_port=0 if name == "grpc" else None)
    server.start(timeout=90)
    assert server.proc is not None
    target = Target(name, f"{server.url}/v2/models/m/infer", server.proc.pid, server.stop, body, server.url)
    if server.grpc_port is not None:
        target.grpc_port = server.grpc_port
    try:
        extra = {"champion": None, "workers2": None, "grpc": None, "canary": "v2", "shadow": "v2", "hang": "hang"}[name]
        for key in ("v1", extra) if extra else ("v1",):  # the CLI, as an operator would
            trust = ("--trust",) if models[key].is_dir() else ()  # a python folder is code: trusted, ours
            server.cli("models", "push", str(models[key]), "--name", "m", *trust, check=True)
        with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=60) as api:
            api.put("/api/models/m/aliases/champion", json={"version": 1, "reason": "bench"}).raise_for_status()
            if name == "canary":
                spec = {"model": "m", "candidate": "2", "canary": {"steps": [10], "bake": "1h"}, "promote": "manual",
                        "watch": 0}
                r = api.post("/api/rollouts", json={"spec": spec})
                if r.status_code != 201:
                    raise RuntimeError(f"rollout start refused: {r.status_code} {r.text}")
                wait_adopted(api, lambda p: p.get("champion") == 1 and float(p["weights"].get("2", 0)) == 10.0,
                             "the 10% canary")
            elif name in ("shadow", "hang"):
                api.post("/api/models/m/shadows", json={"version": "2", "sample": 1.0}).raise_for_status()
                wait_adopted(api, lambda p: p.get("champion") == 1 and [s["version"] for s in p["shadows"]] == [2],
                             "the shadow")
            else:
                wait_adopted(api, lambda p: p.get("champion") == 1, "the champion")
                if name == "workers2":
                    time.sleep(1.0)  # the API answered from one worker; the other follows the signal
    except BaseException:
        target.stop()
        raise
    return target


def wait_adopted(api: httpx.Client, want: Callable[[dict[str, Any]], bool], what: str) -> None:
    """Until the gateway serves a policy of model m that `want` accepts."""

    def adopted() -> bool:
        status = api.get("/api/status").json()
        policy = next((m["policy"] for m in status["models"] if m["model"] == "m"), None) or {}
        served = status["gateway"]["generations"].get("m", -1) >= policy.get("generation", 0)
        return bool(policy) and served and want(policy)

    wait_for(adopted, 60, f"the gateway to serve {what}", pause=0.2)


def start_mlserver(work: Path, body: Path, console: Console) -> Target:
    if not (HERE / ".venv-mlserver" / "bin" / "mlserver").exists():
        console.print("MLServer: making bench/.venv-mlserver (first use; pip, a few minutes)…")
    binary = ensure_venv(work / "mlserver-pip.log")
    http_port, grpc_port = free_port(), free_port()
    folder = write_model_folder(work / "mlserver", http_port=http_port, grpc_port=grpc_port)
    proc = popen([str(binary), "start", str(folder)], work / "mlserver.log")
    target = Target("mlserver", f"http://127.0.0.1:{http_port}/v2/models/iris/infer", proc.pid,
                    lambda: stop_popen(proc), body)
    target.grpc_port = grpc_port
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlserver exited with {proc.returncode}:\n{(work / 'mlserver.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/v2/models/iris/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mlserver did not become ready in 120 s")
            time.sleep(0.2)
    except BaseException:
        target.stop()
        raise
    return target


def grpc_target(rest: Target, row: list[float], name: str = "mlserver-grpc", model: str = "iris",
                outputs: tuple[str, ...] = ("predict", "predict_proba")) -> Target:
    """The server process that `rest` runs, measured over gRPC (stopping either stops it), with
    the same Python load generator for MLServer and changeover (MLServer's venv runs it)."""
    target = Target(name, rest.url, rest.pid, rest.stop, rest.body)
    if ensure_h2load():  # the same C client for both servers, as wrk is for REST
        message = h2load_grpc.infer_request(model, row, outputs)

        def h2load_runner(seconds: float, concurrency: int) -> dict[str, Any]:
            return h2load_grpc.run(f"127.0.0.1:{rest.grpc_port}", message, seconds=seconds, concurrency=concurrency)

        target.runner = h2load_runner
        return target
    cmd = [str(VENV / "bin" / "python"), str(HERE / "grpc_loadgen.py"), f"127.0.0.1:{rest.grpc_port}", model,
           "--row", ",".join(map(str, row)), *[a for o in outputs for a in ("--output", o)]]

    def runner(seconds: float, concurrency: int) -> dict[str, Any]:
        out = subprocess.run([*cmd, "--seconds", str(seconds), "--concurrency", str(concurrency)], capture_output=True,
                             text=True, timeout=seconds + 60, check=True)
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    target.runner = runner
    return target


def make_models(work: Path, hang_seconds: float) -> dict[str, Path]:
    import skops.io as sio

    folder = work / "models"
    folder.mkdir(parents=True)
    models = {"v1": folder / "v1.skops", "v2": folder / "v2.skops"}
    sio.dump(iris_model(), models["v1"])
    sio.dump(iris_model(C=0.5), models["v2"])  # the candidate and the shadow: a near twin
    models["hang"] = python_model(
        work / "hang",
        f"if np.any(inputs['input']):  # live traffic; the gateway warms a version on all-zero inputs\n"
        f"    time.sleep({hang_seconds})\n"
        f"return {{'label': np.zeros(inputs['input'].shape[0], dtype=np.int64)}}",
        inputs="[{name: input, datatype: FP64, shape: [-1, 4]}]",
        outputs="[{name: label, datatype: INT64, shape: [-1]}]",
    )
    return models


# ---- measuring ----------------------------------------------------------------------------------


def rss_main_bytes(pid: int) -> int:
    try:
        return rss_bytes(pid)[0]
    except OSError:
        return 0


def measure(target: Target, seconds: float, concurrency: int) -> dict[str, Any]:
    peak = [rss_tree_bytes(target.pid)]
    peak_main = [rss_main_bytes(target.pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            peak.append(rss_tree_bytes(target.pid))
            peak_main.append(rss_main_bytes(target.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = target.run(seconds, concurrency)
    finally:
        done.set()
        sampler.join()
    result["rss_peak"] = max(peak)
    result["rss_peak_main"] = max(peak_main)
    return result


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def per_round(results: dict[str, list[dict[str, Any] | None]], a: str, b: str,
              f: Callable[[dict[str, Any], dict[str, Any]], float]) -> list[float]:
    """f(a's run, b's run) for every round in which both were measured."""
    out = []
    for ra, rb in zip(results.get(a, []), results.get(b, []), strict=False):
        if ra is not None and rb is not None and ra["requests"] and rb["requests"]:
            out.append(f(ra, rb))
    return out


def spread(values: list[float], fmt: str, unit: str = "") -> str:
    if not values:
        return "—"
    med = format(statistics.median(values), fmt) + unit
    if len(values) == 1:
        return med
    return f"{med}  ({format(min(values), fmt)}–{format(max(values), fmt)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="load per scenario per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", default="", help=f"a subset, comma-separated, of {','.join(SCENARIOS)}")
    parser.add_argument("--no-mlserver", action="store_true", help="leave MLServer out (no venv made)")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="how long the hanging shadow sleeps")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    if args.no_mlserver:
        names = [n for n in names if not n.startswith("mlserver")]

    console = Console(width=None if sys.stdout.isatty() else 150)
    load_before = os.getloadavg()
    tool = "wrk" if ensure_wrk() else "bench/loadgen.py (wrk is missing and could not be installed)"
    work = tmpdir()
    targets: dict[str, Target] = {}
    failed: dict[str, str] = {}
    results: dict[str, list[dict[str, Any] | None]] = {n: [] for n in names}
    light: dict[str, list[dict[str, Any]]] = {n: [] for n in LIGHT}
    mirrors: dict[str, dict[str, float]] = {}
    canary_share = None
    mlserver: Target | None = None
    mlserver_failed = False
    started = time.monotonic()
    try:
        models = make_models(work, args.hang_seconds)
        iris_row = __import__("sklearn.datasets", fromlist=["load_iris"]).load_iris().data[50:51]
        row = v2_request(iris_row)

        body = body_file(row, work)
        # MLServer's sklearn runtime returns only `predict` unless asked for more
        ml_body = body_file(row | {"outputs": [{"name": "predict"}, {"name": "predict_proba"}]}, work)
        for name in names:
            with console.status(f"starting {SCENARIOS[name]}…"):
                try:
                    if name == "bare":
                        targets[name] = start_bare(work, models, body)
                    elif name.startswith("mlserver"):
                        if mlserver_failed:
                            raise RuntimeError("MLServer did not start (above)")
                        if mlserver is None:
                            mlserver_failed = True
                            mlserver = start_mlserver(work, ml_body, console)
                            mlserver_failed = False
                        targets[name] = mlserver if name == "mlserver" else grpc_target(mlserver, iris_row[0].tolist())
                    elif name == "grpc":
                        ensure_venv(work / "mlserver-pip.log")  # its python runs the gRPC load generator
                        rest = start_changeover(name, work, models, body)
                        targets[name] = grpc_target(rest, iris_row[0].tolist(), "grpc", "m", ())
                    else:
                        targets[name] = start_changeover(name, work, models, body)
                    check = httpx.post(targets[name].url, content=targets[name].body.read_bytes(),
                                       headers={"content-type": "application/json"}, timeout=10)
                    if check.status_code != 200:
                        raise RuntimeError(f"a first request answered {check.status_code}: {check.text[:300]}")
                except Exception as exc:  # one scenario that cannot start does not stop the others
                    failed[name] = f"{type(exc).__name__}: {str(exc)[-600:]}"  # the tail holds the cause
                    console.print(f"[red]{SCENARIOS[name]} did not start:[/red] {failed[name]}")
                    started_one = targets.pop(name, None)
                    if started_one is not None and started_one is not mlserver:  # MLServer: stopped below
                        started_one.stop()
        live = [n for n in names if n in targets]
        with console.status("warming up every server (2 s of load each)…"):
            for name in live:
                targets[name].run(min(2.0, args.seconds), args.concurrency)
                targets[name].rss_start = rss_tree_bytes(targets[name].pid)

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("measuring", total=args.rounds * len(live))
            for r in range(args.rounds):
                order = live[r % len(live):] + live[: r % len(live)] if live else []
                for name in order:
                    progress.update(task, description=f"round {r + 1}/{args.rounds}: {SCENARIOS[name]}")
                    try:
                        results[name].append(measure(targets[name], args.seconds, args.concurrency))
                        if name in LIGHT:  # one connection: the cost of a request, without queueing
                            light[name].append(targets[name].run(max(1.0, args.seconds / 2), 1))
                    except Exception as exc:
                        results[name].append(None)
                        targets[name].notes.append(f"round {r + 1}: {type(exc).__name__}: {str(exc)[:200]}")
                    progress.advance(task)
        for name in live:
            targets[name].rss_end = rss_tree_bytes(targets[name].pid)
        if "canary" in targets:  # is the canary still at 10%? a probe outside the measurement
            with httpx.Client(timeout=10) as probe:
                seen = [probe.post(targets["canary"].url, content=body.read_bytes(),
                                   headers={"content-type": "application/json"}).headers.get("x-changeover-version")
                        for _ in range(400)]
            canary_share = seen.count("2") / len(seen)
        for name in ("shadow", "hang"):
            if name in targets and targets[name].server_url:
                counts = shadow_counts(str(targets[name].server_url))
                mirrors[name] = {outcome: n for (version, outcome), n in counts.items() if version == "2" and n}
    finally:
        if mlserver is not None:  # also when only its gRPC side was measured
            targets.setdefault("mlserver", mlserver)
        for target in targets.values():
            try:
                target.stop()
            except Exception as exc:
                console.print(f"[yellow]stopping {target.name}: {exc}[/yellow]")
        shutil.rmtree(work, ignore_errors=True)

    report(console, args, names, targets, failed, results, tool, load_before, canary_share, mirrors, started)
    light_report(console, light)


def light_report(console: Console, light: dict[str, list[dict[str, Any]]]) -> None:
    """p50 at one connection, changeover against bare, per round: the overhead of a request."""
    pairs = list(zip(light.get("bare", []), light.get("champion", []), strict=False))
    if not pairs:
        return
    gaps = [c["p50_ms"] - b["p50_ms"] for b, c in pairs]
    console.print(
        f"one connection (no queueing), {len(pairs)} rounds: p50 bare {spread([b['p50_ms'] for b, _ in pairs], '.3f')} ms, "
        f"changeover {spread([c['p50_ms'] for _, c in pairs], '.3f')} ms; [bold]p50 overhead "
        f"{spread(gaps, '.3f')} ms[/bold] (target < 0.5 ms)")


def report(console: Console, args: argparse.Namespace, names: list[str], targets: dict[str, Target],
           failed: dict[str, str], results: dict[str, list[dict[str, Any] | None]], tool: str,
           load_before: tuple[float, float, float], canary_share: float | None, mirrors: dict[str, dict[str, float]],
           started: float) -> None:
    table = Table(title=f"v2 infer (REST unless named), one iris row, {args.concurrency} closed-loop clients, {args.rounds} interleaved "
                        f"rounds of {args.seconds:g} s per scenario (medians), load from {tool}")
    for col in ("scenario", "req/s", "p50 ms", "p99 ms", "p50 − bare ms", "errors / requests",
                "peak RSS MB (main)", "RSS growth MB"):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for name in names:
        runs = [r for r in results.get(name, []) if r is not None]
        if not runs:
            table.add_row(SCENARIOS[name], *["—"] * 4, "did not start" if name in failed else "no run", "—", "—")
            continue
        overhead = per_round(results, name, "bare", lambda a, b: a["p50_ms"] - b["p50_ms"]) if name != "bare" else []
        errors, requests = sum(r["errors"] for r in runs), sum(r["requests"] for r in runs)
        t = targets[name]
        table.add_row(
            SCENARIOS[name], f"{median_of(runs, 'rps'):.0f}", f"{median_of(runs, 'p50_ms'):.2f}",
            f"{median_of(runs, 'p99_ms'):.2f}", f"{statistics.median(overhead):+.2f}" if overhead else "—",
            f"{errors} / {requests}",
            f"{max(r['rss_peak'] for r in runs) / MB:.0f} ({max(r['rss_peak_main'] for r in runs) / MB:.0f})",
            f"{(t.rss_end - t.rss_start) / MB:+.1f}",
        )
    console.print(table)

    ratios = Table(title="ratios, taken within each round: median (min–max over rounds)")
    for col in ("comparison", "req/s", "p50", "p99"):
        ratios.add_column(col, justify="left" if col == "comparison" else "right")

    def add(label: str, a: str, b: str) -> None:
        values = [per_round(results, a, b, lambda x, y, k=k: x[k] / y[k]) for k in ("rps", "p50_ms", "p99_ms")]
        if values[0]:  # both were measured
            ratios.add_row(label, *(spread(v, ".2f", "×") for v in values))

    add("changeover champion-only / bare Starlette", "champion", "bare")
    add("changeover champion-only / MLServer REST", "champion", "mlserver")
    add("changeover gRPC / MLServer gRPC (same client)", "grpc", "mlserver-grpc")
    add("--workers 2 / one worker, champion-only", "workers2", "champion")
    add("10% canary / champion-only", "canary", "champion")
    add("100% shadow / champion-only", "shadow", "champion")
    add("hanging shadow / champion-only", "hang", "champion")
    add("MLServer REST / bare Starlette", "mlserver", "bare")
    if ratios.row_count:
        console.print(ratios)
    for name in ("champion", "hang"):
        if name in targets and results.get(name):
            t = targets[name]
            console.print(f"RSS of {SCENARIOS[name]}: {t.rss_start / MB:.0f} MB after warm-up → {t.rss_end / MB:.0f} MB "
                          f"after the last round ({(t.rss_end - t.rss_start) / MB:+.1f} MB)")
    for name, counts in mirrors.items():
        console.print(f"changeover_shadow_calls_total of v2 on {SCENARIOS[name]}: "
                      + (", ".join(f"{o}={n:.0f}" for o, n in sorted(counts.items())) or "none"))
    if canary_share is not None:
        console.print(f"canary share after the last round: {canary_share:.1%} of 400 probe requests answered by v2 "
                      "(10% asked)")
    for name, why in failed.items():
        console.print(f"[red]{SCENARIOS[name]} did not start:[/red] {why}")
    for t in targets.values():
        for note in t.notes:
            console.print(f"[yellow]{SCENARIOS[t.name]}: {note}[/yellow]")
    if load_before[0] > 0.5 * (os.cpu_count() or 1):  # after the run, the load counts our own servers and wrk
        console.print("[yellow]the machine was busy before the run (load average below): the ratios, taken within "
                      "rounds, hold up better than the absolute figures, and p99s least of all[/yellow]")
    console.print(
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
        f"{time.monotonic() - started:.0f} s in all. Errors are non-2xx answers, connection errors and timeouts. "
        "MLServer: parallel_workers 0 (inference in its one process, as changeover and the bare app), metrics off"
        + (f"; gRPC load from {'h2load (nghttp2, C)' if shutil.which('h2load') else 'bench/grpc_loadgen.py, a Python client'}"
           " for both servers." if "mlserver-grpc" in names or "grpc" in names else ".")
    )


if __name__ == "__main__":
    main()
