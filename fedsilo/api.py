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

import json
import ssl
import tempfile
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedsilo import settings
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
from fedsilo.errors import (
    AuthError,
    ConfigError,
    FedsiloError,
    LimitExceeded,
    NotFound,
    PolicyError,
    ProtocolError,
    SiloUnavailable,
)
from fedsilo.progress import Progress

__all__ = ["Consortium", "OnlineModel"]

#: the scoring endpoint's HTTP statuses back to fedsilo's errors (the inverse of its table)
_HTTP_ERRORS: dict[int, type[FedsiloError]] = {
    400: ProtocolError,
    401: AuthError,
    403: PolicyError,
    404: NotFound,
    429: LimitExceeded,
    503: SiloUnavailable,
}


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

    def online(self, url: str, model_id: str, **auth: Any) -> OnlineModel:
        """The served ``model_id`` at the label holder's endpoint ``url`` (see OnlineModel)."""
        return OnlineModel(url, model_id, **auth)


class OnlineModel:
    """A served model at its label holder's scoring endpoint (docs/serving.md)::

        model = OnlineModel("https://bank:8443", "fraud-secureboost-v1", token_file="token")
        model.predict_proba(["C0017530"])          # (n, 2), as scikit-learn's
        model.score([{"id": "C1", "features": {...}}])   # the endpoint's full answer

    For small requests (a payment waiting for its fraud score); a larger set is cut into
    requests of ``SERVING_MAX_REQUEST_ROWS``, and whole tables belong to batch scoring
    (``fedsilo score``), which writes at the label holder.
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        token: str | None = None,
        token_file: str | Path | None = None,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"scoring endpoint '{url[:80]}' must be an http:// or https:// URL")
        self.url, self.model, self.timeout_s = url.rstrip("/"), model, timeout_s
        if token_file is not None:
            token = Path(token_file).read_text().strip()
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._context: ssl.SSLContext | None = None
        if self.url.startswith("https://"):
            self._context = ssl.create_default_context(cafile=str(ca) if ca else None)
            if cert and key:
                self._context.load_cert_chain(str(cert), str(key))

    def score(
        self, transactions: list[dict[str, Any]], *, deadline_ms: int | None = None
    ) -> dict[str, Any]:
        """One request as the endpoint takes it; its JSON answer, or the error it names."""
        body: dict[str, Any] = {"transactions": transactions}
        if deadline_ms is not None:
            body["deadline_ms"] = deadline_ms
        req = urllib.request.Request(  # noqa: S310 (the scheme is checked in __init__)
            f"{self.url}/v1/models/{urllib.parse.quote(self.model, safe='')}/score",
            data=json.dumps(body).encode(),
            headers=self._headers,
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 (http(s) only, checked in __init__)
                req, timeout=self.timeout_s, context=self._context
            ) as r:
                answer: dict[str, Any] = json.loads(r.read())
                return answer
        except urllib.error.HTTPError as err:
            try:
                reason = str(json.loads(err.read()).get("error", err.reason))
            except ValueError:
                reason = str(err.reason)
            raise _HTTP_ERRORS.get(err.code, FedsiloError)(reason) from None
        except (urllib.error.URLError, OSError) as err:
            raise SiloUnavailable(f"scoring endpoint {self.url}: {err}") from None

    def predict_proba(
        self,
        ids: Sequence[str],
        features: Sequence[dict[str, float] | None] | None = None,
        *,
        deadline_ms: int | None = None,
    ) -> np.ndarray:
        """``(n, 2)`` probabilities of the negative and positive class for ``ids``."""
        out: list[float] = []
        step = settings.SERVING_MAX_REQUEST_ROWS
        for start in range(0, len(ids), step):
            chunk = []
            for k in range(start, min(start + step, len(ids))):
                tx: dict[str, Any] = {"id": str(ids[k])}
                if features is not None and features[k] is not None:
                    tx["features"] = features[k]
                chunk.append(tx)
            answer = self.score(chunk, deadline_ms=deadline_ms)
            out.extend(float(r["score"]) for r in answer["results"])
        p = np.asarray(out, dtype=np.float64)
        return np.column_stack([1.0 - p, p])
