"""Open Inference Protocol v2 and KServe v1 codecs (pure: no server)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from changeover import oip
from changeover.domain.signature import Signature, TensorSpec
from changeover.errors import InvalidInput, MalformedRequest


def tensor(name: str = "x", datatype: str = "FP32", shape: list[int] | None = None, data: object = None) -> dict:
    return {"name": name, "datatype": datatype, "shape": [2, 2] if shape is None else shape,
            "data": [1, 2, 3, 4] if data is None else data}


@pytest.mark.parametrize(
    ("datatype", "data", "dtype", "expected"),
    [
        ("FP32", [0.5, 1.25, -2.0, 3.0], np.float32, [0.5, 1.25, -2.0, 3.0]),
        ("FP64", [0.1, 1e300, -2.5, 3.0], np.float64, [0.1, 1e300, -2.5, 3.0]),
        ("FP16", [0.5, 1.0, 2.0, 4.0], np.float16, [0.5, 1.0, 2.0, 4.0]),
        ("INT32", [1, -2, 2**31 - 1, 0], np.int32, [1, -2, 2**31 - 1, 0]),
        ("INT64", [1, -2, 2**62, 0], np.int64, [1, -2, 2**62, 0]),
        ("INT8", [1, -2, 127, -128], np.int8, [1, -2, 127, -128]),
        ("UINT8", [0, 1, 255, 7], np.uint8, [0, 1, 255, 7]),
        ("BOOL", [True, False, True, True], np.bool_, [True, False, True, True]),
        ("BYTES", ["a", "héllo", "", "😀"], object, ["a", "héllo", "", "😀"]),
    ],
)
def test_each_datatype_decodes_to_its_numpy_dtype(datatype: str, data: list, dtype: object, expected: list) -> None:
    array, got_type = oip.decode_tensor(tensor(datatype=datatype, data=data))
    assert got_type == datatype
    assert array.shape == (2, 2)
    assert array.dtype == np.dtype(dtype)
    assert array.reshape(-1).tolist() == expected
    # and back: encoding gives the same tensor
    encoded = oip.encode_tensor("x", array)
    assert encoded == {"name": "x", "datatype": datatype, "shape": [2, 2], "data": expected}


def test_nested_row_major_data_and_lower_case_datatypes_are_accepted() -> None:
    array, datatype = oip.decode_tensor(tensor(datatype="fp64", data=[[1, 2], [3, 4]]))
    assert datatype == "FP64"
    assert array.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_extra_fields_such_as_parameters_are_tolerated() -> None:
    t = tensor() | {"parameters": {"content_type": "np"}}
    array, _ = oip.decode_tensor(t)
    assert array.shape == (2, 2)


def test_an_empty_batch_decodes() -> None:
    array, _ = oip.decode_tensor(tensor(shape=[0, 2], data=[]))
    assert array.shape == (0, 2)


@pytest.mark.parametrize(
    ("bad", "error", "needle"),
    [
        ("not a tensor", MalformedRequest, "must be an object"),
        ({"datatype": "FP32", "shape": [1], "data": [1]}, MalformedRequest, "name"),
        ({"name": "", "datatype": "FP32", "shape": [1], "data": [1]}, MalformedRequest, "name"),
        (tensor(datatype="FP128"), InvalidInput, "FP128"),
        (tensor(datatype=None), InvalidInput, "datatype"),  # type: ignore[arg-type]
        (tensor(shape=[-1, 4]), InvalidInput, "shape"),
        (tensor(shape="2x2"), InvalidInput, "shape"),  # type: ignore[arg-type]
        (tensor(shape=[2.0, 2]), InvalidInput, "shape"),  # type: ignore[list-item]
        (tensor(shape=[True, 4]), InvalidInput, "shape"),  # type: ignore[list-item]
        ({"name": "x", "datatype": "FP32", "shape": [1]}, InvalidInput, "data"),
        (tensor(shape=[2, 3]), InvalidInput, "6 elements"),
        (tensor(shape=[1, 2]), InvalidInput, "4 elements"),
        (tensor(data=["a", "b", "c", "d"]), InvalidInput, "does not convert"),
        (tensor(data=[[1, 2], [3]]), InvalidInput, "does not convert"),
        (tensor(data=[{"a": 1}, 2, 3, 4]), InvalidInput, "does not convert"),
        (tensor(datatype="INT32", data=[2**40, 1, 2, 3]), InvalidInput, "does not convert"),
        (tensor(datatype="UINT8", data=[-1, 1, 2, 3]), InvalidInput, "does not convert"),
    ],
)
def test_bad_tensors_are_refused_with_a_message(bad: object, error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as info:
        oip.decode_tensor(bad)
    assert needle in str(info.value)
    if isinstance(info.value, InvalidInput):
        assert info.value.field == "x"


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("INT64", [1.7, 2, 3, 4]),
        ("INT32", [0.5, 2, 3, 4]),
        ("BOOL", ["false", True, False, True]),
    ],
)
def test_data_whose_json_type_does_not_fit_the_datatype_is_refused(datatype: str, data: list) -> None:
    with pytest.raises(InvalidInput):
        oip.decode_tensor(tensor(datatype=datatype, data=data))


@pytest.mark.parametrize(
    ("datatype", "instances"),
    [("INT64", [1.7, 2]), ("INT32", [[0.5], [1]]), ("BOOL", ["false", "true"])],
)
def test_v1_instances_whose_json_type_does_not_fit_are_refused(datatype: str, instances: list) -> None:
    signature = Signature(inputs=(TensorSpec("x", datatype, (-1,) if not isinstance(instances[0], list) else (-1, 1)),))
    with pytest.raises(InvalidInput):
        oip.decode_v1_instances({"instances": instances}, signature)


def test_an_infer_request_decodes_with_its_id_and_parameters() -> None:
    body = {
        "id": "req-1",
        "parameters": {"priority": 1},
        "inputs": [tensor("a"), tensor("b", "BYTES", [2], ["x", "y"])],
        "outputs": [{"name": "label"}],
    }
    decoded, meta = oip.decode_infer_request(body)
    assert list(decoded) == ["a", "b"]
    assert decoded["b"][1] == "BYTES"
    assert meta == {"id": "req-1", "parameters": {"priority": 1}, "outputs": [{"name": "label"}]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([1, 2], None),
        ("text", None),
        ({}, "inputs"),
        ({"inputs": []}, "inputs"),
        ({"inputs": {"name": "x"}}, "inputs"),
        ({"inputs": [5]}, "inputs[0]"),
    ],
)
def test_malformed_infer_requests(body: object, field: str | None) -> None:
    with pytest.raises(MalformedRequest) as info:
        oip.decode_infer_request(body)
    assert info.value.field == field


ONE_INPUT = Signature(inputs=(TensorSpec("input", "FP64", (-1, 3)), TensorSpec("opt", "FP32", (-1,), optional=True)))


def test_v1_instances_decode_to_the_single_input() -> None:
    decoded = oip.decode_v1_instances({"instances": [[1, 2, 3], [4, 5, 6]]}, ONE_INPUT)
    array, datatype = decoded["input"]
    assert datatype == "FP64" and array.dtype == np.float64 and array.shape == (2, 3)
    words = Signature(inputs=(TensorSpec("text", "BYTES", (-1,)),))
    array, datatype = oip.decode_v1_instances({"instances": ["a", "b"]}, words)["text"]
    assert datatype == "BYTES" and array.tolist() == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "signature", "error"),
    [
        ({"inputs": []}, ONE_INPUT, MalformedRequest),
        ({"instances": "x"}, ONE_INPUT, MalformedRequest),
        ({"instances": []}, ONE_INPUT, MalformedRequest),
        ({"instances": [["a", "b", "c"]]}, ONE_INPUT, InvalidInput),
        (
            {"instances": [[1]]},
            Signature(inputs=(TensorSpec("a", "FP32", (-1,)), TensorSpec("b", "FP32", (-1,)))),
            MalformedRequest,
        ),
    ],
)
def test_bad_v1_requests(body: object, signature: Signature, error: type[Exception]) -> None:
    with pytest.raises(error):
        oip.decode_v1_instances(body, signature)


def test_non_finite_floats_encode_as_null_and_bytes_as_text() -> None:
    encoded = oip.encode_tensor("y", np.array([1.0, np.nan, np.inf, -np.inf], dtype=np.float32))
    assert encoded["datatype"] == "FP32"
    assert encoded["data"] == [1.0, None, None, None]
    json.dumps(encoded, allow_nan=False)  # valid strict JSON
    encoded = oip.encode_tensor("s", np.array([b"ab", "cd", 3], dtype=object))
    assert encoded == {"name": "s", "datatype": "BYTES", "shape": [3], "data": ["ab", "cd", "3"]}


def test_encode_keeps_the_shape_and_flattens_row_major() -> None:
    encoded = oip.encode_tensor("p", np.arange(6, dtype=np.int64).reshape(2, 3))
    assert encoded == {"name": "p", "datatype": "INT64", "shape": [2, 3], "data": [0, 1, 2, 3, 4, 5]}


def test_infer_response_follows_the_spec() -> None:
    body = oip.encode_infer_response(
        "ranker", 7, "rid", {"label": np.array([1, 0]), "probabilities": np.array([[0.1, 0.9], [0.8, 0.2]])}
    )
    assert body["model_name"] == "ranker"
    assert body["model_version"] == "7"  # a string, as the spec says
    assert body["id"] == "rid"
    assert [o["name"] for o in body["outputs"]] == ["label", "probabilities"]
    assert body["outputs"][1]["shape"] == [2, 2]
    json.dumps(body, allow_nan=False)


def test_v1_predictions_are_the_first_output() -> None:
    assert oip.encode_v1_predictions({"label": np.array([1, 0]), "p": np.array([0.3, 0.2])}) == {"predictions": [1, 0]}
    assert oip.encode_v1_predictions({"y": np.array([[1.5], [2.5]])}) == {"predictions": [[1.5], [2.5]]}


def test_model_metadata_follows_the_spec() -> None:
    sig = Signature(inputs=(TensorSpec("x", "FP32", (-1, 4)),), outputs=(TensorSpec("y", "INT64", (-1,)),))
    meta = oip.model_metadata("m", 3, sig, "changeover/onnx")
    assert meta == {
        "name": "m",
        "versions": ["3"],
        "platform": "changeover/onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        # the protocol's tensor metadata is name, datatype, shape: role and task are parameters
        "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1], "parameters": {"role": "prediction"}}],
        "parameters": {"task": "regression"},
    }
    ranker = Signature(inputs=(TensorSpec("user_id", "INT64", (-1,)),), task="ranking",
                       outputs=(TensorSpec("top", "INT64", (-1, 10), role="ranking"), TensorSpec("scores", "FP32", (-1, 10)),
                                TensorSpec("debug", "BYTES", (-1,))))
    meta = oip.model_metadata("recs", 1, ranker, "changeover/python")
    assert meta["outputs"] == [
        {"name": "top", "datatype": "INT64", "shape": [-1, 10], "parameters": {"role": "ranking"}},
        {"name": "scores", "datatype": "FP32", "shape": [-1, 10], "parameters": {"role": "scores"}},
        {"name": "debug", "datatype": "BYTES", "shape": [-1]},
    ]
    assert meta["parameters"] == {"task": "ranking"}
    back = Signature.from_dict(meta)  # the remote runtime reads it back
    assert back.task == "ranking" and back.output_roles() == ranker.output_roles()
