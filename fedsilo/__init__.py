"""fedsilo: privacy-preserving cross-silo analytics (PSI, SecureBoost, federated LR) over gRPC.

The package root exports the version and the exception tree (``fedsilo.errors``), so callers can
write ``except fedsilo.PolicyError``; ``tests/test_exported_members.py`` pins the list. Everything
else is imported from its module (``fedsilo.coordinator``, ``fedsilo.silo_node``, ...).
"""

from __future__ import annotations

from fedsilo.errors import (
    AuthError,
    ConfigError,
    CryptoError,
    DataError,
    FedsiloError,
    JobCancelled,
    JobError,
    LimitExceeded,
    NotFound,
    PolicyError,
    ProtocolError,
    SiloUnavailable,
)

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ConfigError",
    "CryptoError",
    "DataError",
    "FedsiloError",
    "JobCancelled",
    "JobError",
    "LimitExceeded",
    "NotFound",
    "PolicyError",
    "ProtocolError",
    "SiloUnavailable",
    "__version__",
]
