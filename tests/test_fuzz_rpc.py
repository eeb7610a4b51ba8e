"""Hostile input at every RPC of a live silo node (real gRPC on loopback, plaintext).

Hypothesis throws thousands of random and mutated messages at Describe, OpenJob, SetPeers, Step
and CloseJob. Every answer must be OK or a status that names the caller's mistake; never
INTERNAL or UNKNOWN (a server bug, or a hostile message crashing a handler), never UNAVAILABLE
(a dead server). After each batch the node must still answer health and run a valid step.

The Step fuzzing works against a real open session whose peer ``bureau`` is played by this
test (it holds bureau's per-job key), so mutated payloads reach the step functions with valid
and invalid seals alike. Every registered step is fuzzed; :data:`SEED_META` gives some of them
a meta that is valid up to the objects it names, so mutations start close to real calls (add
your protocol's there to get deeper coverage).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from bundled_data import data_file
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support import Consortium, SiloSpec

from fedsilo import settings as fs_settings
from fedsilo.crypto.sealing import JobKeys
from fedsilo.errors import ProtocolError
from fedsilo.message import Message, decode, encode
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.protos import fedsilo_pb2_grpc as pb_grpc
from fedsilo.silo_node.methods import method_names
from fedsilo.wire import Envelope, StepPayload, pack_step

pytestmark = pytest.mark.e2e

FEATURES = [f"x{i}" for i in range(10)]
SERVICE = "/fedsilo.v1.SiloService"
LIVE_JOB = "fuzz-live"
#: statuses that say "your request is wrong / not allowed / too big": what hostile input earns.
ALLOWED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
#: the spine's steps with a meta that would be valid if the named objects existed; fuzzing
#: starts from these and mutates them.


def framed(header: str, payload: bytes = b"\0" * 16) -> bytes:
    """A message with a hand-written header, as a hostile peer would build it."""
    raw = header.encode()
    return b"FSM1" + len(raw).to_bytes(4, "big") + raw + payload


#: message headers that once crashed the decoder (each was INTERNAL over the wire).
HOSTILE_MESSAGES = [
    framed('{"kind":"x","meta":{"a":' + "[" * 50_000 + "]" * 50_000 + "}}"),  # RecursionError
    framed('{"kind":"x","blobs":[{"a":1}]}'),  # KeyError
    framed('{"kind":"x","arrays":[["a","<f8",[Infinity]]]}'),  # OverflowError
    framed('{"kind":"x","arrays":[["a","<f8",[100000000000000000000000000000]]]}'),  # OverflowError
    framed('{"kind":"x","arrays":[["a","<f8",[4611686018427387904,4]]]}'),  # int64 wrap-around
    framed('{"kind":"x","arrays":[["a","|S0",[3]]]}'),  # zero item size
    framed('{"kind":"x","meta":{"a":NaN}}'),  # accepted, then un-encodable when echoed
    framed('{"kind":"\\ud800"}'),  # lone surrogate: no database driver can encode it
]
SEED_META: dict[str, dict[str, Any]] = {
    "job.echo": {},
    "split.draw": {"alignment": "fz", "test_fraction": 0.3, "valid_fraction": 0.1, "seed": 1},
    "split.apply": {},
    "predict.part": {"model_id": "m-v1", "alignment": "fz", "start": 0, "stop": 10},
    "score.plan": {"alignment": "fz", "table": "fz_scores", "version": "1", "chunk_rows": 50},
    "score.chunk": {
        "model_id": "m-v1",
        "alignment": "fz",
        "start": 0,
        "stop": 10,
        "table": "fz_scores",
        "version": "1",
    },
    "evaluate.chunk": {"model_id": "m-v1", "alignment": "fz", "start": 0, "stop": 10},
    "evaluate.finish": {"alignment": "fz", "train_alignment": "fz", "model_id": "m-v1"},
}
#: a well-formed message from bureau for the steps that expect one (mutated by the fuzzing).
VALID_INBOX: dict[str, Message] = {
    "split.apply": Message(
        "split.positions",
        meta={"alignment": "fz"},
        arrays={
            "train": np.arange(0, 120),
            "valid": np.arange(120, 150),
            "test": np.arange(150, 200),
        },
    ),
}
VALID_SPEC: dict[str, Any] = {
    "job_id": LIVE_JOB,
    "name": "fuzz",
    "parties": {
        "bank": {"dataset": "main", "role": "active"},
        "bureau": {"dataset": "main", "role": "passive"},
    },
    # one step of every kind the node's active role can take, so each method is authorised for
    # the step that lists it (STEP_OF) and the fuzzing gets deep into the step functions
    "steps": [
        {"kind": "noop"},
        {"kind": "psi", "alignment": "fz"},
        {"kind": "split", "alignment": "fz", "test_fraction": 0.3, "valid_fraction": 0.1},
        {"kind": "evaluate", "alignment": "fz", "model": "m-v1"},
        {
            "kind": "score",
            "alignment": "fz",
            "table": "fz_scores",
            "chunk_rows": 50,
            "model": "m-v1",
        },
        {"kind": "secureboost", "alignment": "fz"},
        {"kind": "lr", "alignment": "fz"},
    ],
}
#: the index of the VALID_SPEC step each protocol's methods run in
STEP_OF = {
    "job": 0,
    "psi": 1,
    "split": 2,
    "evaluate": 3,
    "predict": 3,
    "score": 4,
    "sgb": 5,
    "lr": 6,
}
ECHO = {"step": 0}


def fuzz(examples: int) -> settings:
    """Hypothesis settings for calls over the network: no per-example deadline, fixed seed."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


