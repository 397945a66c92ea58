"""Open Inference Protocol v2 over gRPC: the codecs between the protocol's protobuf messages
(`changeover.protos`) and what the data plane takes and gives (``Decoded`` inputs and a
``meta`` dict, as `changeover.oip` decodes REST bodies; NumPy outputs). Decoding never trusts
the client; answers carry their tensors in ``raw_output_contents``, which Triton's client reads.

Raw contents are each tensor's elements in row-major order, little-endian, no padding; a BYTES
element is a 4-byte little-endian length, then its bytes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from changeover.domain.signature import NUMPY_BY_DATATYPE, datatype_of
from changeover.errors import InvalidInput, MalformedRequest
from changeover.oip import tensor_bytes
from changeover.protos import grpc_predict_v2_pb2 as pb

__all__ = [
    "Decoded",
    "decode_infer_request",
    "encode_infer_response",
    "encode_model_metadata",
    "parameters_of",
    "raw_bytes",
]

Decoded = dict[str, tuple[np.ndarray, str]]

# the typed contents field of each datatype (FP16 has none: raw contents only)
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameters_of(params: Any) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as a plain dict (bool, int or str values)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, which) if which else None
    return out


def _text_or_bytes(item: bytes) -> str | bytes:
    # as REST's JSON and binary decodings give them: text as str, so one request sent any
    # way gets one answer (and one request log entry)
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError:
        return item


def _bytes_elements(name: str, chunk: bytes) -> np.ndarray:
    items: list[str | bytes] = []
    offset = 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise InvalidInput(name, "length-prefixed BYTES elements", "a truncated element")
        size = int.from_bytes(chunk[offset:offset + 4], "little")
        if offset + 4 + size > len(chunk):
            raise InvalidInput(name, "length-prefixed BYTES elements", "a truncated element")
        items.append(_text_or_bytes(chunk[offset + 4:offset + 4 + size]))
        offset += 4 + size
    return np.asarray(items, dtype=object)


def _from_raw(name: str, datatype: str, chunk: bytes) -> np.ndarray:
    if datatype == "BYTES":
        return _bytes_elements(name, chunk)
    dtype = np.dtype(NUMPY_BY_DATATYPE[datatype]).newbyteorder("<")
    if len(chunk) % dtype.itemsize:
        raise InvalidInput(name, f"a whole number of {datatype} values", f"{len(chunk)} bytes")
    return np.frombuffer(chunk, dtype=dtype).astype(NUMPY_BY_DATATYPE[datatype])


def _from_contents(name: str, datatype: str, contents: Any) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(name, f"{datatype} data in raw_input_contents", "typed contents")
    values = list(getattr(contents, field))
    if datatype == "BYTES":
        return np.asarray([_text_or_bytes(v) for v in values], dtype=object)
    target = np.dtype(NUMPY_BY_DATATYPE[datatype])
    if target.kind in "iu" and values:
        # INT8/16 and UINT8/16 travel in 32-bit fields: no silent wrap-around
        info = np.iinfo(target)
        if min(values) < info.min or max(values) > info.max:
            raise InvalidInput(name, f"contents of datatype {datatype}",
                               f"values out of range [{info.min}, {info.max}]")
    return np.asarray(values, dtype=target)


def decode_infer_request(request: Any) -> tuple[Decoded, dict[str, Any]]:
    """The tensors of a ``ModelInferRequest`` (raw or typed contents) and its
    id/parameters/outputs as the data plane's ``meta`` (the REST body's keys)."""
    inputs = request.inputs
    if not inputs:
        raise MalformedRequest("must be a non-empty list of tensors", "inputs")
    raw = request.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise MalformedRequest(f"has {len(raw)} entries for {len(inputs)} inputs; give one per input, in order",
                               "raw_input_contents")
    decoded: Decoded = {}
    for i, tensor in enumerate(inputs):
        name = tensor.name
        if not name:
            raise MalformedRequest("needs a non-empty name", f"inputs[{i}]")
        datatype = tensor.datatype.upper()
        if datatype not in NUMPY_BY_DATATYPE:
            raise InvalidInput(name, f"a datatype among {sorted(NUMPY_BY_DATATYPE)}", f"datatype {tensor.datatype!r}")
        shape = list(tensor.shape)
        if any(d < 0 for d in shape):
            raise InvalidInput(name, "a shape of non-negative integers", f"shape {shape}")
        if raw:
            if tensor.HasField("contents"):
                raise MalformedRequest("contents must not be set when raw_input_contents is", f"inputs[{i}]")
            flat = _from_raw(name, datatype, raw[i])
        else:
            flat = _from_contents(name, datatype, tensor.contents)
        needed = math.prod(shape)
        if flat.size != needed:
            raise InvalidInput(name, f"{needed} elements for shape {shape}", f"{flat.size} elements")
        if name in decoded:
            raise MalformedRequest(f"input {name!r} is given twice", f"inputs[{i}]")
        decoded[name] = (flat.reshape(shape), datatype)
    meta: dict[str, Any] = {}
    if request.id:
        meta["id"] = request.id
    if request.parameters:
        meta["parameters"] = parameters_of(request.parameters)
    if request.outputs:
        meta["outputs"] = [{"name": out.name, "parameters": parameters_of(out.parameters)}
                           for out in request.outputs]
    return decoded, meta


# a tensor's raw contents: the binary extension's bytes, one codec for REST and gRPC
raw_bytes = tensor_bytes


def encode_infer_response(model: str, version: int, request_id: str, outputs: Mapping[str, np.ndarray]) -> Any:
    """A ``ModelInferResponse`` with every output in ``raw_output_contents``."""
    response = pb.ModelInferResponse(model_name=model, model_version=str(version), id=request_id)
    for name, value in outputs.items():
        array = np.asarray(value)
        datatype = datatype_of(array)
        response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        response.raw_output_contents.append(raw_bytes(array, datatype))
    return response


def encode_model_metadata(meta: Mapping[str, Any]) -> Any:
    """A ``ModelMetadataResponse`` from the protocol's metadata dict (`oip.model_metadata`);
    what the message has no field for (an output's role, the task) is REST's only."""
    def tensors(specs: Any) -> list[Any]:
        return [pb.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"],
                                                        shape=[int(d) for d in t["shape"]]) for t in specs]

    return pb.ModelMetadataResponse(name=meta["name"], versions=list(meta["versions"]), platform=meta["platform"],
                                    inputs=tensors(meta["inputs"]), outputs=tensors(meta["outputs"]))
