"""CLI: MLflow's registry as the road's start. ``models push models:/NAME@ALIAS`` pushes an MLflow
model (`push_mlflow`); ``follow-registry NAME --alias challenger --spec rollout.yaml`` watches an
MLflow alias and, each time it moves to a new version, pushes that version and starts a rollout
with the spec (the API ``apply`` uses), then writes the rollout's outcome back on the MLflow
model version as tags.

The follower keeps no state of its own: the tags on the MLflow versions are its memory.

| tag | written when |
| --- | --- |
| ``changeover.version`` | the version was pushed (changeover's version number) |
| ``changeover.rollout`` | its rollout started (the rollout's id) |
| ``changeover.outcome`` | the rollout ended: ``promoted``, ``rolled_back``, ``aborted``, ``failed``; or
  ``refused`` when the push or the rollout was refused for good (``changeover.message`` says why) |

A version with a rollout tag is never started again, so a restarted follower picks up where the
last one stopped; one with a rollout tag but no outcome is watched until it ends. A refusal that
may pass later (a rollout already running, the server away) is not tagged: it is tried again at
the next poll. Each poll's failure is printed and the loop goes on.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from changeover.cli.client import ApiError, Client
from changeover.cli.common import client, console, err, exit_code, valid_name
from changeover.cli.rollout import ENDED, load_spec_file
from changeover.errors import ChangeoverError, InvalidRequest

TAG_VERSION = "changeover.version"
TAG_ROLLOUT = "changeover.rollout"
TAG_OUTCOME = "changeover.outcome"
TAG_MESSAGE = "changeover.message"
REFUSED = "refused"
MESSAGE_CHARS = 500


def push_mlflow(c: Client, ref: str, *, name: str | None, labels: Mapping[str, str], trust: bool,
                trust_types: Sequence[str] = (), source: Any = None) -> dict[str, Any]:
    """Push the MLflow model ``ref`` names (`registry.mlflow_source.prepare`), its lineage as
    ``mlflow.*`` labels beside ``labels``; the model's name defaults to the registered one.
    The result is the server's answer with ``name`` and ``labels`` of what was pushed."""
    from changeover.registry.mlflow_source import prepare

    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare(ref, Path(tmp), source=source)
        model = name or prepared.name
        if model is None:
            raise InvalidRequest("name", f"{ref} is not a registered model: name the model with --name")
        valid_name(model)
        pushed = dict(prepared.labels) | dict(labels)
        result: dict[str, Any] = c.push(prepared.folder, name=model, labels=pushed, runtime=None, trust=trust,
                                        trust_types=trust_types)
    return result | {"labels": result.get("labels", pushed)}


# -- what a poll does (pure) ---------------------------------------------------------------------


def needs_rollout(tags: Mapping[str, str]) -> bool:
    """Whether a version the alias points at is new to the follower."""
    return TAG_ROLLOUT not in tags and TAG_OUTCOME not in tags


def awaiting_outcome(versions: Sequence[Any]) -> list[tuple[str, int]]:
    """(MLflow version, rollout id) of every version whose rollout has no outcome yet."""
    out = []
    for v in versions:
        rid = v.tags.get(TAG_ROLLOUT)
        if rid is not None and TAG_OUTCOME not in v.tags and rid.isdigit():
            out.append((v.version, int(rid)))
    return sorted(out, key=lambda p: p[1])


def outcome_tags(rollout: Mapping[str, Any]) -> dict[str, str] | None:
    """The tags for a rollout that ended, or None while it runs."""
    status = rollout.get("status") or {}
    phase = status.get("phase")
    if phase not in ENDED:
        return None
    return {TAG_OUTCOME: str(phase), TAG_ROLLOUT: str(rollout["id"]),
            TAG_MESSAGE: str(status.get("message") or "")[:MESSAGE_CHARS]}


def refused_for_good(exc: ApiError) -> bool:
    """A refusal that another try cannot change (a wrong spec, an incompatible or untrusted
    candidate), as opposed to a conflict with the state (another rollout running) or an outage."""
    return exit_code(exc.status, exc.body) == 2


# -- the follower: one MLflow alias, one changeover model ----------------------------------------