@dataclass
class Live:
    """The node under test, raw and typed ways to call it, and the peer this test plays."""

    channel: grpc.Channel
    stub: pb_grpc.SiloServiceStub
    bureau: JobKeys = field(default_factory=lambda: JobKeys(party="bureau", job_id=LIVE_JOB))
    bank_key: bytes = b""
    seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    last_seq: int = 0

    def next_seq(self) -> int:
        self.last_seq = next(self.seq)
        return self.last_seq


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    consortium = Consortium(root)
    consortium.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), FEATURES, label="y"))
    node = consortium.start("bank")
    ids = next(node.ctx.data.iter_ids("main", chunk_rows=200))
    node.ctx.store.save_alignment("fz", "setup", "main", ids)  # so split/score steps get far
    channel = grpc.insecure_channel(node.address)
    state = Live(channel=channel, stub=pb_grpc.SiloServiceStub(channel))
    open_live_session(state)
    yield state
    channel.close()
    consortium.stop_all()


def open_live_session(live: Live) -> None:
    """(Re)open the job this test's Step fuzzing targets, with bureau's key as the peer."""
    resp = live.stub.OpenJob(
        # a resume of the same spec: the one way to open an open job again
        pb.OpenJobRequest(job_id=LIVE_JOB, spec_json=json.dumps(VALID_SPEC), resume=True),
        timeout=10,
    )
    live.bank_key = resp.session_public_key
    live.stub.SetPeers(
        pb.SetPeersRequest(
            job_id=LIVE_JOB, session_public_keys={"bureau": live.bureau.public_bytes}
        ),
        timeout=10,
    )
    live.bureau.set_peers({"bank": live.bank_key})
    live.seq, live.last_seq = itertools.count(1), 0


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    """The status a call ends with (OK when it returns); streaming replies are drained."""
    try:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def assert_allowed(code: grpc.StatusCode, what: str, label: str = "") -> None:
    event(f"{label}{code.name}")  # --hypothesis-show-statistics: how far the inputs got
    assert code in ALLOWED, f"{what}: answered {code.name}"


def assert_healthy(live: Live) -> None:
    """The node still serves health and runs a valid step of the live job."""
    health = health_pb2_grpc.HealthStub(live.channel)
    resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    open_live_session(live)
    frames = step_frames(
        LIVE_JOB, "job.echo", live.next_seq(), pack_step(StepPayload(meta=ECHO), request=True)
    )
    replies = list(live.stub.Step(iter(frames), timeout=10))
    assert replies and all(f.HasField("chunk") for f in replies)


# --- strategies ----------------------------------------------------------------------------------

leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
#: texts that are hostile JSON rather than random: deep nesting, non-standard constants, NUL
#: and lone-surrogate escapes, wrong top-level types.
nasty_json = st.sampled_from(
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 5000 + "1" + "}" * 5000,
        '{"parties": NaN}',
        '{"parties": Infinity}',
        '{"parties": {"bank\\u0000": {}}}',
        '{"parties": {"\\ud800": {"role": "active", "dataset": "main"}}}',
        "null",
        "[]",
        '"text"',
        "1e999",
        "",
        "{",
        "\xff",
    ]
)
party_names = st.sampled_from(["bank", "bureau", "mallory", "", "bank\x00", "b" * 300]) | st.text(
    max_size=10
)


