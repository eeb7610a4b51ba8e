"""The coordinator's own database: jobs, their events, and the model registry.

The coordinator stores only what it may know: job specs (no addresses of secrets), states,
reasons, counts and the metrics a label holder released. It never stores ids, features, labels,
gradients or keys (a test searches this database for raw ids).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    insert,
    select,
    update,
)

from fedsilo.crypto.ledger_heads import SignedHead
from fedsilo.errors import NotFound

__all__ = ["FINAL_STATES", "JOB_STATES", "JobEvent", "JobRecord", "JobStore", "ModelRecord"]

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
#: states a job never leaves
FINAL_STATES = ("succeeded", "failed", "cancelled")

_meta = MetaData()
_jobs = Table(
    "fedsilo_jobs",
    _meta,
    Column("job_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("spec_json", Text, nullable=False),
    Column("result_json", Text, nullable=False, default="{}"),
    Column("progress_json", Text, nullable=False, default="{}"),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)
_events = Table(
    "fedsilo_job_events",
    _meta,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False, index=True),
    Column("at", String(40), nullable=False),
    Column("message", Text, nullable=False),
)
_models = Table(
    "fedsilo_models",
    _meta,
    Column("model_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("job_id", String(64), nullable=False),
    Column("record_json", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)

#: each silo's signed audit-ledger head as it returned it at the job's close (kept so a silo's
#: truncated or rewritten ledger can be shown: ``fedsilo audit verify --expect-head``)
_heads = Table(
    "fedsilo_ledger_heads",
    _meta,
    Column("job_id", String(64), primary_key=True),
    Column("party", String(200), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("head_json", Text, nullable=False),
    Column("kept_at", String(40), nullable=False),
)


#: cancellation requests (``fedsilo jobs cancel``): the process running the job polls this
#: table, wherever it runs (``fedsilo run`` or the coordinator service), through the same store
_cancels = Table(
    "fedsilo_job_cancels",
    _meta,
    Column("job_id", String(64), primary_key=True),
    Column("requested_at", String(40), nullable=False),
)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    name: str
    state: str
    reason: str
    spec: dict[str, Any]
    result: dict[str, Any]
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class JobEvent:
    """One line of a job's log, numbered in the order it was written."""

    seq: int
    at: str
    message: str


@dataclass(frozen=True)
class ModelRecord:
    model_id: str
    version: int
    name: str
    kind: str
    job_id: str
    record: dict[str, Any]
    created_at: str


