"""MLflow as a source of versions: a registered model (``models:/NAME@ALIAS``,
``models:/NAME/VERSION``), a run's model (``runs:/RUN/PATH``) or a local MLflow model folder
(one with an ``MLmodel`` file) becomes a folder that changeover's registry takes as it is.

The folder is the MLflow model, unchanged, plus a ``model.yaml`` that says which of changeover's
runtimes serves it and the signature read from the ``MLmodel`` file. Native flavours go to the
runtime changeover has for them, so they are served without MLflow and without code: ONNX to
``onnx``, scikit-learn saved with skops to ``skops``. A scikit-learn pickle or cloudpickle goes to
``pickle``, and anything else with a ``python_function`` flavour to ``mlflow`` (pyfunc, which
unpickles or runs the model's code): both are refused by the registry unless pushed with
``--trust``, exactly like a ``.pkl``. The run id, the registry's source and the URI travel as
labels (``mlflow.*``), so a version says where it came from.

Only this module and the ``mlflow`` runtime import ``mlflow``, and only when an MLflow model is
pushed; every call to an MLflow server goes through `MlflowSource`, which tests run against a
real tracking server. The mapping from MLflow's schema to a `Signature` and the choice of
runtime are pure (`signature_from_mlflow`, `choose_runtime`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import yaml

from changeover.domain.signature import Signature, TensorSpec, datatype_of
from changeover.errors import ArtifactError, InvalidRequest

MLMODEL = "MLmodel"
SCHEMES = ("models:/", "runs:/")
INPUT = "input"  # the name of an unnamed input tensor (as the estimator runtimes call theirs)

# MLflow's column types (mlflow.types.DataType) as protocol datatypes; datetime has none
COLUMN_DATATYPES = {"boolean": "BOOL", "integer": "INT32", "long": "INT64", "float": "FP32", "double": "FP64",
                    "string": "BYTES", "binary": "BYTES"}


def is_mlflow_ref(ref: str) -> bool:
    """Whether ``ref`` names an MLflow model: a ``models:/`` or ``runs:/`` URI, or a folder
    holding an ``MLmodel`` file."""
    if ref.startswith(SCHEMES):
        return True
    path = Path(ref)
    return path.is_dir() and (path / MLMODEL).is_file()


@dataclass(frozen=True)
class RegistryRef:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``, taken apart."""

    name: str
    version: str | None = None
    alias: str | None = None


def parse_models_uri(uri: str) -> RegistryRef:
    """Take a ``models:/`` URI apart; InvalidRequest naming the ``ref`` when it is neither form.
    (``models:/NAME/latest`` and stages are MLflow's older words: use an alias.)"""
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, _, alias = rest.rpartition("@")
        if name and alias and "/" not in alias:
            return RegistryRef(name=name, alias=alias)
    else:
        name, _, version = rest.rpartition("/")
        if name and version.isascii() and version.isdigit():
            return RegistryRef(name=name, version=version)
    raise InvalidRequest("ref", f"{uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")


