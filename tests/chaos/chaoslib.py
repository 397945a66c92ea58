"""What the chaos tests share: how long they run, and where they say what they tried.

`make test` runs each at its short scale; `make chaos` (bench/chaos.py) sets
``CHANGEOVER_CHAOS=1`` for the long one and ``CHANGEOVER_CHAOS_REPORT`` to a file where each
test appends one JSON line per thing tried (what, how many times, how many survived), which
the runner prints as one table."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

LONG = os.environ.get("CHANGEOVER_CHAOS") == "1"


def scale(short: int, long: int) -> int:
    """``long`` under `make chaos`, else ``short``."""
    return long if LONG else short


def record(what: str, tried: int, survived: int, note: str = "", **extra: Any) -> None:
    """One row of the chaos table (nothing is written outside `make chaos`)."""
    path = os.environ.get("CHANGEOVER_CHAOS_REPORT")
    if not path:
        return
    row = {"what": what, "tried": tried, "survived": survived, "note": note, "at": time.time(), **extra}
    with Path(path).open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def wait_until(check: Any, what: str, timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something true; AssertionError naming ``what`` after ``timeout``."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except httpx.HTTPError:  # a server starting, or just killed
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def folder_tar(folder: Path) -> bytes:
    """A model folder as the .tar.gz the push endpoint takes."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for item in sorted(folder.rglob("*")):
            archive.add(item, arcname=item.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


def push_folder(api: Any, model: str, folder: Path, actor: str = "chaos") -> Any:
    """Push a python folder over HTTP (no CLI process to start), trusted: it is the tests' own code."""
    return api.post(f"/api/models/{model}/versions", content=folder_tar(folder), headers={"x-changeover-actor": actor},
                    params={"filename": folder.name + ".tar.gz", "folder": True, "trust": True})
