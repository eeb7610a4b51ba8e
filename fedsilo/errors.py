"""The one exception hierarchy of fedsilo.

::

    FedsiloError                  every error we raise on purpose; carries a one-line message
    ├── ConfigError               a config or job file is wrong (file, key)
    ├── DataError                 a table, column or value in a silo's database is wrong
    ├── PolicyError               a silo's local policy refuses the request
    ├── ProtocolError             a peer sent a malformed, oversized, reordered or replayed message
    ├── AuthError                 the caller is not who the silo is configured to answer
    ├── CryptoError               a key is too small, a ciphertext does not decrypt, a seal fails
    ├── JobError                  a job cannot run or failed (carries the reason)
    │   └── SiloUnavailable       a silo did not answer within its deadline
    ├── NotFound                  a job, model, alignment or dataset that does not exist
    └── LimitExceeded             a caller went beyond a silo's cap on concurrent calls, open
                                  sessions or stream time (refused at once, never queued)

gRPC status codes and CLI exit codes are derived from this tree in exactly one place each:
``fedsilo.grpc_errors`` (the status table, so this module loads no grpc) and each class's
``exit_code`` (read by ``fedsilo.cli.main``).
"""

from __future__ import annotations


class FedsiloError(Exception):
    """Base class: ``str(err)`` is a complete one-line message for a user."""

    exit_code = 1


class ConfigError(FedsiloError):
    exit_code = 2


class DataError(FedsiloError):
    exit_code = 3


class PolicyError(FedsiloError):
    exit_code = 4


class ProtocolError(FedsiloError):
    exit_code = 5


class AuthError(FedsiloError):
    exit_code = 6


class CryptoError(FedsiloError):
    exit_code = 7


class JobError(FedsiloError):
    exit_code = 8


class SiloUnavailable(JobError):
    exit_code = 9


class NotFound(FedsiloError):
    exit_code = 10


class LimitExceeded(FedsiloError):
    exit_code = 11
