"""How fast a failing canary is rolled back, end to end on a real server (issue 9, "Targets"):

    A canary failing >= 30% of its requests is rolled back within 3 metric windows of the
    first failures (about 15 s at defaults) whatever the bake; 100% errors at 1% weight:
    <= 50 failed user requests at 500 req/s.

A real `changeover serve` (production timers: metric window 5 s, controller tick 1 s, policy
poll 2 s; fresh home per scenario) serves a scikit-learn logistic regression on iris (skops)
as champion v1. The candidate v2 is a python-runtime folder with the same signature whose
predict() raises on a fixed share of its inputs, chosen by a hash of the input bytes (so it is
deterministic per input; the gateway's all-zero warm-up input always passes, or the version
would not load). The rollout is started through the management API (`POST /api/rollouts`):
no gate, no shadow, the default judge, bake 10m.

    A: candidate raises on 34% of its requests, canary steps [20]
    B: candidate raises on 100% of its requests, canary steps [1, 5, 25, 50]

The server records no requests (CHANGEOVER_RECORD_RATE=0, --record-rate): otherwise `apply`'s
compatibility step replays recorded requests through the candidate and refuses it before any
traffic, a different defence; what is measured here is the canary judge catching failures that
recorded traffic did not show. Other sessions may share the machine: each scenario waits (up to
--wait-quiet s) for the CPUs to be quiet and reports the CPU other processes used meanwhile.
--code-from REV serves a snapshot of a commit's src/ instead of the working tree.

Load comes from an asyncio httpx client in a SEPARATE process (loopback only): open loop at
--rate requests per second (sends are due on a fixed schedule whatever the answers; at most
--max-inflight out at once, a due send beyond that is skipped and counted), each request a
different iris row with a little noise and a different sticky key (`x-changeover-key`), so
the router splits by weight. It stops by itself after --max-seconds or rate × max-seconds
requests, or when told to (a few seconds after the rollback). Every request's send time,
answer time (CLOCK_MONOTONIC, shared across processes), status and `x-changeover-version`
are kept. httpx costs the client several ms of CPU per request, about twice the server's, on a
2-core machine; `--client-kind raw` (a minimal HTTP/1.1 client over asyncio streams) costs a
tenth of that and leaves the CPU to the server. Meanwhile this process polls `GET /api/rollouts/{id}` every --poll seconds.

Per scenario:
  first failure   — when the first 5xx answered by the candidate came back;
  rollback commit — when the controller committed the rolled-back status (the rollout's
                    `updated_at`), the primary figure; also when the poll first saw it, and
                    the send time from which no request was answered by the candidate;
  windows         — (rollback commit − first failure) / window_seconds;
  failed requests — user-facing 5xx (all of the candidate's, and any of the champion's);
  rate            — requests answered per second of sending, and the skipped sends.
No rollback within the scenario's time is a FAIL, with the figures as lower bounds.

    .venv/bin/python bench/canary_failfast.py [--rate 500] [--max-seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx

REPO = Path(__file__).resolve().parent.parent
MODEL = "iris"
KEY_HEADER = "x-changeover-key"
TERMINAL = {"rolled_back", "promoted", "aborted", "failed"}

PREDICTOR = '''"""Benchmark candidate: answers like an iris classifier, raises on a fixed share of inputs."""

import hashlib

import numpy as np

FAIL_FRACTION = {fraction!r}


class Model:
    def load(self, folder):
        self.folder = folder

    def predict(self, inputs):
        x = np.ascontiguousarray(inputs["input"], dtype=np.float64)
        if x.any():  # the gateway warms a version on all-zero inputs: those pass, so it loads
            digest = hashlib.blake2b(x.tobytes(), digest_size=8).digest()
            if int.from_bytes(digest, "big") / 2.0**64 < FAIL_FRACTION:
                raise RuntimeError("benchmark candidate: this input fails")
        label = (x[:, 2] > 2.5).astype(np.int64) + (x[:, 2] > 4.9).astype(np.int64)
        return {{"label": label, "probabilities": np.eye(3)[label]}}
'''

MODEL_YAML = """runtime: python
predictor: predictor:Model
inputs: [{name: input, datatype: FP64, shape: [-1, 4]}]
outputs: [{name: label, datatype: INT64, shape: [-1]}, {name: probabilities, datatype: FP64, shape: [-1, 3]}]
"""


# ---- the load client (a separate process) --------------------------------------------------


def iris_rows() -> list[list[float]]:
    from sklearn.datasets import load_iris

    return load_iris().data.tolist()


class RawClient:
    """HTTP/1.1 keep-alive POSTs over asyncio streams, for --client raw: a fraction of httpx's CPU
    per request, so that more of a 2-core machine is left to the server. One connection per
    request in flight, reused when idle (at most `bound` kept); a kept connection that the server
    closed meanwhile is replaced and the request sent once more."""

    def __init__(self, url: str, bound: int) -> None:
        parts = urlparse(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"refusing to send load to {url}: loopback only")
        self.host, self.port, self.path = parts.hostname, parts.port or 80, parts.path
        self.bound = bound
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.last_error = ""

    def request(self, body: bytes, headers: dict[str, str]) -> bytes:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def post(self, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, dict[bytes, bytes]]:
        data = self.request(body, headers)
        while self.idle:
            reader, writer = self.idle.pop()
            answer = await self._exchange(reader, writer, data, timeout, reused=True)
            if answer is not None:
                return answer
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout)
        except (TimeoutError, OSError) as exc:
            self.last_error = f"connect: {type(exc).__name__}"
            return 0, {}
        return await self._exchange(reader, writer, data, timeout, reused=False) or (0, {})

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, timeout: float, reused: bool
    ) -> tuple[int, dict[bytes, bytes]] | None:
        try:
            writer.write(data)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            headers: dict[bytes, bytes] = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            status = int(head[9:12])
            await asyncio.wait_for(reader.readexactly(int(headers.get(b"content-length", b"0"))), timeout)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            writer.close()
            partial = getattr(exc, "partial", b"")
            self.last_error = type(exc).__name__
            return None if reused and not partial else (0, {})  # None: closed while idle, send again
        except (TimeoutError, OSError, ValueError, asyncio.LimitOverrunError) as exc:
            writer.close()
            self.last_error = type(exc).__name__
            return 0, {}
        if headers.get(b"connection", b"").lower() == b"close" or len(self.idle) >= self.bound:
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, headers

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def client_main(
    url: str,
    out: Path,
    stop: Path,
    ready: Path,
    rate: float,
    max_seconds: float,
    max_inflight: int,
    connections: int,
    seed: int,
    kind: str = "httpx",
) -> None:
    if urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to send load to {url}: loopback only")
    rows_iris = iris_rows()
    rng = random.Random(seed)
    rows: list[tuple[float, float, int, int]] = []  # sent, answered, status (0: no answer), version (-1: none)
    skipped = 0
    no_answer: dict[str, int] = {}  # why a request got no answer, by exception name
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    raw = RawClient(url, connections) if kind == "raw" else None
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        def body(index: int) -> bytes:
            base = rows_iris[index % len(rows_iris)]
            data = [round(v + rng.uniform(-0.05, 0.05), 4) for v in base]
            return json.dumps(
                {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": data}]}
            ).encode()

        async def one(index: int) -> None:
            content = body(index)
            headers = {"content-type": "application/json", KEY_HEADER: f"user-{seed}-{index}"}
            sent = time.monotonic()
            try:
                if raw is not None:
                    status, got = await raw.post(content, headers, 10.0)
                    version = int(got.get(b"x-changeover-version", b"-1"))
                    if status == 0:
                        no_answer[raw.last_error] = no_answer.get(raw.last_error, 0) + 1
                else:
                    r = await client.post(url, content=content, headers=headers)
                    status, version = r.status_code, int(r.headers.get("x-changeover-version", "-1"))
            except (httpx.HTTPError, ValueError) as exc:
                status, version = 0, -1
                no_answer[type(exc).__name__] = no_answer.get(type(exc).__name__, 0) + 1
            rows.append((sent, time.monotonic(), status, version))

        # open the connections before the clock starts
        await asyncio.gather(*(one(-i - 1) for i in range(min(connections, 16))))
        rows.clear()
        ready.write_text("ok")
        import resource

        u0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.monotonic()
        max_requests = int(rate * max_seconds)
        tasks: set[asyncio.Task[None]] = set()
        due_total = 0
        next_stop_check = start
        while True:
            now = time.monotonic()
            if now - start >= max_seconds or due_total >= max_requests:
                break
            if now >= next_stop_check:
                if stop.exists():
                    break
                next_stop_check = now + 0.05
            due = min(int((now - start) * rate) + 1, max_requests) - due_total
            for _ in range(due):  # open loop: a late loop sends what fell due at once
                if len(tasks) >= max_inflight:
                    skipped += 1
                else:
                    task = asyncio.create_task(one(due_total))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                due_total += 1
            await asyncio.sleep(max(0.0, start + (due_total) / rate - time.monotonic()))
        end = time.monotonic()
        if tasks:
            await asyncio.wait(tasks, timeout=15)
        if raw is not None:
            raw.close()
    u1 = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(
        json.dumps(
            {
                "rows": rows,
                "skipped": skipped,
                "start": start,
                "end": end,
                "cpu_s": u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime,
                "no_answer": no_answer,
            }
        )
    )


# ---- the orchestrator ----------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    fail_fraction: float
    steps: list[float]
    bake: str = "10m"


@dataclass
class Result:
    scenario: Scenario
    rate_asked: float
    window_s: float
    rows: list[tuple[float, float, int, int]] = field(default_factory=list)
    skipped: int = 0
    load_start: float = 0.0
    load_end: float = 0.0
    t_rollout: float = 0.0  # monotonic: just before POST /api/rollouts
    polls: list[tuple[float, float, str, float | None, float | None]] = field(default_factory=list)
    rollout: dict = field(default_factory=dict)
    log_errors: list[str] = field(default_factory=list)
    log_failures: int = 0
    server_exit: int | None = None
    clock_offset: float = 0.0  # time.time() - time.monotonic()
    quiet_share: float = float("nan")  # other work's CPU share just before the scenario
    cpu_others: float = 0.0  # CPU seconds used by processes not ours during the scenario
    cpu_seconds: float = 0.0  # wall seconds of the scenario
    server_cpu: float = float("nan")  # CPU seconds of the server process (all its threads) at the end
    client_cpu: float = float("nan")  # CPU seconds of the load client
    t_rollout_ack: float = 0.0  # monotonic: when POST /api/rollouts answered
    no_answer: dict = field(default_factory=dict)  # client: requests with no answer, by cause
    refused: str | None = None  # the rollout was refused before any traffic (compatibility step)
    plan: object = None  # what `apply` answered about the samples the first step needs


def cpu_busy() -> tuple[float, float]:
    """Machine-wide (busy, total) CPU seconds since boot, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return (sum(fields) - idle) / hz, sum(fields) / hz


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a running process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process and of its children that ended (server, client, CLI calls)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def wait_quiet(console, max_wait: float, threshold: float = 0.25) -> float:
    """Wait (up to max_wait s) until other work uses under `threshold` of the machine over 3 s;
    return the last share seen. Other sessions may run test suites on this machine."""
    deadline = time.monotonic() + max_wait
    with console.status("waiting for a quiet machine…") as line:
        while True:
            b0, t0 = cpu_busy()
            time.sleep(3.0)
            b1, t1 = cpu_busy()
            share = (b1 - b0) / max(1e-9, t1 - t0)
            if share < threshold or time.monotonic() >= deadline:
                return share
            line.update(
                f"waiting for a quiet machine: other work uses {share:.0%} of the CPUs "
                f"(at most {deadline - time.monotonic():.0f} s more)"
            )