@dataclass
class RegistryFollower:
    source: Any  # registry.mlflow_source.MlflowSource (a fake in unit tests)
    api: Client
    registered: str  # the MLflow registered model
    alias: str
    spec: dict[str, Any]  # a rollout spec; its candidate is the pushed version
    model: str  # the changeover model
    trust: bool = False

    def poll(self) -> list[str]:
        """One poll: write the outcomes of rollouts that ended, then start one for the version the
        alias points at if it is new. Returns what it did, as lines for a person."""
        said = []
        for version, rid in awaiting_outcome(self.source.versions(self.registered)):
            tags = outcome_tags(self.api.get(f"/api/rollouts/{rid}"))
            if tags is not None:
                self.source.set_tags(self.registered, version, tags)
                said.append(f"{self.registered} v{version}: rollout {rid} {tags[TAG_OUTCOME]}; tagged in MLflow")
        aliased = self.source.alias_version(self.registered, self.alias)
        if aliased is not None and needs_rollout(aliased.tags):
            said.append(self.start(aliased.version))
        return said

    def _refuse(self, version: str, why: str) -> str:
        self.source.set_tags(self.registered, version, {TAG_OUTCOME: REFUSED, TAG_MESSAGE: why[:MESSAGE_CHARS]})
        return f"{self.registered} v{version} ({self.alias}): refused: {why}; tagged in MLflow"

    def start(self, version: str) -> str:
        ref = f"models:/{self.registered}/{version}"
        try:
            pushed = push_mlflow(self.api, ref, name=self.model, labels={}, trust=self.trust, source=self.source)
        except ApiError as exc:
            if refused_for_good(exc):
                return self._refuse(version, f"push refused: {exc}")
            raise
        except InvalidRequest:
            raise  # MLflow could not be read: another poll may
        except ChangeoverError as exc:  # an MLflow model changeover cannot serve
            return self._refuse(version, str(exc))
        self.source.set_tags(self.registered, version, {TAG_VERSION: str(pushed["version"])})
        spec = dict(self.spec) | {"model": self.model, "candidate": str(pushed["version"])}
        try:
            spec = self.api.api.upload_gate_data(spec)  # a server reads data only from its own folders
            created = self.api.request("POST", "/api/rollouts", json={"spec": spec})
        except ApiError as exc:
            if refused_for_good(exc):
                return self._refuse(version, f"rollout refused: {exc}")
            raise
        self.source.set_tags(self.registered, version, {TAG_ROLLOUT: str(created["id"])})
        return (f"{self.registered} v{version} ({self.alias}) → {self.model} v{pushed['version']}: "
                f"rollout {created['id']} against v{created['champion']}")

    def run(self, *, iterations: int | None, interval: float) -> int:
        """Poll ``iterations`` times (None: until stopped), ``interval`` seconds apart. A poll that
        fails is printed and the next goes on; the exit code is 1 when the last one failed."""
        done, failed = 0, False
        while iterations is None or done < iterations:
            if done:
                time.sleep(interval)
            done += 1
            try:
                for line in self.poll():
                    console.print(line, soft_wrap=True)
                failed = False
            except Exception as exc:  # the loop never dies: MLflow or the server away, a bad answer
                failed = True
                err.print(f"[red]error[/red]: poll {done}: {type(exc).__name__}: {exc}", soft_wrap=True)
        return 1 if failed else 0


def follow_registry(
    name: Annotated[str, typer.Argument(help="The MLflow registered model to follow")],
    alias: Annotated[str, typer.Option(help="The MLflow alias whose moves start rollouts")] = "challenger",
    spec: Annotated[Path, typer.Option("--spec", exists=True, help="Rollout spec (YAML); its candidate is "
                                       "replaced by the version pushed")] = Path("rollout.yaml"),
    model: Annotated[str | None, typer.Option("--model", help="The changeover model (default: the spec's "
                                              "model, else NAME)")] = None,
    trust: Annotated[bool, typer.Option("--trust", help="Trust the pushed versions as a whole (pickles, pyfunc "
                                        "models): only if you trust their authors")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls")] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="Poll once and exit")] = False,
    iterations: Annotated[int | None, typer.Option(min=1, help="Poll this many times and exit")] = None,
) -> None:
    """Follow an MLflow alias: each new version it points at is pushed and rolled out with the
    spec; when the rollout ends, its outcome is tagged on the MLflow version (MLFLOW_TRACKING_URI)."""
    from changeover.registry.mlflow_source import MlflowSource

    data = load_spec_file(spec)
    target = valid_name(model or str(data.get("model") or name))
    try:
        source = MlflowSource()
    except InvalidRequest as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    follower = RegistryFollower(source=source, api=client(), registered=name, alias=alias, spec=data,
                                model=target, trust=trust)
    console.print(f"following models:/{name}@{alias} → {target}", soft_wrap=True)
    raise typer.Exit(follower.run(iterations=1 if once else iterations, interval=interval))
