"""Traffic policies and the router: which version serves a request. Pure code.

A policy is numbered by generation. The champion gets whatever weight the candidates
leave. Sticky assignment hashes the key into 10,000 buckets; a candidate owns the lowest
buckets, so when its weight grows keys only move from champion to candidate, never back.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

BUCKETS = 10_000
ROUTE_HEADER = "x-changeover-route"
DEFAULT_STICKY_KEY = "header:x-changeover-key"


@dataclass(frozen=True)
class Shadow:
    version: int
    sample: float = 1.0
    timeout_s: float = 1.0
    segment: str | None = None  # "header:NAME" or "input:NAME": comparisons are broken down by it

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "sample": self.sample, "timeout_s": self.timeout_s, "segment": self.segment}


@dataclass(frozen=True)
class Interleave:
    """Team-draft interleaving: ``sample`` of the requests the champion serves by default
    (sticky by the policy's sticky key when the request has one) are answered with one list
    of ``k`` items merged from the champion's and the candidate's rankings."""

    champion: int
    candidate: int
    sample: float = 0.1
    k: int = 10
    timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.sample <= 1.0:
            raise ValueError(f"interleave sample must lie in (0, 1], got {self.sample}")
        if self.k <= 0:
            raise ValueError(f"interleave k must be positive, got {self.k}")
        if self.champion == self.candidate:
            raise ValueError(f"interleave needs two versions, got v{self.champion} twice")

    def to_dict(self) -> dict[str, Any]:
        return {"champion": self.champion, "candidate": self.candidate, "sample": self.sample, "k": self.k,
                "timeout_s": self.timeout_s}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Interleave:
        return cls(int(data["champion"]), int(data["candidate"]), float(data.get("sample", 0.1)),
                   int(data.get("k", 10)), float(data.get("timeout_s", 1.0)))


@dataclass(frozen=True)
class Override:
    """A feature-flag rule that forces a version.

    ``field`` is ``header:NAME``, ``input:NAME`` or ``key`` (the sticky key); a request whose
    field has one of ``values`` goes to ``version``. With ``version`` None the rule instead
    allows the ``x-changeover-route`` header to pick any of ``allowed`` (all when empty) for
    matching requests (``field`` None matches every request).
    """

    field: str | None
    values: tuple[str, ...] = ()
    version: int | None = None
    allowed: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "values": list(self.values), "version": self.version, "allowed": list(self.allowed)}


@dataclass(frozen=True)
class TrafficPolicy:
    model: str
    generation: int = 0
    champion: int | None = None
    weights: Mapping[int, float] = field(default_factory=dict)  # candidate version -> percent
    shadows: tuple[Shadow, ...] = ()
    sticky_key: str = DEFAULT_STICKY_KEY
    overrides: tuple[Override, ...] = ()
    warm: tuple[int, ...] = ()  # kept loaded though not routed (the old champion during watch)
    interleave: Interleave | None = None

    def __post_init__(self) -> None:
        total = sum(self.weights.values())
        if any(w < 0 for w in self.weights.values()) or total > 100.0 + 1e-9:
            raise ValueError(f"candidate weights must be >= 0 and sum to at most 100, got {dict(self.weights)}")

    @property
    def serving_versions(self) -> set[int]:
        out = {v for v, w in self.weights.items() if w > 0}
        if self.champion is not None:
            out.add(self.champion)
        out.update(o.version for o in self.overrides if o.version is not None)
        return out

    @property
    def loaded_versions(self) -> set[int]:
        interleaved = {self.interleave.candidate} if self.interleave is not None else set()
        return self.serving_versions | {s.version for s in self.shadows} | set(self.warm) | interleaved

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "generation": self.generation,
            "champion": self.champion,
            "weights": {str(k): v for k, v in self.weights.items()},
            "shadows": [s.to_dict() for s in self.shadows],
            "sticky_key": self.sticky_key,
            "overrides": [o.to_dict() for o in self.overrides],
            "warm": list(self.warm),
            "interleave": self.interleave.to_dict() if self.interleave is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrafficPolicy:
        return cls(
            model=data["model"],
            generation=int(data.get("generation", 0)),
            champion=data.get("champion"),
            weights={int(k): float(v) for k, v in (data.get("weights") or {}).items()},
            shadows=tuple(Shadow(**s) for s in data.get("shadows") or ()),
            sticky_key=data.get("sticky_key") or DEFAULT_STICKY_KEY,
            overrides=tuple(
                Override(
                    field=o.get("field"),
                    values=tuple(str(v) for v in o.get("values") or ()),
                    version=o.get("version"),
                    allowed=tuple(int(v) for v in o.get("allowed") or ()),
                )
                for o in data.get("overrides") or ()
            ),
            warm=tuple(int(v) for v in data.get("warm") or ()),
            interleave=Interleave.from_dict(data["interleave"]) if data.get("interleave") else None,
        )

    def evolve(self, **changes: Any) -> TrafficPolicy:
        return replace(self, **changes)


@dataclass(frozen=True)
class Route:
    version: int
    shadows: tuple[Shadow, ...]
    reason: str  # "weight", "sticky", "override", "route-header", "champion"
    interleave: Interleave | None = None  # set: answer with the champion's and candidate's lists merged


FieldReader = Callable[[str], str | None]
"""Reads ``header:NAME`` / ``input:NAME`` / ``key`` from a request; None when absent."""


def bucket_of(model: str, key: str, salt: str = "") -> int:
    text = f"{model}\x00{key}" + (f"\x00{salt}" if salt else "")
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def interleaved(policy: TrafficPolicy, key: str | None, rng: random.Random) -> Interleave | None:
    """The policy's interleaving when this request (served by the champion) is in its sample:
    by the sticky key's own bucket (a hash apart from the canary's, so the same users stay
    interleaved), or a coin when the request has no key."""
    rule = policy.interleave
    if rule is None or rule.champion != policy.champion:
        return None
    if key is not None:
        return rule if bucket_of(policy.model, key, "interleave") < rule.sample * BUCKETS else None
    return rule if rule.sample >= 1.0 or rng.random() < rule.sample else None


def _override_route(policy: TrafficPolicy, read: FieldReader) -> tuple[int, str] | None:
    for rule in policy.overrides:
        matched = rule.field is None or (rule.values and read(rule.field) in rule.values)
        if not matched:
            continue
        if rule.version is not None:
            return rule.version, "override"
        asked = read(f"header:{ROUTE_HEADER}")
        if asked is not None and asked.isascii() and asked.isdigit():  # "³".isdigit(), but int("³") fails
            wanted = int(asked)
            if (not rule.allowed or wanted in rule.allowed) and wanted in policy.loaded_versions:
                return wanted, "route-header"
    return None


def route(policy: TrafficPolicy, read: FieldReader, rng: random.Random | None = None) -> Route:
    """Choose the version that serves one request, and the shadows that see a copy."""
    rng = rng or random.Random()
    shadows = tuple(s for s in policy.shadows if s.sample >= 1.0 or rng.random() < s.sample) if policy.shadows else ()
    forced = _override_route(policy, read) if policy.overrides else None
    if forced is not None:
        return Route(forced[0], shadows, forced[1])
    if not policy.weights:  # the champion's alone: no bucket to draw
        if policy.champion is None:
            raise LookupError(f"model {policy.model!r} has no champion")
        key = read("key") if policy.interleave is not None else None
        return Route(policy.champion, shadows, "champion", interleaved(policy, key, rng))
    key = read("key")
    bucket = bucket_of(policy.model, key) if key is not None else rng.randrange(BUCKETS)
    low = 0.0
    for version in sorted(policy.weights):
        high = low + policy.weights[version] * BUCKETS / 100.0
        if low <= bucket < high:
            return Route(version, shadows, "sticky" if key is not None else "weight")
        low = high
    if policy.champion is None:
        raise LookupError(f"model {policy.model!r} has no champion")
    return Route(policy.champion, shadows, "champion", interleaved(policy, key, rng))
