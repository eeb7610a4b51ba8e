"""mTLS for fedsilo's gRPC: credentials, the server identity check, the caller identity check.

The scheme
----------
Every party holds a certificate from the consortium CA (:mod:`fedsilo.crypto.certs`) whose
common name is its party name and whose SAN carries ``<party>.fedsilo.invalid``.

*The coordinator verifies each silo* (client side). It dials the silo's configured address (an
IP is fine) with :func:`channel_credentials`, trusting only the consortium CA, and with
:func:`identity_options` (``grpc.ssl_target_name_override = <party>.fedsilo.invalid``). gRPC
then accepts the server only if its certificate chains to the CA *and* names that party, so a
certificate issued to another member of the consortium cannot stand in for the silo, whatever
address it answers at.

*The silo authorises the caller* (server side). :func:`server_credentials` requires and verifies
a client certificate from the consortium CA (``require_client_auth=True``): a caller without
one, or with one from another CA, fails the TLS handshake and never reaches a servicer. The
:class:`IdentityInterceptor` then reads the verified certificate's common name
(:func:`peer_identity`) and its fedsilo role (:func:`peer_role`, from the certificate gRPC
verified) and lets through only the identities the silo is configured to answer (its
coordinator) holding the role it expects (``coordinator``); any other member of the consortium,
and a certificate under the coordinator's name but with the silo role or none, is refused with
``UNAUTHENTICATED`` (``AuthError``) before a handler runs, the health service included (a
silo's own certificate may also call its health check: ``fedsilo health`` in its container).

Plaintext exists only behind the config option ``insecure_plaintext``; nothing here builds an
insecure channel.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from fedsilo.crypto.certs import (
    ROLES,
    TlsFiles,
    certificate_role,
    identity_dns_name,
    verify_files,
)
from fedsilo.errors import AuthError, ConfigError
from fedsilo.grpc_errors import grpc_status_for
from fedsilo.grpc_handlers import behavior_of, rebuilt
from fedsilo.logs import clean, event

__all__ = [
    "IdentityInterceptor",
    "channel_credentials",
    "identity_options",
    "peer_identity",
    "peer_role",
    "server_credentials",
]

log = logging.getLogger(__name__)
PathLike = str | os.PathLike[str]


def _material(ca: PathLike, cert: PathLike, key: PathLike) -> tuple[bytes, bytes, bytes]:
    """PEM bytes of (ca, cert, key), after checking they fit together (one-line errors)."""
    files = TlsFiles(ca=Path(ca), cert=Path(cert), key=Path(key))
    verify_files(files)
    try:
        return files.ca.read_bytes(), files.cert.read_bytes(), files.key.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read TLS file {err.filename}: {err.strerror}") from None


def server_credentials(*, ca: PathLike, cert: PathLike, key: PathLike) -> grpc.ServerCredentials:
    """Server side: present ``cert``, and require a client certificate issued by ``ca``."""
    ca_pem, cert_pem, key_pem = _material(ca, cert, key)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )


def channel_credentials(*, ca: PathLike, cert: PathLike, key: PathLike) -> grpc.ChannelCredentials:
    """Client side: present ``cert`` and trust only servers whose certificate ``ca`` issued.

    Use with :func:`identity_options` so the server must also prove *which* party it is.
    """
    ca_pem, cert_pem, key_pem = _material(ca, cert, key)
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def identity_options(party: str) -> list[tuple[str, Any]]:
    """Channel options that make the TLS name check demand ``party``'s certificate.

    The target address can then be anything that routes (an IP, a container name); the
    identity verified is the party's, not the host's.
    """
    name = identity_dns_name(party)
    return [("grpc.ssl_target_name_override", name), ("grpc.default_authority", name)]


def peer_identity(context: grpc.ServicerContext) -> str | None:
    """The verified client certificate's common name, or None without an authenticated peer."""
    if context.peer_identities() is None:
        return None
    auth = context.auth_context()
    if auth.get("transport_security_type") != [b"ssl"]:
        return None
    names = auth.get("x509_common_name") or []
    if len(names) != 1:
        return None
    try:
        return names[0].decode("utf-8")
    except UnicodeDecodeError:
        return None


def peer_role(context: grpc.ServicerContext) -> str | None:
    """The fedsilo role of the verified client certificate, or None without an authenticated
    peer or without exactly one role."""
    if context.peer_identities() is None:
        return None
    auth = context.auth_context()
    if auth.get("transport_security_type") != [b"ssl"]:
        return None
    pems = auth.get("x509_pem_cert") or []
    return _role_of_pem(pems[0]) if len(pems) == 1 else None


@functools.lru_cache(maxsize=64)
def _role_of_pem(pem: bytes) -> str | None:
    """Parsed once per certificate: a silo sees the same few callers over and over."""
    try:
        return certificate_role(x509.load_pem_x509_certificate(pem))
    except (ValueError, ConfigError):
        return None


class IdentityInterceptor(grpc.ServerInterceptor):
    """Refuses every call whose verified caller identity is not in ``allowed`` or whose
    certificate does not carry ``role`` (required: a name alone could be issued to anyone).

    Works on all four RPC shapes: the check runs in the handler's own thread, with the call's
    context, before the servicer's method is entered. ``exempt`` names full method paths
    (``/package.Service/Method``) open to any authenticated consortium member; empty by default
    (deny by default). ``also`` lets one more identity and role call one method: a node's own
    certificate on the health check, so ``fedsilo health`` runs beside it with its own key.
    """

    def __init__(
        self,
        allowed: Iterable[str],
        *,
        role: str,
        exempt: Iterable[str] = (),
        also: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self._allowed = frozenset(allowed)
        self._exempt = frozenset(exempt)
        #: method path -> one more (identity, role) let through on that method only
        self._also = dict(also or {})
        if not self._allowed:
            raise ConfigError("an identity check with no allowed identity would refuse everyone")
        if role not in ROLES:
            raise ConfigError(f"caller role {role!r} is not one of {', '.join(ROLES)}")
        self._role = role

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or method in self._exempt:
            return handler
        return _wrap(handler, lambda context: self._check(context, method))

    def _check(self, context: grpc.ServicerContext, method: str) -> None:
        caller = peer_identity(context)
        extra = self._also.get(method)
        if extra is not None and caller == extra[0] and peer_role(context) == extra[1]:
            return
        if caller in self._allowed:
            role = peer_role(context)
            if role == self._role:
                return
            held = f"role {role!r}" if role else "no fedsilo role"
            err = AuthError(f"caller {caller!r} holds a certificate with {held}, not {self._role}")
        elif caller is None:
            err = AuthError("no authenticated caller identity")
        else:
            err = AuthError(f"caller {caller!r} is not an identity this server answers")
        event(
            log,
            "request refused",
            logging.WARNING,
            method=clean(method, 80),
            caller=clean(caller or context.peer()),
            reason=clean(err),
        )
        context.abort(grpc_status_for(err), str(err))


def _wrap(
    handler: grpc.RpcMethodHandler, check: Callable[[grpc.ServicerContext], None]
) -> grpc.RpcMethodHandler:
    """The same handler with ``check(context)`` run before the behaviour."""
    behavior = behavior_of(handler)

    def guarded(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        check(context)
        return behavior(request_or_iterator, context)

    return rebuilt(handler, guarded)
