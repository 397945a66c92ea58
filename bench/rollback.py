"""Rollback is instant: after `POST /api/models/{name}/rollback`, every NEW request goes to
the old champion within 100 ms of the command.

A real `changeover serve` runs with its production timers (controller tick 1 s, policy poll
2 s), so only the wake-up and generation-notification path can make the switch fast. Two
python-runtime versions answer differently (v1: x0+x1, v2: 10*(x0+x1)+1), so each answer
identifies who served it (checked against `x-changeover-version`). A client in a SEPARATE
process sends steady paced traffic on loopback (--concurrency workers, each on its own
connection, together --rate requests per second; a slow answer delays that worker's next
send rather than queueing it) and records, per request, the send time, the answer time
(CLOCK_MONOTONIC, shared across processes) and the serving version.

Scenario A (alias rollback), repeated: champion v2 with v1 under `previous` (kept warm);
POST rollback (timestamp just before sending); then champion is moved back to v2 for the
next round. Scenario B (rollout rollback), repeated: a rollout of v2 at 50% canary
(manual promote, 1h bake) runs against champion v1; POST rollback; all new requests must
go to v1.

Per rollback, over the requests SENT after the command:
  first v1  — send offset of the first one answered by v1;
  all v1    — send offset of the first request of the final all-v1 run: every request sent
              from then on was answered by v1 (the claim: < 100 ms), resolution 1/rate;
  seen      — when that request's answer came back (what a client observes);
  ack       — round trip of the rollback API call itself;
  committed — when the controller committed the policy (the audit event's time).
Only requests answered before the next move of traffic count: one still out then may have
been routed after it.

    python bench/rollback.py [--rounds 20] [--rollout-rounds 5] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}
EXPECTED = {"1": 3.0, "2": 31.0}


# ---- the client process -------------------------------------------------------------------


async def client_main(
    url: str, out: Path, stop: Path, ready: Path, rate: float, max_seconds: float, concurrency: int
) -> None:
    from shadow_overhead import RawHttp  # a light HTTP/1.1 client: the server keeps the CPU

    client = RawHttp(url, json.dumps(BODY).encode(), concurrency)  # refuses anything but loopback
    rows: list[tuple[float, float, int, str, float | None]] = []
    late = 0  # slots missed because the previous request of that worker was still out
    # Paced workers, each with its own connection: a request leaves the moment it is timed
    # (no client-side queue for a connection), and a slow server slows the pace instead of
    # building a backlog. Total pace: `rate` requests per second while the server keeps up.
    await asyncio.gather(*(client.post(10.0) for _ in range(concurrency)))
    ready.write_text("ok")
    start = time.monotonic()
    period = concurrency / rate
    max_requests = int(rate * max_seconds) + 1

    async def worker(index: int) -> None:
        nonlocal late
        next_at = start + index * period / concurrency
        while time.monotonic() - start < max_seconds and len(rows) < max_requests and not stop.exists():
            now = time.monotonic()
            if now < next_at:
                await asyncio.sleep(next_at - now)
            else:
                late += 1
            next_at = max(next_at + period, time.monotonic())
            sent = time.monotonic()
            status, headers, body = await client.exchange(10.0)
            version = headers.get(b"x-changeover-version", b"-").decode()
            try:
                value = json.loads(body)["outputs"][0]["data"][0] if status == 200 else None
            except (ValueError, KeyError, IndexError):
                value = None
            rows.append((sent, time.monotonic(), status, version, value))

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    client.close()
    out.write_text(json.dumps({"rows": rows, "skipped": late}))


# ---- the orchestrator ----------------------------------------------------------------------


@dataclass
class Mark:
    kind: str
    t_cmd: float
    t_ack: float
    t_end: float = 0.0
    answer: dict | None = None
    wall: float = 0.0  # time.time() at t_cmd, to place the server's audit events


def wait_for(predicate, timeout: float, what: str, pause: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(pause)
    raise RuntimeError(f"timed out waiting for {what}")


def analyse(mark: Mark, rows: list[tuple[float, float, int, str, float | None]], target: str) -> dict:
    # Sent after the command, and answered before the next move of traffic: a request still
    # out when the next move was sent may have been routed after it, so it says nothing.
    after = [r for r in rows if mark.t_cmd <= r[0] and r[1] < mark.t_end]
    after.sort(key=lambda r: r[0])
    out: dict = {
        "requests": len(after),
        "ack_ms": (mark.t_ack - mark.t_cmd) * 1000,
        "excluded": sum(1 for r in rows if mark.t_cmd <= r[0] < mark.t_end <= r[1]),
    }
    first = next((r for r in after if r[3] == target), None)
    out["first_ms"] = (first[0] - mark.t_cmd) * 1000 if first else float("inf")
    out["first_seen_ms"] = (first[1] - mark.t_cmd) * 1000 if first else float("inf")
    last_other = max((i for i, r in enumerate(after) if r[3] != target), default=-1)
    out["stragglers"] = sum(1 for r in after if r[3] != target)
    if last_other + 1 < len(after):
        run_start = after[last_other + 1]
        out["all_ms"] = (run_start[0] - mark.t_cmd) * 1000
        out["all_seen_ms"] = (run_start[1] - mark.t_cmd) * 1000
    else:
        out["all_ms"] = out["all_seen_ms"] = float("inf")
    return out


def published_ms(mark: Mark, events: list[dict]) -> float:
    """When the controller committed the policy that sends everything to v1 (audit log time)."""
    for e in events:
        policy = (e.get("evidence") or {}).get("policy") or {}
        if e["kind"] == "policy" and e["at"] >= mark.wall and policy.get("champion") == 1 and not policy.get("weights"):
            return (e["at"] - mark.wall) * 1000
    return float("inf")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="alias rollbacks (champion v2 -> v1)")
    parser.add_argument("--rollout-rounds", type=int, default=5, help="rollbacks of a running 50%% canary")
    parser.add_argument("--rate", type=float, default=100.0, help="client requests per second (paced)")
    parser.add_argument("--concurrency", type=int, default=4, help="client connections (paced workers)")
    parser.add_argument("--observe", type=float, default=1.0, help="seconds watched after each rollback")
    parser.add_argument("--limit-ms", type=float, default=100.0)
    parser.add_argument(
        "--fast-timers",
        action="store_true",
        help="controller tick 0.2 s / policy poll 0.5 s (tests' settings) instead of production's",
    )
    parser.add_argument(
        "--save", type=Path, default=None, help="write raw requests, marks and audit events here (JSON)"
    )
    parser.add_argument("--client", nargs=4, metavar=("URL", "OUT", "STOP", "READY"), help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=150.0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.client:
        url, out, stop, ready = args.client
        asyncio.run(client_main(url, Path(out), Path(stop), Path(ready), args.rate, args.max_seconds, args.concurrency))
        return

    from common import TOKEN, ServerProcess, tmpdir
    from rich.console import Console
    from rich.table import Table

    from modelfiles import python_model

    console = Console(width=None if sys.stdout.isatty() else 140)
    load_before = os.getloadavg()
    work = tmpdir()
    timers = (
        {}
        if args.fast_timers
        else {
            "CHANGEOVER_CONTROLLER_TICK_S": "1.0",
            "CHANGEOVER_POLICY_POLL_S": "2.0",
            "CHANGEOVER_WINDOW_SECONDS": "5.0",
        }
    )
    server = ServerProcess(work / "home", env=timers)
    client_proc: subprocess.Popen[bytes] | None = None
    marks: list[Mark] = []
    try:
        v1 = python_model(work / "m1", "return {'y': inputs['x'].sum(axis=1)}")
        v2 = python_model(work / "m2", "return {'y': inputs['x'].sum(axis=1) * 10 + 1}")
        with console.status("starting changeover and pushing two versions…"):
            server.start()
            for path in (v1, v2):
                server.cli("models", "push", str(path), "--name", "m", "--trust", check=True)  # python: code
        infer_url = f"{server.url}/v2/models/m/infer"
        api = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)
        probe = httpx.Client(timeout=10)

        def serving() -> str:
            r = probe.post(infer_url, json=BODY)
            return r.headers.get("x-changeover-version", "-") if r.status_code == 200 else "-"

        def set_champion(version: int) -> None:
            r = api.put("/api/models/m/aliases/champion", json={"version": version, "reason": "bench"})
            r.raise_for_status()

        def steadily(version: str, n: int = 5) -> bool:
            return all(serving() == version for _ in range(n))

        set_champion(1)
        wait_for(lambda: steadily("1"), 20, "v1 to serve")
        set_champion(2)  # previous = v1, kept warm
        wait_for(lambda: steadily("2"), 20, "v2 to serve")

        stop, ready, out = work / "stop", work / "ready", work / "client.json"
        total_budget = 30 + args.rounds * 3 + args.rollout_rounds * 6
        client_proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                infer_url,
                str(out),
                str(stop),
                str(ready),
                "--rate",
                str(args.rate),
                "--concurrency",
                str(args.concurrency),
                "--max-seconds",
                str(total_budget),
            ]
        )
        wait_for(ready.exists, 30, "the client process")
        api.get("/api/status").raise_for_status()  # warm the API connection
        time.sleep(0.5)

        with console.status(f"alias rollbacks: 0/{args.rounds}") as status_line:
            for i in range(args.rounds):
                if i > 0:
                    set_champion(2)
                wait_for(lambda: steadily("2"), 10, "v2 to serve again")
                time.sleep(0.2)
                wall, t_cmd = time.time(), time.monotonic()
                r = api.post("/api/models/m/rollback")
                t_ack = time.monotonic()
                r.raise_for_status()
                mark = Mark("alias", t_cmd, t_ack, answer=r.json(), wall=wall)
                time.sleep(args.observe)
                mark.t_end = time.monotonic()
                marks.append(mark)
                status_line.update(f"alias rollbacks: {i + 1}/{args.rounds}")
        # champion is v1 now, previous v2: a rollout of v2 against v1
        spec = {
            "model": "m",
            "candidate": "2",
            "canary": {"steps": [50], "bake": "1h"},
            "promote": "manual",
            "watch": 0,
        }
        with console.status(f"rollout rollbacks: 0/{args.rollout_rounds}") as status_line:
            for i in range(args.rollout_rounds):
                wait_for(lambda: steadily("1"), 10, "v1 to serve")
                r = api.post("/api/rollouts", json={"spec": spec})
                if r.status_code != 201:
                    raise RuntimeError(f"rollout start refused: {r.status_code} {r.text}")
                rid = r.json()["id"]
                # the 50% canary is live once both versions answer
                wait_for(lambda: "2" in {serving() for _ in range(8)}, 15, "the canary to take traffic")
                time.sleep(0.3)
                wall, t_cmd = time.time(), time.monotonic()
                r = api.post("/api/models/m/rollback")
                t_ack = time.monotonic()
                r.raise_for_status()
                mark = Mark("rollout", t_cmd, t_ack, answer=r.json() | {"id": rid}, wall=wall)
                time.sleep(args.observe)
                mark.t_end = time.monotonic()
                marks.append(mark)
                wait_for(
                    lambda: not api.get("/api/rollouts", params={"model": "m", "active": True}).json(),
                    15,
                    "the rollout to end",
                    pause=0.1,
                )
                status_line.update(f"rollout rollbacks: {i + 1}/{args.rollout_rounds}")
        stop.write_text("stop")
        client_proc.wait(timeout=60)
        data = json.loads(out.read_text())
        rows = [tuple(r) for r in data["rows"]]
        rollouts = api.get("/api/rollouts", params={"model": "m", "limit": 100}).json()
        events = api.get("/api/events", params={"model": "m", "limit": 10000}).json()
    finally:
        if client_proc is not None and client_proc.poll() is None:
            client_proc.terminate()
            client_proc.wait(timeout=10)
        server.stop()

    if args.save:
        args.save.write_text(json.dumps({"rows": rows, "marks": [m.__dict__ for m in marks], "events": events}))
    failed = [r for r in rows if r[2] != 200]
    mismatched = [r for r in rows if r[2] == 200 and EXPECTED.get(r[3]) != r[4]]
    results = {
        kind: [analyse(m, rows, "1") | {"published_ms": published_ms(m, events)} for m in marks if m.kind == kind]
        for kind in ("alias", "rollout")
    }
    duration = max(r[0] for r in rows) - min(r[0] for r in rows) if rows else 0.0
    lat = sorted((r[1] - r[0]) * 1000 for r in rows if r[2] == 200)
    sends = sorted(r[0] for r in rows)
    gaps = [(b - a) * 1000 for a, b in zip(sends, sends[1:], strict=False)]

    table = Table(
        title=f"rollback → new requests on the old champion (client paced at {args.rate:g} req/s, "
        f"achieved {len(rows) / max(duration, 1e-9):.0f} req/s, median gap between sends "
        f"{pct(gaps, 50):.1f} ms)"
    )
    table.add_column("rollback of", justify="left")
    table.add_column("n", justify="right")
    table.add_column("figure (ms after the command)", justify="left")
    for col in ("median", "p95", "max"):
        table.add_column(col, justify="right")
    table.add_column(f"max < {args.limit_ms:g} ms", justify="center")
    verdict_ok = True
    for kind, label in (("alias", "champion v2 → previous v1"), ("rollout", "50% canary of v2 → v1")):
        rs = results[kind]
        if not rs:
            continue
        for key, name in (
            ("first_ms", "first v1 (sent)"),
            ("all_ms", "all v1 (sent)  ← claim"),
            ("all_seen_ms", "all v1 (answer seen)"),
            ("ack_ms", "API call round trip"),
            ("published_ms", "policy committed (audit log)"),
        ):
            vals = [r[key] for r in rs]
            ok = max(vals) < args.limit_ms
            if key == "all_ms":
                verdict_ok &= ok
            table.add_row(
                label if key == "first_ms" else "",
                str(len(rs)),
                name,
                f"{statistics.median(vals):.1f}",
                f"{pct(vals, 95):.1f}",
                f"{max(vals):.1f}",
                ("[green]yes[/]" if ok else "[red]no[/]") if key in ("all_ms", "all_seen_ms") else "",
            )
    console.print(table)

    detail = Table(title="per rollback (ms after the command)")
    for col in (
        "#",
        "kind",
        "requests after",
        "old-version answers",
        "in flight at end",
        "first v1",
        "all v1 sent",
        "all v1 seen",
        "ack",
        "policy committed",
    ):
        detail.add_column(col, justify="right")
    for i, m in enumerate(marks, 1):
        fig = analyse(m, rows, "1")
        detail.add_row(
            str(i),
            m.kind,
            str(fig["requests"]),
            str(fig["stragglers"]),
            str(fig["excluded"]),
            f"{fig['first_ms']:.1f}",
            f"{fig['all_ms']:.1f}",
            f"{fig['all_seen_ms']:.1f}",
            f"{fig['ack_ms']:.1f}",
            f"{published_ms(m, events):.1f}",
        )
    console.print(detail)
    phases: dict[str, int] = {}
    for ro in rollouts:
        phases[ro["status"].get("phase")] = phases.get(ro["status"].get("phase"), 0) + 1
    console.print(
        f"client: {len(rows)} requests in {duration:.1f} s, failed {len(failed)}, answers not matching their "
        f"x-changeover-version {len(mismatched)}, late sends {data['skipped']}, request latency p50 "
        f"{pct(lat, 50):.1f} ms p99 {pct(lat, 99):.1f} ms; rollouts by final phase {phases}"
    )
    console.print(
        f"machine: {os.cpu_count()} CPUs, load average (1 min) {load_before[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (other work shares the CPUs)"
    )
    console.print(
        f"server timers: controller tick {server.env['CHANGEOVER_CONTROLLER_TICK_S']} s, policy poll "
        f"{server.env['CHANGEOVER_POLICY_POLL_S']} s (a switch slower than the tick would mean the wake "
        "path failed)"
    )
    if failed:
        console.print(f"[red]failed requests, e.g. {failed[:3]}[/]")
    console.print(
        f"claim 'new requests on the old champion within {args.limit_ms:g} ms': "
        + ("[green]holds[/]" if verdict_ok else "[red]does NOT hold[/]")
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
