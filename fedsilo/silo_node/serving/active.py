"""The label holder's side of online scoring: requests in, micro-batches out, scores back.

:meth:`ActiveHub.score` is what the HTTP and gRPC endpoints call. A request's rows (ids, and the
label holder's own features from the request or its in-memory index) join a queue; a batcher
thread sends what is queued as one micro-batch as soon as fewer than ``SERVING_MAX_INFLIGHT``
batches are in flight, so a lone request leaves at once and requests under load leave together.
Each batch is one sealed query per passive silo, with the rows' keyed pseudonyms, on the Serve
stream the coordinator holds open. Answers come back on the same stream; a sweeper thread ends
any batch whose deadline passes first. A batch ends in one of three ways, per the model's
serving policy (``on_party_down``): every part arrived (full score); a passive silo is down or
late and the policy is ``degrade`` (its features count as missing, the response says so); or the
request fails with the reason (policy ``fail``, or a passive silo refused: not served, rate,
budget). No request waits past its deadline.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedsilo import settings
from fedsilo.errors import (
    DataError,
    FedsiloError,
    LimitExceeded,
    PolicyError,
    ProtocolError,
    SiloUnavailable,
)
from fedsilo.message import Message
from fedsilo.protocols.serve.online import (
    PART,
    QUERY,
    open_sealed,
    pseudonyms,
    query_message,
    seal,
)
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.data import normalise_id
from fedsilo.silo_node.predict import load_part
from fedsilo.silo_node.serving.guard import IntervalLedger
from fedsilo.silo_node.serving.index import FeatureIndex
from fedsilo.silo_node.serving.kinds import active_model
from fedsilo.silo_node.serving.record import ServingRecord

__all__ = ["ActiveHub", "ScoreResult", "Transaction"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transaction:
    """One row to score: its id, and optionally the label holder's own features by name."""

    id: str
    features: dict[str, float] | None = None


@dataclass(frozen=True)
class ScoreResult:
    id: str
    score: float
    contributed: list[str]
    #: party -> why its features are missing from this score
    missing: dict[str, str]


@dataclass
class _Request:
    ids: list[str]
    x: np.ndarray
    pseudo: np.ndarray
    deadline: float
    done: threading.Event = field(default_factory=threading.Event)
    results: list[ScoreResult] | None = None
    degraded: bool = False
    error: FedsiloError | None = None


@dataclass
class _Batch:
    query_id: int
    label: str
    requests: list[_Request]
    waiting: set[str]
    deadline: float
    parts: dict[str, Message] = field(default_factory=dict)
    #: party -> (code, reason) for parties without a part
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)
    finished: bool = False


