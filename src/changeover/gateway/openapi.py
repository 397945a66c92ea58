"""The data plane in the management app's OpenAPI document (``/openapi.json``), so fuzzers and
client generators see inference too.

One source of truth: the paths and methods are those of `RestEndpoints.routes()` (a data-plane
route without a description here fails at start-up), each added to the FastAPI app as a route
whose endpoint is the very same RestEndpoints handler. `Server.app()` sends data-plane paths to
the gateway's own router before FastAPI sees them, so in `serve` these FastAPI routes are never
reached; reached anyway (the management app on its own) they answer as the gateway does. The
bodies are described by the pydantic models below and never parsed by FastAPI: the handlers read
and check them (`oip`), so the errors are the protocol's, not FastAPI's."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from changeover.gateway.rest import RestEndpoints

__all__ = ["describe_inference", "INFERENCE_TAGS"]

Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                   "FP16", "FP32", "FP64", "BYTES"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class RequestInput(_Open):
    name: str
    shape: list[Annotated[int, Field(ge=0)]] = Field(description="dimensions, each a non-negative integer")
    datatype: Datatype
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_size: the input's bytes follow the JSON (binary tensor data extension)")
    data: list[Any] = Field(description="the elements, flat or nested, in row-major order")


class RequestOutput(_Open):
    name: str
    parameters: dict[str, Any] | None = Field(None, description="binary_data: answer this output as raw bytes")


class InferenceRequest(_Open):
    """The Open Inference Protocol's inference request."""

    id: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_output: answer every output as raw bytes")
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Open):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(None, description="absent when the output is sent as raw bytes")


class InferenceResponse(_Open):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class ErrorBody(BaseModel):
    error: str
    field: str | None = Field(None, description="the request field the error is about")
    expected: str | None = None
    got: str | None = None
    error_id: str | None = Field(None, description="a model's own failure: the id to find it in the server's log")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Alive(BaseModel):
    status: Literal["alive"]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class TensorMetadata(_Open):
    name: str
    datatype: Datatype
    shape: list[int]
    parameters: dict[str, Any] | None = None


class ModelMetadata(_Open):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] | None = None


class PredictRequest(_Open):
    """KServe v1: one instance per row of the model's single input."""

    instances: list[Any] = Field(min_length=1)


class PredictResponse(BaseModel):
    predictions: list[Any]


class FeedbackRequest(_Open):
    request_id: str = Field(min_length=1, description="the x-request-id of a served request")
    label: Any = Field(None, description="the true label (for a ranker: the relevant item ids); or reward")
    reward: float | None = None


class FeedbackAnswer(_Open):
    request_id: str
    status: Literal["accepted", "duplicate"]


INFERENCE_TAGS = ["inference"]
REQUEST_MODELS: list[type[BaseModel]] = [InferenceRequest, PredictRequest, FeedbackRequest]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {400: "malformed request (not JSON, a missing or mistyped field)", 401: "a token is required",
            403: "the token is refused", 404: "no such model or version (or request id)",
            413: "body too large", 422: "the tensors do not fit the model's signature",
            500: "the model itself failed (error_id)", 503: "not ready or still loading (Retry-After)"}
    return {code: {"model": ErrorBody, "description": what[code]} for code in codes}


INFER_ERRORS = (400, 401, 403, 404, 413, 422, 500, 503)


@dataclass(frozen=True)
class Doc:
    summary: str
    responses: dict[int | str, dict[str, Any]]
    body: type[BaseModel] | None = None
    binary: bool = False  # the body may also be the binary tensor data extension's
    extra: dict[str, Any] = field(default_factory=dict)


def _ok(model: type[BaseModel], *errors: int, status: int = 200, description: str = "OK") -> dict[int | str, Any]:
    return {status: {"model": model, "description": description}, **_errors(*errors)}


_INFER = Doc("Infer (Open Inference Protocol v2)",
             {200: {"model": InferenceResponse,
                    "description": "the outputs (with binary outputs asked for: the JSON header, then raw bytes)"},
              **_errors(*INFER_ERRORS)}, InferenceRequest, binary=True)

