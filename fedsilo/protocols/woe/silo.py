"""The ``woe`` step at a silo: thin methods over :mod:`fedsilo.protocols.woe.parties`.

``woe.setup`` (label holder: bins and tables its own characteristics, encrypts its labels),
``woe.bin`` (passive: bins its own, sums the encrypted labels per bin; only with its
``[policy] release_woe_counts``), ``woe.tables`` (label holder: decrypts the counts, sends each
owner what its ``release_woe_iv`` / ``release_woe_table`` allow), ``woe.accept`` (passive).

Each silo stores what it holds at the end (its characteristics' bins, and their WOE and IV when it
has them) in its own database under the job and step (:func:`save_state`), for the ``select``
step and the scorecard (``lr`` with ``transform = "woe"``) of the same job: :func:`load_state`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsilo.errors import DataError, PolicyError, ProtocolError
from fedsilo.jobschema import check_step
from fedsilo.jobspec import previous_step, train_alignments
from fedsilo.ml.woe import Characteristic, ScoreScale
from fedsilo.protocols.lr.scorecard import ScorecardInputs
from fedsilo.protocols.woe.parties import (
    COUNTS,
    LABELS,
    RESULT,
    LabelHolder,
    PassiveParty,
    WoeSettings,
)
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.session import JobSession

__all__ = ["WoeState", "load_state", "save_state", "scorecard_inputs"]

_STATE = "woe"
_FORMAT = "fedsilo.woe/1"


@dataclass(frozen=True)
class WoeState:
    """What one silo holds after a woe step: its characteristics, and their WOE / IV if known."""

    characteristics: list[Characteristic]
    woe: list[list[float]] | None
    iv: list[float] | None

    def by_name(self) -> dict[str, int]:
        return {c.name: i for i, c in enumerate(self.characteristics)}


def _key(index: int) -> str:
    return f"woe/{index}"


def save_state(ctx: SiloContext, session: JobSession, index: int, state: WoeState) -> None:
    woe = None
    if state.woe is not None:
        woe = [[None if math.isnan(v) else v for v in row] for row in state.woe]
    payload = {
        "format": _FORMAT,
        "characteristics": [c.to_dict() for c in state.characteristics],
        "woe": woe,
        "iv": state.iv,
    }
    ctx.store.save_checkpoint(session.job_id, _key(index), payload)


def load_state(ctx: SiloContext, session: JobSession, index: int, user: str) -> WoeState:
    """This silo's result of the last woe step before step ``index`` (``user`` names the step
    that needs it in errors)."""
    woe_index = previous_step(session.spec, index, "woe")
    if woe_index is None:
        raise ProtocolError(f"{user} needs a woe step before it in the job")
    stored = ctx.store.load_checkpoint(session.job_id, _key(woe_index))
    if stored is None or stored.get("format") != _FORMAT:
        raise ProtocolError(f"{user}: the woe step of this job has not run at '{ctx.party}'")
    try:
        chars = [Characteristic.from_dict(c) for c in stored["characteristics"]]
        woe = stored["woe"]
        woe = (
            None if woe is None else [[math.nan if v is None else float(v) for v in r] for r in woe]
        )
        iv = None if stored["iv"] is None else [float(v) for v in stored["iv"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"bad stored woe result: {exc}") from None
    return WoeState(chars, woe, iv)


def woe_settings(step: dict[str, Any], index: int) -> WoeSettings:
    values = check_step(step, index)
    return WoeSettings(
        max_bins=int(values["max_bins"]),
        monotonic=bool(values["monotonic"]),
        categorical=frozenset(str(c) for c in values["categorical"]),
        smoothing=float(values["smoothing"]),
    )


def _rows(ctx: SiloContext, session: JobSession, req: CallRequest) -> tuple[np.ndarray, list[str]]:
    cols = ctx.job_columns(session, req.step_index)
    alignment = train_alignments(session.spec, req.step_index)[0]
    x = ctx.data.load_aligned(session.dataset, alignment, cols)
    ctx.config.policy.check_rows_per_statistic(x.shape[0])
    return x, cols


@method("woe.setup", kinds=("woe",))
def setup(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Label holder: its own tables, and its labels encrypted for every passive silo."""
    if session.role != "active":
        raise PolicyError(f"woe.setup is for the label holder, not role '{session.role}'")
    bits = int(check_step(req.spec_step, req.step_index)["key_bits"])
    policy = ctx.config.policy
    policy.check_paillier_bits(bits)
    x, cols = _rows(ctx, session, req)
    alignment = train_alignments(session.spec, req.step_index)[0]
    holder = LabelHolder(
        x,
        ctx.data.load_aligned_labels(session.dataset, alignment),
        feature_names=cols,
        settings_=woe_settings(dict(req.spec_step), req.step_index),
        passives=session.party_with_role("passive"),
        party=ctx.party,
        min_rows=policy.min_rows_per_statistic,
        key_bits=bits,
        release_iv=policy.release_woe_iv,
        release_table=policy.release_woe_table,
    )
    session.state[_STATE] = holder
    own = WoeState(
        holder.chars, [t.woe.tolist() for t in holder.tables], [t.iv for t in holder.tables]
    )
    save_state(ctx, session, req.step_index, own)
    msg = holder.labels_message()
    return CallReply(meta=holder.released_meta(), outbox={p: msg for p in holder.passives})