@st.composite
def mutated_json(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one node replaced by random JSON, or one key or item removed."""
    if draw(st.integers(0, 3)) == 0 or not isinstance(value, dict | list) or not value:
        return draw(json_values)
    if isinstance(value, dict):
        key = draw(st.sampled_from(sorted(value)))
        out = dict(value)
        if draw(st.booleans()):
            out[key] = draw(mutated_json(value[key]))
        else:
            del out[key]
        return out
    index = draw(st.integers(0, len(value) - 1))
    out_list = list(value)
    out_list[index] = draw(mutated_json(value[index]))
    return out_list


@st.composite
def mutated_bytes(draw: st.DrawFn, raw: bytes) -> bytes:
    """Flip, insert or cut bytes of ``raw``."""
    buf = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "cut"]))
        pos = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del buf[pos:]
    return bytes(buf)


spec_texts = st.one_of(
    st.just(json.dumps(VALID_SPEC)),
    mutated_json(VALID_SPEC).map(json.dumps),
    mutated_json(VALID_SPEC).map(json.dumps),
    json_values.map(json.dumps),
    st.builds(
        lambda s: s.decode("utf-8", "replace"), mutated_bytes(json.dumps(VALID_SPEC).encode())
    ),
    nasty_json,
    st.text(max_size=40),
)
job_ids = st.one_of(
    st.integers(0, 9).map(lambda i: f"fz-open-{i}"),
    st.text(max_size=20),
    st.sampled_from(["", "x" * 201, "a\x00b", "tab\tid"]),
)


@st.composite
def mutated_message(draw: st.DrawFn, msg: Message) -> Message:
    """``msg`` as is, or with its meta mutated, an array replaced by random values, or dropped."""
    out = Message(msg.kind, dict(msg.meta), dict(msg.arrays), dict(msg.blobs))
    what = draw(st.sampled_from(["as is", "meta", "array", "drop", "kind"]))
    name = draw(st.sampled_from(sorted(out.arrays)))
    if what == "meta":
        mutated = draw(mutated_json(out.meta))
        out.meta = mutated if isinstance(mutated, dict) else {}
    elif what == "array":
        dtype = np.dtype(draw(st.sampled_from(["<i8", "<f8", "|u1", "<i4", "|S3"])))
        raw = draw(st.binary(max_size=40).map(lambda b: b[: len(b) - len(b) % dtype.itemsize]))
        out.arrays[name] = np.frombuffer(raw, dtype=dtype)
    elif what == "drop":
        del out.arrays[name]
    elif what == "kind":
        out.kind = draw(st.text(max_size=12))
    return out


def random_message(draw: st.DrawFn) -> Message:
    arrays = {
        draw(st.text(max_size=4)): np.frombuffer(draw(st.binary(max_size=64)), dtype=np.uint8)
    }
    blobs = draw(st.dictionaries(st.text(max_size=4), st.binary(max_size=32), max_size=2))
    kind = draw(st.sampled_from(["split.positions", "predict.part", "x"]) | st.text(max_size=10))
    return Message(
        kind,
        meta=draw(st.dictionaries(st.text(max_size=6), leaves, max_size=3)),
        arrays=arrays,
        blobs=blobs,
    )


@st.composite
def envelopes(draw: st.DrawFn, live: Live) -> Envelope:
    """An inbox envelope: validly sealed by bureau or not, from a party of the job or not."""
    kind = draw(
        st.sampled_from(
            [
                "sealed-message",
                "sealed-garbage",
                "sealed-hostile",
                "bad-seal",
                "flipped",
                "stranger",
                "self",
            ]
        )
    )
    body = encode(random_message(draw))
    if kind == "sealed-garbage":
        body = draw(st.binary(max_size=200))
    elif kind == "sealed-hostile":
        body = draw(st.sampled_from(HOSTILE_MESSAGES))
    sealed = live.bureau.seal("bank", body)
    if kind == "bad-seal":
        sealed = draw(st.binary(max_size=120))
    elif kind == "flipped":
        sealed = draw(mutated_bytes(sealed))
    sender = {"stranger": "mallory", "self": "bank"}.get(kind, "bureau")
    return Envelope(sender, "bank", sealed)


def step_frames(
    job_id: str,
    method: str,
    seq: int,
    data: bytes,
    *,
    total: int | None = None,
    cuts: list[int] | None = None,
) -> list[pb.Frame]:
    """A header then ``data`` cut at ``cuts`` (default: the client's own chunking)."""
    head = pb.Frame(
        header=pb.StepHeader(
            job_id=job_id, method=method, seq=seq, total_bytes=len(data) if total is None else total
        )
    )
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)] if cuts else None
    if bounds is None:
        parts = [
            data[i : i + fs_settings.CHUNK_BYTES]
            for i in range(0, max(len(data), 1), fs_settings.CHUNK_BYTES)
        ]
    else:
        parts = [data[a:b] for a, b in itertools.pairwise(bounds)]
    return [head, *(pb.Frame(chunk=p) for p in parts)]


