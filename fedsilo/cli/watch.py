"""Showing a job as it runs: its events and progress, from ``WatchJob`` updates.

One renderer for ``fedsilo run --coordinator`` (events as notes on stderr, bars beside them)
and ``fedsilo jobs logs --follow`` (events on stdout; with ``--json`` one JSON object per update
and line, the final one the job's status).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fedsilo.cli.progress import RichProgress
from fedsilo.protos import fedsilo_pb2 as pb

__all__ = ["follow", "status_dict"]


def status_dict(status: pb.JobStatus) -> dict[str, Any]:
    """A job's status as the JSON the CLI prints."""
    return {
        "job_id": status.job_id,
        "name": status.name,
        "state": status.state,
        "reason": status.reason,
        "exit_code": status.exit_code,
        "created_at": status.created_at,
        "updated_at": status.updated_at,
        "result": json.loads(status.result_json or "{}"),
    }


def event_line(event: pb.JobEvent) -> str:
    return f"{event.at}  {event.message}"


def follow(
    updates: Iterable[pb.JobUpdate],
    *,
    progress: RichProgress | None,
    events_on_stdout: bool,
    as_json: bool = False,
) -> pb.JobStatus | None:
    """Show ``updates`` until the final status, which is returned (None if the stream ended
    without one)."""
    for update in updates:
        body = update.WhichOneof("body")
        if as_json:
            print(json.dumps(_update_dict(update)), flush=True)
        if body == "status":
            return update.status
        if as_json:
            continue
        if body == "event":
            if events_on_stdout:
                print(event_line(update.event), flush=True)
            elif progress is not None:
                progress.note(update.event.message)
        elif body == "progress_json" and progress is not None:
            progress.show(json.loads(update.progress_json))
    return None


def _update_dict(update: pb.JobUpdate) -> dict[str, Any]:
    body = update.WhichOneof("body")
    if body == "event":
        e = update.event
        return {"event": {"seq": e.seq, "at": e.at, "message": e.message}}
    if body == "progress_json":
        return {"progress": json.loads(update.progress_json)}
    return {"status": status_dict(update.status)}
