"""Content-addressed artifact storage: every artifact lives under its sha256 and is
checked against it on every load.

`Artifacts` is what the registry needs of a store. `ArtifactStore` keeps artifacts in a local
folder (the home's ``artifacts/``, the default); registry/shared.py keeps them where several
replicas see them: in the store's database or in object storage (``CHANGEOVER_ARTIFACTS``)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Protocol

from changeover.errors import ArtifactMissing, ArtifactTampered

CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def folder_sha256(path: Path) -> str:
    """A folder's checksum: over each file's relative path and contents, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(file.relative_to(path).as_posix().encode() + b"\x00")
        digest.update(file_sha256(file).encode() + b"\n")
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return folder_sha256(path) if path.is_dir() else file_sha256(path)


class Artifacts(Protocol):
    """Where a registry keeps artifacts, by content."""

    backend: str
    """Names the store in errors and events, e.g. ``the local folder /srv/home/artifacts``."""

    @property
    def locator(self) -> str:
        """A string that `open_locator` (registry/shared.py) turns back into this store in another
        process (the evaluation jobs' worker)."""
        ...

    def put(self, source: Path) -> tuple[str, str]:
        """Store a file or a model folder (idempotent); return (sha256, its path relative to the store)."""
        ...

    def verify(self, relative: str, expected: str) -> Path:
        """A local path holding the artifact, after checking its bytes against the checksum:
        `ArtifactMissing` when the store does not have it, `ArtifactTampered` when its bytes differ."""
        ...

    def exists(self, relative: str) -> bool:
        """Whether the store holds the artifact (its bytes are not checked)."""
        ...


class ArtifactStore:
    """Artifacts in a local folder, under ``sha256/<2>/<sha256>[.suffix]`` (a folder: the whole tree)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.backend = f"the local folder {self.root}"

    @property
    def locator(self) -> str:
        return str(self.root)

    def exists(self, relative: str) -> bool:
        return self.path(relative).exists()

    def path(self, relative: str) -> Path:
        return self.root / relative

    def put(self, source: Path) -> tuple[str, str]:
        """Copy an artifact in (idempotent); return (sha256, path relative to the root)."""
        source = Path(source)
        sha = sha256_of(source)
        relative = f"sha256/{sha[:2]}/{sha}" + ("" if source.is_dir() else "".join(source.suffixes[-1:]))
        target = self.root / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = target.with_name(target.name + ".partial")
            if staging.exists():
                shutil.rmtree(staging) if staging.is_dir() else staging.unlink()
            if source.is_dir():
                # copyfile, not copy2: the source's modes (often world-readable) stay behind
                shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__"),
                                copy_function=shutil.copyfile)
            else:
                shutil.copyfile(source, staging)
            staging.rename(target)  # atomic: a half-copied artifact is never visible
        return sha, relative

    def verify(self, relative: str, expected: str) -> Path:
        """The artifact's path, after checking its bytes against the checksum."""
        path = self.path(relative)
        if not path.exists():
            raise ArtifactMissing(str(path), expected, self.backend)
        got = sha256_of(path)
        if got != expected:
            raise ArtifactTampered(str(path), expected, got)
        return path
