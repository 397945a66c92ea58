"""The registry: push artifacts as immutable versions, and load them back (checked every time).

A push of an artifact that runs code (a pickle, a python folder, a skops file with types skops
does not trust) is refused unless it is trusted (registry/trust.py); what was trusted is recorded
on the version, and every load, in every process, trusts exactly that."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from changeover.domain.batching import batch_config
from changeover.domain.signature import Signature
from changeover.errors import ArtifactError, ArtifactMissing, ArtifactTampered, InvalidRequest
from changeover.registry.artifacts import Artifacts, folder_sha256
from changeover.registry.manifest import Manifest, bundle_sidecar, read_manifest
from changeover.registry.trust import (
    CODE_RUNTIMES,
    Trust,
    allow_listing_folder,
    code_trust,
    skops_trust,
    untrusted_python,
)
from changeover.runtimes import LoadedModel, LoadRequest, get_runtime, infer_runtime
from changeover.runtimes.remote import remote_config
from changeover.store.store import Store, VersionRecord

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def code_runtime(runtime: str, path: Path, manifest: Manifest) -> str:
    """The runtime that runs the artifact's own bytes: for ``ray``, the one inside its replicas;
    for ``mlflow``, ``pickle`` (a pyfunc model is unpickled, or runs its own code)."""
    if runtime == "mlflow":
        return "pickle"
    if runtime != "ray":
        return runtime
    inner = manifest.extra.get("inner_runtime")
    if inner:
        return str(inner)
    try:
        return infer_runtime(path, Manifest(predictor=manifest.predictor, artifact=manifest.artifact))
    except ArtifactError:
        return runtime  # the ray runtime refuses it when it loads


class Registry:
    def __init__(self, store: Store, artifacts: Artifacts, *, trusted_folders: Sequence[Path] = (),
                 skops_trusted_types: Collection[str] = ()) -> None:
        """``trusted_folders`` and ``skops_trusted_types``: the operator's settings
        (``CHANGEOVER_TRUSTED_FOLDERS``, ``CHANGEOVER_SKOPS_TRUSTED_TYPES``); only a push reads them."""
        self.store = store
        self.artifacts = artifacts
        self.trusted_folders = tuple(Path(f).expanduser().resolve() for f in trusted_folders)
        self.skops_trusted_types = frozenset(skops_trusted_types)
        self._missing_told: set[tuple[str, int]] = set()  # one "missing" event per version and process

    def push(
        self,
        path: Path,
        *,
        name: str,
        labels: Mapping[str, str] | None = None,
        runtime: str | None = None,
        trust: bool = False,
        trust_types: Sequence[str] = (),
        origin: Path | None = None,
        actor: str = "cli",
        source: str | None = None,
    ) -> tuple[VersionRecord, bool]:
        """Store an artifact as the model's next version (or return the version with these bytes).

        ``trust``: the whole artifact; ``trust_types``: skops types trusted by name. ``origin``:
        the folder on this machine that ``path`` is a copy of (an upload's claimed source, or
        ``path`` itself); a python folder needs no ``trust`` when ``origin`` is in an allow-listed
        folder and holds the very bytes pushed. None: no allow-listing."""
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
                              trust=trust, trust_types=tuple(trust_types), origin=origin,
                              actor=actor, source=source or str(path))

    def _allow_listed(self, origin: Path | None, uploaded: Path) -> str | None:
        """The allow-listed folder holding ``origin`` on this machine, if the folder there holds
        exactly the uploaded bytes (a push cannot claim a path whose code it did not send), or None."""
        if origin is None or not self.trusted_folders or not origin.is_absolute() or not uploaded.is_dir():
            return None
        try:
            real = origin.resolve(strict=True)
        except OSError:
            return None
        base = allow_listing_folder(real, self.trusted_folders)
        if base is None or not real.is_dir():
            return None
        return str(base) if folder_sha256(real) == folder_sha256(uploaded) else None

    def _trust(self, runtime: str, path: Path, manifest: Manifest, *, trust: bool, trust_types: tuple[str, ...],
               origin: Path | None, actor: str) -> Trust:
        """What this push trusts (refused with `UntrustedArtifact` when it does not trust enough)."""
        if trust_types and runtime != "skops":
            raise InvalidRequest("trust_type", f"names skops types; {path.name} is a {runtime} artifact")
        if runtime in CODE_RUNTIMES:
            allow_listed = self._allow_listed(origin, path) if runtime == "python" and not trust else None
            return code_trust(runtime, path.name, trust=trust, actor=actor, allow_listed=allow_listed)
        if runtime == "skops":
            from changeover.runtimes.skops_runtime import untrusted_types

            target = path / manifest.artifact if path.is_dir() and manifest.artifact else path
            try:
                untrusted = untrusted_types(str(target))
            except Exception as exc:  # not a skops file at all: the load below says so
                raise ArtifactError(f"{path.name} does not load with the skops runtime: "
                                    f"{type(exc).__name__}: {exc}") from exc
            return skops_trust(path.name, untrusted, trust=trust, flagged=set(trust_types),
                               configured=self.skops_trusted_types, actor=actor)
        return Trust()

    def _push(
        self,
        path: Path,
        *,
        name: str,
        labels: Mapping[str, str] | None,
        runtime: str | None,
        trust: bool,
        trust_types: tuple[str, ...],
        origin: Path | None,
        actor: str,
        source: str,
    ) -> tuple[VersionRecord, bool]:
        try:
            manifest = read_manifest(path)
            runtime_name = runtime or infer_runtime(path, manifest)
            # refused before anything of it runs, even once
            trusted = self._trust(code_runtime(runtime_name, path, manifest), path, manifest, trust=trust,
                                  trust_types=trust_types, origin=origin, actor=actor)
            # load it once now: a version that cannot load never enters the registry
            try:
                model = get_runtime(runtime_name).load(
                    LoadRequest(path=path, manifest=manifest, signature=manifest.signature, trusted=trusted.whole,
                                labels=dict(labels or {}), trusted_types=trusted.types)
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
            trusted=trusted.whole,
            trusted_types=trusted.types,
            trust_note=trusted.note,
            trust_reason=trusted.reason,
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
        if not record.trusted and code_runtime(record.runtime, path, manifest) == "python":
            # a version pushed before trust was asked: trusted since only if pushed again with trust
            # (read again, as readers cache records as immutable)
            record = self.store.version(record.model, record.number)
            if not record.trusted:
                raise untrusted_python(record.model, record.number)
        return get_runtime(record.runtime).load(
            LoadRequest(path=path, manifest=manifest, signature=record.signature, trusted=record.trusted,
                        labels=record.labels, trusted_types=record.trusted_types)
        )
