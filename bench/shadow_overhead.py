"""What a shadow costs the champion's users: p99 latency at a fixed open-loop rate around half
of saturation, without a shadow, with a shadow at sample 1.0, and with a shadow that hangs
on every call; failed user requests, the server's memory, and the mirror's outcome counts.

A real `changeover serve` (production timers) serves a scikit-learn logistic regression
(skops) as champion v1. The normal shadow is a decision tree on the same 30 features (v2);
the hanging shadow (v3) is a python-runtime model whose predict sleeps --hang-seconds on
every live call (any non-zero input). The gateway warms a version with predictions on
all-zero inputs before it routes to it; those return at once, because a version whose
warm-up hangs is a different failure (it blocks `shadow start`), not measured here.

Saturation is measured first with bench/loadgen.py (closed loop, separate process). Then a
recording client in a SEPARATE process sends an open loop at --share × saturation for the
whole measurement and keeps every request's send time, latency and status, while this
process switches the shadow on and off in short alternating segments. Each segment starts
--settle seconds after the gateway has adopted the new policy and is followed by --settle
seconds before the next switch; requests sent in between (the shadow start/stop API calls,
the policy change) are reported apart as "switching", so the steady cost of a shadow is not
mixed with the cost of starting or stopping one. Fine alternation exposes both sides to the
same background load, which matters on a shared machine; p99 is taken over the pooled
requests of each kind, with a 90% bootstrap interval over segments for the ratio. The
server's CPU time per request (from /proc, all its threads) is given per kind as well: on a
shared machine it is steadier than a tail latency.

Block 1 alternates (none, shadow); block 2 alternates (none, hang). The hanging block comes
last because hung calls keep the gateway's shadow threads for --hang-seconds, and while they
do every other shadow's mirrors are dropped as "saturated" too (the pool is shared).
Targets (issue 4): shadow ≤ 1.2; hanging shadow ≤ 1.1, zero failed user requests, flat memory.

    python bench/shadow_overhead.py [--segment 1.5] [--segments 10] [--share 0.5] [--hang-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

MB = 1024 * 1024


# ---- the recording client (a separate process) ---------------------------------------------


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams, for one fixed POST.

    The load generator shares the machine with the server; httpx spends about as much CPU per
    request as the server does, which on 2 cores shifts what is measured. This spends a
    fraction of it. A connection per request in flight, reused when idle, up to `bound`."""

    def __init__(self, url: str, body: bytes, bound: int) -> None:
        from urllib.parse import urlparse

        parts = urlparse(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("loopback only")
        self.host, self.port = parts.hostname, parts.port or 80
        self.request = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.bound = bound

    async def exchange(self, timeout: float = 30.0) -> tuple[int, dict[bytes, bytes], bytes]:
        """Status, headers (lower-case names) and body; status 0 when there is no answer
        (timeout, connection error). A kept-alive connection that the server closed before
        answering (its idle timeout) is replaced and the request sent once more, as HTTP
        clients do; a connection idle for over a second is not reused at all."""
        now = time.monotonic()
        while self.idle and now - self.idle[-1][2] > 1.0:
            self.idle.pop()[1].close()
        if self.idle:
            reader, writer, _ = self.idle.pop()
            result = await self._exchange(reader, writer, timeout, reused=True)
            if result is not None:
                return result
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout)
        except (TimeoutError, OSError):
            return 0, {}, b""
        return await self._exchange(reader, writer, timeout, reused=False) or (0, {}, b"")

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float, reused: bool
    ) -> tuple[int, dict[bytes, bytes], bytes] | None:
        try:
            writer.write(self.request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except asyncio.IncompleteReadError as exc:
            writer.close()
            return None if reused and not exc.partial else (0, {}, b"")  # None: closed while idle, retry
        except (ConnectionError, BrokenPipeError):
            writer.close()
            return None if reused else (0, {}, b"")
        except (TimeoutError, OSError, asyncio.LimitOverrunError):
            writer.close()
            return 0, {}, b""
        headers: dict[bytes, bytes] = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name:
                headers[name.strip().lower()] = value.strip()
        try:
            status = int(head[9:12])
            body = await asyncio.wait_for(reader.readexactly(int(headers.get(b"content-length", b"0"))), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            writer.close()
            return 0, {}, b""
        if headers.get(b"connection", b"").lower() == b"close" or len(self.idle) >= self.bound:
            writer.close()
        else:
            self.idle.append((reader, writer, time.monotonic()))
        return status, headers, body

    async def post(self, timeout: float = 30.0) -> int:
        return (await self.exchange(timeout))[0]

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


async def record(
    url: str, body: bytes, out: Path, stop: Path, ready: Path, rate: float, concurrency: int, max_seconds: float
) -> None:
    """Open loop at `rate`: every request's (send time, latency ms, status); bounded in time,
    requests and requests in flight (8 × concurrency; a send past the bound is counted, not
    queued). Each request in flight has its own connection, as independent users would: a
    queue forms in the server, not in a client-side connection pool."""
    rows: list[tuple[float, float, int]] = []
    unsent: list[float] = []
    bound = concurrency * 8
    client = RawHttp(url, body, bound)
    for _ in range(4):
        await client.post()
    ready.write_text("ok")

    async def one() -> None:
        sent = time.monotonic()
        status = await client.post()
        rows.append((sent, (time.monotonic() - sent) * 1000, status))

    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    next_at = start
    interval = 1.0 / rate
    n = 0
    while time.monotonic() - start < max_seconds and n < rate * max_seconds:
        if n % 10 == 0 and stop.exists():
            break
        now = time.monotonic()
        if now < next_at:
            await asyncio.sleep(next_at - now)
        next_at += interval
        n += 1
        if len(tasks) >= bound:
            unsent.append(time.monotonic())
            continue
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    client.close()
    out.write_text(json.dumps({"rows": rows, "unsent": unsent}))


class Recorder:
    """Starts the recording client in its own process; `finish()` returns its rows."""

    def __init__(
        self, url: str, body: dict, folder: Path, *, rate: float, concurrency: int = 16, max_seconds: float = 170.0
    ) -> None:
        self.folder = folder
        self.paths = {k: folder / f"recorder-{k}" for k in ("body", "out", "stop", "ready")}
        self.paths["body"].write_text(json.dumps(body))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--record",
                url,
                *(str(self.paths[k]) for k in ("body", "out", "stop", "ready")),
                "--rate",
                str(rate),
                "--concurrency",
                str(concurrency),
                "--max-seconds",
                str(max_seconds),
            ]
        )
        deadline = time.monotonic() + 60
        while not self.paths["ready"].exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the recording client did not start")
            time.sleep(0.05)

    def finish(self) -> tuple[list[tuple[float, float, int]], list[float]]:
        self.paths["stop"].write_text("stop")
        self.proc.wait(timeout=120)
        data = json.loads(self.paths["out"].read_text())
        return [tuple(r) for r in data["rows"]], data["unsent"]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def segment_stats(
    rows: list[tuple[float, float, int]], segments: list[tuple[float, float]], unsent: list[float] | None = None
) -> dict:
    """Pooled latency figures of the requests SENT inside the given segments."""
    starts = np.asarray([s for s, _ in segments])
    ends = np.asarray([e for _, e in segments])
    per_segment: list[np.ndarray] = []
    failed = 0
    sent = np.asarray([r[0] for r in rows]) if rows else np.zeros(0)
    lat = np.asarray([r[1] for r in rows]) if rows else np.zeros(0)
    ok = np.asarray([r[2] == 200 for r in rows]) if rows else np.zeros(0, dtype=bool)
    for s, e in zip(starts, ends, strict=True):
        inside = (sent >= s) & (sent < e)
        per_segment.append(lat[inside])
        failed += int(np.sum(inside & ~ok))
    pooled = np.concatenate(per_segment) if per_segment else np.zeros(0)
    unsent_n = sum(1 for u in unsent or [] if any(s <= u < e for s, e in segments))
    return {
        "segments": len(segments),
        "seconds": float(np.sum(ends - starts)),
        "requests": int(pooled.size),
        "failed": failed,
        "unsent": unsent_n,
        "p50": float(np.percentile(pooled, 50)) if pooled.size else float("nan"),
        "p90": float(np.percentile(pooled, 90)) if pooled.size else float("nan"),
        "p99": float(np.percentile(pooled, 99)) if pooled.size else float("nan"),
        "max": float(pooled.max()) if pooled.size else float("nan"),
        "per_segment": per_segment,
    }