def without_credentials(uri: str) -> str:
    """A tracking URI fit for a label: no user or password."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- the signature: MLflow's schema in the protocol's words (pure) -------------------------------


def _tensor_datatype(dtype: Any) -> str:
    try:
        return datatype_of(np.empty(0, dtype=np.dtype(dtype)))
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"MLmodel: a tensor of dtype {dtype} has no protocol datatype") from exc


def _column_datatype(spec: Any) -> str:
    kind = getattr(spec.type, "name", str(spec.type))
    datatype = COLUMN_DATATYPES.get(str(kind))
    if datatype is None:
        raise ArtifactError(f"MLmodel: column {spec.name or '(unnamed)'} of type {kind} has no protocol datatype; "
                            f"changeover takes {', '.join(COLUMN_DATATYPES)}")
    return datatype


def answer_name(datatype: str) -> str:
    """The name of an unnamed output: ``label`` for classes (integers, strings, booleans),
    ``prediction`` for numbers; `domain.roles` reads the role from these names."""
    return "prediction" if datatype in ("FP16", "FP32", "FP64") else "label"


def _inputs(schema: Any) -> tuple[tuple[TensorSpec, ...], tuple[str, ...]]:
    specs = list(schema.inputs)
    if schema.is_tensor_spec():
        if len(specs) == 1 and specs[0].name is None:
            shape = tuple(int(d) for d in specs[0].shape)
            return (TensorSpec(INPUT, _tensor_datatype(specs[0].type), shape),), ()
        return tuple(TensorSpec(str(s.name), _tensor_datatype(s.type), tuple(int(d) for d in s.shape),
                                optional=not getattr(s, "required", True)) for s in specs), ()
    datatypes = [_column_datatype(s) for s in specs]
    named = all(s.name for s in specs)
    # columns of one datatype: one 2-D input whose second axis has the columns' names (the form
    # the estimator runtimes take); columns of several datatypes: one input per column
    if named and len(set(datatypes)) == 1 and all(getattr(s, "required", True) for s in specs):
        return (TensorSpec(INPUT, datatypes[0], (-1, len(specs))),), tuple(str(s.name) for s in specs)
    if not named:
        if len(specs) == 1:
            return (TensorSpec(INPUT, datatypes[0], (-1,)),), ()
        raise ArtifactError("MLmodel: unnamed columns in the input schema; log the model with named columns")
    return tuple(TensorSpec(str(s.name), d, (-1,), optional=not getattr(s, "required", True))
                 for s, d in zip(specs, datatypes, strict=True)), ()


def _outputs(schema: Any) -> tuple[TensorSpec, ...]:
    specs = list(schema.inputs)  # a Schema keeps its columns or tensors under .inputs, outputs too
    tensor = schema.is_tensor_spec()
    out: list[TensorSpec] = []
    for s in specs:
        datatype = _tensor_datatype(s.type) if tensor else _column_datatype(s)
        shape = tuple(int(d) for d in s.shape) if tensor else (-1,)
        name = str(s.name) if s.name else answer_name(datatype)
        out.append(TensorSpec(name, datatype, shape))
    return tuple(out)


def signature_from_mlflow(signature: Any) -> Signature | None:
    """An MLflow ``ModelSignature`` as changeover's `Signature`, or None when there is none.

    Tensors keep their names, dtypes and shapes (an unnamed one is ``input``); a table's columns
    of one type become one 2-D ``input`` whose features are the column names, columns of several
    types one input each. An unnamed output is ``label`` or ``prediction`` (`answer_name`)."""
    if signature is None or signature.inputs is None:
        return None
    inputs, features = _inputs(signature.inputs)
    outputs = _outputs(signature.outputs) if signature.outputs is not None else ()
    try:
        return Signature(inputs=inputs, outputs=outputs, features=features)
    except ValueError as exc:
        raise ArtifactError(f"MLmodel: {exc}") from exc


# -- which runtime serves a flavour (pure) --------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    runtime: str
    artifact: str | None  # the file the runtime loads, inside the folder (None: the folder, for pyfunc)
    flavor: str  # the MLflow flavour it was chosen for


def choose_runtime(flavors: Mapping[str, Any], signature: Signature | None) -> Choice:
    """The runtime for an MLflow model's flavours: ONNX → ``onnx``; scikit-learn → ``skops``
    (skops format) or ``pickle`` (pickle, cloudpickle), when its inputs are one tensor as the
    estimator runtimes take; any other ``python_function`` model → ``mlflow`` (pyfunc)."""
    onnx = flavors.get("onnx")
    if isinstance(onnx, Mapping) and onnx.get("data"):
        return Choice("onnx", str(onnx["data"]), "onnx")
    sklearn = flavors.get("sklearn")
    one_input = signature is None or len(signature.inputs) == 1
    if isinstance(sklearn, Mapping) and sklearn.get("pickled_model") and one_input:
        fmt = str(sklearn.get("serialization_format") or "pickle")
        if fmt == "skops":
            return Choice("skops", str(sklearn["pickled_model"]), "sklearn")
        if fmt in ("pickle", "cloudpickle"):
            return Choice("pickle", str(sklearn["pickled_model"]), "sklearn")
    if "python_function" in flavors:
        pyfunc = flavors["python_function"]
        loader = str(pyfunc.get("loader_module") or "") if isinstance(pyfunc, Mapping) else ""
        flavor = loader.removeprefix("mlflow.") if loader.startswith("mlflow.") else "python_function"
        if flavor.startswith("pyfunc"):  # a python_model (cloudpickled, or models-from-code)
            flavor = "python_function"
        return Choice("mlflow", None, flavor)
    raise ArtifactError(f"MLmodel: no flavour changeover can serve among {', '.join(sorted(flavors)) or 'none'} "
                        "(it serves onnx, sklearn and python_function models)")


# -- the one wrapper around MLflow's client --------------------------------------------------------


@dataclass(frozen=True)
class ModelVersionInfo:
    """What changeover reads of one MLflow model version."""

    name: str
    version: str
    run_id: str | None
    source: str | None
    tags: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


class MlflowSource:
    """Every call changeover makes to an MLflow tracking server and registry (one seam)."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise InvalidRequest("MLFLOW_TRACKING_URI", "is not set: say where the MLflow tracking server is, "
                                 "e.g. MLFLOW_TRACKING_URI=http://127.0.0.1:5000")
        from mlflow import MlflowClient

        self.tracking_uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    @staticmethod
    def _info(mv: Any) -> ModelVersionInfo:
        return ModelVersionInfo(name=mv.name, version=str(mv.version), run_id=mv.run_id or None,
                                source=mv.source or None, tags=dict(mv.tags or {}), aliases=tuple(mv.aliases or ()))

    def version(self, ref: RegistryRef) -> ModelVersionInfo:
        from mlflow.exceptions import MlflowException

        try:
            if ref.alias is not None:
                return self._info(self.client.get_model_version_by_alias(ref.name, ref.alias))
            return self._info(self.client.get_model_version(ref.name, str(ref.version)))
        except MlflowException as exc:
            what = f"@{ref.alias}" if ref.alias is not None else f"/{ref.version}"
            raise InvalidRequest("ref", f"models:/{ref.name}{what} at {without_credentials(self.tracking_uri)}: "
                                 f"{exc.message}") from None

    def alias_version(self, name: str, alias: str) -> ModelVersionInfo | None:
        """The version ``alias`` points at, or None while it points nowhere."""
        from mlflow.exceptions import MlflowException

        try:
            return self._info(self.client.get_model_version_by_alias(name, alias))
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def versions(self, name: str) -> list[ModelVersionInfo]:
        return [self._info(mv) for mv in self.client.search_model_versions(f"name = '{_quoted(name)}'")]

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)

    def download(self, uri: str, into: Path) -> Path:
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        into.mkdir(parents=True, exist_ok=True)
        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into),
                                                            tracking_uri=self.tracking_uri))
        except MlflowException as exc:
            raise InvalidRequest("ref", f"{uri}: {exc.message}") from None


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")


