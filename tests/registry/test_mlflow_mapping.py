"""The pure parts of the MLflow path: MLflow's schema as a Signature, the runtime a flavour gets,
models:/ URIs, and what the registry follower does with the tags it reads."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from changeover.cli.client import ApiError
from changeover.cli.registry_follow import awaiting_outcome, needs_rollout, outcome_tags, refused_for_good
from changeover.errors import ArtifactError, InvalidRequest
from changeover.registry.mlflow_source import (
    RegistryRef,
    choose_runtime,
    parse_models_uri,
    signature_from_mlflow,
    without_credentials,
)

pytest.importorskip("mlflow", reason="the mlflow extra is not installed")

from mlflow.models import ModelSignature  # noqa: E402
from mlflow.types.schema import ColSpec, Schema, TensorSpec  # noqa: E402


def tensors(*specs: tuple[str | None, Any, tuple[int, ...]]) -> Schema:
    return Schema([TensorSpec(np.dtype(d), shape, name) for name, d, shape in specs])


def columns(*specs: tuple[str | None, str]) -> Schema:
    return Schema([ColSpec(kind, name) for name, kind in specs])


@pytest.mark.parametrize(("inputs", "outputs", "want_inputs", "want_outputs", "features"), [
    # an unnamed tensor (infer_signature on a NumPy array) is "input"; an integer answer a label
    (tensors((None, "float64", (-1, 4))), tensors((None, "int64", (-1,))),
     [("input", "FP64", [-1, 4])], [("label", "INT64", [-1])], []),
    # a float answer is a prediction
    (tensors((None, "float32", (-1, 3))), tensors((None, "float64", (-1,))),
     [("input", "FP32", [-1, 3])], [("prediction", "FP64", [-1])], []),
    # named tensors keep their names
    (tensors(("features", "float32", (-1, 30))), tensors(("label", "int64", (-1,)), ("probabilities", "float32", (-1, 2))),
     [("features", "FP32", [-1, 30])], [("label", "INT64", [-1]), ("probabilities", "FP32", [-1, 2])], []),
    # columns of one type: one 2-D input whose features are the columns
    (columns(("a", "double"), ("b", "double")), columns((None, "long")),
     [("input", "FP64", [-1, 2])], [("label", "INT64", [-1])], ["a", "b"]),
    # columns of several types: one input per column
    (columns(("age", "long"), ("city", "string")), columns(("score", "double")),
     [("age", "INT64", [-1]), ("city", "BYTES", [-1])], [("score", "FP64", [-1])], []),
])
def test_mlflow_schemas_become_signatures(inputs: Schema, outputs: Schema, want_inputs: list[Any],
                                          want_outputs: list[Any], features: list[str]) -> None:
    signature = signature_from_mlflow(ModelSignature(inputs=inputs, outputs=outputs))
    assert signature is not None
    assert [(t.name, t.datatype, list(t.shape)) for t in signature.inputs] == want_inputs
    assert [(t.name, t.datatype, list(t.shape)) for t in signature.outputs] == want_outputs
    assert list(signature.features) == features


def test_no_signature_is_none_and_a_datetime_column_is_refused_naming_it() -> None:
    assert signature_from_mlflow(None) is None
    with pytest.raises(ArtifactError, match="column when of type datetime"):
        signature_from_mlflow(ModelSignature(inputs=columns(("when", "datetime")), outputs=columns((None, "long"))))


ONE_INPUT = signature_from_mlflow(ModelSignature(inputs=tensors((None, "float64", (-1, 4))),
                                                 outputs=tensors((None, "int64", (-1,)))))
PER_COLUMN = signature_from_mlflow(ModelSignature(inputs=columns(("age", "long"), ("city", "string")),
                                                  outputs=columns((None, "long"))))
PYFUNC = {"loader_module": "mlflow.sklearn", "model_path": "model.pkl"}


@pytest.mark.parametrize(("flavors", "signature", "want"), [
    ({"onnx": {"data": "model.onnx"}, "python_function": {"loader_module": "mlflow.onnx"}}, None,
     ("onnx", "model.onnx", "onnx")),
    ({"sklearn": {"pickled_model": "model.skops", "serialization_format": "skops"}, "python_function": PYFUNC},
     ONE_INPUT, ("skops", "model.skops", "sklearn")),
    ({"sklearn": {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}, "python_function": PYFUNC},
     ONE_INPUT, ("pickle", "model.pkl", "sklearn")),
    ({"sklearn": {"pickled_model": "model.pkl"}, "python_function": PYFUNC}, None,  # MLflow 1's: a pickle
     ("pickle", "model.pkl", "sklearn")),
    # columns of several types: the estimator runtimes take one tensor, so pyfunc builds the DataFrame
    ({"sklearn": {"pickled_model": "model.pkl", "serialization_format": "pickle"}, "python_function": PYFUNC},
     PER_COLUMN, ("mlflow", None, "sklearn")),
    ({"python_function": {"loader_module": "mlflow.pyfunc.model", "python_model": "python_model.pkl"}}, ONE_INPUT,
     ("mlflow", None, "python_function")),
    ({"xgboost": {"data": "model.xgb"}, "python_function": {"loader_module": "mlflow.xgboost"}}, ONE_INPUT,
     ("mlflow", None, "xgboost")),
])
def test_each_flavour_gets_the_runtime_that_serves_it(flavors: dict[str, Any], signature: Any,
                                                       want: tuple[str, str | None, str]) -> None:
    choice = choose_runtime(flavors, signature)
    assert (choice.runtime, choice.artifact, choice.flavor) == want


def test_a_flavour_without_pyfunc_is_refused_naming_it() -> None:
    with pytest.raises(ArtifactError, match="among spark"):
        choose_runtime({"spark": {}}, ONE_INPUT)


@pytest.mark.parametrize(("uri", "want"), [
    ("models:/iris@champion", RegistryRef("iris", alias="champion")),
    ("models:/iris/3", RegistryRef("iris", version="3")),
    ("models:/team/iris@challenger", RegistryRef("team/iris", alias="challenger")),
])
def test_models_uris(uri: str, want: RegistryRef) -> None:
    assert parse_models_uri(uri) == want


@pytest.mark.parametrize("uri", ["models:/iris", "models:/iris/latest", "models:/@champion", "models:/iris/³"])
def test_models_uris_that_are_neither_form_name_the_ref(uri: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_models_uri(uri)
    assert caught.value.field == "ref" and uri in str(caught.value)


def test_a_tracking_uri_in_a_label_has_no_credentials() -> None:
    assert without_credentials("https://me:secret@mlflow.example:5000/x") == "https://mlflow.example:5000/x"
    assert without_credentials("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def version(number: str, **tags: str) -> Any:
    return SimpleNamespace(version=number, tags=tags)


@pytest.mark.parametrize(("tags", "new"), [
    ({}, True),
    ({"changeover.version": "4"}, True),  # pushed, but its rollout never started: start it
    ({"changeover.rollout": "7"}, False),
    ({"changeover.outcome": "refused"}, False),
])
def test_a_version_needs_a_rollout_until_one_started_or_it_was_refused(tags: dict[str, str], new: bool) -> None:
    assert needs_rollout(tags) is new


def test_rollouts_awaiting_an_outcome_are_those_tagged_with_a_rollout_and_no_outcome() -> None:
    versions = [version("1", **{"changeover.rollout": "3", "changeover.outcome": "promoted"}),
                version("2", **{"changeover.rollout": "5"}), version("3"), version("4", **{"changeover.rollout": "4"})]
    assert awaiting_outcome(versions) == [("4", 4), ("2", 5)]


@pytest.mark.parametrize(("phase", "outcome"), [
    ("promoted", "promoted"), ("rolled_back", "rolled_back"), ("aborted", "aborted"), ("failed", "failed"),
    ("canary", None), ("watching", None), ("shadow", None),
])
def test_only_an_ended_rollout_has_outcome_tags(phase: str, outcome: str | None) -> None:
    tags = outcome_tags({"id": 9, "status": {"phase": phase, "message": "x" * 900}})
    if outcome is None:
        assert tags is None
    else:
        assert tags is not None and tags["changeover.outcome"] == outcome and tags["changeover.rollout"] == "9"
        assert len(tags["changeover.message"]) == 500


@pytest.mark.parametrize(("status", "body", "for_good"), [
    (422, {"problems": []}, True),  # a wrong spec
    (409, {"compat": {}}, True),  # an incompatible candidate
    (409, {"error": "is a pickle"}, True),  # an untrusted artifact (a 409 with no conflict mark)
    (409, {"conflict": True}, False),  # another rollout running: try again at the next poll
    (503, None, False),
    (0, None, False),  # the server away
])
def test_refusals_for_good_are_tagged_the_others_tried_again(status: int, body: Any, for_good: bool) -> None:
    assert refused_for_good(ApiError(status, "no", body)) is for_good


def test_the_mlflow_runtime_hands_pyfunc_what_its_schema_describes() -> None:
    import pandas as pd

    from changeover.runtimes.mlflow_runtime import pyfunc_input, pyfunc_outputs

    per_column = ModelSignature(inputs=columns(("age", "long"), ("city", "string")), outputs=columns((None, "long")))
    sig = signature_from_mlflow(per_column)
    assert sig is not None
    frame = pyfunc_input(per_column.inputs, sig, {"age": np.array([3, 4]), "city": np.array([b"a", b"b"], dtype=object)})
    assert isinstance(frame, pd.DataFrame) and frame.to_dict("list") == {"age": [3, 4], "city": ["a", "b"]}

    one_type = ModelSignature(inputs=columns(("a", "double"), ("b", "double")), outputs=columns((None, "long")))
    sig = signature_from_mlflow(one_type)
    assert sig is not None
    frame = pyfunc_input(one_type.inputs, sig, {"input": np.array([[1.0, 2.0]])})
    assert list(frame.columns) == ["a", "b"]

    tensor = ModelSignature(inputs=tensors((None, "float64", (-1, 2))), outputs=tensors((None, "float64", (-1,))))
    sig = signature_from_mlflow(tensor)
    assert sig is not None
    assert isinstance(pyfunc_input(tensor.inputs, sig, {"input": np.ones((1, 2))}), np.ndarray)
    assert pyfunc_outputs(pd.Series([1.5]), sig)["prediction"].tolist() == [1.5]
    assert pyfunc_outputs(pd.DataFrame({"p": [2.5]}), sig)["prediction"].tolist() == [2.5]
    assert set(pyfunc_outputs({"a": [1], "b": [2]}, sig)) == {"a", "b"}