def chance(data: st.DataObject, percent: int, label: str) -> bool:
    """True in about ``percent`` % of examples.

    Hypothesis favours small values (0, short lists, floats near 0), so ``draw(...) == 0`` or
    ``random() < p`` fire far more often than their face value; the top of a uniform integer
    range is close to fair.
    """
    return data.draw(st.integers(1, 100), label) > 100 - percent


# --- the tests -----------------------------------------------------------------------------------

UNARY = ["Describe", "OpenJob", "SetPeers", "CloseJob"]


@fuzz(500)
@given(method=st.sampled_from([*UNARY, "Step"]), raw=st.binary(max_size=300))
def test_random_bytes_at_every_rpc(live: Live, method: str, raw: bytes) -> None:
    """Bytes that are not (or are accidentally) the request protobuf."""
    if method == "Step":
        call = live.channel.stream_stream(f"{SERVICE}/Step")
        code = code_of(lambda: call(iter([raw, raw[::-1]]), timeout=10))
    else:
        call = live.channel.unary_unary(f"{SERVICE}/{method}")
        code = code_of(lambda: call(raw, timeout=10))
    assert_allowed(code, f"{method} with {raw[:20]!r}")


@fuzz(600)
@given(job_id=job_ids, spec_json=spec_texts, resume=st.booleans())
def test_open_job_with_random_specs(live: Live, job_id: str, spec_json: str, resume: bool) -> None:
    req = pb.OpenJobRequest(job_id=job_id, spec_json=spec_json, resume=resume)
    code = code_of(lambda: live.stub.OpenJob(req, timeout=10))
    assert_allowed(code, f"OpenJob({job_id!r}, {spec_json[:60]!r})")
    if job_id != LIVE_JOB:
        live.stub.CloseJob(pb.CloseJobRequest(job_id=job_id), timeout=10)


def test_open_job_still_works_after_fuzzing(live: Live) -> None:
    assert_healthy(live)


@fuzz(300)
@given(
    job_id=st.sampled_from([LIVE_JOB]) | job_ids,
    keys=st.dictionaries(
        party_names, st.binary(max_size=40) | st.binary(min_size=32, max_size=32), max_size=4
    ),
)
def test_set_peers_with_random_keys(live: Live, job_id: str, keys: dict[str, bytes]) -> None:
    code = code_of(
        lambda: live.stub.SetPeers(
            pb.SetPeersRequest(job_id=job_id, session_public_keys=keys), timeout=10
        )
    )
    assert_allowed(code, f"SetPeers({job_id!r}, {sorted(keys)!r})")


@fuzz(200)
@given(job_id=job_ids, failed=st.booleans(), reason=st.text(max_size=50))
def test_close_job_with_random_ids(live: Live, job_id: str, failed: bool, reason: str) -> None:
    code = code_of(
        lambda: live.stub.CloseJob(
            pb.CloseJobRequest(job_id=job_id, failed=failed, reason=reason), timeout=10
        )
    )
    assert_allowed(code, f"CloseJob({job_id!r})")


frame_items = st.one_of(
    st.builds(
        lambda j, m, s, t: pb.Frame(header=pb.StepHeader(job_id=j, method=m, seq=s, total_bytes=t)),
        st.sampled_from([LIVE_JOB, "nope"]),
        st.sampled_from(["job.echo", "x"]),
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**64 - 1),
    ),
    st.builds(lambda b: pb.Frame(chunk=b), st.binary(max_size=100)),
    st.just(pb.Frame()),
)


@fuzz(400)
@given(frames=st.lists(frame_items, max_size=6))
def test_step_with_random_frame_sequences(live: Live, frames: list[pb.Frame]) -> None:
    """Missing header, header after a chunk, two headers, lying total_bytes, random seq."""
    code = code_of(lambda: live.stub.Step(iter(frames), timeout=10))
    assert_allowed(code, f"Step frames {[f.WhichOneof('body') for f in frames]}")