# -- an MLflow model as a folder the registry takes ------------------------------------------------


@dataclass(frozen=True)
class PreparedModel:
    folder: Path  # the MLflow model with a model.yaml beside MLmodel
    name: str | None  # the registered model's name, when there is one (the default changeover name)
    runtime: str
    labels: dict[str, str]  # lineage: mlflow.*


FOLDER_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def prepare(ref: str, workdir: Path, *, source: MlflowSource | None = None) -> PreparedModel:
    """Fetch the MLflow model ``ref`` names into ``workdir`` and make it a changeover model
    folder (`choose_runtime`, `signature_from_mlflow`), with its lineage as labels."""
    labels: dict[str, str] = {"mlflow.uri": ref}
    name: str | None = None
    if ref.startswith("models:/"):
        registry_ref = parse_models_uri(ref)
        source = source or MlflowSource()
        info = source.version(registry_ref)
        name = info.name
        labels |= {"mlflow.model": info.name, "mlflow.version": info.version,
                   "mlflow.tracking_uri": without_credentials(source.tracking_uri)}
        if info.run_id:
            labels["mlflow.run_id"] = info.run_id
        if info.source:
            labels["mlflow.source"] = info.source
        # the version's number, not the alias: what is fetched is what the labels say
        fetched = source.download(f"models:/{info.name}/{info.version}", workdir / "download")
        folder_name = f"{info.name}-v{info.version}"
    elif ref.startswith("runs:/"):
        source = source or MlflowSource()
        labels["mlflow.tracking_uri"] = without_credentials(source.tracking_uri)
        fetched = source.download(ref, workdir / "download")
        folder_name = ref.removeprefix("runs:/").strip("/")
    else:
        fetched = Path(ref)
        labels["mlflow.uri"] = str(fetched.resolve())
        folder_name = fetched.resolve().name
    if not (fetched / MLMODEL).is_file():
        raise InvalidRequest("ref", f"{ref} holds no {MLMODEL} file: not an MLflow model")
    folder = workdir / (FOLDER_NAME.sub("-", folder_name).strip("-.") or "mlflow-model")
    shutil.copytree(fetched, folder, ignore=shutil.ignore_patterns("__pycache__"))
    choice, signature, meta = describe(folder)
    for key in ("run_id", "model_id"):
        if meta.get(key) and f"mlflow.{key}" not in labels:
            labels[f"mlflow.{key}"] = str(meta[key])
    labels["mlflow.flavor"] = choice.flavor
    write_manifest(folder, choice, signature)
    return PreparedModel(folder=folder, name=name, runtime=choice.runtime, labels=labels)


