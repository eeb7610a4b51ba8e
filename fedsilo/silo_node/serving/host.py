"""A silo's servings and the Serve stream that carries them (``SiloService.Serve``).

The coordinator opens one Serve stream per served model to each of its silos and names the
serving in the first frame. The silo loads its stored record (refused unless its policy still
lists the model in ``serve_models``), answers ``ready`` and then, as a passive silo, answers each
query frame; as the label holder, it sends its micro-batches' queries on the reply side and
takes the answers and the passive silos' up/down status from the request side. A reopened
stream (after a coordinator or network failure) takes over from the old one.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

from fedsilo import settings
from fedsilo.errors import LimitExceeded, NotFound, ProtocolError
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.serving.active import ActiveHub
from fedsilo.silo_node.serving.passive import PassiveServer
from fedsilo.silo_node.serving.record import ServingRecord, load_record

__all__ = ["SERVE_METHOD", "ServingHost"]

log = logging.getLogger(__name__)
#: the Serve RPC's full name (its own stream cap, not the job calls' admission caps)
SERVE_METHOD = "/fedsilo.v1.SiloService/Serve"


class ServingHost:
    """The label holder's hubs by model id, a passive silo's answerers by serving id."""

    def __init__(self, ctx: SiloContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._hubs: dict[str, ActiveHub] = {}
        self._passives: dict[str, PassiveServer] = {}
        self._streams = 0

    def hub(self, model: str) -> ActiveHub:
        """The hub serving ``model`` at this label holder, or NotFound with the reason."""
        with self._lock:
            hub = self._hubs.get(model)
        if hub is None:
            raise NotFound(
                f"model '{model[:80]}' is not served at '{self.ctx.party}' "
                "(run `fedsilo serve MODEL_ID` at the coordinator)"
            )
        return hub

    def close(self) -> None:
        """Stop the hubs and write every interval's counts to the ledger (a clean stop)."""
        with self._lock:
            hubs, passives = list(self._hubs.values()), list(self._passives.values())
        for hub in hubs:
            hub.close()
        for server in passives:
            server.close()

    def models(self) -> dict[str, ActiveHub]:
        with self._lock:
            return dict(self._hubs)

    def open(self, requests: Iterator[pb.ServeFrame]) -> Iterator[pb.ServeFrame]:
        """Start serving on a new stream; raises (before any reply) when it cannot."""
        first = next(requests, None)
        if first is None or not first.HasField("open"):
            raise ProtocolError("a Serve stream must start with an open frame")
        record = load_record(self.ctx, first.open.serving_id)
        with self._lock:
            if self._streams >= settings.SERVING_MAX_STREAMS:
                raise LimitExceeded(
                    f"{self._streams} Serve streams open, the most this silo keeps "
                    "(SERVING_MAX_STREAMS)"
                )
            self._streams += 1
        try:
            if record.role == "active":
                hub = self._hub_for(record)
                return self._run(hub.attach(), requests, hub.on_frame, hub.detach, record.role)
            server = self._passive_for(record)
            out: queue.Queue[pb.ServeFrame | None] = queue.Queue()

            def answer(frame: pb.ServeFrame) -> None:
                if frame.HasField("query"):
                    out.put(pb.ServeFrame(answer=server.answer(frame.query)))

            def done(_: queue.Queue[pb.ServeFrame | None]) -> None:
                server.guard.flush(force=True)

            return self._run(out, requests, answer, done, record.role)
        except BaseException:
            self._release()
            raise

    def _hub_for(self, record: ServingRecord) -> ActiveHub:
        with self._lock:
            hub = self._hubs.get(record.model)
        if hub is not None and hub.record.serving_id == record.serving_id:
            return hub
        hub = ActiveHub(self.ctx, record)  # built outside the lock: it reads the dataset
        with self._lock:
            old = self._hubs.get(record.model)
            self._hubs[record.model] = hub
        if old is not None:
            old.close()
        return hub

    def _passive_for(self, record: ServingRecord) -> PassiveServer:
        with self._lock:
            server = self._passives.get(record.serving_id)
        if server is None:
            server = PassiveServer(self.ctx, record)
            with self._lock:
                server = self._passives.setdefault(record.serving_id, server)
        return server

    def _release(self) -> None:
        with self._lock:
            self._streams -= 1

    def _run(
        self,
        out: queue.Queue[pb.ServeFrame | None],
        requests: Iterator[pb.ServeFrame],
        on_frame: Callable[[pb.ServeFrame], None],
        on_end: Callable[[queue.Queue[pb.ServeFrame | None]], None],
        role: str,
    ) -> Iterator[pb.ServeFrame]:
        """Read the request side in a thread; yield ``ready`` then whatever ``out`` gets."""

        def read() -> None:
            try:
                for frame in requests:
                    on_frame(frame)
            except Exception as err:  # the stream ended under us (cancelled, reset)
                log.info("Serve stream ended: %s", type(err).__name__)
            finally:
                on_end(out)
                out.put(None)

        threading.Thread(target=read, daemon=True, name="serve-reader").start()

        def replies() -> Iterator[pb.ServeFrame]:
            try:
                yield pb.ServeFrame(ready=pb.ServeReady(party=self.ctx.party, role=role))
                while (frame := out.get()) is not None:
                    yield frame
            finally:
                self._release()

        return replies()
