"""The Python API for notebooks: the coordinator's verbs on one object.

::

    from fedsilo.api import Consortium

    consortium = Consortium("coordinator.toml")
    consortium.describe()                      # every silo: health, datasets (as they publish them)
    record = consortium.run("job.toml")        # PSI, split, train, evaluate, score
    consortium.models()                        # the registry
    consortium.model("default-risk-secureboost-v1").record["metrics"]

Jobs run in this process, talking to the silos over gRPC exactly as ``fedsilo run`` does; the
job store and model registry are the coordinator's database named in its config.
"""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path
from typing import Any

from fedsilo.coordinator.client import SiloClient
from fedsilo.coordinator.config import (
    CoordinatorConfig,
    JobSpec,
    load_coordinator_config,
    load_job_spec,
    parse_job_spec,
)
from fedsilo.coordinator.connect import connect_silos
from fedsilo.coordinator.orchestrator import run_job
from fedsilo.coordinator.store import JobRecord, JobStore, ModelRecord
from fedsilo.progress import Progress

__all__ = ["Consortium"]


class Consortium:
    """A consortium as its coordinator sees it."""

    def __init__(self, config: str | Path | CoordinatorConfig) -> None:
        self.config = (
            config
            if isinstance(config, CoordinatorConfig)
            else load_coordinator_config(Path(config))
        )
        self.store = JobStore(self.config.database_url)

    def clients(self, parties: list[str] | None = None) -> dict[str, SiloClient]:
        return connect_silos(self.config, parties)

    def describe(self) -> dict[str, dict[str, Any]]:
        """Health and published datasets of every silo."""
        out = {}
        for party, client in self.clients().items():
            info = client.describe()
            out[party] = {
                "health": client.health(),
                "api_version": info.api_version,
                "datasets": {
                    d.name: {"rows": d.rows, "features": list(d.features), "label": d.label or None}
                    for d in info.datasets
                },
            }
        return out

    def _spec(self, job: str | Path | dict[str, Any]) -> JobSpec:
        if isinstance(job, dict):
            raw = {k: v for k, v in job.items() if k != "coordinator"}
            return parse_job_spec(raw, Path(tempfile.gettempdir()) / "job.toml")
        path = Path(job)
        if path.suffix == ".toml" and path.exists():
            raw = tomllib.loads(path.read_text())
            raw.pop("coordinator", None)
            return parse_job_spec(raw, path)
        return load_job_spec(path)

    def run(
        self,
        job: str | Path | dict[str, Any],
        *,
        resume: str | None = None,
        progress: Progress | None = None,
    ) -> JobRecord:
        """Run a job (a TOML path or the same structure as a dict) to its final state."""
        spec = self._spec(job)
        return run_job(
            spec,
            clients=self.clients(sorted(spec.parties)),
            store=self.store,
            progress=progress,
            job_id=resume,
            resume=resume is not None,
        )

    def jobs(self) -> list[JobRecord]:
        return self.store.list_jobs()

    def job(self, job_id: str) -> JobRecord:
        return self.store.get_job(job_id)

    def cancel(self, job_id: str) -> bool:
        """Ask whoever runs the job to cancel it (``fedsilo jobs cancel``); False if it had
        already ended. The job ends ``cancelled`` within about a second."""
        return self.store.request_cancel(job_id)

    def models(self) -> list[ModelRecord]:
        return self.store.list_models()

    def model(self, model_id: str) -> ModelRecord:
        return self.store.get_model(model_id)
