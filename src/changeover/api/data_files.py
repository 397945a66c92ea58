"""Which data files the server may read for a caller, and where data sent to it is kept.

A rollout spec's ``gate.data`` is a path the server opens. Left to itself, a token would make
the server read any file it can (``/etc/passwd`` as CSV, with lines of it in the errors), so a
spec may name only files inside the home's ``data/`` folder (where uploads go) or a folder of
``CHANGEOVER_DATA_FOLDERS``, judged once symlinks and ``..`` are resolved. The CLI and the
Python client send a local file first (`store_upload`), and the spec names what they got back:
no server ever needs to read a client's path.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio.to_thread

from changeover.errors import InvalidRequest

WRITE_BYTES = 1 << 20  # an upload is written in pieces of about this size


def data_folders(home_data: Path, configured: Sequence[Path]) -> list[Path]:
    """The folders data may be read from, resolved: the home's data folder first."""
    return [home_data.resolve(), *(Path(f).expanduser().resolve() for f in configured)]


def confine(given: str, folders: Sequence[Path], field: str = "gate.data") -> Path:
    """The real path of ``given`` (relative: to the home's data folder, the first of ``folders``)
    when it lies inside one of ``folders``; else InvalidRequest naming ``field`` and saying how to
    allow it. Whether the file exists is the caller's question."""
    path = Path(given)
    real = (path if path.is_absolute() else folders[0] / path).resolve()
    if any(real.is_relative_to(folder) for folder in folders):
        return real
    allowed = ", ".join(str(f) for f in folders)
    raise InvalidRequest(field, f"{given!r} is outside the folders the server reads data from ({allowed}): send the "
                                "file with the spec (`changeover apply` and the Python client's apply do; or "
                                "POST /api/data and name the path it answers), or add its folder to "
                                "CHANGEOVER_DATA_FOLDERS on the server")


async def store_upload(chunks: AsyncIterator[bytes], filename: str, home_data: Path) -> tuple[Path, str, int]:
    """Write an uploaded data file under ``home_data/<sha256>/<filename>`` (the same bytes and name
    land on the same path; the name stays, as the gate's messages name the user's file). Returns
    (path, sha256, size). Written off the event loop, then moved into place whole."""
    if "\x00" in filename:  # no file system takes it (Python raises ValueError, not OSError)
        raise InvalidRequest("filename", "must be a file name (it holds a NUL byte)")
    await anyio.to_thread.run_sync(lambda: home_data.mkdir(parents=True, exist_ok=True))
    fd, name = await anyio.to_thread.run_sync(lambda: tempfile.mkstemp(dir=home_data, prefix=".upload-"))
    partial = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            buffer: list[bytes] = []
            buffered = 0
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                buffer.append(chunk)
                buffered += len(chunk)
                if buffered >= WRITE_BYTES:
                    await anyio.to_thread.run_sync(fh.write, b"".join(buffer))
                    buffer, buffered = [], 0
            if buffer:
                await anyio.to_thread.run_sync(fh.write, b"".join(buffer))
        if size == 0:
            raise InvalidRequest("body", "the data file is empty")
        sha = digest.hexdigest()
        final = home_data / sha / filename

        def place() -> None:
            final.parent.mkdir(exist_ok=True)
            os.replace(partial, final)

        await anyio.to_thread.run_sync(place)
        return final.resolve(), sha, size
    finally:
        partial.unlink(missing_ok=True)
