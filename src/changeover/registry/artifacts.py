"""Content-addressed artifact storage: every artifact lives under its sha256 and is
checked against it on every load."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from changeover.errors import ArtifactTampered

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


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

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
                shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copyfile(source, staging)
            staging.rename(target)  # atomic: a half-copied artifact is never visible
        return sha, relative

    def verify(self, relative: str, expected: str) -> Path:
        """The artifact's path, after checking its bytes against the checksum."""
        path = self.path(relative)
        if not path.exists():
            raise ArtifactTampered(str(path), expected, "missing")
        got = sha256_of(path)
        if got != expected:
            raise ArtifactTampered(str(path), expected, got)
        return path