@method("woe.bin", kinds=("woe",))
def bin_counts(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Passive: bin its own characteristics, sum the encrypted labels per bin."""
    if session.role != "passive":
        raise PolicyError(f"woe.bin is for a passive silo, not role '{session.role}'")
    policy = ctx.config.policy
    if not policy.release_woe_counts:
        raise PolicyError(
            "policy does not allow releasing per-bin event counts of this silo's "
            "characteristics to the label holder ([policy] release_woe_counts)"
        )
    x, cols = _rows(ctx, session, req)
    passive = PassiveParty(
        x,
        feature_names=cols,
        settings_=woe_settings(dict(req.spec_step), req.step_index),
        party=ctx.party,
        min_rows=policy.min_rows_per_statistic,
        reveal_feature_names=policy.release_feature_names,
        insecure_min_key_bits=policy.min_paillier_bits,
    )
    active = session.active_party("woe")
    msg = passive.counts_message(req.message_from(active, LABELS))
    session.state[_STATE] = passive
    return CallReply(meta=passive.released_meta(), outbox={active: msg})


@method("woe.tables", kinds=("woe",))
def tables(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Label holder: decrypt every passive's counts; WOE / IV; what each owner may get back."""
    holder = session.state.get(_STATE)
    if not isinstance(holder, LabelHolder):
        raise ProtocolError("woe.tables is for the label holder, after woe.setup")
    out = holder.results({s: m.expect(COUNTS) for s, m in req.inbox.items()})
    meta = {p: len(t) for p, t in holder.passive_tables.items()}
    return CallReply(meta={"characteristics": meta}, outbox=out)


@method("woe.accept", kinds=("woe",))
def accept(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Passive: keep the (merged) bins and whatever WOE / IV the label holder released."""
    passive = session.state.get(_STATE)
    if not isinstance(passive, PassiveParty):
        raise ProtocolError("woe.accept is for a passive silo, after woe.bin")
    passive.accept_result(req.message_from(session.active_party("woe"), RESULT))
    woe = None if passive.woe is None else [w.tolist() for w in passive.woe]
    save_state(ctx, session, req.step_index, WoeState(passive.chars, woe, passive.iv))
    return CallReply(meta=passive.accepted_meta())


def columns_with_woe(state: WoeState, columns: Sequence[str], user: str) -> list[int]:
    """Positions in ``state`` of ``columns``, each of which must have a WOE table here."""
    where = state.by_name()
    missing = [c for c in columns if c not in where]
    if missing:
        raise ProtocolError(f"{user}: the woe step did not bin column(s) {missing[:5]}")
    if state.woe is None:
        raise PolicyError(
            f"{user}: this silo holds no WOE table for its characteristics (the label holder's "
            "[policy] release_woe_table is off)"
        )
    return [where[c] for c in columns]


def scorecard_inputs(
    ctx: SiloContext, session: JobSession, req: CallRequest, columns: Sequence[str]
) -> ScorecardInputs | None:
    """For an ``lr`` step with ``transform = "woe"``: this silo's WOE tables of ``columns`` (from
    the last woe step) and the points scale; None for a plain LR step."""
    values = check_step(req.spec_step, req.step_index)
    if values.get("transform") != "woe":
        return None
    user = f'step {req.step_index + 1} (lr, transform = "woe")'
    state = load_state(ctx, session, req.step_index, user)
    positions = columns_with_woe(state, columns, user)
    assert state.woe is not None
    scale = ScoreScale(
        float(values["base_score"]), float(values["base_odds"]), float(values["pdo"])
    )
    return ScorecardInputs(
        [state.characteristics[i] for i in positions], [state.woe[i] for i in positions], scale
    )
