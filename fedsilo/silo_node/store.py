"""The silo's own tables: alignments, model parts, checkpoints, scores and the audit ledger.

Everything a silo produces stays in its own database (see DESIGN.md, "Data at a silo"), next to
the data it came from. All internal tables carry the prefix ``fedsilo_``; score tables are named by
the job and checked against ``[A-Za-z_][A-Za-z0-9_]*``.

Why each table looks the way it does:

- **alignments** are written in one transaction (header and every row), so a crash or a
  concurrent reader never sees half an alignment; an existing name is only replaced on request.
- **model parts** and **checkpoints** are JSON text: nothing executable is ever stored.
- **scores** have the primary key ``(id, model_version)`` and are written with insert-or-ignore,
  one transaction per chunk, so a scoring job killed half-way is resumed by writing again.
- the **ledger** lives in :mod:`fedsilo.silo_node.ledger` (hash chain from a per-silo genesis,
  signed heads kept by others); its tables are created here with the others.

Tables are created by :meth:`SiloStore.create_tables`, which ``open_silo`` calls only after the
silo's datasets validated, so a bad config writes nothing to the database.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from fedsilo import settings
from fedsilo.errors import DataError, JobError, NotFound
from fedsilo.silo_node.ledger import (  # noqa: F401 - LEDGER re-exported for readers
    _MAX_NAME,
    GENESIS_HASH,
    LEDGER,
    Ledger,
    LedgerEntry,
    _name,
    _now,
    ledger_metadata,
)

__all__ = [
    "ALIGNMENTS",
    "ALIGNMENT_ROWS",
    "GENESIS_HASH",
    "AlignmentInfo",
    "Ledger",
    "LedgerEntry",
    "ModelPart",
    "SiloStore",
    "check_table_name",
    "metadata",
]

_TABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

metadata = MetaData()

ALIGNMENTS = Table(
    "fedsilo_alignment",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(_MAX_NAME), nullable=False, unique=True),
    Column("job_id", String(_MAX_NAME), nullable=False),
    Column("dataset", String(_MAX_NAME), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("created_at", String(40), nullable=False),
)
ALIGNMENT_ROWS = Table(
    "fedsilo_alignment_row",
    metadata,
    Column("alignment_id", Integer, primary_key=True, autoincrement=False),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("row_id", Text, nullable=False),
    # lets a join from the data table find a row by id; unique: an id is aligned once
    Index("ix_fedsilo_alignment_row_id", "alignment_id", "row_id", unique=True),
)
MODEL_PARTS = Table(
    "fedsilo_model_part",
    metadata,
    Column("model_id", String(_MAX_NAME), primary_key=True),
    Column("kind", String(_MAX_NAME), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)
CHECKPOINTS = Table(
    "fedsilo_checkpoint",
    metadata,
    Column("job_id", String(_MAX_NAME), primary_key=True),
    Column("key", String(_MAX_NAME), primary_key=True),
    Column("payload", Text, nullable=False),
    Column("updated_at", String(40), nullable=False),
)


def _to_json(what: str, payload: dict[str, Any]) -> str:
    """Strict JSON (no NaN / Infinity), so any other language can read it back."""
    if not isinstance(payload, dict):
        raise DataError(f"{what} payload must be a JSON object")
    try:
        return json.dumps(payload, sort_keys=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise DataError(f"{what} payload is not JSON-serialisable ({err})") from None


#: longest reason code a score table stores (the job schema allows at most 64 characters; a
#: label used as its own code, the fallback, is cut to this length)
_MAX_REASON_CODE = 200


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def check_table_name(name: str) -> str:
    """A score table name: a plain identifier, not one of our internal ``fedsilo_`` tables."""
    if not isinstance(name, str) or not _TABLE_NAME_RE.match(name) or len(name) > 63:
        raise DataError(
            f"table name {str(name)[:80]!r} must match {_TABLE_NAME_RE.pattern} "
            "(at most 63 characters)"
        )
    if name.lower().startswith("fedsilo_"):
        raise DataError(f"table name '{name}' uses the reserved prefix 'fedsilo_'")
    return name


@dataclass(frozen=True)
class AlignmentInfo:
    name: str
    job_id: str
    dataset: str
    rows: int
    created_at: str


@dataclass(frozen=True)
class ModelPart:
    model_id: str
    kind: str
    payload: dict[str, Any]
    created_at: str


class SiloStore:
    """The silo's own tables, over the same engine as its data (one DB, joins in SQL)."""

    def __init__(self, engine: Engine, party: str | None = None) -> None:
        self.engine = engine
        self.party = party  # names the ledger's genesis
        self._score_tables: dict[str, Table] = {}
        self._lock = threading.Lock()
        self._ledger: Ledger | None = None

    def create_tables(self) -> None:
        """Create missing ``fedsilo_`` tables. Call only after the datasets validated.

        On SQLite this also switches the file to WAL journaling (persistent): a long chunked read
        (PSI over 10M ids) must not block the ledger append of a concurrent step, and in the
        default rollback journal an open reader blocks every writer.
        """
        metadata.create_all(self.engine)
        ledger_metadata.create_all(self.engine)
        if self.engine.dialect.name == "sqlite" and self.engine.url.database not in (
            None,
            "",
            ":memory:",
        ):
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        self.ledger.genesis()  # drawn once, before the first entry

    @property
    def ledger(self) -> Ledger:
        """The one ledger of this store (one per process keeps appends serialised)."""
        with self._lock:
            if self._ledger is None:
                self._ledger = Ledger(self.engine, self.party)
            return self._ledger

    # --- alignments -----------------------------------------------------------------------------
    def save_alignment(
        self, name: str, job_id: str, dataset: str, row_ids: Iterable[str], *, replace: bool = False
    ) -> AlignmentInfo:
        """Store the PSI row order for ``name`` atomically: all rows or nothing becomes visible.

        ``row_ids`` are normalised ids (``fedsilo.silo_node.data.normalise_id``) in the agreed
        order; it may be a generator, consumed in chunks of ``settings.WRITE_CHUNK_ROWS``.
        """
        _name("alignment name", name), _name("job id", job_id), _name("dataset", dataset)
        created = _now()
        with self.engine.begin() as conn:
            old = conn.execute(select(ALIGNMENTS.c.id).where(ALIGNMENTS.c.name == name)).scalar()
            if old is not None and not replace:
                raise JobError(f"alignment '{name}' already exists (pass replace=True to replace)")
            if old is not None:
                conn.execute(delete(ALIGNMENT_ROWS).where(ALIGNMENT_ROWS.c.alignment_id == old))
                conn.execute(delete(ALIGNMENTS).where(ALIGNMENTS.c.id == old))
            try:
                res = conn.execute(
                    insert(ALIGNMENTS).values(
                        name=name, job_id=job_id, dataset=dataset, rows=0, created_at=created
                    )
                )
            except IntegrityError:
                raise JobError(f"alignment '{name}' was created concurrently") from None
            aid = int(res.inserted_primary_key[0])  # type: ignore[index]
            rows = self._insert_alignment_rows(conn, aid, name, row_ids)
            conn.execute(update(ALIGNMENTS).where(ALIGNMENTS.c.id == aid).values(rows=rows))
        return AlignmentInfo(name, job_id, dataset, rows, created)

    @staticmethod
    def _insert_alignment_rows(conn: Any, aid: int, name: str, row_ids: Iterable[str]) -> int:
        position = 0
        for chunk in _chunks(row_ids, settings.WRITE_CHUNK_ROWS):
            if not all(isinstance(r, str) for r in chunk):
                raise DataError(f"alignment '{name}': row ids must be strings")
            params = [
                {"alignment_id": aid, "position": position + i, "row_id": r}
                for i, r in enumerate(chunk)
            ]
            try:
                conn.execute(insert(ALIGNMENT_ROWS), params)
            except IntegrityError:
                raise DataError(f"alignment '{name}' lists the same id twice") from None
            position += len(chunk)
        return position

    def alignment_info(self, name: str) -> AlignmentInfo:
        with self.engine.connect() as conn:
            row = conn.execute(select(ALIGNMENTS).where(ALIGNMENTS.c.name == name)).first()
        if row is None:
            raise NotFound(f"alignment '{name[:80]}' does not exist")
        return AlignmentInfo(row.name, row.job_id, row.dataset, row.rows, row.created_at)

    def list_alignments(self) -> list[AlignmentInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(ALIGNMENTS).order_by(ALIGNMENTS.c.name)).all()
        return [AlignmentInfo(r.name, r.job_id, r.dataset, r.rows, r.created_at) for r in rows]

    def delete_alignment(self, name: str) -> None:
        with self.engine.begin() as conn:
            aid = conn.execute(select(ALIGNMENTS.c.id).where(ALIGNMENTS.c.name == name)).scalar()
            if aid is None:
                raise NotFound(f"alignment '{name[:80]}' does not exist")
            conn.execute(delete(ALIGNMENT_ROWS).where(ALIGNMENT_ROWS.c.alignment_id == aid))
            conn.execute(delete(ALIGNMENTS).where(ALIGNMENTS.c.id == aid))

    def iter_alignment_ids(
        self,
        name: str,
        chunk_rows: int = settings.READ_CHUNK_ROWS,
        *,
        positions: tuple[int, int] | None = None,
    ) -> Iterator[list[str]]:
        """The aligned ids in stored order, in chunks (e.g. to score exactly the intersection).

        ``positions=(start, stop)`` yields only positions ``[start, stop)``, read by primary key.
        """
        aid = self._alignment_id(name)
        pos = ALIGNMENT_ROWS.c.position
        stmt = (
            select(ALIGNMENT_ROWS.c.row_id)
            .where(ALIGNMENT_ROWS.c.alignment_id == aid)
            .order_by(pos)
        )
        if positions is not None:
            stmt = stmt.where(pos >= int(positions[0]), pos < int(positions[1]))
        with self.engine.connect() as conn:
            for part in conn.execution_options(yield_per=chunk_rows).execute(stmt).partitions():
                yield [r[0] for r in part]

    def _alignment_id(self, name: str) -> int:
        with self.engine.connect() as conn:
            aid = conn.execute(select(ALIGNMENTS.c.id).where(ALIGNMENTS.c.name == name)).scalar()
        if aid is None:
            raise NotFound(f"alignment '{name[:80]}' does not exist")
        return int(aid)

    # --- model parts and checkpoints ------------------------------------------------------------
    def save_model_part(
        self, model_id: str, kind: str, payload: dict[str, Any], *, replace: bool = False
    ) -> None:
        """Store this silo's part of a model as JSON (thresholds it owns, its key ids, ...)."""
        _name("model id", model_id), _name("model kind", kind)
        text = _to_json(f"model '{model_id}'", payload)
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(MODEL_PARTS.c.model_id).where(MODEL_PARTS.c.model_id == model_id)
            ).first()
            if exists and not replace:
                raise DataError(f"model part '{model_id}' already exists at this silo")
            conn.execute(delete(MODEL_PARTS).where(MODEL_PARTS.c.model_id == model_id))
            conn.execute(
                insert(MODEL_PARTS).values(
                    model_id=model_id, kind=kind, payload=text, created_at=_now()
                )
            )

    def load_model_part(self, model_id: str) -> ModelPart:
        with self.engine.connect() as conn:
            stmt = select(MODEL_PARTS).where(MODEL_PARTS.c.model_id == model_id)
            row = conn.execute(stmt).first()
        if row is None:
            raise NotFound(f"model part '{model_id[:80]}' does not exist at this silo")
        return ModelPart(row.model_id, row.kind, json.loads(row.payload), row.created_at)

    def list_model_parts(self) -> list[tuple[str, str, str]]:
        """``(model_id, kind, created_at)`` of every stored part, without payloads."""
        stmt = select(MODEL_PARTS.c.model_id, MODEL_PARTS.c.kind, MODEL_PARTS.c.created_at)
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(stmt.order_by(MODEL_PARTS.c.model_id))]

    def save_checkpoint(self, job_id: str, key: str, payload: dict[str, Any]) -> None:
        """Replace the checkpoint ``(job_id, key)``; a resumed job reads the latest one."""
        _name("job id", job_id), _name("checkpoint key", key)
        text = _to_json(f"checkpoint '{key}'", payload)
        where = (CHECKPOINTS.c.job_id == job_id) & (CHECKPOINTS.c.key == key)
        with self.engine.begin() as conn:
            conn.execute(delete(CHECKPOINTS).where(where))
            conn.execute(
                insert(CHECKPOINTS).values(job_id=job_id, key=key, payload=text, updated_at=_now())
            )

    def load_checkpoint(self, job_id: str, key: str) -> dict[str, Any] | None:
        """The stored payload, or ``None`` when the job never checkpointed ``key``."""
        where = (CHECKPOINTS.c.job_id == job_id) & (CHECKPOINTS.c.key == key)
        with self.engine.connect() as conn:
            text = conn.execute(select(CHECKPOINTS.c.payload).where(where)).scalar()
        return None if text is None else dict(json.loads(text))

    # --- scores ---------------------------------------------------------------------------------
    def ensure_score_table(self, table_name: str, reasons: int | None = None) -> Table:
        """Create the score table if missing; refuse an existing table of another shape.

        ``reasons``: how many reason-code columns (``reason_1`` ...) it carries; None: whatever
        an existing table has (none for a new one).
        """
        check_table_name(table_name)
        with self._lock:
            known = self._score_tables.get(table_name)
            if known is not None and (reasons is None or _reason_count(known) == reasons):
                return known
            insp = inspect(self.engine)
            if insp.has_table(table_name):
                cols = {c["name"] for c in insp.get_columns(table_name)}
                have = sum(1 for c in cols if c.startswith("reason_"))
                table = _score_table(table_name, have)
                pk = set(insp.get_pk_constraint(table_name).get("constrained_columns") or [])
                if cols != {c.name for c in table.columns} or pk != {"id", "model_version"}:
                    raise DataError(
                        f"table '{table_name}' exists and is not a fedsilo score "
                        "table (id, score, model_version, scored_at[, reason_1..])"
                    )
                if reasons is not None and have != reasons:
                    raise DataError(
                        f"score table '{table_name}' has {have} reason column(s), the step "
                        f"writes {reasons}: name another table"
                    )
            else:
                table = _score_table(table_name, reasons or 0)
                table.create(self.engine, checkfirst=True)
            self._score_tables[table_name] = table
            return table

    def write_scores(
        self,
        table_name: str,
        rows: Sequence[tuple[str, float, str, datetime | str]],
        reasons: Sequence[Sequence[str | None]] | None = None,
    ) -> None:
        """Insert ``(id, score, model_version, scored_at)`` rows; already stored keys are kept.

        All rows of one call commit in one transaction (sent in batches of
        ``settings.WRITE_CHUNK_ROWS``), so a scoring chunk killed mid-write leaves nothing of
        itself behind, whatever its size; writing a chunk twice (a resumed job) leaves one row
        per (id, model_version), and the first score written wins. ``reasons``: one list of
        reason codes per row, as many as the table's reason columns (None: no reason).
        """
        k = len(reasons[0]) if reasons else 0
        table = self.ensure_score_table(table_name, reasons=k if reasons is not None else None)
        if reasons is not None and len(reasons) != len(rows):
            raise DataError(f"{len(reasons)} reason lists for {len(rows)} score rows")
        params = [_score_params(r) for r in rows]
        for p, codes in zip(params, reasons or [], strict=False):
            p.update({f"reason_{j + 1}": c and c[:_MAX_REASON_CODE] for j, c in enumerate(codes)})
        if reasons is None:
            for p in params:
                p.update({f"reason_{j + 1}": None for j in range(_reason_count(table))})
        stmt = _insert_ignore(self.engine.dialect.name, table)
        with self.engine.begin() as conn:
            for chunk in _chunks(params, settings.WRITE_CHUNK_ROWS):
                conn.execute(stmt, chunk)

    def scored_ids(self, table_name: str, model_version: str) -> set[str]:
        table = self.ensure_score_table(table_name)
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    select(table.c.id).where(table.c.model_version == model_version)
                ).scalars()
            )

    def score_table_exists(self, table_name: str) -> bool:
        check_table_name(table_name)
        return bool(inspect(self.engine).has_table(table_name))

    def delete_scores(self, table_name: str, model_version: str, ids: Sequence[str]) -> None:
        """Delete the ``model_version`` scores of ``ids`` (a cancelled scoring job's own rows),
        in one transaction."""
        table = self.ensure_score_table(table_name)
        with self.engine.begin() as conn:
            for chunk in _chunks(list(ids), settings.WRITE_CHUNK_ROWS):
                where = (table.c.model_version == model_version) & table.c.id.in_(chunk)
                conn.execute(delete(table).where(where))

    def drop_score_table_if_empty(self, table_name: str) -> bool:
        """Drop a score table that holds no row (one a cancelled job created); True if dropped."""
        table = self.ensure_score_table(table_name)
        with self._lock, self.engine.begin() as conn:
            if conn.execute(select(func.count()).select_from(table)).scalar_one():
                return False
            table.drop(conn)
            self._score_tables.pop(table_name, None)
        return True

    def score_count(self, table_name: str, model_version: str) -> int:
        """How many ids already carry a score of ``model_version`` (resume without a set)."""
        table = self.ensure_score_table(table_name)
        stmt = select(func.count()).select_from(table).where(table.c.model_version == model_version)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())


def _score_table(name: str, reasons: int = 0) -> Table:
    return Table(
        name,
        MetaData(),
        Column("id", Text, primary_key=True),
        Column("score", Float, nullable=False),
        Column("model_version", String(_MAX_NAME), primary_key=True),
        Column("scored_at", DateTime(timezone=True), nullable=False),
        *(Column(f"reason_{j + 1}", String(_MAX_REASON_CODE)) for j in range(reasons)),
    )


def _reason_count(table: Table) -> int:
    return sum(1 for c in table.columns if c.name.startswith("reason_"))


def _insert_ignore(dialect: str, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the dialect's own spelling."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=["id", "model_version"])
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=["id", "model_version"])
    raise DataError(f"writing scores is not supported on database dialect '{dialect}'")


def _score_params(row: tuple[str, float, str, datetime | str]) -> dict[str, Any]:
    ident, score, version, at = row
    if not isinstance(ident, str) or not isinstance(version, str):
        raise DataError("score rows need a string id and a string model version")
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    if not isinstance(when, datetime):
        raise DataError("scored_at must be a datetime or an ISO 8601 string")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return {"id": ident, "score": float(score), "model_version": version, "scored_at": when}