DOCS: dict[tuple[str, str], Doc] = {
    ("/v2/health/live", "GET"): Doc("Server live", _ok(Live)),
    ("/v2/health/ready", "GET"): Doc("Server ready", {**_ok(Ready), 503: {"model": Ready, "description": "not ready"}}),
    ("/v2", "GET"): Doc("Server metadata", _ok(ServerMetadata)),
    ("/v2/models/{model}", "GET"): Doc("Model metadata (the champion)", _ok(ModelMetadata, 404)),
    ("/v2/models/{model}/ready", "GET"): Doc(
        "Model ready (the champion)", {**_ok(ModelReady, 404), 503: {"model": ModelReady, "description": "not loaded"}}),
    ("/v2/models/{model}/versions/{version}", "GET"): Doc("Model version metadata", _ok(ModelMetadata, 404)),
    ("/v2/models/{model}/versions/{version}/ready", "GET"): Doc(
        "Model version ready", {**_ok(ModelReady, 404), 503: {"model": ModelReady, "description": "not loaded"}}),
    ("/v2/models/{model}/infer", "POST"): _INFER,
    ("/v2/models/{model}/versions/{version}/infer", "POST"): Doc("Infer on a pinned version", _INFER.responses,
                                                                 InferenceRequest, binary=True),
    ("/v1/models/{model}:predict", "POST"): Doc("Predict (KServe v1)", _ok(PredictResponse, *INFER_ERRORS),
                                                PredictRequest),
    ("/v1/models/{model}", "GET"): Doc(
        "Model ready (KServe v1)", {**_ok(ModelReady, 404), 503: {"model": ModelReady, "description": "not loaded"}}),
    ("/v1/feedback", "POST"): Doc("Feedback: a label or reward for a served request",
                                  {**_ok(FeedbackAnswer, status=201, description="accepted"),
                                   200: {"model": FeedbackAnswer, "description": "a duplicate: the first is kept"},
                                   **_errors(400, 401, 403, 404, 413, 422)}, FeedbackRequest),
    ("/", "GET"): Doc("Server live (KServe v1); a client that asks for text/html gets the dashboard",
                      {200: {"model": Alive, "description": "alive (JSON), or the dashboard (HTML) for a browser",
                             "content": {"text/html": {"schema": {"type": "string"}}}}}),
    ("/metrics", "GET"): Doc("Prometheus metrics", {200: {"description": "the text exposition format",
                                                          "content": {"text/plain": {"schema": {"type": "string"}}}}}),
}


def _operation(path: str, doc: Doc) -> dict[str, Any]:
    extra: dict[str, Any] = dict(doc.extra)
    params = re.findall(r"{(\w+)}", path)
    if params:
        extra["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                               for p in params]
    if doc.binary:
        extra.setdefault("parameters", []).append(
            {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
             "description": "binary tensor data extension: the JSON header's length; raw tensor bytes follow it",
             "schema": {"type": "integer", "minimum": 0}})
    if doc.body is not None:
        ref = {"$ref": f"#/components/schemas/{doc.body.__name__}"}
        content: dict[str, Any] = {"application/json": {"schema": ref}}
        if doc.binary:
            content["application/octet-stream"] = {
                "schema": {"type": "string", "format": "binary",
                           "description": "JSON header (its length in Inference-Header-Content-Length), then raw tensor bytes"}}
        extra["requestBody"] = {"required": True, "content": content}
    return extra


def _request_endpoint(endpoint: Any) -> Any:
    """A route's endpoint as FastAPI takes it: a function of the request. The inference routes
    are raw ASGI apps (`gateway.rest`), wrapped here so FastAPI neither describes their ASGI
    arguments as parameters nor fails should it ever route a request to them."""
    if inspect.isfunction(endpoint) or inspect.ismethod(endpoint):
        return endpoint

    async def via_asgi(request: Request) -> Response:
        messages: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        await endpoint(request.scope, request.receive, send)
        start = messages[0]
        body = b"".join(m.get("body", b"") for m in messages[1:])
        response = Response(body, status_code=start["status"])
        response.raw_headers = list(start.get("headers", []))
        return response

    return via_asgi


def describe_inference(app: FastAPI, rest: RestEndpoints) -> None:
    """Add every data-plane route of ``rest`` to ``app``'s routes and OpenAPI document."""
    for route in rest.routes():
        for method in sorted((route.methods or set()) - {"HEAD"}):
            doc = DOCS[(route.path, method)]  # a KeyError here: a new data-plane route lacks its description
            text: dict[str, Any] = {"response_class": PlainTextResponse} if route.path == "/metrics" else {}
            app.add_api_route(route.path, _request_endpoint(route.endpoint), methods=[method], summary=doc.summary,
                              tags=list(INFERENCE_TAGS), response_model=None, responses=doc.responses,
                              openapi_extra=_operation(route.path, doc), **text,
                              operation_id=f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', route.path.lower()).strip('_') or 'root'}")
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        _, defs = models_json_schema([(m, "validation") for m in REQUEST_MODELS],
                                     ref_template="#/components/schemas/{model}")
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
