"""The coordinator's relay for online scoring: long-lived streams to the silos of a served model.

One :class:`ServingRelay` per serving keeps a Serve stream open to every party of the model (a
:class:`_Link` each, reopened with backoff after any failure, so a silo that comes back is used
again without a restart). It forwards the label holder's sealed queries to the passive silo each
names and their sealed answers back, and tells the label holder when a passive silo's stream goes
up or down; a query for a silo that is down is answered at once with ``unavailable``, so the
label holder degrades or fails it within its deadline instead of waiting.

What the coordinator sees: which silo is queried, query ids, row counts, timing, errors. The
payloads are sealed between the two silos under keys it never had; ids travel as keyed
pseudonyms inside them. It keeps counts only (:meth:`ServingRelay.stats`), no payload.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc

from fedsilo import settings
from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.config import parse_job_spec
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobStore
from fedsilo.errors import JobError
from fedsilo.protos import fedsilo_pb2 as pb

__all__ = ["ServingRelay", "prepare_serving"]

log = logging.getLogger(__name__)


class _Link:
    """One party's Serve stream, kept open by a thread (see the module docstring)."""

    def __init__(self, relay: ServingRelay, party: str, client: SiloClient) -> None:
        self.relay, self.party, self.client = relay, party, client
        self.up = False
        self.last_error = ""
        self._reported = ""
        self._out: queue.Queue[pb.ServeFrame | None] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"serve-{party}")

    def start(self) -> None:
        self._thread.start()

    def send(self, frame: pb.ServeFrame) -> bool:
        with self._lock:
            if not self.up or self._out is None:
                return False
            self._out.put(frame)
            return True

    def close(self) -> None:
        with self._lock:
            if self._out is not None:
                self._out.put(None)

    def _loop(self) -> None:
        backoff = settings.SERVING_RECONNECT_S
        while not self.relay.stopped.is_set():
            out: queue.Queue[pb.ServeFrame | None] = queue.Queue()
            out.put(pb.ServeFrame(open=pb.ServeOpen(serving_id=self.relay.serving_id)))
            with self._lock:
                self._out = out
            try:
                for frame in self.client.serve(_frames(out), timeout=settings.SERVING_STREAM_MAX_S):
                    if frame.HasField("ready"):
                        backoff = settings.SERVING_RECONNECT_S
                        self._set_up(True, "")
                    else:
                        self.relay.on_frame(self.party, frame)
                self.last_error = "stream ended"
            except grpc.RpcError as err:
                code = err.code() if hasattr(err, "code") else None
                details = err.details() if hasattr(err, "details") else ""
                self.last_error = f"{getattr(code, 'name', code)}: {details}"[:300]
            finally:
                out.put(None)
                self._set_up(False, self.last_error)
            self.relay.stopped.wait(backoff)
            backoff = min(backoff * 2, settings.SERVING_RECONNECT_MAX_S)

    def _set_up(self, up: bool, reason: str) -> None:
        """Tell the relay when the stream goes up or down, or is still down for a new reason
        (a silo that refuses the stream says why: the label holder passes it on)."""
        with self._lock:
            changed = self.up != up or (not up and reason != self._reported)
            self.up, self._reported = up, reason
        if changed:
            state = "up" if up else f"down ({reason})"
            log.warning("serving %s: silo %s is %s", self.relay.serving_id, self.party, state)
            self.relay.on_status(self.party, up, reason)


def _frames(out: queue.Queue[pb.ServeFrame | None]) -> Iterator[pb.ServeFrame]:
    while (frame := out.get()) is not None:
        yield frame


class ServingRelay:
    """Relays one serving between its label holder and passive silos (module docstring)."""

    def __init__(self, serving_id: str, active: str, clients: dict[str, SiloClient]) -> None:
        self.serving_id, self.active = serving_id, active
        self.stopped = threading.Event()
        self.counts: Counter[str] = Counter()
        self._links = {p: _Link(self, p, c) for p, c in clients.items()}
        if active not in self._links:
            raise ValueError(f"no client for the label holder '{active}'")

    def start(self) -> ServingRelay:
        for link in self._links.values():
            link.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        for link in self._links.values():
            link.close()

    def parties_up(self) -> list[str]:
        return sorted(p for p, link in self._links.items() if link.up)

    def wait_up(self, timeout: float) -> bool:
        """True once every party's stream is open (or False after ``timeout`` seconds)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.parties_up()) == len(self._links):
                return True
            time.sleep(0.05)
        return False

    def stats(self) -> dict[str, int]:
        """Counts only: queries, rows and errors relayed (what the coordinator learns)."""
        return dict(self.counts)

    def on_status(self, party: str, up: bool, reason: str) -> None:
        if party == self.active:
            if up:  # a (re)opened label holder learns who is up now
                for p in self.parties_up():
                    if p != self.active:
                        self._to_active(pb.ServeFrame(status=pb.ServeStatus(party=p, up=True)))
            return
        self._to_active(pb.ServeFrame(status=pb.ServeStatus(party=party, up=up, reason=reason)))

    def on_frame(self, party: str, frame: pb.ServeFrame) -> None:
        if party == self.active and frame.HasField("query"):
            self._query(frame.query)
        elif party != self.active and frame.HasField("answer"):
            if frame.answer.sender != party or frame.answer.recipient != self.active:
                self.counts["dropped"] += 1
                return
            self.counts["answers"] += 1
            self.counts["errors"] += bool(frame.answer.error)
            self._to_active(frame)
        else:
            self.counts["dropped"] += 1

    def _query(self, env: pb.ServeEnvelope) -> None:
        link = self._links.get(env.recipient)
        if env.sender != self.active or link is None or env.recipient == self.active:
            self.counts["dropped"] += 1
            return
        self.counts["queries"] += 1
        self.counts["rows"] += env.rows
        if not link.send(pb.ServeFrame(query=env)):
            self.counts["unavailable"] += 1
            self._to_active(
                pb.ServeFrame(
                    answer=pb.ServeEnvelope(
                        query_id=env.query_id,
                        sender=env.recipient,
                        recipient=self.active,
                        error=f"silo '{env.recipient}' is unavailable",
                        code="unavailable",
                    )
                )
            )

    def _to_active(self, frame: pb.ServeFrame) -> None:
        self._links[self.active].send(frame)


def prepare_serving(
    model_id: str,
    *,
    clients: dict[str, SiloClient],
    store: JobStore,
    on_party_down: str = "fail",
    datasets: dict[str, str] | None = None,
) -> tuple[str, str]:
    """Run the ``serve`` job of a registered model; ``(serving id, label holder)``.

    Its parties are the model's, each with the dataset it trained on unless ``datasets`` names
    another (the rows to serve: ``main`` when the model records none).
    """
    model = store.get_model(model_id)
    roles = {str(p): str(r) for p, r in model.record.get("parties", {}).items()}
    trained = model.record.get("trained_on", {}).get("datasets", {}) or {}
    chosen = {p: (datasets or {}).get(p) or trained.get(p) or "main" for p in roles}
    spec = parse_job_spec(
        {
            "name": f"serve-{model_id}"[:80],
            "parties": {p: {"role": r, "dataset": chosen[p]} for p, r in roles.items()},
            "steps": [{"kind": "serve", "model": model_id, "on_party_down": on_party_down}],
        },
        Path("serve.toml"),
    )
    record = run_job(spec, clients={p: clients[p] for p in roles}, store=store)
    if record.state != "succeeded":
        raise JobError(f"preparing {model_id} for serving failed: {record.reason}")
    actives = [p for p, r in roles.items() if r == "active"]
    return record.job_id, actives[0]