def wait_for(predicate, timeout: float, what: str, pause: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(pause)
    raise RuntimeError(f"timed out waiting for {what}")


def write_models(work: Path, fail_fraction: float) -> tuple[Path, Path]:
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    champion = work / "champion.skops"
    sio.dump(LogisticRegression(max_iter=1000).fit(x, y), champion)
    candidate = work / "candidate"
    candidate.mkdir()
    (candidate / "model.yaml").write_text(MODEL_YAML)
    (candidate / "predictor.py").write_text(PREDICTOR.format(fraction=fail_fraction))
    return champion, candidate


def run_scenario(sc: Scenario, args: argparse.Namespace, console) -> Result:
    from common import TOKEN, ServerProcess, tmpdir

    work = tmpdir()
    env = {
        "CHANGEOVER_WINDOW_SECONDS": str(args.window_seconds),
        "CHANGEOVER_CONTROLLER_TICK_S": "1.0",
        "CHANGEOVER_POLICY_POLL_S": "2.0",
        # No recorded requests: `apply`'s compatibility replay would refuse this candidate before
        # any traffic (a different defence); the canary judge must catch what replay did not see.
        "CHANGEOVER_RECORD_RATE": str(args.record_rate),
    }
    if args.code_from:  # a snapshot of a commit's src/, not the working tree that others are editing
        code = work / "code"
        code.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.code_from, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
        env["PYTHONPATH"] = str(code / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    server = ServerProcess(work / "home", env=env)
    res = Result(sc, args.rate, args.window_seconds, clock_offset=time.time() - time.monotonic())
    client_proc: subprocess.Popen[bytes] | None = None
    server_cpu0 = float("nan")
    res.quiet_share = wait_quiet(console, args.wait_quiet) if args.wait_quiet > 0 else float("nan")
    busy0, total0 = cpu_busy()
    own0 = own_cpu()
    try:
        champion, candidate = write_models(work, sc.fail_fraction)
        with console.status(f"{sc.name}: starting changeover, pushing champion and candidate…"):
            server.start()
            server.cli("models", "push", str(champion), "--name", MODEL, check=True)
            server.cli("models", "push", str(candidate), "--name", MODEL, "--trust", check=True)  # python: code
            api = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)
            api.put(f"/api/models/{MODEL}/aliases/champion", json={"version": 1, "reason": "bench"}).raise_for_status()
            probe = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}
            wait_for(
                lambda: (
                    (r := httpx.post(f"{server.url}/v2/models/{MODEL}/infer", json=probe, timeout=5)).status_code == 200
                    and r.headers.get("x-changeover-version") == "1"
                ),
                20,
                "v1 to serve",
            )
        stop, ready, out = work / "stop", work / "ready", work / "client.json"
        client_proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--client",
                f"{server.url}/v2/models/{MODEL}/infer",
                str(out),
                str(stop),
                str(ready),
                "--rate",
                str(args.rate),
                "--max-seconds",
                str(args.max_seconds),
                "--max-inflight",
                str(args.max_inflight),
                "--connections",
                str(args.connections),
                "--seed",
                str(args.seed),
                "--client-kind",
                args.client_kind,
            ]
        )
        wait_for(lambda: ready.exists() or client_proc.poll() is not None, 60, "the load client")
        if client_proc.poll() is not None:
            raise RuntimeError(f"the load client exited with {client_proc.returncode}")
        load_deadline = time.monotonic() + args.max_seconds
        server_cpu0 = proc_cpu(server.proc.pid)
        time.sleep(args.baseline)  # the champion serves alone first
        spec = {"model": MODEL, "candidate": "2", "canary": {"steps": sc.steps, "bake": sc.bake}}
        res.t_rollout = time.monotonic()
        # apply runs the compatibility step first (a worker process): it may take long under load
        try:
            r = api.post("/api/rollouts", json={"spec": spec}, timeout=max(60.0, args.max_seconds))
        except httpx.TimeoutException:
            res.refused = f"POST /api/rollouts did not answer within {max(60.0, args.max_seconds):g} s"
            stop.write_text("stop")
            client_proc.wait(timeout=60)
            return res
        res.t_rollout_ack = time.monotonic()
        if r.status_code == 409 and "compat" in r.json():
            res.refused = r.json().get("error", r.text)
            stop.write_text("stop")
            client_proc.wait(timeout=60)
            return res
        if r.status_code != 201:
            raise RuntimeError(f"rollout refused: {r.status_code} {r.text}")
        rid = r.json()["id"]
        res.plan = r.json().get("plan")
        after_end: float | None = None
        with console.status(
            f"{sc.name}: rollout {rid} of v2 (fails {sc.fail_fraction:.0%}) at steps {sc.steps}…"
        ) as line:
            while client_proc.poll() is None and time.monotonic() < load_deadline + 30:
                t0 = time.monotonic()
                try:
                    ro = api.get(f"/api/rollouts/{rid}").json()
                    st = ro["status"]
                    phase, weight, updated = st.get("phase"), st.get("weight"), ro.get("updated_at")
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    phase, weight, updated = f"poll error: {exc}", None, None
                t1 = time.monotonic()
                res.polls.append((t0, t1, phase, weight, updated))
                line.update(
                    f"{sc.name}: rollout {rid}: {phase} at {weight}% — {t1 - res.t_rollout:.0f} s "
                    f"of at most {load_deadline - res.t_rollout:.0f} s"
                )
                if phase in TERMINAL and after_end is None:
                    after_end = t1 + args.after  # keep the load a little longer: does the candidate still serve?
                if after_end is not None and t1 >= after_end:
                    break
                time.sleep(max(0.0, args.poll - (time.monotonic() - t0)))
            stop.write_text("stop")
            client_proc.wait(timeout=60)
        data = json.loads(out.read_text())
        res.rows = [tuple(x) for x in data["rows"]]
        res.skipped, res.load_start, res.load_end = data["skipped"], data["start"], data["end"]
        res.client_cpu = data.get("cpu_s", float("nan"))
        res.no_answer = data.get("no_answer", {})
        res.rollout = api.get(f"/api/rollouts/{rid}").json()
    finally:
        if client_proc is not None and client_proc.poll() is None:
            client_proc.terminate()
            client_proc.wait(timeout=10)
        if server.proc is not None:
            res.server_exit = server.proc.poll()  # None: still running, as it should be
            res.server_cpu = proc_cpu(server.proc.pid) - server_cpu0 if res.server_exit is None else float("nan")
        server.stop()
        if server.log.exists():
            text = server.log.read_text(errors="replace").splitlines()
            res.log_failures = sum("prediction failed in" in ln for ln in text)
            res.log_errors = [
                ln
                for ln in text
                if ("ERROR" in ln or "CRITICAL" in ln or "Exception" in ln) and "prediction failed in" not in ln
            ]
        busy1, total1 = cpu_busy()
        res.cpu_others = max(0.0, (busy1 - busy0) - (own_cpu() - own0))
        res.cpu_seconds = (total1 - total0) / (os.cpu_count() or 1)
        if args.keep:
            console.print(f"kept {work} (server log {server.log})")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return res


