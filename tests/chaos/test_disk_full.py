"""The disk full: the server's home on a small tmpfs (mounted by the test, which needs root;
without it the test skips, saying so), filled to the last byte while the server runs.
Inference goes on; management writes fail with a clear error (503 naming the disk or the
store, with Retry-After), never a bare 500; requests served meanwhile are kept for the writer
to retry, or counted as dropped; and once space is back, writes and recording resume."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chaoslib import push_folder, record, scale, wait_until

from modelfiles import python_model
from serverproc import ServerProcess

Y = "[{name: y, datatype: FP64, shape: [-1]}]"
BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}
ROUNDS = scale(1, 5)  # fill and free the disk this many times
SIZE_MB = 48


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of SIZE_MB: a real file system that really fills (ENOSPC from the kernel), which
    RLIMIT_FSIZE (EFBIG, per file) or a quota would only imitate."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder: Path) -> Path:
    """Fill the file system to its last byte; the filler's path."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # unbuffered: no flush to fail at close
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):  # and the last inode-sized crumbs
        for i in range(100):
            (folder / f"crumb{i}").write_bytes(b"\0")
    return filler


def free(folder: Path) -> None:
    for path in folder.iterdir():
        if path.name == "filler" or path.name.startswith("crumb"):
            path.unlink()


def clear_error(r: httpx.Response) -> bool:
    """A refusal that says the disk (or the store on it) is full, and when to retry."""
    if r.status_code not in (503, 507):
        return False
    body = r.json()
    return body.get("cause") == "disk" and "disk is full" in body.get("error", "") and "retry-after" in r.headers


def test_a_full_disk(small_disk: Path, tmp_path: Path) -> None:
    server = ServerProcess(small_disk / "home", env={"CHANGEOVER_POLICY_POLL_S": "0.5"}).start(timeout=180)
    survived = {"inference": 0, "writes refused clearly": 0, "recording resumed": 0}
    served = 0
    try:
        with server.client() as api:
            for number in (1, 2):
                folder = python_model(tmp_path / f"v{number}", f"return {{'y': inputs['x'].sum(axis=1) * {number}}}",
                                      outputs=Y)
                assert push_folder(api, "m", folder).status_code == 201
            api.put("/api/models/m/aliases/champion", json={"version": 1}).raise_for_status()
            wait_until(lambda: httpx.post(f"{server.url}/v2/models/m/infer", json=BODY, timeout=10).status_code == 200,
                       "v1 to serve", timeout=60)
            for round_ in range(ROUNDS):
                fill(small_disk)
                # inference goes on
                codes = [httpx.post(f"{server.url}/v2/models/m/infer", json=BODY, timeout=10).status_code
                         for _ in range(40)]
                served += len(codes)
                assert codes == [200] * len(codes), codes
                survived["inference"] += 1
                # management writes: each succeeds (SQLite may reuse its log's pages) or is refused
                # saying the disk is full, and a push (a new artifact) cannot succeed
                pushed = push_folder(api, "m", python_model(tmp_path / f"full{round_}", f"return {{'y': inputs['x'][:, 0] + {round_}}}",
                                                            outputs=Y))
                assert clear_error(pushed), (pushed.status_code, pushed.text)
                writes = [api.put("/api/models/m/aliases/champion", json={"version": 2 - round_ % 2}),
                          api.post("/api/models/m/shadows", json={"version": "2", "sample": 0.5}),
                          api.delete("/api/models/m/shadows")]
                for w in writes:
                    assert w.status_code < 300 or clear_error(w), (w.request.url, w.status_code, w.text)
                survived["writes refused clearly"] += 1
                # reads answer, or say the store cannot answer now: never a bare 500
                listing = api.get("/api/models")
                assert listing.status_code == 200 or clear_error(listing), listing.text

                free(small_disk)
                # writes work again, and what is served is recorded again: feedback finds the request
                again = push_folder(api, "m", python_model(tmp_path / f"again{round_}",
                                                           f"return {{'y': inputs['x'][:, 0] - {round_}}}", outputs=Y))
                assert again.status_code == 201, again.text
                answer = httpx.post(f"{server.url}/v2/models/m/infer", json=BODY, timeout=10)
                assert answer.status_code == 200
                rid = answer.headers["x-request-id"]
                wait_until(lambda rid=rid: httpx.post(f"{server.url}/v1/feedback", json={"request_id": rid, "label": 3.0},
                                                      timeout=10).status_code == 201,
                           "the request served after the disk was freed to be recorded", timeout=60, interval=0.3)
                wait_until(lambda: api.get("/api/status").json()["gateway"]["recorder"]["stalled_since"] is None,
                           "the writer to catch up", timeout=60)
                survived["recording resumed"] += 1
    finally:
        server.stop()
        for what, ok in survived.items():
            record(f"disk full: {what}", ROUNDS, ok, f"tmpfs {SIZE_MB} MB home" + (f", {served} served while full"
                                                                                  if what == "inference" else ""))
