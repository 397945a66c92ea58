"""Open Inference Protocol v2 (REST/JSON) and KServe v1 codecs: defined once, used by the
gateway, the remote runtime and the tests. Decoding never trusts the client."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from changeover.domain.signature import NUMPY_BY_DATATYPE, Signature, datatype_of
from changeover.errors import InvalidInput, MalformedRequest

Decoded = dict[str, tuple[np.ndarray, str]]

# which JSON values a datatype accepts (NumPy kinds of the parsed data): no silent truncation
# of 1.5 into an INT, no string or number turned into a BOOL
JSON_KINDS = {"BOOL": "b", "IN": "iu", "UI": "iu", "FP": "iuf"}
_ALLOWED_KINDS = {d: JSON_KINDS[d[0:2]] if d[0:2] in JSON_KINDS else JSON_KINDS.get(d, "")
                  for d in NUMPY_BY_DATATYPE if d != "BYTES"}
_DTYPES = {d: np.dtype(t) for d, t in NUMPY_BY_DATATYPE.items()}


def json_array(name: str, data: Any, datatype: str, what: str) -> np.ndarray:
    """JSON values as an array of ``datatype``; 422 when they are not of its kind (no silent
    truncation of 1.5 into an INT, no string turned into a BOOL) or out of its range."""
    try:
        if datatype == "BYTES":
            return np.asarray(data, dtype=object)
        raw = np.asarray(data)
        allowed = _ALLOWED_KINDS[datatype]
        if raw.size and raw.dtype.kind not in allowed:
            got = {"f": "numbers with fractions", "b": "booleans", "U": "strings", "O": "mixed values"}.get(
                raw.dtype.kind, f"values of kind {raw.dtype.kind}")
            raise InvalidInput(name, f"{what} of datatype {datatype}", f"{what} that does not convert ({got})")
        target = _DTYPES[datatype]
        if target.kind in "iu" and raw.size:
            info = np.iinfo(target)
            if raw.min() < info.min or raw.max() > info.max:
                raise InvalidInput(name, f"{what} of datatype {datatype}",
                                   f"{what} that does not convert (out of range [{info.min}, {info.max}])")
        return raw.astype(target, copy=False)  # a fresh array of the JSON's values: no copy needed
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(name, f"{what} of datatype {datatype}", f"{what} that does not convert ({exc})") from None


def decode_tensor(tensor: Any, where: str = "tensor") -> tuple[np.ndarray, str]:
    if not isinstance(tensor, Mapping):
        raise MalformedRequest("must be an object with name, shape, datatype and data", where)
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedRequest("needs a non-empty string 'name'", where)
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype.upper() not in NUMPY_BY_DATATYPE:
        raise InvalidInput(name, f"a datatype among {sorted(NUMPY_BY_DATATYPE)}", f"datatype {datatype!r}")
    datatype = datatype.upper()
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidInput(name, "a shape that is a list of non-negative integers", f"shape {shape!r}")
    if "data" not in tensor:
        raise InvalidInput(name, "a 'data' field", "none")
    flat = json_array(name, tensor["data"], datatype, "data").reshape(-1)
    needed = math.prod(shape)
    if flat.size != needed:
        raise InvalidInput(name, f"{needed} elements for shape {shape}", f"{flat.size} elements")
    return flat.reshape(shape), datatype


def _binary_tensor(tensor: Mapping[str, Any], chunk: bytes, where: str) -> tuple[np.ndarray, str]:
    """One input of the binary tensor data extension: raw little-endian values (BYTES: each
    element a 4-byte little-endian length, then its bytes)."""
    name, datatype, shape = tensor.get("name"), str(tensor.get("datatype", "")).upper(), tensor.get("shape")
    if not isinstance(name, str) or datatype not in NUMPY_BY_DATATYPE:
        raise MalformedRequest("needs a name and a known datatype", where)
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidInput(name, "a shape that is a list of non-negative integers", f"shape {shape!r}")
    if datatype == "BYTES":
        items: list[str | bytes] = []
        offset = 0
        while offset < len(chunk):
            if offset + 4 > len(chunk):
                raise InvalidInput(name, "length-prefixed BYTES elements", "a truncated element")
            size = int.from_bytes(chunk[offset:offset + 4], "little")
            item = chunk[offset + 4:offset + 4 + size]
            try:  # as JSON gives them: text as str, so one request sent two ways gets one answer
                items.append(item.decode("utf-8"))
            except UnicodeDecodeError:
                items.append(item)
            offset += 4 + size
        flat = np.asarray(items, dtype=object)
    else:
        dtype = np.dtype(NUMPY_BY_DATATYPE[datatype]).newbyteorder("<")
        if len(chunk) % dtype.itemsize:
            raise InvalidInput(name, f"a whole number of {datatype} values", f"{len(chunk)} bytes")
        flat = np.frombuffer(chunk, dtype=dtype).astype(NUMPY_BY_DATATYPE[datatype])
    needed = math.prod(shape)
    if flat.size != needed:
        raise InvalidInput(name, f"{needed} elements for shape {shape}", f"{flat.size} elements")
    return flat.reshape(shape), datatype


def decode_infer_request(body: Any, binary: bytes | None = None) -> tuple[Decoded, dict[str, Any]]:
    """The tensors of a v2 infer request (JSON data, or the binary tensor data extension),
    and its id/parameters/outputs."""
    if not isinstance(body, Mapping):
        raise MalformedRequest("the body must be a JSON object")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise MalformedRequest("must be a non-empty list of tensors", "inputs")
    decoded: Decoded = {}
    offset = 0
    for i, tensor in enumerate(inputs):
        params = tensor.get("parameters") if isinstance(tensor, Mapping) else None
        size = params.get("binary_data_size") if isinstance(params, Mapping) else None
        if size is not None:
            if binary is None or not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise MalformedRequest("binary_data_size does not fit the binary part of the body",
                                       f"inputs[{i}].parameters.binary_data_size")
            array, datatype = _binary_tensor(tensor, binary[offset:offset + size], f"inputs[{i}]")
            offset += size
        else:
            array, datatype = decode_tensor(tensor, f"inputs[{i}]")
        decoded[tensor["name"]] = (array, datatype)
    meta = {k: body[k] for k in ("id", "parameters", "outputs") if k in body}
    return decoded, meta


def decode_v1_instances(body: Any, signature: Signature) -> Decoded:
    """KServe v1 ``{"instances": [...]}`` for a model with one input."""
    if not isinstance(body, Mapping) or not isinstance(body.get("instances"), list):
        raise MalformedRequest("must be a list", "instances")
    if not body["instances"]:
        raise MalformedRequest("must not be empty", "instances")
    required = [t for t in signature.inputs if not t.optional]
    if len(required) != 1:
        raise MalformedRequest("v1 instances need a model with exactly one input; use the v2 protocol", "instances")
    spec = required[0]
    return {spec.name: (json_array(spec.name, body["instances"], spec.datatype, "instances"), spec.datatype)}


def _jsonable(array: np.ndarray, datatype: str) -> list[Any]:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in flat.tolist()]
    if datatype in ("FP16", "FP32", "FP64"):
        # JSON has no NaN/Infinity; None keeps the answer valid JSON and visibly wrong
        values = flat.astype(np.float64).tolist()
        return [v if math.isfinite(v) else None for v in values]
    return flat.tolist()


def encode_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array)
    datatype = datatype_of(array)
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": _jsonable(array, datatype)}


def encode_infer_response(model: str, version: int, request_id: str, outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return {
        "model_name": model,
        "model_version": str(version),
        "id": request_id,
        "outputs": [encode_tensor(name, array) for name, array in outputs.items()],
    }


def encode_v1_predictions(outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    first = next(iter(outputs.values()))
    return {"predictions": np.asarray(first).tolist()}


def model_metadata(model: str, version: int, signature: Signature, platform: str) -> dict[str, Any]:
    """The protocol's model metadata. Its tensor metadata has name, datatype and shape only, so
    an output's role (declared or inferred, `domain.roles`) is a ``parameters`` entry of the
    tensor, and the task one of the model."""
    roles = signature.output_roles()
    outputs = []
    for t in signature.outputs:
        out = {k: v for k, v in t.to_dict().items() if k != "role"}
        if roles.get(t.name):
            out["parameters"] = {"role": roles[t.name]}
        outputs.append(out)
    meta: dict[str, Any] = {
        "name": model,
        "versions": [str(version)],
        "platform": platform,
        "inputs": [t.to_dict() for t in signature.inputs],
        "outputs": outputs,
    }
    task = signature.inferred_task()
    if task is not None:
        meta["parameters"] = {"task": task}
    return meta


def binary_outputs(meta: Mapping[str, Any]) -> bool | set[str]:
    """Which outputs a v2 request asked for as raw bytes (the binary tensor data extension):
    True for all (``parameters.binary_data_output``), else the names whose
    ``parameters.binary_data`` is true (an empty set: none)."""
    params = meta.get("parameters")
    if isinstance(params, Mapping) and params.get("binary_data_output") is True:
        return True
    names: set[str] = set()
    for out in meta.get("outputs") or ():
        if isinstance(out, Mapping) and isinstance(out.get("parameters"), Mapping) \
                and out["parameters"].get("binary_data") is True and isinstance(out.get("name"), str):
            names.add(out["name"])
    return names


def tensor_bytes(array: np.ndarray, datatype: str) -> bytes:
    """A tensor's raw little-endian values, as the binary extension carries them (BYTES: each
    element a 4-byte little-endian length, then its bytes)."""
    if datatype == "BYTES":
        parts = []
        for value in np.asarray(array, dtype=object).reshape(-1).tolist():
            item = value if isinstance(value, bytes) else str(value).encode()
            parts.append(len(item).to_bytes(4, "little") + item)
        return b"".join(parts)
    dtype = np.dtype(NUMPY_BY_DATATYPE[datatype]).newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def encode_infer_response_binary(model: str, version: int, request_id: str, outputs: Mapping[str, np.ndarray],
                                 binary: bool | set[str]) -> tuple[dict[str, Any], bytes]:
    """A v2 answer with the binary extension: the JSON header (outputs asked for as binary
    carry ``parameters.binary_data_size`` instead of ``data``) and the bytes that follow it."""
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in outputs.items():
        if binary is True or (isinstance(binary, set) and name in binary):
            array = np.asarray(array)
            datatype = datatype_of(array)
            raw = tensor_bytes(array, datatype)
            tensors.append({"name": name, "datatype": datatype, "shape": list(array.shape),
                            "parameters": {"binary_data_size": len(raw)}})
            chunks.append(raw)
        else:
            tensors.append(encode_tensor(name, array))
    header = {"model_name": model, "model_version": str(version), "id": request_id, "outputs": tensors}
    return header, b"".join(chunks)
