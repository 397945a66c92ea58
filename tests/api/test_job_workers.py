"""A server's job worker (gates, compatibility replays) ends with it: a server killed with -9
leaves no process behind holding memory and waking the CPU."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from serverproc import ServerProcess


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_killed_server_leaves_no_job_worker(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "home")
    server.start()
    assert server.proc is not None
    deadline = time.monotonic() + 30
    workers: list[int] = []
    while not workers:  # the worker starts with the server (JobRunner.warm)
        workers = [p for p in children(server.proc.pid)
                   if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
        assert time.monotonic() < deadline, "no job worker started"
        time.sleep(0.2)
    server.kill()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers):
        assert time.monotonic() < deadline, f"job workers {workers} outlived their server"
        time.sleep(0.2)
