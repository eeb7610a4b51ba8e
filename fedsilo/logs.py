"""Logging for operators: one setup for every command, text or JSON lines, and event records.

``configure(level, fmt)`` is called once by the CLI (``--log-level``, ``--log-format``). An
*event* is a log record with a fixed name and a few typed fields (:func:`event`): in text format
it reads ``silo bank: job opened: job=t-1a2b role=active``, in JSON format it is one object per
line with ``event`` and the fields as keys, so a log shipper needs no parsing.

What a silo logs is checked like what it sends: a job id, a method, a step index, a duration,
byte counts, a caller's certificate name, a refusal's one-line reason. Never an id, a feature
value or a key (``docs/operations.md``; tests search a silo's log for the job's ids).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonFormatter",
    "clean",
    "configure",
    "event",
    "where_raised",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: longest text field a log line carries (job ids, reasons): a hostile caller's long string
#: must not flood the log
MAX_FIELD_CHARS = 300


def clean(value: object, limit: int = MAX_FIELD_CHARS) -> str:
    """``value`` as one printable line of at most ``limit`` characters (control characters
    escaped): what a caller sent cannot forge or split log lines."""
    text = str(value)
    if not text.isprintable():
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``message``, and for events
    ``event`` with its fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fedsilo_event", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str = "warning", fmt: str = "text") -> None:
    """Send fedsilo's (and everyone's) records to stderr at ``level`` in ``fmt``.

    gRPC's C core writes its own timestamped warnings to stderr (a refused connection, once per
    attempt); below ``debug`` they are silenced, because the one-line error says it already.
    """
    if level != "debug":
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log the event ``name`` with ``fields`` (already cleaned, or numbers): ``name: k=v ...``
    in text, ``{"event": name, k: v, ...}`` in JSON."""
    if not logger.isEnabledFor(level):
        return
    text = " ".join(f"{k}={v}" for k, v in fields.items())
    logger.log(level, "%s: %s", name, text, extra={"fedsilo_event": {"event": name, **fields}})


def where_raised(exc: BaseException) -> str:
    """Where ``exc`` was raised (file, line, function of each frame) and its type, without its
    message: an exception's text may quote data (a ``KeyError`` on a raw id, a database error
    with the row's values), and a silo's log never holds data."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = [f'  File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames]
    return "\n".join(["Traceback (message withheld):", *where, type(exc).__name__])
