"""What a push trusts, and why: the registry's trust rules as pure decisions.

Three kinds of artifact run code that the server cannot check: a pickle (arbitrary code on
load), a python folder (its predictor is code), and a skops file holding types that skops does
not trust. Each is refused unless the push trusts it: the whole artifact (``--trust``), a python
folder from a folder the operator allow-listed (``CHANGEOVER_TRUSTED_FOLDERS``), or a skops
file's named types only (``--trust-type``, ``CHANGEOVER_SKOPS_TRUSTED_TYPES``). What was trusted
is recorded on the version (``trusted``, ``trusted_types``) so that every later load trusts
exactly that, and the push event names it with its reason.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from changeover.errors import UntrustedArtifact

CODE_RUNTIMES = ("pickle", "python")
"""Runtimes whose artifacts are code: loaded only when the version is trusted as a whole."""

FOLDERS_SETTING = "CHANGEOVER_TRUSTED_FOLDERS"
TYPES_SETTING = "CHANGEOVER_SKOPS_TRUSTED_TYPES"


@dataclass(frozen=True)
class Trust:
    whole: bool = False  # the whole artifact: the version's ``trusted``
    types: tuple[str, ...] = ()  # skops: only these types (the version's ``trusted_types``)
    note: str | None = None  # what was trusted and why, for the push event; None: nothing needed trust
    reason: str | None = None  # the event's evidence: --trust, --trust-type, a setting's name


def code_trust(runtime: str, artifact: str, *, trust: bool, actor: str, allow_listed: str | None) -> Trust:
    """A pickle or a python folder: trusted as a whole, or refused saying how to trust it."""
    if trust:
        kind = "folder" if runtime == "python" else "file"
        return Trust(whole=True, note=f"trusted: whole {kind} (--trust by {actor})", reason="--trust")
    if runtime == "python" and allow_listed is not None:
        return Trust(whole=True, note=f"trusted: folder allow-listed by {FOLDERS_SETTING} ({allow_listed})",
                     reason=FOLDERS_SETTING)
    if runtime == "pickle":
        raise UntrustedArtifact(
            f"{artifact} is a pickle: loading it runs arbitrary code. "
            "Push it with --trust only if you trust its author (prefer skops or ONNX)"
        )
    raise UntrustedArtifact(
        f"{artifact} is a python-runtime folder: its predictor is code that runs inside the server. "
        f"Push it with --trust only if you trust its author, or have the operator allow-list the folder "
        f"it is pushed from ({FOLDERS_SETTING})"
    )


def skops_trust(artifact: str, untrusted: Sequence[str], *, trust: bool, flagged: Collection[str],
                configured: Collection[str], actor: str) -> Trust:
    """A skops file: ``untrusted`` are the types in it that skops does not trust. Trusted as a
    whole with ``--trust``; else each must be named, by the push (``flagged``) or the server's
    setting (``configured``), or the push is refused naming the ones left."""
    if trust:
        return Trust(whole=True, note=f"trusted: whole file (--trust by {actor})", reason="--trust")
    remaining = [t for t in untrusted if t not in flagged and t not in configured]
    if remaining:
        hint = " ".join(f"--trust-type {t}" for t in remaining)
        raise UntrustedArtifact(
            f"{artifact} contains types that skops does not trust: {', '.join(remaining)}; "
            f"push it with {hint} if you trust these types (or --trust only if you trust its author)"
        )
    by_push = sorted(t for t in untrusted if t in flagged)
    by_setting = sorted(t for t in untrusted if t not in flagged)
    parts = ([f"{', '.join(by_push)} (--trust-type by {actor})"] if by_push else []) + (
        [f"{', '.join(by_setting)} ({TYPES_SETTING})"] if by_setting else [])
    if not parts:
        return Trust()
    reason = "--trust-type" if not by_setting else TYPES_SETTING if not by_push else f"--trust-type, {TYPES_SETTING}"
    return Trust(types=tuple(sorted(untrusted)), note="trusted types " + "; ".join(parts), reason=reason)


def allow_listing_folder(origin: PurePath, folders: Sequence[PurePath]) -> PurePath | None:
    """The allow-listed folder that holds ``origin`` (both resolved by the caller), or None."""
    return next((f for f in folders if origin == f or origin.is_relative_to(f)), None)


def untrusted_python(model: str, number: int) -> UntrustedArtifact:
    """A python version whose record does not say it is trusted (pushed before trust was asked)."""
    return UntrustedArtifact(
        f"{model} v{number} is a python-runtime folder that was not pushed with --trust nor from an "
        f"allow-listed folder: its code does not run here. Push the folder again with --trust if you trust "
        f"its author (or from a folder in {FOLDERS_SETTING})"
    )
