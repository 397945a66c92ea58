"""Serving p99 while an offline gate runs (issue 3: "running a gate must not hurt serving: it
runs outside the serving process's event loop, and your benchmark shows serving p99 while a
gate runs").

A real `changeover serve` (production timers) serves champion v1 (skops logistic
regression); v2 is a decision tree on the same features. The gate data is scikit-learn's
breast cancer set, resampled to --rows rows with a little Gaussian jitter, with a `label`
column, as CSV. Saturation is measured first with bench/loadgen.py (closed loop, separate
process); then a recording client in a SEPARATE process sends an open loop at --share ×
saturation for the whole measurement and keeps every request's latency, while this process
alternates segments without a gate and segments during which
`POST /api/models/m/versions/2/validate` runs (the call blocks until the verdict; the server
runs the gate in a worker process). The first gate also starts that worker process (spawn,
imports): it is reported apart as "cold".

After each gate, the time until the queue it left has drained (probe answers fast again),
plus --drain seconds, is left out of both sides. p99 is over the pooled requests of each
kind, with a 90% bootstrap interval over segments for the ratio. Sends the open loop had to
skip because 8 × --concurrency requests were already in flight are counted apart: they are
load the server did not keep up with.

--renice-worker N lowers the gate worker's scheduling priority (nice N, all its threads)
once it exists — a diagnostic that shows how much of the effect is CPU competition.

    python bench/gate_serving.py [--rows 3000] [--gate-seconds 12] [--share 0.5] [--report] [--renice-worker 19]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from shadow_overhead import Recorder, ratio_interval, segment_stats

POLICY = "require:\n  accuracy: {not_worse_than: champion, margin: 0.05}\n  latency_p99_ms: {max: 100}\n"


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def renice_tree(pid: int, niceness: int) -> list[int]:
    """Set `niceness` on every thread of every child process of `pid` (ours: the server's workers)."""
    done = []
    for child in children(pid):
        try:
            for tid in os.listdir(f"/proc/{child}/task"):
                os.setpriority(os.PRIO_PROCESS, int(tid), niceness)
            done.append(child)
        except OSError:
            pass
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000, help="rows of gate data")
    parser.add_argument(
        "--gate-seconds",
        type=float,
        default=12.0,
        help="run warm gates (each after a segment without) until they add up to this long",
    )
    parser.add_argument("--max-gates", type=int, default=20, help="at most this many warm gates")
    parser.add_argument(
        "--min-baseline",
        type=float,
        default=2.0,
        help="shortest segment without a gate (s); each lasts as long as the previous gate, at least this",
    )
    parser.add_argument("--max-baseline", type=float, default=10.0, help="longest segment without a gate (s)")
    parser.add_argument("--drain", type=float, default=1.0, help="seconds after the queue drained, left out")
    parser.add_argument("--saturation-seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--share", type=float, default=0.5, help="open-loop rate as a share of saturation")
    parser.add_argument("--rate", type=float, default=None, help="a fixed rate instead of a share of saturation")
    parser.add_argument(
        "--report",
        action="store_true",
        help="also build the gate's HTML report (heavier gate; the CLI builds it only with --report)",
    )
    parser.add_argument(
        "--renice-worker", type=int, default=None, metavar="N", help="diagnostic: run the gate worker at nice N"
    )
    parser.add_argument("--budget", type=float, default=130.0, help="start no gate after this many seconds")
    args = parser.parse_args()

    from common import TOKEN, ServerProcess, body_file, load, tmpdir
    from rich.console import Console
    from rich.table import Table

    from modelfiles import breast_cancer, skops_classifiers, v2_request

    console = Console(width=None if sys.stdout.isatty() else 150)
    load_before = os.getloadavg()
    started = time.monotonic()
    work = tmpdir()
    server = ServerProcess(
        work / "home",
        env={
            "CHANGEOVER_CONTROLLER_TICK_S": "1.0",
            "CHANGEOVER_POLICY_POLL_S": "2.0",
            "CHANGEOVER_WINDOW_SECONDS": "5.0",
        },
    )
    recorder: Recorder | None = None
    marks: dict[str, list[tuple[float, float]]] = {"none": [], "gate (cold worker)": [], "gate": []}
    gates: list[dict] = []
    drains: list[float] = []
    reniced: list[int] = []
    try:
        v1, v2 = skops_classifiers(work / "models")
        x, y = breast_cancer()
        rng = np.random.default_rng(0)
        idx = rng.integers(0, len(x), args.rows)
        data = x[idx] + rng.normal(0.0, 0.02, (args.rows, x.shape[1])) * x.std(axis=0)
        header = ",".join([f"f{i:02d}" for i in range(x.shape[1])] + ["label"])
        csv = work / "holdout.csv"
        np.savetxt(
            csv,
            np.column_stack([data, y[idx]]),
            delimiter=",",
            header=header,
            comments="",
            fmt=["%.6g"] * x.shape[1] + ["%d"],
        )
        request = v2_request(x[:1])
        with console.status("starting changeover and pushing two versions…"):
            server.start()
            from changeover.cli.client import Client  # the CLI's own client, in-process

            pusher = Client(url=server.url, token=TOKEN)
            for path in (v1, v2):  # the tree holds a type outside skops' default trusted set: ours
                pusher.push(path, name="m", labels={}, runtime=None, trust=path == v2)
            pusher.close()
        assert server.proc is not None
        pid = server.proc.pid
        api = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=600)
        api.put("/api/models/m/aliases/champion", json={"version": 1}).raise_for_status()
        url = f"{server.url}/v2/models/m/infer"
        probe = httpx.Client(timeout=60)
        deadline = time.monotonic() + 30
        while probe.post(url, json=request).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("v1 never served")
            time.sleep(0.1)

        with console.status("warming up, then measuring saturation (closed loop, bench/loadgen.py)…"):
            body_path = body_file(request, work)
            load(url, body_path, seconds=2, concurrency=args.concurrency)
            saturation = load(url, body_path, seconds=args.saturation_seconds, concurrency=args.concurrency)
        rate = args.rate or max(1.0, round(saturation["rps"] * args.share))
        console.print(
            f"saturation: {saturation['rps']:.0f} req/s with {args.concurrency} closed-loop clients "
            f"(p50 {saturation['p50_ms']:.1f} ms, p99 {saturation['p99_ms']:.1f} ms) → open loop at "
            f"{rate:g} req/s"
        )
        csv_bytes = csv.read_bytes()

        def probe_ms() -> float:
            t = time.monotonic()
            probe.post(url, json=request)
            return (time.monotonic() - t) * 1000

        def gate(kind: str) -> None:
            begin = time.monotonic()
            r = api.post(
                "/api/models/m/versions/2/validate",
                content=csv_bytes,
                params={
                    "task": "classification",
                    "filename": "holdout.csv",
                    "target": "label",
                    "against": "champion",
                    "policy": POLICY,
                    "report": args.report,
                },
            )
            end = time.monotonic()
            if r.status_code != 200:
                raise RuntimeError(f"validate failed: {r.status_code} {r.text[:500]}")
            marks[kind].append((begin, end))
            result = r.json().get("result", r.json())
            gates.append({"kind": kind, "seconds": end - begin, "verdict": result.get("verdict")})

        recorder = Recorder(url, request, work, rate=rate, concurrency=args.concurrency)
        time.sleep(1.0)
        calm = statistics.median(probe_ms() for _ in range(5))

        def drained() -> None:
            """Wait (bounded) until three probes in a row answer about as fast as before any gate."""
            begin = time.monotonic()
            fast = 0
            while fast < 3 and time.monotonic() - begin < 30:
                fast = fast + 1 if probe_ms() < max(50.0, 3 * calm) else 0
                time.sleep(0.1)
            drains.append(time.monotonic() - begin)
            time.sleep(args.drain)

        def without_gate(seconds: float) -> None:
            begin = time.monotonic()
            time.sleep(seconds)
            marks["none"].append((begin, time.monotonic()))

        with console.status("segment without a gate, then the first gate (cold worker)…") as status_line:
            without_gate(args.min_baseline)
            gate("gate (cold worker)")
            if args.renice_worker is not None:
                reniced = renice_tree(pid, args.renice_worker)
            for i in range(args.max_gates):
                warm = sum(g["seconds"] for g in gates if g["kind"] == "gate")
                if warm >= args.gate_seconds or time.monotonic() - started > args.budget:
                    break
                drained()
                baseline = min(args.max_baseline, max(args.min_baseline, gates[-1]["seconds"]))
                status_line.update(f"gate {i + 1}: {baseline:.0f}s without, then a gate ({warm:.0f}s of gates so far)…")
                without_gate(baseline)
                gate("gate")
            drained()
            without_gate(args.min_baseline)
        rows, unsent = recorder.finish()
    finally:
        if recorder is not None:
            recorder.kill()
        server.stop()

    stats = {kind: segment_stats(rows, segs, unsent) for kind, segs in marks.items() if segs}
    table = Table(
        title=f"champion v1 at {rate:g} req/s open loop while `validate` gates v2 against v1 on "
        f"{args.rows} rows ({'with' if args.report else 'no'} HTML report"
        + (f"; gate worker at nice {args.renice_worker}" if args.renice_worker is not None else "")
        + ")"
    )
    for col in (
        "while",
        "segments",
        "seconds",
        "requests",
        "errors",
        "not sent (client bound)",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
    ):
        table.add_column(col, justify="left" if col == "while" else "right")
    for kind, st in stats.items():
        table.add_row(
            {"none": "no gate"}.get(kind, kind),
            str(st["segments"]),
            f"{st['seconds']:.1f}",
            str(st["requests"]),
            str(st["failed"]),
            str(st["unsent"]),
            f"{st['p50']:.2f}",
            f"{st['p90']:.2f}",
            f"{st['p99']:.2f}",
            f"{st['max']:.1f}",
        )
    console.print(table)

    summary = Table(title="serving while a gate runs")
    for col in ("figure", "value"):
        summary.add_column(col, justify="left" if col == "figure" else "right")
    base = stats["none"]
    for kind in ("gate", "gate (cold worker)"):
        if kind not in stats:
            continue
        st = stats[kind]
        low, high = ratio_interval(st["per_segment"], base["per_segment"])
        summary.add_row(f"p99 without a gate → during a {kind}", f"{base['p99']:.2f} → {st['p99']:.2f} ms")
        summary.add_row(f"p99 ratio, {kind} / none", f"{st['p99'] / base['p99']:.2f}  (90% CI {low:.2f}–{high:.2f})")
        summary.add_row(f"p50 ratio, {kind} / none", f"{st['p50'] / base['p50']:.2f}")
    codes: dict[int, int] = {}
    for r in rows:
        if r[2] != 200:
            codes[r[2]] = codes.get(r[2], 0) + 1
    summary.add_row(
        "user requests not answered 200, whole run",
        f"{sum(codes.values())} of {len(rows)}"
        + (f" (status: count {codes}; 0 = client timeout 30 s or connection error)" if codes else ""),
    )
    summary.add_row("sends skipped: client's in-flight bound reached", str(len(unsent)))
    warm = [g["seconds"] for g in gates if g["kind"] == "gate"]
    cold = [g["seconds"] for g in gates if g["kind"] != "gate"]
    verdicts = sorted({str(g["verdict"]) for g in gates})
    summary.add_row(
        "gates run",
        f"cold {', '.join(f'{c:.1f}' for c in cold)} s; warm {len(warm)}, median "
        f"{statistics.median(warm) if warm else float('nan'):.1f} s, max {max(warm, default=float('nan')):.1f} s; "
        f"verdicts {', '.join(verdicts)}",
    )
    summary.add_row(
        "queue drain after a gate (left out)", f"median {statistics.median(drains):.1f} s, max {max(drains):.1f} s"
    )
    if args.renice_worker is not None:
        summary.add_row("reniced worker processes", ", ".join(map(str, reniced)) or "none found")
    console.print(summary)
    if stats["none"]["unsent"] or stats["none"]["p90"] > 10 * max(stats["none"]["p50"], 1.0):
        console.print(
            "[yellow]the server fell behind the offered rate even without a gate (the machine's load changed "
            "after saturation was measured): these figures measure queueing; rerun, or lower --share[/]"
        )
    console.print(
        f"wall time {time.monotonic() - started:.0f} s; machine: {os.cpu_count()} CPUs, load average "
        f"(1 min) {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after (other work shares the "
        f"CPUs; the load generator and the gate's worker process run on the same machine)"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