def ratio_interval(
    a: list[np.ndarray], b: list[np.ndarray], q: float = 99, n: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """90% bootstrap interval of p_q(a)/p_q(b), resampling whole segments on each side."""
    rng = np.random.default_rng(seed)
    if not a or not b:
        return float("nan"), float("nan")
    ratios = []
    for _ in range(n):
        pa = np.concatenate([a[i] for i in rng.integers(0, len(a), len(a))])
        pb = np.concatenate([b[i] for i in rng.integers(0, len(b), len(b))])
        if pa.size and pb.size:
            ratios.append(np.percentile(pa, q) / np.percentile(pb, q))
    return float(np.percentile(ratios, 5)), float(np.percentile(ratios, 95))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def shadow_counts(url: str) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "changeover_shadow_calls":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[(sample.labels["version"], sample.labels["outcome"])] = sample.value
    return out


# ---- the benchmark ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segment", type=float, default=1.5, help="seconds of one measured segment")
    parser.add_argument("--segments", type=int, default=10, help="segments of each kind in each block")
    parser.add_argument(
        "--settle",
        type=float,
        default=0.25,
        help="seconds left out after the gateway adopts a policy and before the next switch "
        "(those requests are reported apart, as 'switching')",
    )
    parser.add_argument("--saturation-seconds", type=float, default=5.0)
    parser.add_argument(
        "--concurrency", type=int, default=16, help="closed-loop clients for saturation; connections of the open loop"
    )
    parser.add_argument("--share", type=float, default=0.5, help="open-loop rate as a share of saturation")
    parser.add_argument("--rate", type=float, default=None, help="a fixed rate instead of a share of saturation")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="how long the hanging shadow sleeps")
    parser.add_argument("--timeout", type=float, default=0.2, help="shadow timeout_s")
    parser.add_argument("--record", nargs=5, metavar=("URL", "BODY", "OUT", "STOP", "READY"), help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=170.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.record:
        url, body, out, stop, ready = args.record
        asyncio.run(
            record(
                url,
                Path(body).read_bytes(),
                Path(out),
                Path(stop),
                Path(ready),
                args.rate,
                args.concurrency,
                args.max_seconds,
            )
        )
        return

    from common import TOKEN, ServerProcess, body_file, load, tmpdir
    from rich.console import Console
    from rich.table import Table

    from modelfiles import breast_cancer, python_model, skops_classifiers, v2_request

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
    marks: dict[tuple[str, str], list[tuple[float, float]]] = {}
    rss_log: list[tuple[float, int]] = []
    cpu: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    counts_at: dict[str, dict[tuple[str, str], float]] = {}
    try:
        v1, v2 = skops_classifiers(work / "models")
        hang = python_model(
            work / "hang",
            f"if np.any(inputs['input']):  # live traffic; the gateway warms a version on all-zero inputs\n"
            f"    time.sleep({args.hang_seconds})\n"
            f"return {{'label': np.zeros(inputs['input'].shape[0], dtype=np.int64)}}",
            inputs="[{name: input, datatype: FP64, shape: [-1, 30]}]",
            outputs="[{name: label, datatype: INT64, shape: [-1]}]",
        )
        x, _ = breast_cancer()
        request = v2_request(x[:1])
        with console.status("starting changeover and pushing three versions…"):
            server.start()
            from changeover.cli.client import Client  # the CLI's own client, in-process (no CLI start-ups)

            pusher = Client(url=server.url, token=TOKEN)
            for path in (v1, v2, hang):  # the tree holds a type outside skops' default trusted set; hang is code
                pusher.push(path, name="m", labels={}, runtime=None, trust=path == hang,
                            trust_types=("sklearn.tree._tree.Tree",) if path == v2 else ())
            pusher.close()
        assert server.proc is not None
        pid = server.proc.pid
        api = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=60)
        api.put("/api/models/m/aliases/champion", json={"version": 1}).raise_for_status()
        url = f"{server.url}/v2/models/m/infer"

        def policy_has(shadows: set[int]) -> bool:
            status = api.get("/api/status").json()
            model = next(m for m in status["models"] if m["model"] == "m")
            policy = model["policy"] or {}
            adopted = status["gateway"]["generations"].get("m", -1) >= policy.get("generation", 0)
            return adopted and policy.get("champion") == 1 and {s["version"] for s in policy["shadows"]} == shadows

        def wait_policy(shadows: set[int]) -> None:
            deadline = time.monotonic() + 30
            while not policy_has(shadows):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the policy never showed shadows {shadows}")
                time.sleep(0.05)

        active: set[str] = set()

        def set_shadow(kind: str) -> None:
            want = {"none": None, "shadow": "2", "hang": "3"}[kind]
            for version in list(active):
                if version != want:
                    api.delete("/api/models/m/shadows", params={"version": version}).raise_for_status()
                    active.discard(version)
            if want and want not in active:
                api.post(
                    "/api/models/m/shadows", json={"version": want, "sample": 1.0, "timeout_s": args.timeout}
                ).raise_for_status()
                active.add(want)
            wait_policy({int(want)} if want else set())

        with console.status("warming up, then measuring saturation (closed loop, bench/loadgen.py)…"):
            wait_policy(set())
            body_path = body_file(request, work)
            load(url, body_path, seconds=2, concurrency=args.concurrency)
            saturation = load(url, body_path, seconds=args.saturation_seconds, concurrency=args.concurrency)
        rate = args.rate or max(1.0, round(saturation["rps"] * args.share))
        console.print(
            f"saturation: {saturation['rps']:.0f} req/s with {args.concurrency} closed-loop clients "
            f"(p50 {saturation['p50_ms']:.1f} ms, p99 {saturation['p99_ms']:.1f} ms) → open loop at "
            f"{rate:g} req/s"
        )

        stop_sampling = threading.Event()

        def sample_rss() -> None:
            while not stop_sampling.is_set():
                rss_log.append((time.monotonic(), rss_bytes(pid)[0]))
                stop_sampling.wait(0.5)

        sampler = threading.Thread(target=sample_rss, daemon=True)
        recorder = Recorder(url, request, work, rate=rate, concurrency=args.concurrency)
        sampler.start()
        time.sleep(1.0)
        for block, other in (("shadow", "shadow"), ("hang", "hang")):
            counts_at[f"{block} start"] = shadow_counts(server.url)
            kinds = ["none", other] * args.segments
            with console.status(f"block {block}: alternating none / {other}…") as status_line:
                switch_from = time.monotonic()
                for i, kind in enumerate(kinds):
                    set_shadow(kind)  # returns once the gateway serves the new policy
                    time.sleep(args.settle)
                    begin, cpu0 = time.monotonic(), cpu_seconds(pid)
                    marks.setdefault((block, "switching"), []).append((switch_from, begin))
                    time.sleep(args.segment)
                    end = time.monotonic()
                    marks.setdefault((block, kind), []).append((begin, end))
                    time.sleep(args.settle)  # requests of this segment finish before the next switch
                    cpu.setdefault((block, kind), []).append((begin, time.monotonic(), cpu_seconds(pid) - cpu0))
                    switch_from = end
                    status_line.update(f"block {block}: segment {i + 1}/{len(kinds)} ({kind})")
            set_shadow("none")
            marks[(block, "switching")].append((switch_from, time.monotonic()))
            counts_at[f"{block} end"] = shadow_counts(server.url)
        rows, unsent = recorder.finish()
        stop_sampling.set()
        sampler.join()
        final_rss, final_hwm = rss_bytes(pid)
    finally:
        if recorder is not None:
            recorder.kill()
        stop_started = time.monotonic()
        server.stop()
        stop_s = time.monotonic() - stop_started
        killed = server.proc is not None and server.proc.returncode == -9

    stats = {key: segment_stats(rows, segs, unsent) for key, segs in marks.items()}

    def rss_between(t0: float, t1: float) -> list[int]:
        return [v for t, v in rss_log if t0 <= t <= t1]

    def cpu_per_request(block: str, kind: str) -> str:
        spans = cpu.get((block, kind))
        if not spans:
            return "-"
        seconds = sum(c for _, _, c in spans)
        requests = sum(1 for r in rows for a, b, _ in spans if a <= r[0] < b)
        return f"{1000 * seconds / max(requests, 1):.2f}"

    table = Table(
        title=f"champion v1 (skops logistic regression) at {rate:g} req/s open loop; segments of "
        f"{args.segment:g}s alternating; shadow timeout {args.timeout:g}s"
    )
    for col in (
        "block",
        "shadow",
        "segments",
        "requests",
        "failed",
        "not sent",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "RSS first→last MB",
        "RSS max MB",
        "server CPU ms/request",
    ):
        table.add_column(col, justify="left" if col in ("block", "shadow") else "right")
    order = {"none": 0, "shadow": 1, "hang": 1, "switching": 2}
    for (block, kind), st in sorted(stats.items(), key=lambda kv: (kv[0][0] == "hang", order[kv[0][1]])):
        segs = marks[(block, kind)]
        rss = rss_between(segs[0][0], segs[-1][1]) or [0]
        table.add_row(
            block,
            {
                "none": "none",
                "shadow": "v2 tree",
                "hang": "v3 hangs",
                "switching": "switching*",
            }[kind],
            str(st["segments"]),
            str(st["requests"]),
            str(st["failed"]),
            str(st["unsent"]),
            f"{st['p50']:.2f}",
            f"{st['p90']:.2f}",
            f"{st['p99']:.2f}",
            f"{st['max']:.1f}",
            f"{rss[0] / MB:.1f}→{rss[-1] / MB:.1f}",
            f"{max(rss) / MB:.1f}",
            cpu_per_request(block, kind),
        )
    console.print(table)
    console.print(
        "shadows at sample 1.0; * switching = requests sent while a shadow was being started or stopped "
        "(API call, policy change, settle), kept out of both sides"
    )

    def verdict(ok: bool) -> str:
        return "[green]yes[/]" if ok else "[red]no[/]"

    summary = Table(title="shadow overhead on the champion (issue 4 targets)")
    for col in ("figure", "value", "target", "met"):
        summary.add_column(col, justify="left" if col == "figure" else "right")
    for block, kind, target in (("shadow", "shadow", 1.2), ("hang", "hang", 1.1)):
        a, b = stats[(block, kind)], stats[(block, "none")]
        ratio = a["p99"] / b["p99"]
        low, high = ratio_interval(a["per_segment"], b["per_segment"])
        name = "shadow at sample 1.0" if kind == "shadow" else "hanging shadow"
        summary.add_row(
            f"p99 ratio, {name} / none",
            f"{ratio:.2f}  (90% CI {low:.2f}–{high:.2f})",
            f"≤ {target:g}",
            verdict(ratio <= target),
        )
        summary.add_row(
            f"server CPU per request, {name} / none",
            f"{cpu_per_request(block, kind)} / {cpu_per_request(block, 'none')} ms",
            "",
            "",
        )
        p50r = a["p50"] / b["p50"]
        summary.add_row(f"p50 ratio, {name} / none", f"{p50r:.2f}", "", "")
    hang_failed = stats[("hang", "hang")]["failed"]
    all_failed = sum(1 for r in rows if r[2] != 200)
    summary.add_row(
        "failed user requests while the shadow hangs (non-200 or no answer)",
        str(hang_failed),
        "0",
        verdict(hang_failed == 0),
    )
    summary.add_row("failed user requests, whole run", f"{all_failed} of {len(rows)}", "0", verdict(all_failed == 0))
    if unsent:
        by_kind: dict[str, int] = {}
        for u in unsent:
            kind = next((f"{k[0]}/{k[1]}" for k, segs in marks.items() for a, b in segs if a <= u < b), "outside")
            by_kind[kind] = by_kind.get(kind, 0) + 1
        summary.add_row(
            "[yellow]sends skipped: 8 × concurrency already in flight (server behind the offered rate)[/]",
            ", ".join(f"{k}: {n}" for k, n in sorted(by_kind.items())),
            "",
            "",
        )
    hang_segs = marks[("hang", "hang")] + marks[("hang", "none")]
    t0, t1 = min(s for s, _ in hang_segs), max(e for _, e in hang_segs)
    rss = rss_between(t0, t1)
    growth = (rss[-1] - rss[0]) / MB
    summary.add_row(
        "server RSS across the hanging block (first → last, max)",
        f"{rss[0] / MB:.1f} → {rss[-1] / MB:.1f} MB ({growth:+.1f}), max {max(rss) / MB:.1f}",
        "flat",
        verdict(abs(growth) < 0.05 * rss[0] / MB),
    )
    first_block = [v for t, v in rss_log if t < t0]
    if first_block:
        summary.add_row(
            "server RSS across the first block (for comparison)",
            f"{first_block[0] / MB:.1f} → {first_block[-1] / MB:.1f} MB "
            f"({(first_block[-1] - first_block[0]) / MB:+.1f})",
            "",
            "",
        )
    summary.add_row("server RSS at the end / peak (VmHWM)", f"{final_rss / MB:.1f} / {final_hwm / MB:.1f} MB", "", "")
    for block, version in (("shadow", "2"), ("hang", "3")):
        at_start, at_end = counts_at[f"{block} start"], counts_at[f"{block} end"]
        delta = {o: at_end.get((v, o), 0) - at_start.get((v, o), 0) for (v, o) in at_end if v == version}
        summary.add_row(
            f"changeover_shadow_calls_total, v{version} during block {block}",
            ", ".join(f"{o}={n:.0f}" for o, n in sorted(delta.items()) if n) or "-",
            "",
            "",
        )
    slow = np.percentile([r[1] for r in rows], 99) if rows else 0.0
    where: dict[str, int] = {}
    for r in rows:
        if r[1] > slow:
            kind = next((f"{k[0]}/{k[1]}" for k, segs in marks.items() for a, b in segs if a <= r[0] < b), "outside")
            where[kind] = where.get(kind, 0) + 1
    summary.add_row(
        f"where the slowest 1% of all requests (> {slow:.0f} ms) were sent",
        ", ".join(f"{k}: {n}" for k, n in sorted(where.items(), key=lambda kv: -kv[1])),
        "",
        "",
    )
    summary.add_row(
        "server stop (SIGTERM) with hung shadow threads",
        f"{stop_s:.1f} s" + (" — killed (SIGKILL after 15 s)" if killed else ""),
        "",
        "",
    )
    console.print(summary)
    behind = [
        f"{b}/{k}" for (b, k), st in stats.items() if k == "none" and (st["unsent"] or st["p90"] > 10 * st["p50"])
    ]
    if behind:
        console.print(
            f"[yellow]the server fell behind the offered rate even without a shadow ({', '.join(behind)}): the "
            "machine's load changed after saturation was measured, and those figures measure queueing; rerun, "
            "or lower --share[/]"
        )
    console.print(
        f"wall time {time.monotonic() - started:.0f} s; machine: {os.cpu_count()} CPUs, load average "
        f"(1 min) {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after (other work shares the "
        f"CPUs; the load generator runs on the same machine)"
    )
    if all_failed:
        codes: dict[int, int] = {}
        for r in rows:
            if r[2] != 200:
                codes[r[2]] = codes.get(r[2], 0) + 1
        console.print(f"[red]failed user requests by status[/] {codes} (0 = client timeout or connection error)")
        for r in sorted(rows):
            if r[2] != 200:
                where_sent = next(
                    (f"{k[0]}/{k[1]}" for k, segs in marks.items() for a, b in segs if a <= r[0] < b),
                    "between segments",
                )
                console.print(f"  status {r[2]} after {r[1]:.1f} ms, sent in {where_sent}")
        errors = [
            line
            for line in server.log.read_text(errors="replace").splitlines()
            if any(w in line for w in ("Traceback", "Error", "ERROR", "Exception", " 500 ", " 503 "))
        ]
        console.print("server log lines about errors (last 20):\n  " + "\n  ".join(errors[-20:]) if errors else "")
        console.print(f"server log kept: {server.log}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
