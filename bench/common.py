"""Shared pieces of the benchmark scripts: servers on loopback, models, the load generator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from serverproc import TOKEN, ServerProcess, free_port  # noqa: E402

__all__ = ["TOKEN", "ServerProcess", "free_port", "load", "wait_ready", "start_process", "body_file", "wrk_load",
           "ensure_wrk", "ensure_debian", "rss_tree_bytes", "tmpdir"]


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


def start_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def body_file(body: dict, folder: Path) -> Path:
    path = folder / f"body-{abs(hash(json.dumps(body, sort_keys=True)))}.json"
    path.write_text(json.dumps(body))
    return path


def wrk_load(url: str, body: Path, *, seconds: float, concurrency: int) -> dict:
    """Closed-loop load from wrk (C, one thread), when it is installed: the Python load
    generator would otherwise be the bottleneck on a 2-core machine."""
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                          "-s", str(HERE / "wrk_post.lua"), url], capture_output=True, text=True,
                         timeout=seconds + 60, check=True, env={**os.environ, "BODY": str(body)})
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return {"requests": figures["requests"], "errors": figures["errors"],
            "rps": figures["requests"] / (figures["duration_us"] / 1e6), "p50_ms": figures["p50_us"] / 1000,
            "p90_ms": figures["p90_us"] / 1000, "p99_ms": figures["p99_us"] / 1000, "versions": {}, "tool": "wrk"}


def load(url: str, body: Path, *, seconds: float, concurrency: int, rate: float | None = None,
         headers: list[str] | None = None) -> dict:
    """Run the load generator in a separate process and return its figures."""
    if rate is None and not headers and shutil.which("wrk"):
        return wrk_load(url, body, seconds=seconds, concurrency=concurrency)
    cmd = [sys.executable, str(HERE / "loadgen.py"), url, str(body), "--seconds", str(seconds),
           "--concurrency", str(concurrency)]
    if rate:
        cmd += ["--rate", str(rate)]
    for h in headers or []:
        cmd += ["--header", h]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="changeover-bench-"))


def ensure_debian(program: str, package: str) -> bool:
    """Install a Debian package when its program is missing and we are root, as `make bench`
    does; True when the program is there afterwards."""
    if shutil.which(program):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "install", "-y", "-qq", package], ["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", package]):
            subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=600, check=False)
            if shutil.which(program):
                return True
    return False


def ensure_wrk() -> bool:
    """wrk (Debian package), installed when missing; without it, `load` falls back to bench/loadgen.py."""
    return ensure_debian("wrk", "wrk")


def rss_tree_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (a server's workers count too);
    0 once it has gone."""
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total
