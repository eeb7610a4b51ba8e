"""What the steps of a job spec mean, computed the same way by the coordinator and every silo.

A silo trusts only the job spec it accepted at OpenJob. The coordinator names the step a call
belongs to by its index; the silo reads that step's parameters from its own copy of the spec and
derives every input a step takes from earlier steps (the alignment PSI stored, the parts a split
made, the model part a training step saved) with the functions here, so that the coordinator's
per-call metadata carries positions (an epoch, a row range) and nothing a silo acts on blindly.

``spec`` below is the wire form of a job spec (``JobSpec.to_wire``): a mapping with ``name``,
``parties`` and ``steps``. Pure functions, no I/O: both sides import them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fedsilo.errors import ConfigError, ProtocolError
from fedsilo.jobschema import check_step, step_label
from fedsilo.protocols import TRAINING_KINDS

__all__ = [
    "TRAINING_KINDS",
    "PsiSettings",
    "SplitSettings",
    "chunk_rows",
    "input_alignment",
    "part_id",
    "previous_step",
    "selection_key",
    "psi_settings",
    "score_alignment",
    "score_table",
    "split_parts",
    "split_settings",
    "step_entry",
    "test_alignment",
    "train_alignments",
    "trained_kind",
]

_PARTS = ("train", "valid", "test")


def _steps(spec: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    steps = spec.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, Mapping) for s in steps):
        raise ProtocolError("job spec has no list of steps")
    return steps


def step_entry(spec: Mapping[str, Any], index: Any) -> Mapping[str, Any]:
    """Step number ``index`` (0-based) of the spec; a ProtocolError if there is none."""
    steps = _steps(spec)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(steps):
        raise ProtocolError("the step index names no step of the accepted job")
    return steps[index]


def part_id(job_id: str, kind: str) -> str:
    """The id under which every silo stores its part of the model a job's ``kind`` step trains."""
    return f"{job_id}-{kind}"


def _latest(spec: Mapping[str, Any], index: int, kinds: Sequence[str]) -> Mapping[str, Any] | None:
    """The last step before ``index`` whose kind is one of ``kinds``."""
    for entry in reversed(_steps(spec)[:index]):
        if entry.get("kind") in kinds:
            return entry
    return None


def previous_step(spec: Mapping[str, Any], index: int, kind: str) -> int | None:
    """The index of the last ``kind`` step before step ``index`` (a ``woe`` step a scorecard
    transforms with, the ``select`` step whose columns a training step reads), or None."""
    for i in range(index - 1, -1, -1):
        if _steps(spec)[i].get("kind") == kind:
            return i
    return None


def selection_key(index: int) -> str:
    """Where a silo stores the columns the ``select`` step ``index`` kept for it (a checkpoint of
    the job in its own database): training steps after it read only those."""
    return f"select/{index}"


# --- psi ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PsiSettings:
    """A psi step as every party reads it: mode, alignment name, who learns it, replace."""

    mode: str
    alignment: str
    reveal: tuple[str, ...]
    replace: bool


def psi_settings(spec: Mapping[str, Any], index: int, passives: Sequence[str]) -> PsiSettings:
    """The checked settings of psi step ``index`` (``passives``: the job's passive parties)."""
    values = check_step(step_entry(spec, index), index)
    mode = str(values["mode"])
    name = values["alignment"] or spec.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{step_label(index, 'psi')}: 'alignment' must be a non-empty string")
    reveal = _reveal(values["reveal"], passives, index) if mode == "alignment" else ()
    return PsiSettings(mode=mode, alignment=name, reveal=reveal, replace=bool(values["replace"]))


def _reveal(reveal: Any, passives: Sequence[str], index: int) -> tuple[str, ...]:
    if reveal == "all":
        return tuple(sorted(passives))
    if reveal == "leader":
        return ()
    if isinstance(reveal, list) and all(r in passives for r in reveal):
        return tuple(sorted(set(reveal)))
    raise ConfigError(
        f'{step_label(index, "psi")}: \'reveal\' must be "all", "leader" or a '
        "list of passive parties"
    )


