"""A silo's datasets, read from its own database in chunks, and checked before anything runs.

**Validation** (:meth:`SiloData.validate`) runs at silo start against the real database and
fails with one line naming the config file, dataset, table and column. It uses aggregate SQL
(``COUNT``, ``GROUP BY ... HAVING``, ``LIMIT 1`` probes), so it scales to tables of 10M rows
without loading them. Its messages may quote a bad value: they are for the silo's operator at
start-up. Errors raised while a job runs never quote an id, since they travel to the coordinator.

**Id normalisation** (:func:`normalise_id`), the one rule every silo applies before PSI:

- integers become decimal text (``42`` -> ``"42"``);
- strings are NFC-normalised and stripped of surrounding whitespace;
- UUIDs become their lower-case hyphenated text.

The same ids are matched back to rows *in SQL* (alignment joins, batch look-ups), where only
``trim(CAST(id AS VARCHAR))`` is available. So validation also refuses ids whose Python and SQL
forms would differ (not NFC, or padded with tabs / newlines), checking only the rare ids that are
not printable ASCII. Which SQL comparison a dataset uses (raw column, cast, or trimmed text) is
chosen from its id type, so an index on the id column is used whenever one exists.

**Aligned reads** join the data (table or query) with the stored alignment in the same
database, ordered by alignment position, streamed with ``yield_per``. A row id that disappeared
from the data since the PSI is an error, never a silently shifted row.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    String,
    cast,
    column,
    create_engine,
    func,
    inspect,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.elements import ColumnClause, ColumnElement
from sqlalchemy.sql.selectable import FromClause

from fedsilo import settings
from fedsilo.errors import DataError, FedsiloError, NotFound
from fedsilo.silo_node.config import DatasetConfig, SiloConfig
from fedsilo.silo_node.store import ALIGNMENT_ROWS, ALIGNMENTS, Ledger, SiloStore

__all__ = ["DatasetInfo", "OpenedSilo", "SiloData", "make_engine", "normalise_id", "open_silo"]

#: how a dataset's ids are compared in SQL: raw integer column, raw text column, or the
#: expression ``trim(CAST(id AS VARCHAR))`` (padded text, UUIDs).
IdKind = Literal["int", "text", "expr"]


def normalise_id(value: object) -> str:
    """The canonical text of an id (module docstring); refuses floats, bytes, bools."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value).strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise DataError(f"ids must be integers or text, not {type(value).__name__}")


def make_engine(url: str) -> Engine:
    """An engine with the options a silo needs (a patient SQLite busy timeout)."""
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine(url, connect_args={"timeout": settings.SQLITE_BUSY_TIMEOUT_S})
    return create_engine(url, pool_pre_ping=True)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    rows: int
    id_column: str
    features: tuple[str, ...]
    label: str | None


def _numeric_type(t: Any) -> bool:
    # SQLAlchemy 2.1 no longer derives Float from Numeric: name all three.
    numeric = isinstance(t, sqltypes.Integer | sqltypes.Numeric | sqltypes.Float)
    return numeric and not isinstance(t, sqltypes.Boolean)


def _show(value: object) -> str:
    text_ = repr(value)
    return text_ if len(text_) <= 40 else text_[:37] + "..."


def _db_reason(err: SQLAlchemyError) -> str:
    orig = getattr(err, "orig", None) or err
    return str(orig).strip().splitlines()[0][:200] if str(orig).strip() else type(err).__name__