class JobStore:
    """Jobs and models in a SQLAlchemy database (SQLite by default)."""

    def __init__(self, url_or_engine: str | Engine) -> None:
        self.engine = (
            create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        )
        _meta.create_all(self.engine)

    def create_job(self, name: str, spec: dict[str, Any], job_id: str | None = None) -> str:
        job_id = job_id or f"{name[:40]}-{uuid.uuid4().hex[:8]}"
        stamp = now()
        with self.engine.begin() as conn:
            conn.execute(
                insert(_jobs).values(
                    job_id=job_id,
                    name=name,
                    state="queued",
                    reason="",
                    spec_json=json.dumps(spec),
                    result_json="{}",
                    progress_json="{}",
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
        return job_id

    def set_state(
        self, job_id: str, state: str, *, reason: str = "", result: dict[str, Any] | None = None
    ) -> None:
        assert state in JOB_STATES
        values: dict[str, Any] = {"state": state, "reason": reason, "updated_at": now()}
        if result is not None:
            values["result_json"] = json.dumps(result)
        with self.engine.begin() as conn:
            conn.execute(update(_jobs).where(_jobs.c.job_id == job_id).values(**values))

    def set_spec(self, job_id: str, spec: dict[str, Any]) -> None:
        """Replace the job's spec: a resumed run may rerun its later steps with new settings."""
        with self.engine.begin() as conn:
            conn.execute(
                update(_jobs)
                .where(_jobs.c.job_id == job_id)
                .values(spec_json=json.dumps(spec), updated_at=now())
            )

    def add_event(self, job_id: str, message: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(_events).values(job_id=job_id, at=now(), message=message))

    def events(self, job_id: str) -> list[tuple[str, str]]:
        return [(e.at, e.message) for e in self.events_after(job_id)]

    def events_after(self, job_id: str, after: int = 0) -> list[JobEvent]:
        """The job's events numbered above ``after`` (0: all), oldest first."""
        stmt = select(_events).where((_events.c.job_id == job_id) & (_events.c.seq > after))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(_events.c.seq))
            return [JobEvent(r.seq, r.at, r.message) for r in rows]

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        """The job's progress now (one entry per long task, ``fedsilo.coordinator.progress``)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(_jobs)
                .where(_jobs.c.job_id == job_id)
                .values(progress_json=json.dumps(progress))
            )

    def progress(self, job_id: str) -> dict[str, Any]:
        stmt = select(_jobs.c.progress_json).where(_jobs.c.job_id == job_id)
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise NotFound(f"no job '{job_id}'")
        value = json.loads(row.progress_json or "{}")
        return value if isinstance(value, dict) else {}

    def request_cancel(self, job_id: str) -> bool:
        """Ask whoever runs the job to cancel it; False if it had already ended."""
        if self.get_job(job_id).state in FINAL_STATES:
            return False
        with self.engine.begin() as conn:
            if conn.execute(select(_cancels).where(_cancels.c.job_id == job_id)).first() is None:
                conn.execute(insert(_cancels).values(job_id=job_id, requested_at=now()))
        return True

    def cancel_requested(self, job_id: str) -> bool:
        with self.engine.connect() as conn:
            stmt = select(_cancels.c.job_id).where(_cancels.c.job_id == job_id)
            return conn.execute(stmt).first() is not None

    def clear_cancel(self, job_id: str) -> None:
        """Forget a cancellation once the job ended (a resumed run starts without it)."""
        with self.engine.begin() as conn:
            conn.execute(delete(_cancels).where(_cancels.c.job_id == job_id))

    def get_job(self, job_id: str) -> JobRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(_jobs).where(_jobs.c.job_id == job_id)).first()
        if row is None:
            raise NotFound(f"no job '{job_id}'")
        return _job(row)

    def list_jobs(self) -> list[JobRecord]:
        with self.engine.connect() as conn:
            return [_job(r) for r in conn.execute(select(_jobs).order_by(_jobs.c.created_at))]

    def fail_interrupted(self, reason: str) -> list[str]:
        """Mark jobs left queued/running by a dead coordinator as failed; returns their ids."""
        with self.engine.begin() as conn:
            ids = [
                r.job_id
                for r in conn.execute(
                    select(_jobs.c.job_id).where(_jobs.c.state.in_(("queued", "running")))
                )
            ]
            if ids:
                conn.execute(
                    update(_jobs)
                    .where(_jobs.c.job_id.in_(ids))
                    .values(state="failed", reason=reason, updated_at=now())
                )
        return ids

    def save_ledger_head(self, job_id: str, party: str, signed: SignedHead) -> None:
        """Keep ``party``'s head for the job (a resumed job's later close replaces it)."""
        head = signed.head
        where = (_heads.c.job_id == job_id) & (_heads.c.party == party)
        with self.engine.begin() as conn:
            conn.execute(delete(_heads).where(where))
            conn.execute(
                insert(_heads).values(
                    job_id=job_id,
                    party=party,
                    seq=head.seq,
                    hash=head.hash,
                    head_json=signed.to_json(),
                    kept_at=now(),
                )
            )

    def ledger_heads(self, job_id: str) -> dict[str, SignedHead]:
        """The heads the job's silos signed at its close, by party."""
        stmt = select(_heads.c.party, _heads.c.head_json).where(_heads.c.job_id == job_id)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(_heads.c.party)).all()
        return {r.party: SignedHead.from_json(r.head_json) for r in rows}

    def register_model(
        self, *, name: str, kind: str, job_id: str, record: dict[str, Any]
    ) -> ModelRecord:
        """Add a model; its version counts models of the same name (1, 2, ...)."""
        with self.engine.begin() as conn:
            versions = conn.execute(select(_models.c.version).where(_models.c.name == name)).all()
            version = max((v[0] for v in versions), default=0) + 1
            model_id = f"{name[:40]}-v{version}"
            stamp = now()
            conn.execute(
                insert(_models).values(
                    model_id=model_id,
                    version=version,
                    name=name,
                    kind=kind,
                    job_id=job_id,
                    record_json=json.dumps(record),
                    created_at=stamp,
                )
            )
        return ModelRecord(model_id, version, name, kind, job_id, record, stamp)

    def update_model(self, model_id: str, record: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(_models)
                .where(_models.c.model_id == model_id)
                .values(record_json=json.dumps(record))
            )

    def get_model(self, model_id: str) -> ModelRecord:
        with self.engine.connect() as conn:
            row = conn.execute(select(_models).where(_models.c.model_id == model_id)).first()
        if row is None:
            raise NotFound(f"no model '{model_id}'")
        return _model(row)

    def list_models(self) -> list[ModelRecord]:
        with self.engine.connect() as conn:
            return [_model(r) for r in conn.execute(select(_models).order_by(_models.c.created_at))]


def _job(row: Any) -> JobRecord:
    return JobRecord(
        row.job_id,
        row.name,
        row.state,
        row.reason,
        json.loads(row.spec_json),
        json.loads(row.result_json),
        row.created_at,
        row.updated_at,
    )


def _model(row: Any) -> ModelRecord:
    return ModelRecord(
        row.model_id,
        row.version,
        row.name,
        row.kind,
        row.job_id,
        json.loads(row.record_json),
        row.created_at,
    )
