"""Domain errors. They carry domain arguments and build their own messages;
HTTP status codes are chosen at the edge (api/ and gateway/), never here."""

from __future__ import annotations


class ChangeoverError(Exception):
    """Base of every error changeover raises on purpose."""


class NotFound(ChangeoverError):
    pass


class ModelNotFound(NotFound):
    def __init__(self, model: str, version: str | int | None = None) -> None:
        self.model, self.version = model, version
        what = f"model {model!r}" if version is None else f"version {version} of model {model!r}"
        super().__init__(f"{what} not found")


class AliasNotFound(NotFound):
    def __init__(self, model: str, alias: str) -> None:
        self.model, self.alias = model, alias
        super().__init__(f"model {model!r} has no alias {alias!r}")


class RequestNotFound(NotFound):
    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        super().__init__(f"no served request with id {request_id!r}")


class InvalidInput(ChangeoverError):
    """A request that does not match the signature (names the input, expected and got)."""

    def __init__(self, field: str, expected: str, got: str) -> None:
        self.field, self.expected, self.got = field, expected, got
        super().__init__(f"input {field!r}: expected {expected}, got {got}")


class MalformedRequest(ChangeoverError):
    """A request body that is not what the protocol says (bad JSON, missing fields)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason, self.field = reason, field
        super().__init__(reason if field is None else f"{field}: {reason}")


class ArtifactError(ChangeoverError):
    pass


class ArtifactTampered(ArtifactError):
    def __init__(self, path: str, expected: str, got: str) -> None:
        self.path, self.expected, self.got = path, expected, got
        super().__init__(
            f"artifact {path} does not match its checksum: expected sha256 {expected[:12]}…, "
            f"got {got[:12]}…; refusing to load"
        )


class ArtifactMissing(ArtifactError):
    """The artifact's bytes are not where the version says (not a checksum mismatch: nothing to
    compare). ``backend`` names the artifact store that was asked, e.g. ``the database``."""

    def __init__(self, path: str, expected: str, backend: str) -> None:
        self.path, self.expected, self.backend = path, expected, backend
        super().__init__(
            f"artifact {path} (sha256 {expected[:12]}…) is missing: it is not in {backend}; "
            "push the version again there (or copy the blob in) to load it"
        )


class UntrustedArtifact(ArtifactError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class LoadFailed(ChangeoverError):
    def __init__(self, model: str, version: int, reason: str) -> None:
        self.model, self.version, self.reason = model, version, reason
        super().__init__(f"{model} v{version} failed to load or warm: {reason}")


class PredictionFailed(ChangeoverError):
    """A version raised while predicting (500); ``error_id`` links the answer and the log line."""

    def __init__(self, model: str, version: int, reason: str, error_id: str = "") -> None:
        self.model, self.version, self.reason, self.error_id = model, version, reason, error_id
        super().__init__(f"model {model} v{version} failed: {reason}")


class Unavailable(ChangeoverError):
    """Not servable right now, but soon (503 with ``Retry-After``): a version still loading."""

    def __init__(self, reason: str, retry_after_s: int = 1) -> None:
        self.reason, self.retry_after_s = reason, retry_after_s
        super().__init__(reason)


class UnsupportedMediaType(MalformedRequest):
    """A body type a browser may send cross-origin without asking first (415)."""


class Conflict(ChangeoverError):
    pass


class InvalidRequest(ChangeoverError):
    """A management request that cannot be carried out as asked (names the field)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")


class BackendError(ChangeoverError):
    """A remote version's backend (another Open Inference Protocol server) did not answer it:
    ``url`` the backend, ``reason`` what went wrong."""

    def __init__(self, model: str, url: str, reason: str) -> None:
        self.model, self.url, self.reason = model, url, reason
        super().__init__(f"backend {url} of {model}: {reason}")


class BackendFailed(BackendError):
    """The backend answered badly or refused the connection (502)."""


class BackendUnavailable(BackendError):
    """The backend timed out, or its circuit breaker is open (503 with ``Retry-After``)."""

    def __init__(self, model: str, url: str, reason: str, retry_after_s: int = 1) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(model, url, reason)