def figures(res: Result) -> dict:
    rows = sorted(res.rows, key=lambda r: r[0])
    cand = 2  # champion v1, candidate v2
    f: dict = {"requests": len(rows), "skipped": res.skipped}
    duration = max(1e-9, res.load_end - res.load_start)
    f["rate"] = len(rows) / duration
    during = [r for r in rows if r[0] >= res.t_rollout]
    f["rate_canary"] = len(during) / max(1e-9, res.load_end - res.t_rollout) if during else 0.0
    f["no_answer"] = sum(1 for r in rows if r[2] == 0)
    f["other_status"] = sorted({r[2] for r in rows if r[2] not in (0, 200) and r[2] < 500})
    f["cand_answers"] = sum(1 for r in rows if r[3] == cand)
    f["cand_5xx"] = sum(1 for r in rows if r[3] == cand and r[2] >= 500)
    f["champ_5xx"] = sum(1 for r in rows if r[3] != cand and r[2] >= 500)
    f["failed"] = sum(1 for r in rows if r[2] >= 500)
    fails = [r for r in rows if r[3] == cand and r[2] >= 500]
    f["first_cand"] = min((r[1] for r in rows if r[3] == cand), default=None)
    f["first_cand_sent"] = min((r[0] for r in rows if r[3] == cand), default=None)
    f["first_fail"] = min((r[1] for r in fails), default=None)
    # the controller's commit of the rolled-back status, and when the poll saw it
    phase = res.rollout.get("status", {}).get("phase")
    f["phase"] = phase
    f["rolled_back"] = phase == "rolled_back"
    f["t_commit"] = f["t_seen"] = f["t_seen_lo"] = None
    prev_end = None
    for t0, t1, ph, _w, updated in res.polls:
        if ph in TERMINAL:
            f["t_seen"], f["t_seen_lo"] = t1, prev_end if prev_end is not None else t0
            if updated is not None:
                f["t_commit"] = updated - res.clock_offset
            break
        prev_end = t1
    if f["t_commit"] is None and f["rolled_back"]:
        f["t_commit"] = res.rollout["updated_at"] - res.clock_offset
    # from traffic: the send time from which nothing was answered by the candidate
    last_cand = max((i for i, r in enumerate(rows) if r[3] == cand), default=None)
    f["t_all_champion"] = rows[last_cand + 1][0] if last_cand is not None and last_cand + 1 < len(rows) else None
    f["last_cand_answer"] = max((r[1] for r in rows if r[3] == cand), default=None)
    if f["rolled_back"] and f["t_commit"] is not None:
        f["failed_before"] = sum(1 for r in fails if r[0] < f["t_commit"])
    else:
        f["failed_before"] = len(fails)
    t_ref = f["first_fail"]
    f["elapsed"] = (f["t_commit"] - t_ref) if (t_ref is not None and f["rolled_back"] and f["t_commit"]) else None
    f["elapsed_lower"] = (res.load_end - t_ref) if t_ref is not None else None  # when there was no rollback
    f["windows"] = f["elapsed"] / res.window_s if f["elapsed"] is not None else None
    canary = [
        r
        for r in rows
        if r[0] >= (f["first_cand_sent"] or res.t_rollout) and (f["t_commit"] is None or r[0] < f["t_commit"])
    ]
    f["cand_share"] = sum(1 for r in canary if r[3] == cand) / max(1, len(canary))
    f["cand_error_rate"] = f["cand_5xx"] / max(1, f["cand_answers"])
    lat = sorted((r[1] - r[0]) * 1000 for r in rows if r[2] == 200)
    f["p50_ms"] = lat[len(lat) // 2] if lat else float("nan")
    f["p99_ms"] = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
    f["verdicts"] = [(a.get("kind"), a.get("outcome"), a.get("at")) for a in res.rollout.get("analyses", [])]
    f["verdicts_text"] = ", ".join(f"{k} {o}" for k, o, _a in f["verdicts"])
    reason = ""
    for e in res.rollout.get("events", []):
        if "rolled back" in (e.get("message") or ""):
            reason = e["message"]
    f["reason"] = reason
    return f


def describe_code(rev: str | None) -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True).stdout.strip()

    if rev:
        return f"snapshot of {rev} = {git('rev-parse', '--short', rev)} ({git('log', '-1', '--format=%s', rev)[:80]})"
    dirty = git("status", "--porcelain", "--", "src")
    return f"working tree at {git('rev-parse', '--short', 'HEAD')}" + (
        f", with {len(dirty.splitlines())} uncommitted change(s) under src/" if dirty else ", clean src/"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second asked of the client")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="at most this long under load per scenario")
    parser.add_argument("--max-inflight", type=int, default=64, help="client: requests out at once at most")
    parser.add_argument("--connections", type=int, default=64, help="client: HTTP connections at most")
    parser.add_argument("--window-seconds", type=float, default=5.0, help="the server's metric window (default 5 s)")
    parser.add_argument("--baseline", type=float, default=3.0, help="seconds of champion-only load before the rollout")
    parser.add_argument("--after", type=float, default=3.0, help="seconds of load kept after the rollback")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between rollout status polls")
    parser.add_argument("--only", choices=["A", "B"], default=None, help="run one scenario")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument(
        "--client-kind",
        choices=["httpx", "raw"],
        default="httpx",
        help="load client: httpx (default) or a minimal HTTP/1.1 client that leaves more CPU to the server",
    )
    parser.add_argument(
        "--record-rate",
        type=float,
        default=0.0,
        help="server's CHANGEOVER_RECORD_RATE (default 0: no recorded requests for apply's replay "
        "to refuse the candidate with)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=600.0,
        help="wait up to this long before each scenario for other work to leave the CPUs (0: no wait)",
    )
    parser.add_argument(
        "--code-from",
        metavar="REV",
        default=None,
        help="serve a snapshot of this commit's src/ (git archive), not the working tree",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes and server logs")
    parser.add_argument("--save", type=Path, default=None, help="write the figures here (JSON)")
    parser.add_argument("--client", nargs=4, metavar=("URL", "OUT", "STOP", "READY"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.client:
        url, out, stop, ready = args.client
        asyncio.run(
            client_main(
                url,
                Path(out),
                Path(stop),
                Path(ready),
                args.rate,
                args.max_seconds,
                args.max_inflight,
                args.connections,
                args.seed,
                args.client_kind,
            )
        )
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 150)
    scenarios = [Scenario("A", 0.34, [20]), Scenario("B", 1.0, [1, 5, 25, 50])]
    if args.only:
        scenarios = [s for s in scenarios if s.name == args.only]
    load_before = os.getloadavg()
    if args.code_from:  # one commit for every scenario, even if HEAD moves meanwhile
        args.code_from = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", args.code_from], capture_output=True, text=True, check=True
        ).stdout.strip()
    code_desc = describe_code(args.code_from)
    console.print(f"server code: {code_desc}")
    results = []
    for sc in scenarios:
        res = run_scenario(sc, args, console)
        if res.refused:
            console.print(f"[red]{sc.name}: no rollout started, not measured: {res.refused}[/]")
            continue
        results.append((res, figures(res)))

    w = args.window_seconds
    target_s = 3 * w
    table = Table(
        title=f"failing canary → rollback, end to end (asked {args.rate:g} req/s, window {w:g} s, "
        f"bake 10m, at most {args.max_seconds:g} s of load per scenario)"
    )
    for col, justify in (
        ("scenario", "left"),
        ("figure", "left"),
        ("measured", "right"),
        ("target", "right"),
        ("verdict", "center"),
    ):
        table.add_column(col, justify=justify)

    def s(t: float | None, ref: float | None) -> str:
        return f"{t - ref:.2f} s" if t is not None and ref is not None else "—"

    def verdict(ok: bool) -> str:
        return "[green]PASS[/]" if ok else "[red]FAIL[/]"

    summary: list[dict] = []
    for res, f in results:
        sc = res.scenario
        label = f"{sc.name}: {sc.fail_fraction:.0%} errors, steps {sc.steps}"
        first = True

        def row(name: str, measured: str, target: str = "", ok: bool | None = None, label: str = label) -> None:
            nonlocal first
            table.add_row(label if first else "", name, measured, target, "" if ok is None else verdict(ok))
            first = False

        row(
            "request rate achieved (all / while the canary ran)",
            f"{f['rate']:.0f} / {f['rate_canary']:.0f} req/s",
            f"{args.rate:g} req/s",
        )
        row("requests answered, skipped sends (in-flight bound)", f"{f['requests']}, {f['skipped']}")
        row(
            "candidate share of traffic before rollback, its error rate",
            f"{f['cand_share']:.1%}, {f['cand_error_rate']:.1%}",
        )
        row(
            "rollout POST → its answer / first candidate answer / first candidate 5xx",
            f"{s(res.t_rollout_ack, res.t_rollout)} / {s(f['first_cand'], res.t_rollout)} / "
            f"{s(f['first_fail'], res.t_rollout)}",
        )
        if f["rolled_back"]:
            ok_w = f["windows"] is not None and f["windows"] <= 3
            row(
                "first 5xx → rollback committed (controller)",
                s(f["t_commit"], f["first_fail"]),
                f"≤ {target_s:g} s",
                ok_w,
            )
            row(
                "first 5xx → rollback seen by the poll",
                f"{s(f['t_seen_lo'], f['first_fail'])} … {s(f['t_seen'], f['first_fail'])}",
            )
            row("first 5xx → all new requests on the champion (sent)", s(f["t_all_champion"], f["first_fail"]))
            row("metric windows elapsed (first 5xx → commit)", f"{f['windows']:.2f}", "≤ 3", ok_w)
        else:
            ok_w = False
            lower = f["elapsed_lower"]
            row(
                "first 5xx → rollback",
                f"none in {lower:.0f} s (phase {f['phase']})"
                if lower is not None
                else f"no candidate 5xx at all (phase {f['phase']})",
                f"≤ {target_s:g} s",
                False,
            )
            row("metric windows elapsed", f"> {lower / w:.1f}" if lower is not None else "—", "≤ 3", False)
        failed_txt = f"{f['failed']}" + ("" if f["rolled_back"] else " (no rollback yet)")
        if sc.fail_fraction >= 1.0 and sc.steps[0] <= 1:
            ok_f = f["rolled_back"] and f["failed"] <= 50
            scaled = f["failed"] * args.rate / f["rate"] if f["rate"] > 0 else float("nan")
            row("failed user requests (5xx), all", failed_txt, "≤ 50", ok_f)
            if abs(f["rate"] - args.rate) > 0.05 * args.rate:
                row(
                    f"  … scaled to {args.rate:g} req/s (rate short of the target)",
                    f"≈ {scaled:.0f}",
                    "≤ 50",
                    f["rolled_back"] and scaled <= 50,
                )
        else:
            ok_f = True
            row("failed user requests (5xx), all", failed_txt)
        row("  … of them sent before the rollback commit / by the champion", f"{f['failed_before']} / {f['champ_5xx']}")
        row("success latency p50 / p99", f"{f['p50_ms']:.1f} / {f['p99_ms']:.1f} ms")
        row(
            "final phase; verdicts recorded",
            f"{f['phase']}; {len(f['verdicts'])} " + (f"({f['verdicts_text']})" if f["verdicts"] else ""),
        )
        table.add_section()
        summary.append({"scenario": sc.name, "pass": ok_w and ok_f, **{k: v for k, v in f.items()}})
    console.print(table)

    for res, f in results:
        sc = res.scenario
        notes = []
        if f["reason"]:
            notes.append(f"rollback reason: {f['reason']}")
        if res.plan:
            notes.append(f"apply's plan: {json.dumps(res.plan, default=str)[:300]}")
        if f["no_answer"]:
            notes.append(f"[red]{f['no_answer']} requests got no answer: {res.no_answer}[/]")
        if f["other_status"]:
            notes.append(f"[red]unexpected statuses: {f['other_status']}[/]")
        if f["champ_5xx"]:
            notes.append(f"[red]{f['champ_5xx']} 5xx not from the candidate[/]")
        if f["rolled_back"] and f["last_cand_answer"] is not None and f["t_commit"] is not None:
            notes.append(f"last candidate answer {f['last_cand_answer'] - f['t_commit']:+.2f} s after the commit")
        if res.server_exit is not None:
            notes.append(f"[red]the server had exited with {res.server_exit} before the end[/]")
        notes.append(
            f"other processes (not this benchmark) used {res.cpu_others:.1f} CPU-seconds in the scenario's "
            f"{res.cpu_seconds:.0f} s = {res.cpu_others / max(1e-9, res.cpu_seconds) / (os.cpu_count() or 1):.0%}"
            f" of the machine (share just before it: {res.quiet_share:.0%})"
            + (" [red]— the figures are disturbed[/]" if res.cpu_others / max(1e-9, res.cpu_seconds) > 0.3 else "")
        )
        notes.append(
            f"CPU: server {res.server_cpu:.0f} s ({res.server_cpu / max(1, f['requests']) * 1000:.1f} ms per "
            f"request, all threads, while under load), load client {res.client_cpu:.0f} s "
            f"({res.client_cpu / max(1, f['requests']) * 1000:.1f} ms per request)"
        )
        notes.append(
            f"server log: {res.log_failures} 'prediction failed' lines (candidate 5xx: {f['cand_5xx']}), "
            f"{len(res.log_errors)} other error lines"
        )
        for ln in res.log_errors[:5]:
            notes.append(f"  [yellow]{ln[:200]}[/]")
        console.print(f"[bold]{sc.name}[/]: " + "\n   ".join(notes))
    console.print(f"server code: {code_desc}")
    console.print(
        f"machine: {os.cpu_count()} CPUs, load average (1 min) {load_before[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; client: {args.client_kind}, open loop, separate process; server timers: "
        f"window {w:g} s, controller tick 1 s, policy poll 2 s"
    )
    overall = all(x["pass"] for x in summary)
    console.print(
        "targets (issue 9): "
        + ("[green]all met[/]" if overall else "[red]NOT met[/]")
        + " — "
        + ", ".join(f"{x['scenario']} {'PASS' if x['pass'] else 'FAIL'}" for x in summary)
    )
    if args.save:
        args.save.write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
