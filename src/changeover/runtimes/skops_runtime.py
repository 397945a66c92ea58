"""scikit-learn models saved with skops: loaded only when every type in the file is trusted."""

from __future__ import annotations

from changeover.errors import UntrustedArtifact
from changeover.runtimes.base import LoadedModel, LoadRequest, artifact_file
from changeover.runtimes.estimator import EstimatorModel, estimator_signature


def untrusted_types(path: str) -> list[str]:
    import skops.io as sio

    return list(sio.get_untrusted_types(file=path))


class SkopsRuntime:
    name = "skops"

    def load(self, request: LoadRequest) -> LoadedModel:
        import skops.io as sio

        path = artifact_file(request)
        untrusted = untrusted_types(str(path))
        if untrusted and not request.trusted:
            raise UntrustedArtifact(
                f"{path.name} contains types that skops does not trust: {', '.join(untrusted)}; "
                "push it with --trust only if you trust its author"
            )
        estimator = sio.load(path, trusted=untrusted or None)
        return EstimatorModel(estimator, request.signature or estimator_signature(estimator))