def _psi_alignment(spec: Mapping[str, Any], index: int) -> str | None:
    """The alignment the last alignment-mode psi step before ``index`` stored, if any."""
    for i in range(index - 1, -1, -1):
        entry = _steps(spec)[i]
        if entry.get("kind") == "psi" and entry.get("mode", "alignment") == "alignment":
            name = entry.get("alignment", spec.get("name"))
            return str(name) if name else None
    return None


def input_alignment(spec: Mapping[str, Any], index: int) -> str:
    """The alignment step ``index`` works on: its own ``alignment``, else the PSI one before it."""
    entry = step_entry(spec, index)
    name = entry.get("alignment") or _psi_alignment(spec, index)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"step '{entry.get('kind')}' needs 'alignment' (or a psi step before it)")
    return name


# --- split -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitSettings:
    alignment: str
    test_fraction: float
    valid_fraction: float
    seed: int


def split_settings(spec: Mapping[str, Any], index: int) -> SplitSettings:
    """The checked settings of split step ``index``."""
    values = check_step(step_entry(spec, index), index)
    return SplitSettings(
        input_alignment(spec, index),
        float(values["test_fraction"]),
        float(values["valid_fraction"]),
        int(values["seed"]),
    )


def split_parts(spec: Mapping[str, Any], index: int) -> dict[str, str] | None:
    """``{"train": ..., "test": ..., ["valid": ...]}`` of the last split before ``index``."""
    for i in range(index - 1, -1, -1):
        if _steps(spec)[i].get("kind") == "split":
            settings = split_settings(spec, i)
            parts = {p: f"{settings.alignment}-{p}" for p in _PARTS}
            if settings.valid_fraction <= 0:
                del parts["valid"]
            return parts
    return None


def train_alignments(spec: Mapping[str, Any], index: int) -> tuple[str, str | None]:
    """(training, validation or None) alignments of training step ``index``: its own keys, else
    the last split's parts, else the PSI alignment."""
    entry = step_entry(spec, index)
    parts = split_parts(spec, index) or {}
    train = entry.get("alignment") or parts.get("train") or input_alignment(spec, index)
    valid = entry.get("valid_alignment", parts.get("valid"))
    return str(train), (str(valid) if valid else None)


def test_alignment(spec: Mapping[str, Any], index: int) -> str | None:
    """The alignment an evaluate step scores: its own ``alignment``, else the split's test part."""
    entry = step_entry(spec, index)
    name = entry.get("alignment") or (split_parts(spec, index) or {}).get("test")
    return str(name) if name else None


def trained_kind(spec: Mapping[str, Any], index: int) -> str | None:
    """The kind of the model step ``index`` uses when it names none: the last one trained before
    it in the job, or the training kind its ``model`` key names (``model = "secureboost"``)."""
    named = step_entry(spec, index).get("model")
    if named in TRAINING_KINDS:
        return str(named)
    if named:
        return None  # a registry id: a model of an earlier job
    latest = _latest(spec, index, TRAINING_KINDS)
    return str(latest["kind"]) if latest is not None else None


def score_alignment(spec: Mapping[str, Any], index: int, job_id: str) -> str:
    """The alignment a score step scores: its own ``alignment``, else the PSI one before it, else
    (a whole model scoring at one member alone) the member's own ids stored as ``<job>-local``."""
    entry = step_entry(spec, index)
    name = entry.get("alignment") or _psi_alignment(spec, index)
    return str(name) if name else f"{job_id}-local"


def score_table(spec: Mapping[str, Any], index: int) -> str:
    """The table a score step writes into at the label holder (default ``scores``)."""
    return str(check_step(step_entry(spec, index), index)["table"])


def chunk_rows(spec: Mapping[str, Any], index: int) -> int:
    """Rows per prediction call (and per write) of an evaluate or score step."""
    return int(check_step(step_entry(spec, index), index)["chunk_rows"])
