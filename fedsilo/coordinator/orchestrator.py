"""Run a job end to end: open sessions, exchange session keys, run each step's driver.

States move queued -> running -> succeeded | failed (with the reason) | cancelled (``fedsilo jobs
cancel``: see ``fedsilo.coordinator.cancel``). Whatever happens, the job ends in a final state and
the silos' sessions are closed; a coordinator that dies mid-job leaves a running row that the next
start marks failed (``JobStore.fail_interrupted``). A job that did not succeed records the class of
its error under ``error`` in its result, so any process can exit with that error's code.

Resume is per step: each step's output is written to the job's result as the step completes,
and ``run_job(..., job_id, resume=True)`` skips the leading steps an earlier run completed with
the same definition (their products — alignments, model parts, scores — are in the silos'
databases), reloading their outputs into ``run.results``. A step that failed half-way runs
again, but training resumes inside it: SecureBoost from the last completed tree and vertical LR
from the last completed epoch (every silo checkpoints its part after each, see
``fedsilo.silo_node.training_checkpoint``; the final model is the one an uninterrupted run
makes), and scoring skips the chunks it already wrote. Other steps start over.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fedsilo.coordinator.cancel import CANCELLED_REASON, CancelWatch
from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.config import JobSpec
from fedsilo.coordinator.drivers import check_job, get_driver
from fedsilo.coordinator.jobrun import JobRun
from fedsilo.coordinator.progress import RecordedProgress
from fedsilo.coordinator.store import JobRecord, JobStore
from fedsilo.crypto.ledger_heads import SignedHead
from fedsilo.errors import FedsiloError, JobCancelled, JobError, NotFound, root_cause
from fedsilo.jobschema import check_steps
from fedsilo.progress import NullProgress, Progress

__all__ = ["run_job", "step_key"]

log = logging.getLogger(__name__)


def _parallel(parties: list[str], fn: Callable[[str], Any]) -> dict[str, Any]:
    with ThreadPoolExecutor(max_workers=max(1, len(parties))) as pool:
        futures = {p: pool.submit(fn, p) for p in parties}
        return {p: f.result() for p, f in futures.items()}


def _open_sessions(run: JobRun) -> None:
    wire = run.spec.to_wire(run.job_id)
    opened = _parallel(
        run.parties, lambda p: run.clients[p].open_job(run.job_id, wire, resume=run.resume)
    )
    keys = {p: key for p, (key, _accepted) in opened.items()}
    _parallel(run.parties, lambda p: run.clients[p].set_peers(run.job_id, keys))
    run.log(f"sessions open at {', '.join(run.parties)}")


def _close_sessions(run: JobRun, *, failed: bool, reason: str) -> None:
    """Close every silo's session, concurrently: a dead silo costs one short deadline, once."""

    def close(party: str) -> SignedHead | None:
        try:
            return run.clients[party].close_job(run.job_id, failed=failed, reason=reason)
        except FedsiloError as err:  # a dead silo must not hide the job's own outcome
            level = logging.INFO if failed else logging.WARNING  # the job's error says it
            log.log(level, "could not close job %s at %s: %s", run.job_id, party, err)
            return None

    closed = _parallel(run.parties, close)
    _keep_heads(run, {p: h for p, h in closed.items() if h is not None})


def _keep_heads(run: JobRun, heads: dict[str, SignedHead]) -> None:
    """Keep each silo's signed ledger head and relay it to the job's other parties, so a silo
    that later cuts or rewrites its ledger is contradicted by copies it does not hold. Best
    effort, like the close: a silo that cannot take them must not change the job's outcome."""
    kept: dict[str, SignedHead] = {}
    for party, head in heads.items():
        try:
            run.store.save_ledger_head(run.job_id, party, head)
            kept[party] = head
        except FedsiloError as err:  # a malformed head is the silo's problem, not the job's
            log.warning("ledger head of %s for job %s not kept: %s", party, run.job_id, err)

    def relay(party: str) -> None:
        others = [h for p, h in kept.items() if p != party]
        try:
            if others:
                run.clients[party].keep_ledger_heads(run.job_id, others)
        except FedsiloError as err:
            log.warning("could not relay ledger heads of job %s to %s: %s", run.job_id, party, err)

    _parallel(sorted(kept), relay)
    if kept:
        run.log("ledger heads kept: " + ", ".join(f"{p} #{h.head.seq}" for p, h in kept.items()))


def step_key(index: int, step: dict[str, Any]) -> str:
    """The key of step ``index`` (0-based) in a job's outputs: ``"2:split"``."""
    return f"{index + 1}:{step['kind']}"


def _done_before(store: JobStore, spec: JobSpec, job_id: str) -> dict[str, Any]:
    """Outputs of the leading steps an earlier run of ``job_id`` completed, unchanged since.

    Each completed step's output is recorded in the job's result as it completes (see
    ``_run_steps``), and what it made (alignments, model parts, scores) lives in the silos'
    databases, so a resumed run can start after it. A step counts only if the earlier run ran the
    very same step definition, and only as part of an unbroken prefix: a later step may depend on
    anything before it.
    """
    record = store.get_job(job_id)
    now = json.loads(json.dumps(spec.to_wire("")))  # as stored: JSON types
    if record.spec.get("parties") != now["parties"]:
        return {}
    earlier_steps = record.spec.get("steps", [])
    done: dict[str, Any] = {}
    for index, step in enumerate(now["steps"]):
        key = step_key(index, step)
        same = index < len(earlier_steps) and earlier_steps[index] == step
        if not same or key not in record.result:
            break
        done[key] = record.result[key]
    return done


