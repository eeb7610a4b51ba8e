"""Load a CSV file into a table of a silo's database (``fedsilo silo load-csv``).

The file is read in two passes so memory stays bounded however large it is: the first infers
column types and checks every row (field count, empty or duplicate ids), the second inserts in
chunks. Nothing is written before the first pass has passed, and the second runs in one
transaction (table created, or replaced, and filled), so a refusal or a failure part way leaves
the database as it was.

**Id normalisation** (``normalize_ids``): two silos' ids match in PSI only if they are written
the same way. ``trim`` strips surrounding whitespace, ``lower`` / ``upper`` fold the case,
``nfc`` applies Unicode NFC; steps run in the order given, on the id column only, before the
duplicate check (so ``"Ab"`` and ``"ab "`` are duplicates under ``trim,lower``). Every silo of a
consortium loads with the same steps. An id column is an integer column only when every id is
the canonical text of an integer (``"007"`` stays text, so leading zeros survive).
"""

from __future__ import annotations

import csv
import gzip
import unicodedata
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    MetaData,
    Table,
    Text,
    insert,
    inspect,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import TypeEngine

from fedsilo import settings
from fedsilo.errors import ConfigError, DataError
from fedsilo.silo_node.config import SiloConfig
from fedsilo.silo_node.data import _is_canonical_int, make_engine

__all__ = [
    "ID_NORMALISATIONS",
    "load_csv_into_dataset",
    "load_csv_into_table",
    "parse_id_normalisation",
]

#: the id normalisation steps ``--normalize-ids`` accepts, in the order they are listed.
ID_NORMALISATIONS: dict[str, Callable[[str], str]] = {
    "trim": str.strip,
    "lower": str.lower,
    "upper": str.upper,
    "nfc": lambda s: unicodedata.normalize("NFC", s),
}
_TYPES: dict[str, type[TypeEngine[Any]]] = {"int": BigInteger, "float": Float, "text": Text}


def parse_id_normalisation(text: str | None) -> tuple[str, ...]:
    """``"trim,lower"`` -> ``("trim", "lower")``; an unknown step is one line."""
    if not text:
        return ()
    steps = tuple(s.strip() for s in text.split(",") if s.strip())
    for step in steps:
        if step not in ID_NORMALISATIONS:
            known = ", ".join(ID_NORMALISATIONS)
            raise ConfigError(f"--normalize-ids: unknown step '{step}' (known: {known})")
    if "lower" in steps and "upper" in steps:
        raise ConfigError("--normalize-ids: 'lower' and 'upper' exclude each other")
    return steps


@contextmanager
def _open_csv(path: Path) -> Iterator[TextIO]:
    """A text handle on a plain or gzip-compressed CSV."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
                yield fh
        else:
            with path.open(encoding="utf-8", newline="") as fh:
                yield fh
    except FileNotFoundError:
        raise DataError(f"{path.name}: file not found ({path})") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path.name}: cannot read as a UTF-8 CSV ({err})") from None


def _kind(value: str, current: str) -> str:
    """Widen a column's inferred kind (int < float < text) to admit ``value``."""
    if value == "" or current == "text":
        return current
    try:
        int(value)
        return current
    except ValueError:
        pass
    try:
        float(value)
        return "float"
    except ValueError:
        return "text"


def _convert(value: str, kind: str) -> Any:
    if value == "":
        return None
    return int(value) if kind == "int" else float(value) if kind == "float" else value


def _show(value: str) -> str:
    return repr(value) if len(value) <= 40 else repr(value[:37]) + "..."


@dataclass
class _Scan:
    """What the first pass learns: header, column kinds, row count, one hash per id."""

    header: list[str]
    kinds: list[str]
    rows: int
    id_hashes: array[int]


class _Reader:
    """Rows of the CSV with their line numbers, ids normalised, field counts checked."""

    def __init__(self, path: Path, id_column: str, steps: Sequence[str]) -> None:
        self.path, self.id_column = path, id_column
        self.steps = [ID_NORMALISATIONS[s] for s in steps]
        self.normalised = bool(steps)

    def fail(self, line: int, what: str) -> DataError:
        return DataError(f"{self.path.name}: line {line}: {what}")

    def rows(self, fh: TextIO) -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise DataError(f"{self.path.name}: empty CSV file (no header row)")
        if self.id_column not in header:
            shown = ", ".join(header[:10])
            raise DataError(f"{self.path.name}: no column '{self.id_column}' (has {shown})")
        at = header.index(self.id_column)
        yield 1, header
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise self.fail(line, f"has {len(row)} fields, the header has {len(header)}")
            value = row[at]
            for step in self.steps:
                value = step(value)
            if value == "" or value.strip() == "":
                raise self.fail(line, f"column '{self.id_column}' is empty (a NULL id)")
            if len(value.encode("utf-8")) > settings.PSI_MAX_ID_BYTES:
                raise self.fail(
                    line,
                    f"column '{self.id_column}' holds an id longer than "
                    f"{settings.PSI_MAX_ID_BYTES} bytes",
                )
            row[at] = value
            yield line, row


