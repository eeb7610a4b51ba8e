"""Protocol-independent steps: the no-op job used to check a consortium end to end."""

from __future__ import annotations

from fedsilo.silo_node.context import SiloContext
from fedsilo.silo_node.methods import CallReply, CallRequest, method
from fedsilo.silo_node.session import JobSession


@method("job.echo", kinds=("noop",))
def echo(ctx: SiloContext, session: JobSession, req: CallRequest) -> CallReply:
    """Answer with the party, its role and the size of the job's dataset: proves the path works."""
    rows = ctx.data.row_count(session.dataset)
    return CallReply(meta={"party": ctx.party, "role": session.role, "rows": rows})