def describe(folder: Path) -> tuple[Choice, Signature | None, dict[str, Any]]:
    """Read an MLflow model folder's ``MLmodel``: the runtime that serves it, its signature and
    the rest of its metadata (run id, model id)."""
    from mlflow.models import Model

    try:
        model = Model.load(str(folder / MLMODEL))
    except Exception as exc:  # a broken MLmodel raises YAML's, JSON's or MLflow's own error
        raise ArtifactError(f"{folder.name}/{MLMODEL} cannot be read: {type(exc).__name__}: {exc}") from exc
    signature = signature_from_mlflow(model.signature)
    choice = choose_runtime(model.flavors, signature)
    if choice.runtime == "onnx" and signature is not None:
        signature = onnx_checked(folder / str(choice.artifact), signature)
    if choice.runtime == "mlflow" and signature is None:
        raise ArtifactError(f"{folder.name}: a pyfunc model needs a signature in its {MLMODEL}; log it with "
                            "signature=infer_signature(...) or an input_example")
    return choice, signature, {"run_id": model.run_id, "model_id": getattr(model, "model_id", None)}


def onnx_checked(path: Path, signature: Signature) -> Signature | None:
    """The MLmodel's signature for an ONNX model when it names the graph's own inputs and
    outputs; None (the graph's signature, read by the onnx runtime) when it does not: the
    runtime feeds tensors by those names."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph_inputs = {i.name for i in session.get_inputs()}
    graph_outputs = {o.name for o in session.get_outputs()}
    names_inputs = {t.name for t in signature.inputs} == graph_inputs
    names_outputs = bool(signature.outputs) and {t.name for t in signature.outputs} <= graph_outputs
    return signature if names_inputs and names_outputs else None


def write_manifest(folder: Path, choice: Choice, signature: Signature | None) -> None:
    """The ``model.yaml`` that tells changeover's registry how to serve the folder."""
    data: dict[str, Any] = {"runtime": choice.runtime}
    if choice.artifact:
        data["artifact"] = choice.artifact
    if signature is not None:
        sig = signature.to_dict()
        data["inputs"], data["outputs"] = sig["inputs"], sig["outputs"]
        if signature.features:
            data["features"] = list(signature.features)
    (folder / "model.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