class ActiveHub:
    """One served model at its label holder (see the module docstring)."""

    def __init__(self, ctx: SiloContext, record: ServingRecord) -> None:
        self.ctx, self.record = ctx, record
        kind, payload = load_part(ctx, record.part)
        self.columns = [str(c) for c in payload.get("columns", [])]
        self.model = active_model(kind, payload)
        self.index = FeatureIndex(ctx, record.dataset, self.columns, None)
        self._nonce = secrets.token_hex(8)
        self._ids = itertools.count(1)
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        #: what the label holder sent each passive silo, counted per interval in its ledger
        self.ledgers = {p: IntervalLedger(ctx, record, QUERY, p) for p in record.passives}
        self._slots = threading.Semaphore(settings.SERVING_MAX_INFLIGHT)
        self._lock = threading.Lock()
        self._pending: dict[int, _Batch] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._wake = threading.Condition(self._lock)
        #: frames for the coordinator (the Serve stream's reply side); None while no stream
        self._uplink: queue.Queue[pb.ServeFrame | None] | None = None
        self._up: set[str] = set()
        #: party -> why its stream is down, as the coordinator reported it
        self._why_down: dict[str, str] = {}
        self._closed = False
        for name, target in (("batcher", self._batcher), ("sweeper", self._sweeper)):
            threading.Thread(target=target, daemon=True, name=f"serving-{name}").start()

    # --- the stream ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._uplink is not None

    def parties_up(self) -> list[str]:
        with self._lock:
            return sorted(self._up)

    def attach(self) -> queue.Queue[pb.ServeFrame | None]:
        """A new Serve stream from the coordinator: its outgoing frames, replacing the last."""
        uplink: queue.Queue[pb.ServeFrame | None] = queue.Queue()
        with self._lock:
            if self._uplink is not None:
                self._uplink.put(None)
            self._uplink, self._up = uplink, set()
        return uplink

    def detach(self, uplink: queue.Queue[pb.ServeFrame | None]) -> None:
        with self._lock:
            if self._uplink is uplink:
                self._uplink, self._up = None, set()

    def on_frame(self, frame: pb.ServeFrame) -> None:
        """A frame the coordinator sent: a passive silo's answer, or its stream's status."""
        if frame.HasField("status"):
            party, up = frame.status.party, frame.status.up
            with self._lock:
                if party in self.record.passives:
                    (self._up.add if up else self._up.discard)(party)
                    self._why_down[party] = "" if up else frame.status.reason[:300]
        elif frame.HasField("answer"):
            self._on_answer(frame.answer)

    # --- scoring ---------------------------------------------------------------------------------
    def score(
        self, transactions: Sequence[Transaction], deadline_ms: int | None = None
    ) -> tuple[list[ScoreResult], bool]:
        """Scores of ``transactions`` and whether the model's policy degraded them."""
        if not transactions:
            raise ProtocolError("a scoring request needs at least one transaction")
        if len(transactions) > settings.SERVING_MAX_REQUEST_ROWS:
            raise ProtocolError(
                f"{len(transactions)} transactions in one request; at most "
                f"{settings.SERVING_MAX_REQUEST_ROWS} (SERVING_MAX_REQUEST_ROWS)"
            )
        ms = deadline_ms or settings.SERVING_DEADLINE_MS
        if not 0 < ms <= settings.SERVING_MAX_DEADLINE_MS:
            raise ProtocolError(f"deadline_ms must be 1 to {settings.SERVING_MAX_DEADLINE_MS}")
        start = time.monotonic()
        ids = [normalise_id(t.id) for t in transactions]
        req = _Request(
            ids=ids,
            x=self._own_features(ids, transactions),
            pseudo=pseudonyms(self.record.pseudonym_key, ids),
            deadline=start + ms / 1000.0,
        )
        self._queue.put(req)
        if not req.done.wait(timeout=ms / 1000.0 + 0.05):  # the sweeper ends it before this
            raise SiloUnavailable(f"no score within the deadline of {ms} ms")
        if req.error is not None:
            raise req.error
        assert req.results is not None
        return req.results, req.degraded

    def _own_features(self, ids: list[str], transactions: Sequence[Transaction]) -> np.ndarray:
        x, held = self.index.lookup(ids)
        for r, t in enumerate(transactions):
            if t.features is None:
                continue
            unknown = sorted(set(t.features) - set(self.columns))
            if unknown:
                raise ProtocolError(f"transaction {r}: '{unknown[0][:60]}' is not a model feature")
            absent = [c for c in self.columns if c not in t.features]
            if absent:
                raise ProtocolError(f"transaction {r}: feature '{absent[0][:60]}' is missing")
            x[r] = [float(t.features[c]) for c in self.columns]
            held[r] = True
        if not held.all():
            r = int(np.flatnonzero(~held)[0])
            raise DataError(
                f"transaction {r}: id not in the label holder's dataset "
                f"'{self.record.dataset}'; give its features in the request"
            )
        return x

    # --- batching --------------------------------------------------------------------------------
    def _drain(self, first: _Request) -> list[_Request]:
        batch, rows = [first], len(first.ids)
        while rows < settings.SERVING_MAX_BATCH_ROWS:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:  # closing: let the batcher see it next
                self._queue.put(None)
                break
            if rows + len(nxt.ids) > settings.SERVING_MAX_BATCH_ROWS:
                self._queue.put(nxt)  # next batch (order among waiting requests may change)
                break
            batch.append(nxt)
            rows += len(nxt.ids)
        return batch

    def _batcher(self) -> None:
        while not self._closed:
            first = self._queue.get()
            if first is None:
                return
            self._slots.acquire()
            requests = self._drain(first)
            try:
                self._send(requests)
            except Exception as err:  # never lose a request: fail it with the reason
                log.exception("serving %s: a batch failed", self.record.serving_id)
                self._slots.release()
                for req in requests:
                    req.error = ProtocolError(f"internal error: {type(err).__name__}")
                    req.done.set()

    def _send(self, requests: list[_Request]) -> None:
        """Seal one query per passive silo that is up, register the batch, hand them over."""
        query_id = next(self._ids)
        label = f"online/{self.record.serving_id}/{self._nonce}/{query_id}"
        deadline = min(r.deadline for r in requests) - settings.SERVING_COMBINE_MARGIN_MS / 1e3
        batch = _Batch(query_id, label, requests, set(), deadline)
        pseudo = np.concatenate([r.pseudo for r in requests])
        with self._lock:
            uplink, up, why = self._uplink, set(self._up), dict(self._why_down)
        msg = query_message(pseudo, label)
        frames = []
        for party in self.record.passives:
            if uplink is None or party not in up:
                reason = why.get(party, "")
                if uplink is None:
                    reason = "no stream from the coordinator"
                batch.failed[party] = (
                    "unavailable",
                    f"silo '{party}' is unavailable" + (f" ({reason})" if reason else ""),
                )
                continue
            sealed = seal(
                self.record.channels[party],
                msg,
                serving_id=self.record.serving_id,
                sender=self.ctx.party,
                recipient=party,
                query_id=query_id,
            )
            env = pb.ServeEnvelope(
                query_id=query_id, sender=self.ctx.party, recipient=party, sealed=sealed
            )
            env.rows = len(pseudo)
            frames.append(pb.ServeFrame(query=env))
            batch.waiting.add(party)
            self.ledgers[party].count(len(pseudo), 0, len(sealed))
        with self._lock:
            self._pending[query_id] = batch
            heapq.heappush(self._deadlines, (deadline, query_id))
            self._wake.notify()
        for frame in frames:
            assert uplink is not None
            uplink.put(frame)
        if not batch.waiting:
            self._finish(query_id)

    def _on_answer(self, env: pb.ServeEnvelope) -> None:
        with self._lock:
            batch = self._pending.get(env.query_id)
            if batch is None or env.sender not in batch.waiting:
                return  # late (the batch ended at its deadline) or unexpected: dropped
        part: Message | None = None
        failure = (env.code or "refused", env.error) if env.error else None
        if failure is None:
            try:  # outside the lock: the other answers need not wait for this one's crypto
                part = open_sealed(
                    self.record.channels[env.sender],
                    env.sealed,
                    PART,
                    serving_id=self.record.serving_id,
                    sender=env.sender,
                    recipient=self.ctx.party,
                    query_id=env.query_id,
                )
            except FedsiloError as err:
                failure = ("refused", str(err))
        with self._lock:  # recorded and taken off `waiting` at once, or not at all
            if batch.finished or env.sender not in batch.waiting:
                return  # the sweeper ended the batch meanwhile: this answer came too late
            batch.waiting.discard(env.sender)
            if part is not None:
                batch.parts[env.sender] = part
            else:
                assert failure is not None
                batch.failed[env.sender] = failure
            complete = not batch.waiting
        if complete:
            self._finish(env.query_id)

    def _sweeper(self) -> None:
        while not self._closed:
            with self._lock:
                now = time.monotonic()
                while self._deadlines and self._deadlines[0][1] not in self._pending:
                    heapq.heappop(self._deadlines)
                if not self._deadlines:
                    self._wake.wait(timeout=1.0)
                    continue
                when, query_id = self._deadlines[0]
                if when > now:
                    self._wake.wait(timeout=when - now)
                    continue
                heapq.heappop(self._deadlines)
                batch = self._pending.get(query_id)
                if batch is None:
                    continue
                for party in batch.waiting:
                    batch.failed[party] = ("timeout", f"silo '{party}' did not answer in time")
                batch.waiting = set()
            self._finish(query_id)

    # --- finishing -------------------------------------------------------------------------------
    def _finish(self, query_id: int) -> None:
        with self._lock:
            batch = self._pending.pop(query_id, None)
            if batch is None or batch.finished:
                return
            batch.finished = True
        self._slots.release()
        try:
            self._complete(batch)
        except FedsiloError as err:
            for req in batch.requests:
                req.error = err
        except Exception as err:
            log.exception("serving %s: combining failed", self.record.serving_id)
            for req in batch.requests:
                req.error = ProtocolError(f"internal error: {type(err).__name__}")
        for req in batch.requests:
            req.done.set()

    def _complete(self, batch: _Batch) -> None:
        refused = sorted(
            (p, code, why)
            for p, (code, why) in batch.failed.items()
            if code not in ("unavailable", "timeout")
        )
        if refused:  # a refusal is the passive silo's decision: never degraded away
            _party, code, why = refused[0]
            raise (LimitExceeded if code in ("rate_limited", "budget") else PolicyError)(why)
        down = sorted(batch.failed)
        if down and self.record.on_party_down != "degrade":
            reasons = "; ".join(batch.failed[p][1] for p in down)
            raise SiloUnavailable(f"{reasons} (the model's serving policy: fail)")
        parts = dict(batch.parts)
        dropped = set()
        if down and self.model.joint:
            dropped = set(parts)  # masked partials only open in the full sum
            parts = {}
        x = np.concatenate([r.x for r in batch.requests])
        n = len(x)
        held = {p: _held(msg, n) for p, msg in parts.items()}
        scores = self.model.scores(x, parts, batch.label)
        offset = 0
        for req in batch.requests:
            results = []
            for i in range(len(req.ids)):
                row = offset + i
                missing = {p: batch.failed[p][0] for p in down}
                missing |= {p: "dropped with a missing silo (masked sum)" for p in dropped}
                missing |= {p: "not held" for p, h in held.items() if not h[row]}
                contributed = [self.ctx.party] + sorted(
                    p for p, h in held.items() if h[row] and p not in missing
                )
                results.append(ScoreResult(req.ids[i], float(scores[row]), contributed, missing))
            offset += len(req.ids)
            req.results, req.degraded = results, bool(down)

    def frames(self, uplink: queue.Queue[pb.ServeFrame | None]) -> Iterator[pb.ServeFrame]:
        """The Serve stream's reply side: queries until the stream is replaced or ends."""
        while True:
            frame = uplink.get()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        for ledger in self.ledgers.values():
            ledger.flush(force=True)


def _held(msg: Message, n: int) -> np.ndarray:
    bits = msg.array("held")
    if bits.dtype != np.uint8 or len(bits) != (n + 7) // 8:
        raise ProtocolError("an answer's held mask has the wrong length")
    return np.unpackbits(bits, count=n).astype(bool)
