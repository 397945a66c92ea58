"""The store: one object that every plane reads and writes through (SQLite or PostgreSQL).

Events are append-only: nothing here updates or deletes a row of ``events``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from changeover.domain.policy import TrafficPolicy
from changeover.domain.signature import Signature
from changeover.errors import AliasNotFound, Conflict, ModelNotFound
from changeover.store import tables as t
from changeover.store.db import Notifier, make_engine, migrate


@dataclass(frozen=True)
class VersionRecord:
    model: str
    number: int
    sha256: str
    runtime: str
    artifact: str
    signature: Signature
    labels: Mapping[str, str]
    trusted: bool  # the whole artifact (--trust; a python folder from an allow-listed folder)
    source: str | None
    created_at: float
    gate: Mapping[str, Any] | None = None
    profile: Mapping[str, Any] | None = None
    trusted_types: tuple[str, ...] = ()  # skops: the types trusted at push, which every load trusts

    def to_dict(self, aliases: list[str] | None = None) -> dict[str, Any]:
        out = {
            "model": self.model,
            "version": self.number,
            "sha256": self.sha256,
            "runtime": self.runtime,
            "signature": self.signature.to_dict(),
            "task": self.signature.inferred_task(),  # declared, else inferred from the output roles
            "roles": self.signature.output_roles(),
            "labels": dict(self.labels),
            "trusted": self.trusted,
            "trusted_types": list(self.trusted_types),
            "source": self.source,
            "created_at": self.created_at,
            "gate": self.gate,
        }
        if aliases is not None:
            out["aliases"] = aliases
        return out


def _signal_file(url: str) -> Path | None:
    """Where processes on one SQLite file signal a new generation to each other (none for a
    database in memory, or PostgreSQL, whose processes LISTEN)."""
    if not url.startswith("sqlite:///") or url in ("sqlite:///:memory:",):
        return None
    return Path(url.split("sqlite:///", 1)[1] + ".generation")


def _v(version: int | None) -> str:
    return "nothing" if version is None else f"v{version}"


def _version(row: Any) -> VersionRecord:
    return VersionRecord(
        model=row.model,
        number=row.number,
        sha256=row.sha256,
        runtime=row.runtime,
        artifact=row.artifact,
        signature=Signature.from_dict(row.signature),
        labels=row.labels or {},
        trusted=bool(row.trusted),
        source=row.source,
        created_at=row.created_at,
        gate=row.gate,
        profile=row.profile,
        trusted_types=tuple(row.trusted_types or ()),
    )


class Store:
    def __init__(self, url: str, *, run_migrations: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.notifier = Notifier(_signal_file(url))
        self.is_postgres = self.engine.dialect.name == "postgresql"
        if run_migrations:
            migrate(self.engine)

    def schema_revision(self) -> str | None:
        """The Alembic revision the store's schema is at."""
        with self.engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def close(self) -> None:
        self.notifier.close()
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # ---- events (append-only) -------------------------------------------------------

    def add_event(
        self,
        kind: str,
        message: str,
        *,
        model: str | None = None,
        actor: str = "system",
        evidence: Mapping[str, Any] | None = None,
        dedup: str | None = None,
        conn: Connection | None = None,
    ) -> int | None:
        """Append one event; with ``dedup``, an event already written under that key is not doubled."""
        row = {
            "at": time.time(),
            "actor": actor,
            "model": model,
            "kind": kind,
            "message": message,
            "evidence": dict(evidence) if evidence is not None else None,
            "dedup": dedup,
        }
        if conn is not None:
            if dedup and conn.execute(select(t.events.c.id).where(t.events.c.dedup == dedup)).first():
                return None
            key = conn.execute(insert(t.events).values(**row)).inserted_primary_key
            return int(key[0]) if key else None
        try:
            with self.tx() as c:
                return self.add_event(kind, message, model=model, actor=actor, evidence=evidence, dedup=dedup, conn=c)
        except IntegrityError:
            return None

    def events(self, model: str | None = None, *, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        q = select(t.events).where(t.events.c.id > after)
        if model:
            q = q.where(t.events.c.model == model)
        q = q.order_by(t.events.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            {
                "id": r.id,
                "at": r.at,
                "actor": r.actor,
                "model": r.model,
                "kind": r.kind,
                "message": r.message,
                "evidence": r.evidence,
            }
            for r in reversed(rows)
        ]

    # ---- models and versions --------------------------------------------------------

    def add_version(
        self,
        *,
        model: str,
        sha256: str,
        runtime: str,
        artifact: str,
        signature: Signature,
        labels: Mapping[str, str],
        trusted: bool,
        source: str | None,
        actor: str,
        trusted_types: tuple[str, ...] = (),
        trust_note: str | None = None,
        trust_reason: str | None = None,
    ) -> tuple[VersionRecord, bool]:
        """Create the next version, or return the existing one with the same bytes (created=False).
        ``trust_note`` says in the push event what was trusted and why. The same bytes pushed again
        with more trust (a python version pushed before trust was asked) record it on that version,
        with a ``trust`` event: it is the only way such a version loads again."""
        for attempt in range(60):
            try:
                with self.tx() as conn:
                    existing = conn.execute(
                        select(t.versions).where(and_(t.versions.c.model == model, t.versions.c.sha256 == sha256))
                    ).first()
                    if existing is not None:
                        found = _version(existing)
                        if (trusted and not found.trusted) or (
                                not found.trusted and set(trusted_types) - set(found.trusted_types)):
                            conn.execute(update(t.versions).where(t.versions.c.id == existing.id).values(
                                trusted=trusted or found.trusted, trusted_types=list(trusted_types) or None))
                            self.add_event(
                                "trust", f"{model} v{found.number}: {trust_note}", model=model, actor=actor,
                                evidence={"version": found.number, "trusted": trusted,
                                          "trusted_types": list(trusted_types), "reason": trust_reason},
                                conn=conn)
                            found = replace(found, trusted=trusted or found.trusted, trusted_types=trusted_types)
                        return found, False
                    if conn.execute(select(t.models).where(t.models.c.name == model)).first() is None:
                        conn.execute(insert(t.models).values(name=model, created_at=time.time()))
                    number = (
                        conn.execute(select(func.max(t.versions.c.number)).where(t.versions.c.model == model)).scalar()
                        or 0
                    ) + 1
                    conn.execute(
                        insert(t.versions).values(
                            model=model,
                            number=number,
                            sha256=sha256,
                            runtime=runtime,
                            artifact=artifact,
                            signature=signature.to_dict(),
                            labels=dict(labels),
                            trusted=trusted,
                            trusted_types=list(trusted_types) or None,
                            source=source,
                            created_at=time.time(),
                        )
                    )
                    self.add_event(
                        "push",
                        f"pushed {model} v{number} ({runtime}, sha256 {sha256[:12]})"
                        + (f"; {trust_note}" if trust_note else ""),
                        model=model,
                        actor=actor,
                        evidence={"version": number, "sha256": sha256, "runtime": runtime, "labels": dict(labels),
                                  "trusted": trusted, "trusted_types": list(trusted_types), "trust": trust_reason},
                        conn=conn,
                    )
                    row = conn.execute(
                        select(t.versions).where(and_(t.versions.c.model == model, t.versions.c.number == number))
                    ).one()
                    return _version(row), True
            except IntegrityError:
                # a concurrent push took the number: back off a little, with jitter, and try again
                time.sleep(random.uniform(0.005, 0.02) * min(attempt + 1, 10))
                continue
        raise RuntimeError("could not allocate a version number")

    def models(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r.name for r in conn.execute(select(t.models.c.name).order_by(t.models.c.name))]

    def versions(self, model: str) -> list[VersionRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.versions).where(t.versions.c.model == model).order_by(t.versions.c.number)).all()
        if not rows and model not in self.models():
            raise ModelNotFound(model)
        return [_version(r) for r in rows]

    def version(self, model: str, number: int) -> VersionRecord:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.versions).where(and_(t.versions.c.model == model, t.versions.c.number == number))
            ).first()
        if row is None:
            raise ModelNotFound(model, number)
        return _version(row)

    def resolve(self, model: str, ref: str | int) -> VersionRecord:
        """A version by number, or by alias name."""
        if isinstance(ref, int) or (str(ref).isascii() and str(ref).isdigit()):  # int('¹') raises
            return self.version(model, int(ref))
        aliases = self.aliases(model)
        if ref not in aliases:
            if model not in self.models():
                raise ModelNotFound(model)
            raise AliasNotFound(model, str(ref))
        return self.version(model, aliases[str(ref)])

    def set_version_field(self, model: str, number: int, **values: Any) -> None:
        """Attach evidence to a version (gate verdict, drift profile); the artifact stays immutable."""
        allowed = {"gate", "profile"}
        if not set(values) <= allowed:
            raise ValueError(f"only {sorted(allowed)} may change on a version")
        with self.tx() as conn:
            conn.execute(
                update(t.versions).where(and_(t.versions.c.model == model, t.versions.c.number == number)).values(**values)
            )

    # ---- aliases --------------------------------------------------------------------

    def aliases(self, model: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.aliases).where(t.aliases.c.model == model)).all()
        return {r.alias: r.version for r in rows}

    def set_alias(self, model: str, alias: str, version: int, *, actor: str, reason: str = "",
                  conn: Connection | None = None, expect: int | None = None) -> int | None:
        """Point an alias at a version, keeping the move in the history; returns the previous version.

        The move is a compare-and-set on the version it read: a concurrent move that got there
        first makes this one a `Conflict` naming the version the alias now points at, so the
        history never records two moves from one version. With ``expect``, the alias must still
        point at that version (the caller's own read)."""
        if conn is None:
            with self.tx() as c:
                return self.set_alias(model, alias, version, actor=actor, reason=reason, conn=c, expect=expect)
        if conn.execute(
            select(t.versions.c.id).where(and_(t.versions.c.model == model, t.versions.c.number == version))
        ).first() is None:
            raise ModelNotFound(model, version)
        now = time.time()
        current = conn.execute(
            select(t.aliases.c.version).where(and_(t.aliases.c.model == model, t.aliases.c.alias == alias))
        ).scalar()
        if expect is not None and current != expect:
            raise Conflict(f"{alias} of {model} points at {_v(current)}, not v{expect} as expected: "
                           f"another move got there first")
        if current is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(t.aliases).values(model=model, alias=alias, version=version, updated_at=now))
            except IntegrityError:
                raise Conflict(f"{alias} of {model} was set by another request meanwhile (now "
                               f"{_v(self._alias_now(conn, model, alias))}); read it and move again") from None
        else:
            moved = conn.execute(
                update(t.aliases)
                .where(and_(t.aliases.c.model == model, t.aliases.c.alias == alias, t.aliases.c.version == current))
                .values(version=version, updated_at=now)
            )
            if moved.rowcount != 1:
                raise Conflict(f"{alias} of {model} was moved from v{current} by another request meanwhile (now "
                               f"{_v(self._alias_now(conn, model, alias))}); read it and move again")
        conn.execute(
            insert(t.alias_history).values(model=model, alias=alias, version=version, previous=current, at=now, actor=actor)
        )
        self.add_event(
            "alias",
            (f"{alias} of {model} set to v{version}" if current is None else f"{alias} of {model}: v{current} -> v{version}")
            + (f" ({reason})" if reason else ""),
            model=model,
            actor=actor,
            evidence={"alias": alias, "version": version, "previous": current},
            conn=conn,
        )
        return current

    def why_unsafe(self, model: str, version: int) -> str | None:
        """Why traffic should not move back to a version, or None: its last rollout as the
        candidate failed or was rolled back, or its last gate failed."""
        with self.engine.connect() as conn:
            rollouts = conn.execute(select(t.rollouts.c.id, t.rollouts.c.status).where(
                t.rollouts.c.model == model).order_by(t.rollouts.c.id.desc()).limit(200)).all()
            gate = conn.execute(select(t.analyses.c.outcome, t.analyses.c.at).where(and_(
                t.analyses.c.model == model, t.analyses.c.version == version, t.analyses.c.kind == "gate"))
                .order_by(t.analyses.c.id.desc()).limit(1)).first()
        for row in rollouts:
            status = row.status or {}
            if status.get("candidate_version") != version:
                continue
            if status.get("phase") in ("rolled_back", "failed"):
                said = status.get("message") or status.get("phase")
                return f"v{version} failed its last rollout (rollout {row.id}, {status.get('phase')}: {said})"
            break
        if gate is not None and gate.outcome == "fail":
            return f"v{version} failed its last gate"
        return None

    @staticmethod
    def _alias_now(conn: Connection, model: str, alias: str) -> int | None:
        return conn.execute(
            select(t.aliases.c.version).where(and_(t.aliases.c.model == model, t.aliases.c.alias == alias))
        ).scalar()

    def alias_history(self, model: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.alias_history).where(t.alias_history.c.model == model).order_by(t.alias_history.c.id)
            ).all()
        return [
            {"alias": r.alias, "version": r.version, "previous": r.previous, "at": r.at, "actor": r.actor} for r in rows
        ]

    # ---- traffic policies -----------------------------------------------------------

    def policy(self, model: str, conn: Connection | None = None) -> TrafficPolicy | None:
        q = (
            select(t.policies.c.body)
            .where(t.policies.c.model == model)
            .order_by(t.policies.c.generation.desc())
            .limit(1)
        )
        if conn is not None:
            body = conn.execute(q).scalar()
        else:
            with self.engine.connect() as c:
                body = c.execute(q).scalar()
        return TrafficPolicy.from_dict(body) if body else None

    def generations(self) -> dict[str, int]:
        """The newest policy generation of every model (what gateways poll)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.policies.c.model, func.max(t.policies.c.generation)).group_by(t.policies.c.model)
            ).all()
        return {m: int(g) for m, g in rows}

    def write_policy(
        self, policy: TrafficPolicy, *, conn: Connection, event_kind: str, message: str, actor: str, evidence: Mapping[str, Any] | None = None, dedup: str | None = None
    ) -> TrafficPolicy:
        """Write the next generation and its audit event in the caller's transaction."""
        current = conn.execute(
            select(func.max(t.policies.c.generation)).where(t.policies.c.model == policy.model)
        ).scalar() or 0
        new = policy.evolve(generation=current + 1)
        conn.execute(insert(t.policies).values(model=new.model, generation=new.generation, body=new.to_dict(), created_at=time.time()))
        self.add_event(
            event_kind,
            message,
            model=policy.model,
            actor=actor,
            evidence={"generation": new.generation, "policy": new.to_dict(), **dict(evidence or {})},
            dedup=dedup,
            conn=conn,
        )
        if self.is_postgres:
            conn.exec_driver_sql("SELECT pg_notify('changeover_policy', %(p)s)", {"p": f"{new.model}:{new.generation}"})
        return new

    def after_commit_publish(self, policy: TrafficPolicy) -> None:
        self.notifier.publish(policy.model, policy.generation)
