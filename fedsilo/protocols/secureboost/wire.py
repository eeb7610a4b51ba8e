"""SecureBoost messages: the registered kinds and their array layouts, in one place.

Every kind is registered with :func:`fedsilo.leakage.register_kind` and the sentence saying
what its recipient learns (``docs/leakage.md`` has the same table). Builders and readers here are
the only code that knows how a message's arrays are laid out; readers check every length and
index, so a malformed message is a :class:`~fedsilo.errors.ProtocolError`, never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedsilo.errors import ProtocolError
from fedsilo.leakage import register_kind
from fedsilo.message import Message
from fedsilo.ml.secure_hist import EncryptedHistogram
from fedsilo.ml.tree import HistLayout
from fedsilo.protocols.secureboost.model import SplitTable

__all__ = ["read_routes", "routes_message"]

# --- message kinds -------------------------------------------------------------------------------

SETUP = register_kind(
    "sgb.setup",
    reveals="the label holder's Paillier public key and a generator of the subgroup its encryption "
    "randomness lies in (to re-randomise replies with), the training parameters and which aligned "
    "rows are training rows (the others are its validation rows)",
)
LAYOUT = register_kind(
    "sgb.layout",
    reveals="how many bins each of the passive party's features has, and their names only if "
    "its policy allows",
)
GRADIENTS = register_kind(
    "sgb.gradients",
    reveals="Paillier ciphertexts of each sampled row's gradient and hessian (nothing, under "
    "DCR), which rows the tree samples and which of the recipient's features it may use",
)
HIST_REQUEST = register_kind(
    "sgb.hist_request",
    reveals="the instance space of each node to be split: which training rows reach it",
)
HISTOGRAMS = register_kind(
    "sgb.histograms",
    reveals="to the label holder, who decrypts them: per node and bin of the sender's features "
    "the sums of gradients and hessians; which bins are empty and which is the fullest; "
    "nothing more about which rows were summed (every ciphertext is re-randomised)",
)
SPLIT = register_kind(
    "sgb.split",
    reveals="that the recipient owns a node's split, which of its features and bins won, the "
    "default direction of missing values, and the node's rows",
)
SPLIT_REPLY = register_kind(
    "sgb.split_reply",
    reveals="which rows of the node go left (the instance spaces of the children)",
)
ROUTE_REQUEST = register_kind(
    "sgb.route_request",
    reveals="which aligned rows are being predicted and for which trees",
)
ROUTES = register_kind(
    "sgb.routes",
    reveals="for every requested row, the side it takes at every node the sender owns (all of "
    "them, not only those on the row's path)",
)
FINISH = register_kind("sgb.finish", reveals="how many trees the final model keeps")


# --- ragged arrays in messages -------------------------------------------------------------------


def ragged(parts: Sequence[np.ndarray], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    flat = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    return offsets, flat


def unragged(offsets: np.ndarray, flat: np.ndarray, count: int) -> list[np.ndarray]:
    if (
        len(offsets) != count + 1
        or offsets[0] != 0
        or offsets[-1] != len(flat)
        or np.any(np.diff(offsets) < 0)
    ):
        raise ProtocolError("ragged array offsets are inconsistent")
    return [flat[offsets[i] : offsets[i + 1]] for i in range(count)]


def check_rows(rows: np.ndarray, n: int) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        raise ProtocolError("row index out of range")
    return rows


def pack_bits(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return ragged([np.packbits(m.astype(bool)) for m in masks], np.uint8)


def unpack_bits(offsets: np.ndarray, flat: np.ndarray, lengths: Sequence[int]) -> list[np.ndarray]:
    parts = unragged(offsets, flat, len(lengths))
    out = []
    for part, n in zip(parts, lengths, strict=True):
        if len(part) != (n + 7) // 8:
            raise ProtocolError("bit mask has the wrong length")
        out.append(np.unpackbits(part, count=n).astype(bool))
    return out


# --- histograms and routes ----------------------------------------------------------------------


def withheld(layout: HistLayout) -> EncryptedHistogram:
    """An empty answer: no slot present, none omitted; the label holder reads zeros."""
    return EncryptedHistogram(
        present=np.zeros(layout.n_slots, bool),
        omitted=np.full(layout.n_features, -1, np.int64),
        packed=b"",
    )


def histograms_message(
    tree: int, nodes: list[int], hists: list[EncryptedHistogram], width: int
) -> Message:
    present_off, present = ragged([h.present for h in hists], bool)
    omitted_off, omitted = ragged([h.omitted for h in hists], np.int64)
    counts = np.asarray([len(h.packed) // width for h in hists], dtype=np.int64)
    return Message(
        HISTOGRAMS,
        meta={"tree": tree},
        arrays={
            "nodes": np.asarray(nodes, np.int32),
            "present_offsets": present_off,
            "present": present,
            "omitted_offsets": omitted_off,
            "omitted": omitted,
            "packed_counts": counts,
        },
        blobs={"packed": b"".join(h.packed for h in hists)},
    )


def read_histograms(msg: Message, width: int) -> dict[int, EncryptedHistogram]:
    msg.expect(HISTOGRAMS)
    nodes = msg.array("nodes").tolist()
    present = unragged(msg.array("present_offsets"), msg.array("present"), len(nodes))
    omitted = unragged(msg.array("omitted_offsets"), msg.array("omitted"), len(nodes))
    counts = msg.array("packed_counts").astype(np.int64)
    blob = msg.blob("packed")
    if (
        len(counts) != len(nodes)
        or counts.min(initial=0) < 0
        or int(counts.sum()) * width != len(blob)
    ):
        raise ProtocolError("sgb.histograms: packed ciphertexts do not match their counts")
    ends = np.cumsum(counts) * width
    starts = ends - counts * width
    return {
        node: EncryptedHistogram(present[i].astype(bool), omitted[i], blob[starts[i] : ends[i]])
        for i, node in enumerate(nodes)
    }


def routes_message_from(routes: Mapping[tuple[int, int], np.ndarray], n_rows: int) -> Message:
    keys = np.asarray(list(routes.keys()), dtype=np.int32).reshape(-1, 2)
    offsets, bits = pack_bits(list(routes.values()))
    return Message(
        ROUTES, meta={"n_rows": n_rows}, arrays={"keys": keys, "offsets": offsets, "bits": bits}
    )


def routes_message(table: SplitTable, x: np.ndarray, trees: set[int] | None = None) -> Message:
    """An owner's answer for prediction: the side each row of ``x`` takes at its nodes."""
    return routes_message_from(table.route(x, trees), len(x))


def read_routes(
    msg: Message, n_rows: int, kind: str | None = ROUTES
) -> dict[tuple[int, int], np.ndarray]:
    """Left masks from a :func:`routes_message` (``kind=None``: the relay renamed it)."""
    if kind is not None:
        msg.expect(kind)
    keys = msg.array("keys").reshape(-1, 2).tolist()
    masks = unpack_bits(msg.array("offsets"), msg.array("bits"), [n_rows] * len(keys))
    return {(int(t), int(n)): m for (t, n), m in zip(keys, masks, strict=True)}
