"""Protocol messages as plain data, and their one byte encoding.

A :class:`Message` is what algorithms exchange: a ``kind``, JSON ``meta``, numpy ``arrays`` and raw
``blobs``. :func:`encode` / :func:`decode` are the only way it becomes bytes, and the decoder is the
only parser of untrusted bytes in fedsilo: it accepts numeric and fixed-width byte dtypes only,
checks every length against the frame, and never evaluates anything (no pickle, no object dtype).

Layout::

    b"FSM1" | u32 header length | header (UTF-8 JSON) | payload bytes of arrays, then blobs

The header lists each array as ``[name, dtype, shape]`` and each blob as ``[name, length]``.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import gmpy2
import numpy as np

from fedsilo import settings
from fedsilo.errors import ProtocolError

__all__ = [
    "Message",
    "check_strings",
    "decode",
    "encode",
    "pack_uints",
    "parse_json",
    "unpack_uints",
]

_MAGIC = b"FSM1"
_HEADER_LEN = struct.Struct(">I")
_MAX_HEADER_BYTES = 1 << 20
_ALLOWED_KINDS = {"b", "i", "u", "f", "S"}  # bool, ints, uints, floats, fixed-width bytes


@dataclass
class Message:
    """One protocol message; see the module docstring for what may go in it."""

    kind: str
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)

    def array(self, name: str) -> np.ndarray:
        """The array ``name``, or a ProtocolError naming what is missing."""
        try:
            return self.arrays[name]
        except KeyError:
            raise ProtocolError(f"message '{self.kind}' lacks array '{name}'") from None

    def blob(self, name: str) -> bytes:
        try:
            return self.blobs[name]
        except KeyError:
            raise ProtocolError(f"message '{self.kind}' lacks blob '{name}'") from None

    def expect(self, kind: str) -> Message:
        """Return self if it is of ``kind``; out-of-order messages are refused here."""
        if self.kind != kind:
            raise ProtocolError(f"expected message '{kind}', got '{self.kind}'")
        return self


def _check_dtype(name: str, arr: np.ndarray) -> np.dtype:
    if arr.dtype.kind not in _ALLOWED_KINDS or arr.dtype.hasobject:
        raise ProtocolError(f"array '{name}' has unsupported dtype {arr.dtype}")
    return arr.dtype


def encode(msg: Message) -> bytes:
    """Serialise ``msg``; arrays are written little-endian, C order."""
    arrays = []
    payload: list[bytes] = []
    for name, arr in msg.arrays.items():
        dtype = _check_dtype(name, np.asarray(arr))
        wire_dtype = dtype.newbyteorder("<") if dtype.kind in "iuf" else dtype
        data = np.ascontiguousarray(arr, dtype=wire_dtype)
        arrays.append([name, data.dtype.str, list(data.shape)])
        payload.append(data.tobytes())
    blobs = []
    for name, blob in msg.blobs.items():
        blobs.append([name, len(blob)])
        payload.append(bytes(blob))
    header = json.dumps(
        {"kind": msg.kind, "meta": msg.meta, "arrays": arrays, "blobs": blobs},
        separators=(",", ":"),
        allow_nan=False,
    ).encode()
    return b"".join([_MAGIC, _HEADER_LEN.pack(len(header)), header, *payload])


def _parse_header(data: bytes | memoryview) -> tuple[dict[str, Any], int]:
    if len(data) < 8 or bytes(data[:4]) != _MAGIC:
        raise ProtocolError("message does not start with the fedsilo magic")
    (hlen,) = _HEADER_LEN.unpack(bytes(data[4:8]))
    if hlen > _MAX_HEADER_BYTES or 8 + hlen > len(data):
        raise ProtocolError("message header length is out of range")
    header = parse_json(bytes(data[8 : 8 + hlen]), "message header", allow_nul=True)
    if not isinstance(header, dict) or not isinstance(header.get("kind"), str):
        raise ProtocolError("message header lacks a kind")
    if not isinstance(header.get("meta", {}), dict):
        raise ProtocolError("message meta is not an object")
    return header, 8 + hlen


def parse_json(raw: bytes | str, what: str, *, allow_nul: bool = False) -> Any:
    """Strict JSON from a peer; a ProtocolError for what we could not echo back or store.

    ``json.loads`` alone accepts ``NaN``/``Infinity`` (which our encoder refuses, so echoing them
    would crash later), recurses once per nesting level (a deep ``[[[...`` raises
    RecursionError), and passes lone ``\\ud800`` escapes that no database driver can encode
    and ``\\u0000``, which PostgreSQL refuses in text. All are refused here, where the bytes
    come in; ``allow_nul`` keeps NUL for the message codec, whose round trip must be exact.
    """
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"{what} is not valid JSON: {str(exc)[:80]}") from None
    check_strings(value, what, allow_nul=allow_nul)
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_strings(value: Any, what: str, *, allow_nul: bool = False) -> None:
    """Refuse lone surrogates, and NUL unless ``allow_nul``, in any string (keys included).

    Iterative, so a deeply nested (but parseable) value cannot exhaust the stack here.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if not allow_nul and "\x00" in item:
                raise ProtocolError(f"{what} has a NUL character in a string")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ProtocolError(f"{what} has a lone surrogate in a string") from None


def _array_spec(spec: Any) -> tuple[str, np.dtype, tuple[int, ...]]:
    try:
        name, dtype_str, shape = spec
        dtype = np.dtype(str(dtype_str))
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"bad array descriptor {spec!r:.80}: {exc}") from None
    _check_dtype(str(name), np.empty(0, dtype=dtype))
    # dimensions must be real JSON integers (no floats, bools or strings) and the item size
    # non-zero (``|S0``), so the byte count below is exact Python arithmetic, never a wrap-around
    if (
        not isinstance(shape, list)
        or len(shape) > 8
        or dtype.itemsize == 0
        or any(type(d) is not int or d < 0 for d in shape)
    ):
        raise ProtocolError(f"array '{str(name)[:40]}' has a bad shape or dtype")
    return str(name), dtype, tuple(shape)


def _blob_spec(spec: Any) -> tuple[str, int]:
    if (
        not isinstance(spec, list)
        or len(spec) != 2
        or not isinstance(spec[0], str)
        or type(spec[1]) is not int
        or spec[1] < 0
    ):
        raise ProtocolError(f"bad blob descriptor {spec!r:.80}")
    return spec[0], spec[1]


def decode(data: bytes | memoryview) -> Message:
    """Parse bytes from a peer; any inconsistency is a ProtocolError, never a crash."""
    if len(data) > settings.MAX_LOGICAL_MESSAGE_BYTES:
        raise ProtocolError("message exceeds the logical size limit")
    header, pos = _parse_header(data)
    view = memoryview(data)
    msg = Message(kind=header["kind"], meta=header.get("meta", {}))
    for spec in _list(header, "arrays"):
        name, dtype, dims = _array_spec(spec)
        nbytes = math.prod(dims) * dtype.itemsize
        if pos + nbytes > len(data):
            raise ProtocolError(f"array '{name}' runs past the end of the message")
        msg.arrays[name] = np.frombuffer(view[pos : pos + nbytes], dtype=dtype).reshape(dims).copy()
        pos += nbytes
    for spec in _list(header, "blobs"):
        name, length = _blob_spec(spec)
        if pos + length > len(data):
            raise ProtocolError(f"blob '{name}' runs past the end of the message")
        msg.blobs[name] = bytes(view[pos : pos + length])
        pos += length
    if pos != len(data):
        raise ProtocolError("message has trailing bytes")
    return msg


def _list(header: dict[str, Any], key: str) -> list[Any]:
    value = header.get(key, [])
    if not isinstance(value, list):
        raise ProtocolError(f"message header field '{key}' is not a list")
    return value


def pack_uints(values: Any, width: int) -> bytes:
    """Big non-negative integers (Paillier ciphertexts) as fixed-width big-endian bytes."""
    out = bytearray(len(values) * width)
    for i, v in enumerate(values):
        # to_binary is little-endian after a 2-byte tag
        raw = gmpy2.to_binary(gmpy2.mpz(v))[2:][::-1]
        if len(raw) > width or v < 0:
            raise ProtocolError(f"integer does not fit in {width} bytes")
        out[(i + 1) * width - len(raw) : (i + 1) * width] = raw
    return bytes(out)


def unpack_uints(data: bytes, width: int) -> list[Any]:
    """Inverse of :func:`pack_uints`; returns gmpy2 ``mpz`` values."""
    if width <= 0 or len(data) % width:
        raise ProtocolError(f"integer array length {len(data)} is not a multiple of {width}")
    return [
        gmpy2.from_binary(b"\x01\x01" + data[i : i + width][::-1])
        for i in range(0, len(data), width)
    ]
