"""The ``count`` step at a silo: release how many rows an alignment it stores has.

The count is the intersection size the alignment was made from; it is released only when it is
at least the silo's ``min_intersection`` (the same floor PSI applies), so a small intersection
is refused, not disclosed. The alignment is the one the accepted step names (its own
``alignment``, else the psi step's), never one the coordinator picks.
"""

from __future__ import annotations

from fedsilo.jobspec import input_alignment
from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.session import JobSession


@method("count.release", kinds=("count",))
def release(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Release the row count of the step's alignment, under this silo's minimum."""
    name = input_alignment(session.spec, req.step_index)
    rows = ctx.store.alignment_info(name).rows
    ctx.config.policy.check_intersection(rows)
    return CallReply(meta={"rows": rows})
