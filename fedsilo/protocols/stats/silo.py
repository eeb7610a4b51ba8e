"""The ``stats`` step at a silo: thin methods over ``StatsParty`` (``party.py``).

The coordinator's driver calls ``stats.profile`` everywhere, then ``stats.encrypt``,
``stats.cross`` and ``stats.open`` (``conversation.py``). Everything is read from the accepted
step: the population (the alignment it names, else the psi step's; or the silo's own dataset),
the quantiles, whether to correlate, the key size. Nothing runs unless this silo's policy sets
``release_statistics``; every statistic is withheld below its ``min_rows_per_statistic``.
"""

from __future__ import annotations

from typing import Any

from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.jobschema import check_step
from fedsilo.jobspec import input_alignment
from fedsilo.protocols.stats.correlation import CROSS_PRODUCTS, ENCRYPTED_COLUMNS
from fedsilo.protocols.stats.party import StatsParams, StatsParty
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.session import JobSession

__all__: list[str] = []


def _key(req: CallRequest) -> str:
    return f"stats/{req.step_index}"


def _values(req: CallRequest) -> dict[str, Any]:
    return check_step(req.spec_step, req.step_index)


def check_release(ctx: SiloContext) -> None:
    """Refuse unless this silo's policy releases statistics (deny by default)."""
    if not ctx.config.policy.release_statistics:
        raise PolicyError("policy does not release statistics ([policy] release_statistics)")


def _load(ctx: SiloContext, session: JobSession, req: CallRequest, cols: list[str]) -> Any:
    if _values(req)["population"] == "dataset":
        x, _ = ctx.data.load_dataset(session.dataset, cols, with_label=False)
        return x
    alignment = input_alignment(session.spec, req.step_index)
    return ctx.data.load_aligned(session.dataset, alignment, cols)


def _party(session: JobSession, req: CallRequest) -> StatsParty:
    party = session.state.get(_key(req))
    if not isinstance(party, StatsParty):
        raise ProtocolError("this stats method comes after stats.profile")
    return party


def _peers(session: JobSession, ctx: SiloContext, names: Any, what: str) -> list[str]:
    """The other job parties the coordinator names (never this silo, never a stranger)."""
    if not isinstance(names, list) or not names:
        raise ProtocolError(f"stats: '{what}' must list parties")
    out = [str(p) for p in names]
    if len(set(out)) != len(out) or any(p == ctx.party or p not in session.parties for p in out):
        raise ProtocolError(f"stats: '{what}' must name other parties of the job")
    return out


def _check_aligned(ctx: SiloContext, req: CallRequest) -> None:
    """Cross-silo products only over aligned rows, and only if this silo releases statistics."""
    check_release(ctx)
    if _values(req)["population"] != "alignment":
        raise PolicyError("the accepted stats step has no aligned rows to correlate across silos")


@method("stats.profile", kinds=("stats",))
def profile(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Column statistics and within-silo correlations of this silo's population."""
    check_release(ctx)
    values, policy = _values(req), ctx.config.policy
    cols = ctx.job_columns(session)
    params = StatsParams(
        quantiles=tuple(float(q) for q in values["quantiles"]),
        correlation=bool(values["correlation"]),
        key_bits=int(values["key_bits"]),
        min_rows=policy.min_rows_per_statistic,
        release_names=policy.release_feature_names,
        min_key_bits=policy.min_paillier_bits,
    )
    party = StatsParty(ctx.party, _load(ctx, session, req, cols), cols, params)
    session.state[_key(req)] = party
    return CallReply(meta=party.profile())


@method("stats.encrypt", kinds=("stats",))
def encrypt(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Encrypt this silo's standardised columns for the silos that correlate against them."""
    _check_aligned(ctx, req)
    to = _peers(session, ctx, req.meta.get("to"), "to")
    msg = _party(session, req).encrypt(to)
    return CallReply(outbox={p: msg for p in to})


@method("stats.cross", kinds=("stats",))
def cross(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Multiply in each sender's encrypted columns; the re-randomised products go back."""
    _check_aligned(ctx, req)
    senders = _peers(session, ctx, req.meta.get("from"), "from")
    inbox = {p: req.message_from(p, ENCRYPTED_COLUMNS) for p in senders}
    return CallReply(outbox=_party(session, req).cross(inbox))


@method("stats.open", kinds=("stats",))
def open_blocks(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Decrypt the cross products and release the cross-silo correlation blocks."""
    check_release(ctx)
    senders = _peers(session, ctx, req.meta.get("from"), "from")
    inbox = {p: req.message_from(p, CROSS_PRODUCTS) for p in senders}
    return CallReply(meta={"blocks": _party(session, req).open(inbox)})
