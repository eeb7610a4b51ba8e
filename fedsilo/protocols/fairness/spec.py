"""A fairness step as the coordinator and every silo read it from the accepted job spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedsilo.errors import ConfigError
from fedsilo.jobschema import check_step, step_label
from fedsilo.jobspec import input_alignment, score_table, step_entry, test_alignment
from fedsilo.protocols.fairness.audit import AuditSettings
from fedsilo.protocols.fairness.groups import groupings

__all__ = ["FairnessStep", "fairness_step"]


@dataclass(frozen=True)
class FairnessStep:
    alignment: str
    attribute_party: str
    table: str
    #: the score version the step names (None: the job's score or evaluate step's model)
    model: str | None
    #: the evaluate step of this job whose scores are audited (None: a score table's)
    evaluate_index: int | None
    groupings: tuple[tuple[str, ...], ...]
    bands: dict[str, tuple[float, ...]]
    audit: AuditSettings

    @property
    def columns(self) -> list[str]:
        """Every attribute column the step reads at the attribute holder."""
        return list(dict.fromkeys(c for g in self.groupings for c in g))


def _scoring_step(spec: Mapping[str, Any], index: int, kinds: tuple[str, ...]) -> int | None:
    """The last step before ``index`` whose kind is one of ``kinds``."""
    for i in range(index - 1, -1, -1):
        if step_entry(spec, i).get("kind") in kinds:
            return i
    return None


def fairness_step(spec: Mapping[str, Any], index: int) -> FairnessStep:
    """The checked settings of fairness step ``index`` (``spec``: the wire form)."""
    values = check_step(step_entry(spec, index), index)
    where = step_label(index, "fairness")
    parties = spec.get("parties", {})
    passives = sorted(p for p, v in parties.items() if v.get("role") == "passive")
    holder = values["attribute_party"]
    if holder is None:
        if len(passives) != 1:
            raise ConfigError(
                f"{where}: 'attribute_party' must name the silo holding the attributes"
            )
        holder = passives[0]
    if holder not in parties or parties[holder].get("role") not in ("active", "passive"):
        raise ConfigError(f"{where}: 'attribute_party' {holder!r} is not a party of the job")
    scored = _scoring_step(spec, index, ("score",))
    table = values["table"] or (score_table(spec, scored) if scored is not None else "scores")
    latest = _scoring_step(spec, index, ("score", "evaluate"))
    evaluated = None
    if not (values["model"] or values["table"]) and latest is not None:
        if step_entry(spec, latest).get("kind") == "evaluate":
            evaluated = latest  # the test rows' scores the label holder keeps from it
    if values["alignment"]:
        alignment = values["alignment"]
    elif evaluated is not None:
        alignment = test_alignment(spec, evaluated)
    elif scored is not None and not (values["model"] or values["table"]):
        alignment = step_entry(spec, scored).get("alignment") or input_alignment(spec, index)
    else:
        alignment = input_alignment(spec, index)
    groups = tuple(groupings(values["attributes"], values["intersections"] or []))
    bands = {str(k): tuple(float(e) for e in v) for k, v in (values["bands"] or {}).items()}
    unknown = sorted(set(bands) - {c for g in groups for c in g})
    if unknown:
        raise ConfigError(f"{where}: 'bands' names '{unknown[0]}', which no grouping uses")
    audit = AuditSettings(
        thresholds=tuple(float(t) for t in values["thresholds"]),
        approval_rates=tuple(float(a) for a in values["approval_rates"] or []),
        calibration_bands=int(values["calibration_bands"]),
        bins=int(values["bins"]),
        key_bits=int(values["key_bits"]),
        insecure_min_key_bits=values["insecure_min_key_bits"],
    )
    return FairnessStep(
        alignment=str(alignment),
        attribute_party=str(holder),
        table=str(table),
        model=values["model"],
        evaluate_index=evaluated,
        groupings=groups,
        bands=bands,
        audit=audit,
    )
