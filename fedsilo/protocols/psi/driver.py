"""Driver of the `psi` step: ECDH-PSI between the label holder and every passive silo.

::

    [[steps]]
    kind = "psi"
    alignment = "default-risk"   # name each silo stores its aligned rows under (default: job name)
    mode = "alignment"           # or "cardinality": every party learns only the count
    reveal = "all"               # who besides the label holder learns and stores the alignment:
                                 # "all" passive silos, "leader" (nobody else), or a list of names
    replace = false              # replace an existing alignment of the same name

The coordinator only relays sealed envelopes in rounds (``psi.pump`` at every silo, concurrently)
until every silo is idle and nothing is in flight, then asks the leader to finish, the followers
to take their results and the leader to commit. It learns set sizes and the intersection size.
"""

from __future__ import annotations

from typing import Any

from fedsilo.coordinator.drivers import driver
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.errors import ConfigError, FedsiloError, JobError
from fedsilo.jobspec import psi_settings
from fedsilo.wire import Envelope, StepPayload


def start_meta(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    """The psi step's settings as every silo reads them from the accepted spec (for the log and
    the job's result; the silos take them from their own copy of the spec, not from here)."""
    psi = psi_settings(run.wire_spec, run.step_index, run.with_role("passive"))
    return {
        "mode": psi.mode,
        "reveal": list(psi.reveal),
        "alignment": psi.alignment,
        "replace": psi.replace,
    }


def _inflight(replies: dict[str, StepPayload]) -> dict[str, list[Envelope]]:
    """Envelopes from this round's replies, grouped by the silo they go to next round."""
    out: dict[str, list[Envelope]] = {}
    for reply in replies.values():
        for env in reply.envelopes:
            out.setdefault(env.recipient, []).append(env)
    return out


class _Counts:
    """Progress of the rounds: ids hashed and blinded by their owners, then blinded again by
    the counterpart (what the match compares), against the set sizes the silos announced."""

    def __init__(self, run: JobRun, started: dict[str, StepPayload]) -> None:
        sizes: dict[str, int] = {
            p: r.meta["ids"] for p, r in started.items() if isinstance(r.meta.get("ids"), int)
        }
        leader, followers = run.active(), run.with_role("passive")
        own: int | None = None
        peer: int | None = None
        if len(sizes) == len(started):
            own = sum(sizes.values())
            peer = sizes[leader] * len(followers) + sum(sizes[f] for f in followers)
        self.own = run.progress.task("psi: ids hashed and blinded", total=own)
        self.peer = run.progress.task("psi: peers' ids blinded again", total=peer)
        self._done = {"own_ids": 0, "peer_ids": 0}

    def update(self, replies: dict[str, StepPayload]) -> None:
        for key, task in (("own_ids", self.own), ("peer_ids", self.peer)):
            now = sum(int(r.meta.get(key) or 0) for r in replies.values())
            task.advance(max(0, now - self._done[key]))
            self._done[key] = max(now, self._done[key])

    def finish(self) -> None:
        self.own.finish()
        self.peer.finish()


def _pump(run: JobRun, inflight: dict[str, list[Envelope]], counts: _Counts) -> None:
    """Relay rounds until every silo is idle and nothing is in flight.

    A round in which nothing is sent is progress if a silo blinded more of its own ids (a
    follower holds its points until its whole set is blinded); otherwise the PSI is stalled.
    """
    done: dict[str, Any] = {}
    while True:
        replies = run.call_many({p: ("psi.pump", {}, inflight.get(p, [])) for p in run.parties})
        counts.update(replies)
        inflight = _inflight(replies)
        idle = all(r.meta.get("idle") is True for r in replies.values())
        blinded = {p: r.meta.get("own_ids") for p, r in replies.items()}
        if not inflight:
            if idle:
                counts.finish()
                return
            if blinded == done:
                raise JobError("PSI stalled: a silo is not done but sent nothing")
        done = blinded


def _run(run: JobRun) -> dict[str, Any]:
    leader, followers = run.active(), run.with_role("passive")
    started = run.call_many({p: ("psi.start", {}, []) for p in run.parties})
    _pump(run, _inflight(started), _Counts(run, started))
    match = run.progress.task("psi: match", total=1)
    fin = run.call(leader, "psi.finish")
    match.finish()
    results = run.call_many({f: ("psi.result", {}, fin.outbox_for(f)) for f in followers})
    committed = run.call(leader, "psi.commit")
    stored = [p for p, r in {**results, leader: committed}.items() if r.meta.get("stored")]
    return {"count": int(fin.meta["count"]), "stored_at": sorted(stored)}


@driver("psi")
def run_psi(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    followers = run.with_role("passive")
    if not followers or set(run.parties) != {run.active(), *followers}:
        raise ConfigError(
            "a psi step needs one label holder (role 'active') and passive parties only"
        )
    meta = start_meta(run, step)
    run.log(f"psi ({meta['mode']}) between {', '.join(run.parties)}")
    try:
        out = _run(run)
    except FedsiloError:
        _abort(run)
        raise
    alignment = meta["alignment"] if meta["mode"] == "alignment" else None
    run.log(f"psi: intersection of {out['count']} rows; stored at {out['stored_at'] or 'none'}")
    return {"alignment": alignment, "mode": meta["mode"], **out}


def _abort(run: JobRun) -> None:
    """Best effort: every reachable silo deletes the alignment this job stored, if any (also
    after a cancellation)."""
    for party in run.parties:
        try:
            run.cleanup_call(party, "psi.abort")
        except FedsiloError:
            pass