@pytest.mark.slow
@fuzz(1200)
@given(data=st.data())
def test_step_with_mutated_payloads(live: Live, data: st.DataObject) -> None:
    """Real session, valid peer: mutated meta, sealed / bad-seal envelopes, lying framing.

    Each corruption is applied with a fixed, small probability (:func:`chance`), so most calls
    get deep into a step function rather than all failing at the first check.
    """
    registered = sorted(method_names())  # every protocol's steps (the node imported them all)
    if chance(data, 15, "random method"):
        method = data.draw(st.text(max_size=30), "method")
    else:
        method = data.draw(st.sampled_from(registered), "method")
    meta = {"step": STEP_OF.get(method.split(".")[0], 0), **SEED_META.get(method, {})}
    if chance(data, 50, "mutate meta"):
        meta = data.draw(mutated_json(meta), "meta")
    if not isinstance(meta, dict):
        meta = {"value": meta}
    inbox = []
    if method in VALID_INBOX and chance(data, 70, "valid inbox"):
        inbox = [
            Envelope(
                "bureau",
                "bank",
                live.bureau.seal(
                    "bank", encode(data.draw(mutated_message(VALID_INBOX[method]), "message"))
                ),
            )
        ]
    elif chance(data, 40, "inbox"):
        inbox = data.draw(
            st.lists(envelopes(live), min_size=1, max_size=2, unique_by=lambda e: e.sender), "inbox"
        )
    plain = None  # the unsealed message a coordinator may send (horizontal protocols)
    if chance(data, 10, "plain"):
        plain = random_message(data.draw)
    raw = pack_step(StepPayload(meta=meta, envelopes=inbox, plain=plain), request=True)
    if chance(data, 10, "mutate bytes"):
        raw = data.draw(mutated_bytes(raw), "raw")
    seq_kind = "next"
    if chance(data, 10, "bad seq"):
        seq_kind = data.draw(st.sampled_from(["replay", "zero"]), "seq")
    seq = {"next": live.next_seq, "replay": lambda: live.last_seq, "zero": lambda: 0}[seq_kind]()
    total = None
    if chance(data, 10, "lie about size"):
        total = data.draw(st.sampled_from([0, len(raw) + 1, max(len(raw) - 1, 0)]), "total")
    cuts = None
    if chance(data, 30, "odd chunking"):
        cuts = data.draw(st.lists(st.integers(0, 10_000), max_size=4), "cuts")
    frames = step_frames(LIVE_JOB, method, seq, raw, total=total, cuts=cuts)
    code = code_of(lambda: live.stub.Step(iter(frames), timeout=30))
    label = f"{method}: " if method in registered else "random method: "
    assert_allowed(code, f"Step {method!r} meta={json.dumps(meta)[:80]} seq={seq_kind}", label)


@pytest.mark.parametrize("raw", HOSTILE_MESSAGES, ids=range(len(HOSTILE_MESSAGES)))
def test_hostile_message_headers_are_protocol_errors(live: Live, raw: bytes) -> None:
    """Each header is refused by the decoder itself, and over the wire as INVALID_ARGUMENT."""
    with pytest.raises(ProtocolError):
        decode(raw)
    sealed = live.bureau.seal("bank", raw)
    payload = pack_step(
        StepPayload(meta=ECHO, envelopes=[Envelope("bureau", "bank", sealed)]), request=True
    )
    frames = step_frames(LIVE_JOB, "job.echo", live.next_seq(), payload)
    assert (
        code_of(lambda: live.stub.Step(iter(frames), timeout=10))
        == grpc.StatusCode.INVALID_ARGUMENT
    )


def test_node_is_healthy_after_all_of_it(live: Live) -> None:
    assert_healthy(live)


# --- size limits ---------------------------------------------------------------------------------


