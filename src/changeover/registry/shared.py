"""Artifacts that every replica sees: content-addressed blobs in the store's database
(``CHANGEOVER_ARTIFACTS=db``) or in object storage by URL (``s3://bucket/prefix``, or any
fsspec URL), chosen by `open_artifacts`.

A file is one blob under its sha256. A model folder is one blob per file (under the file's
sha256) plus a *listing* blob under the folder's sha256: the lines ``relative-path NUL
file-sha256 LF`` in sorted order, which are exactly the bytes `folder_sha256` hashes, so a
folder keeps the same checksum whichever backend holds it. The listing is written last: a
listing that is there names files that are there.

Every load fetches the bytes again into a local copy (under the home's ``artifacts/``, the
same layout as the local folder) and checks them: a blob the store lacks is `ArtifactMissing`
(naming the backend), a blob whose bytes differ is `ArtifactTampered`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from sqlalchemy import Engine

from changeover.errors import ArtifactMissing, ArtifactTampered
from changeover.registry.artifacts import Artifacts, ArtifactStore, file_sha256, folder_sha256, sha256_of
from changeover.store import artifact_blobs as blob_rows

LISTING_LINE = re.compile(rb"([^\x00\n]+)\x00([0-9a-f]{64})\n")


class BlobStore(Protocol):
    """Bytes by sha256, in some shared place."""

    name: str
    """Names the place in errors and events: ``the database (artifact_blobs)``, ``s3://bucket/prefix``."""

    def put(self, sha: str, source: Path) -> None:
        """Store the file's bytes under ``sha`` (idempotent; the caller has hashed them)."""
        ...

    def get(self, sha: str, target: Path) -> bool:
        """Write the bytes under ``sha`` to ``target``; False when there are none."""
        ...

    def exists(self, sha: str) -> bool: ...


class DatabaseBlobs:
    """Blobs in the store's own database: the table ``artifact_blobs`` (one row a blob)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = f"the store's database ({engine.dialect.name}, table artifact_blobs)"

    def put(self, sha: str, source: Path) -> None:
        if self.exists(sha):
            return
        blob_rows.put(self.engine, sha, source.read_bytes())  # another replica's same bytes meanwhile: kept

    def get(self, sha: str, target: Path) -> bool:
        data = blob_rows.read(self.engine, sha)
        if data is None:
            return False
        target.write_bytes(data)
        return True

    def exists(self, sha: str) -> bool:
        return blob_rows.exists(self.engine, sha)


class FsspecBlobs:
    """Blobs in object storage (or any fsspec filesystem), under ``URL/sha256/<2>/<sha256>``."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        try:
            import fsspec
        except ImportError:  # pragma: no cover - the s3 extra
            raise RuntimeError(f"CHANGEOVER_ARTIFACTS={url} needs fsspec (and s3fs for s3://): "
                               "pip install 'changeover[s3]'") from None
        self.url = url.rstrip("/")
        self.name = self.url
        self.fs, root = fsspec.core.url_to_fs(self.url, **dict(options or {}))
        self.root = root.rstrip("/")

    def key(self, sha: str) -> str:
        return f"{self.root}/sha256/{sha[:2]}/{sha}"

    def put(self, sha: str, source: Path) -> None:
        if self.exists(sha):
            return
        key = self.key(sha)
        try:
            self.fs.put_file(str(source), key)  # an object store: one object, visible whole or not at all
        except FileNotFoundError:  # a file system that wants the folder first
            self.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(source), key)

    def get(self, sha: str, target: Path) -> bool:
        self.fs.invalidate_cache()  # another replica may have written (or removed) it since
        try:
            self.fs.get_file(self.key(sha), str(target))
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                target.unlink()
            return False
        return True

    def exists(self, sha: str) -> bool:
        self.fs.invalidate_cache()
        return bool(self.fs.exists(self.key(sha)))


def _files(folder: Path) -> list[Path]:
    """The files `folder_sha256` covers, in its order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _listing(folder: Path) -> tuple[bytes, list[tuple[Path, str]]]:
    entries = [(file, file_sha256(file)) for file in _files(folder)]
    text = b"".join(f.relative_to(folder).as_posix().encode() + b"\x00" + sha.encode() + b"\n" for f, sha in entries)
    return text, entries


def _parse_listing(data: bytes) -> list[tuple[str, str]] | None:
    """The (relative path, sha256) entries of a folder's listing; None if it is not one."""
    entries, at = [], 0
    while at < len(data):
        match = LISTING_LINE.match(data, at)
        if match is None:
            return None
        relative = match.group(1).decode("utf-8", "replace")
        parts = PurePosixPath(relative).parts
        if relative.startswith("/") or ".." in parts or not parts:
            return None  # never write outside the folder
        entries.append((relative, match.group(2).decode()))
        at = match.end()
    return entries


