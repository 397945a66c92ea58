"""scikit-learn models saved with skops: loaded only when every type in the file is trusted, by
skops itself or by the version (the types named at push, or the whole file with ``--trust``)."""

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
        if request.trusted:
            trusted = untrusted
        else:  # exactly the types the version records: a setting changed since the push changes nothing
            trusted = list(request.trusted_types)
            remaining = [t for t in untrusted if t not in request.trusted_types]
            if remaining:
                raise UntrustedArtifact(
                    f"{path.name} contains types that skops does not trust and its version does not: "
                    f"{', '.join(remaining)}; push it with "
                    + " ".join(f"--trust-type {t}" for t in remaining)
                    + " if you trust these types (or --trust only if you trust its author)"
                )
        estimator = sio.load(path, trusted=trusted or None)
        return EstimatorModel(estimator, request.signature or estimator_signature(estimator))
