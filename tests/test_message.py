"""The message codec: exact round trips, and hostile bytes only ever raise ProtocolError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsilo.errors import ProtocolError
from fedsilo.message import Message, decode, encode, pack_uints, unpack_uints
from fedsilo.wire import Envelope, StepPayload, pack_step, unpack_step

dtypes = st.sampled_from(["<f8", "<f4", "<i8", "<u4", "|u1", "|S16", "?"])


@st.composite
def messages(draw: st.DrawFn) -> Message:
    arrays = {}
    for name in draw(st.lists(st.text(min_size=1, max_size=8), max_size=3, unique=True)):
        dtype = np.dtype(draw(dtypes))
        n = draw(st.integers(0, 20))
        raw = draw(st.binary(min_size=n * dtype.itemsize, max_size=n * dtype.itemsize))
        arrays[name] = np.frombuffer(raw, dtype=dtype).copy()
    blobs = draw(st.dictionaries(st.text(max_size=8), st.binary(max_size=64), max_size=3))
    meta = draw(
        st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4)
    )
    return Message(draw(st.text(max_size=20)), meta, arrays, blobs)


@given(messages())
def test_round_trip(msg: Message) -> None:
    back = decode(encode(msg))
    assert back.kind == msg.kind and back.meta == msg.meta and back.blobs == msg.blobs
    assert set(back.arrays) == set(msg.arrays)
    for name, arr in msg.arrays.items():
        assert back.arrays[name].dtype == arr.dtype
        assert back.arrays[name].tobytes() == arr.tobytes()


@settings(max_examples=400)
@given(messages(), st.data())
def test_mutated_bytes_never_crash(msg: Message, data: st.DataObject) -> None:
    raw = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            decode(candidate)
        except ProtocolError:
            pass


@given(st.binary(max_size=300))
def test_random_bytes_never_crash(raw: bytes) -> None:
    try:
        decode(raw)
    except ProtocolError:
        pass


def test_object_arrays_are_refused() -> None:
    with pytest.raises(ProtocolError, match="unsupported dtype"):
        encode(Message("x", arrays={"a": np.array([object()], dtype=object)}))
    header = b'{"kind":"x","meta":{},"arrays":[["a","|O",[1]]],"blobs":[]}'
    raw = b"FSM1" + len(header).to_bytes(4, "big") + header + b"\0" * 8
    with pytest.raises(ProtocolError, match="unsupported dtype"):
        decode(raw)


def test_length_lies_are_refused() -> None:
    header = b'{"kind":"x","meta":{},"arrays":[["a","<f8",[1000]]],"blobs":[]}'
    raw = b"FSM1" + len(header).to_bytes(4, "big") + header + b"\0" * 8
    with pytest.raises(ProtocolError, match="runs past the end"):
        decode(raw)


@given(st.lists(st.integers(0, 2**2048 - 1), max_size=20))
def test_uint_packing_round_trip(values: list[int]) -> None:
    assert [int(v) for v in unpack_uints(pack_uints(values, 256), 256)] == values


def test_uint_packing_refuses_overflow() -> None:
    with pytest.raises(ProtocolError):
        pack_uints([2**64], 8)
    with pytest.raises(ProtocolError):
        unpack_uints(b"\0" * 9, 8)


def test_step_payload_round_trip() -> None:
    req = StepPayload(meta={"tree": 3}, envelopes=[Envelope("bank", "bureau", b"sealed")])
    back = unpack_step(pack_step(req, request=True), request=True, party="bureau")
    assert back.meta == {"tree": 3} and back.envelopes == req.envelopes
    rep = StepPayload(meta={}, envelopes=[Envelope("bureau", "bank", b"x")])
    back = unpack_step(pack_step(rep, request=False), request=False, party="bureau")
    assert back.outbox_for("bank") == rep.envelopes