def _scan(reader: _Reader) -> _Scan:
    hashes: array[int] = array("q")
    with _open_csv(reader.path) as fh:
        rows = reader.rows(fh)
        _, header = next(rows)
        at = header.index(reader.id_column)
        kinds = ["int"] * len(header)
        count = 0
        for _, row in rows:
            kinds = [_kind(v, k) for v, k in zip(row, kinds, strict=True)]
            if kinds[at] == "int" and not _is_canonical_int(row[at]):
                kinds[at] = "text"
            hashes.append(hash(row[at]))
            count += 1
    if kinds[at] == "float":
        kinds[at] = "text"
    return _Scan(header=header, kinds=kinds, rows=count, id_hashes=hashes)


def _check_duplicates(reader: _Reader, scan: _Scan) -> None:
    """Refuse the first duplicate id, naming both lines (hash collisions are checked exactly)."""
    hashes = np.frombuffer(scan.id_hashes, dtype=np.int64)
    order = np.argsort(hashes, kind="stable")
    ranked = hashes[order]
    same = np.flatnonzero(ranked[1:] == ranked[:-1])
    if same.size == 0:
        return
    suspects = {int(order[i]) for i in same} | {int(order[i + 1]) for i in same}
    seen: dict[str, int] = {}
    with _open_csv(reader.path) as fh:
        rows = reader.rows(fh)
        _, header = next(rows)
        at = header.index(reader.id_column)
        for index, (line, row) in enumerate(rows):
            if index not in suspects:
                continue
            first = seen.setdefault(row[at], line)
            if first != line:
                after = " after normalisation" if reader.normalised else ""
                raise DataError(
                    f"{reader.path.name}: lines {first} and {line}: column "
                    f"'{reader.id_column}' holds the same id{after} ({_show(row[at])})"
                )


def _exists(engine: Engine, table: str, schema: str | None) -> bool:
    return bool(inspect(engine).has_table(table, schema=schema))


def _fill(conn: Connection, target: Table, reader: _Reader, scan: _Scan, chunk_rows: int) -> int:
    loaded = 0
    with _open_csv(reader.path) as fh:
        rows = reader.rows(fh)
        next(rows)
        while True:
            chunk = [
                {
                    name: _convert(v, k)
                    for name, v, k in zip(scan.header, row, scan.kinds, strict=True)
                }
                for _, row in islice(rows, chunk_rows)
            ]
            if not chunk:
                return loaded
            conn.execute(insert(target), chunk)
            loaded += len(chunk)


def load_csv_into_table(
    engine: Engine,
    table: str,
    csv_path: str | Path,
    id_column: str,
    *,
    schema: str | None = None,
    primary_key: bool = True,
    replace: bool = False,
    normalize_ids: Sequence[str] = (),
    chunk_rows: int = settings.WRITE_CHUNK_ROWS,
) -> int:
    """Create ``table`` from a (possibly ``.gz``) CSV with a header row; return rows loaded.

    Column types are inferred (integer, float or text; empty cells are NULL). Refused with one
    line (:class:`DataError`), before anything is written: a row with the wrong number of
    fields, an empty id, a duplicate id (unless ``primary_key=False``), an existing table
    (unless ``replace``). ``normalize_ids`` lists steps of :data:`ID_NORMALISATIONS`.
    """
    path = Path(csv_path)
    name = f"{schema}.{table}" if schema else table
    reader = _Reader(path, id_column, normalize_ids)
    if not replace and _exists(engine, table, schema):
        raise DataError(
            f"{path.name}: table '{name}' already exists "
            "(--replace replaces it, --if-missing keeps it)"
        )
    scan = _scan(reader)
    if primary_key:
        _check_duplicates(reader, scan)
    columns = [
        Column(col, _TYPES[kind], primary_key=primary_key and col == id_column)
        for col, kind in zip(scan.header, scan.kinds, strict=True)
    ]
    target = Table(table, MetaData(), *columns, schema=schema)
    try:
        with engine.begin() as conn:
            if inspect(conn).has_table(table, schema=schema):
                if not replace:
                    raise DataError(f"{path.name}: table '{name}' already exists (--replace)")
                Table(table, MetaData(), schema=schema).drop(conn)
            target.create(conn)
            return _fill(conn, target, reader, scan, chunk_rows)
    except SQLAlchemyError as err:
        orig = getattr(err, "orig", None) or err
        reason = str(orig).strip().splitlines()[0][:200] if str(orig).strip() else "error"
        raise DataError(f"{path.name}: cannot load into table '{name}' ({reason})") from None


def load_csv_into_dataset(
    config: SiloConfig,
    csv_path: str | Path,
    dataset: str | None = None,
    *,
    replace: bool = False,
    if_missing: bool = False,
    normalize_ids: Sequence[str] = (),
) -> int | None:
    """Load a CSV into the table of ``dataset`` of a silo (default: its first dataset); rows
    loaded, or None when ``if_missing`` and the table exists."""
    name = dataset or next(iter(config.datasets), None)
    if name is None or name not in config.datasets:
        raise ConfigError(f"{config.file_label}: no dataset '{name}'")
    ds = config.datasets[name]
    if ds.table is None:
        raise ConfigError(f"{config.file_label}: dataset '{name}' is a query, not a table")
    if replace and if_missing:
        raise ConfigError("--replace and --if-missing exclude each other")
    engine = make_engine(config.database_url)
    try:
        if if_missing and _exists(engine, ds.table, ds.schema):
            return None
        return load_csv_into_table(
            engine,
            ds.table,
            csv_path,
            ds.id_column,
            schema=ds.schema,
            replace=replace,
            normalize_ids=normalize_ids,
        )
    finally:
        engine.dispose()
