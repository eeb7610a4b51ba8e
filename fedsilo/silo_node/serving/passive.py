"""A passive silo's side of online scoring: answer the label holder's sealed queries.

For each query relayed by the coordinator: authenticate and open it with the serving key, check
the one-time label was not used before (a replay would only repeat an answer, but would count
against the budget twice), admit its rows against this silo's rate and budget
(:class:`~fedsilo.silo_node.serving.guard.ServeGuard`), find the rows by pseudonym, compute the
model's part (an id not held is a row of missing values: the model's default directions) and
seal the answer with which rows were held. A refusal goes back as an error with its reason.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np

from fedsilo.errors import FedsiloError, LimitExceeded, ProtocolError
from fedsilo.protocols.serve.online import QUERY, open_sealed, read_query, seal
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.predict import load_part
from fedsilo.silo_node.serving.guard import ServeGuard
from fedsilo.silo_node.serving.index import FeatureIndex
from fedsilo.silo_node.serving.kinds import passive_model
from fedsilo.silo_node.serving.record import ServingRecord

__all__ = ["PassiveServer"]

log = logging.getLogger(__name__)
#: one-time labels remembered per serving (a replay older than this many queries is refused by
#: the label's counter instead, which only grows)
_SEEN_LABELS = 100_000


class PassiveServer:
    def __init__(self, ctx: SiloContext, record: ServingRecord) -> None:
        self.ctx, self.record = ctx, record
        kind, payload = load_part(ctx, record.part)
        if kind != record.kind:
            raise ProtocolError(f"model part '{record.part[:80]}' is {kind}, not {record.kind}")
        columns = [str(c) for c in payload.get("columns", [])]
        self.model = passive_model(kind, payload, ctx.party, record.pair_seeds)
        self.index = FeatureIndex(ctx, record.dataset, columns, record.pseudonym_key)
        self.guard = ServeGuard(ctx, record)
        self.key = record.channels[record.active]
        self._seen: OrderedDict[str, None] = OrderedDict()

    def _fresh(self, label: str) -> None:
        if label in self._seen:
            raise ProtocolError("serving query replayed (its one-time label was used)")
        self._seen[label] = None
        if len(self._seen) > _SEEN_LABELS:
            self._seen.popitem(last=False)

    def answer(self, query: pb.ServeEnvelope) -> pb.ServeEnvelope:
        """The sealed answer to one query, or an error envelope naming the refusal."""
        reply = pb.ServeEnvelope(
            query_id=query.query_id, sender=self.ctx.party, recipient=self.record.active
        )
        try:
            if query.sender != self.record.active or query.recipient != self.ctx.party:
                raise ProtocolError("serving query not from this model's label holder")
            msg = open_sealed(
                self.key,
                query.sealed,
                QUERY,
                serving_id=self.record.serving_id,
                sender=self.record.active,
                recipient=self.ctx.party,
                query_id=query.query_id,
            )
            pseudo, label = read_query(msg)
            self._fresh(label)
            self.guard.admit(len(pseudo))
            x, held = self.index.lookup_pseudonyms(pseudo)
            part = self.model.part(x, label)
            part.arrays["held"] = np.packbits(held)
            reply.sealed = seal(
                self.key,
                part,
                serving_id=self.record.serving_id,
                sender=self.ctx.party,
                recipient=self.record.active,
                query_id=query.query_id,
            )
            reply.rows = len(pseudo)
            self.guard.count(len(pseudo), int(held.sum()), len(reply.sealed))
        except LimitExceeded as err:
            reply.error, reply.code = str(err), "budget" if "budget" in str(err) else "rate_limited"
        except FedsiloError as err:
            log.warning("serving %s refused a query: %s", self.record.serving_id, err)
            reply.error, reply.code = str(err), "refused"
        return reply

    def close(self) -> None:
        self.guard.flush(force=True)
