"""The ``changeover`` command: a client of the management API (it never opens the store)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from changeover.cli.client import ApiError
from changeover.cli.common import (
    JsonOpt,
    ModelName,
    client,
    console,
    err,
    fail,
    print_json,
    split_ref,
    valid_name,
    when,
    wrapped,
)
from changeover.cli.evaluation import compat, drift, shadow_app, validate
from changeover.cli.registry_follow import follow_registry, push_mlflow
from changeover.cli.rollout import apply, rollback, rollout_app
from changeover.errors import ChangeoverError
from changeover.registry.mlflow_source import is_mlflow_ref

app = typer.Typer(no_args_is_help=True, help="Take a new model version to 100% of traffic, one judged step at a time.")
models_app = typer.Typer(no_args_is_help=True, help="The registry: push, list and show versions.")
alias_app = typer.Typer(no_args_is_help=True, help="Move aliases (champion, candidate, previous).")
app.add_typer(models_app, name="models")
db_app = typer.Typer(no_args_is_help=True, help="The store's schema.")
app.add_typer(alias_app, name="alias")
app.add_typer(db_app, name="db")
app.add_typer(shadow_app, name="shadow")
app.add_typer(rollout_app, name="rollout")
app.command()(compat)
app.command()(validate)
app.command()(drift)
app.command()(apply)
app.command()(rollback)
app.command("follow-registry")(follow_registry)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8080,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
    grpc_port: Annotated[int | None, typer.Option(
        help="Also serve the Open Inference Protocol over gRPC on this port (on --host); "
             "default: CHANGEOVER_GRPC_PORT, else no gRPC")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Worker processes sharing the port (one per core); each serves inference and the API, "
                    "one leads the controller; Prometheus metrics are merged across them")] = 1,
) -> None:
    """Start the server: gateway, controller and management API in one process (or --workers)."""
    import uvicorn

    from changeover.server import create_app, prepare_workers
    from changeover.settings import Settings

    settings = Settings() if grpc_port is None else Settings(grpc_port=grpc_port)
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        prepare_workers(settings, host)
        config = uvicorn.Config("changeover.server:create_worker_app", factory=True, workers=workers, host=host,
                                port=port, log_level=log_level, access_log=False)
        sock = config.bind_socket()  # listening from here; the workers accept on it as each comes up
        typer.echo(listening_banner(host, sock.getsockname()[1], settings.grpc_port, workers), nl=False)
        sys.stdout.flush()
        Multiprocess(config, sockets=[sock]).run()
        return

    class AnnouncingServer(uvicorn.Server):
        """uvicorn's server, saying where it listens once its startup (and so gRPC's, in the
        lifespan) is done."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                bound = [s.getsockname()[1] for srv in self.servers for s in (srv.sockets or ())]
                typer.echo(listening_banner(host, bound[0] if bound else port, settings.grpc_port, 1), nl=False)
                sys.stdout.flush()

    config = uvicorn.Config(create_app(settings, grpc_host=host), host=host, port=port, log_level=log_level,
                            access_log=False)
    server = AnnouncingServer(config)
    server.run()
    if not server.started:
        raise typer.Exit(3)  # as uvicorn.run: it could not start (the port taken, a failed startup)


def listening_banner(host: str, port: int, grpc_port: int | None, workers: int) -> str:
    """Where a started server answers, for the person who started it."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else (
        f"[{host}]" if ":" in host else host)
    url = f"http://{shown}:{port}"
    lines = [f"changeover is listening on {host}:{port}" + (f" ({workers} workers)" if workers > 1 else ""),
             f"  API        {url}/api/  (OpenAPI {url}/openapi.json, docs {url}/docs)",
             f"  dashboard  {url}/",
             f"  metrics    {url}/metrics",
             f"  inference  {url}/v2/models/{{model}}/infer"]
    if grpc_port is not None:
        lines.append(f"  gRPC       {shown}:{grpc_port}")
    return "\n".join(lines) + "\n"


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the store (CHANGEOVER_STORE, else SQLite in the home) to the newest schema, for those
    who migrate as a separate step; `serve` does the same at start, under the same lock."""
    from changeover.settings import Settings
    from changeover.store.store import Store

    settings = Settings()
    store = Store(settings.store_url)
    try:
        revision = store.schema_revision()
    finally:
        store.close()
    where = settings.store_url.split("@")[-1]  # no password in what is printed
    typer.echo(f"the store at {where} is at schema revision {revision}")


