"""The gRPC codecs (`changeover.oip_grpc`): raw and typed contents in, raw contents out."""

from __future__ import annotations

import numpy as np
import pytest

from changeover import oip_grpc
from changeover.domain.signature import NUMPY_BY_DATATYPE
from changeover.errors import InvalidInput, MalformedRequest
from changeover.protos import grpc_predict_v2_pb2 as pb


def raw_request(datatype: str, shape: list[int], raw: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", raw_input_contents=[raw])
    request.inputs.add(name="x", datatype=datatype, shape=shape)
    return request


@pytest.mark.parametrize(("datatype", "values"), [
    ("FP64", [0.5, -1.25]), ("FP32", [0.5, 3.0]), ("FP16", [1.5, -2.0]), ("INT64", [2**40, -3]),
    ("INT8", [-128, 127]), ("UINT16", [0, 65535]), ("BOOL", [True, False]),
])
def test_raw_contents_round_trip_little_endian(datatype: str, values: list) -> None:
    array = np.asarray(values, dtype=NUMPY_BY_DATATYPE[datatype])
    decoded, _ = oip_grpc.decode_infer_request(raw_request(datatype, [2], oip_grpc.raw_bytes(array, datatype)))
    got, got_type = decoded["x"]
    assert got_type == datatype and got.dtype == array.dtype
    np.testing.assert_array_equal(got, array)
    answer = oip_grpc.encode_infer_response("m", 3, "r", {"x": array})
    assert answer.outputs[0].datatype == datatype and list(answer.outputs[0].shape) == [2]
    assert answer.raw_output_contents[0] == array.astype(array.dtype.newbyteorder("<")).tobytes()


def test_bytes_are_length_prefixed_and_text_comes_back_as_str() -> None:
    raw = b"".join(len(v).to_bytes(4, "little") + v for v in (b"ab", "é".encode(), b"\xff"))
    decoded, _ = oip_grpc.decode_infer_request(raw_request("BYTES", [3], raw))
    assert decoded["x"][0].tolist() == ["ab", "é", b"\xff"]
    assert oip_grpc.raw_bytes(np.asarray(["ab", "é", b"\xff"], dtype=object), "BYTES") == raw


@pytest.mark.parametrize(("datatype", "field", "values"), [
    ("FP64", "fp64_contents", [1.0, 2.5]), ("FP32", "fp32_contents", [1.0, 2.5]), ("INT64", "int64_contents", [1, -2]),
    ("INT16", "int_contents", [300, -300]), ("UINT64", "uint64_contents", [2**63, 1]),
    ("BOOL", "bool_contents", [True, False]), ("BYTES", "bytes_contents", [b"a", b"b"]),
])
def test_typed_contents(datatype: str, field: str, values: list) -> None:
    request = pb.ModelInferRequest(model_name="m", id="req", outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(
        name="y")])
    request.parameters["flag"].bool_param = True
    getattr(request.inputs.add(name="x", datatype=datatype, shape=[1, 2]).contents, field).extend(values)
    decoded, meta = oip_grpc.decode_infer_request(request)
    expected = [v.decode() for v in values] if datatype == "BYTES" else values
    assert decoded["x"][0].reshape(-1).tolist() == expected and decoded["x"][0].shape == (1, 2)
    assert meta == {"id": "req", "parameters": {"flag": True}, "outputs": [{"name": "y", "parameters": {}}]}


@pytest.mark.parametrize(("request_", "error", "needle"), [
    (raw_request("FP64", [2], b"\0" * 8), InvalidInput, "2 elements"),
    (raw_request("FP64", [1], b"\0" * 7), InvalidInput, "whole number"),
    (raw_request("FP99", [1], b""), InvalidInput, "datatype"),
    (raw_request("BYTES", [1], b"\x05\0\0\0ab"), InvalidInput, "truncated"),
    (pb.ModelInferRequest(model_name="m"), MalformedRequest, "inputs"),
    (pb.ModelInferRequest(model_name="m", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="INT8", shape=[1], contents=pb.InferTensorContents(int_contents=[300]))]),
     InvalidInput, "out of range"),
    (pb.ModelInferRequest(model_name="m", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP16", shape=[1])]), InvalidInput, "raw_input_contents"),
])
def test_what_the_codec_refuses_names_the_input_or_field(request_, error: type, needle: str) -> None:
    with pytest.raises(error, match=needle):
        oip_grpc.decode_infer_request(request_)
