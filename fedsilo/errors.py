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
    │   ├── SiloUnavailable       a silo did not answer within its deadline
    │   └── JobCancelled          an operator cancelled the job (``fedsilo jobs cancel``)
    ├── NotFound                  a job, model, alignment or dataset that does not exist
    └── LimitExceeded             a caller went beyond a silo's cap on concurrent calls, open
                                  sessions or stream time (refused at once, never queued)

gRPC status codes and CLI exit codes are derived from this tree in exactly one place each:
``fedsilo.grpc_errors`` (the status table, so this module loads no grpc) and each class's
``exit_code``: :func:`exit_code_for` picks the code of an error (a job that failed because of a
domain error exits with that error's code, so one fault has one code from every command) and
:data:`EXIT_CODES` is the documented table (``fedsilo --help``, the README).
"""

from __future__ import annotations


class FedsiloError(Exception):
    """Any other error (every error's message is one complete line for a user)."""

    exit_code = 1


class ConfigError(FedsiloError):
    """A config or job file is wrong, or the command line is (argparse exits 2 too)."""

    exit_code = 2


class DataError(FedsiloError):
    """A table, column or value in a silo's database is wrong."""

    exit_code = 3


class PolicyError(FedsiloError):
    """A silo's local policy refused the request."""

    exit_code = 4


class ProtocolError(FedsiloError):
    """A peer sent a malformed, oversized, reordered or replayed message."""

    exit_code = 5


class AuthError(FedsiloError):
    """A party did not prove the identity it is configured for."""

    exit_code = 6


class CryptoError(FedsiloError):
    """A key is too small, a ciphertext does not decrypt, a seal fails."""

    exit_code = 7


class JobError(FedsiloError):
    """A job could not run or failed for a reason that is none of the above."""

    exit_code = 8


class SiloUnavailable(JobError):
    """A silo (or the coordinator) did not answer within its deadline."""

    exit_code = 9


class JobCancelled(JobError):
    """An operator cancelled the job (fedsilo jobs cancel)."""

    exit_code = 12


class NotFound(FedsiloError):
    """A job, model, alignment or dataset does not exist."""

    exit_code = 10


class LimitExceeded(FedsiloError):
    """A silo's cap on concurrent calls, open sessions or stream time was reached."""

    exit_code = 11


#: what ``fedsilo`` exits with besides the error classes: success and Ctrl-C
INTERRUPTED = 130


def _classes(root: type[FedsiloError] = FedsiloError) -> list[type[FedsiloError]]:
    return [root] + [c for sub in root.__subclasses__() for c in _classes(sub)]


def _line(cls: type[FedsiloError]) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0]


#: (exit code, error class name, meaning), by code: the one table of exit codes, derived from
#: the classes above (printed by ``fedsilo --help``; the README's table is checked against it)
EXIT_CODES: tuple[tuple[int, str, str], ...] = (
    (0, "", "success"),
    *sorted((c.exit_code, c.__name__, _line(c)) for c in _classes()),
    (INTERRUPTED, "", "interrupted (Ctrl-C)"),
)


def error_class(name: str) -> type[FedsiloError]:
    """The error class called ``name`` (FedsiloError when there is none): how a job's recorded
    failure becomes an exit code again in another process (``run --coordinator``)."""
    return next((c for c in _classes() if c.__name__ == name), FedsiloError)


def root_cause(err: FedsiloError) -> FedsiloError:
    """The domain error under a generic JobError that only wraps it (``job 'x' failed: ...``)."""
    while type(err) is JobError and isinstance(err.__cause__, FedsiloError):
        err = err.__cause__
    return err


def exit_code_for(err: FedsiloError) -> int:
    """The exit code of ``err``: that of its root cause, so a job failing because a silo is
    unreachable exits like ``silo describe`` does when it cannot reach the silo."""
    return root_cause(err).exit_code