@models_app.command("push")
def models_push(
    path: Annotated[str, typer.Argument(metavar="PATH", help="Artifact file, model folder, or an MLflow model: models:/NAME@ALIAS, "
                                             "models:/NAME/VERSION, runs:/RUN/PATH, a folder with an MLmodel file")],
    name: Annotated[str | None, typer.Option("--name", help="Model name (an MLflow registered model's by default)",
                                             callback=lambda v: v if v is None else valid_name(v))] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="k=v, repeatable")] = None,
    runtime: Annotated[str | None, typer.Option(help="Override the inferred runtime")] = None,
    trust: Annotated[bool, typer.Option("--trust", help="Trust the whole artifact (a pickle, a python folder, "
                                                        "any skops type): only if you trust its author")] = False,
    trust_type: Annotated[list[str] | None, typer.Option("--trust-type", help="Trust one skops type by name, "
                                                         "e.g. sklearn.tree._tree.Tree (repeatable)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store an artifact, or an MLflow model, as the model's next version (same bytes: the existing version)."""
    labels: dict[str, str] = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep:
            err.print(f"[red]error[/red]: --label expects k=v, got {item!r}")
            raise typer.Exit(2)
        labels[key] = value
    try:
        if is_mlflow_ref(path) and runtime is None:
            result = push_mlflow(client(), path, name=name, labels=labels, trust=trust, trust_types=trust_type or ())
        else:
            if name is None or not Path(path).exists():
                raise typer.BadParameter(f"Path {path!r} does not exist." if name else "required for a file, or a folder with no MLmodel",
                                         param_hint="'PATH'" if name else "'--name'")
            result = client().push(Path(path), name=name, labels=labels, runtime=runtime, trust=trust,
                                   trust_types=trust_type or ())
    except ApiError as exc:
        fail(exc)
        return
    except ChangeoverError as exc:  # an MLflow model that cannot be read or served, MLFLOW_TRACKING_URI unset
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    if as_json:
        print_json(result)
        return
    verb = "pushed" if result.get("created") else "already stored as"
    console.print(f"{verb} [bold]{result['model']}[/bold] v{result['version']} "
                  f"({result['runtime']}, sha256 {result['sha256'][:12]})")
    lineage = result.get("labels") or {}
    if "mlflow.uri" in lineage:  # an MLflow model: where it came from
        run = f", run {lineage['mlflow.run_id']}" if lineage.get("mlflow.run_id") else ""
        console.print(f"  from {lineage.get('mlflow.source') or lineage['mlflow.uri']}{run}", soft_wrap=True)


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """Every model with its versions and aliases."""
    try:
        data = client().get("/api/models")
    except ApiError as exc:
        fail(exc)
        return
    if as_json:
        print_json(data)
        return
    table = Table("model", "versions", "aliases")
    for row in data:
        table.add_row(row["model"], ", ".join(map(str, row["versions"])),
                      ", ".join(f"{a}=v{v}" for a, v in sorted(row["aliases"].items())))
    console.print(table)


@models_app.command("show")
def models_show(ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION (a number or an alias)")],
                as_json: JsonOpt = False) -> None:
    """One model's versions, or one version."""
    name, version = split_ref(ref)
    try:
        data = client().get(f"/api/models/{name}" + (f"/versions/{version}" if version else ""))
    except ApiError as exc:
        fail(exc)
        return
    if as_json:
        print_json(data)
        return
    versions = [data] if version else data["versions"]
    table = Table("version", "runtime", "task", "sha256", "aliases", "labels", "inputs", "outputs", "created", "gate")
    for v in versions:
        sig = v["signature"]
        roles = v.get("roles") or {}
        table.add_row(
            str(v["version"]), v["runtime"] + (" (trusted)" if v.get("trusted") else ""), v.get("task") or "-",
            v["sha256"][:12], ", ".join(v.get("aliases", [])), ", ".join(f"{k}={x}" for k, x in v["labels"].items()),
            "; ".join(f"{t['name']} {t['datatype']} {t['shape']}" for t in sig["inputs"]),
            "; ".join(f"{t['name']} {t['datatype']} {t['shape']}" + (f" ({roles[t['name']]})" if roles.get(t["name"]) else "")
                      for t in sig["outputs"]),
            when(v["created_at"]), (v.get("gate") or {}).get("verdict", "-"),
        )
    console.print(table)


@alias_app.command("set")
def alias_set(name: ModelName, alias: str, version: int,
              reason: Annotated[str, typer.Option(help="Why, for the audit log")] = "",
              as_json: JsonOpt = False) -> None:
    """Point ALIAS of NAME at VERSION (moving champion swaps traffic with no failed request)."""
    try:
        data = client().request("PUT", f"/api/models/{name}/aliases/{alias}", json={"version": version, "reason": reason})
    except ApiError as exc:
        fail(exc)
        return
    if as_json:
        print_json(data)
        return
    if data["previous"] is None:
        console.print(f"{alias} of {name} set to v{data['version']}")
    else:
        console.print(f"{alias} of {name}: v{data['previous']} → v{data['version']}")


@app.command()
def events(name: Annotated[str | None, typer.Argument(help="Only this model")] = None,
           limit: Annotated[int, typer.Option(help="How many, newest")] = 50,
           as_json: JsonOpt = False) -> None:
    """The audit log: who did what, when and why."""
    try:
        data = client().get("/api/events", model=name, limit=limit)
    except ApiError as exc:
        fail(exc)
        return
    if as_json:
        print_json(data)
        return
    table = Table("id", "when", "actor", "model", "kind", wrapped("message"))
    for e in data:
        table.add_row(str(e["id"]), when(e["at"]), e["actor"], e["model"] or "", e["kind"], e["message"])
    console.print(table)


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Every model: champion, traffic split, generation."""
    try:
        data = client().get("/api/status")
    except ApiError as exc:
        fail(exc)
        return
    if as_json:
        print_json(data)
        return
    table = Table("model", "versions", "aliases", "generation", "traffic")
    for m in data["models"]:
        policy = m["policy"] or {}
        weights = policy.get("weights", {})
        champ_share = 100 - sum(weights.values())
        traffic = ", ".join([f"v{policy.get('champion')}: {champ_share:g}%"] + [f"v{v}: {w:g}%" for v, w in weights.items()])
        table.add_row(m["model"], str(m["versions"]), ", ".join(f"{a}=v{v}" for a, v in sorted(m["aliases"].items())),
                      str(policy.get("generation", "-")), traffic if policy else "-")
    console.print(table)


@app.command()
def demo(keep: Annotated[bool, typer.Option("--keep", help="Keep the server running afterwards")] = False) -> None:
    """Train two models, start a server, and take a new version along the road under traffic."""
    from changeover.cli.demo import run_demo

    raise typer.Exit(run_demo(keep=keep))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
