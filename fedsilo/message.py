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
import struct
from dataclasses import dataclass, field
from typing import Any

import gmpy2
import numpy as np

from fedsilo import settings
from fedsilo.errors import ProtocolError

__all__ = ["Message", "decode", "encode", "pack_uints", "unpack_uints"]

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
        data = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<") if dtype.kind in "iuf" else dtype)
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
    try:
        header = json.loads(bytes(data[8 : 8 + hlen]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"message header is not valid JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("kind"), str):
        raise ProtocolError("message header lacks a kind")
    if not isinstance(header.get("meta", {}), dict):
        raise ProtocolError("message meta is not an object")
    return header, 8 + hlen


def _array_spec(spec: Any) -> tuple[str, np.dtype, tuple[int, ...]]:
    try:
        name, dtype_str, shape = spec
        dtype = np.dtype(str(dtype_str))
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"bad array descriptor {spec!r:.80}: {exc}") from None
    _check_dtype(str(name), np.empty(0, dtype=dtype))
    if any(d < 0 for d in dims) or len(dims) > 8:
        raise ProtocolError(f"array '{name}' has a bad shape {dims}")
    return str(name), dtype, dims


def decode(data: bytes | memoryview) -> Message:
    """Parse bytes from a peer; any inconsistency is a ProtocolError, never a crash."""
    if len(data) > settings.MAX_LOGICAL_MESSAGE_BYTES:
        raise ProtocolError("message exceeds the logical size limit")
    header, pos = _parse_header(data)
    view = memoryview(data)
    msg = Message(kind=header["kind"], meta=header.get("meta", {}))
    for spec in _list(header, "arrays"):
        name, dtype, dims = _array_spec(spec)
        nbytes = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
        if pos + nbytes > len(data):
            raise ProtocolError(f"array '{name}' runs past the end of the message")
        msg.arrays[name] = np.frombuffer(view[pos : pos + nbytes], dtype=dtype).reshape(dims).copy()
        pos += nbytes
    for spec in _list(header, "blobs"):
        try:
            name, length = str(spec[0]), int(spec[1])
        except (TypeError, ValueError, IndexError):
            raise ProtocolError(f"bad blob descriptor {spec!r:.80}") from None
        if length < 0 or pos + length > len(data):
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
        raw = gmpy2.to_binary(gmpy2.mpz(v))[2:][::-1]  # to_binary is little-endian after a 2-byte tag
        if len(raw) > width or v < 0:
            raise ProtocolError(f"integer does not fit in {width} bytes")
        out[(i + 1) * width - len(raw) : (i + 1) * width] = raw
    return bytes(out)


def unpack_uints(data: bytes, width: int) -> list[Any]:
    """Inverse of :func:`pack_uints`; returns gmpy2 ``mpz`` values."""
    if width <= 0 or len(data) % width:
        raise ProtocolError(f"integer array length {len(data)} is not a multiple of {width}")
    return [gmpy2.from_binary(b"\x01\x01" + data[i : i + width][::-1]) for i in range(0, len(data), width)]
