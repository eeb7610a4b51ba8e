"""Everything a step may use at a silo: config, data, own tables, ledger, open sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedsilo.crypto.sealing import JobKeys
from fedsilo.errors import PolicyError, ProtocolError
from fedsilo.jobschema import check_step, step_label
from fedsilo.jobspec import previous_step, selection_key
from fedsilo.protocols import JOB_STEPS, ROLES
from fedsilo.silo_node.config import SiloConfig
from fedsilo.silo_node.data import SiloData
from fedsilo.silo_node.session import JobSession, SessionTable, spec_hash
from fedsilo.silo_node.store import Ledger, SiloStore

__all__ = ["SiloContext"]


@dataclass
class SiloContext:
    config: SiloConfig
    data: SiloData
    store: SiloStore
    ledger: Ledger
    sessions: SessionTable = field(default_factory=SessionTable)

    @property
    def party(self) -> str:
        return self.config.party

    def job_columns(self, session: JobSession, step_index: int | None = None) -> list[str]:
        """The columns this silo works with in a job: its spec entry's ``columns``, else the
        dataset's declared features (reads check them against policy); for step ``step_index``,
        only those the last ``select`` step before it kept at this silo."""
        named = session.parties.get(self.party, {}).get("columns")
        cols = named if named is not None else self.config.datasets[session.dataset].features
        out = [str(c) for c in cols]
        chosen = None if step_index is None else previous_step(session.spec, step_index, "select")
        if chosen is None:
            return out
        stored = self.store.load_checkpoint(session.job_id, selection_key(chosen))
        if stored is None or not isinstance(stored.get("columns"), list):
            raise ProtocolError(
                f"{step_label(chosen, 'select')} of job '{session.job_id[:64]}' has not run at "
                f"'{self.party}'"
            )
        kept = {str(c) for c in stored["columns"]}
        return [c for c in out if c in kept]

    def open_session(self, job_id: str, spec: dict[str, Any], *, resume: bool) -> JobSession:
        """Check the job against this silo's policy and open its session (nothing runs if not)."""
        mine = spec.get("parties", {}).get(self.party)
        if not isinstance(mine, dict):
            raise PolicyError(f"job '{job_id}' does not name party '{self.party}'")
        role, dataset = str(mine.get("role", "")), str(mine.get("dataset", ""))
        if role not in ROLES:
            raise ProtocolError(f"job '{job_id}' gives '{self.party}' an unknown role '{role}'")
        if dataset not in self.config.datasets:
            raise PolicyError(f"silo '{self.party}' has no dataset '{dataset}' for job '{job_id}'")
        columns = mine.get("columns")
        if columns is not None:
            self.config.policy.check_columns(dataset, list(columns))
        for index, entry in enumerate(spec.get("steps", [])):
            self._check_step_policy(entry, index, role, dataset, columns)
        self._check_reopen(job_id, spec, resume=resume)
        keys = JobKeys(party=self.party, job_id=job_id)
        session = JobSession(
            job_id=job_id, spec=spec, role=role, dataset=dataset, resume=resume, keys=keys
        )
        self.sessions.add(session)
        return session

    def _check_step_policy(
        self, entry: dict[str, Any], index: int, role: str, dataset: str, columns: list[str] | None
    ) -> None:
        """What this silo's policy says about one step's parameters, before anything runs:
        the protocol in this role, the Paillier key size, the dataset an evaluation reads here.
        (The spec was checked against the job schema already, ``check_spec_shape``.)"""
        kind = str(entry.get("kind", ""))
        policy = self.config.policy
        try:
            if kind not in JOB_STEPS:
                policy.check_protocol(kind, role)
            values = check_step(entry, index)
            if "key_bits" in values:
                policy.check_paillier_bits(int(values["key_bits"]))
            target = values.get("evaluate_on")
            if target is not None and target["party"] == self.party:
                cols = columns if columns is not None else self.config.datasets[dataset].features
                policy.check_columns(str(target["dataset"]), [str(c) for c in cols])
        except PolicyError as err:
            raise PolicyError(f"{step_label(index, kind[:40])}: {err}") from None

    def _check_reopen(self, job_id: str, spec: dict[str, Any], *, resume: bool) -> None:
        """An open job is never opened again, except as a resume of the very same spec: a second
        OpenJob would otherwise replace the session (keys, state) and re-arm its step counter."""
        open_ = self.sessions.find(job_id)
        if open_ is None:
            return
        if not resume or spec_hash(open_.spec) != spec_hash(spec):
            raise ProtocolError(
                f"job '{job_id[:64]}' is already open at '{self.party}' (only a resume of the "
                "same job spec may open it again)"
            )
