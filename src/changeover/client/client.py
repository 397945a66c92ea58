"""`Client`: every call of the management API (and inference and feedback) as a typed method.
The CLI is built on it; notebooks and CI scripts use it directly. All network calls go through
one `httpx.Client` (pass ``transport=`` to swap it), and every refusal is raised as an error of
`changeover.client.errors` carrying the server's message."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from changeover.client.errors import InvalidRequestError, UnavailableError, api_error
from changeover.client.results import (
    AliasMove,
    Compat,
    Feedback,
    GateResult,
    Inference,
    Model,
    Shadow,
    ShadowReport,
    Status,
    Version,
)
from changeover.client.rollouts import Event, Events, Rollback, Rollout, RolloutCommand

if TYPE_CHECKING:
    from changeover.settings import Settings

__all__ = ["Client", "load_spec"]

PathLike = str | Path


def _segment(value: str | int) -> str:
    """One URL path segment: a version ref or an alias never escapes its place in the path."""
    return quote(str(value), safe="")


def load_spec(path: PathLike) -> dict[str, Any]:
    """A rollout spec from a YAML file, with ``gate.data`` made absolute relative to the spec's
    folder (as a person reads the file). InvalidRequestError (status 0, field ``spec``) for a
    file that is not YAML or not a mapping; OSError for one that cannot be read."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidRequestError(0, f"{path}: not valid YAML ({exc})", field="spec") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(0, f"{path}: expected a mapping at the top level", field="spec")
    gate = data.get("gate")
    if isinstance(gate, dict) and isinstance(gate.get("data"), str) and not Path(gate["data"]).is_absolute():
        gate["data"] = str((path.parent / gate["data"]).resolve())
    return data


def _artifact_body(path: Path) -> tuple[bytes, str, bool]:
    """What a push uploads: (bytes, file name, is a folder). A folder (or a file with a
    ``model.yaml`` beside it, bundled into one) travels as a .tar.gz."""
    from changeover.registry.manifest import bundle_sidecar  # the registry's own rule for a sidecar

    with tempfile.TemporaryDirectory() as tmp:
        source = bundle_sidecar(path, Path(tmp))
        if not source.is_dir():
            return source.read_bytes(), path.name, False
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for item in sorted(source.rglob("*")):
                if "__pycache__" not in item.parts:
                    archive.add(item, arcname=item.relative_to(source).as_posix(), recursive=False)
        return buffer.getvalue(), path.name + ".tar.gz", True


def _data_body(data: Any) -> tuple[bytes, str]:
    """A gate's held-out data: a .csv or .parquet file, or a pandas DataFrame (sent as Parquet)."""
    if isinstance(data, str | Path):
        path = Path(data)
        if not path.is_file():
            raise InvalidRequestError(0, f"data: {path} is not a file", field="data")
        return path.read_bytes(), path.name
    if hasattr(data, "to_parquet"):
        buffer = io.BytesIO()
        data.to_parquet(buffer, index=False)
        return buffer.getvalue(), "data.parquet"
    raise InvalidRequestError(0, f"data: expected a file path or a DataFrame, got {type(data).__name__}", field="data")


