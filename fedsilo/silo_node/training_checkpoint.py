"""Training checkpoints at a silo: where a resumed job picks up inside a training step.

SecureBoost and vertical LR checkpoint after every completed tree or epoch (each silo its own
part, as JSON in its own database, ``SiloStore.save_checkpoint``). The key names the protocol and
the step's index in the job (``"sgb/3"``), so two training steps of one job never share one.
Each checkpoint carries a fingerprint of the step's definition (parameters, alignments): a
resumed job whose step changed starts that step over rather than continuing someone else's
training. Checkpoints are read only when the coordinator opened the session with
``resume=True``; a fresh run overwrites them as it goes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fedsilo.errors import ProtocolError
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.session import JobSession

__all__ = ["TrainingCheckpoint"]

#: step meta that says where to resume, not what is trained: left out of the fingerprint
_POSITION_KEYS = frozenset({"step", "start_epoch"})


class TrainingCheckpoint:
    """Save and load one training step's checkpoint at this silo."""

    def __init__(self, ctx: SiloContext, session: JobSession, kind: str, meta: dict[str, Any]):
        step = meta.get("step", 0)
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < 10_000:
            raise ProtocolError("training step index must be a small non-negative integer")
        self.ctx, self.session = ctx, session
        self.key = f"{kind}/{step}"
        self.fingerprint = _fingerprint(meta)

    def load(self) -> dict[str, Any] | None:
        """The stored state when this session resumes the very same step, else ``None``."""
        if not self.session.resume:
            return None
        stored = self.ctx.store.load_checkpoint(self.session.job_id, self.key)
        if stored is None or stored.get("fingerprint") != self.fingerprint:
            return None
        state = stored.get("state")
        return state if isinstance(state, dict) else None

    def save(self, state: dict[str, Any]) -> None:
        """Replace the checkpoint with ``state`` (JSON; written before the step replies)."""
        payload = {"fingerprint": self.fingerprint, "state": state}
        self.ctx.store.save_checkpoint(self.session.job_id, self.key, payload)


def _fingerprint(meta: dict[str, Any]) -> str:
    what = {k: v for k, v in meta.items() if k not in _POSITION_KEYS}
    text = json.dumps(what, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