class SiloData:
    """Read access to the datasets a silo config declares (SQLAlchemy Core, no ORM)."""

    def __init__(self, engine: Engine, config: SiloConfig) -> None:
        self.engine = engine
        self.config = config
        self._rows: dict[str, int] = {}
        self._kinds: dict[str, IdKind] = {}

    # --- validation -----------------------------------------------------------------------------
    def validate(self) -> dict[str, int]:
        """Check every dataset against the real database; return rows per dataset."""
        self._check_database_exists()
        for ds in self.config.datasets.values():
            try:
                with self.engine.connect() as conn:
                    self._rows[ds.name] = _Validator(self, conn, ds).run()
            except FedsiloError:
                raise
            except SQLAlchemyError as err:
                raise DataError(
                    f"{self.config.file_label}: dataset '{ds.name}' {ds.source} "
                    f"cannot be read ({_db_reason(err)})"
                ) from None
        return dict(self._rows)

    def _check_database_exists(self) -> None:
        """Say "no database" as such, not as a failure of the first dataset.

        A missing SQLite file would be created empty by connecting, so it is checked first.
        """
        url = make_url(self.config.database_url)
        db = url.database
        if (
            url.get_backend_name() == "sqlite"
            and db
            and db != ":memory:"
            and not db.startswith("file:")
            and not Path(db).is_file()
        ):
            raise DataError(f"{self.config.file_label}: database file not found: {db}")
        try:
            with self.engine.connect():
                pass
        except SQLAlchemyError as err:
            raise DataError(
                f"{self.config.file_label}: cannot connect to the database ({_db_reason(err)})"
            ) from None

    def describe(self) -> list[DatasetInfo]:
        return [
            DatasetInfo(ds.name, self.row_count(ds.name), ds.id_column, ds.features, ds.label)
            for ds in self.config.datasets.values()
        ]

    def row_count(self, dataset: str) -> int:
        ds = self.dataset(dataset)
        if ds.name not in self._rows:
            with self.engine.connect() as conn:
                self._rows[ds.name] = int(
                    conn.execute(select(func.count()).select_from(self.source(ds))).scalar_one()
                )
        return self._rows[ds.name]

    # --- sources --------------------------------------------------------------------------------
    def dataset(self, name: str) -> DatasetConfig:
        try:
            return self.config.datasets[name]
        except KeyError:
            raise NotFound(f"dataset '{name[:80]}' is not declared at this silo") from None

    def source(self, ds: DatasetConfig) -> FromClause:
        """The dataset as a FROM clause with its declared columns (identifiers quoted).

        A query becomes ``(query) AS src``; columns are referenced by name, so the query may
        yield more columns, in any order.
        """
        names = [ds.id_column, *ds.features] + ([ds.label] if ds.label else [])
        cols: list[ColumnClause[Any]] = [column(n) for n in names]
        if ds.table is not None:
            return table(ds.table, *cols, schema=ds.schema)
        assert ds.query is not None
        return text(ds.query).columns(*cols).subquery("src")

    def query_columns(self, conn: Connection, ds: DatasetConfig) -> tuple[str, ...]:
        """Column names a query source yields (``LIMIT 0``: nothing is read)."""
        assert ds.query is not None
        result = conn.execute(text(f"SELECT * FROM ({ds.query}) AS src LIMIT 0"))
        cols: tuple[str, ...] = tuple(result.keys())
        result.close()
        return cols

    def id_kind(self, ds: DatasetConfig) -> IdKind:
        if ds.name not in self._kinds:
            with self.engine.connect() as conn:
                self._kinds[ds.name] = _Validator(self, conn, ds).id_kind()
        return self._kinds[ds.name]

    def _id_equals(
        self, ds: DatasetConfig, src: FromClause, other: ColumnElement[Any]
    ) -> ColumnElement[bool]:
        """``id = other`` (other is normalised text), in the form that can use an index."""
        col = src.c[ds.id_column]
        kind = self.id_kind(ds)
        if kind == "int":
            return col == cast(other, BigInteger)
        if kind == "text":
            return col == other
        return func.trim(cast(col, String)) == other

    # --- whole datasets (horizontal protocols) ---------------------------------------------------
    def load_dataset(
        self,
        dataset: str,
        columns: Sequence[str],
        *,
        with_label: bool,
        chunk_rows: int = settings.READ_CHUNK_ROWS,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Every row of ``dataset`` ordered by id: ``(X, y)`` (``y`` None unless asked).

        Horizontal protocols train on a silo's whole dataset; no alignment is involved. The
        columns must be allowed by policy, like every other read.
        """
        ds = self.dataset(dataset)
        self.config.policy.check_columns(dataset, list(columns))
        if with_label and ds.label is None:
            raise DataError(f"dataset '{ds.name}' has no label column")
        src = self.source(ds)
        names = list(columns) + ([ds.label] if with_label and ds.label else [])
        stmt = select(*[src.c[c] for c in names]).select_from(src).order_by(src.c[ds.id_column])
        parts = []
        with self.engine.connect() as conn:
            for part in conn.execution_options(yield_per=chunk_rows).execute(stmt).partitions():
                parts.append(_to_float(part, 0, ds.name).reshape(len(part), len(names)))
        table = np.concatenate(parts) if parts else np.empty((0, len(names)))
        if not with_label:
            return table, None
        return table[:, :-1], table[:, -1]

    # --- ids ------------------------------------------------------------------------------------
    def iter_ids(
        self,
        dataset: str,
        chunk_rows: int = settings.READ_CHUNK_ROWS,
    ) -> Iterator[list[str]]:
        """Every id of ``dataset``, normalised, in chunks of ``chunk_rows``.

        Ordered by the id column so a resumed job sees the same chunks (with an index on the id
        column the order costs nothing).
        """
        ds = self.dataset(dataset)
        src = self.source(ds)
        col = src.c[ds.id_column]
        stmt = select(col).select_from(src).order_by(col)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=chunk_rows).execute(stmt)
            for part in result.partitions():
                yield [normalise_id(r[0]) for r in part]

    #: the name the internals guide uses for the same thing.
    read_ids = iter_ids

    # --- aligned reads --------------------------------------------------------------------------
    def read_aligned(
        self,
        dataset: str,
        alignment_name: str,
        columns: Sequence[str],
        chunk_rows: int = settings.READ_CHUNK_ROWS,
        *,
        positions: tuple[int, int] | None = None,
    ) -> Iterator[np.ndarray]:
        """``columns`` of the aligned rows, in alignment order, as float64 chunks (NaN = NULL).

        The columns must be allowed by the silo's policy (checked here, so no step can forget).
        ``positions=(start, stop)`` reads only aligned rows ``[start, stop)`` (clipped).
        """
        self.config.policy.check_columns(dataset, list(columns))
        if not columns:
            raise DataError("read_aligned needs at least one column")
        yield from self._aligned(dataset, alignment_name, list(columns), chunk_rows, positions)

    def load_aligned(
        self,
        dataset: str,
        alignment_name: str,
        columns: Sequence[str],
        chunk_rows: int = settings.READ_CHUNK_ROWS,
        *,
        positions: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Aligned rows as one ``(rows, len(columns))`` float64 array, filled chunk by chunk.

        ``positions=(start, stop)`` reads only aligned rows ``[start, stop)`` (batch scoring).
        """
        self.config.policy.check_columns(dataset, list(columns))
        return self._fill(dataset, alignment_name, list(columns), chunk_rows, positions)

    def load_aligned_labels(
        self,
        dataset: str,
        alignment_name: str,
        chunk_rows: int = settings.READ_CHUNK_ROWS,
        *,
        positions: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """The label of every aligned row, in alignment order, as a 1-D float64 array of 0/1."""
        ds = self.dataset(dataset)
        if ds.label is None:
            raise DataError(f"dataset '{ds.name}' has no label column")
        return self._fill(dataset, alignment_name, [ds.label], chunk_rows, positions)[:, 0]

    def _fill(
        self,
        dataset: str,
        alignment_name: str,
        columns: list[str],
        chunk_rows: int,
        positions: tuple[int, int] | None,
    ) -> np.ndarray:
        """Preallocate and fill: peak memory is the result plus one chunk, not two copies."""
        start, stop = _window(self._alignment(dataset, alignment_name)[1], positions)
        out = np.empty((stop - start, len(columns)), dtype=np.float64)
        at = 0
        for chunk in self._aligned(dataset, alignment_name, columns, chunk_rows, positions):
            out[at : at + len(chunk)] = chunk
            at += len(chunk)
        return out

    def _alignment(self, dataset: str, alignment_name: str) -> tuple[int, int]:
        """``(id, rows)`` of the alignment, which must have been made for ``dataset``."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ALIGNMENTS.c.id, ALIGNMENTS.c.dataset, ALIGNMENTS.c.rows).where(
                    ALIGNMENTS.c.name == alignment_name
                )
            ).first()
        if row is None:
            raise NotFound(f"alignment '{alignment_name[:80]}' does not exist")
        if row.dataset != dataset:
            raise DataError(
                f"alignment '{alignment_name}' was made for dataset '{row.dataset}', "
                f"not '{dataset}'"
            )
        return int(row.id), int(row.rows)

    def _aligned(
        self,
        dataset: str,
        alignment_name: str,
        columns: list[str],
        chunk_rows: int,
        positions: tuple[int, int] | None,
    ) -> Iterator[np.ndarray]:
        """LEFT JOIN alignment -> data ordered by position: a vanished row shows as NULL id."""
        ds = self.dataset(dataset)
        aid, rows = self._alignment(dataset, alignment_name)
        start, stop = _window(rows, positions)
        src = self.source(ds)
        ar = ALIGNMENT_ROWS
        stmt = (
            select(ar.c.position, src.c[ds.id_column], *[src.c[c] for c in columns])
            .select_from(ar.outerjoin(src, self._id_equals(ds, src, ar.c.row_id)))
            .where(ar.c.alignment_id == aid)
            .order_by(ar.c.position)
        )
        if (start, stop) != (0, rows):
            stmt = stmt.where(ar.c.position >= start, ar.c.position < stop)
        expected = start
        with self.engine.connect() as conn:
            for part in conn.execution_options(yield_per=chunk_rows).execute(stmt).partitions():
                expected = _check_positions(part, expected, alignment_name, ds.name)
                yield _to_float(part, 2, ds.name)
        if expected != stop:
            raise DataError(
                f"alignment '{alignment_name}' has {stop - start} rows in range, "
                f"read {expected - start}"
            )

    # --- batch look-ups -------------------------------------------------------------------------
    def load_rows(self, dataset: str, ids: Sequence[str], columns: Sequence[str]) -> np.ndarray:
        """``columns`` of the rows with these (normalised) ids, in the order given.

        For scoring a batch. Every id must exist; the error gives only a count, never an id.
        """
        ds = self.dataset(dataset)
        self.config.policy.check_columns(dataset, list(columns))
        found: dict[str, tuple[Any, ...]] = {}
        step = settings.LOOKUP_IDS_PER_QUERY
        with self.engine.connect() as conn:
            for start in range(0, len(ids), step):
                found.update(self._lookup(conn, ds, ids[start : start + step], list(columns)))
        missing = sum(1 for i in ids if i not in found)
        if missing:
            raise DataError(f"{missing} of {len(ids)} requested ids are not in dataset '{ds.name}'")
        return _to_float([found[i] for i in ids], 0, ds.name).reshape(len(ids), len(columns))

    def _lookup(
        self, conn: Connection, ds: DatasetConfig, ids: Sequence[str], columns: list[str]
    ) -> dict[str, tuple[Any, ...]]:
        src = self.source(ds)
        col = src.c[ds.id_column]
        kind = self.id_kind(ds)
        cond: ColumnElement[bool]
        if kind == "int":
            cond = col.in_([int(i) for i in ids if _is_canonical_int(i)])
        elif kind == "text":
            cond = col.in_(list(ids))
        else:
            cond = func.trim(cast(col, String)).in_(list(ids))
        stmt = select(col, *[src.c[c] for c in columns]).select_from(src).where(cond)
        return {normalise_id(r[0]): tuple(r[1:]) for r in conn.execute(stmt)}


def _window(rows: int, positions: tuple[int, int] | None) -> tuple[int, int]:
    """``[start, stop)`` of an alignment of ``rows`` rows, clipped to it."""
    if positions is None:
        return 0, rows
    start = min(max(0, int(positions[0])), rows)
    return start, max(start, min(rows, int(positions[1])))


def _is_canonical_int(value: str) -> bool:
    try:
        return str(int(value)) == value
    except ValueError:
        return False


def _check_positions(part: Sequence[Any], expected: int, alignment: str, dataset: str) -> int:
    """Positions must run 0, 1, 2...; a NULL id means the row left the dataset since the PSI."""
    for row in part:
        if row[0] != expected:
            raise DataError(
                f"dataset '{dataset}' now has duplicate ids: alignment '{alignment}' "
                "cannot be read in order"
            )
        if row[1] is None:
            raise DataError(
                f"the row at position {expected} of alignment '{alignment}' is no "
                f"longer in dataset '{dataset}'"
            )
        expected += 1
    return expected


def _to_float(rows: Sequence[Sequence[Any]], skip: int, dataset: str) -> np.ndarray:
    try:
        return np.array([tuple(r[skip:]) for r in rows], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(
            f"dataset '{dataset}' now holds a non-numeric value; restart the silo to re-validate"
        ) from None


class _Validator:
    """The checks of one dataset, in the order a user fixes them; the first failure raises."""

    def __init__(self, data: SiloData, conn: Connection, ds: DatasetConfig) -> None:
        self.data, self.conn, self.ds = data, conn, ds
        self.sqlite = conn.dialect.name == "sqlite"
        self.src = data.source(ds)
        #: reflected column types of a table source (empty for a query source).
        self.types: dict[str, Any] = {}

    def fail(self, what: str, col: str | None = None) -> DataError:
        where = f" column '{col}'" if col else ""
        return DataError(
            f"{self.data.config.file_label}: dataset '{self.ds.name}' "
            f"{self.ds.source}{where} {what}"
        )

    def run(self) -> int:
        self.check_columns()
        rows = int(self.conn.execute(select(func.count()).select_from(self.src)).scalar_one())
        if rows == 0:
            raise self.fail("is empty")
        kind = self.check_ids()
        self.data._kinds[self.ds.name] = kind
        for name in self.ds.features:
            self.check_numeric(name)
        if self.ds.label:
            self.check_numeric(self.ds.label)
            self.check_binary(self.ds.label)
        return rows

    def check_columns(self) -> None:
        """The table exists and has every declared column (types kept for later checks)."""
        ds = self.ds
        if ds.table is not None:
            insp = inspect(self.conn)
            if not insp.has_table(ds.table, schema=ds.schema):
                raise self.fail("does not exist")
            reflected = insp.get_columns(ds.table, schema=ds.schema)
            self.types = {c["name"]: c["type"] for c in reflected}
            present = set(self.types)
        else:
            try:
                present = set(self.data.query_columns(self.conn, ds))
            except DBAPIError as err:
                raise self.fail(f"cannot run ({_db_reason(err)})") from None
        for col in (ds.id_column, *ds.features, *([ds.label] if ds.label else [])):
            if col not in present:
                near = [p for p in present if p.lower() == col.lower()]
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                raise self.fail(f"does not exist{hint}", col)

    # --- ids --------------------------------------------------------------------------------------
    def check_ids(self) -> IdKind:
        col = self.src.c[self.ds.id_column]
        key = func.trim(cast(col, String))
        blank = self.count(or_(col.is_(None), key == ""))
        if blank:
            raise self.fail(f"has {blank} NULL or empty ids", self.ds.id_column)
        kind = self.id_kind()
        self.check_duplicates(col if kind != "expr" else key)
        too_long = self.count(func.length(key) > settings.PSI_MAX_ID_BYTES)
        if too_long:
            raise self.fail(
                f"has {too_long} ids longer than {settings.PSI_MAX_ID_BYTES} characters",
                self.ds.id_column,
            )
        if kind != "int":
            self.check_normal_form(col)
        return kind

    def count(self, where: ColumnElement[bool]) -> int:
        stmt = select(func.count()).select_from(self.src).where(where)
        return int(self.conn.execute(stmt).scalar_one())

    def id_kind(self) -> IdKind:
        """Integer or text ids (never both); whether text ids need trimming to compare."""
        col = self.src.c[self.ds.id_column]
        if self.sqlite:
            return self.sqlite_id_kind(col)
        ctype = self.types.get(self.ds.id_column)
        if ctype is None:
            sample = self.conn.execute(select(col).select_from(self.src).limit(1)).scalar()
            ctype = {
                int: sqltypes.Integer(),
                str: sqltypes.String(),
                uuid.UUID: sqltypes.Uuid(),
            }.get(type(sample), sqltypes.NullType())
        if isinstance(ctype, sqltypes.Integer):
            return "int"
        if isinstance(ctype, sqltypes.Uuid):
            return "expr"
        if isinstance(ctype, sqltypes.String):
            return self.text_kind(col)
        raise self.fail(f"must hold integer or text ids (type {ctype})", self.ds.id_column)

    def sqlite_id_kind(self, col: ColumnElement[Any]) -> IdKind:
        """SQLite is dynamically typed: look at the storage class of every id."""
        stmt = (
            select(func.typeof(col), func.count())
            .select_from(self.src)
            .where(col.is_not(None))
            .group_by(func.typeof(col))
        )
        found = {str(t): int(n) for t, n in self.conn.execute(stmt)}
        if len(found) > 1:
            mix = ", ".join(f"{t}: {n}" for t, n in sorted(found.items()))
            raise self.fail(f"has ids of mixed type ({mix})", self.ds.id_column)
        storage = next(iter(found), "text")
        if storage == "integer":
            return "int"
        if storage != "text":
            raise self.fail(f"must hold integer or text ids (found {storage})", self.ds.id_column)
        return self.text_kind(col)

    def text_kind(self, col: ColumnElement[Any]) -> IdKind:
        padded = self.count(col != func.trim(col))
        return "expr" if padded else "text"

    def check_duplicates(self, key: ColumnElement[Any]) -> None:
        stmt = (
            select(key, func.count())
            .select_from(self.src)
            .group_by(key)
            .having(func.count() > 1)
            .limit(1)
        )
        dup = self.conn.execute(stmt).first()
        if dup is not None:
            raise self.fail(f"has duplicate id {_show(dup[0])} ({dup[1]} rows)", self.ds.id_column)

    def check_normal_form(self, col: ColumnElement[Any]) -> None:
        """Ids that are not printable ASCII must look the same to Python and to SQL."""
        if self.sqlite:
            odd = col.op("GLOB")("*[^ -~]*")
        elif self.conn.dialect.name == "postgresql":
            odd = cast(col, String).op("~")("[^ -~]")
        else:
            return
        stmt = select(col).select_from(self.src).where(odd)
        result = self.conn.execution_options(yield_per=settings.READ_CHUNK_ROWS).execute(stmt)
        for (value,) in result:
            raw = str(value)
            if normalise_id(raw) != raw.strip(" "):
                raise self.fail(
                    f"has id {_show(raw)} that is not Unicode NFC or is padded with "
                    "tabs/newlines; store it normalised",
                    self.ds.id_column,
                )
            if len(raw.strip().encode("utf-8")) > settings.PSI_MAX_ID_BYTES:
                raise self.fail(
                    f"has an id longer than {settings.PSI_MAX_ID_BYTES} bytes", self.ds.id_column
                )

    # --- features and label -----------------------------------------------------------------------
    def check_numeric(self, name: str) -> None:
        """Declared type (when reflected) and stored values (exact on SQLite, sampled elsewhere)."""
        col = self.src.c[name]
        ctype = self.types.get(name)
        if (
            ctype is not None
            and not isinstance(ctype, sqltypes.NullType)
            and not _numeric_type(ctype)
        ):
            sample = self.conn.execute(
                select(col).select_from(self.src).where(col.is_not(None)).limit(1)
            ).scalar()
            shown = "" if sample is None else f", value {_show(sample)}"
            raise self.fail(f"is not numeric (type {ctype}{shown})", name)
        if self.sqlite:
            stmt = (
                select(col)
                .select_from(self.src)
                .where(col.is_not(None), func.typeof(col).not_in(["integer", "real"]))
                .limit(1)
            )
            bad = self.conn.execute(stmt).first()
            if bad is not None:
                raise self.fail(f"is not numeric (value {_show(bad[0])})", name)
            return
        if ctype is not None and _numeric_type(ctype):
            return  # a typed column of a typed database cannot hold anything else
        stmt = (
            select(col)
            .select_from(self.src)
            .where(col.is_not(None))
            .limit(settings.VALIDATE_SAMPLE_ROWS)
        )
        for value in self.conn.execute(stmt).scalars():
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                raise self.fail(f"is not numeric (value {_show(value)})", name)

    def check_binary(self, name: str) -> None:
        col = self.src.c[name]
        stmt = (
            select(col).select_from(self.src).where(or_(col.is_(None), col.not_in([0, 1]))).limit(1)
        )
        bad = self.conn.execute(stmt).first()
        if bad is not None:
            if bad[0] is None:
                raise self.fail("has NULL labels", name)
            raise self.fail(f"is not binary 0/1 (value {_show(bad[0])})", name)


@dataclass(frozen=True)
class OpenedSilo:
    data: SiloData
    store: SiloStore
    ledger: Ledger
    rows: dict[str, int]


def open_silo(config: SiloConfig, *, engine: Engine | None = None) -> OpenedSilo:
    """Validate the datasets, then (only then) create the silo's own tables.

    The order is the point: a wrong config or table fails here having written nothing.
    """
    engine = engine if engine is not None else make_engine(config.database_url)
    data = SiloData(engine, config)
    rows = data.validate()
    store = SiloStore(engine, party=config.party)
    store.create_tables()
    return OpenedSilo(data=data, store=store, ledger=store.ledger, rows=rows)