class Client:
    """A client of one changeover server.

    ``url`` and ``token`` default to the environment, as the CLI reads it: CHANGEOVER_URL (else
    http://127.0.0.1:8080), CHANGEOVER_TOKEN (else the token file in CHANGEOVER_HOME). ``actor``
    is who the audit log says acted (``ci:release-42``). Use it as a context manager, or `close` it.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 60.0,
                 actor: str = "python", settings: Settings | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        from changeover.settings import Settings
        from changeover.web.auth import read_token

        self.settings = settings or Settings()
        self.url = (url or self.settings.url).rstrip("/")
        self.token = token or read_token(self.settings.token, self.settings.token_file)
        headers = {"x-changeover-actor": actor}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"<changeover.Client {self.url}>"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ---- the one seam to the network -----------------------------------------------

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call; the answer when it is a success, else the error of its status, with the
        server's message (UnavailableError with status 0 when no server answered)."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise UnavailableError(0, f"no changeover server at {self.url}: start one with `changeover serve`") from None
        except httpx.TimeoutException:
            raise UnavailableError(0, f"the server at {self.url} did not answer in time") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise api_error(response.status_code, body, response.text, response.headers)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any management call, its JSON answer as it came (None for an empty one): for what
        has no method here yet. ``kwargs`` go to httpx (``params``, ``json``, ``content``)."""
        response = self.send(method, path, **kwargs)
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        """A GET with the query parameters that are not None."""
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    @staticmethod
    def _model(name: str) -> str:
        """``/api/models/NAME``, after the name rule the server applies (checked before any request)."""
        from changeover.domain.names import check_name
        from changeover.errors import InvalidRequest

        try:
            check_name(name)
        except InvalidRequest as exc:
            raise InvalidRequestError(0, exc.reason, field="name") from None
        return f"/api/models/{name}"

    # ---- the registry ----------------------------------------------------------------

    def models(self) -> list[str]:
        """The names of every model."""
        return [m["model"] for m in self.get("/api/models")]

    def model(self, name: str) -> Model:
        """One model: its versions, aliases, alias history and traffic policy."""
        return Model.from_json(self.get(self._model(name)))

    def version(self, name: str, ref: str | int) -> Version:
        """One version, by number or alias (``"champion"``)."""
        return Version.from_json(self.get(f"{self._model(name)}/versions/{_segment(ref)}"))

    def push(self, path: PathLike, name: str, *, labels: Mapping[str, str] | None = None, runtime: str | None = None,
             trust: bool = False, trust_types: Sequence[str] | None = None) -> Version:
        """Store an artifact file (``.skops``, ``.onnx``, ``.pkl``) or a model folder as the model's
        next version; the same bytes again answer the existing version (``created`` false).
        ``trust`` trusts the whole artifact (a pickle, a python folder, any skops type): only if
        you trust its author; ``trust_types`` trusts skops types by name (sent only when given,
        e.g. ``["sklearn.tree._tree.Tree"]``). A folder's absolute path goes along: a server
        whose CHANGEOVER_TRUSTED_FOLDERS holds it trusts a python folder there without ``trust``."""
        artifact = Path(path)
        where = self._model(name)
        if not artifact.exists():
            raise InvalidRequestError(0, f"path: {artifact} does not exist", field="path")
        content, filename, folder = _artifact_body(artifact)
        params: dict[str, Any] = {"filename": filename, "trust": trust,
                                  "label": [f"{k}={v}" for k, v in (labels or {}).items()]}
        if folder:
            params["folder"] = True
        if runtime:
            params["runtime"] = runtime
        if trust_types is not None:  # the API's query parameter is `trust_type`, repeated
            params["trust_type"] = list(trust_types)
        if artifact.is_dir():  # a python folder pushed from a path the server trusts needs no `trust`
            params["origin"] = str(artifact.resolve())
        return Version.from_json(self.request("POST", f"{where}/versions", params=params, content=content))

    def set_alias(self, name: str, alias: str, version: int, *, reason: str = "",
                  expect: int | None = None) -> AliasMove:
        """Point ``alias`` at ``version``. Moving ``champion`` loads and warms the version first
        and swaps traffic with no failed request (the old champion becomes ``previous``).
        ``expect``: move only if the alias still points there (else ConflictError)."""
        body: dict[str, Any] = {"version": version, "reason": reason}
        if expect is not None:
            body["expect"] = expect
        return AliasMove.from_json(self.request("PUT", f"{self._model(name)}/aliases/{_segment(alias)}", json=body))

    # ---- the road before live traffic ------------------------------------------------

    def compat(self, name: str, ref: str | int, *, against: str = "champion", limit: int = 1000) -> Compat:
        """Can the candidate read today's requests? Its signature against ``against``'s, then the
        newest ``limit`` recorded production requests replayed through it."""
        return Compat.from_json(self.request("POST", f"{self._model(name)}/versions/{_segment(ref)}/compat",
                                             params={"against": against, "limit": limit}))

    def validate(self, name: str, ref: str | int, data: Any, *, task: str, target: str = "label",
                 against: str | None = "champion", policy: Mapping[str, Any] | PathLike | None = None,
                 query_column: str | None = None, ks: Sequence[int] | None = None, item_column: str | None = None,
                 segment: str | None = None, report: bool = False) -> GateResult:
        """The offline gate: the candidate against ``against`` on the same held-out ``data`` (a
        .csv or .parquet file, or a DataFrame), paired bootstrap intervals per metric. ``policy``:
        the rules (``{"accuracy": {"not_worse_than": "champion", "margin": 0.01}}``), or a YAML file
        holding a ``require:`` mapping, a ``gate:`` section or a whole rollout spec. ``report``:
        also the HTML report (``result.html``, ``result.save_report(path)``). A failed gate is
        a result (``passed`` false), not an error."""
        content, filename = _data_body(data)
        params: dict[str, Any] = {"task": task, "target": target, "filename": filename, "report": report}
        if against is not None:
            params["against"] = against
        if isinstance(policy, Mapping):
            params["policy"] = json.dumps({"require": dict(policy)})  # JSON is YAML
        elif policy is not None:
            params["policy"] = Path(policy).read_text()
        optional = {"query_column": query_column, "ks": list(ks) if ks else None, "item_column": item_column,
                    "segment": segment}
        params |= {k: v for k, v in optional.items() if v is not None}
        out = self.request("POST", f"{self._model(name)}/versions/{_segment(ref)}/validate", params=params,
                           content=content)
        return GateResult.from_json(out["result"], out.get("html"))

    def upload_data(self, data: Any) -> str:
        """Send held-out data (a .csv or .parquet file, or a DataFrame) to the server, which keeps
        it content-addressed in its home's ``data/`` folder: the answer is its path there, which a
        spec's ``gate.data`` may name (a server reads data only from its data folders)."""
        content, filename = _data_body(data)
        return str(self.request("POST", "/api/data", params={"filename": filename}, content=content)["data"])

    def upload_gate_data(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The spec, its ``gate.data`` sent first when it names a file here (`upload_data`) and
        replaced by the path the server keeps it at; a path not here is left as a server's path."""
        body = dict(spec)
        gate = body.get("gate")
        if isinstance(gate, Mapping) and isinstance(gate.get("data"), str) and Path(gate["data"]).is_file():
            body["gate"] = {**gate, "data": self.upload_data(gate["data"])}
        return body

    # ---- shadows -----------------------------------------------------------------------

    def shadow(self, name: str, version: str | int, *, sample: float = 1.0, requests: int | None = None,
               duration: float | str | None = None, segment: str | None = None, timeout: float = 1.0,
               require: Mapping[str, Mapping[str, Any]] | None = None) -> Shadow:
        """Mirror ``sample`` of live traffic to ``version``; its answers never reach a user. It
        stops after ``requests`` pairs or ``duration`` (seconds, or ``"30m"``), or when stopped.
        ``segment`` (``header:NAME`` or ``input:NAME``) breaks its figures down; ``require`` the
        rules its verdict is judged by (``{"agreement": {"min": 0.9}}``)."""
        seconds: float | None = None
        if duration is not None:
            from changeover.domain.spec import parse_duration

            try:
                seconds = parse_duration(duration)
            except ValueError as exc:
                raise InvalidRequestError(0, f"duration: {exc}", field="duration") from None
        body = {"version": str(version), "sample": sample, "requests": requests, "duration_s": seconds,
                "segment": segment, "timeout_s": timeout, "require": dict(require or {})}
        return Shadow.from_json(name, self.request("POST", f"{self._model(name)}/shadows", json=body))

    def stop_shadow(self, name: str, version: str | int | None = None) -> list[int]:
        """Stop the model's shadows (or only ``version``'s): each verdict is judged and logged.
        The versions stopped (none when nothing was running)."""
        params = {"version": str(version)} if version is not None else {}
        return list(self.request("DELETE", f"{self._model(name)}/shadows", params=params)["stopped"])

    def shadows(self, name: str) -> list[Shadow]:
        """Every shadow of a model, oldest first."""
        return [Shadow.from_json(name, s) for s in self.get(f"{self._model(name)}/shadows")]

    def shadow_report(self, name: str, version: str | int | None = None, *, html: bool = False) -> ShadowReport:
        """The comparison of a shadow (the latest, or ``version``'s) with the champion; ``html``:
        also the report page (``report.html``)."""
        params = {"version": None if version is None else str(version), "html": html}
        return ShadowReport.from_json(self.get(f"{self._model(name)}/shadows/report", **params))

    # ---- rollouts ------------------------------------------------------------------------

    def apply(self, spec: Mapping[str, Any] | PathLike, *, wait: bool = False, timeout: float | None = None,
              on_change: Callable[[Rollout], None] | None = None) -> Rollout:
        """Start a rollout from a spec (a mapping, or a YAML file): compatibility → gate → shadow →
        canary steps → promotion → watch. The compatibility step runs before the answer: a
        candidate that fails it raises RefusedError (``body["compat"]``: the evidence), a spec
        that is wrong InvalidRequestError with every problem, another rollout running
        ConflictError. ``wait``: follow it until it ends (see `wait`)."""
        body = self.upload_gate_data(spec if isinstance(spec, Mapping) else load_spec(spec))
        started = self.request("POST", "/api/rollouts", json={"spec": body})
        rollout = Rollout.from_json(self.get(f"/api/rollouts/{int(started['id'])}"), started)
        return self.wait(rollout, timeout=timeout, on_change=on_change) if wait else rollout

    def rollout(self, rollout_id: int) -> Rollout:
        """One rollout with its verdicts and events."""
        return Rollout.from_json(self.get(f"/api/rollouts/{int(rollout_id)}"))

    def rollouts(self, name: str | None = None, *, active: bool | None = None, limit: int = 20) -> list[Rollout]:
        """Rollouts, newest first (of one model, only the active ones)."""
        if name is not None:
            self._model(name)
        return [Rollout.from_json(r) for r in self.get("/api/rollouts", model=name, active=active, limit=limit)]

    def rollout_status(self, name: str) -> Rollout | None:
        """The latest rollout of a model, or None when it has had none."""
        latest = self.rollouts(name, limit=1)
        return latest[0] if latest else None

    def wait(self, rollout: Rollout | int, *, timeout: float | None = None, poll: float = 0.5,
             on_change: Callable[[Rollout], None] | None = None) -> Rollout:
        """Poll a rollout until it ends (promoted, rolled back, aborted, failed) or ``timeout``
        seconds pass; its last state either way (check ``ended``). ``on_change`` is called with
        every new phase, step, weight or message (a CI script prints progress lines with it)."""
        current = rollout if isinstance(rollout, Rollout) else self.rollout(rollout)
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = None
        while True:
            state = (current.phase, current.step_index, current.weight, current.message)
            if on_change is not None and state != seen:
                on_change(current)
            seen = state
            if current.ended or (deadline is not None and time.monotonic() >= deadline):
                return current
            time.sleep(poll)
            current = self.rollout(current.id)

    def _command(self, name: str, command: str) -> RolloutCommand:
        return RolloutCommand.from_json(self.request("POST", f"{self._model(name)}/rollout/{command}"))

    def pause(self, name: str) -> RolloutCommand:
        """Hold the running rollout where it is."""
        return self._command(name, "pause")

    def resume(self, name: str) -> RolloutCommand:
        """Go on from a pause (the bake restarts)."""
        return self._command(name, "resume")

    def abort(self, name: str) -> RolloutCommand:
        """Stop the running rollout and send all traffic back to the champion."""
        return self._command(name, "abort")

    def promote(self, name: str) -> RolloutCommand:
        """Skip the remaining steps and promote the candidate now."""
        return self._command(name, "promote")

    def rollback(self, name: str, *, to: int | None = None) -> Rollback:
        """Instant rollback: of the running rollout; with none running, champion back to
        ``previous`` — never to a version that failed its last rollout or gate (RefusedError
        saying why: name the version with ``to``)."""
        return Rollback.from_json(self.request("POST", f"{self._model(name)}/rollback",
                                               params={"to": to} if to is not None else None))

    # ---- what happened --------------------------------------------------------------------

    def status(self) -> Status:
        """Every model: aliases, versions, traffic policy; and this replica's gateway and controller."""
        return Status.from_json(self.get("/api/status"))

    def events(self, name: str | None = None, *, limit: int = 100, after: int = 0) -> Events:
        """The audit log, oldest first: the newest ``limit`` events (of one model), those with an
        id above ``after`` (to follow the log: pass the last id seen)."""
        if name is not None:
            self._model(name)
        return Events(Event.from_json(e) for e in self.get("/api/events", model=name, limit=limit, after=after))

    # ---- the data plane ----------------------------------------------------------------------

    def infer(self, name: str, body: Mapping[str, Any], *, version: int | None = None,
              headers: Mapping[str, str] | None = None) -> Inference:
        """An Open Inference Protocol v2 request (``{"inputs": [...]}``) routed as live traffic is
        (or pinned to ``version``); the answer, with the request id to send feedback for."""
        self._model(name)
        path = f"/v2/models/{name}" + (f"/versions/{int(version)}" if version is not None else "") + "/infer"
        response = self.send("POST", path, json=dict(body), headers=dict(headers or {}))
        data = response.json()
        served = response.headers.get("x-changeover-version")
        return Inference(model=name, version=int(served) if served and served.isdigit() else None,
                         request_id=response.headers.get("x-request-id") or data.get("id"),
                         outputs=list(data.get("outputs") or []), raw=data)

    def feedback(self, request_id: str, *, label: Any = None, reward: float | None = None) -> Feedback:
        """A label (or a reward) that arrived later, joined to a served request by its id. A
        second one for the same request is a ``duplicate`` (the first is kept). Sent with
        CHANGEOVER_FEEDBACK_TOKEN where it is set, else the management token."""
        body: dict[str, Any] = {"request_id": request_id}
        if label is not None:
            body["label"] = label
        if reward is not None:
            body["reward"] = reward
        headers = {"authorization": f"Bearer {self.settings.feedback_token}"} if self.settings.feedback_token else {}
        return Feedback.from_json(self.send("POST", "/v1/feedback", json=body, headers=headers).json())

