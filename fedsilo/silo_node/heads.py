"""The silo's side of signed ledger heads: sign its own at job close, keep its peers'.

Why: the hash chain cannot show a cut tail, so copies of the head must live outside the silo's
database (:mod:`fedsilo.crypto.ledger_heads`). The silo signs with the key that signs its session
keys; a silo under mTLS keeps a peer's head only once it verified it against its own CA.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cryptography import x509

from fedsilo.crypto.ledger_heads import SignedHead, sign_head, unsigned_head, verify_head
from fedsilo.crypto.session_auth import SessionKeySigner
from fedsilo.errors import DataError, ProtocolError
from fedsilo.protos import fedsilo_pb2 as pb
from fedsilo.silo_node.ledger import Ledger

__all__ = ["keep_peer_heads", "sign_own_head", "to_pb"]

log = logging.getLogger(__name__)
#: most heads one relay may carry: one per other party of a job (a sanity bound, not a knob).
_MAX_HEADS = 64


def to_pb(signed: SignedHead) -> pb.SignedLedgerHead:
    return pb.SignedLedgerHead(
        statement=signed.statement,
        signature=signed.signature,
        certificate_pem=signed.certificate_pem,
    )


def sign_own_head(ledger: Ledger, job_id: str, signer: SessionKeySigner | None) -> SignedHead:
    """This silo's current head, signed (unsigned without a certificate key), and kept."""
    party = ledger.party or (signer.party if signer else "unnamed")
    seq, hash_ = ledger.head()
    genesis = ledger.genesis().hash
    if signer is None:
        signed = unsigned_head(party, job_id, seq, hash_, genesis)
    else:
        signed = sign_head(signer.key, signer.certificate_pem, party, job_id, seq, hash_, genesis)
    ledger.keep_head(signed)
    return signed


def _peer_head(
    message: pb.SignedLedgerHead, job_id: str, me: str | None, ca: x509.Certificate | None
) -> SignedHead:
    """A relayed head, checked: of this job, of another party, signed by it (under mTLS)."""
    signed = SignedHead(message.statement, message.signature, message.certificate_pem)
    try:
        head = signed.head
    except DataError as err:
        raise ProtocolError(f"relayed {err}") from None
    if head.job_id != job_id:
        raise ProtocolError(f"ledger head of '{head.party[:40]}' is for another job")
    if head.party == me:
        raise ProtocolError("a ledger head of this silo was relayed back to it")
    if ca is not None:
        verify_head(ca, signed)
    return signed


def keep_peer_heads(
    ledger: Ledger,
    job_id: str,
    heads: Sequence[pb.SignedLedgerHead],
    *,
    ca: x509.Certificate | None,
) -> int:
    """Keep the job's other parties' heads (all checked first, then all kept); how many were new.

    ``ca`` None is plaintext mode: heads are kept unverified (anyone could have written them).
    """
    if len(heads) > _MAX_HEADS:
        raise ProtocolError(f"more than {_MAX_HEADS} ledger heads in one relay")
    if not ledger.took_part(job_id):
        raise ProtocolError(f"job '{job_id[:64]}' is not a job of this silo")
    checked = [_peer_head(m, job_id, ledger.party, ca) for m in heads]
    if ca is None and checked:
        log.warning(
            "keeping %d ledger head(s) of job %s unverified (insecure_plaintext)",
            len(checked),
            job_id,
        )
    return sum(ledger.keep_head(signed) for signed in checked)
