"""What a silo stores when a ``serve`` step prepares a model for online scoring.

One JSON record per serving, in the silo's own model-part table under ``serving/<job id>``:
the registry id and this silo's part of the model, its role, the pseudonym key, the serving key
shared with each peer and (vertical LR) the pairwise mask seeds. It survives restarts, so a
silo that comes back serves again without a new ``serve`` step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedsilo.errors import DataError, NotFound, PolicyError
from fedsilo.silo_node.context import SiloContext

__all__ = ["SERVING_KIND", "ServingRecord", "load_record", "record_id", "save_record"]

#: the kind under which serving records sit in the model-part table
SERVING_KIND = "serving"


def record_id(serving_id: str) -> str:
    return f"serving/{serving_id}"


@dataclass(frozen=True)
class ServingRecord:
    serving_id: str
    model: str
    part: str
    kind: str
    role: str
    party: str
    dataset: str
    active: str
    passives: tuple[str, ...]
    on_party_down: str
    pseudonym_key: bytes = field(repr=False)
    #: peer -> serving key (the label holder: one per passive silo; a passive: its label holder)
    channels: dict[str, bytes] = field(repr=False, default_factory=dict)
    #: peer -> pairwise mask seed (vertical LR passive silos only)
    pair_seeds: dict[str, bytes] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "serving_id": self.serving_id,
            "model": self.model,
            "part": self.part,
            "kind": self.kind,
            "role": self.role,
            "party": self.party,
            "dataset": self.dataset,
            "active": self.active,
            "passives": list(self.passives),
            "on_party_down": self.on_party_down,
            "pseudonym_key": self.pseudonym_key.hex(),
            "channels": {p: k.hex() for p, k in self.channels.items()},
            "pair_seeds": {p: k.hex() for p, k in self.pair_seeds.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServingRecord:
        try:
            return cls(
                serving_id=str(d["serving_id"]),
                model=str(d["model"]),
                part=str(d["part"]),
                kind=str(d["kind"]),
                role=str(d["role"]),
                party=str(d["party"]),
                dataset=str(d["dataset"]),
                active=str(d["active"]),
                passives=tuple(str(p) for p in d["passives"]),
                on_party_down=str(d["on_party_down"]),
                pseudonym_key=bytes.fromhex(d["pseudonym_key"]),
                channels={str(p): bytes.fromhex(k) for p, k in d["channels"].items()},
                pair_seeds={str(p): bytes.fromhex(k) for p, k in d["pair_seeds"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"bad serving record: {exc}") from None


def save_record(ctx: SiloContext, record: ServingRecord) -> None:
    ctx.store.save_model_part(record_id(record.serving_id), SERVING_KIND, record.to_dict())


def load_record(ctx: SiloContext, serving_id: str) -> ServingRecord:
    """The stored record of ``serving_id``, still allowed by this silo's policy now."""
    try:
        part = ctx.store.load_model_part(record_id(serving_id))
    except NotFound:
        raise NotFound(
            f"serving '{serving_id[:80]}' was not prepared at '{ctx.party}' (run its serve step)"
        ) from None
    if part.kind != SERVING_KIND:
        raise DataError(f"'{record_id(serving_id)[:80]}' is not a serving record")
    record = ServingRecord.from_dict(part.payload)
    check_served(ctx, record.model)
    return record


def check_served(ctx: SiloContext, model: str) -> None:
    """Refuse a model this silo's policy does not list in ``serve_models`` (checked when a
    serving is prepared and again every time a Serve stream opens)."""
    if model not in ctx.config.policy.serve_models:
        raise PolicyError(
            f"silo '{ctx.party}' does not serve model '{model[:80]}' online "
            "(not in its [policy] serve_models)"
        )