class SharedArtifacts:
    """The `Artifacts` of a `BlobStore`, with a checked local copy of what was loaded."""

    def __init__(self, blobs: BlobStore, cache: Path, *, spec: str, options: Mapping[str, Any] | None = None) -> None:
        self.blobs = blobs
        self.root = Path(cache)  # the local copies (same layout as the local folder)
        self.backend = blobs.name
        self.spec = spec
        self.options = dict(options or {})

    @property
    def locator(self) -> str:
        return json.dumps({"artifacts": self.spec, "cache": str(self.root), "options": self.options})

    @staticmethod
    def _is_folder(relative: str) -> bool:
        return relative.endswith("/")

    def put(self, source: Path) -> tuple[str, str]:
        source = Path(source)
        sha = sha256_of(source)
        if not source.is_dir():
            self.blobs.put(sha, source)
            return sha, f"sha256/{sha[:2]}/{sha}" + "".join(source.suffixes[-1:])
        text, entries = _listing(source)
        assert hashlib.sha256(text).hexdigest() == sha == folder_sha256(source)
        for file, file_sha in entries:
            self.blobs.put(file_sha, file)
        with tempfile.TemporaryDirectory() as tmp:
            listing = Path(tmp) / "listing"
            listing.write_bytes(text)
            self.blobs.put(sha, listing)  # last: a listing that is there names files that are there
        return sha, f"sha256/{sha[:2]}/{sha}/"

    def exists(self, relative: str) -> bool:
        sha = PurePosixPath(relative.rstrip("/")).name.split(".")[0]
        return self.blobs.exists(sha)

    def _where(self, relative: str) -> str:
        return f"{relative.rstrip('/')} in {self.backend}"

    def verify(self, relative: str, expected: str) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=self.root))
        try:
            fetched = staging / "artifact"
            if self._is_folder(relative):
                self._fetch_folder(relative, expected, fetched)
            else:
                if not self.blobs.get(expected, fetched):
                    raise ArtifactMissing(self._where(relative), expected, self.backend)
                got = file_sha256(fetched)
                if got != expected:
                    raise ArtifactTampered(self._where(relative), expected, got)
            return self._install(fetched, self.root / relative.rstrip("/"), expected)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _fetch_folder(self, relative: str, expected: str, target: Path) -> None:
        listing = target.parent / "listing"
        if not self.blobs.get(expected, listing):
            raise ArtifactMissing(self._where(relative), expected, self.backend)
        data = listing.read_bytes()
        got = hashlib.sha256(data).hexdigest()
        if got != expected:
            raise ArtifactTampered(self._where(relative), expected, got)
        entries = _parse_listing(data)
        if entries is None:  # its checksum matched, yet it is no listing: a file stored as a folder
            raise ArtifactTampered(self._where(relative), expected, "not a folder listing")
        for name, file_sha in entries:
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if not self.blobs.get(file_sha, path):
                raise ArtifactMissing(f"{self._where(relative)} (its file {name}, sha256 {file_sha[:12]}…)",
                                      expected, self.backend)
            got = file_sha256(path)
            if got != file_sha:
                raise ArtifactTampered(f"{self._where(relative)} (its file {name})", expected, got)
        got = folder_sha256(target) if target.exists() else hashlib.sha256(b"").hexdigest()
        if got != expected:  # pragma: no cover - the listing and the files were each checked
            raise ArtifactTampered(self._where(relative), expected, got)

    @staticmethod
    def _install(fetched: Path, target: Path, expected: str) -> Path:
        """The local copy at ``target``: the checked bytes just fetched, unless an identical copy is there."""
        if target.exists() and sha256_of(target) == expected:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # a stale or changed local copy: the shared store's checked bytes win
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        if not fetched.exists():
            fetched.mkdir()  # an empty folder
        try:
            os.rename(fetched, target)
        except OSError:  # another load installed it meanwhile
            if not (target.exists() and sha256_of(target) == expected):
                raise
        return target


def open_artifacts(spec: str | None, cache: Path, *, engine: Engine | None = None,
                   options: Mapping[str, Any] | None = None) -> Artifacts:
    """The artifact store that ``CHANGEOVER_ARTIFACTS`` names: unset or empty, the local folder
    ``cache`` (the home's ``artifacts/``); ``db``, the store's database (``engine``); any other
    value, an fsspec URL (``s3://bucket/prefix``; ``options`` go to its filesystem)."""
    if not spec:
        return ArtifactStore(cache)
    if spec == "db":
        if engine is None:
            raise ValueError("CHANGEOVER_ARTIFACTS=db needs the store's database")
        return SharedArtifacts(DatabaseBlobs(engine), cache, spec=spec)
    if "://" not in spec:
        raise ValueError(f"CHANGEOVER_ARTIFACTS={spec!r}: expected nothing (the home's folder), db, "
                         "or a URL such as s3://bucket/prefix")
    return SharedArtifacts(FsspecBlobs(spec, options), cache, spec=spec, options=options)


def open_locator(locator: str, engine: Engine | None = None) -> Artifacts:
    """The store an `Artifacts.locator` names (in another process)."""
    if not locator.startswith("{"):
        return ArtifactStore(Path(locator))
    spec = json.loads(locator)
    return open_artifacts(spec["artifacts"], Path(spec["cache"]), engine=engine, options=spec.get("options"))
