"""ONNX models on onnxruntime; the signature is read from the graph."""

from __future__ import annotations

import numpy as np

from changeover.domain.signature import NUMPY_BY_DATATYPE, Signature, TensorSpec
from changeover.runtimes.base import LoadedModel, LoadRequest, Tensors, artifact_file

ONNX_TO_DATATYPE = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(int16)": "INT16",
    "tensor(int8)": "INT8",
    "tensor(uint8)": "UINT8",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


def _spec(arg: object) -> TensorSpec | None:
    datatype = ONNX_TO_DATATYPE.get(getattr(arg, "type", ""))
    if datatype is None:  # sequences and maps (e.g. skl2onnx's ZipMap) are not tensors
        return None
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in (arg.shape or [-1]))  # type: ignore[attr-defined]
    return TensorSpec(arg.name, datatype, shape)  # type: ignore[attr-defined]


class OnnxModel:
    inline_ok = True  # library code with a bounded cost: small batches may run on the event loop
    def __init__(self, path: str, signature: Signature | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        graph = Signature(
            inputs=tuple(s for s in map(_spec, self.session.get_inputs()) if s is not None),
            outputs=tuple(s for s in map(_spec, self.session.get_outputs()) if s is not None),
        )
        self.signature = signature or graph
        self._outputs = [o.name for o in graph.outputs]

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        feed = {}
        for spec in self.signature.inputs:
            if spec.name in inputs:
                feed[spec.name] = np.asarray(inputs[spec.name], dtype=NUMPY_BY_DATATYPE[spec.datatype])
        results = self.session.run(self._outputs, feed)
        return dict(zip(self._outputs, (np.asarray(r) for r in results), strict=True))

    def close(self) -> None:
        del self.session


class OnnxRuntime:
    name = "onnx"

    def load(self, request: LoadRequest) -> LoadedModel:
        path = artifact_file(request)
        return OnnxModel(str(path), request.signature or request.manifest.signature)