def test_oversized_grpc_message_is_resource_exhausted(live: Live) -> None:
    """gRPC's own per-message limit (settings.GRPC_MAX_MESSAGE_BYTES) holds on every RPC."""
    big = "x" * (fs_settings.GRPC_MAX_MESSAGE_BYTES + 1024)
    code = code_of(
        lambda: live.stub.OpenJob(pb.OpenJobRequest(job_id="big", spec_json=big), timeout=30)
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    frames = [
        pb.Frame(
            header=pb.StepHeader(
                job_id=LIVE_JOB, method="job.echo", seq=live.next_seq(), total_bytes=len(big)
            )
        ),
        pb.Frame(chunk=big.encode()),
    ]
    assert (
        code_of(lambda: live.stub.Step(iter(frames), timeout=30))
        == grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert_healthy(live)


def test_logical_size_limits_are_invalid_argument(live: Live) -> None:
    """A header over MAX_LOGICAL_MESSAGE_BYTES, or chunks beyond the declared size."""
    too_big = fs_settings.MAX_LOGICAL_MESSAGE_BYTES + 1
    frames = [
        pb.Frame(
            header=pb.StepHeader(
                job_id=LIVE_JOB, method="job.echo", seq=live.next_seq(), total_bytes=too_big
            )
        )
    ]
    with pytest.raises(grpc.RpcError) as err:
        list(live.stub.Step(iter(frames), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "logical size limit" in (err.value.details() or "")
    data = pack_step(StepPayload(), request=True)
    frames = step_frames(LIVE_JOB, "job.echo", live.next_seq(), data + data, total=len(data))
    with pytest.raises(grpc.RpcError) as err:
        list(live.stub.Step(iter(frames), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "exceeds its declared size" in (err.value.details() or "")


def test_replayed_step_is_refused(live: Live) -> None:
    """The sequence check itself: the same seq twice is INVALID_ARGUMENT the second time."""
    open_live_session(live)
    data = pack_step(StepPayload(meta=ECHO), request=True)
    seq = live.next_seq()
    list(live.stub.Step(iter(step_frames(LIVE_JOB, "job.echo", seq, data)), timeout=10))
    with pytest.raises(grpc.RpcError) as err:
        list(live.stub.Step(iter(step_frames(LIVE_JOB, "job.echo", seq, data)), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "replayed" in (
        err.value.details() or ""
    )


def test_nul_in_step_meta_or_job_spec_is_refused(live: Live) -> None:
    """NUL would reach the silo's tables (PostgreSQL refuses it in text): refused at the door."""
    payload = pack_step(StepPayload(meta={"alignment": "fz\x00"}), request=True)
    frames = step_frames(LIVE_JOB, "split.draw", live.next_seq(), payload)
    with pytest.raises(grpc.RpcError) as err:
        list(live.stub.Step(iter(frames), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "NUL" in (err.value.details() or "")
    spec = json.dumps({**VALID_SPEC, "name": "a\x00b"})
    with pytest.raises(grpc.RpcError) as err:
        live.stub.OpenJob(pb.OpenJobRequest(job_id="fz-nul", spec_json=spec), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- the same node behind mTLS: identity first, then parsing --------------------------------------


def test_tls_node_checks_identity_before_parsing(tmp_path: Path) -> None:
    """A real silo node with mTLS: a consortium member that is not its coordinator is refused
    (UNAUTHENTICATED) even with garbage bytes, so strangers never reach the decoder; the
    coordinator's garbage is INVALID_ARGUMENT and its valid call answers."""
    from fedsilo.crypto import certs, tls
    from fedsilo.silo_node.node import start_silo

    pki = tmp_path / "pki"
    certs.init_ca(pki)
    for party in ("bank", "coordinator", "bureau"):
        certs.issue(pki, party, role="coordinator" if party == "coordinator" else "silo")
    consortium = Consortium(tmp_path)
    plain = consortium.add_silo(SiloSpec("bank", data_file("breast_hetero_guest"), FEATURES))
    files = f'ca = "{pki / "ca.pem"}"\ncert = "{pki / "bank.pem"}"\nkey = "{pki / "bank.key"}"\n'
    plain.write_text(
        plain.read_text().replace(
            "[tls]\ninsecure_plaintext = true\n", f'[tls]\n{files}coordinator = "coordinator"\n'
        )
    )
    node = start_silo(plain)
    try:

        def describe_as(caller: str, raw: bytes) -> grpc.StatusCode:
            creds = tls.channel_credentials(
                ca=pki / "ca.pem", cert=pki / f"{caller}.pem", key=pki / f"{caller}.key"
            )
            channel = grpc.secure_channel(node.address, creds, options=tls.identity_options("bank"))
            try:
                call = channel.unary_unary(f"{SERVICE}/Describe")
                return code_of(lambda: call(raw, timeout=10))
            finally:
                channel.close()

        assert describe_as("bureau", b"\xff\xff") == grpc.StatusCode.UNAUTHENTICATED
        assert describe_as("coordinator", b"\xff\xff") == grpc.StatusCode.INVALID_ARGUMENT
        assert describe_as("coordinator", b"") == grpc.StatusCode.OK
    finally:
        node.stop(grace=None)
