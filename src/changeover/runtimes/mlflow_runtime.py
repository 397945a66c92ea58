"""MLflow pyfunc models: a folder with an ``MLmodel`` file, loaded with ``mlflow.pyfunc``.

Loading a pyfunc model unpickles it (cloudpickle, a flavour's pickle) or runs its own code
(``python_model``, ``code_paths``), so this runtime serves only versions pushed with ``--trust``,
like ``pickle``. Native flavours that changeover serves itself never come here
(`registry.mlflow_source.choose_runtime`). The request's tensors become what the model's
input schema asks for: one array, a dict of named arrays, or a DataFrame of its columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from changeover.domain.signature import Signature
from changeover.errors import ArtifactError, UntrustedArtifact
from changeover.runtimes.base import LoadedModel, LoadRequest, Tensors, as_outputs


def _text(array: np.ndarray) -> np.ndarray:
    """BYTES arrive as bytes; a string column of a DataFrame wants str."""
    if array.dtype == object and array.size and isinstance(array.flat[0], bytes):
        return np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in array.flat],
                        dtype=object).reshape(array.shape)
    return array


def pyfunc_input(schema: Any, signature: Signature, inputs: Tensors) -> Any:
    """The model input for ``inputs``, in the form the MLflow input schema describes."""
    if schema is not None and not schema.is_tensor_spec():
        import pandas as pd

        if signature.features and len(signature.inputs) == 1:
            return pd.DataFrame(_text(np.asarray(inputs[signature.inputs[0].name])), columns=list(signature.features))
        return pd.DataFrame({name: _text(np.asarray(array)) for name, array in inputs.items()})
    if len(signature.inputs) == 1 and (schema is None or not schema.has_input_names()):
        return np.asarray(inputs[signature.inputs[0].name])
    return {name: np.asarray(array) for name, array in inputs.items()}


def pyfunc_outputs(result: Any, signature: Signature) -> dict[str, np.ndarray]:
    """A pyfunc answer (array, Series, DataFrame, list or mapping) as name → array."""
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        if result.shape[1] == 1 and len(signature.outputs) == 1:
            return {signature.outputs[0].name: result.iloc[:, 0].to_numpy()}
        return {str(c): result[c].to_numpy() for c in result.columns}
    if isinstance(result, pd.Series):
        result = result.to_numpy()
    if isinstance(result, Mapping):
        return {str(k): np.asarray(v) for k, v in result.items()}
    return as_outputs(np.asarray(result), signature)


class MlflowModel:
    def __init__(self, model: Any, signature: Signature) -> None:
        self.model = model
        self.signature = signature
        self._schema = model.metadata.get_input_schema()

    def predict(self, inputs: Tensors) -> dict[str, np.ndarray]:
        return pyfunc_outputs(self.model.predict(pyfunc_input(self._schema, self.signature, inputs)), self.signature)

    def close(self) -> None:
        self.model = None


class MlflowRuntime:
    name = "mlflow"

    def load(self, request: LoadRequest) -> LoadedModel:
        if not request.trusted:
            raise UntrustedArtifact(
                "MLflow pyfunc models run arbitrary code when loaded (cloudpickle, the model's own code); "
                "push with --trust to allow this one"
            )
        try:
            import mlflow.pyfunc
        except ImportError:
            raise ArtifactError("the mlflow runtime needs MLflow: pip install 'changeover[mlflow]'") from None
        signature = request.signature or request.manifest.signature
        if signature is None:
            raise ArtifactError(f"{request.path.name}: a pyfunc model needs a signature (MLmodel or model.yaml)")
        if not request.path.is_dir():
            raise ArtifactError(f"{request.path.name}: the mlflow runtime serves an MLflow model folder")
        return MlflowModel(mlflow.pyfunc.load_model(str(request.path)), signature)
