"""Pickle and joblib artifacts: arbitrary code on load, so only for versions pushed with --trust."""

from __future__ import annotations

from changeover.errors import UntrustedArtifact
from changeover.runtimes.base import LoadedModel, LoadRequest, artifact_file
from changeover.runtimes.estimator import EstimatorModel, estimator_signature


class PickleRuntime:
    name = "pickle"

    def load(self, request: LoadRequest) -> LoadedModel:
        if not request.trusted:
            raise UntrustedArtifact(
                "pickle artifacts run arbitrary code when loaded; push with --trust to allow this one"
            )
        import joblib

        path = artifact_file(request)
        estimator = joblib.load(path)
        return EstimatorModel(estimator, request.signature or estimator_signature(estimator))
