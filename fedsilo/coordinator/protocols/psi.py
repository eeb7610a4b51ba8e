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

from fedsilo.coordinator.jobrun import JobRun
from fedsilo.coordinator.protocols import driver
from fedsilo.errors import ConfigError, FedsiloError, JobError
from fedsilo.wire import Envelope, StepPayload

_STEP_KEYS = {"kind", "alignment", "mode", "reveal", "replace"}


def _reveal(step: dict[str, Any], followers: list[str]) -> list[str]:
    """The passive silos that learn the alignment."""
    reveal = step.get("reveal", "all")
    if reveal == "all":
        return followers
    if reveal == "leader":
        return []
    if isinstance(reveal, list) and all(r in followers for r in reveal):
        return sorted(set(reveal))
    raise ConfigError('psi \'reveal\' must be "all", "leader" or a list of passive parties')


def start_meta(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    """The checked ``psi.start`` meta from the job's step table."""
    unknown = sorted(set(step) - _STEP_KEYS)
    if unknown:
        raise ConfigError(f"step 'psi' has unknown key '{unknown[0]}'")
    mode = step.get("mode", "alignment")
    if mode not in ("alignment", "cardinality"):
        raise ConfigError('psi \'mode\' must be "alignment" or "cardinality"')
    reveal = _reveal(step, run.with_role("passive")) if mode == "alignment" else []
    name = step.get("alignment", run.spec.name)
    if not isinstance(name, str) or not name:
        raise ConfigError("psi 'alignment' must be a non-empty string")
    return {
        "mode": mode,
        "reveal": reveal,
        "alignment": name,
        "replace": bool(step.get("replace", False)),
    }


def _inflight(replies: dict[str, StepPayload]) -> dict[str, list[Envelope]]:
    """Envelopes from this round's replies, grouped by the silo they go to next round."""
    out: dict[str, list[Envelope]] = {}
    for reply in replies.values():
        for env in reply.envelopes:
            out.setdefault(env.recipient, []).append(env)
    return out


def _pump(run: JobRun, inflight: dict[str, list[Envelope]]) -> None:
    """Relay rounds until every silo is idle and nothing is in flight."""
    while True:
        replies = run.call_many({p: ("psi.pump", {}, inflight.get(p, [])) for p in run.parties})
        inflight = _inflight(replies)
        idle = all(r.meta.get("idle") is True for r in replies.values())
        if not inflight:
            if idle:
                return
            raise JobError("PSI stalled: a silo is not done but sent nothing")


def _run(run: JobRun, meta: dict[str, Any]) -> dict[str, Any]:
    leader, followers = run.active(), run.with_role("passive")
    started = run.call_many({p: ("psi.start", meta, []) for p in run.parties})
    _pump(run, _inflight(started))
    fin = run.call(leader, "psi.finish")
    results = run.call_many({f: ("psi.result", {}, fin.outbox_for(f)) for f in followers})
    committed = run.call(leader, "psi.commit")
    stored = [p for p, r in {**results, leader: committed}.items() if r.meta.get("stored")]
    return {"count": int(fin.meta["count"]), "stored_at": sorted(stored)}


@driver("psi")
def run_psi(run: JobRun, step: dict[str, Any]) -> dict[str, Any]:
    followers = run.with_role("passive")
    if not followers or set(run.parties) != {run.active(), *followers}:
        raise ConfigError("a psi step needs one active party and passive parties only")
    meta = start_meta(run, step)
    run.log(f"psi ({meta['mode']}) between {', '.join(run.parties)}")
    try:
        out = _run(run, meta)
    except FedsiloError:
        _abort(run, meta["alignment"])
        raise
    alignment = meta["alignment"] if meta["mode"] == "alignment" else None
    run.log(f"psi: intersection of {out['count']} rows; stored at {out['stored_at'] or 'none'}")
    return {"alignment": alignment, "mode": meta["mode"], **out}


def _abort(run: JobRun, name: str) -> None:
    """Best effort: every reachable silo deletes the alignment this job stored, if any."""
    for party in run.parties:
        try:
            run.call(party, "psi.abort", {"alignment": name})
        except FedsiloError:
            pass