def _run_steps(run: JobRun, done: dict[str, Any]) -> dict[str, Any]:
    """Run the job's steps after those in ``done``, recording each output as it completes."""
    outputs: dict[str, Any] = {}
    for index, step in enumerate(run.spec.steps):
        kind, key = str(step["kind"]), step_key(index, step)
        if key in done:
            out = done[key]
        else:
            drive = get_driver(kind)
            run.step_index = index
            run.log(f"step {index + 1}/{len(run.spec.steps)}: {kind}")
            out = drive(run, step)
        outputs[key] = out
        run.results[kind] = out
        run.store.set_state(run.job_id, "running", result=outputs)  # the resume checkpoint
    outputs["relayed_bytes"] = run.relayed_bytes
    return outputs


def _job_row(store: JobStore, spec: JobSpec, job_id: str | None, *, resume: bool) -> str:
    """The id of the job's row: the one named if it exists, else a new one.

    A named row exists when the job is resumed, and when the coordinator service queued it at
    SubmitJob before its worker got here; creating it a second time would fail and leave the
    job ``queued`` for good. Resuming a job that does not exist is NotFound.
    """
    if job_id:
        try:
            return store.get_job(job_id).job_id
        except NotFound:
            if resume:
                raise
    return store.create_job(spec.name, spec.to_wire(""), job_id)


def _end(run: JobRun, state: str, reason: str, err: BaseException, *, close: bool) -> None:
    """End a job that did not succeed: its event, the close at every silo it reached, then its
    final state with the class of its error (its exit code's source). The state comes last, so
    whoever sees it final (``WatchJob``) has every event of the job already."""
    run.store.add_event(run.job_id, f"{state}: {reason}")
    try:
        if close:
            why = "cancelled" if state == "cancelled" else reason
            _close_sessions(run, failed=True, reason=why)
    finally:
        kind = type(root_cause(err) if isinstance(err, FedsiloError) else err).__name__
        result = {**run.store.get_job(run.job_id).result, "error": kind}
        run.store.set_state(run.job_id, state, reason=reason, result=result)


def run_job(
    spec: JobSpec,
    *,
    clients: dict[str, SiloClient],
    store: JobStore,
    progress: Progress | None = None,
    job_id: str | None = None,
    resume: bool = False,
) -> JobRecord:
    """Run ``spec`` to a final state and return its record; a failure raises JobError (a
    cancellation JobCancelled)."""
    missing = sorted(set(spec.parties) - set(clients))
    if missing:
        raise JobError(f"no client for party '{missing[0]}'")
    check_steps(spec.steps)  # unknown kinds and keys fail before anything is recorded or runs
    job_id = _job_row(store, spec, job_id, resume=resume)
    done = _done_before(store, spec, job_id) if resume else {}
    if resume:
        store.clear_cancel(job_id)  # an earlier run's cancellation does not stop this one
    recorded = RecordedProgress(store, job_id, progress or NullProgress())
    run = JobRun(
        job_id=job_id, spec=spec, clients=clients, store=store, progress=recorded, resume=resume
    )
    store.set_state(job_id, "running", result=done)
    store.set_spec(job_id, spec.to_wire(""))  # a resume may change the steps it reruns
    if resume:
        run.log(
            f"resuming: {len(done)} of {len(spec.steps)} step(s) done in an earlier run"
            + (f" ({', '.join(done)})" if done else "")
        )
    try:
        with CancelWatch(store, job_id, run.cancel):
            outputs = _run_guarded(run, done)
    except FedsiloError as err:
        err.job_id = job_id  # type: ignore[attr-defined]  # for callers that report the job
        raise
    finally:
        recorded.flush()
    run.log("succeeded")
    try:
        _close_sessions(run, failed=False, reason="")
    finally:
        store.set_state(job_id, "succeeded", result=outputs)
    return store.get_job(job_id)


def _run_guarded(run: JobRun, done: dict[str, Any]) -> dict[str, Any]:
    """Check, open and run the job's steps; on any error or a cancellation record its end and
    close it at every silo it reached, then raise."""
    job_id, store = run.job_id, run.store
    contacted = False  # a job refused by a pre-flight check never reaches a silo, not even to close
    try:
        check_job(run.spec)  # keys, types, bounds, roles: refused before any silo is contacted
        run.cancel.check(job_id)  # cancelled while queued: no silo is contacted
        contacted = True
        _open_sessions(run)
        return _run_steps(run, done)
    except FedsiloError as err:
        if run.cancel.cancelled or isinstance(err, JobCancelled):
            cancelled = JobCancelled(f"job '{job_id}' {CANCELLED_REASON}")
            _end(run, "cancelled", CANCELLED_REASON, cancelled, close=contacted)
            raise cancelled from None
        _end(run, "failed", str(err), err, close=contacted)
        raise JobError(f"job '{job_id}' failed: {err}") from err
    except BaseException as err:
        reason = f"internal error: {type(err).__name__}: {err}"
        _end(run, "failed", reason, err, close=contacted)
        raise
    finally:
        store.clear_cancel(job_id)
