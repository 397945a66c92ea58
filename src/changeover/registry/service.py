"""The registry: push artifacts as immutable versions, and load them back (checked every time)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from changeover.domain.signature import Signature
from changeover.errors import ArtifactError, ArtifactMissing, ArtifactTampered, InvalidRequest, UntrustedArtifact
from changeover.gateway.batching import batch_config
from changeover.registry.artifacts import Artifacts
from changeover.registry.manifest import bundle_sidecar, read_manifest
from changeover.runtimes import LoadedModel, LoadRequest, get_runtime, infer_runtime
from changeover.runtimes.remote import remote_config
from changeover.store.store import Store, VersionRecord

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class Registry:
    def __init__(self, store: Store, artifacts: Artifacts) -> None:
        self.store = store
        self.artifacts = artifacts
        self._missing_told: set[tuple[str, int]] = set()  # one "missing" event per version and process

    def push(
        self,
        path: Path,
        *,
        name: str,
        labels: Mapping[str, str] | None = None,
        runtime: str | None = None,
        trust: bool = False,
        actor: str = "cli",
        source: str | None = None,
    ) -> tuple[VersionRecord, bool]:
        """Store an artifact as the model's next version (or return the version with these bytes)."""
        if not NAME.match(name):
            raise InvalidRequest("name", f"{name!r} is not a model name (letters, digits, _ . -; up to 128)")
        path = Path(path)
        if not path.exists():
            raise InvalidRequest("path", f"{path} does not exist")
        try:  # batching and remote labels (gateway/batching.py, runtimes/remote.py): refused now, not when served
            batch_config(labels or {})
            remote_config(labels or {})
        except ValueError as exc:
            raise InvalidRequest("labels", str(exc)) from None
        with tempfile.TemporaryDirectory() as tmp:
            return self._push(bundle_sidecar(path, Path(tmp)), name=name, labels=labels, runtime=runtime,
                              trust=trust, actor=actor, source=source or str(path))

    def _push(
        self,
        path: Path,
        *,
        name: str,
        labels: Mapping[str, str] | None,
        runtime: str | None,
        trust: bool,
        actor: str,
        source: str,
    ) -> tuple[VersionRecord, bool]:
        try:
            manifest = read_manifest(path)
            runtime_name = runtime or infer_runtime(path, manifest)
            if runtime_name == "pickle" and not trust:
                raise UntrustedArtifact(
                    f"{path.name} is a pickle: loading it runs arbitrary code. "
                    "Push it with --trust only if you trust its author (prefer skops or ONNX)"
                )
            if runtime_name == "skops" and not trust:
                from changeover.runtimes.skops_runtime import untrusted_types

                target = path / manifest.artifact if path.is_dir() and manifest.artifact else path
                untrusted = untrusted_types(str(target))
                if untrusted:
                    raise UntrustedArtifact(
                        f"{path.name} contains types that skops does not trust: {', '.join(untrusted)}; "
                        "push it with --trust only if you trust its author"
                    )
            # load it once now: a version that cannot load never enters the registry
            try:
                model = get_runtime(runtime_name).load(
                    LoadRequest(path=path, manifest=manifest, signature=manifest.signature, trusted=trust,
                                labels=dict(labels or {}))
                )
            except ArtifactError:
                raise
            except Exception as exc:  # a corrupt file raises its library's own error (zip, protobuf, pickle…)
                raise ArtifactError(f"{path.name} does not load with the {runtime_name} runtime: "
                                    f"{type(exc).__name__}: {exc}") from exc
            signature: Signature = manifest.signature or model.signature
            model.close()
            if manifest.task is not None and signature.task != manifest.task:
                try:  # model.yaml may say the task of an artifact that carries its own signature
                    signature = replace(signature, task=manifest.task)
                except ValueError as exc:
                    raise ArtifactError(f"{path.name}: {exc}") from exc
        except ArtifactError as exc:
            self.store.add_event("refused", f"push of {path.name} as {name} refused: {exc}", model=name, actor=actor,
                                 evidence={"model": name, "path": str(path.name), "reason": str(exc)})
            raise
        sha, relative = self.artifacts.put(path)
        return self.store.add_version(
            model=name,
            sha256=sha,
            runtime=runtime_name,
            artifact=relative,
            signature=signature,
            labels=dict(labels or {}),
            trusted=trust and runtime_name in ("pickle", "skops"),
            source=source,
            actor=actor,
        )

    def load(self, record: VersionRecord, *, actor: str = "gateway") -> LoadedModel:
        """Load a version after checking its bytes against the checksum (a tampered one is refused and
        logged as ``tampered``; one whose bytes the artifact store lacks, as ``missing``: no alarm)."""
        try:
            path = self.artifacts.verify(record.artifact, record.sha256)
        except ArtifactMissing as exc:
            if (record.model, record.number) not in self._missing_told:
                self._missing_told.add((record.model, record.number))
                self.store.add_event("missing", f"{record.model} v{record.number}: {exc}", model=record.model,
                                     actor=actor, evidence={"version": record.number, "expected": exc.expected,
                                                            "backend": exc.backend, "artifact": record.artifact})
            raise
        except ArtifactTampered as exc:
            self.store.add_event("tampered", f"{record.model} v{record.number}: {exc}", model=record.model, actor=actor,
                                 evidence={"version": record.number, "expected": exc.expected, "got": exc.got})
            raise
        manifest = read_manifest(path)
        return get_runtime(record.runtime).load(
            LoadRequest(path=path, manifest=manifest, signature=record.signature, trusted=record.trusted,
                        labels=record.labels)
        )
